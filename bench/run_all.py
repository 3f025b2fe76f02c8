"""Run every benchmark in bench/ (each bench_*.py), one after the other.

    python bench/run_all.py            # default sizes: the numbers docs/ reports
    python bench/run_all.py --quick    # small sizes, a few minutes: passed to each script that takes it
    python bench/run_all.py --only store sync      # bench_store.py and bench_sync.py only
    python bench/run_all.py --skip pipeline
    python bench/run_all.py --report   # only rewrite docs/benchmarks.md from docs/bench-data/

Scripts are discovered, so a new bench_*.py joins automatically. `--quick` is passed to a script
only if its `--help` mentions it; scripts without a quick mode (the TVM pipeline, history
length) are skipped under `--quick` unless named with --only. Each script prints its tables and
writes its results file in docs/ (and its data in docs/bench-data/); at the end bench/report.py
turns the data into docs/benchmarks.md with plots in docs/img/. This prints a summary of which
ran, how long they took, and which failed (exit status 1 if any did).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent


def discover() -> list[Path]:
    return sorted(p for p in BENCH.glob("bench_*.py") if p.is_file())


def short(path: Path) -> str:
    return path.stem.removeprefix("bench_")


def accepts(script: Path, flag: str) -> bool:
    try:
        out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and flag in out.stdout


def machine_banner() -> str:
    sys.path.insert(0, str(BENCH))
    import common
    import peers

    m = common.machine()
    tools = ", ".join(f"{k} {v}" for k, v in peers.versions().items())
    return (f"Machine: {m['cpu']}, {m['memory']}, {m['os']}, Python {m['python']}\n"
            f"Load average (1, 5, 15 min): {m['load']}\nTools: {tools}")


def wait_for_quiet(limit: float = 60.0) -> None:
    """Wait (at most `limit` s) while the 1-minute load average is above the core count: other
    jobs on a shared machine slow every tool, and waiting costs less than a noisy run."""
    import os

    t0 = time.monotonic()
    while os.getloadavg()[0] > (os.cpu_count() or 1) and time.monotonic() - t0 < limit:
        time.sleep(5)
    print(f"load average {os.getloadavg()[0]:.1f} after waiting {time.monotonic() - t0:.0f} s", flush=True)


def report() -> int:
    """docs/benchmarks.md and docs/img/*.png from docs/bench-data/*.json (bench/report.py)."""
    print(f"\n{'=' * 100}\n$ python bench/report.py\n{'=' * 100}", flush=True)
    return subprocess.run([sys.executable, str(BENCH / "report.py")], cwd=BENCH.parent).returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="pass --quick to every script that accepts it")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run only these (store, dedup, sync, ...)")
    ap.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="skip these")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--report", action="store_true", help="only write docs/benchmarks.md from docs/bench-data/")
    args = ap.parse_args(argv)

    scripts = discover()
    if args.list:
        for s in scripts:
            print(short(s))
        return 0
    names = {short(s) for s in scripts}
    unknown = sorted(set(args.only or []) - names) + sorted(set(args.skip) - names)
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(sorted(names))}")
    if args.report:
        return report()
    chosen = [s for s in scripts if (not args.only or short(s) in args.only) and short(s) not in args.skip]
    if args.quick and not args.only:
        slow = [s for s in chosen if not accepts(s, "--quick")]
        for s in slow:
            print(f"--quick: skipping {short(s)} (it has no quick mode; run it with --only {short(s)})")
        chosen = [s for s in chosen if s not in slow]
    print(machine_banner(), flush=True)

    summary: list[tuple[str, str, float, str]] = []
    for script in chosen:
        cmd = [sys.executable, str(script)]
        quick = args.quick and accepts(script, "--quick")
        wait_for_quiet()
        if quick:
            cmd.append("--quick")
        shown = " ".join(["python", str(script.relative_to(BENCH.parent)), *cmd[2:]])
        print(f"\n{'=' * 100}\n$ {shown}\n{'=' * 100}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(cmd, cwd=BENCH.parent).returncode
        seconds = time.perf_counter() - t0
        status = "ok" if code == 0 else f"failed (exit {code})"
        mode = "quick" if quick else ("default (no --quick option)" if args.quick else "default")
        summary.append((short(script), mode, seconds, status))

    code = report()
    summary.append(("report", "", 0.0, "ok" if code == 0 else f"failed (exit {code})"))
    print(f"\n{'=' * 100}\nSummary\n")
    width = max((len(n) for n, *_ in summary), default=4)
    for name, mode, seconds, status in summary:
        print(f"  {name:{width}}  {seconds:8.1f} s  {mode:28}  {status}")
    return 0 if all(s == "ok" for *_, s in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
