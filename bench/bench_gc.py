"""gc on a large store: wall time, peak memory and requests, on a local directory and on S3.

    python bench/bench_gc.py [--blobs 10000] [--packs 1000] [--models 100] [--backends local moto radosgw]
    python bench/bench_gc.py --quick      # 1,000 blobs in 100 packs: under a minute

The store is synthetic, written directly with PackBuilder and Recipe (publishing 10,000 files
would measure publish, not gc): `--models` models with blobs/models versions each, one file per
version, each file one chunk of --chunk bytes; packs hold blobs/packs consecutive versions of one
model, with footers listing their files as publish writes them; 1% of the packs are orphans (a
failed publish). gc keeps versions >= 1.45.0 of every model (`--keep MODEL@>=1.45.0` x models):
55% of the versions stay, whole packs die, and the packs of versions 1.40-1.49 are half dead.

Runs, each in a fresh child process (peak RSS is the child's, taken with wait4), all objects
older than the grace period (`plan_gc(now=...)`, the test hook, since S3 mtimes cannot be set):
- open: import zoostore and open the store (the memory floor of every other row);
- plan: `plan_gc` only, what `gc --dry-run` does;
- gc: plan and execute (drop 45% of the versions, delete their recipes and packs);
- gc again: the same keep rules on the collected store (the steady state: nothing to delete);
- gc --repack: plan and execute with --repack on a fresh copy (rewrites the half-dead packs).

Requests are counted by a Backend wrapper around the store's backend: calls per method, and for
S3 the HTTP requests they cost (list: one per 1,000 keys; delete: one per 1,000 keys; now: 3).
S3 is moto's server in its own process on 127.0.0.1, and Ceph's radosgw (a one-node cluster,
zoostore.testing.radosgw, where its Debian packages are installed), so latency is loopback, not
AWS: request counts carry over to AWS, wall times do not. moto spends about 0.2 ms of CPU per
key it lists and answers every request with `Connection: close`; radosgw keeps connections.
Prints the table and writes --out (docs/bench-gc.md).
"""

from __future__ import annotations

import argparse
import builtins
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402
import peers  # noqa: E402

from zoostore.storage.backends.base import Backend, ObjectInfo, Versioned  # noqa: E402

DAY = 86400.0
KEEP_FROM = 45  # of 100 versions per model: versions 1.45.0 and up stay


class CountingBackend(Backend):
    """Delegates every call to `inner` and counts it (thread-safe)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.url = inner.url
        self.capabilities = inner.capabilities
        self.calls: Counter[str] = Counter()
        self.seconds: dict[str, float] = defaultdict(float)  # wall time inside each method, summed over threads
        self.listed: list[int] = []  # objects returned per list call
        self.deleted: list[int] = []  # keys per delete call
        self._lock = threading.Lock()

    def _n(self, name: str) -> None:
        with self._lock:
            self.calls[name] += 1

    def _t(self, name: str, t0: float) -> None:
        with self._lock:
            self.seconds[name] += time.perf_counter() - t0

    def get(self, key: str) -> bytes:
        self._n("get")
        t0 = time.perf_counter()
        try:
            return self.inner.get(key)
        finally:
            self._t("get", t0)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        self._n("get_range")
        t0 = time.perf_counter()
        try:
            return self.inner.get_range(key, start, end)
        finally:
            self._t("get_range", t0)

    def stat(self, key: str) -> ObjectInfo:
        self._n("stat")
        t0 = time.perf_counter()
        try:
            return self.inner.stat(key)
        finally:
            self._t("stat", t0)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self._n("put_if_absent")
        t0 = time.perf_counter()
        try:
            return self.inner.put_if_absent(key, data)
        finally:
            self._t("put_if_absent", t0)

    def get_versioned(self, key: str) -> Versioned:
        self._n("get_versioned")
        t0 = time.perf_counter()
        try:
            return self.inner.get_versioned(key)
        finally:
            self._t("get_versioned", t0)

    def put_cas(self, key: str, data: bytes, *, expected: str | None) -> str:
        self._n("put_cas")
        t0 = time.perf_counter()
        try:
            return self.inner.put_cas(key, data, expected=expected)
        finally:
            self._t("put_cas", t0)

    def put(self, key: str, data: bytes) -> None:
        self._n("put")
        t0 = time.perf_counter()
        try:
            self.inner.put(key, data)
        finally:
            self._t("put", t0)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._n("list")
        n = 0
        it = iter(self.inner.list(prefix))
        while True:
            t0 = time.perf_counter()
            try:
                info = next(it)
            except StopIteration:
                break
            finally:
                self._t("list", t0)
            n += 1
            yield info
        with self._lock:
            self.listed.append(n)

    def list_pages(self, prefix: str) -> Iterator[builtins.list[ObjectInfo]]:
        self._n("list")
        pages = 0
        it = iter(self.inner.list_pages(prefix))
        try:
            while True:
                t0 = time.perf_counter()
                try:
                    page = next(it)
                except StopIteration:
                    break
                finally:
                    self._t("list", t0)
                pages += 1
                yield page
        finally:  # gc stops early once it has seen every candidate
            with self._lock:
                self.listed.append(max(0, pages - 1) * 1000 + 1)  # counts as `pages` requests

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self._n("delete")
        with self._lock:
            self.deleted.append(len(keys))
        t0 = time.perf_counter()
        try:
            self.inner.delete(keys)
        finally:
            self._t("delete", t0)

    def freshen(self, key: str) -> None:
        self._n("freshen")
        t0 = time.perf_counter()
        try:
            self.inner.freshen(key)
        finally:
            self._t("freshen", t0)

    def now(self) -> float:
        self._n("now")
        return self.inner.now()

    def http_requests(self) -> int:
        """What the calls cost as S3 requests (gets, HEADs, PUTs one each; see module doc)."""
        plain = sum(n for k, n in self.calls.items() if k not in ("list", "delete", "now", "put"))
        pages = sum(max(1, math.ceil(n / 1000)) for n in self.listed)
        deletes = sum(math.ceil(n / 1000) for n in self.deleted if n)
        return plain + pages + deletes + 3 * self.calls["now"] + 2 * self.calls["put"]


# ------------------------------------------------------------------------------ the store
def build_store(url: str, options: dict[str, Any], *, blobs: int, packs: int, models: int, chunk: int) -> dict[str, int]:
    """Write the synthetic store (see the module docstring); returns its counts."""
    from zoostore.storage import codec
    from zoostore.documents.store_config import StoreConfig
    from zoostore.core.digest import Digest
    from zoostore.documents.manifest import FileEntry, Manifest, Release, manifest_key, now_utc
    from zoostore.storage.pack import FileList, PackBuilder, pack_key
    from zoostore.storage.recipe import ChunkRef, Recipe, blob_key
    from zoostore.repository import init_store

    zoo, _ = init_store(url, config=StoreConfig(pack_target_size=32 * c.MiB), storage_options=options)
    per_pack = blobs // packs
    versions = blobs // models
    orphan_packs = max(1, packs // 100)
    rng = random.Random(0)
    uploads: list[tuple[str, bytes]] = []
    releases: dict[str, dict[str, Release]] = {f"m{m:03d}": {} for m in range(models)}
    published = now_utc()
    for p in range(packs + orphan_packs):
        builder = PackBuilder()
        placed = []
        for _ in range(per_pack):
            data = rng.randbytes(chunk)
            blob = Digest.of(data)  # a one-chunk file: blob id = chunk id
            frame = codec.encode(data, codec.RAW)
            placed.append((blob, builder.add(blob, frame, len(data)), len(frame)))
        builder.add_file_list([FileList(b, chunk, ((b, chunk),)) for b, _, _ in placed])
        pack_id, pack_data, _ = builder.finish()
        uploads.append((pack_key(pack_id), pack_data))
        for j, (blob, offset, length) in enumerate(placed):
            uploads.append((blob_key(blob), Recipe(blob, chunk, (ChunkRef(blob, chunk, pack_id, offset, length),)).encode()))
            index = p * per_pack + j
            if p < packs:
                model, version = f"m{index // versions:03d}", f"1.{index % versions}.0"
                releases[model][version] = Release(model=model, version=version, published=published,
                                                   files={"any": {"w.bin": FileEntry(blob, chunk)}})
    for model, rel in releases.items():
        uploads.append((manifest_key(model), Manifest(model=model, versions=rel).to_toml().encode()))
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda kv: zoo.backend.put_if_absent(*kv), uploads))
    return {"recipes": blobs + orphan_packs * per_pack, "packs": packs + orphan_packs, "models": models,
            "versions": blobs, "bytes": sum(len(d) for _, d in uploads)}


def keep_rules(models: int) -> list[str]:
    return [f"m{m:03d}@>=1.{KEEP_FROM}.0" for m in range(models)]


# ------------------------------------------------------------------------------ child runs
def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One measured run, in this (fresh) process."""
    t0 = time.perf_counter()
    from zoostore.ops.gc import plan_gc
    from zoostore.repository import open_store
    from zoostore.repository import Store

    opened = open_store(spec["url"], storage_options=spec["options"])
    counting = CountingBackend(opened.backend)
    zoo = Store(counting, opened.config)
    out: dict[str, Any] = {"import_open": time.perf_counter() - t0}
    if spec["mode"] == "open":
        zoo.models()
        out["calls"] = dict(counting.calls)
        out["requests"] = counting.http_requests()
        return out
    t1 = time.perf_counter()
    plan = plan_gc(zoo, keep=spec["keep"], repack=spec["repack"], now=spec["now"])
    out["plan_s"] = time.perf_counter() - t1
    out["plan_requests"] = counting.http_requests()
    out["dropped"] = len(plan.dropped_versions)
    out["recipes"] = len(plan.recipes)
    out["packs"] = len(plan.packs)
    out["repacks"] = len(plan.repacks)
    out["bytes"] = plan.bytes_to_delete
    if spec["mode"] != "plan":
        t2 = time.perf_counter()
        result = plan.execute()
        out["execute_s"] = time.perf_counter() - t2
        out["recipes_deleted"] = result.recipes_deleted
        out["packs_deleted"] = result.packs_deleted
        out["packs_repacked"] = result.packs_repacked
        out["recipes_rewritten"] = result.recipes_rewritten
    out["calls"] = dict(counting.calls)
    out["seconds"] = dict(counting.seconds)
    out["requests"] = counting.http_requests()
    return out


def measure(spec: dict[str, Any], work: Path, *, profile: Path | None = None) -> tuple[dict[str, Any], int]:
    """Run `spec` in a fresh child; with `profile`, under `py-spy record` (raw collapsed stacks
    written there; sampling at 100 Hz without pausing the child, so the wall time barely moves)."""
    path = work / f"spec-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(spec))
    cmd = c.python_cmd(str(Path(__file__).resolve()), "--child", str(path))
    if profile is not None:
        cmd = [py_spy(), "record", "--nonblocking", "--format", "raw", "-r", "100", "-o", str(profile), "--", *cmd]
    # A cache of its own: the gc recipe cache must start cold, whatever ran before.
    proc = c.run(cmd, env={**c.python_env(), "ZOOSTORE_CACHE": str(work / "cache")})
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]  # py-spy talks too
    return json.loads(last), proc.max_rss


def profile_markdown(label: str, raw: Path) -> str:
    rows = [[f"`{f}`", f"{own:.1f}", f"{anywhere:.1f}"] for f, own, anywhere in top_frames(raw)]
    return (f"py-spy of the {label} run (`--profile`; 100 Hz, active threads only, so time spent "
            f"waiting on the network is not in it): the functions most often on top of a stack, "
            f"with the share of samples where they are anywhere on it.\n\n"
            + c.table(["function (file)", "% own", "% anywhere"], rows))


def py_spy() -> str:
    import shutil

    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).exists():
        raise SystemExit("--profile needs py-spy (pip install py-spy)")
    return found


def top_frames(raw: Path, n: int = 12) -> list[tuple[str, float, float]]:
    """(function (file), % of samples where it is on top, % where it is anywhere on the stack),
    the `n` largest by own share, from py-spy's raw collapsed stacks ("f (file:line);g (...) N")."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_frame_name(f) for f in stack.split(";")]
        total += int(count)
        own[frames[-1]] += int(count)
        for f in set(frames):
            anywhere[f] += int(count)
    return [(f, 100 * k / total, 100 * anywhere[f] / total) for f, k in own.most_common(n)] if total else []


def _frame_name(frame: str) -> str:
    """"get (zoostore/storage/backends/s3.py:212)" -> "get (zoostore/storage/backends/s3.py)"."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in where:
            where = where.split(marker, 1)[1]
    where = where.replace(str(c.REPO) + "/", "")
    return f"{name} ({where})"


# ------------------------------------------------------------------------------ main
def s3_location(server: peers.S3Server, name: str) -> tuple[str, dict[str, Any]]:
    import boto3

    boto3.client("s3", endpoint_url=server.endpoint, aws_access_key_id=server.key,
                 aws_secret_access_key=server.secret, region_name="us-east-1").create_bucket(Bucket=name)
    options = {"key": server.key, "secret": server.secret,
               "client_kwargs": {"endpoint_url": server.endpoint, "region_name": "us-east-1"}}
    return f"s3://{name}/zoo", options


def calls_text(calls: dict[str, int], seconds: dict[str, float]) -> str:
    """"list 9 (1.20 s), get 100 (0.31 s)": calls per method and the wall time spent in them
    (summed over threads, so calls made 16 at a time can add up to more than the run)."""
    order = ["list", "get", "get_range", "stat", "delete", "put_if_absent", "put", "freshen", "get_versioned",
             "put_cas", "now"]
    return ", ".join(f"{k} {calls[k]:,}" + (f" ({seconds[k]:.2f} s)" if k in seconds else "")
                     for k in order if calls.get(k))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blobs", type=int, default=10_000)
    ap.add_argument("--packs", type=int, default=1_000)
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=2048, help="bytes per file (one chunk each)")
    ap.add_argument("--backends", nargs="+", choices=["local", "moto", "radosgw", "s3"],
                    default=["local", "moto", "radosgw"],
                    help="where the store is (s3 = moto); radosgw is skipped where it cannot run")
    ap.add_argument("--quick", action="store_true", help="1,000 blobs in 100 packs, 10 models")
    ap.add_argument("--work", help="scratch directory (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=c.DOCS / "bench-gc.md")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="run the S3 'gc' row under py-spy, keep its raw stacks in DIR and add its top entries to --out")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(Path(args.child).read_text()))))
        return 0
    if args.quick:
        args.blobs, args.packs, args.models = 1_000, 100, 10
    if args.blobs % args.packs or args.blobs % args.models or args.blobs // args.models != 100:
        ap.error("--blobs must be a multiple of --packs, and --blobs / --models must be 100 (versions per model)")

    rows: list[list[Any]] = []
    records: list[dict[str, Any]] = []
    details: list[str] = []
    profiles: list[str] = []
    now = time.time() + 2 * DAY  # every object is older than the 24 h grace period
    servers: list[peers.S3Server] = []
    backends = list(dict.fromkeys("moto" if b == "s3" else b for b in args.backends))
    with c.workdir(args.work, "bench-gc-") as work:
        try:
            for backend in backends:
                if backend != "local" and (why := peers.S3Server.available(backend)):
                    c.log(f"{backend}: skipped ({why})")
                    continue
                server = peers.S3Server(backend, work).start() if backend != "local" else None
                if server is not None:
                    servers.append(server)

                def location(name: str) -> tuple[str, dict[str, Any]]:
                    if server is None:
                        return str(work / name), {}
                    return s3_location(server, f"bench-gc-{name}-{os.getpid()}")

                for name in ("main", "repack"):
                    url, options = location(name)
                    c.log(f"{backend}: writing {args.blobs:,} recipes in {args.packs:,} packs to {url} ...")
                    t0 = time.perf_counter()
                    counts = build_store(url, options, blobs=args.blobs, packs=args.packs, models=args.models,
                                         chunk=args.chunk)
                    c.log(f"  {counts['recipes']:,} recipes, {counts['packs']:,} packs, "
                          f"{c.human(counts['bytes'])} in {time.perf_counter() - t0:.1f} s")
                    base = {"url": url, "options": options, "keep": keep_rules(args.models), "now": now}
                    steps = ([("open", "open"), ("plan (--dry-run)", "plan"), ("gc", "gc"), ("gc again", "gc")]
                             if name == "main" else [("gc --repack", "gc")])
                    for label, mode in steps:
                        c.log(f"  {label} ...")
                        raw = args.profile / f"py-spy-{backend}-{mode}.txt" if (
                            args.profile and backend != "local" and label == "gc") else None
                        if raw is not None:
                            raw.parent.mkdir(parents=True, exist_ok=True)
                        res, rss = measure({**base, "mode": mode, "repack": name == "repack"}, work, profile=raw)
                        if raw is not None:
                            profiles.append(profile_markdown(f"{backend}, {label}", raw))
                        wall = res.get("plan_s", 0.0) + res.get("execute_s", 0.0)
                        effect = ""
                        if mode == "plan":
                            effect = (f"would drop {res['dropped']:,} versions, delete {res['recipes']:,} "
                                      f"recipes + {res['packs']:,} packs ({c.human(res['bytes'])})")
                        elif mode == "gc":
                            effect = (f"dropped {res['dropped']:,}, deleted {res['recipes_deleted']:,} recipes + "
                                      f"{res['packs_deleted']:,} packs")
                            if res.get("packs_repacked"):
                                effect += (f", repacked {res['packs_repacked']:,} packs "
                                           f"({res['recipes_rewritten']:,} recipes rewritten)")
                        if mode != "open":
                            where = backend
                            records.append(c.record("gc_s", f"{label}, {args.blobs:,} blobs", [wall], unit="s",
                                                    backend=where, requests=res["requests"]))
                            records.append(c.record("gc_rss", f"{label}, {args.blobs:,} blobs", [rss], unit="B",
                                                    backend=where))
                        rows.append([backend, label,
                                     f"{wall:.2f}" if mode != "open" else f"({res['import_open']:.2f})",
                                     f"{res.get('plan_s', 0):.2f}" if mode != "open" else "",
                                     f"{res['execute_s']:.2f}" if "execute_s" in res else "",
                                     f"{rss / c.MiB:.0f}", f"{res['requests']:,}", effect])
                        details.append(f"- {backend}, {label}: {calls_text(res['calls'], res.get('seconds', {}))}")
        finally:
            for server in servers:
                server.stop()

    c.write_data("gc", records, blobs=args.blobs, packs=args.packs)
    headers = ["backend", "run", "wall s", "plan s", "execute s", "peak RSS MiB", "requests", "effect"]
    text = c.table(headers, rows)
    print()
    print(text)
    c.write_markdown(args.out, "Benchmark: gc", [
        f"Generated by `{c.command_line()}`.",
        c.machine_markdown(),
        f"Store: {args.blobs:,} blobs (one {args.chunk:,}-byte chunk each) in {args.packs:,} packs, "
        f"{args.models} models x {args.blobs // args.models} versions, plus 1% orphan packs and "
        f"recipes (a failed publish). gc keeps `MODEL@>=1.{KEEP_FROM}.0` for every model. Every row "
        f"is one run in a fresh process (a gc changes the store, so rows are not best of N); *peak RSS* is its maximum resident set (interpreter and imports "
        f"included: compare with the *open* row); *requests* are S3 requests the backend calls cost "
        f"(list and delete: one per 1,000 keys; for the local backend the same count stands for "
        f"file system operations). S3 is moto or radosgw on loopback: their wall times are not "
        f"AWS's, their request counts are. See the module docstring of bench/bench_gc.py for the method.",
        text,
        "Backend calls per run, with the wall time spent in each kind (summed over threads: calls "
        "made 16 at a time add up to more than the run):\n\n" + "\n".join(details),
        *profiles,
        "Reading the numbers: a gc run lists packs/ and blobs/ (11 and 2 list pages for this "
        "store; execute lists them again only when the manifests changed since the plan), reads every recipe it keeps once (one GET each, 16 at a time; the *plan* row "
        "starts with a cold recipe cache, later rows find what it read in the machine's cache, "
        "docs/gc.md), reads the manifests and drops versions 16 models at a time, and looks at "
        "every deletion candidate once more right before deleting it (the safety re-check, "
        "docs/gc.md): here by listing blobs/ and packs/ again, one request per 1,000 objects, and "
        "deleting each page's old candidates in one request, instead of one stat per candidate. "
        "`gc --dry-run` costs the listings and reads without the re-check and the deletes. "
        "`gc --repack` reads recipes without the cache (it needs every frame, which the cache "
        "does not keep), then per repacked pack a stat, a read and a freshen, per affected "
        "recipe a read and a write. Memory grows with the number of recipes and packs kept in "
        "the index (tens of bytes per pack reference), not with their sizes.",
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
