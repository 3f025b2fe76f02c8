"""The maintainer pipeline on the demo zoo: generate, check, build per arch, publish.

    python demo/publish_zoo.py --store STORE [--work DIR] [--manifests DIR]

For every model version written by demo/make_models.py (two onnx.helper networks in two
versions each, SqueezeNet with light weights from the onnx package, Silero VAD from the
silero-vad package): `zoostore check`, `zoostore build --target x86_64 aarch64`, then publish
the ONNX source and model.toml as `any` and each build directory under its arch, tagging the
newest version `bleedingedge`. With SOURCE_DATE_EPOCH fixed (the default here) the manifests
are byte-reproducible; they are copied to --manifests (default: the repository's manifests/,
which is committed) and the script reports whether they changed.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: 2026-11-22T00:00:00Z: a fixed publish time makes the demo manifests reproducible.
EPOCH = "1795305600"


def run(*args: str) -> None:
    print(f"$ zoostore {' '.join(args)}", flush=True)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "zoostore", *args], stdout=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"publish_zoo: 'zoostore {' '.join(args)}' exited {proc.returncode}")
    print(f"  ({time.perf_counter() - t:.2f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--work", type=Path, default=ROOT / "demo-out" / "zoo-build")
    parser.add_argument("--manifests", type=Path, default=ROOT / "manifests")
    args = parser.parse_args(argv)
    os.environ.setdefault("SOURCE_DATE_EPOCH", EPOCH)

    sources = args.work / "models"
    proc = subprocess.run([sys.executable, str(ROOT / "demo" / "make_models.py"), "--out", str(sources)])
    if proc.returncode != 0:
        raise SystemExit("publish_zoo: make_models.py failed")
    models = sorted(p for p in sources.iterdir() if p.is_dir())
    for model in models:
        versions = sorted((v for v in model.iterdir() if v.is_dir()), key=lambda v: [int(x) for x in v.name.split(".")])
        for i, vdir in enumerate(versions):
            name, version = model.name, vdir.name
            print(f"\n-- {name}@{version}", flush=True)
            run("check", str(vdir), "-q")
            out = args.work / "build" / name / version
            run("build", str(vdir), "--target", "x86_64", "aarch64", "--out", str(out), "-q")
            tag = ["--tag", "bleedingedge"] if i == len(versions) - 1 else []
            run("publish", args.store, name, version, str(vdir), "--arch", "any", "-q", *tag)
            for arch in ("x86_64", "aarch64"):
                run("publish", args.store, name, version, str(out / arch), "--arch", arch, "--no-check", "-q")

    store_manifests = Path(args.store) / "manifests"
    args.manifests.mkdir(parents=True, exist_ok=True)
    changed = []
    for m in sorted(store_manifests.glob("*.toml")):
        if m.stem not in {p.name for p in models}:
            continue
        target = args.manifests / m.name
        if not target.exists() or not filecmp.cmp(m, target, shallow=False):
            changed.append(m.name)
            shutil.copyfile(m, target)
    if changed:
        print(f"\nmanifests written to {args.manifests}: {', '.join(changed)} (commit them)")
    else:
        print(f"\nmanifests reproduced byte for byte: {args.manifests} is unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
