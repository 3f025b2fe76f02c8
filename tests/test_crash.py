"""kill -9 at random moments: `zoostore publish`, `sync` and `gc` as real processes, SIGKILLed.

Each test runs its command as a subprocess, kills it after a seeded random delay (drawn over
the time one complete run takes, so kills land in start-up, planning, upload or download,
commit and cleanup), then checks what a crash may and may not leave:

- the store passes `zoostore verify --read-data`: every listed version reads back, a partial
  pack is at most an unreferenced leftover;
- running the command again succeeds and gives the right bytes;
- a sync destination holds the old file or the new one at each path, never a partial one, and
  the next sync removes the partial temp files a kill left there;
- `gc` (and, for the local cache, `cache prune`) removes the leftovers of killed processes.

Against a local directory store and a real S3 server (Ceph radosgw, the session fixture of
tests/conftest.py; skipped with the reason where Ceph is missing). Bounded: KILLS kill attempts
per command and backend (`ZOOSTORE_CRASH_KILLS` sets it), each run at most RUN_LIMIT seconds.
Every test prints its figures (`pytest -s` shows them; docs/reliability.md keeps ours).
These three are marked `slow`; the fast tests at the end pin each leftover rule on its own
(a dead writer's lock, temp files in the store, the cache and a destination).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers_store import write_dir

from zoostore.cli import main
from zoostore.core.atomic import TEMP_PREFIX, host_name, machine, owner, stale_temp
from zoostore.documents.store_config import Chunking, StoreConfig
from zoostore.core.errors import ConflictError, LockTimeoutError
from zoostore.documents.manifest import Manifest
from zoostore.ops.gc import plan_gc
from zoostore.ops.publish import publish
from zoostore.repository import init_store, open_store
from zoostore.storage.backends.local import LocalBackend, StaleLockWarning
from zoostore.storage.cache import Cache

ROOT = Path(__file__).resolve().parents[1]
#: Kill attempts per command: 10 on a local store, 6 on radosgw (slower: about 15 s per kill
#: with its checks) unless `ZOOSTORE_CRASH_KILLS` says otherwise (docs/reliability.md: 20).
KILLS = {"local": 10, "radosgw": 6}
SEED = 13
#: No run may take longer than this (a hang is a failure, not a wait).
RUN_LIMIT = 120.0
#: Small chunks and packs: many objects per run, so kills land between object writes.
CONFIG = StoreConfig(chunking=Chunking(4096, 16384, 65536), pack_target_size=256 * 1024)
SECRET_OPTIONS = ("key", "secret")


@dataclass
class Store:
    url: str
    options: dict[str, Any]
    root: Path | None  # the directory of a local store

    @property
    def kind(self) -> str:
        return "local" if self.root is not None else "radosgw"

    @property
    def kills(self) -> int:
        return int(os.environ.get("ZOOSTORE_CRASH_KILLS", KILLS[self.kind]))

    def open(self) -> Any:
        return open_store(self.url, storage_options=self.options or None)


@dataclass
class Tally:
    """What one kill loop did: runs started, runs killed, runs that finished first."""

    command: str
    backend: str
    killed: int = 0
    finished: int = 0
    leftovers: list[int] = field(default_factory=list)  # temp files seen right after each kill
    unreferenced: int = 0  # whole packs and recipes of killed runs that no manifest names

    def report(self) -> str:
        return (f"{self.command} on {self.backend}: {self.killed} kills, {self.finished} runs finished "
                f"before their kill, temp files left by kills: {sum(self.leftovers)}, unreferenced "
                f"objects left by kills: {self.unreferenced}, data lost: zero")


@pytest.fixture(params=["local", "radosgw"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    if request.param == "local":
        return Store(str(tmp_path / "store"), {}, tmp_path / "store")
    rgw = request.getfixturevalue("radosgw")
    bucket = f"crash-{os.urandom(8).hex()}"
    rgw.make_bucket(bucket)
    options = rgw.storage_options()
    # The CLI takes the endpoint from $ZOOSTORE_STORE_OPTIONS and credentials from the standard
    # AWS variables; set both here so in-process `main` runs and subprocesses see the same.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["secret"])
    monkeypatch.setenv("ZOOSTORE_STORE_OPTIONS", json.dumps(
        {k: v for k, v in options.items() if k not in SECRET_OPTIONS}))
    return Store(f"s3://{bucket}/zoo", options, None)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZOOSTORE_NO_PROGRESS", "1")
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _command(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "zoostore", *args]


def run_complete(args: list[str], **env: str) -> float:
    """Run a command to the end (it must succeed); returns how long it took."""
    started = time.monotonic()
    done = subprocess.run(_command(args), env=_env(**env), capture_output=True, text=True, timeout=RUN_LIMIT)
    assert done.returncode == 0, f"zoostore {' '.join(args)} failed:\n{done.stderr}"
    return time.monotonic() - started


def run_and_kill(args: list[str], delay: float, tally: Tally, **env: str) -> bool:
    """Start the command and SIGKILL it after `delay` seconds; True if it was killed, False if
    it finished first (then it must have succeeded)."""
    proc = subprocess.Popen(_command(args), env=_env(**env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _, err = proc.communicate(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=RUN_LIMIT)
        tally.killed += 1
        return True
    assert proc.returncode == 0, f"zoostore {' '.join(args)} failed before its kill:\n{err.decode()}"
    tally.finished += 1
    return False


def delays(full: float, seed: int, kills: int, *, start: float | None = None) -> Iterator[float]:
    """Kill moments over the span of one complete run (a little beyond, so that the end of a
    run, its commit and cleanup, is hit too), from `start` (default: 30% in, past most of the
    interpreter's start-up)."""
    rng = random.Random(seed)
    for _ in range(kills):
        yield rng.uniform(0.3 * full if start is None else start, 1.05 * full)


def temp_files(root: Path | None) -> list[Path]:
    if root is None or not root.exists():
        return []
    return [p for p in root.rglob("*") if p.name.startswith(TEMP_PREFIX) or p.name.endswith(".tmp")]


def assert_verified(store: Store) -> None:
    """`zoostore verify --read-data`: every listed file readable, every chunk re-hashed."""
    assert main(["verify", store.url, "--read-data", "-q"]) == 0


def data(seed: int, n: int) -> bytes:
    """Half random (stored raw), half float-like (compressed): both codec paths run."""
    noise = random.Random(seed).randbytes(n // 2)
    words = np.random.default_rng(seed).normal(0, 0.05, n // 8 + 1).astype(np.float32).tobytes()
    return (noise + words)[:n]


def model_files(seed: int, *, scale: int = 1) -> dict[str, bytes]:
    return {"weights.bin": data(seed, 6_000_000 * scale), "lib.so": data(seed + 1, 2_000_000 * scale),
            "labels.txt": f"labels {seed}\n".encode()}


def read_version(store: Store, model: str, version: str, out: Path) -> dict[str, bytes]:
    zoo = store.open()
    release = zoo.manifest(model).versions[version]
    got = {}
    for arch, path, entry in release.blobs():
        got[path] = zoo.blobs.get_file(entry.blob, out / f"{time.monotonic_ns()}" / arch / path).read_bytes()
    return got


# -- publish ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_publish(store: Store, tmp_path: Path) -> None:
    init_store(store.url, config=CONFIG, storage_options=store.options or None)
    tally = Tally("publish", store.kind)
    full = run_complete(["publish", store.url, "m", "0.1.0", str(write_dir(tmp_path / "src0", model_files(0))),
                         "--no-check", "-q"])
    for i, delay in enumerate(delays(full, SEED, store.kills)):
        version, files = f"1.{i}.0", model_files(100 + i)
        src = write_dir(tmp_path / f"src{i}", files)
        args = ["publish", store.url, "m", version, str(src), "--no-check", "-q"]
        if run_and_kill(args, delay, tally):
            tally.leftovers.append(len(temp_files(store.root)))
            gc_plan = plan_gc(store.open(), grace=0)
            tally.unreferenced += len(gc_plan.recipes) + len(gc_plan.packs)
        assert_verified(store)
        # Listed or not, the version is never half there: if the killed run committed it, it
        # reads back right; a re-run succeeds (uploading only what is missing) either way.
        assert main(args) == 0, f"re-run of publish {version} after a kill at {delay:.2f} s failed"
        assert read_version(store, "m", version, tmp_path / "read") == files
    assert_verified(store)
    # gc with no grace (nobody publishes now) removes what the killed runs left: unreferenced
    # packs and recipes, and in a local store the temp files of dead writers.
    assert main(["gc", store.url, "--grace", "0s", "-q"]) == 0
    assert temp_files(store.root) == []
    after = plan_gc(store.open(), grace=0)
    assert (after.recipes, after.packs, after.leftovers) == ((), (), ())
    assert_verified(store)
    zoo = store.open()
    assert sorted(zoo.manifest("m").versions) == sorted(["0.1.0", *(f"1.{i}.0" for i in range(store.kills))])
    print(tally.report())


# -- sync ------------------------------------------------------------------------------------


def _project(d: Path, store: Store, version: str, dest: Path) -> Path:
    d.mkdir(parents=True)
    (d / "zoo.toml").write_text(f'store = "{store.url}"\ndest = "{dest}"\n[models]\nm = "={version}"\n')
    assert main(["lock", "--project", str(d), "-q"]) == 0
    return d


def dest_files(dest: Path) -> dict[str, bytes]:
    """The files in dest sync placed or is placing, by path under dest/m/x86_64 (temps included)."""
    base = dest / "m" / "x86_64"
    return {str(p.relative_to(base)): p.read_bytes() for p in base.rglob("*") if p.is_file()} if base.exists() else {}


@pytest.mark.slow
def test_kill_sync(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_store(store.url, config=CONFIG, storage_options=store.options or None)
    zoo = store.open()
    old, new = model_files(1, scale=4), model_files(2, scale=4)
    old["only-old.txt"] = b"old\n"
    new["only-new.txt"] = b"new\n"
    new["labels.txt"] = old["labels.txt"]  # unchanged between versions
    publish(zoo, "m", "1.0.0", [write_dir(tmp_path / "old", old)], check=False)
    publish(zoo, "m", "2.0.0", [write_dir(tmp_path / "new", new)], check=False)
    dest = tmp_path / "dest"
    to_old = _project(tmp_path / "p-old", store, "1.0.0", dest)
    to_new = _project(tmp_path / "p-new", store, "2.0.0", dest)
    shared_cache = tmp_path / "shared-cache"
    tally = Tally("sync", store.kind)
    calibrate = ["sync", "--project", str(to_new), "--dest", str(tmp_path / "calibrate"), "-q"]
    full = run_complete(calibrate, ZOOSTORE_CACHE=str(tmp_path / "calibrate-cache"))
    # A sync with nothing to do is start-up and reading the state file: kill after that.
    start = run_complete(calibrate, ZOOSTORE_CACHE=str(tmp_path / "calibrate-cache"))
    cache_leftovers = 0
    for i, delay in enumerate(delays(full, SEED + 1, store.kills, start=start)):
        # Odd runs share one cache (kills leave temp files in it), even runs start empty.
        cache = shared_cache if i % 2 else tmp_path / f"cache{i}"
        monkeypatch.setenv("ZOOSTORE_CACHE", str(cache))
        assert main(["sync", "--project", str(to_old), "-q"]) == 0
        assert dest_files(dest) == old
        # Odd runs copy (a kill mid-copy leaves a partial temp file in dest), even ones hard-link.
        args = ["sync", "--project", str(to_new), "-q", *(["--link", "copy"] if i % 2 else [])]
        if run_and_kill(args, delay, tally, ZOOSTORE_CACHE=str(cache)):
            leftovers = temp_files(dest)
            tally.leftovers.append(len(leftovers))
            for path, body in dest_files(dest).items():
                if Path(path).name.startswith(TEMP_PREFIX):
                    continue  # a partial file under a temp name: the next sync removes it
                assert body in (old.get(path), new.get(path)), f"{path} is neither old nor new after a kill"
            if i % 2:
                cache_leftovers += Cache(cache).info().stale_temps
        assert main(["verify", store.url, "-q"]) == 0  # sync never writes to the store; --read-data at the end
        assert main(args) == 0, f"re-run of sync after a kill at {delay:.2f} s failed"
        got = dest_files(dest)
        assert got == new, (f"after a kill at {delay:.2f} s and a re-run: extra {sorted(got.keys() - new.keys())}, "
                            f"missing {sorted(new.keys() - got.keys())}, wrong "
                            f"{sorted(k for k in got.keys() & new.keys() if got[k] != new[k])}")
    # `cache prune` removes the temp files of the killed runs from the shared cache.
    monkeypatch.setenv("ZOOSTORE_CACHE", str(shared_cache))
    assert main(["cache", "prune", "--unused"]) == 0
    assert Cache(shared_cache).info().stale_temps == 0
    assert temp_files(shared_cache) == []
    assert_verified(store)
    print(tally.report() + f"; cache temp files seen after kills: {cache_leftovers}; one full run {full:.2f} s")


# -- gc --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_kill_gc(store: Store, tmp_path: Path) -> None:
    init_store(store.url, config=CONFIG, storage_options=store.options or None)
    zoo = store.open()
    tally = Tally("gc", store.kind)
    kept: dict[str, dict[str, bytes]] = {}

    def garbage(i: int) -> list[str]:
        """Three versions (two to drop, one sharing most chunks with the next round's), and an
        aborted publish's packs; returns the gc arguments that drop the old versions."""
        base = data(500 + i, 3_000_000)
        for j in range(3):
            files = {"w.bin": base[: 1_000_000 * (j + 1)] + data(600 + 10 * i + j, 200_000)}
            publish(zoo, "m", f"{i}.{j}.0", [write_dir(tmp_path / f"g{i}-{j}", files)], check=False)
            kept[f"{i}.{j}.0"] = files
        writer = zoo.blobs.writer()
        try:
            writer.add(write_dir(tmp_path / f"abort{i}", {"a.bin": data(900 + i, 500_000)}) / "a.bin")
        finally:
            writer.abort()
        for version in [v for v in kept if v != f"{i}.2.0"]:
            del kept[version]
        extra = ["--repack"] if i % 2 else []
        return ["gc", store.url, "--keep", f"m@>={i}.2.0", "--grace", "0s", "--yes", "-q", *extra]

    full = run_complete(garbage(0))
    for i, delay in enumerate(delays(full, SEED + 2, store.kills), start=1):
        args = garbage(i)
        if run_and_kill(args, delay, tally):
            tally.leftovers.append(len(temp_files(store.root)))
        assert_verified(store)
        assert main(args) == 0, f"re-run of gc after a kill at {delay:.2f} s failed"
        for version, files in kept.items():
            assert read_version(store, "m", version, tmp_path / "read") == files
        assert sorted(zoo.manifest("m").versions) == sorted(kept), "gc dropped or kept the wrong versions"
    assert_verified(store)
    assert temp_files(store.root) == []
    print(tally.report())


# -- the leftover rules, one at a time (fast) -------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_a_dead_writers_lock_is_broken_at_once_with_a_warning(tmp_path: Path) -> None:
    backend = LocalBackend(tmp_path, lock_wait=5.0)
    token = backend.put_cas("manifests/m.toml", b"1", expected=None)
    lock = tmp_path / "manifests" / "m.toml.lock"
    import socket

    # What a publish killed while holding the lock leaves: host, pid and start time, fresh mtime.
    lock.write_text(f"{socket.gethostname()} pid={dead_pid()} started={int(time.time()) - 1:x} machine={machine()} abc")
    started = time.monotonic()
    with pytest.warns(StaleLockWarning, match="broke the stale lock .* no longer running"):
        backend.put_cas("manifests/m.toml", b"2", expected=token)
    assert time.monotonic() - started < 1.0  # not the 30 s of an old lock, nor the lock_wait
    assert backend.get("manifests/m.toml") == b"2"
    assert sorted(p.name for p in (tmp_path / "manifests").iterdir()) == ["m.toml"]


def test_a_live_writers_lock_is_waited_for_with_a_note(tmp_path: Path) -> None:
    import socket

    backend = LocalBackend(tmp_path, lock_wait=1.5)
    token = backend.put_cas("manifests/m.toml", b"1", expected=None)
    lock = tmp_path / "manifests" / "m.toml.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # A live process (this test's child) that started before the time in the lock.
        lock.write_text(f"{socket.gethostname()} pid={holder.pid} started={int(time.time()) + 5:x} machine={machine()} abc")
        with pytest.warns(StaleLockWarning, match=f"waiting for the lock .* process {holder.pid}"):
            with pytest.raises(ConflictError, match="locked by another writer"):
                backend.put_cas("manifests/m.toml", b"2", expected=token)
        assert lock.exists()
        # The same pid with a start time before the process's own: the pid was reused, the
        # writer is gone.
        lock.write_text(f"{socket.gethostname()} pid={holder.pid} started={int(time.time()) - 3600:x} machine={machine()} abc")
        with pytest.warns(StaleLockWarning, match="no longer running"):
            backend.put_cas("manifests/m.toml", b"2", expected=token)
    finally:
        holder.kill()
        holder.wait()


def other_machine() -> str:
    return "000000" if machine() != "000000" else "000001"


def test_a_lock_from_another_machine_waits_for_its_age(tmp_path: Path) -> None:
    """Another NFS client, or another container (pid namespace) on this host: its pid means
    nothing here, so only the lock's age can tell that it is stale."""
    backend = LocalBackend(tmp_path, lock_wait=0.3)
    token = backend.put_cas("manifests/m.toml", b"1", expected=None)
    lock = tmp_path / "manifests" / "m.toml.lock"
    import socket

    lock.write_text(f"{socket.gethostname()} pid={dead_pid()} started=0 machine={other_machine()} abc")
    with pytest.raises(ConflictError, match="locked by another writer"):
        backend.put_cas("manifests/m.toml", b"2", expected=token)
    assert lock.exists()


def test_store_temp_names_carry_the_writer_and_gc_removes_only_stale_ones(tmp_path: Path) -> None:
    zoo, _ = init_store(tmp_path / "store", config=CONFIG)
    backend = zoo.backend
    assert isinstance(backend, LocalBackend)
    made = backend._temp_for(tmp_path / "store" / "packs" / "ab" / "x")  # noqa: SLF001
    assert made.name.startswith(f"{TEMP_PREFIX}{os.getpid()}-")
    packs = tmp_path / "store" / "packs" / "ab"
    packs.mkdir(parents=True)
    dead = packs / f"{TEMP_PREFIX}{dead_pid()}-{int(time.time()):x}-0badf00d"
    dead.write_bytes(b"partial pack" * 1000)
    live = packs / made.name  # this process: alive, so kept however old
    live.write_bytes(b"being written")
    elsewhere = packs / f"{TEMP_PREFIX}{dead_pid()}-{int(time.time()):x}-{other_machine()}-00000000"
    elsewhere.write_bytes(b"another NFS client's write in progress")  # kept until the grace period
    old_style_new = packs / ".abcd.0123456789abcdef.tmp"     # an older zoostore's temp name, fresh
    old_style_new.write_bytes(b"x")
    old_style_old = packs / ".abcd.fedcba9876543210.tmp"     # and one older than the grace period
    old_style_old.write_bytes(b"y")
    week_ago = time.time() - 7 * 86400
    os.utime(old_style_old, (week_ago, week_ago))
    assert list(backend.list("packs/")) == []  # never listed as objects

    expected = sorted(["packs/ab/" + p.name for p in (dead, old_style_old)])
    plan = plan_gc(zoo)
    assert [i.key for i in plan.leftovers] == expected
    assert "2 leftover(s) of killed writers" in str(plan) and not plan.empty
    assert main(["verify", str(tmp_path / "store")]) == 0  # reported, not a problem
    result = plan.execute()
    assert result.leftovers_deleted == 2 and "deleted 2 leftover(s)" in str(result)
    assert sorted(p.name for p in packs.iterdir()) == sorted([live.name, old_style_new.name, elsewhere.name])
    assert stale_temp(elsewhere.name, time.time() - 2 * CONFIG.grace_seconds, older_than=CONFIG.grace_seconds)


def test_verify_reports_leftovers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    init_store(tmp_path / "store", config=CONFIG)
    (tmp_path / "store" / "blobs").mkdir()
    (tmp_path / "store" / "blobs" / f"{TEMP_PREFIX}{dead_pid()}-0-00000000").write_bytes(b"partial")
    assert main(["verify", str(tmp_path / "store"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["problems"] == [] and len(doc["leftovers"]) == 1


def test_gc_removes_old_probes_on_s3(tmp_path: Path, moto_endpoint: str) -> None:
    """An object store has no partial objects; a killed command can leave only its clock or
    compare-and-swap probe under tmp/, which gc deletes once older than the grace period."""
    import boto3

    from conftest import moto_options

    bucket = f"probe-{os.urandom(6).hex()}"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id="testing",
                      aws_secret_access_key="testing", region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    zoo, _ = init_store(f"s3://{bucket}/zoo", config=CONFIG, storage_options=moto_options(moto_endpoint))
    probe = f"zoo/tmp/clock-{os.urandom(16).hex()}"
    s3.put_object(Bucket=bucket, Key=probe, Body=b"")
    s3.put_object(Bucket=bucket, Key="zoo/tmp/not-a-probe", Body=b"mine")
    assert plan_gc(zoo).leftovers == ()  # younger than the grace period
    later = time.time() + CONFIG.grace_seconds + 60
    plan = plan_gc(zoo, now=later)
    assert [i.key for i in plan.leftovers] == [probe.removeprefix("zoo/")]
    plan.execute()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="zoo/tmp/").get("Contents", [])]
    assert keys == ["zoo/tmp/not-a-probe"]


def test_cache_info_and_prune_see_temps_anywhere_in_the_cache(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    cache = Cache(tmp_path / "cache")
    pid = dead_pid()
    planted = []
    for sub in ("blobs/ab", "recipes/ab", "verified/ab", "manifests/0123"):
        (cache.root / sub).mkdir(parents=True)
        planted.append(cache.root / sub / f"{TEMP_PREFIX}{pid}-{int(time.time()):x}-{len(planted):08x}")
        planted[-1].write_bytes(b"p" * 1000)
    mine = cache.root / "blobs" / "ab" / f"{TEMP_PREFIX}{os.getpid()}-0-00000000"
    mine.write_bytes(b"a live writer's")  # start time 0 is not this process's: reused pid, stale
    info = cache.info()
    assert (info.stale_temps, info.stale_temp_bytes) == (5, 4000 + len(b"a live writer's"))
    assert main(["cache", "info"]) == 0
    assert "stale temp files: 5" in capsys.readouterr().out
    assert main(["cache", "prune", "--unused"]) == 0
    assert not any(p.exists() for p in [*planted, mine])
    assert cache.info().stale_temps == 0


def test_sync_removes_partial_files_a_killed_sync_left(tmp_path: Path) -> None:
    zoo, _ = init_store(tmp_path / "store", config=CONFIG)
    publish(zoo, "m", "1.0.0", [write_dir(tmp_path / "v1", {"a.bin": b"1" * 5000})], check=False)
    publish(zoo, "m", "2.0.0", [write_dir(tmp_path / "v2", {"a.bin": b"2" * 5000})], check=False)
    dest = tmp_path / "dest"
    p1 = _project(tmp_path / "p1", Store(str(tmp_path / "store"), {}, tmp_path / "store"), "1.0.0", dest)
    p2 = _project(tmp_path / "p2", Store(str(tmp_path / "store"), {}, tmp_path / "store"), "2.0.0", dest)
    assert main(["sync", "--project", str(p1), "-q"]) == 0
    pid = dead_pid()
    partial = dest / "m" / "x86_64" / f"{TEMP_PREFIX}{pid}-{int(time.time()):x}-00000001"
    partial.write_bytes(b"2" * 100)
    state_temp = dest / f"{TEMP_PREFIX}{pid}-{int(time.time()):x}-00000002"
    state_temp.write_bytes(b"{")
    user = dest / "m" / "x86_64" / ".zoostore-tmp-mine"  # not a zoostore temp name: never touched
    user.write_bytes(b"mine")
    assert main(["sync", "--project", str(p2), "-q"]) == 0
    assert not partial.exists() and not state_temp.exists() and user.exists()
    assert (dest / "m" / "x86_64" / "a.bin").read_bytes() == b"2" * 5000


def test_a_rerun_after_a_kill_before_the_state_file_leaves_no_temp_links(tmp_path: Path) -> None:
    """Found by test_kill_sync: a sync killed after placing its hard links but before writing
    its state file; the next sync re-links the same cache file, and rename(2) of one link of a
    file over another link of the same file does nothing, which left the temp names in dest."""
    zoo, _ = init_store(tmp_path / "store", config=CONFIG)
    publish(zoo, "m", "1.0.0", [write_dir(tmp_path / "v1", {"a.bin": b"1" * 5000, "b.txt": b"b"})], check=False)
    project = _project(tmp_path / "p", Store(str(tmp_path / "store"), {}, tmp_path / "store"), "1.0.0",
                       tmp_path / "dest")
    assert main(["sync", "--project", str(project), "-q"]) == 0
    (tmp_path / "dest" / ".zoostore-state.json").unlink()  # what the kill left: links, no state
    assert main(["sync", "--project", str(project), "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "dest" / "m" / "x86_64").iterdir()) == ["a.bin", "b.txt"]


def test_a_publish_killed_holding_the_manifest_lock_delays_the_next_by_nothing(tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A real process takes the lock the way a publish does and is SIGKILLed holding it."""
    store = tmp_path / "store"
    init_store(store, config=CONFIG)
    src = write_dir(tmp_path / "src", {"a.txt": b"a"})
    assert main(["publish", str(store), "m", "1.0.0", str(src), "--no-check", "-q"]) == 0
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from zoostore.storage.backends.local import LocalBackend; "
         "b = LocalBackend(sys.argv[1]); b._acquire(b.root / 'manifests' / 'm.toml.lock', 'manifests/m.toml'); "
         "print('held', flush=True); time.sleep(60)", str(store)],
        env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (store / "manifests" / "m.toml.lock").exists()
    started = time.monotonic()
    assert main(["publish", str(store), "m", "1.1.0", str(src), "--no-check", "-q"]) == 0
    assert time.monotonic() - started < 5.0  # it waited 10 s, then failed: lock_wait < 30 s
    assert f"broke the stale lock {store / 'manifests' / 'm.toml.lock'}" in capsys.readouterr().err
    assert not (store / "manifests" / "m.toml.lock").exists()


def test_a_manifest_update_waits_for_a_held_lock_once_not_per_compare_and_swap_round(tmp_path: Path) -> None:
    """The wait note says 'giving up after lock_wait s', and so it does: the CAS loop of a
    manifest update retried the lock timeout (200 rounds), so a publish waited until the lock
    went stale (30 s), then broke it."""
    init_store(tmp_path / "store", config=CONFIG)
    zoo = open_store(tmp_path / "store", storage_options={"lock_wait": 0.3})
    zoo.update_manifest("m", lambda old: Manifest(model="m"))
    lock = tmp_path / "store" / "manifests" / "m.toml.lock"
    lock.write_text(f"{host_name()} {owner()} held")   # a live writer: this process
    started = time.monotonic()
    with pytest.raises(LockTimeoutError, match="locked by another writer"):
        zoo.update_manifest("m", lambda old: Manifest(model="m", summary="changed"))
    assert time.monotonic() - started < 3.0
    assert lock.exists()
