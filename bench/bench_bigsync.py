"""First sync of one large file, before vs after a change, next to `rsync -a`, in one run.

    python bench/bench_bigsync.py [--mb 512] [--repeat 3] [--before REV] [--workdir DIR]

Writes one --mb MB float32 weight file (as bench_sync.py's large-file row does), publishes it
into a fresh local store with the working tree's code, then syncs it with a cold cache and a
fresh destination, alternating in each round: `rsync -a` of the file, `zoostore sync --locked`
with the code of git revision --before (extracted with `git archive`), and with the working
tree's code. Every run is a subprocess timed from spawn to exit with its peak RSS (os.wait4).
The order of the three rotates every round, and
dirty pages are flushed (sync) before every run. Prints the median, min and max of every variant and the ratios to rsync of the same round's
medians. The machine is shared and noisy: only ratios from one run mean anything.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_sync as bs  # noqa: E402
import common as c  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=512, help="size of the file in MB (10^6 bytes)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--before", default="HEAD", help="git revision of the 'before' code")
    ap.add_argument("--workdir", help="where the file, store and copies go")
    args = ap.parse_args(argv)

    from zoostore.ops.publish import publish
    from zoostore.repository import init_store

    with c.workdir(args.workdir, "zoostore-bench-bigsync-") as work:
        base = work / "before"
        base.mkdir()
        archive = subprocess.run(["git", "-C", str(c.REPO), "archive", args.before, "zoostore"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
        size = int(args.mb * c.MB) // 4 * 4
        src = work / "src" / "one"
        bs.write_weights(src / "weights.bin", size, seed=4242)
        store = work / "store"
        zoo, _ = init_store(store)
        publish(zoo, "big", "1.0.0", [src], check=False)
        proj = work / "project"
        bs.write_project(proj, store, ["big"])
        envs = {"before": {"PYTHONPATH": str(base), "ZOOSTORE_CACHE": str(work / "cache")},
                "after": {**c.python_env(), "ZOOSTORE_CACHE": str(work / "cache")}}
        c.run(bs.zoostore_cmd("lock"), cwd=proj, env=envs["after"])
        times: dict[str, list[float]] = {"rsync -a": [], "before": [], "after": []}
        rss: dict[str, list[int]] = {k: [] for k in times}
        for r in range(args.repeat):
            # Rotate the order each round and flush dirty pages before every run: a run right
            # after another pays for the previous one's 512 MB of writeback otherwise.
            names = list(times)
            for name in names[r % 3:] + names[: r % 3]:
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
                c.log(f"round {r + 1}: {name}: {c.ms(p.seconds)} ms, {c.human(p.max_rss)}")
        med = {k: statistics.median(v) for k, v in times.items()}
        rows = [[k, c.ms(med[k]), c.ms(min(v)), c.ms(max(v)), c.mbps(size, med[k]),
                 f"{med[k] / med['rsync -a']:.2f}×", c.human(max(rss[k]))] for k, v in times.items()]
        print(f"\none file of {size / c.MB:,.0f} MB, {args.repeat} rounds; before = {args.before}\n")
        print(c.table(["variant", "median ms", "min", "max", "MB/s", "/ rsync", "peak RSS (max)"], rows))
        print("\n" + c.machine_markdown(["rsync"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
