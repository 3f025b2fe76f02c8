"""The CMake package and the C++ demo (demo/cpp): configure, build and run against a real store.

A local store in tmp gets one small MLP built with `zoostore build --model-version` and published;
a copy of demo/cpp gets a zoo.toml naming that store and a `zoostore lock`; then `cmake -S -B`
(which runs `zoostore sync --locked` through zoostore_sync()), `cmake --build`, and the binary's
printed outputs are compared with onnxruntime's; the same demo is cross-built for aarch64 and run under qemu
(where the cross compiler and the aarch64 TVM runtime that ./dev.sh fetches are present).
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import helpers_models as hm
import numpy as np
import onnxruntime as ort
import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "demo" / "cpp"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed"),
    pytest.mark.skipif(platform.machine() != "x86_64", reason="the C++ demo test runs on x86_64 hosts"),
]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [e.get("PYTHONPATH")])])
    return e


def zoostore(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "zoostore", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"zoostore {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def cmake_configure(project: Path, build: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmake_dir = zoostore("cmake-dir").stdout.strip()
    return subprocess.run(
        ["cmake", "-S", str(project), "-B", str(build), f"-DCMAKE_PREFIX_PATH={cmake_dir}",
         f"-DZOOSTORE_EXECUTABLE={sys.executable};-m;zoostore", f"-DPython3_EXECUTABLE={sys.executable}", *extra],
        env=env(), capture_output=True, text=True)


@pytest.fixture(scope="module")
def consumer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of demo/cpp whose zoo.toml names a store holding mlp 1.0.0 (x86_64), locked."""
    tmp = tmp_path_factory.mktemp("cmake")
    hm.write_model(tmp / "src", hm.mlp(1), descriptor=hm.descriptor_text("model.onnx", *hm.MLP_IO))
    zoostore("build", str(tmp / "src"), "--target", "x86_64", "--model-version", "1.0.0", "--name", "mlp",
             "--out", str(tmp / "built"), "-q")
    zoostore("init", str(tmp / "store"))
    zoostore("publish", str(tmp / "store"), "mlp", "1.0.0", str(tmp / "built" / "x86_64"), "--arch", "x86_64", "--no-check")
    project = tmp / "demo"
    shutil.copytree(DEMO, project, ignore=shutil.ignore_patterns("build", "models", "zoo.lock"))
    text = (project / "zoo.toml").read_text()
    (project / "zoo.toml").write_text(re.sub(r'(?m)^store = .*$', f'store = "{tmp / "store"}"', text))
    shutil.copy(tmp / "src" / "model.onnx", tmp / "model.onnx")
    zoostore("lock", "--project", str(project))
    return project


def _published_variant(consumer: Path, project: Path, model: str, version: str, requirement: str) -> Path:
    """The consumer's mlp built as `version`, published to its store as `model`, and a copy of
    the consumer project at `project` whose zoo.toml asks for it (`requirement`), locked."""
    built = project.parent / f"built-{model}-{version}"
    zoostore("build", str(consumer.parent / "src"), "--target", "x86_64", "--model-version", version,
             "--name", "mlp", "--out", str(built), "-q")
    zoostore("publish", str(consumer.parent / "store"), model, version, str(built / "x86_64"), "--arch", "x86_64",
             "--no-check")
    shutil.copytree(consumer, project, ignore=shutil.ignore_patterns("build", "models", "zoo.lock"))
    toml = project / "zoo.toml"
    toml.write_text(toml.read_text().replace('mlp = "^1.0"', requirement))
    zoostore("lock", "--project", str(project))
    return project


def test_cmake_dir_holds_the_config_file() -> None:
    out = zoostore("cmake-dir").stdout.strip()
    assert (Path(out) / "zoostore-config.cmake").is_file()


def test_demo_configures_builds_runs_and_matches_onnxruntime(consumer: Path) -> None:
    build = consumer / "build"
    proc = cmake_configure(consumer, build)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    model_dir = consumer / "models" / "mlp" / "x86_64"
    assert (model_dir / "deploy_lib.so").is_file() and (model_dir / "mlp_config.hpp").is_file()
    proc = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = subprocess.run([str(build / "zoo_infer")], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("model mlp 1.0.0 for x86_64, tvm ")
    assert run.stderr == ""  # 1.0 is supported: no warning
    [line] = [ln for ln in run.stdout.splitlines() if ln.startswith("output ")]
    head, values = line.split(":")
    assert head == "output 0 probs float32 1x4"
    got = np.array([float(v) for v in values.split()], dtype=np.float32)
    x = ((np.arange(16) % 13 - 6) / 4).astype(np.float32).reshape(1, 16)
    session = ort.InferenceSession(str(consumer.parent / "model.onnx"), providers=["CPUExecutionProvider"])
    [want] = session.run(None, {"x": x})
    np.testing.assert_allclose(got, want.reshape(-1), rtol=1e-5, atol=1e-6)


def test_configure_fails_with_zoostores_message_when_the_lock_is_stale(consumer: Path, tmp_path: Path) -> None:
    project = tmp_path / "stale"
    shutil.copytree(consumer, project, ignore=shutil.ignore_patterns("build", "models"))
    toml = project / "zoo.toml"
    toml.write_text(toml.read_text().replace('mlp = "^1.0"', 'mlp = "^1.0"\nother = "^2"'))
    proc = cmake_configure(project, tmp_path / "build")
    assert proc.returncode != 0
    err = " ".join(proc.stderr.split())  # CMake wraps messages
    assert "zoostore sync failed (exit 3)" in err and "zoo.lock" in err
    assert not (project / "models").exists()


def test_model_dir_for_an_unsynced_arch_fails_the_configure(consumer: Path, tmp_path: Path) -> None:
    project = tmp_path / "arch"
    shutil.copytree(consumer, project, ignore=shutil.ignore_patterns("build", "models"))
    lists = project / "CMakeLists.txt"
    text = lists.read_text()
    assert 'MODEL "${ZOO_MODEL}" HEADER' in text
    lists.write_text(text.replace('MODEL "${ZOO_MODEL}" HEADER', 'MODEL "${ZOO_MODEL}" ARCH aarch64 HEADER'))
    proc = cmake_configure(project, tmp_path / "build")
    assert proc.returncode != 0
    err = " ".join(proc.stderr.split())  # CMake wraps messages
    assert "zoostore_model_dir:" in err and "mlp/aarch64 does not exist" in err and "arch 'aarch64'" in err


def test_demo_refuses_a_model_version_it_declares_unsupported(consumer: Path, tmp_path: Path) -> None:
    """mlp 0.9.0 is in the demo's unsupported list: the header's check_version says so at run time."""
    project = _published_variant(consumer, tmp_path / "old", "mlp", "0.9.0", 'mlp = "=0.9.0"')
    assert cmake_configure(project, tmp_path / "b").returncode == 0
    assert subprocess.run(["cmake", "--build", str(tmp_path / "b")], capture_output=True).returncode == 0
    run = subprocess.run([str(tmp_path / "b" / "zoo_infer")], capture_output=True, text=True)
    assert run.returncode == 1 and "model version 0.9.0 is not supported" in run.stderr
    assert "output " not in run.stdout


def test_demo_cross_builds_for_aarch64_and_runs_under_qemu(consumer: Path, tmp_path: Path) -> None:
    """The same demo, cross-compiled with aarch64-linux-gnu-g++ against the aarch64 TVM runtime,
    syncs the aarch64 build of the model (CMAKE_SYSTEM_PROCESSOR picks the arch) and runs under
    qemu-user with the same outputs as onnxruntime."""
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    cxx = shutil.which("aarch64-linux-gnu-g++")
    runtime = Path(os.environ.get("ZOOSTORE_TVM_AARCH64_RUNTIME", "/nonexistent"))
    if qemu is None or cxx is None or not (runtime / "libtvm_runtime.so").is_file():
        pytest.skip("needs qemu-user, g++-aarch64-linux-gnu and ZOOSTORE_TVM_AARCH64_RUNTIME (./dev.sh test sets it up)")
    import tvm_ffi.libinfo

    store = consumer.parent / "store"
    zoostore("build", str(consumer.parent / "src"), "--target", "aarch64", "--model-version", "1.0.0",
             "--name", "mlp", "--out", str(tmp_path / "built"), "-q")
    zoostore("publish", str(store), "mlp", "1.0.0", str(tmp_path / "built" / "aarch64"), "--arch", "aarch64", "--no-check")
    project = tmp_path / "cross"
    shutil.copytree(consumer, project, ignore=shutil.ignore_patterns("build", "models", "zoo.lock"))
    toml = project / "zoo.toml"
    toml.write_text(toml.read_text().replace('dest = "models"', 'dest = "models"\narchs = ["x86_64", "aarch64"]'))
    zoostore("lock", "--project", str(project))
    build = tmp_path / "b"
    proc = subprocess.run(
        ["cmake", "-S", str(project), "-B", str(build), f"-DCMAKE_PREFIX_PATH={zoostore('cmake-dir').stdout.strip()}",
         f"-DZOOSTORE_EXECUTABLE={sys.executable};-m;zoostore", "-DCMAKE_SYSTEM_NAME=Linux",
         "-DCMAKE_SYSTEM_PROCESSOR=aarch64", f"-DCMAKE_CXX_COMPILER={cxx}",
         f"-DTVM_FFI_INCLUDE_DIR={tvm_ffi.libinfo.find_include_path()}",
         f"-DDLPACK_INCLUDE_DIR={tvm_ffi.libinfo.find_dlpack_include_path()}",
         f"-DTVM_RUNTIME_LIBRARY={runtime / 'libtvm_runtime.so'}", f"-DTVM_FFI_LIBRARY={runtime / 'libtvm_ffi.so'}"],
        env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (project / "models" / "mlp" / "aarch64" / "deploy_lib.so").is_file()
    proc = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (build / "zoo_infer").read_bytes()[18:20] == (183).to_bytes(2, "little")  # EM_AARCH64
    run = subprocess.run([qemu, "-L", "/usr/aarch64-linux-gnu", str(build / "zoo_infer")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith("model mlp 1.0.0 for aarch64, tvm ")
    [line] = [ln for ln in run.stdout.splitlines() if ln.startswith("output ")]
    got = np.array([float(v) for v in line.split(":")[1].split()], dtype=np.float32)
    x = ((np.arange(16) % 13 - 6) / 4).astype(np.float32).reshape(1, 16)
    session = ort.InferenceSession(str(consumer.parent / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(got, session.run(None, {"x": x})[0].reshape(-1), rtol=1e-5, atol=1e-6)


def sync_only_project(tmp_path: Path) -> Path:
    """A CMake project that only runs zoostore_sync(), locked to a store holding one small file."""
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "labels.txt").write_text("cat\ndog\n")
    zoostore("init", str(tmp_path / "store"))
    zoostore("publish", str(tmp_path / "store"), "labels", "1.0.0", str(tmp_path / "files"))
    project = tmp_path / "app"
    project.mkdir()
    (project / "zoo.toml").write_text(f'store = "{tmp_path / "store"}"\n[models]\nlabels = "^1.0"\n')
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.19)\nproject(app NONE)\nfind_package(zoostore CONFIG REQUIRED)\n"
        "zoostore_sync()\n")
    zoostore("lock", "--project", str(project))
    return project


def test_configure_says_what_sync_placed(tmp_path: Path) -> None:
    project = sync_only_project(tmp_path)
    proc = cmake_configure(project, tmp_path / "build")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "-- zoostore sync: 1 placed, 0 unchanged, 0 removed" in proc.stdout
    proc = cmake_configure(project, tmp_path / "build")
    assert "-- zoostore sync: 0 placed, 1 unchanged, 0 removed" in proc.stdout


def test_configure_shows_zoostores_error_as_text_not_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store is gone and the cache is cold: the configure fails with the error's message."""
    project = sync_only_project(tmp_path)
    shutil.rmtree(tmp_path / "store")
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cold-cache"))
    proc = cmake_configure(project, tmp_path / "build")
    assert proc.returncode != 0
    err = " ".join(proc.stderr.split())  # CMake wraps messages
    assert "zoostore sync failed (exit 6)" in err and "no zoostore store at" in err
    assert '{"error"' not in err and '"kind"' not in err


def test_demo_runs_a_model_whose_zoo_name_is_no_cpp_identifier(consumer: Path, tmp_path: Path) -> None:
    """Published as `my-mlp`, built as `mlp`: zoostore_model_dir(HEADER, NAMESPACE) reads the header's
    name from the synced files (a '-' in `<model>_config.hpp` used to fail the compile)."""
    project = _published_variant(consumer, tmp_path / "dash", "my-mlp", "1.0.0", 'my-mlp = "^1.0"')
    proc = cmake_configure(project, tmp_path / "b", "-DZOO_MODEL=my-mlp")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(["cmake", "--build", str(tmp_path / "b")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = subprocess.run([str(tmp_path / "b" / "zoo_infer")], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.startswith("model mlp 1.0.0 for x86_64, tvm "), run.stdout + run.stderr


def test_a_deleted_destination_is_synced_again_by_the_next_build(tmp_path: Path) -> None:
    project = sync_only_project(tmp_path)
    assert cmake_configure(project, tmp_path / "build").returncode == 0
    shutil.rmtree(project / "models")
    proc = subprocess.run(["cmake", "--build", str(tmp_path / "build")], env=env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "zoostore sync: 1 placed" in proc.stdout
    assert [p.name for p in (project / "models").rglob("labels.txt")] == ["labels.txt"]
    proc = subprocess.run(["cmake", "--build", str(tmp_path / "build")], env=env(), capture_output=True, text=True)
    assert proc.returncode == 0 and "zoostore sync" not in proc.stdout  # nothing changed: no configure


def test_the_zoostore_beside_the_config_file_is_found_without_path(tmp_path: Path) -> None:
    # An installed zoostore's config file is <prefix>/lib/pythonX.Y/site-packages/zoostore/
    # integrations/cmake/; its command is <prefix>/bin/zoostore, found even when the venv is not
    # on PATH (it used to take the first zoostore on PATH, or none).
    from zoostore.integrations.cmake import CMAKE_DIR

    prefix = tmp_path / "venv"
    cmake_dir = prefix / "lib" / "python3.11" / "site-packages" / "zoostore" / "integrations" / "cmake"
    shutil.copytree(CMAKE_DIR, cmake_dir)
    (prefix / "bin").mkdir()
    stub = prefix / "bin" / "zoostore"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    project = tmp_path / "project"
    project.mkdir()
    (project / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.19)\nproject(p NONE)\nfind_package(zoostore CONFIG REQUIRED)\n"
        'message(STATUS "zoostore is ${ZOOSTORE_EXECUTABLE}")\n')
    path = os.pathsep.join(p for p in ("/usr/bin", "/bin") if not (Path(p) / "zoostore").exists())
    proc = subprocess.run(["cmake", "-S", str(project), "-B", str(tmp_path / "build"), f"-DCMAKE_PREFIX_PATH={cmake_dir}"],
                          env={**os.environ, "PATH": f"{Path(shutil.which('cmake') or 'cmake').parent}{os.pathsep}{path}"},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert f"zoostore is {stub}" in proc.stdout, proc.stdout


def test_find_package_checks_the_version_it_asks_for(tmp_path: Path) -> None:
    # zoostore-config-version.cmake: the installed zoostore's version, same major (and, while
    # it is 0.x, same minor) and at least the one asked for.
    import zoostore
    from zoostore.integrations.cmake import CMAKE_DIR

    text = (Path(CMAKE_DIR) / "zoostore-config-version.cmake").read_text()
    assert f'set(PACKAGE_VERSION "{zoostore.__version__}")' in text
    major, minor, _ = (int(p) for p in zoostore.__version__.split(".")[:3])

    def configure(wanted: str) -> subprocess.CompletedProcess[str]:
        project = tmp_path / f"p{wanted}"
        project.mkdir()
        (project / "CMakeLists.txt").write_text(
            f"cmake_minimum_required(VERSION 3.19)\nproject(p NONE)\nfind_package(zoostore {wanted} CONFIG REQUIRED)\n"
            'message(STATUS "zoostore ${zoostore_VERSION}")\n')
        return subprocess.run(["cmake", "-S", str(project), "-B", str(project / "b"), f"-Dzoostore_DIR={CMAKE_DIR}",
                               f"-DZOOSTORE_EXECUTABLE={sys.executable};-m;zoostore"], capture_output=True, text=True)

    ok = configure(f"{major}.{minor}")
    assert ok.returncode == 0 and f"zoostore {zoostore.__version__}" in ok.stdout, ok.stderr
    newer = configure(f"{major}.{minor + 1}")
    assert newer.returncode != 0 and "zoostore" in newer.stderr and zoostore.__version__ in newer.stderr
    assert configure(f"{major + 1}.0").returncode != 0
