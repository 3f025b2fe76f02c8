"""Remote stores: publish and first sync on a local directory, moto and radosgw, side by side,
and sync through a fault-injecting proxy (5% of requests fail) against a clean run.

    python bench/bench_remote.py                 # ~150 MB of native libraries, 3 runs each
    python bench/bench_remote.py --quick         # ~30 MB, 1 run: about a minute
    python bench/bench_remote.py --backends local moto

Data: the largest native libraries (.so) of the packages installed next to zoostore (named in
the report with their versions), copied into one model folder. Every run uses a fresh store
prefix and a fresh cache, so nothing is deduplicated across runs.

Per backend, each command runs as a child process (`zoostore publish`, `zoostore sync`), timed
from spawn to exit (interpreter start-up included). Requests are counted by running the same
command once more through `zoostore.testing.faultproxy.FaultProxy` with no faults (a loopback
reverse proxy that counts what passes). moto and radosgw run on 127.0.0.1: wall times are
loopback times, request counts carry over to a real network. The fault rows put the proxy
between sync and the S3 server with 5% of requests failing (2% 5xx/SlowDown, 1.5% connection
resets, 1.5% truncated bodies); the clean-proxy row of the same backend is the reference.
Prints the table and writes docs/bench-remote.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common as c  # noqa: E402

from zoostore.testing.faultproxy import FaultProxy, Faults  # noqa: E402

FAULTS_5PCT = Faults(status_5xx=0.02, s3_slowdown=True, reset=0.015, truncate=0.015, seed=7)


def pick_files(target: int) -> list[tuple[Path, str]]:
    """The largest .so files of the installed packages, up to `target` bytes: (path, package)."""
    import site

    found: list[tuple[int, Path, str]] = []
    for root in {Path(p) for p in site.getsitepackages()}:
        for f in root.glob("*/**/*.so*"):
            if f.is_file() and not f.is_symlink() and f.stat().st_size > 1 << 20:
                found.append((f.stat().st_size, f, f.relative_to(root).parts[0]))
    out, total = [], 0
    for size, f, pkg in sorted(found, key=lambda t: (-t[0], str(t[1]))):
        if total + size > target:
            continue
        out.append((f, pkg))
        total += size
    return out


def package_versions(pkgs: set[str]) -> str:
    from importlib import metadata

    names = []
    for dist in metadata.distributions():
        top = {p.parts[0] for p in (dist.files or []) if p.parts}
        if top & pkgs:
            names.append(f"{dist.metadata['Name']} {dist.version}")
    return ", ".join(sorted(set(names)))


class Backend:
    """A store location factory: `url(run)` is a fresh store per run; `env` for the CLI."""

    def __init__(self, name: str, base: str, env: dict[str, str], endpoint: str | None = None) -> None:
        self.name, self.base, self.env, self.endpoint = name, base, env, endpoint

    def url(self, tag: str) -> str:
        return f"{self.base}/{tag}"

    def through(self, proxy_url: str) -> dict[str, str]:
        """Env that sends this backend's S3 requests through a proxy."""
        return {**self.env, "AWS_ENDPOINT_URL": proxy_url}


def s3_env(endpoint: str, key: str, secret: str) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def zoostore(*args: str, env: dict[str, str], cwd: Path | None = None) -> c.Proc:
    return c.run(c.python_cmd("-m", "zoostore", *args), env={**env, "ZOOSTORE_NO_PROGRESS": "1"}, cwd=cwd)


def project(work: Path, url: str, tag: str) -> Path:
    proj = work / f"proj-{tag}"
    proj.mkdir()
    (proj / "zoo.toml").write_text(f'store = "{url}"\narchs = ["x86_64"]\n[models]\nlibs = "1.0.0"\n')
    return proj


def one_backend(b: Backend, src: Path, work: Path, repeat: int, nbytes: int, nfiles: int) -> list[list[Any]]:
    pub: list[float] = []
    syn: list[float] = []
    url = ""
    for i in range(repeat):
        tag = f"r{i}-{uuid.uuid4().hex[:6]}"
        url = b.url(tag)
        zoostore("init", url, env=b.env)
        pub.append(zoostore("publish", url, "libs", "1.0.0", str(src), "--arch", "x86_64", "--no-check",
                            "-q", env=b.env).seconds)
        env = {**b.env, "ZOOSTORE_CACHE": str(work / f"cache-{b.name}-{tag}")}
        syn.append(zoostore("sync", "-q", env=env, cwd=project(work, url, f"{b.name}-{tag}")).seconds)
    rows = [[b.name, "publish", *spread(pub, nbytes), ""], [b.name, "first sync", *spread(syn, nbytes), ""]]
    if b.endpoint is None:
        return rows
    # Requests per file, counted by a clean proxy; then the same sync with 5% faults.
    with FaultProxy(b.endpoint) as proxy:
        tag = f"count-{uuid.uuid4().hex[:6]}"
        zoostore("init", b.url(tag), env=b.through(proxy.url))
        before = proxy.stats.requests
        zoostore("publish", b.url(tag), "libs", "1.0.0", str(src), "--arch", "x86_64", "--no-check", "-q",
                 env=b.through(proxy.url))
        rows[0][-1] = f"{(proxy.stats.requests - before) / nfiles:.1f}"
        before = proxy.stats.requests
        env = {**b.through(proxy.url), "ZOOSTORE_CACHE": str(work / f"cache-count-{b.name}")}
        clean = zoostore("sync", "--json", env=env, cwd=project(work, b.url(tag), f"count-{b.name}"))
        rows[1][-1] = f"{(proxy.stats.requests - before) / nfiles:.1f}"
        clean_bytes = json.loads(clean.stdout)["bytes_downloaded"]
        rows.append([b.name, "first sync, clean proxy", *spread([clean.seconds], nbytes), f"{clean_bytes / 1e6:.1f} MB"])
    with FaultProxy(b.endpoint, FAULTS_5PCT) as proxy:
        times, fetched, faults = [], [], 0
        for i in range(repeat):
            env = {**b.through(proxy.url), "ZOOSTORE_CACHE": str(work / f"cache-faults-{b.name}-{i}"),
                   "ZOOSTORE_MAX_ATTEMPTS": "8"}
            p = zoostore("sync", "--json", env=env, cwd=project(work, b.url(tag), f"faults-{b.name}-{i}"))
            times.append(p.seconds)
            fetched.append(json.loads(p.stdout)["bytes_downloaded"])
        faults = proxy.stats.faults_total
        rows.append([b.name, f"first sync, 5% faults ({faults} injected)", *spread(times, nbytes),
                     f"{statistics.median(fetched) / 1e6:.1f} MB ({statistics.median(fetched) / clean_bytes:.2f}× clean)"])
    return rows


def spread(times: list[float], nbytes: int) -> list[str]:
    med = statistics.median(times)
    return [f"{med:.2f} s ({min(times):.2f}–{max(times):.2f})", c.mbps(nbytes, med)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~30 MB, one run per row")
    ap.add_argument("--mb", type=int, default=150, help="data size in MB (default 150)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["local", "moto", "radosgw"])
    ap.add_argument("--out", type=Path, default=c.DOCS / "bench-remote.md")
    ap.add_argument("--workdir", help="where to put stores and data (default: a temp dir)")
    args = ap.parse_args()
    if args.quick:
        args.mb, args.repeat = 30, 1
    files = pick_files(args.mb * 1_000_000)
    nbytes = sum(f.stat().st_size for f, _ in files)
    with c.workdir(args.workdir, "zoostore-bench-remote-") as work:
        src = work / "src"
        src.mkdir()
        for f, pkg in files:
            (src / f"{pkg}-{f.name}").write_bytes(f.read_bytes())
        backends, stops = [], []
        if "local" in args.backends:
            backends.append(Backend("local", str(work / "local"), {}))
        if "moto" in args.backends:
            moto, endpoint = c.start_moto()
            stops.append(lambda: c.stop_moto(moto))
            _bucket(endpoint, "testing", "testing", "bench")
            backends.append(Backend("moto", "s3://bench", s3_env(endpoint, "testing", "testing"), endpoint))
        if "radosgw" in args.backends:
            from zoostore.testing.radosgw import RadosGW, available

            reason = available()
            if reason:
                c.log(f"radosgw skipped: {reason}")
            else:
                rgw = RadosGW(work / "rgw", memstore_bytes=4 << 30).start()
                stops.append(rgw.stop)
                rgw.make_bucket("bench")
                backends.append(Backend("radosgw", "s3://bench",
                                        s3_env(rgw.endpoint_url, rgw.access_key, rgw.secret_key), rgw.endpoint_url))
        rows: list[list[Any]] = []
        try:
            for b in backends:
                c.log(f"== {b.name}")
                rows += one_backend(b, src, work, args.repeat, nbytes, len(files))
        finally:
            for stop in stops:
                stop()
    headers = ["store", "operation", "wall (median, min–max)", "MB/s", "requests per file / bytes downloaded"]
    table = c.table(headers, rows)
    print(table)
    pkgs = {pkg for _, pkg in files}
    c.write_markdown(args.out, "Remote stores: publish, first sync, and sync under faults", [
        f"`{c.command_line()}`",
        c.machine_markdown(),
        f"Data: {len(files)} native libraries, {c.human(nbytes)}, from {package_versions(pkgs)}.",
        table,
        "Each row is the median of the runs with min and max; every run uses a fresh store and a "
        "fresh cache. Publish and sync run as `zoostore` child processes (start-up included). moto "
        "and radosgw listen on 127.0.0.1, so wall times are loopback times; requests per file "
        "(counted by a clean proxy) carry over to a real network. Fault rows: 5% of requests fail "
        "(5xx/SlowDown, resets, truncated bodies), every one retried; the bytes column compares "
        "what was downloaded with the clean run's.",
    ])
    return 0


def _bucket(endpoint: str, key: str, secret: str, name: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                 region_name="us-east-1").create_bucket(Bucket=name)


if __name__ == "__main__":
    sys.exit(main())
