"""Running an aarch64 model library on an x86_64 machine: the C++ driver (driver/tvm_run.cc)
cross-compiled with `aarch64-linux-gnu-g++` against the aarch64 TVM runtime, run under
qemu-user. `zoostore build` uses it to check aarch64 libraries against the model's test data.

Needs, and says which is missing otherwise (`Aarch64Runner.find` returns the reason):
qemu-user (`apt-get install qemu-user-static`), the cross compiler (`g++-aarch64-linux-gnu`,
which brings the aarch64 C library under /usr/aarch64-linux-gnu), and the aarch64 TVM runtime
libraries in $ZOOSTORE_TVM_AARCH64_RUNTIME (from the pinned TVM's aarch64 wheels: `_runtime_hint`
says how; in a checkout `python demo/fetch_aarch64_runtime.py DIR`, which `./dev.sh setup` runs). The compiled driver is kept next to the runtime, keyed by the hash of its
source and the TVM versions.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from zoostore.core.records import dataclass

RUNTIME_ENV = "ZOOSTORE_TVM_AARCH64_RUNTIME"
DRIVER_SOURCE = Path(__file__).with_name("driver") / "tvm_run.cc"
SYSROOT = Path("/usr/aarch64-linux-gnu")


def _runtime_hint() -> str:
    """How to get the aarch64 runtime libraries: from the pinned TVM's aarch64 wheels."""
    try:
        pins = f"apache-tvm=={importlib.metadata.version('apache-tvm')} " \
               f"apache-tvm-ffi=={importlib.metadata.version('apache-tvm-ffi')}"
    except importlib.metadata.PackageNotFoundError:
        pins = "apache-tvm apache-tvm-ffi (the versions installed here)"
    return (f"pip download --no-deps --only-binary=:all: --platform manylinux_2_28_aarch64 -d WHEELS {pins}, "
            f"unzip tvm/lib/libtvm_runtime.so and tvm_ffi/lib/libtvm_ffi.so from them into DIR, then export "
            f"{RUNTIME_ENV}=DIR (in a zoostore checkout: python demo/fetch_aarch64_runtime.py DIR)")


@dataclass(frozen=True)
class Aarch64Runner:
    """Runs an aarch64 TVM module under qemu-user through the small C++ driver next to its runtime."""

    qemu: str
    driver: Path  # next to libtvm_runtime.so and libtvm_ffi.so (RUNPATH $ORIGIN)

    @classmethod
    def find(cls) -> Aarch64Runner | str:
        """A runner, or why there is none."""
        qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
        cxx = shutil.which("aarch64-linux-gnu-g++")
        runtime = Path(os.environ.get(RUNTIME_ENV, "")) if os.environ.get(RUNTIME_ENV) else None
        if qemu is None:
            return "qemu-user is not installed (apt-get install qemu-user-static)"
        if cxx is None or not (SYSROOT / "lib" / "ld-linux-aarch64.so.1").exists():
            return "the aarch64 cross compiler is not installed (apt-get install g++-aarch64-linux-gnu)"
        if runtime is None or not (runtime / "libtvm_runtime.so").is_file():
            return (f"${RUNTIME_ENV} names no directory with the aarch64 libtvm_runtime.so: {_runtime_hint()}")
        return cls(qemu, _driver(cxx, runtime))

    def run(self, library: Path, feeds: dict[str, Any], names: list[str]) -> dict[str, Any]:
        """The library's outputs (by name) for `feeds` (inputs in call order)."""
        import numpy as np

        with tempfile.TemporaryDirectory(prefix="zoostore-qemu-") as tmp:
            work = Path(tmp)
            specs = []
            for i, value in enumerate(feeds.values()):
                value = np.ascontiguousarray(value)
                value.tofile(work / f"in{i}.bin")
                specs.append(f"{work / f'in{i}.bin'}:{value.dtype.name}:{'x'.join(str(d) for d in value.shape)}")
            proc = subprocess.run([self.qemu, "-L", str(SYSROOT), str(self.driver), str(library), str(work / "out"),
                                   *specs], capture_output=True, text=True, timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"tvm_run under qemu failed: {proc.stderr.strip()[-500:]}")
            outputs = {}
            for line, name in zip(proc.stdout.splitlines(), names, strict=False):
                _, index, dtype, shape = line.split(" ")
                dims = [int(d) for d in shape.split("x")] if shape else []
                outputs[name] = np.fromfile(work / f"out{index}.bin", dtype=dtype).reshape(dims)
            return outputs


def _driver(cxx: str, runtime: Path) -> Path:
    """The cross-compiled driver, built once per source and TVM version."""
    import tvm_ffi.libinfo

    versions = f"{importlib.metadata.version('apache-tvm')} {importlib.metadata.version('apache-tvm-ffi')}"
    key = hashlib.sha256(DRIVER_SOURCE.read_bytes() + versions.encode()).hexdigest()[:16]
    driver = runtime / f"tvm_run-{key}"
    if driver.is_file():
        return driver
    staged = runtime / f".tvm_run-{key}.{os.getpid()}"
    cmd = [cxx, "-std=c++17", "-O1", str(DRIVER_SOURCE), "-o", str(staged),
           f"-I{tvm_ffi.libinfo.find_include_path()}", f"-I{tvm_ffi.libinfo.find_dlpack_include_path()}",
           f"-L{runtime}", "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,-rpath,$ORIGIN"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        staged.unlink(missing_ok=True)
        raise RuntimeError(f"cross-compiling the aarch64 driver failed: {proc.stderr.strip()[-500:]}")
    os.replace(staged, driver)
    return driver
