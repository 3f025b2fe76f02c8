"""Shared helpers for the benchmark scripts in bench/: timing, child processes with their peak
memory, reference tools, tables, Markdown results and a description of the machine.

Every script measures zoostore and the reference tools in one run, side by side, on the same
files, and keeps the best of N repeats: other work on a shared machine only ever makes a run
slower, so the minimum is the most repeatable number. Each script prints its table and writes
it, with the machine it ran on, to a Markdown file under docs/.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
if str(REPO / "demo") not in sys.path:
    sys.path.insert(0, str(REPO / "demo"))

T = TypeVar("T")
MB = 1_000_000  # throughput is reported in MB/s (10^6), like b3sum, zstd and restic
MiB = 1024 * 1024


# ------------------------------------------------------------------------------ timing
def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all threads)."""
    t = os.times()
    return t.user + t.system


@dataclass
class Timing:
    """Best (minimum) wall time of several runs, with the CPU time of that run."""

    runs: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return min(self.runs)

    @property
    def best_cpu(self) -> float:
        return self.cpu[self.runs.index(self.best)] if self.cpu else float("nan")

    def add(self, wall: float, cpu: float = float("nan")) -> None:
        self.runs.append(wall)
        self.cpu.append(cpu)


def best_of(repeat: int, fn: Callable[[], T], *, setup: Callable[[], Any] | None = None) -> tuple[Timing, T]:
    """Run `setup()` (untimed) then `fn()` (timed, in-process) `repeat` times; the timing and
    the last result."""
    timing = Timing()
    result: T | None = None
    for _ in range(max(1, repeat)):
        if setup is not None:
            setup()
        c0, t0 = cpu_seconds(), time.perf_counter()
        result = fn()
        timing.add(time.perf_counter() - t0, cpu_seconds() - c0)
    assert result is not None or repeat >= 1
    return timing, result  # type: ignore[return-value]


@dataclass
class Proc:
    """One finished child process: wall time, peak RSS, CPU time and output."""

    args: list[str]
    returncode: int
    seconds: float
    max_rss: int  # bytes (peak resident set of the child and the descendants it waited for)
    cpu: float  # user + system seconds of the child
    stdout: str
    stderr: str

    def check(self) -> Proc:
        if self.returncode != 0:
            raise RuntimeError(
                f"{' '.join(self.args)} exited {self.returncode}:\n{self.stdout[-2000:]}\n{self.stderr[-2000:]}"
            )
        return self


# A child inherits the peak RSS of the process it was forked from (Linux keeps the high-water
# mark across exec), so forking the command from this benchmark, which may hold hundreds of MB,
# would report that. A small launcher process forks it instead, times it and reports its rusage.
_LAUNCHER = r"""
import json, os, subprocess, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
p = subprocess.Popen(argv)
_, status, ru = os.wait4(p.pid, 0)
seconds = time.perf_counter() - t0
with open(out, "w") as f:
    json.dump({"seconds": seconds, "code": os.waitstatus_to_exitcode(status),
               "maxrss": ru.ru_maxrss * 1024, "cpu": ru.ru_utime + ru.ru_stime}, f)
"""


def run(args: Sequence[str | os.PathLike[str]], *, cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None, check: bool = True, input: bytes | None = None) -> Proc:
    """Run a command; its wall time (spawn to exit), peak RSS and CPU time are its own (taken
    with os.wait4 by a small launcher process), not the benchmark's."""
    argv = [os.fspath(a) for a in args]
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r", suffix=".json") as usage:
        subprocess.run([sys.executable, "-S", "-c", _LAUNCHER, usage.name, *argv], cwd=cwd, env=full_env,
                       stdout=out, stderr=err, input=input,
                       stdin=None if input is not None else subprocess.DEVNULL)
        info = json.loads(usage.read() or "{}")
        out.seek(0)
        err.seek(0)
        proc = Proc(argv, info.get("code", -1), info.get("seconds", float("nan")), info.get("maxrss", 0),
                    info.get("cpu", float("nan")), out.read().decode(errors="replace"),
                    err.read().decode(errors="replace"))
    return proc.check() if check else proc


def best_run(repeat: int, args: Sequence[str | os.PathLike[str]], *, setup: Callable[[], Any] | None = None,
             **kwargs: Any) -> tuple[Timing, Proc]:
    """`run` `repeat` times (after an untimed `setup()` each); the timing and the fastest run."""
    timing = Timing()
    best: Proc | None = None
    for _ in range(max(1, repeat)):
        if setup is not None:
            setup()
        p = run(args, **kwargs)
        timing.add(p.seconds, p.cpu)
        if best is None or p.seconds < best.seconds:
            best = p
    assert best is not None
    return timing, best


def python_cmd(*args: str) -> list[str]:
    """The interpreter running the benchmark, with the repository importable."""
    return [sys.executable, *args]


_compiled = False


def python_env() -> dict[str, str]:
    """The environment for running this checkout's zoostore. The first call compiles the package
    to bytecode: an installed package has it (pip compiles on install), but a checkout run
    with PYTHONDONTWRITEBYTECODE=1 (as some CI images set) would otherwise compile every module
    in every run and time that as start-up."""
    global _compiled
    if not _compiled:
        import compileall

        compileall.compile_dir(str(REPO / "zoostore"), quiet=1, force=True)  # force: an edit within the second of an earlier compile keeps its mtime
        _compiled = True
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}


# ------------------------------------------------------------------------------ files
def dir_size(path: str | os.PathLike[str]) -> int:
    """Bytes of all regular files under `path` (apparent size; hard links counted once)."""
    total = 0
    seen: set[tuple[int, int]] = set()
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    for root, _, files in os.walk(p):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_size
    return total


def files_under(path: Path) -> list[Path]:
    """Regular files under a folder the way `zoostore publish` takes them (hidden ones skipped)."""
    out = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(root) / f for f in sorted(files) if not f.startswith(".")]
    return out


def copy_tree(src: Path, dst: Path) -> None:
    if dst.exists():
        rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".*"))


#: Where `rmtree` moves trees (one per parent folder); `workdir` deletes them at its end.
SET_ASIDE = ".set-aside"
_set_aside = itertools.count()


def rmtree(path: str | os.PathLike[str]) -> None:
    """Clear a tree (or a file) out of the way of the next timed run without freeing its inodes:
    it is moved into a SET_ASIDE folder beside it, its files emptied (their blocks freed), and
    deleted when `workdir` ends. On ext4 without a journal (this VM's root) creating a file
    skips, one lookup each, every inode of its group freed in the last 60 s (300 s while the
    inode table block is unwritten: `recently_deleted` in fs/ext4/ialloc.c), so a run right
    after thousands of files were deleted spends most of its time there (up to 0.5 ms per new
    file), and which tool pays depends on which one's output was deleted last. A user's cold
    sync on a fresh machine pays nothing of the sort. Every tool's runs get the same set-up;
    the file system is flushed (os.sync) so no run pays for another's writeback."""
    p = Path(path)
    if p.is_symlink() or p.is_file() or not p.exists():
        _remove(p)
    else:
        trash = p.parent / SET_ASIDE
        trash.mkdir(exist_ok=True)
        aside = trash / f"{next(_set_aside)}-{p.name}"
        try:
            p.rename(aside)
        except OSError:
            _remove(p)
        else:
            _empty_files(aside)
    os.sync()


def _empty_files(root: Path) -> None:
    # A file with other links loses this one (its inode stays used); the last link is truncated.
    for folder, dirs, files in os.walk(root):
        for name in files:
            f = os.path.join(folder, name)
            st = os.lstat(f)
            if not stat.S_ISREG(st.st_mode):
                continue
            if st.st_nlink > 1:
                os.chmod(folder, 0o700)  # the zoostore cache's folders may be read-only
                os.unlink(f)
            elif st.st_size:
                os.chmod(f, 0o600)
                os.truncate(f, 0)


def _remove(path: str | os.PathLike[str]) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
        return
    if not os.path.exists(path):
        return
    def onerror(func: Callable[..., Any], p: str, _: Any) -> None:
        os.chmod(p, 0o700)
        os.chmod(os.path.dirname(p), 0o700)
        func(p)

    shutil.rmtree(path, onerror=onerror)


@contextmanager
def workdir(base: str | None, prefix: str) -> Iterator[Path]:
    """A temporary working directory (under `base` if given), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    try:
        yield d
    finally:
        _remove(d)


def drop_caches_hint() -> str:
    return ("All files and stores are on the same local disk and stay in the page cache, so the "
            "numbers are CPU-bound throughput, not disk throughput (the same for every tool).")


# ------------------------------------------------------------------------------ tools
def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def tool_version(tool: str) -> str:
    cmd = {"restic": ["restic", "version"], "dvc": ["dvc", "--version"], "git": ["git", "--version"]}.get(
        tool, [tool, "--version"])
    if not have(cmd[0]):
        return "not installed"
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    line = out[0] if out else ""
    m = re.search(r"v?(\d+\.\d+(?:\.\d+)?)", line)
    return m.group(1) if m else line


def restic_env(repo: Path) -> dict[str, str]:
    # A cache directory inside the work dir keeps runs independent of ~/.cache/restic.
    return {"RESTIC_PASSWORD": "zoostore-bench", "RESTIC_REPOSITORY": str(repo),
            "RESTIC_CACHE_DIR": str(repo.parent / (repo.name + "-cache")), "RESTIC_PROGRESS_FPS": "0"}


def restic_init(repo: Path) -> None:
    run(["restic", "init", "-q"], env=restic_env(repo))


def restic_open_seconds(repo: Path, repeat: int = 3) -> float:
    """What opening the repository costs restic (key derivation with scrypt, reading the
    config): the best time of `restic cat config`. Reported so that restic's throughput can
    be read with and without this fixed cost."""
    timing, _ = best_run(repeat, ["restic", "cat", "config", "-q"], env=restic_env(repo))
    return timing.best


# ------------------------------------------------------------------------------ machine
def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB RAM"
    except OSError:
        pass
    versions = {}
    for mod in ("blake3", "zstandard", "pyfastcdc"):
        try:
            from importlib.metadata import version

            versions[mod] = version(mod)
        except Exception:
            versions[mod] = "?"
    try:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical cores",
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "load": load,
    }


def machine_markdown(tools: Iterable[str] = ()) -> str:
    m = machine()
    tv = ", ".join(f"{t} {tool_version(t)}" for t in tools)
    lines = [
        f"- Machine: {m['cpu']}, {m['memory']}, {m['os']}",
        f"- Python {m['python']}; {m['libraries']}",
    ]
    if tv:
        lines.append(f"- Reference tools: {tv}")
    lines.append(f"- Load average when the run started (1, 5, 15 min): {m['load']} "
                 f"(other jobs on the machine slow every tool; best of N is reported)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ S3 on loopback
_MOTO = r"""
import logging, sys
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
sys.stdin.read()
server.stop()
"""


def start_moto() -> tuple[subprocess.Popen[str], str]:
    """moto's S3 server in a child process on 127.0.0.1 (its CPU apart from the benchmark's);
    returns the process (close its stdin to stop it) and the endpoint URL."""
    proc = subprocess.Popen([sys.executable, "-c", _MOTO], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"})
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().strip()
    if not endpoint.startswith("http"):
        proc.kill()
        raise RuntimeError("the moto server did not start; pip install 'moto[server]'")
    return proc, endpoint


def stop_moto(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------ output
def human(n: float) -> str:
    from zoostore.core.units import human_bytes

    return human_bytes(n)


def mbps(nbytes: float, seconds: float) -> str:
    return f"{nbytes / seconds / MB:,.0f}" if seconds > 0 else "n/a"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}" if seconds == seconds else ""  # NaN: not measured


def pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}×" if b else "n/a"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table, columns padded so that it also reads well in a terminal."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def write_markdown(path: Path, title: str, sections: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = f"# {title}\n\n" + "\n\n".join(s.strip("\n") for s in sections if s) + "\n"
    path.write_text(text)
    print(f"\nwrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO) if script.is_relative_to(REPO) else script
    return " ".join(["python", str(shown), *sys.argv[1:]])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ data for report.py
DATA = DOCS / "bench-data"


def record(metric: str, tool: str, values: Sequence[float], *, unit: str, backend: str = "local",
           x: float | None = None, **extra: Any) -> dict[str, Any]:
    """One measured series for bench/report.py: every run's value (the report shows the median
    with min and max), what it measures (`metric`), who (`tool`) and where (`backend`)."""
    out: dict[str, Any] = {"metric": metric, "tool": tool, "backend": backend, "unit": unit,
                           "values": [float(v) for v in values]}
    if x is not None:
        out["x"] = x
    out.update(extra)
    return out


def write_data(name: str, records: Sequence[Mapping[str, Any]], **meta: Any) -> Path:
    """docs/bench-data/<name>.json: the records plus the command, the machine and `meta`."""
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"{name}.json"
    doc = {"name": name, "command": command_line(), "quick": "--quick" in sys.argv,
           "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
           **meta, "records": list(records)}
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return path
