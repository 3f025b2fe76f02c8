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
tests/conftest.py; skipped with the reason where Ceph is missing). Bounded: KILLS kills per
command and backend (`ZOOSTORE_CRASH_KILLS` raises it), each run at most RUN_LIMIT seconds.
Every test prints its figures (`pytest -s` shows them; docs/reliability.md keeps ours).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoostore.cli import main
from zoostore.core.atomic import TEMP_PREFIX
from zoostore.documents.store_config import Chunking, StoreConfig
from zoostore.ops.publish import publish
from zoostore.repository import init_store, open_store
from zoostore.storage.cache import Cache

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
KILLS = int(os.environ.get("ZOOSTORE_CRASH_KILLS", "12"))
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

    def report(self) -> str:
        return (f"{self.command} on {self.backend}: {self.killed} kills, {self.finished} runs finished "
                f"before their kill, temp leftovers after kills: {sum(self.leftovers)}, data lost: zero")


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


def delays(full: float, seed: int, *, start: float | None = None) -> Iterator[float]:
    """Kill moments over the span of one complete run (a little beyond, so that the end of a
    run, its commit and cleanup, is hit too), from `start` (default: 30% in, past most of the
    interpreter's start-up)."""
    rng = random.Random(seed)
    for _ in range(KILLS):
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


def write_dir(d: Path, files: dict[str, bytes]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (d / name).write_bytes(blob)
    return d


def read_version(store: Store, model: str, version: str, out: Path) -> dict[str, bytes]:
    zoo = store.open()
    release = zoo.manifest(model).versions[version]
    got = {}
    for arch, path, entry in release.blobs():
        got[path] = zoo.blobs.get_file(entry.blob, out / f"{time.monotonic_ns()}" / arch / path).read_bytes()
    return got


# -- publish ---------------------------------------------------------------------------------


def test_kill_publish(store: Store, tmp_path: Path) -> None:
    init_store(store.url, config=CONFIG, storage_options=store.options or None)
    tally = Tally("publish", "radosgw" if store.root is None else "local")
    full = run_complete(["publish", store.url, "m", "0.1.0", str(write_dir(tmp_path / "src0", model_files(0))),
                         "--no-check", "-q"])
    for i, delay in enumerate(delays(full, SEED)):
        version, files = f"1.{i}.0", model_files(100 + i)
        src = write_dir(tmp_path / f"src{i}", files)
        args = ["publish", store.url, "m", version, str(src), "--no-check", "-q"]
        if run_and_kill(args, delay, tally):
            tally.leftovers.append(len(temp_files(store.root)))
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
    assert_verified(store)
    zoo = store.open()
    assert sorted(zoo.manifest("m").versions) == sorted(["0.1.0", *(f"1.{i}.0" for i in range(KILLS))])
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
    tally = Tally("sync", "radosgw" if store.root is None else "local")
    calibrate = ["sync", "--project", str(to_new), "--dest", str(tmp_path / "calibrate"), "-q"]
    full = run_complete(calibrate, ZOOSTORE_CACHE=str(tmp_path / "calibrate-cache"))
    # A sync with nothing to do is start-up and reading the state file: kill after that.
    start = run_complete(calibrate, ZOOSTORE_CACHE=str(tmp_path / "calibrate-cache"))
    cache_leftovers = 0
    for i, delay in enumerate(delays(full, SEED + 1, start=start)):
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
        assert dest_files(dest) == new  # no temp file left either
    # `cache prune` removes the temp files of the killed runs from the shared cache.
    monkeypatch.setenv("ZOOSTORE_CACHE", str(shared_cache))
    assert main(["cache", "prune", "--unused"]) == 0
    assert Cache(shared_cache).info().stale_temps == 0
    assert temp_files(shared_cache) == []
    assert_verified(store)
    print(tally.report() + f"; cache temp files seen after kills: {cache_leftovers}; one full run {full:.2f} s")


# -- gc --------------------------------------------------------------------------------------


def test_kill_gc(store: Store, tmp_path: Path) -> None:
    init_store(store.url, config=CONFIG, storage_options=store.options or None)
    zoo = store.open()
    tally = Tally("gc", "radosgw" if store.root is None else "local")
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
    for i, delay in enumerate(delays(full, SEED + 2), start=1):
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
