"""A real S3 server for tests: Ceph's radosgw on a throwaway one-node cluster on 127.0.0.1.

One job, longer than 500 lines: starting, probing and stopping three daemons with bounded waits.

`RadosGW(workdir)` writes a `ceph.conf` into `workdir` and starts, as the current user:

- one monitor (`ceph-mon`, msgr2 only, on a free loopback port; its monmap is made with
  `monmaptool`, its store with `ceph-mon --mkfs`),
- one OSD (`ceph-osd` on `memstore`: objects live in the OSD's memory), registered with
  `ceph osd new` and created with `ceph-osd --mkfs`,
- radosgw with the beast frontend on a free loopback port (or `port=`); it creates its pools
  itself,

then creates an S3 user with fixed keys (`radosgw-admin user create`). No manager daemon is
needed: radosgw only talks to the monitor and the OSD. Authentication between the daemons is off
(`auth ... required = none`, msgr2 in `crc` mode); S3 requests are still signed and checked
against the user's keys. Every file (config, monitor store, OSD metadata, logs, pid files, admin
sockets) lives under `workdir`, so several clusters can run side by side, and `/etc/ceph` and
`/var/lib/ceph` are neither read nor written. Pools have one replica and 8 placement groups, and
the monitor proposes map changes every 50 ms instead of every second, which brings start-up
(including radosgw creating its pools) down to about a second.

Memory: about 120 MiB resident when idle (mostly the daemons' shared libraries), plus every byte
stored: overwritten and deleted objects keep their data until radosgw's garbage collector frees
it (after 60-90 s here). `memstore_bytes` (default 1 GiB) is the OSD's capacity, not an
allocation; when the data reaches it the OSD stops accepting writes and PUTs *hang* (Ceph's
full-cluster behaviour), so give a test that writes a lot a larger value.

Each daemon runs in the foreground in its own process group (so a Ctrl-C in a terminal does not
reach it). `stop()` kills the groups with SIGKILL and reaps them, bounded in time, also after a
`start()` that failed halfway: the data is throwaway, and a graceful shutdown would only make
memstore dump itself to disk. An `atexit` hook stops servers the caller forgot, and `start()`
first kills daemons that a run in the same `workdir` left behind when its Python process was
killed (found by their `-c <workdir>/ceph.conf` argument).

Debian packages: `ceph-mon ceph-osd radosgw ceph-common` (`--no-install-recommends` is enough).
`available()` says whether the programs are there.

    with RadosGW(tmp_path) as rgw:
        rgw.make_bucket("zoo")
        s3 = rgw.client()                       # botocore, path-style, the user's keys
        options = rgw.storage_options()         # for s3fs / zoostore: s3://zoo/...

By hand: `python -m zoostore.testing.radosgw [--dir D]` starts one, prints the endpoint, keys and
an `export AWS_...` snippet, and runs until Ctrl-C. See docs/radosgw.md, also for the ways
radosgw 16 differs from AWS S3 on conditional writes.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Any

__all__ = ["ACCESS_KEY", "PROGRAMS", "SECRET_KEY", "RadosGW", "RadosGWError", "available"]

#: The programs a cluster needs (Debian packages ceph-mon, ceph-osd, radosgw and ceph-common).
PROGRAMS = ("monmaptool", "ceph-mon", "ceph", "ceph-osd", "radosgw", "radosgw-admin")

#: The fixed S3 keys of the user `start()` creates.
ACCESS_KEY = "ZOOSTORETESTACCESSKEY"
SECRET_KEY = "zoostore-test-secret-key-0123456789abcdef"
USER_ID = "zoostore"

#: Seconds a helper command (ceph, radosgw-admin, mkfs) may take before it is killed.
COMMAND_TIMEOUT = 30.0
#: Seconds `stop()` waits for each killed process group to be reaped.
STOP_TIMEOUT = 10.0
#: Start radosgw again on another port if the free port picked was taken meanwhile (rare, and
#: slow: the dead radosgw's watches on the control objects delay the next writes by the OSD's
#: 30 s watch timeout).
_RGW_PORT_ATTEMPTS = 3
_POLL = 0.1
_LOOPBACK = "127.0.0.1"

_LIVE: weakref.WeakSet[RadosGW] = weakref.WeakSet()


class RadosGWError(RuntimeError):
    """The cluster could not be started (the message includes the end of the relevant logs)."""


class _DaemonExited(RadosGWError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def available() -> str | None:
    """None if the Ceph programs needed to run a cluster are installed, else why not."""
    missing = [name for name in PROGRAMS if shutil.which(name) is None]
    if missing:
        return (
            f"Ceph programs not found: {', '.join(missing)} "
            "(apt-get install ceph-mon ceph-osd radosgw ceph-common)"
        )
    return None


def _free_port() -> int:
    """A free loopback port, preferably below the ephemeral range.

    The port is bound by a daemon only a moment later; outgoing connections (of the ceph tools,
    say) take their local ports from the ephemeral range, so a port below it cannot be taken
    meanwhile by accident. Ceph's own daemons use 6800-7300.
    """
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = [random.randrange(20000, low) for _ in range(50)] if low > 21000 else []
    for port in [*candidates, 0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((_LOOPBACK, port))
            except OSError:
                continue
            found: int = sock.getsockname()[1]
            return found
    raise RadosGWError("no free port on 127.0.0.1")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(line for line in text.splitlines()[-lines:] if line.strip())


def _kill_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGKILL the process group `proc` leads and reap `proc`, waiting at most `timeout`."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


def _pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class RadosGW:
    """A one-node Ceph cluster with radosgw on 127.0.0.1, all state under `workdir`.

    Use as a context manager or call `start()` / `stop()`. After `start()`: `endpoint_url`,
    `access_key`, `secret_key`; use path-style addressing, any region name is accepted.
    """

    def __init__(self, workdir: Path, *, port: int = 0, memstore_bytes: int = 1 << 30) -> None:
        self.workdir = Path(workdir).resolve()
        self.conf = self.workdir / "ceph.conf"
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        #: The S3 port once started (0 before).
        self.port = 0
        self.mon_port = 0
        self._want_port = port
        self._memstore_bytes = memstore_bytes
        self._fsid = ""
        self._daemons: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._outputs: list[IO[bytes]] = []
        self._lock = threading.Lock()
        self._env = dict(os.environ, CEPH_CONF=str(self.conf))
        for var in ("CEPH_ARGS", "CEPH_KEYRING"):
            self._env.pop(var, None)
        # Ceph's Debian defaults give tcmalloc 128 MiB of thread caches; a test server needs less.
        self._env.setdefault("TCMALLOC_MAX_TOTAL_THREAD_CACHE_BYTES", str(16 << 20))

    # -- public API ---------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """`http://127.0.0.1:<port>` of the S3 API."""
        if not self.port:
            raise RadosGWError("radosgw is not running")
        return f"http://{_LOOPBACK}:{self.port}"

    @property
    def pids(self) -> list[int]:
        """Process ids of the daemons started (ceph-mon, ceph-osd, radosgw)."""
        return [proc.pid for _, proc in self._daemons]

    def start(self, timeout: float = 60) -> RadosGW:
        """Start the cluster and radosgw and create the S3 user, within `timeout` seconds.

        Raises RadosGWError (after stopping whatever it had started) on failure.
        """
        reason = available()
        if reason is not None:
            raise RadosGWError(reason)
        if self._daemons:
            raise RadosGWError("already started")
        deadline = time.monotonic() + timeout
        _LIVE.add(self)
        try:
            self._start(deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Kill every daemon this object started (their process groups, SIGKILL) and reap them.

        Takes at most about STOP_TIMEOUT seconds per daemon (normally milliseconds); safe to call
        more than once and after a failed start.
        """
        with self._lock:
            daemons, self._daemons = self._daemons, []
            for _, proc in reversed(daemons):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            for _, proc in reversed(daemons):
                _kill_group(proc, STOP_TIMEOUT)
            for out in self._outputs:
                out.close()
            self._outputs = []
            self.port = 0
        _LIVE.discard(self)

    def running(self) -> bool:
        """True while every daemon started is alive."""
        return bool(self._daemons) and all(proc.poll() is None for _, proc in self._daemons)

    def create_user(self, uid: str, *, timeout: float = 30) -> tuple[str, str]:
        """Another S3 user (for permission tests): returns its (access key, secret key)."""
        access = f"ZOOSTORE{uid.upper()}"[:20].ljust(20, "X")
        secret = f"zoostore-{uid}-secret-0123456789abcdefghij"[:40]
        self._run(time.monotonic() + timeout, "radosgw-admin", "user", "create", "--uid", uid,
                  "--display-name", f"zoostore tests ({uid})", "--access-key", access, "--secret-key", secret)
        return access, secret

    def make_bucket(self, name: str) -> None:
        """Create bucket `name`, owned by the S3 user."""
        self.client().create_bucket(Bucket=name)

    def client(self) -> Any:
        """A botocore S3 client for this server (path-style, the user's keys, no proxy).

        It retries 500s ("standard" mode, 3 attempts): radosgw 16 answers some losers of
        concurrent `If-Match` PUTs with 500 instead of 412 (docs/radosgw.md).
        """
        import botocore.config
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=botocore.config.Config(
                s3={"addressing_style": "path"},
                retries={"total_max_attempts": 3, "mode": "standard"},
                proxies={},
            ),
        )

    def storage_options(self) -> dict[str, Any]:
        """s3fs storage options for this server."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        }

    def __enter__(self) -> RadosGW:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- start-up -----------------------------------------------------------------------------

    def _start(self, deadline: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._kill_stale()
        for sub in ("mon", "osd", "run", "log", "rgw"):
            shutil.rmtree(self.workdir / sub, ignore_errors=True)
            (self.workdir / sub).mkdir()
        self._fsid = str(uuid.uuid4())
        self.mon_port = _free_port()
        self._write_conf(0)

        monmap = self.workdir / "run" / "monmap"
        mon_addr = f"[v2:{_LOOPBACK}:{self.mon_port}]"
        self._run(deadline, "monmaptool", "--create", "--fsid", self._fsid, "--addv", "a", mon_addr, str(monmap))
        self._run(deadline, "ceph-mon", "-i", "a", "--mkfs", "--monmap", str(monmap))
        self._spawn("mon.a", "ceph-mon", "-i", "a")

        osd_uuid = str(uuid.uuid4())
        # The first command to the monitor: it keeps trying until the monitor answers.
        self._run(deadline, "ceph", "--connect-timeout", "20", "osd", "new", osd_uuid, "0")
        (self.workdir / "osd" / "0").mkdir()
        self._run(deadline, "ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._spawn("osd.0", "ceph-osd", "-i", "0")

        for attempt in range(1, _RGW_PORT_ATTEMPTS + 1):
            rgw_port = self._want_port or _free_port()
            self._write_conf(rgw_port)
            proc = self._spawn("client.rgw", "radosgw", "-n", "client.rgw")
            try:
                self._wait_http(deadline, rgw_port)
                break
            except _DaemonExited as exc:
                stderr = ""
                with contextlib.suppress(OSError):
                    stderr = (self.workdir / "log" / "client.rgw.out").read_text(errors="replace")
                taken = "Address already in use" in stderr
                if exc.name != "client.rgw" or not taken or self._want_port or attempt == _RGW_PORT_ATTEMPTS:
                    raise
                self._daemons.remove(("client.rgw", proc))
                _kill_group(proc, STOP_TIMEOUT)
        self.port = rgw_port
        self._run(
            deadline, "radosgw-admin", "user", "create", "--uid", USER_ID, "--display-name", "zoostore tests",
            "--access-key", self.access_key, "--secret-key", self.secret_key,
        )

    # longer than 60 lines: it is one configuration template.
    def _write_conf(self, rgw_port: int) -> None:
        w = self.workdir
        conf = f"""\
# Written by zoostore.testing.radosgw: a throwaway one-node Ceph cluster on {_LOOPBACK}.
[global]
fsid = {self._fsid}
mon host = [v2:{_LOOPBACK}:{self.mon_port}]
public addr = {_LOOPBACK}
cluster addr = {_LOOPBACK}
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
ms cluster mode = crc
ms service mode = crc
ms client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms mon client mode = crc
ms async op threads = 2
run dir = {w}/run
admin socket = {w}/run/$name.$pid.asok
pid file = {w}/run/$name.pid
log file = {w}/log/$name.log
log to stderr = false
err to stderr = true
mon cluster log file = {w}/log/cluster.log
keyring = {w}/keyring
crash dir = {w}/log/crash
mon data = {w}/mon/$id
osd data = {w}/osd/$id
osd journal = {w}/osd/$id/journal
osd objectstore = memstore
memstore device bytes = {self._memstore_bytes}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool delete = true
mon data avail warn = 2
mon data avail crit = 1
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
paxos propose interval = 0.05
paxos min wait = 0.01

[osd]
osd op num shards = 1
osd op num threads per shard = 2
osd min pg log entries = 100
osd max pg log entries = 500

[client.rgw]
# tcp_nodelay: without it a request not overlapped with others waits ~40 ms (docs/radosgw.md)
rgw frontends = beast endpoint={_LOOPBACK}:{rgw_port} tcp_nodelay=1
rgw data = {w}/rgw
rgw enable apis = s3, admin
rgw thread pool size = 16
rgw dynamic resharding = false
rgw enable lc threads = false
rgw enable quota threads = false
rgw run sync thread = false
rgw gc obj min wait = 60
rgw gc processor period = 30
"""
        self.conf.write_text(conf)

    def _spawn(self, name: str, program: str, *args: str) -> subprocess.Popen[bytes]:
        out = open(self.workdir / "log" / f"{name}.out", "wb")  # noqa: SIM115 - closed in stop()
        self._outputs.append(out)
        proc = subprocess.Popen(
            [program, "-f", "-c", str(self.conf), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=self._env,
            cwd=self.workdir,
            start_new_session=True,
        )
        self._daemons.append((name, proc))
        return proc

    def _run(self, deadline: float, program: str, *args: str) -> str:
        """Run a helper command in its own process group; kill it at the deadline."""
        self._check_daemons()
        timeout = min(COMMAND_TIMEOUT, deadline - time.monotonic())
        if timeout <= 0:
            raise RadosGWError(f"timed out before running {program}")
        argv = [program, *args] if program == "monmaptool" else [program, "-c", str(self.conf), *args]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=self._env,
            cwd=self.workdir,
            start_new_session=True,
        )
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc, STOP_TIMEOUT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.communicate(timeout=STOP_TIMEOUT)
            self._check_daemons()  # a daemon that died is the better explanation
            raise RadosGWError(f"{' '.join(argv)} did not finish within {timeout:.1f} s") from None
        finally:
            _kill_group(proc, STOP_TIMEOUT)  # on time-out or interrupt, and anything it left behind
        text = output.decode(errors="replace")
        if proc.returncode != 0:
            self._check_daemons()
            raise RadosGWError(f"{' '.join(argv)} failed ({proc.returncode}):\n{text[-2000:]}")
        return text

    def _logs(self, name: str) -> str:
        """The start of a daemon's stderr (its errors) and the end of its log."""
        log = self.workdir / "log"
        with contextlib.suppress(OSError):
            errors = (log / f"{name}.out").read_text(errors="replace").splitlines()[:20]
            return "\n".join(errors) + f"\n--- end of {name}.log:\n" + _tail(log / f"{name}.log", 10)
        return _tail(log / f"{name}.log")

    def _check_daemons(self) -> None:
        for name, proc in self._daemons:
            if proc.poll() is not None:
                raise _DaemonExited(
                    name, f"{name} exited with status {proc.returncode}; its log:\n{self._logs(name)}"
                )

    def _wait_http(self, deadline: float, port: int) -> None:
        url = f"http://{_LOOPBACK}:{port}/"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(100_000):  # bounded by the deadline long before
            self._check_daemons()
            try:
                with opener.open(url, timeout=2) as response:
                    response.read()
                return
            except urllib.error.HTTPError:
                return  # an S3 error document: it answers
            except OSError:
                pass
            if time.monotonic() > deadline:
                break
            time.sleep(_POLL)
        raise RadosGWError(f"radosgw did not answer on {url} in time; its log:\n{self._logs('client.rgw')}")

    def _kill_stale(self) -> None:
        """Kill daemons an earlier run in this workdir left behind (its Python process was killed)."""
        conf = str(self.conf).encode()
        stale: list[int] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                if conf in (entry / "cmdline").read_bytes().split(b"\0"):
                    stale.append(int(entry.name))
        for pid in stale:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in stale:
            for _ in range(int(STOP_TIMEOUT / _POLL)):
                if not _pid_alive(pid):
                    break
                time.sleep(_POLL)


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        server.stop()


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(
        prog="python -m zoostore.testing.radosgw",
        description="Run a throwaway one-node Ceph radosgw (S3) on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--dir", type=Path, help="working directory (default: a new temporary one)")
    parser.add_argument("--port", type=int, default=0, help="S3 port (default: a free one)")
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket (repeatable)")
    args = parser.parse_args(argv)
    reason = available()
    if reason is not None:
        print(f"radosgw: {reason}")
        return 2
    workdir: Path = args.dir or Path(tempfile.mkdtemp(prefix="zoostore-radosgw-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    started = time.monotonic()
    try:
        with RadosGW(workdir, port=args.port) as rgw:
            for bucket in args.bucket:
                rgw.make_bucket(bucket)
            print(f"radosgw ready in {time.monotonic() - started:.1f} s; state and logs in {workdir}")
            print(f"  endpoint:   {rgw.endpoint_url}")
            print(f"  access key: {rgw.access_key}")
            print(f"  secret key: {rgw.secret_key}")
            if args.bucket:
                print(f"  buckets:    {', '.join(args.bucket)}")
            print()
            print(f"export AWS_ENDPOINT_URL={rgw.endpoint_url}")
            print(f"export AWS_ACCESS_KEY_ID={rgw.access_key}")
            print(f"export AWS_SECRET_ACCESS_KEY={rgw.secret_key}")
            print("export AWS_DEFAULT_REGION=us-east-1")
            print()
            print("Ctrl-C to stop.", flush=True)
            while not stop.wait(1.0):
                if not rgw.running():
                    print(f"radosgw: a daemon exited; see {workdir / 'log'}")
                    return 1
    except KeyboardInterrupt:
        pass
    except RadosGWError as exc:
        print(f"radosgw: {exc}")
        return 1
    print("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
