"""Two real releases of a zoo, side by side with the tools people use instead, on the local
store, on moto and on radosgw.

    python bench/bench_release.py [--repeat 5] [--backends local moto radosgw] [--quick]

Data (bench/wheels.py): the shared libraries of consecutive releases of PyPI wheels (numpy,
onnxruntime, and outside --quick scipy) and, outside --quick, the real float32 all-MiniLM-L6-v2
model with a derived fine-tune of its last layer as release 2: one folder per "model".

On each backend, in this order, each step --repeat times (runs are child processes, timed from
spawn to exit with their own peak RSS; medians with min and max go to the report):
1. ingest release 1: zoostore (`zoostore publish-release`, one command publishing every model
   as 1.0.0 into a fresh store),
   restic backup (fresh repository), and on the local disk `tar | zstd -1 -T0`, `tar | zstd -T0`,
   `cp -a`, `rsync -a`, `b3sum` (hashing alone), casync make, dvc add + push;
2. stored bytes of release 1 (sizes of the stores, repositories and archives);
3. first sync into an empty folder: `zoostore sync --locked` with a cold cache, restic
   restore, and locally `zstd -d | tar -x`, `rsync -a`, `cp -a`, casync extract, dvc pull;
   then the no-op sync;
4. release 2: each model published as 1.1.0 (the increment: new stored bytes), restic backup
   and casync make into the same repository and store, `zstd --patch-from` of every file
   against its release-1 version (the physical reference for a delta), dvc add + push;
5. upgrade: `zoostore lock --upgrade` and sync from a synced release 1 (bytes downloaded),
   `rsync -a --delete` onto release 1 (literal data), casync extract seeded with release 1,
   restic restore, dvc pull.

Writes docs/bench-release.md and docs/bench-data/release.json (bench/report.py plots it).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402
import peers  # noqa: E402
import wheels  # noqa: E402

#: Each file's stored bytes (its recipe's frame lengths), read after the timed publish.
STORED = r"""
import json, sys
from pathlib import Path
from zoostore.repository import open_store
zoo = open_store(sys.argv[1])
files = {}
for model in zoo.models():
    m = zoo.manifest(model)
    for v in m.versions.values():
        for arch_files in v.files.values():
            for name, e in arch_files.items():
                files[model + "/" + name] = sum(ch.length for ch in zoo.blobs.recipe(e.blob).chunks)
print(json.dumps(files))
"""


Argv = list[str] | Callable[[], list[str]]


class Bench:
    """Runs commands several times and keeps every run as a record for the report."""

    def __init__(self, repeat: int, s3_repeat: int) -> None:
        self.repeat = repeat
        self.s3_repeat = s3_repeat
        self.records: list[dict[str, Any]] = []

    def runs(self, tool: str, step: str, backend: str, args: Argv, *, setup: Callable[[], Any] | None = None,
             nbytes: int = 0, repeat: int | None = None, **kw: Any) -> list[c.Proc]:
        """`setup()` (untimed) then `args` (a list, or a function giving it after setup), n times."""
        n = repeat or (self.repeat if backend == "local" else self.s3_repeat)
        procs = []
        for _ in range(n):
            if setup is not None:
                setup()
            procs.append(c.run(args() if callable(args) else args, **kw))
        secs = [p.seconds for p in procs]
        c.log(f"   {backend:8} {step:12} {tool:32} median {sorted(secs)[len(secs) // 2] * 1000:8,.0f} ms")
        self.add(f"{step}_s", tool, secs, "s", backend)
        self.add(f"{step}_rss", tool, [p.max_rss for p in procs], "B", backend)
        self.add(f"{step}_cpu_s", tool, [p.cpu for p in procs], "s", backend)   # user + system
        if nbytes:
            self.add(f"{step}_mbps", tool, [nbytes / s / c.MB for s in secs], "MB/s", backend)
        return procs

    def add(self, metric: str, tool: str, values: list[float], unit: str, backend: str, **extra: Any) -> None:
        self.records.append(c.record(metric, tool, values, unit=unit, backend=backend, **extra))


def bash(cmd: str) -> list[str]:
    return ["bash", "-o", "pipefail", "-c", cmd]


def q(p: Path | str) -> str:
    return shlex.quote(str(p))


def fresh(*paths: Path) -> Callable[[], None]:
    def go() -> None:
        for p in paths:
            c.rmtree(p)
    return go


# ------------------------------------------------------------------------------ zoostore
def zoostore_side(b: Bench, backend: str, work: Path, r1: wheels.Release, r2: wheels.Release,
                  server: peers.S3Server | None) -> None:
    from bench_sync import write_project

    env = {**c.python_env(), "ZOOSTORE_CACHE": str(work / "cache"), **(server.env() if server else {})}
    urls: list[str] = []

    def new_store() -> None:
        if not server and urls:
            c.rmtree(urls[-1])
        url = f"s3://{server.bucket()}/zoo" if server else str(work / f"store-{len(urls)}")
        c.run(c.python_cmd("-m", "zoostore", "init", url), env=env)
        urls.append(url)

    def publish(version: str, rel: wheels.Release) -> list[str]:
        # Native libraries: no ONNX check (what `tar` and restic do not do either).
        return c.python_cmd("-m", "zoostore", "publish-release", urls[-1], version,
                            *[str(rel.root / m) for m in rel.models()],
                            "--arch", platform.machine(), "--no-check", "--json", "-q")

    def new_stored(proc: Any) -> int:
        return sum(m["new_stored_bytes"] for m in json.loads(proc.stdout)["models"])

    procs = b.runs("zoostore publish", "ingest", backend, lambda: publish("1.0.0", r1),
                   setup=new_store, nbytes=r1.size, env=env)
    b.add("stored_first", "zoostore", [new_stored(procs[-1])], "B", backend)
    if backend == "local":
        b.add("stored_first_disk", "zoostore", [c.dir_size(urls[-1])], "B", backend)
        per_file(b, r1, json.loads(c.run(c.python_cmd("-c", STORED, urls[-1]), env=env).stdout))

    proj = work / "project"
    store_path = urls[-1]
    write_project(proj, store_path, r1.models())  # type: ignore[arg-type]
    c.run(c.python_cmd("-m", "zoostore", "lock"), cwd=proj, env=env)
    lock1 = (proj / "zoo.lock").read_text()
    sync = c.python_cmd("-m", "zoostore", "sync", "--locked", "--json")
    b.runs("zoostore sync", "first_sync", backend, sync, setup=fresh(work / "cache", proj / "models"),
           nbytes=r1.size, cwd=proj, env=env)
    b.runs("zoostore sync", "noop_sync", backend, sync, cwd=proj, env=env)

    before = c.dir_size(store_path) if backend == "local" else 0
    inc = b.runs("zoostore publish", "ingest_increment", backend, publish("1.1.0", r2), env=env, repeat=1,
                 nbytes=r2.size)
    b.add("stored_increment", "zoostore", [new_stored(inc[-1])], "B", backend)
    if backend == "local":
        b.add("stored_increment_disk", "zoostore", [c.dir_size(store_path) - before], "B", backend)
    c.run(c.python_cmd("-m", "zoostore", "lock", "--upgrade"), cwd=proj, env=env)
    lock2 = (proj / "zoo.lock").read_text()

    def synced_release_1() -> None:
        fresh(work / "cache", proj / "models")()
        (proj / "zoo.lock").write_text(lock1)
        c.run(sync, cwd=proj, env=env)
        (proj / "zoo.lock").write_text(lock2)

    up = b.runs("zoostore sync", "upgrade", backend, sync, setup=synced_release_1, cwd=proj, env=env)
    b.add("upgrade_bytes", "zoostore", [json.loads(p.stdout)["bytes_downloaded"] for p in up], "B", backend)
    if server:
        return
    c.rmtree(work / "cache")
    c.rmtree(proj)


def per_file(b: Bench, r1: wheels.Release, stored: dict[str, int]) -> None:
    """Each native library's stored bytes next to whole-file `zstd -1` (python-zstandard)."""
    import zstandard

    cctx = zstandard.ZstdCompressor(level=1)
    for key, size in sorted(stored.items()):
        path = r1.root / key
        if ".so" not in path.name or path.stat().st_size < 1 << 20:
            continue
        z = len(cctx.compress(path.read_bytes()))
        b.add("native_vs_zstd1", key, [size / z], "×", "local", raw=path.stat().st_size, zstd1=z, stored=size)


# ------------------------------------------------------------------------------ peers
def restic_side(b: Bench, backend: str, work: Path, r1: wheels.Release, r2: wheels.Release,
                server: peers.S3Server | None) -> None:
    repos: list[str] = []

    def env() -> dict[str, str]:
        e = c.restic_env(work / "restic")
        e["RESTIC_REPOSITORY"] = repos[-1]
        return {**e, **(server.env() if server else {})}

    def new_repo() -> None:
        if not server and repos:
            c.rmtree(repos[-1])
        repos.append(server.restic_repo(server.bucket()) if server else str(work / f"restic-{len(repos)}"))
        c.run(["restic", "init", "-q"], env=env())

    n = b.repeat if backend == "local" else b.s3_repeat
    for _ in range(n):  # a new repository per run; its name (and so the environment) changes
        new_repo()
        b.runs("restic backup", "ingest", backend, ["restic", "backup", "-q", "."], cwd=r1.root, env=env(),
               nbytes=r1.size, repeat=1)
    b.records[-3 * n:] = merge(b.records[-3 * n:])
    if not server:
        b.add("stored_first", "restic", [c.dir_size(repos[-1])], "B", backend)
    dst = work / "restic-dst"
    b.runs("restic restore", "first_sync", backend, ["restic", "restore", "-q", "latest", "--target", str(dst)],
           setup=fresh(dst), nbytes=r1.size, env=env())
    before = c.dir_size(repos[-1]) if not server else 0
    b.runs("restic backup", "ingest_increment", backend, ["restic", "backup", "-q", "."], cwd=r2.root, env=env(),
           nbytes=r2.size, repeat=1)
    if not server:
        b.add("stored_increment", "restic", [c.dir_size(repos[-1]) - before], "B", backend)
    b.runs("restic restore", "upgrade", backend, ["restic", "restore", "-q", "latest", "--target", str(dst)],
           env=env())
    c.rmtree(dst)


def merge(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records of single runs of one tool and step (one per metric each) merged into one per metric."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["metric"] in out:
            out[r["metric"]]["values"] += r["values"]
        else:
            out[r["metric"]] = {**r, "values": list(r["values"])}
    return list(out.values())


def local_peers(b: Bench, work: Path, r1: wheels.Release, r2: wheels.Release) -> None:
    a, z = work / "a", work / "z"
    files = " ".join(q(f) for f in r1.files)
    b.runs("b3sum", "ingest", "local", bash(f"b3sum {files} > /dev/null"), nbytes=r1.size)
    for level, name in (("-1", "tar | zstd -1 -T0"), ("", "tar | zstd -T0")):
        out = work / f"r1{level}.tar.zst"
        b.runs(name, "ingest", "local", bash(f"tar -C {q(r1.root)} -cf - . | zstd {level} -T0 -q -f -o {q(out)}"),
               nbytes=r1.size)
        b.add("stored_first", name.replace(" -T0", ""), [out.stat().st_size], "B", "local")
        inc = work / f"r2{level}.tar.zst"
        c.run(bash(f"tar -C {q(r2.root)} -cf - . | zstd {level} -T0 -q -f -o {q(inc)}"))
        b.add("stored_increment", name.replace(" -T0", "") + " (whole release 2)", [inc.stat().st_size], "B", "local")
    b.runs("cp -a", "ingest", "local", ["cp", "-a", str(r1.root), str(a)], setup=fresh(a), nbytes=r1.size)
    b.runs("rsync -a", "ingest", "local", ["rsync", "-a", f"{r1.root}/", f"{a}/"], setup=fresh(a), nbytes=r1.size)
    b.add("stored_first", "raw files", [r1.size], "B", "local")
    b.add("stored_increment", "raw files (whole release 2)", [r2.size], "B", "local")

    # first sync: from an archive or a copy of release 1 into an empty folder
    tzst = work / "r1-1.tar.zst"
    b.runs("zstd -d | tar -x", "first_sync", "local",
           bash(f"mkdir -p {q(z)} && zstd -d -q -c {q(tzst)} | tar -C {q(z)} -xf -"), setup=fresh(z), nbytes=r1.size)
    b.runs("rsync -a", "first_sync", "local", ["rsync", "-a", f"{r1.root}/", f"{z}/"], setup=fresh(z), nbytes=r1.size)
    b.runs("cp -a", "first_sync", "local", ["cp", "-a", str(r1.root), str(z)], setup=fresh(z), nbytes=r1.size)
    b.runs("rsync -a", "noop_sync", "local", ["rsync", "-a", f"{r1.root}/", f"{z}/"])

    # the increment: a delta of every file against its release-1 version
    patched, secs = 0, 0.0
    for f in r2.files:
        old = r1.root / f.relative_to(r2.root)
        out = work / "patch.zst"
        p = c.run(["zstd", "-q", "-f", "-T0", *(["--patch-from", str(old)] if old.exists() else []), str(f),
                   "-o", str(out)])
        patched += out.stat().st_size
        secs += p.seconds
    b.add("stored_increment", "zstd --patch-from", [patched], "B", "local")
    b.add("ingest_increment_s", "zstd --patch-from", [secs], "s", "local")

    # upgrade: release 1 in place, release 2 arrives
    def at_release_1() -> None:
        c.rmtree(z)
        c.run(["cp", "-a", str(r1.root), str(z)])

    up = b.runs("rsync -a --delete", "upgrade", "local", ["rsync", "-a", "--delete", "--stats", f"{r2.root}/", f"{z}/"],
                setup=at_release_1)
    from bench_sync import rsync_bytes

    b.add("upgrade_bytes", "rsync -a (literal data)", [rsync_bytes(p.stdout) for p in up], "B", "local")
    c.rmtree(z)
    c.rmtree(a)


def paired(b: Bench, work: Path, r1: wheels.Release, rounds: int) -> None:
    """The two time targets again, each tool alternating with its peer round by round: zoostore
    publish with `tar | zstd -1 -T0`, zoostore's first sync with `rsync -a`. The blocks above run
    each tool n times in a row, so a machine that slows down for a minute (shared cores) moves
    one tool's median and not the other's; here a slow minute slows both. The report takes its
    verdict on these two targets from these pairs (metrics `*_paired_*`). 4 × --repeat + 1
    rounds (21 by default, ~25 s more than 11): both targets sit near their lines, and with 11
    rounds publish's median per-round ratio was 0.86-0.94 in five runs of this script."""
    from bench_sync import write_project

    work.mkdir(parents=True, exist_ok=True)
    env = {**c.python_env(), "ZOOSTORE_CACHE": str(work / "cache")}
    store, proj, z, tzst = work / "store", work / "project", work / "z", work / "r1.tar.zst"
    models = [str(r1.root / m) for m in r1.models()]
    publish = c.python_cmd("-m", "zoostore", "publish-release", str(store), "1.0.0", *models,
                           "--arch", platform.machine(), "--no-check", "--json", "-q")
    tar = bash(f"tar -C {q(r1.root)} -cf - . | zstd -1 -T0 -q -f -o {q(tzst)}")
    sync = c.python_cmd("-m", "zoostore", "sync", "--locked", "--json")
    rsync = ["rsync", "-a", f"{r1.root}/", f"{z}/"]

    def new_store() -> None:
        c.rmtree(store)
        c.run(c.python_cmd("-m", "zoostore", "init", str(store)), env=env)

    times: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], list[float]] = {}

    def timed(key: tuple[str, str], proc: c.Proc) -> None:
        times.setdefault(key, []).append(proc.seconds)
        cpu.setdefault(key, []).append(proc.cpu)

    c.log(f"== local: publish and first sync alternating with their peers, {rounds} rounds")
    for _ in range(rounds):
        new_store()
        timed(("ingest", "zoostore publish"), c.run(publish, env=env))
        tzst.unlink(missing_ok=True)
        timed(("ingest", "tar | zstd -1 -T0"), c.run(tar))
    if not proj.exists():
        write_project(proj, store, r1.models())
        c.run(c.python_cmd("-m", "zoostore", "lock"), cwd=proj, env=env)
    for _ in range(rounds):
        fresh(work / "cache", proj / "models")()
        timed(("first_sync", "zoostore sync"), c.run(sync, cwd=proj, env=env))
        fresh(z)()
        timed(("first_sync", "rsync -a"), c.run(rsync))
    for (step, tool), secs in times.items():
        c.log(f"   local    {step}_paired {tool:32} median {sorted(secs)[len(secs) // 2] * 1000:8,.0f} ms")
        b.add(f"{step}_paired_s", tool, secs, "s", "local")
        b.add(f"{step}_paired_cpu_s", tool, cpu[(step, tool)], "s", "local")
        if step == "ingest":
            b.add(f"{step}_paired_mbps", tool, [r1.size / s / c.MB for s in secs], "MB/s", "local")
    for p in (store, proj, z, work / "cache"):
        c.rmtree(p)
    tzst.unlink(missing_ok=True)


def casync_side(b: Bench, work: Path, r1: wheels.Release, r2: wheels.Release) -> None:
    store, idx1, idx2, z = work / "castr", work / "r1.caidx", work / "r2.caidx", work / "ca-dst"
    make = ["casync", "make", "--compression=zstd", f"--store={store}"]
    b.runs("casync make", "ingest", "local", [*make, str(idx1), str(r1.root)], setup=fresh(store, idx1),
           nbytes=r1.size)
    b.add("stored_first", "casync", [c.dir_size(store) + idx1.stat().st_size], "B", "local")
    extract = ["casync", "extract", f"--store={store}"]
    b.runs("casync extract", "first_sync", "local", [*extract, str(idx1), str(z)], setup=fresh(z), nbytes=r1.size)
    before = c.dir_size(store)
    b.runs("casync make", "ingest_increment", "local", [*make, str(idx2), str(r2.root)], repeat=1, nbytes=r2.size)
    b.add("stored_increment", "casync", [c.dir_size(store) - before + idx2.stat().st_size], "B", "local")
    seed = work / "ca-seed"
    c.rmtree(seed)
    c.run(["cp", "-a", str(r1.root), str(seed)])
    b.runs("casync extract --seed", "upgrade", "local", [*extract, f"--seed={seed}", str(idx2), str(z)],
           setup=fresh(z))
    for p in (store, z, seed):
        c.rmtree(p)


def dvc_side(b: Bench, work: Path, dvc: str, r1: wheels.Release, r2: wheels.Release) -> None:
    prod, cons, remote = work / "dvc-prod", work / "dvc-cons", work / "dvc-remote"
    env = {"DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.invalid",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@example.invalid"}

    def producer() -> None:
        fresh(prod, remote)()
        prod.mkdir()
        remote.mkdir()
        for cmd in (["git", "init", "-q"], [dvc, "init", "-q"], [dvc, "remote", "add", "-d", "r", str(remote)]):
            c.run(cmd, cwd=prod, env=env)
        c.run(["cp", "-a", str(r1.root), str(prod / "zoo")])

    b.runs("dvc add + push", "ingest", "local", bash(f"{q(dvc)} add -q zoo && {q(dvc)} push -q"), setup=producer,
           cwd=prod, env=env, nbytes=r1.size)
    b.add("stored_first", "dvc remote", [c.dir_size(remote)], "B", "local")
    c.run(["git", "add", "-A"], cwd=prod, env=env)
    c.run(["git", "commit", "-q", "-m", "r1"], cwd=prod, env=env)

    def consumer() -> None:
        c.rmtree(cons)
        c.run(["git", "clone", "-q", str(prod), str(cons)], env=env)

    b.runs("dvc pull", "first_sync", "local", [dvc, "pull", "-q"], setup=consumer, cwd=cons, env=env, nbytes=r1.size)
    b.runs("dvc pull", "noop_sync", "local", [dvc, "pull", "-q"], cwd=cons, env=env)
    before = c.dir_size(remote)
    c.rmtree(prod / "zoo")
    c.run(["cp", "-a", str(r2.root), str(prod / "zoo")])
    b.runs("dvc add + push", "ingest_increment", "local", bash(f"{q(dvc)} add -q zoo && {q(dvc)} push -q"),
           cwd=prod, env=env, repeat=1, nbytes=r2.size)
    b.add("stored_increment", "dvc remote", [c.dir_size(remote) - before], "B", "local")
    c.run(["git", "add", "-A"], cwd=prod, env=env)
    c.run(["git", "commit", "-q", "-m", "r2"], cwd=prod, env=env)
    c.run(["git", "pull", "-q"], cwd=cons, env=env)
    cache = cons / ".dvc" / "cache"
    before = c.dir_size(cache)
    b.runs("dvc pull", "upgrade", "local", [dvc, "pull", "-q"], cwd=cons, env=env, repeat=1)
    b.add("upgrade_bytes", "dvc pull (cache growth)", [c.dir_size(cache) - before], "B", "local")
    for p in (prod, cons, remote):
        c.rmtree(p)


# ------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement on the local disk (median, min, max)")
    ap.add_argument("--s3-repeat", type=int, default=3, help="runs per measurement on moto and radosgw")
    ap.add_argument("--backends", nargs="+", choices=["local", "moto", "radosgw"], default=["local", "moto", "radosgw"])
    ap.add_argument("--no-model", action="store_true", help="leave out all-MiniLM-L6-v2 and its fine-tune")
    ap.add_argument("--no-dvc", action="store_true", help="leave out dvc (it installs into its own venv)")
    ap.add_argument("--quick", action="store_true", help="numpy + onnxruntime only (no model), 3 runs (2 on S3)")
    ap.add_argument("--out", type=Path, default=c.DOCS / "bench-release.md")
    ap.add_argument("--workdir", help="where releases, stores and repositories go")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat, args.s3_repeat = min(args.repeat, 3), min(args.s3_repeat, 2)
    started = time.time()
    b = Bench(args.repeat, args.s3_repeat)
    dvc = None if args.no_dvc else peers.dvc_bin()
    skipped: dict[str, str] = {}
    with c.workdir(args.workdir, "zoostore-bench-release-") as work:
        c.log("== data: two releases from PyPI wheels")
        r1, r2, inputs = wheels.build(work / "data", wheels.QUICK if args.quick else wheels.FULL,
                                      model=not (args.no_model or args.quick))
        sizes, counts = [r1.size, r2.size], [len(r1.files), len(r2.files)]
        c.log(f"   release 1: {len(r1.files)} files, {r1.size / c.MB:,.0f} MB; release 2: {len(r2.files)} files, "
              f"{r2.size / c.MB:,.0f} MB")
        for backend in args.backends:
            why = None if backend == "local" else peers.S3Server.available(backend)
            if why:
                skipped[backend] = why
                c.log(f"== {backend}: skipped ({why})")
                continue
            c.log(f"== {backend}")
            server = None if backend == "local" else peers.S3Server(backend, work).start()
            try:
                zoostore_side(b, backend, work / backend, r1, r2, server)
                if c.have("restic"):
                    restic_side(b, backend, work / backend, r1, r2, server)
                if backend == "local":
                    local_peers(b, work / "local", r1, r2)
                    paired(b, work / "local" / "paired", r1, 4 * args.repeat + 1)
                    if c.have("casync"):
                        casync_side(b, work / "local", r1, r2)
                    if dvc and c.have("git"):
                        dvc_side(b, work / "local", dvc, r1, r2)
            finally:
                if server is not None:
                    server.stop()
    tools = peers.versions()
    meta = {"inputs": inputs, "tools": tools, "skipped": skipped, "seconds": time.time() - started,
            "release_bytes": sizes, "release_files": counts,
            "repeat": args.repeat, "s3_repeat": args.s3_repeat}
    c.write_data("release", b.records, **meta)
    import report

    c.write_markdown(args.out, "Benchmark: two real releases, side by side", [
        f"Generated by `{c.command_line()}` in one run ({meta['seconds'] / 60:.1f} min); medians with "
        f"[min–max] of {args.repeat} runs on the local disk, {args.s3_repeat} on S3. Plots and ratios: "
        f"[benchmarks.md](benchmarks.md).",
        c.machine_markdown(),
        report.tools_markdown(tools),
        report.inputs_markdown(inputs),
        *(f"{k}: skipped ({v})" for k, v in skipped.items()),
        report.tables_markdown(b.records),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
