"""Project-wide properties: light imports, strict typing, one exit-code table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("fsspec", "s3fs", "botocore", "aiobotocore", "onnx", "onnxruntime", "tvm", "numpy", "zstandard")


HEAVY_ML = ("onnx", "onnxruntime", "tvm", "tvm_ffi", "numpy")
S3 = ("s3fs", "botocore", "aiobotocore", "aiohttp")
#: Parsers and readers a publish of plain files never runs, kept off its start-up (issue 14).
PUBLISH_LAZY = ("zoostore.documents.descriptor", "zoostore.documents.definition_yaml",
                "zoostore.documents.build_record", "zoostore.documents.resolve",
                "zoostore.storage.frames_into", "zoostore.storage.resemblance")


@pytest.mark.parametrize("what, code, must_not_load", [
    ("import zoostore and its CLI", "import zoostore, zoostore.cli", HEAVY),
    ("open a memory or local backend",
     "import zoostore.storage.backends as b, zoostore.storage.backends.local, zoostore.storage.backends.memory;"
     " b.open_backend('memory://x')", S3),
    ("import the check and build commands",
     "import zoostore.cli.check, zoostore.cli.build, zoostore.integrations.onnx_check, "
     "zoostore.integrations.tvm_build, zoostore.documents.descriptor", HEAVY_ML),
    ("import zoo://", "import zoostore.zoofs", S3 + HEAVY_ML),
    ("import publish and open_store", "from zoostore.ops.publish import publish; "
     "from zoostore.repository import open_store", S3 + HEAVY_ML + PUBLISH_LAZY),
])
def test_imports_are_light(what: str, code: str, must_not_load: tuple[str, ...]) -> None:
    """Heavy optional libraries load inside the function that needs them, never on import.
    (The no-op sync's imports are checked by tests/test_sync.py, which needs a project.)"""
    probe = f"{code}\nimport sys; print(sorted(m for m in {must_not_load!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", f"{what} loaded {out.stdout.strip()}"


def test_every_error_class_has_an_exit_code() -> None:
    """Each class needs its own entry, listed before its parents, so that a new error class
    cannot silently fall back to its parent's code."""
    from zoostore.core import errors
    from zoostore.cli import EXIT_CODES, exit_code_for

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.ZooError)]
    order = [cls for cls, _ in EXIT_CODES]
    missing = [c.__name__ for c in classes if c not in order]
    assert not missing, f"error classes without an entry in zoostore.cli.EXIT_CODES: {missing}"
    for i, cls in enumerate(order):
        shadowing = [p.__name__ for p in order[:i] if issubclass(cls, p)]
        assert not shadowing, f"{cls.__name__} is listed after its parent {shadowing}: its entry is unreachable"
    assert exit_code_for(errors.LockOutOfDateError("x")) == 3
    assert exit_code_for(errors.IntegrityError("x")) == 4
    assert exit_code_for(errors.InvalidPathError("x")) == 2


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
