"""The package as users install it: a wheel built from this tree, installed into a clean venv
(offline: the venv borrows its dependencies from the test environment's site-packages, never
the network, and never sees this source tree), runs `zoostore --help` and a local publish + sync."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
         str(ROOT)], cwd=out)
    wheels = list(out.glob("zoostore-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_the_package_and_its_type_marker(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("zoostore/py.typed", "zoostore/core/errors.py", "zoostore/storage/backends/s3.py",
                 "zoostore/testing/conformance.py", "zoostore/cli/__init__.py"):
        assert must in names, must
    assert not any(n.startswith("tests/") for n in names)
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Provides-Extra: s3" in text and "Provides-Extra: gcs" in text and "Provides-Extra: azure" in text
    assert "Requires-Dist: fsspec>=" in text and "==" not in text.split("Requires-Dist: fsspec")[1].split("\n")[0]
    assert "Project-URL:" in text and "Classifier: Typing :: Typed" in text


def test_clean_venv_installs_the_wheel_and_publishes_and_syncs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=tmp_path)
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=tmp_path).stdout.strip())
    # Dependencies come from the test environment; zoostore itself must come from the wheel.
    (site / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ZOOSTORE_"))}
    env["ZOOSTORE_CACHE"] = str(tmp_path / "cache")
    zoostore = str(venv / "bin" / "zoostore")

    where = run([str(py), "-c", "import zoostore; print(zoostore.__file__)"], cwd=tmp_path, env=env).stdout
    assert where.startswith(str(site)), where
    assert "publish" in run([zoostore, "--help"], cwd=tmp_path, env=env).stdout

    files = tmp_path / "model"
    files.mkdir()
    (files / "weights.bin").write_bytes(os.urandom(200_000))
    run([zoostore, "init", str(tmp_path / "store")], cwd=tmp_path, env=env)
    run([zoostore, "publish", str(tmp_path / "store"), "net", "1.0.0", str(files), "--arch", "any"],
        cwd=tmp_path, env=env)
    project = tmp_path / "project"
    project.mkdir()
    (project / "zoo.toml").write_text(f'store = "{tmp_path / "store"}"\n[models]\nnet = "^1"\n')
    run([zoostore, "sync"], cwd=project, env=env)
    placed = list((project / "models").rglob("weights.bin"))
    assert len(placed) == 1 and placed[0].read_bytes() == (files / "weights.bin").read_bytes()


def test_runtime_extras_carry_only_what_zoostore_imports() -> None:
    """boto3 is for the tests (buckets, users); zoostore reaches S3 through s3fs alone."""
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = meta["optional-dependencies"]
    assert not any(d.startswith("boto3") for d in extras["s3"] + meta["dependencies"])
    assert any(d.startswith("boto3") for d in extras["test"])
    sources = "\n".join(p.read_text() for p in (ROOT / "zoostore").rglob("*.py") if "testing" not in p.parts)
    assert "import boto3" not in sources
