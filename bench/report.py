"""docs/benchmarks.md and its plots (docs/img/*.png) from the results in docs/bench-data/*.json.

    python bench/report.py            # after bench/run_all.py (which calls this at the end)

Every figure is the median of the runs of one script, with min and max; every comparison is a
ratio of two medians from the same run. Plots need matplotlib (`pip install -e '.[bench]'`);
without it the report is written with its tables only.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

IMG = c.DOCS / "img"
Record = dict[str, Any]

TITLES = {
    "ingest_mbps": "Ingest (publish) of release 1, MB/s",
    "ingest_s": "Ingest (publish) of release 1, seconds",
    "ingest_rss": "Ingest of release 1, peak RSS",
    "ingest_increment_s": "Ingest of release 2 (the increment), seconds",
    "ingest_increment_mbps": "Ingest of release 2, MB/s",
    "ingest_increment_rss": "Ingest of release 2, peak RSS",
    "stored_first": "Stored bytes, release 1",
    "stored_first_disk": "Bytes on disk, release 1 (frames, pack footers, recipes, manifests)",
    "stored_increment": "Stored bytes added by release 2",
    "stored_increment_disk": "Bytes on disk added by release 2",
    "first_sync_s": "First sync into an empty folder, seconds",
    "first_sync_mbps": "First sync, MB/s",
    "first_sync_rss": "First sync, peak RSS",
    "noop_sync_s": "No-op sync, seconds",
    "noop_sync_rss": "No-op sync, peak RSS",
    "upgrade_s": "Upgrade release 1 -> 2, seconds",
    "ingest_cpu_s": "Ingest (publish) of release 1, CPU seconds (user + system)",
    "first_sync_cpu_s": "First sync, CPU seconds (user + system)",
    "upgrade_rss": "Upgrade, peak RSS",
    "upgrade_bytes": "Upgrade, bytes downloaded",
    "native_vs_zstd1": "Native libraries: zoostore stored / whole-file zstd -1",
    "small_cold_s": "Cold sync of N files of 4 KiB, seconds",
    "small_noop_s": "No-op sync of N files of 4 KiB, seconds",
    "gc_s": "gc wall time, seconds",
    "gc_rss": "gc peak RSS",
    "read_us": "zoo:// random 4 KiB read, µs per read",
}


# ------------------------------------------------------------------------------ numbers
def med(r: Record) -> float:
    return float(statistics.median(r["values"]))


def fmt(v: float, unit: str) -> str:
    if v != v:
        return "n/a"
    if unit == "B":
        return c.human(v)
    if unit == "s":
        return f"{v * 1000:,.0f} ms" if v < 10 else f"{v:,.1f} s"
    if unit == "MB/s":
        return f"{v:,.0f} MB/s"
    if unit == "µs":
        return f"{v:,.0f} µs"
    if unit == "×":
        return f"{v:.2f}×"
    return f"{v:,.3g} {unit}"


def spread(r: Record) -> str:
    vals = r["values"]
    if len(vals) == 1:
        return fmt(vals[0], r["unit"]) + " (1 run)"
    return f"{fmt(med(r), r['unit'])} [{fmt(min(vals), r['unit'])}–{fmt(max(vals), r['unit'])}]"


def find(records: Iterable[Record], metric: str, tool: str, backend: str = "local",
         x: float | None = None) -> Record | None:
    for r in records:
        if r["metric"] == metric and r["tool"] == tool and r["backend"] == backend and (x is None or r.get("x") == x):
            return r
    return None


def ratio(records: Sequence[Record], metric: str, a: str, b: str, backend: str = "local") -> float:
    ra, rb = find(records, metric, a, backend), find(records, metric, b, backend)
    return med(ra) / med(rb) if ra and rb and med(rb) else float("nan")


def round_ratios(records: Sequence[Record], metric: str, a: str, b: str) -> list[float]:
    """For alternating runs (round i of `a` beside round i of `b`): each round's ratio; [] without
    paired rounds."""
    ra, rb = find(records, metric, a), find(records, metric, b)
    if not ra or not rb or len(ra["values"]) != len(rb["values"]) or not all(rb["values"]):
        return []
    return [x / y for x, y in zip(ra["values"], rb["values"])]


def per_round(records: Sequence[Record], metric: str, a: str, b: str) -> str:
    """The median of the per-round ratios with their range, e.g. "1.16× [0.59–1.69]"; "" without
    paired rounds. Shown beside the ratio of the two medians: on a shared machine slow rounds
    can come in runs, and then each median lands in a different mode (`settled`)."""
    rs = round_ratios(records, metric, a, b)
    return f"{statistics.median(rs):.2f}× [{min(rs):.2f}–{max(rs):.2f}]" if rs else ""


def settled(limit: float, lower_is_better: bool, *estimates: float) -> bool | None:
    """Whether every available estimate of one target (the ratio of the paired medians, the
    median of the per-round ratios, the ratio of the runs in a row) is on the same side of
    `limit`: True (met) or False (behind) if so, None (not settled) if they disagree. On the
    2-core shared VM a round moves by 2× either way, and the three have put one target on both
    sides of its line in the same run; a verdict either way would then be noise."""
    known = [e for e in estimates if e == e]
    sides = {(e <= limit if lower_is_better else e >= limit) for e in known}
    return sides.pop() if len(sides) == 1 else None


def cpu_ratio(records: Sequence[Record], metric: str, a: str, b: str) -> str:
    """"; CPU 1.71× the peer's" (user + system, ratio of the medians) when the run recorded CPU
    time (runs before it did not): what two cores can and cannot hide."""
    r = ratio(records, metric, a, b)
    return f"; CPU {r:.2f}× the peer's" if r == r else ""


# ------------------------------------------------------------------------------ Markdown
def cell(text: str) -> str:
    """A table cell: a `|` in a tool's name (`tar | zstd`) would end the cell."""
    return text.replace("|", "\\|")


def tools_markdown(tools: dict[str, str]) -> str:
    return "- Tool versions: " + ", ".join(f"{k} {v}" for k, v in tools.items())


def inputs_markdown(inputs: Sequence[dict[str, str]]) -> str:
    if not inputs:
        return ""
    keys = list(inputs[0])
    return "Data:\n\n" + c.table(keys, [[i.get(k, "") for k in keys] for i in inputs])


def tables_markdown(records: Sequence[Record], metrics: Sequence[str] | None = None) -> str:
    order = list(metrics or dict.fromkeys(r["metric"] for r in records))
    parts = []
    for m in order:
        rows = [r for r in records if r["metric"] == m]
        if not rows:
            continue
        head = ["tool", "backend"] + (["N"] if any("x" in r for r in rows) else []) + ["median [min–max]", "runs"]
        body = [[cell(r["tool"]), r["backend"]] + ([f"{r['x']:,.0f}"] if "x" in r else []) * ("N" in head)
                + [spread(r), str(len(r["values"]))] for r in rows]
        parts.append(f"### {TITLES.get(m, m)}\n\n" + c.table(head, body))
    return "\n\n".join(parts)


# ------------------------------------------------------------------------------ plots
def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def bars(plt: Any, records: Sequence[Record], metric: str, name: str, *, scale: float = 1.0, label: str = "",
         log: bool = False) -> str | None:
    rows = [r for r in records if r["metric"] == metric]
    if not rows or plt is None:
        return None
    labels = [f"{r['tool']} ({r['backend']})" if r["backend"] != "local" else r["tool"] for r in rows]
    meds = [med(r) * scale for r in rows]
    lo = [m - min(r["values"]) * scale for m, r in zip(meds, rows)]
    hi = [max(r["values"]) * scale - m for m, r in zip(meds, rows)]
    colors = ["tab:orange" if r["tool"].startswith("zoostore") else "tab:blue" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.38 * len(rows) + 1.2))
    ax.barh(range(len(rows)), meds, xerr=[lo, hi], color=colors, capsize=3)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(label or rows[0]["unit"])
    if log:
        ax.set_xscale("log")
    ax.set_title(TITLES.get(metric, metric) + " (median, min–max)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return save(plt, fig, name)


def lines(plt: Any, records: Sequence[Record], metrics: Sequence[str], name: str, title: str) -> str | None:
    rows = [r for r in records if r["metric"] in metrics and "x" in r]
    if not rows or plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in dict.fromkeys((r["metric"], r["tool"]) for r in rows):
        pts = sorted((r["x"], r) for r in rows if (r["metric"], r["tool"]) == key)
        xs = [x for x, _ in pts]
        ys = [med(r) * 1000 for _, r in pts]
        err = [[(med(r) - min(r["values"])) * 1000 for _, r in pts], [(max(r["values"]) - med(r)) * 1000 for _, r in pts]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"{key[1]}, {(TITLES.get(key[0]) or key[0]).split(' of')[0]}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("files")
    ax.set_ylabel("ms")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(plt, fig, name)


def save(plt: Any, fig: Any, name: str) -> str:
    IMG.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(IMG / name, dpi=90)
    plt.close(fig)
    return f"img/{name}"


# ------------------------------------------------------------------------------ the report
def load() -> dict[str, dict[str, Any]]:
    out = {}
    for p in sorted(c.DATA.glob("*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            c.log(f"report: skipping {p.name}: {e}")
    return out


def targets(data: dict[str, dict[str, Any]]) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, compared with, met) for the issue-14 targets this run measured."""
    rel = data.get("release", {}).get("records", [])
    syn = data.get("sync", {}).get("records", [])
    gc = data.get("gc", {}).get("records", [])
    zf = data.get("zoofs", {}).get("records", [])
    out: list[tuple[str, str, str, bool | None]] = []

    def add(name: str, value: float, limit: float, what: str, lower_is_better: bool = True, unit: str = "×",
            others: Sequence[float] = ()) -> None:
        """`others`: more estimates of the same ratio, which must agree with `value` (`settled`)."""
        if value != value:
            return
        ok = settled(limit, lower_is_better, value, *others)
        out.append((name, fmt(value, unit), what, ok))

    def timed(name: str, what: str, metric: str, block: str, cpu: str, a: str, b: str, limit: float,
              lower_is_better: bool) -> None:
        """A time target from the rounds alternating with the peer when the run has them
        (bench_release.paired), else from each tool's runs in a row (`block`). With pairs, the
        per-round ratios and the CPU ratio go beside it, and the verdict needs the per-round
        median and the runs in a row to agree with it (`settled`)."""
        value, row = ratio(rel, metric, a, b), ratio(rel, block, a, b)
        if value != value:
            add(name, row, limit, what, lower_is_better)
            return
        rs = round_ratios(rel, metric, a, b)
        others = [statistics.median(rs) if rs else float("nan"), row]
        disagree = settled(limit, lower_is_better, value, *others) is None
        add(name, value, limit, f"{what}, runs alternating with the peer (per round: {per_round(rel, metric, a, b)}"
            + cpu_ratio(rel, cpu, a, b) + (f"; runs in a row: {row:.2f}×" if disagree and row == row else "") + ")",
            lower_is_better, others=others)

    add("stored bytes, release 1 ≤ restic's repository", ratio(rel, "stored_first", "zoostore", "restic"), 1.0,
        "zoostore / restic")
    add("stored bytes, increment ≤ restic's", ratio(rel, "stored_increment", "zoostore", "restic"), 1.0,
        "zoostore / restic")
    per = [r for r in rel if r["metric"] == "native_vs_zstd1"]
    if per:
        worst = max(per, key=med)
        add(f"each native library ≤ 1.10× whole-file zstd -1 (worst: {worst['tool']})", med(worst), 1.10,
            "zoostore / zstd -1")
    timed("publish ≥ 0.9× `tar | zstd -1 -T0`", "MB/s ratio", "ingest_paired_mbps", "ingest_mbps",
          "ingest_paired_cpu_s", "zoostore publish", "tar | zstd -1 -T0", 0.9, lower_is_better=False)
    timed("first sync ≤ 1.0× `rsync -a`", "time ratio", "first_sync_paired_s", "first_sync_s",
          "first_sync_paired_cpu_s", "zoostore sync", "rsync -a", 1.0, lower_is_better=True)
    rss = find(rel, "first_sync_rss", "zoostore sync")
    if rss:
        add("first sync peak RSS ≤ 100 MiB", med(rss) / c.MiB, 100, "peak RSS", unit="MiB")
    up, inc = find(rel, "upgrade_bytes", "zoostore"), find(rel, "stored_increment", "zoostore")
    if up and inc:
        add("upgrade downloads ≤ 1.05× the increment's stored bytes", med(up) / med(inc), 1.05,
            "downloaded / stored increment")
    z2, r2 = find(syn, "small_cold_s", "zoostore sync", x=2000), find(syn, "small_cold_s", "rsync -a", x=2000)
    if z2 and r2:
        add("cold sync of 2,000 small files ≤ 3× `rsync -a`", med(z2) / med(r2), 3.0, "time ratio")
    z20 = find(syn, "small_cold_s", "zoostore sync", x=20000)
    if z2 and z20:
        add("20,000 files ≤ 10.5× the 2,000-file time", med(z20) / med(z2), 10.5, "time ratio")
    n2 = find(syn, "small_noop_s", "zoostore sync", x=2000)
    if n2:
        add("no-op sync of 2,000 files ≤ 100 ms", med(n2), 0.1, "wall time, start-up included", unit="s")
    cold = next((r for r in zf if r["tool"].startswith("cold: `open`")), None)
    warm = next((r for r in zf if r["tool"].startswith("warm")), None)
    if cold:
        add("zoo:// random 4 KiB read ≤ 150 µs uncached", med(cold), 150, "median per read", unit="µs")
    if warm:
        add("zoo:// random 4 KiB read ≤ 20 µs cached", med(warm), 20, "median per read", unit="µs")
    g = next((r for r in gc if r["backend"] == "moto" and r["tool"].startswith("gc,")), None)
    if g:
        blobs = data["gc"].get("blobs", 0)
        scaled = "" if blobs == 10_000 else f" (this run: {blobs:,} blobs, so ≤ {10 * blobs / 10_000:g} s)"
        add(f"gc of 10,000 blobs on moto ≤ 10 s{scaled}", med(g), 10 * blobs / 10_000, "gc wall time", unit="s")
    return out


def peer_ratios(rel: Sequence[Record]) -> list[list[str]]:
    """zoostore's median over each peer's median, per metric, on the local disk (same run)."""
    rows = []
    for metric, mine, better in (("ingest_mbps", "zoostore publish", "higher"), ("first_sync_s", "zoostore sync", "lower"),
                                 ("noop_sync_s", "zoostore sync", "lower"), ("upgrade_s", "zoostore sync", "lower"),
                                 ("stored_first", "zoostore", "lower"), ("stored_increment", "zoostore", "lower"),
                                 ("first_sync_rss", "zoostore sync", "lower"), ("ingest_cpu_s", "zoostore publish", "lower"),
                                 ("first_sync_cpu_s", "zoostore sync", "lower")):
        me = find(rel, metric, mine)
        if not me:
            continue
        for r in rel:
            if r["metric"] == metric and r["backend"] == "local" and r is not me and med(r):
                rows.append([TITLES.get(metric, metric), cell(r["tool"]), f"{med(me) / med(r):.2f}×", f"{better} is better"])
    return rows


# What the numbers in "Where zoostore is behind" come from, as far as the issue and the profiles say.
BEHIND_NOTES = [
    "Read each ratio as measured on 2 shared cores: the min–max columns below show how much other "
    "jobs moved it; the ratios are from the same run, so they hold better than the absolute times. "
    "The verdicts on publish and first sync come from runs alternating with the peer round by round "
    "(`paired` in bench/bench_release.py: a minute in which the shared machine slows down slows both "
    "tools), the tables below from each tool's runs in a row. A verdict on these two needs three "
    "estimates to agree: the ratio of the paired medians (the figure shown), the median of the "
    "per-round ratios and the ratio of the runs in a row; where they fall on both sides of the line "
    "the target is reported as not settled (`settled` in bench/report.py).",
    "Publish does per chunk what `tar | zstd` does not: content-defined chunking, a BLAKE3 hash per "
    "chunk and per file, a codec choice, packs fsync'd, recipes and a manifest written; compare "
    "it also with restic, casync and dvc, which do similar work (ratios below). Its CPU is about "
    "1.1 times `tar | zstd -1`'s (the paired rounds' CPU ratio above; format-4 stores, where code "
    "is cut into 512 KiB chunks at level 1: docs/design-decisions.md): BLAKE3 of each file, each "
    "chunk and each pack, FastCDC, fsyncs and Python between them, against less zstd work (byte "
    "planes of weights compress faster than the raw bytes). Before the encoders start, the "
    "interpreter, the imports and the whole-file hashes take ~135 ms, bound by CPU since the "
    "hashing thread takes the largest files first (on 2026-12-07: before, it waited for the GIL "
    "between small files while the imports ran; bench-history.md); the writer's close takes "
    "~25-60 ms (the last pack, the recipes, the manifests). It sits at the 0.9× line: 0.93×, 0.91× and 0.88× in three runs on "
    "2026-12-06, the unpaired block of the last one 1.06×; later that night alternating runs gave "
    "0.84-0.93×, and three runs of this script 0.94×, 0.90× and 0.93× paired, 0.86×, 0.86× and "
    "0.93× per round, 0.74×, 0.95× and 0.93× in a row: met in the last (the final code), not "
    "settled in the two before; three runs later that night 0.90×, 0.95× and 0.94× paired (met in "
    "the last); on 2026-12-07 0.96× paired, 0.93× per round and 0.87× in a row (not settled, the "
    "last run with 11 paired rounds), then 0.93× paired and per round with 21 (met); later that "
    "morning, on the final code, 0.88× paired, 0.89× per round and 0.98× in a row (CPU 1.14× the "
    "peer's: not settled), then 0.96× paired and 0.95× per round (CPU 1.07×) and 0.93× paired and per "
    "round (CPU 1.06×): met in the last two. Its encoders are busy, not starved: dropping the "
    "wait for each file's probe chunks gained nothing (bench-history.md). Where its second core "
    "idles: the first ~60 ms (interpreter and imports), the first file's probe chunks, GIL waits "
    "while the code files are encoded (1.4-1.7 cores) and the close (~40-60 ms of fsync'd recipes "
    "and manifests at under one core; bench-history.md, \"Fresh memory, ...\").",
    "Sync decompresses, verifies every file against its BLAKE3 id and writes through a cache; "
    "`rsync -a` and `cp -a` copy bytes (cp with copy_file_range), `zstd -d | tar -x` only "
    "decompresses. For release 1 that is 0.43-0.55 s of CPU in quiet rounds (zstd about 0.15 s, "
    "BLAKE3 0.05 s, the page-cache writes, and 65-70 ms on one core before the copy starts: the "
    "interpreter, ~40 ms of imports, zoo.toml, zoo.lock, opening the store) against `rsync -a`'s "
    "0.31-0.45 s; the copy phase keeps both cores 1.7-1.9 busy. On 2026-12-06 a first sync stopped "
    "creating ~170 fan-out folders in an empty cache (cache format 2), stopped zero-filling its read "
    "buffers while holding the GIL and wrote its stamps on the fetching threads "
    "(docs/design-decisions.md, \"Flat cache folders\" and \"Byte planes in C\"): 463 → 381 ms and "
    "368 → 343 ms in two alternating runs against the code before (`rsync -a` 374 and 382 ms). This "
    "script gave 1.14×, 1.00× and 1.01× paired in three runs after the changes (0.86-1.13× per round "
    "and in a row), after 1.11× and 1.30× in the runs before them: on the line, met or behind by the "
    "round's luck; on 2026-12-07, after its large files moved to plain threads (no "
    "concurrent.futures import) and its stamps were overwritten instead of truncated (311 → 296 ms "
    "in alternating rounds), 0.87× paired and 0.94× per round (met), then 1.00× paired, 1.04× per "
    "round and 0.74× in a row over 21 rounds (not settled); later that morning, with the development "
    "venv's import hook gone (~13 ms of every command's start-up: dev.sh) and one buffer pool per "
    "sync (12,300 → 8,100 page faults, ~3 µs each on this VM; wall unchanged in alternating rounds), "
    "0.92×, 0.93× and 0.95× paired, 0.96× per round in three runs (met). Some rounds still take ~40% more CPU for the same work (0.59-0.69 s against "
    "0.43-0.50 s), in zoostore's rounds more often than in rsync's: 16 first syncs in a row outside "
    "the benchmark on 2026-12-07 took 319-470 ms of user time for the same work, with the same page "
    "faults (11.4-13.2k) and context switches and no steal time reported, so the spread is in how "
    "fast the shared cores ran, which decoding and hashing (user time) feel more than rsync's "
    "kernel copies. The byte planes of float32 "
    "chunks are interleaved in C without the GIL where the extension is built "
    "(docs/design-decisions.md, \"Byte planes in C\"; perf profiles: [bench-history.md](bench-history.md)).",
    "Peak RSS of a first sync from S3 (moto, radosgw; the target is measured on the local store): "
    "about 140-155 MiB, of which ~30 MiB is importing s3fs and botocore and most of the rest the "
    "reads in flight that hide the network's latency (4 reader threads, each with a ranged GET of "
    "up to 4 MiB, and up to 8 decoded 4 MiB segments). Reading each body straight into its buffer "
    "instead of joining it and slicing a copy took 9 MiB off after this run (143-151 → 134-142 MiB, "
    "bench-history.md); halving the reads in flight would cost throughput on a real network.",
    "Small files: one file creation, rename and hard link per file, as rsync, plus parsing "
    "zoo.lock and the yank check's manifest reads (tens of milliseconds per sync). The benchmark "
    "sets each cold run's output aside (files emptied, inodes kept) and deletes it at the end "
    "(bench/common.py `rmtree`): on ext4 without a "
    "journal (this VM's root), every new file searches past the inodes deleted in the last minute "
    "(`recently_deleted` in the kernel), and when each run started by deleting the last run's "
    "files, that search was 60% of a cold sync's CPU under `perf` (`open` up to 0.5 ms per file), "
    "rsync's runs as slow, and the verdict depended on which tool followed the larger deletion "
    "(bench-history.md).",
]

HOW = """## How to run

```sh
./dev.sh bench                    # set up, then every bench/bench_*.py and this report (the full suite)
./dev.sh bench --quick            # smaller inputs and fewer runs: a few minutes
python bench/run_all.py --only release sync   # some scripts; then the report from all data files
python bench/run_all.py --report  # only this report, from docs/bench-data/*.json
```

| script | details | measures |
|---|---|---|
| `bench_release.py` | [bench-release.md](bench-release.md) | two real releases (PyPI wheels' native libraries, a float32 model and its fine-tune): ingest, stored bytes, first / no-op sync, upgrade, peak RSS; zoostore next to restic, `tar \\| zstd`, `zstd --patch-from`, `cp`, `rsync`, `b3sum`, casync, dvc; local disk, moto, radosgw |
| `bench_sync.py` | [bench-sync.md](bench-sync.md) | sync of a generated zoo and of 200 / 2,000 / 20,000 small files next to `rsync -a` and dvc; peak RSS for one large file |
| `bench_gc.py` | [bench-gc.md](bench-gc.md) | gc of 10,000 blobs in 1,000 packs (1,000 with `--quick`), local and moto |
| `bench_zoofs.py` | [bench-zoofs.md](bench-zoofs.md) | random 4 KiB reads through `zoo://`, cold and cached |
| `bench_store.py`, `bench_dedup.py` | [bench-store.md](bench-store.md), [bench-dedup.md](bench-dedup.md) | `BlobStore` put/get on one float32 file; bytes added per model variant |
| `bench_pipeline.py`, `bench_hostile.py` | [bench-pipeline.md](bench-pipeline.md), [bench-hostile.md](bench-hostile.md) | TVM check/build times; time against history length (not run by `--quick`) |
"""


def picture(title: str, img: str | None) -> str:
    return f"![{title}]({img})\n\n" if img else ""


def _machine(m: dict[str, str]) -> str:
    return f"{m['cpu']}, {m['memory']}, {m['os']}; Python {m['python']}; {m['libraries']}"


def machine_markdown(data: dict[str, dict[str, Any]]) -> str:
    """The machine the results files ran on, as each recorded it (not the one writing the
    report: `--report` may run elsewhere, or on a machine the cloud swapped since)."""
    machines = sorted({_machine(d["machine"]) for d in data.values()})
    load = ("each results file below gives the load average when its run started (the machine is shared: "
            "other jobs widen the min–max spread and slow every tool alike)")
    if len(machines) == 1:
        return f"- Machine: {machines[0]}\n- {load.capitalize()}"
    return (f"- Machines: the results files below ran on {len(machines)} different machines, each named "
            f"with its run; compare ratios within one file, not times across them\n- {load.capitalize()}")


def runs_markdown(data: dict[str, dict[str, Any]]) -> str:
    several = len({_machine(d["machine"]) for d in data.values()}) > 1
    return "\n".join(f"- `{d['command']}` ({d['started']}, "
                     + (f"{_machine(d['machine'])}, " if several else "")
                     + f"load average {d['machine']['load']})" for d in data.values())


def section(title: str, img: str | None, text: str) -> str:
    return f"## {title}\n\n" + picture(title, img) + text


def write(out: Path = c.DOCS / "benchmarks.md") -> Path:
    data = load()
    plt = _plt()
    rel = data.get("release", {}).get("records", [])
    syn = data.get("sync", {}).get("records", [])
    gc = data.get("gc", {}).get("records", [])
    zf = data.get("zoofs", {}).get("records", [])
    meta = data.get("release", {})
    runs = runs_markdown(data)
    tg = targets(data)
    behind = [t for t in tg if t[3] is not True]
    parts = [
        "How zoostore compares with the tools people use instead, measured in one run of "
        "`python bench/run_all.py` (or `--quick`) on this machine. Every figure is the median of "
        "several runs with [min–max]; every comparison is a ratio of two medians from the same run; "
        "orange bars are zoostore. Stores, repositories and files sit on one local disk in the page "
        "cache, so times are CPU time and start-up, the same condition for every tool; S3 is moto or "
        "Ceph's radosgw on loopback (request counts carry over to a real S3, latencies do not). "
        "Generated by `bench/report.py` from `docs/bench-data/*.json`; the per-script details are in "
        "the `docs/bench-*.md` files, and earlier hand-written results and optimisation notes in "
        "[bench-history.md](bench-history.md).",
        HOW,
        "## This run\n\n" + (machine_markdown(data) + "\n" + (tools_markdown(meta["tools"]) if meta else "")
                              + "\n\nResults files used:\n\n" + runs),
        inputs_markdown(meta.get("inputs", [])) + (
            f"\n\nRelease 1: {meta['release_files'][0]} files, {c.human(meta['release_bytes'][0])}; release 2: "
            f"{meta['release_files'][1]} files, {c.human(meta['release_bytes'][1])}. Each package is one model "
            "(its shared libraries under stable names), and the float32 model, where present, one more." if meta else ""),
        *(f"{k}: skipped ({v})." for k, v in meta.get("skipped", {}).items()),
        "## Where zoostore is behind\n\n" + ("\n".join(f"- **{n}**: {v} ({w})" + ("; not settled: the estimates of this run "
                                                                       "fall on both sides of the line." if ok is None else ".")
                                                for n, v, w, ok in behind)
                                              + ("\n\nContext:\n\n- " + "\n- ".join(BEHIND_NOTES) if behind else "")
                                              or "- Nothing in this run's targets.")
        + "\n\nRatios against every peer, local disk (zoostore / peer):\n\n"
        + c.table(["measure", "peer", "zoostore / peer", ""], peer_ratios(rel)),
        "## Targets of issue 14\n\n" + c.table(["target", "measured", "as", "result"],
                                                [[cell(n), v, w, "met" if ok else "**behind**" if ok is False
                                                  else "**not settled**"] for n, v, w, ok in tg]),
        section("Ingest (publish)", bars(plt, rel, "ingest_mbps", "ingest.png", log=True),
                tables_markdown(rel, ["ingest_mbps", "ingest_increment_s"])),
        section("Stored bytes", bars(plt, rel, "stored_first", "stored-first.png", scale=1 / c.MB, label="MB"),
                picture("increment", bars(plt, rel, "stored_increment", "stored-increment.png", scale=1 / c.MB,
                                          label="MB"))
                + tables_markdown(rel, ["stored_first", "stored_first_disk", "stored_increment",
                                        "stored_increment_disk", "native_vs_zstd1"])),
        section("First sync", bars(plt, rel, "first_sync_s", "first-sync.png", label="seconds", log=True),
                tables_markdown(rel, ["first_sync_s", "noop_sync_s"])),
        section("Sync by file count (4 KiB files)", lines(plt, syn, ["small_cold_s", "small_noop_s"], "sync-files.png",
                                                          "Cold and no-op sync by file count (median, min–max)"),
                tables_markdown(syn, ["small_cold_s", "small_noop_s"])),
        section("Upgrade", bars(plt, rel, "upgrade_bytes", "upgrade-bytes.png", scale=1 / c.MB, label="MB"),
                tables_markdown(rel, ["upgrade_bytes", "upgrade_s"])),
        section("gc", bars(plt, gc, "gc_s", "gc.png", label="seconds"),
                "One run each in a fresh process (a gc changes the store); local disk, moto and radosgw "
                "(where it installs). Requests per run are in "
                "[bench-gc.md](bench-gc.md).\n\n" + tables_markdown(gc, ["gc_s", "gc_rss"])),
        section("zoo:// read latency", bars(plt, zf, "read_us", "zoofs.png", label="µs", log=True),
                tables_markdown(zf, ["read_us"])),
        section("Peak RSS", bars(plt, [r for r in rel + syn if r["metric"] == "first_sync_rss"], "first_sync_rss",
                                 "rss.png", scale=1 / c.MiB, label="MiB"),
                tables_markdown(rel + syn, ["ingest_rss", "first_sync_rss", "upgrade_rss", "noop_sync_rss"])),
    ]
    if plt is None:
        parts.insert(1, "(matplotlib is not installed: no plots. `pip install -c constraints.txt -e '.[bench]'`.)")
    c.write_markdown(out, "Benchmarks", parts)
    return out


if __name__ == "__main__":
    write()
