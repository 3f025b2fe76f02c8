"""Project-wide properties: light imports, strict typing, one exit-code table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("fsspec", "s3fs", "botocore", "aiobotocore", "onnx", "onnxruntime", "tvm", "numpy", "zstandard")


def test_import_zoostore_loads_no_heavy_library() -> None:
    code = f"import sys, zoostore, zoostore.cli; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_error_class_has_an_exit_code() -> None:
    from zoostore.core import errors
    from zoostore.cli import EXIT_CODES, exit_code_for

    leaves = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.ZooError)]
    mapped = {cls for cls, _ in EXIT_CODES}
    for cls in leaves:
        assert any(issubclass(cls, m) for m in mapped), cls
    assert exit_code_for(errors.LockOutOfDateError("x")) == 3
    assert exit_code_for(errors.IntegrityError("x")) == 4


def test_every_leaf_error_is_also_a_builtin() -> None:
    from zoostore.core import errors

    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.ZooError) and cls is not errors.ZooError:
            builtins = [b for b in cls.__mro__ if b.__module__ == "builtins" and b not in (object, BaseException, Exception)]
            assert builtins, f"{cls.__name__} inherits no builtin error"


def test_mypy_strict_is_clean() -> None:
    pytest.importorskip("mypy", reason="mypy is in the test extra; install with pip install -e '.[test]'")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "zoostore"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]
