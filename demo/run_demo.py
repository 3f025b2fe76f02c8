"""The end-to-end demo that the README's first command runs, on a local directory store.

Maintainer side: init a store, publish two versions of a real model (all-MiniLM-L6-v2 from
PyPI, and a fine-tuned variant), plus the demo zoo of ONNX models (checked and compiled with
TVM for x86_64 and aarch64) when `demo/make_models.py` and the ML extras are available.
Consumer side: the project under `lock/` (its zoo.toml and zoo.lock are committed) syncs the
locked version, syncs again (nothing to do), upgrades, and syncs again, downloading only what
changed. Every command is printed as it runs. Output goes to demo-out/ (git-ignored).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-out"
STORE = OUT / "store"
LOCK_DIR = ROOT / "lock"
sys.path.insert(0, str(ROOT / "demo"))

from variants import make_variant, model_dir  # noqa: E402


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def zoostore(*args: str, cwd: Path = ROOT, capture: bool = False) -> str:
    shown = " ".join(a if " " not in a else repr(a) for a in args)
    print(f"\n$ zoostore {shown}", flush=True)
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "zoostore", *args], cwd=cwd, text=True,
                          stdout=subprocess.PIPE if capture else None)
    if proc.returncode != 0:
        raise SystemExit(f"demo failed: 'zoostore {shown}' exited {proc.returncode}")
    print(f"  ({time.perf_counter() - t:.2f} s)")
    if capture:
        print(proc.stdout, end="")
    return proc.stdout if capture else ""


def onnx_pipeline() -> list[str]:
    """Build and publish the ONNX demo zoo if its script and the ML extras are present."""
    script = ROOT / "demo" / "publish_zoo.py"
    if not script.exists():
        return []
    print("\n== ONNX demo zoo: generate, check, build for x86_64 and aarch64, publish", flush=True)
    proc = subprocess.run([sys.executable, str(script), "--store", str(STORE), "--work", str(OUT / "zoo-build")], cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"demo failed: {script.name} exited {proc.returncode}")
    return ["demo zoo published"]


def main() -> int:
    os.environ.setdefault("ZOOSTORE_CACHE", str(OUT / "cache"))
    if OUT.exists():
        shutil.rmtree(OUT, onerror=lambda f, p, e: (os.chmod(p, 0o700), f(p)))
    OUT.mkdir()
    src = model_dir()
    v1, v2 = OUT / "src" / "minilm-1.0.0", OUT / "src" / "minilm-1.1.0"
    shutil.copytree(src, v1, ignore=shutil.ignore_patterns(".*"))
    changed = make_variant(src, v2, "last-layer")
    raw = sum(f.stat().st_size for f in v1.rglob("*") if f.is_file())

    print("== Maintainer: publish two versions of a real model into a local store")
    zoostore("init", str(STORE))
    zoostore("publish", str(STORE), "minilm", "1.0.0", str(v1), "--summary",
             "all-MiniLM-L6-v2 sentence embeddings (float32, safetensors)",
             "--meta", "dataset='1B sentence pairs'", "--meta", "dims=384")
    out = zoostore("publish", str(STORE), "minilm", "1.1.0", str(v2), "--tag", "bleedingedge", "--json", capture=True)
    v2_upload = json.loads(out)["new_stored_bytes"]
    onnx_pipeline()
    zoostore("ls", str(STORE))
    zoostore("catalog", str(STORE), "--output", str(OUT / "CATALOG.md"))
    zoostore("verify", str(STORE), "--read-data")

    print("\n== Consumer: the project in lock/ (zoo.toml and zoo.lock are committed)")
    committed_lock = (LOCK_DIR / "zoo.lock").read_bytes()
    results = {}
    try:
        results["first sync (locked 1.0.0)"] = json.loads(zoostore("sync", "--locked", "--json", cwd=LOCK_DIR, capture=True))
        t = time.perf_counter()
        results["no-op sync"] = json.loads(zoostore("sync", "--locked", "--json", cwd=LOCK_DIR, capture=True))
        noop = time.perf_counter() - t
        zoostore("outdated", cwd=LOCK_DIR)
        zoostore("lock", "--upgrade", cwd=LOCK_DIR)
        results["upgrade sync (1.1.0)"] = json.loads(zoostore("sync", "--json", cwd=LOCK_DIR, capture=True))
    finally:
        (LOCK_DIR / "zoo.lock").write_bytes(committed_lock)
        print("\n(restored the committed lock/zoo.lock)")

    print("\n== Summary")
    print(f"model files: {human(raw)}; the fine-tune changed {human(changed)} of tensors; "
          f"publishing 1.1.0 uploaded {human(v2_upload)}")
    print(f"{'step':30} {'placed':>7} {'unchanged':>10} {'downloaded':>12} {'reused locally':>15}")
    for step, r in results.items():
        print(f"{step:30} {len(r['placed']):>7} {r['unchanged']:>10} {human(r['bytes_downloaded']):>12} {human(r['bytes_reused']):>15}")
    print(f"no-op sync wall time including interpreter start: {noop * 1000:.0f} ms")
    print(f"files are in {OUT / 'models'}; catalog in {OUT / 'CATALOG.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
