"""Fetch the aarch64 TVM runtime libraries (from PyPI's manylinux aarch64 wheels of the pinned
apache-tvm and apache-tvm-ffi) into a directory, for running aarch64 artifacts under qemu.

    python demo/fetch_aarch64_runtime.py DEST

`./dev.sh setup` runs this, so tests never download anything themselves. pip is the only thing
that touches the network.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WANTED = {"tvm/lib/libtvm_runtime.so": "libtvm_runtime.so", "tvm_ffi/lib/libtvm_ffi.so": "libtvm_ffi.so"}


def fetch(dest: Path) -> str | None:
    """Extract the libraries into `dest`; returns why not, or None on success."""
    if all((dest / name).is_file() for name in WANTED.values()):
        return None
    tvm_version = importlib.metadata.version("apache-tvm")
    ffi_version = importlib.metadata.version("apache-tvm-ffi")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
            "--platform", "manylinux_2_28_aarch64",
            "--python-version", f"{sys.version_info.major}.{sys.version_info.minor}",
            "-d", tmp, f"apache-tvm=={tvm_version}", f"apache-tvm-ffi=={ffi_version}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            return f"pip could not download the aarch64 TVM wheels: {proc.stderr.strip()[-500:]}"
        staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".staging-"))
        for wheel in Path(tmp).glob("*.whl"):
            with zipfile.ZipFile(wheel) as z:
                for member, name in WANTED.items():
                    if member in z.namelist():
                        (staging / name).write_bytes(z.read(member))
        missing = [n for n in WANTED.values() if not (staging / n).is_file()]
        if missing:
            shutil.rmtree(staging)
            return f"the aarch64 wheels hold no {missing}"
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)
    return None


if __name__ == "__main__":
    why = fetch(Path(sys.argv[1]))
    if why:
        print(f"fetch_aarch64_runtime: {why}", file=sys.stderr)
        sys.exit(1)
