"""First sync of one large file, before vs after a change, next to `rsync -a`, in one run.

    python bench/bench_bigsync.py [--mb 512] [--repeat 3] [--before REV] [--workdir DIR]
    python bench/bench_bigsync.py --release /tmp/pub/data/r1 [--repeat 7] ...

Writes one --mb MB float32 weight file (as bench_sync.py's large-file row does), or with
--release takes a release folder (one sub-folder per model, as bench_release.py's first sync),
publishes it into a fresh local store with the working tree's code (a --workdir that already
holds the store from an earlier run with the same --release is reused with --keep DIR), then syncs it with a cold cache and a
fresh destination, alternating in each round: `rsync -a` of the file, `zoostore sync --locked`
with the code of git revision --before (extracted with `git archive`), and with the working
tree's code. Every run is a subprocess timed from spawn to exit with its peak RSS (os.wait4).
The order of the three rotates every round, and
dirty pages are flushed (sync) before every run. Prints the median, min and max of every variant and the ratios to rsync of the same round's
medians, and the median CPU time (user + sys). The machine is shared and noisy: only ratios
from one run mean anything.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import os
import statistics
import subprocess
import sys
from pathlib import Path
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sync as bs  # noqa: E402
import common as c  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=512, help="size of the file in MB (10^6 bytes)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before", default="HEAD", help="git revision of the 'before' code")
    ap.add_argument("--workdir", help="where the file, store and copies go")
    ap.add_argument("--keep", help="a working folder kept afterwards (its store is reused by the next run)")
    ap.add_argument("--release", help="a release folder (one sub-folder per model) instead of --mb")
    ap.add_argument("--only", nargs="*", help="variants to run (default: all three)")
    args = ap.parse_args(argv)

    from zoostore.ops.publish import publish
    from zoostore.repository import init_store

    with _workdir(args) as work:
        base = work / "before"
        c.rmtree(base)
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(c.REPO), "archive", args.before, "zoostore"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        compileall.compile_dir(str(base), quiet=1)  # as c.python_env() does for the working tree
        src, size, models = _publish(work, args, init_store, publish)
        proj = work / "project"
        bs.write_project(proj, work / "store", models)
        envs = {"before": {"PYTHONPATH": str(base), "ZOOSTORE_CACHE": str(work / "cache")},
                "after": {**c.python_env(), "ZOOSTORE_CACHE": str(work / "cache")}}
        c.run(bs.zoostore_cmd("lock"), cwd=proj, env=envs["after"])
        times: dict[str, list[float]] = {k: [] for k in ("rsync -a", "before", "after")
                                         if not args.only or k in args.only}
        rss: dict[str, list[int]] = {k: [] for k in times}
        cpu: dict[str, list[float]] = {k: [] for k in times}
        for r in range(args.repeat):
            # Rotate the order each round and flush dirty pages before every run: a run right
            # after another pays for the previous one's 512 MB of writeback otherwise.
            names = list(times)
            for name in names[r % len(names):] + names[: r % len(names)]:
                c.rmtree(work / "cache")
                c.rmtree(proj / "models")
                c.rmtree(work / "rsync-dst")
                os.sync()
                if name == "rsync -a":
                    p = c.run(["rsync", "-a", f"{src}/", f"{work / 'rsync-dst'}/"])
                else:
                    p = c.run(bs.zoostore_cmd("sync", "--locked", "-q"), cwd=proj, env=envs[name])
                times[name].append(p.seconds)
                rss[name].append(p.max_rss)
                cpu[name].append(p.cpu)
                c.log(f"round {r + 1}: {name}: {c.ms(p.seconds)} ms, cpu {c.ms(p.cpu)} ms, {c.human(p.max_rss)}")
        med = {k: statistics.median(v) for k, v in times.items()}
        ref = med.get("rsync -a", float("nan"))
        rows = [[k, c.ms(med[k]), c.ms(min(v)), c.ms(max(v)), c.mbps(size, med[k]),
                 f"{med[k] / ref:.2f}×", c.ms(statistics.median(cpu[k])), c.human(max(rss[k]))]
                for k, v in times.items()]
        what = args.release or "one file"
        print(f"\n{what}: {size / c.MB:,.0f} MB, {args.repeat} rounds; before = {args.before}\n")
        print(c.table(["variant", "median ms", "min", "max", "MB/s", "/ rsync", "CPU ms (median)",
                       "peak RSS (max)"], rows))
        print("\n" + c.machine_markdown(["rsync"]))
    return 0


@contextlib.contextmanager
def _workdir(args: argparse.Namespace) -> Iterator[Path]:
    if not args.keep:
        with c.workdir(args.workdir, "zoostore-bench-bigsync-") as work:
            yield work
        return
    work = Path(args.keep)
    work.mkdir(parents=True, exist_ok=True)
    yield work


def _publish(work: Path, args: argparse.Namespace, init_store: Any, publish: Any) -> tuple[Path, int, list[str]]:
    """(source folder, its bytes, model names) of the published data; the store is work/store."""
    from zoostore.core.names import host_arch

    store = work / "store"
    if args.release:
        src = Path(args.release)
        models = sorted(p.name for p in src.iterdir() if p.is_dir())
        size = c.dir_size(src)
        stamp = work / "store.published"
        if stamp.exists() and stamp.read_text() == f"{src.resolve()} {size}":
            return src, size, models
        c.rmtree(store)
        stamp.unlink(missing_ok=True)
        zoo, _ = init_store(store)
        for m in models:
            publish(zoo, m, "1.0.0", [src / m], arch=host_arch(), check=False)  # native libraries
        stamp.write_text(f"{src.resolve()} {size}")
        return src, size, models
    size = int(args.mb * c.MB) // 4 * 4
    src = work / "src" / "one"
    bs.write_weights(src / "weights.bin", size, seed=4242)
    c.rmtree(store)
    zoo, _ = init_store(store)
    publish(zoo, "big", "1.0.0", [src], check=False)
    return src, size, ["big"]


if __name__ == "__main__":
    raise SystemExit(main())
