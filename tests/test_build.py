"""`zoostore build`: TVM artifacts per arch, reproducible, and really runnable.

x86_64 artifacts run in-process through the TVM runtime; aarch64 artifacts run under
qemu-user with `zoostore/integrations/driver/tvm_run.cc`, cross-compiled against the aarch64 libtvm_runtime.so
and libtvm_ffi.so from the apache-tvm / apache-tvm-ffi manylinux aarch64 wheels. Both are
compared with onnxruntime on the host.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import helpers_models as hm
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from zoostore.cli import main
from zoostore.core.errors import BuildError, FormatError, NewerFormatError, UsageError
from zoostore.integrations import tvm_build
from zoostore.integrations.onnx_check import graph_nodes
from zoostore.integrations.tvm_build import (
    IO_FILE,
    LIBRARY,
    RECORD_FILE,
    build_model,
    parse_arch,
    read_build_record,
    tvm_requirement,
)

REPO = Path(__file__).resolve().parent.parent
DRIVER = REPO / "zoostore" / "integrations" / "driver" / "tvm_run.cc"
EM_X86_64, EM_AARCH64 = 62, 183

needs_cross = pytest.mark.skipif(
    shutil.which("aarch64-linux-gnu-g++") is None,
    reason="the aarch64 cross compiler is not installed (apt-get install g++-aarch64-linux-gnu)",
)


class Recorder:
    def __init__(self) -> None:
        self.tasks: list[str] = []

    def start(self, task: str, total: int | None = None, *, unit: str = "B") -> None:
        self.tasks.append(task)

    def advance(self, task: str, amount: int = 1) -> None:
        pass

    def done(self, task: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


def model_dir(tmp_path: Path, name: str, model: onnx.ModelProto, io: tuple[list, list] | None = None,
              **kw: object) -> Path:
    desc = hm.descriptor_text("model.onnx", *io) if io else None
    hm.write_model(tmp_path / name, model, descriptor=desc, **kw)  # type: ignore[arg-type]
    return tmp_path / name


def elf_machine(path: Path) -> int:
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF", f"{path} is not an ELF file"
    return int(struct.unpack_from("<H", head, 18)[0])


def onnx_reference(network: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(str(network), providers=["CPUExecutionProvider"])
    return [np.asarray(r) for r in session.run(None, feeds)]


def feeds_for(directory: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Inputs matching deploy_io.json (seeded floats, zero integers), and output names."""
    io = json.loads((directory / IO_FILE).read_text())
    rng = np.random.default_rng(7)
    feeds = {}
    for node in io["inputs"]:
        if node["dtype"].startswith("float"):
            feeds[node["name"]] = rng.standard_normal(node["shape"]).astype(node["dtype"])
        else:
            feeds[node["name"]] = np.zeros(node["shape"], dtype=node["dtype"])
    return feeds, [n["name"] for n in io["outputs"]]


def run_in_process(library: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())
    result = vm["main"](*[tvm.runtime.tensor(v) for v in feeds.values()])
    values = [result] if hasattr(result, "numpy") else list(result)  # a tensor, or a tuple of them
    return [v.numpy() for v in values]


# --- the build itself -----------------------------------------------------------------------


def test_build_x86_64_runs_in_process_and_matches_onnxruntime(tmp_path: Path) -> None:
    src = model_dir(tmp_path, "mlp", hm.mlp(1), (hm.MLP_IO[0], hm.MLP_IO[1]))
    progress = Recorder()
    [result] = build_model(src, targets=["x86_64"], out=tmp_path / "out", progress=progress)
    out = tmp_path / "out" / "x86_64"
    assert result.out_dir == out and result.library == out / LIBRARY
    assert sorted(p.name for p in out.iterdir()) == sorted([LIBRARY, IO_FILE, RECORD_FILE, "mlp_config.hpp"])
    assert elf_machine(out / LIBRARY) == EM_X86_64
    assert [s.step for s in result.steps] == ["import", "compile x86_64", "export x86_64", "write x86_64"]
    assert progress.tasks == [f"build {src}: import", *(f"build {src} for x86_64: {s}" for s in ("compile", "export", "write"))]

    io = json.loads((out / IO_FILE).read_text())
    assert io == {
        "format": 1, "library": LIBRARY, "executor": "relax.vm", "entry": "main",
        "inputs": [{"name": "x", "shape": [1, 16], "dtype": "float32"}],
        "outputs": [{"name": "probs", "shape": [1, 4], "dtype": "float32"}],
    }
    feeds, _ = feeds_for(out)
    [got] = run_in_process(out / LIBRARY, feeds)
    [want] = onnx_reference(src / "model.onnx", feeds)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "make", "dims"),
    [
        ("convnet", lambda: hm.convnet(2), {"batch": 2}),
        ("two_outputs", hm.two_outputs, {}),
        ("tokens", hm.token_classifier, {"seq": 5}),
    ],
)
def test_x86_64_matches_onnxruntime(tmp_path: Path, name: str, make: object, dims: dict[str, int]) -> None:
    model = make()  # type: ignore[operator]
    inputs, outputs = graph_nodes(model)
    io = ([(n.name, list(n.shape), n.dtype) for n in inputs], [(n.name, list(n.shape), n.dtype) for n in outputs])
    desc = hm.descriptor_text("model.onnx", *io, dims=dims or None)
    hm.write_model(tmp_path / name, model, descriptor=desc)
    [result] = build_model(tmp_path / name, targets=["x86_64"])
    assert result.out_dir == tmp_path / name / "build" / "x86_64"  # the default --out
    record = json.loads((result.out_dir / IO_FILE).read_text())
    for node in record["inputs"]:
        for sym, size in dims.items():
            declared = next(n for n in io[0] if n[0] == node["name"])[1]
            if sym in declared:
                assert node["shape"][declared.index(sym)] == size
    feeds, names = feeds_for(result.out_dir)
    assert names == [o.name for o in outputs]
    got = run_in_process(result.library, feeds)
    want = onnx_reference(tmp_path / name / "model.onnx", feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_external_data_model_builds(tmp_path: Path) -> None:
    src = model_dir(tmp_path, "ext", hm.mlp(2), hm.MLP_IO, external_data=True)
    [result] = build_model(src, targets=["x86_64"])
    feeds, _ = feeds_for(result.out_dir)
    np.testing.assert_allclose(run_in_process(result.library, feeds)[0],
                               onnx_reference(src / "model.onnx", feeds)[0], rtol=1e-5, atol=1e-6)


def test_build_record_for_publish(tmp_path: Path) -> None:
    import tvm
    import tvm_ffi

    src = model_dir(tmp_path, "mlp", hm.mlp(1), hm.MLP_IO)
    [result] = build_model(src, targets=["x86_64"])
    record = read_build_record(result.out_dir)
    assert record == result.record
    assert record.arch == "x86_64" and record.model == "mlp"
    assert record.tvm_version == tvm.__version__ and record.tvm_ffi_version == tvm_ffi.__version__
    minor = ".".join(tvm.__version__.split(".")[:2])
    major, m = (int(x) for x in minor.split("."))
    assert record.requires == {"tvm": f">={major}.{m}.0 <{major}.{m + 1}.0"}
    meta = record.meta
    assert json.loads(meta["target"])["mtriple"] == "x86_64-linux-gnu"
    assert meta["executor"] == "relax.vm" and meta["compiler"].startswith("g++")
    assert meta["source"]["file"] == "model.onnx" and meta["source"]["blake3"].startswith("blake3:")
    assert meta["options"]["input_shapes"] == {"x": [1, 16]}
    assert record.files == (LIBRARY, IO_FILE, "mlp_config.hpp") and record.model_version == ""
    import tomli_w
    import tomllib

    assert tomllib.loads(tomli_w.dumps({"meta": meta}))["meta"] == meta


@pytest.mark.parametrize(("version", "spec"), [
    ("0.27.0.post1", ">=0.27.0 <0.28.0"), ("0.27.3", ">=0.27.0 <0.28.0"), ("1.4.0rc1", ">=1.4.0 <1.5.0"),
])
def test_tvm_requirement(version: str, spec: str) -> None:
    assert tvm_requirement(version) == spec


def test_read_build_record_errors(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no such file; run 'zoostore build'"):
        read_build_record(tmp_path)
    (tmp_path / RECORD_FILE).write_text("format = 9\n")
    with pytest.raises(NewerFormatError, match="upgrade zoostore"):
        read_build_record(tmp_path)
    (tmp_path / RECORD_FILE).write_text('format = 1\narch = "x86_64"\n')
    with pytest.raises(FormatError, match=r"build.toml: tvm: missing"):
        read_build_record(tmp_path)


@needs_cross
def test_builds_are_byte_reproducible(tmp_path: Path) -> None:
    # Different source and output paths on purpose: nothing path-dependent may leak in.
    a = model_dir(tmp_path / "one", "conv", hm.convnet(1), hm.CONVNET_IO)
    b = model_dir(tmp_path / "two" / "deeper", "conv", hm.convnet(1), hm.CONVNET_IO)
    build_model(a, targets=["x86_64", "aarch64"], out=tmp_path / "out-a")
    build_model(b, targets=["aarch64", "x86_64"], out=tmp_path / "elsewhere" / "out-b")
    for arch in ("x86_64", "aarch64"):
        for name in (LIBRARY, IO_FILE, RECORD_FILE, "conv_config.hpp"):
            one = (tmp_path / "out-a" / arch / name).read_bytes()
            two = (tmp_path / "elsewhere" / "out-b" / arch / name).read_bytes()
            assert one == two, f"{arch}/{name} differs between two builds"
    assert (tmp_path / "out-a" / "x86_64" / LIBRARY).read_bytes() != (tmp_path / "out-a" / "aarch64" / LIBRARY).read_bytes()
    # A different model (v2 head) gives a different library.
    c = model_dir(tmp_path / "three", "conv", hm.convnet(2), hm.CONVNET_IO)
    build_model(c, targets=["x86_64"], out=tmp_path / "out-c")
    assert (tmp_path / "out-c" / "x86_64" / LIBRARY).read_bytes() != (tmp_path / "out-a" / "x86_64" / LIBRARY).read_bytes()


@needs_cross
def test_aarch64_artifact_is_an_aarch64_shared_library(tmp_path: Path) -> None:
    src = model_dir(tmp_path, "mlp", hm.mlp(1), hm.MLP_IO)
    [result] = build_model(src, targets=["arm64"])  # alias of aarch64
    assert result.arch == "aarch64"
    lib = result.library
    assert elf_machine(lib) == EM_AARCH64
    if shutil.which("readelf"):
        header = subprocess.run(["readelf", "-h", str(lib)], capture_output=True, text=True, check=True).stdout
        assert "AArch64" in header and "DYN (Shared object file)" in header
    record = read_build_record(result.out_dir)
    assert json.loads(record.target)["mtriple"] == "aarch64-linux-gnu"
    assert record.compiler == "aarch64-linux-gnu-g++"


# --- errors ------------------------------------------------------------------------------------


def lstm_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = onnx.numpy_helper.from_array(rng.standard_normal((1, 8, 3)).astype(np.float32), "W")
    r = onnx.numpy_helper.from_array(rng.standard_normal((1, 8, 2)).astype(np.float32), "R")
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=2)], "lstm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 1, 1, 2])], [w, r])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_unsupported_operator_names_model_step_and_tvm_error(tmp_path: Path) -> None:
    src = model_dir(tmp_path, "lstm", lstm_model())
    with pytest.raises(BuildError) as info:
        build_model(src, targets=["x86_64"])
    message = str(info.value)
    assert message.startswith(f"build {src} failed at step 'import': OpNotImplemented")
    assert "LSTM" in message
    assert not (src / "build").exists()


def test_missing_cross_compiler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = model_dir(tmp_path, "mlp", hm.mlp(1), hm.MLP_IO)
    real_which = shutil.which
    monkeypatch.setattr(tvm_build.shutil, "which",
                        lambda cmd, *a, **k: None if cmd == "aarch64-linux-gnu-g++" else real_which(cmd, *a, **k))
    with pytest.raises(BuildError, match="apt-get install g\\+\\+-aarch64-linux-gnu"):
        build_model(src, targets=["x86_64", "aarch64"])


def test_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown target architecture 'riscv64'"):
        parse_arch("riscv64")
    with pytest.raises(UsageError, match="no such model directory"):
        build_model(tmp_path / "missing", targets=["x86_64"])
    two = tmp_path / "two"
    hm.write_model(two, hm.mlp(1), network="a.onnx")
    hm.write_model(two, hm.mlp(2), network="b.onnx")
    with pytest.raises(UsageError, match="no model.toml and 2 .onnx files"):
        build_model(two, targets=["x86_64"])
    bad = tmp_path / "bad"
    hm.write_model(bad, hm.mlp(1), descriptor=hm.descriptor_text("other.onnx", *hm.MLP_IO))
    with pytest.raises(UsageError, match="'other.onnx' does not exist"):
        build_model(bad, targets=["x86_64"])


# --- CLI -----------------------------------------------------------------------------------------


def test_cli_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = model_dir(tmp_path, "mlp", hm.mlp(1), hm.MLP_IO)
    assert main(["build", str(src), "--target", "x86_64", "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert f"x86_64   {tmp_path / 'o' / 'x86_64' / LIBRARY}" in out and "compile" in out
    assert "requires: tvm >=" in out
    assert main(["build", str(src), "-t", "x86_64", "--json", "-o", str(tmp_path / "o")]) == 0
    doc = json.loads(capsys.readouterr().out)["builds"]
    assert doc[0]["arch"] == "x86_64" and set(doc[0]["files"]) == {LIBRARY, IO_FILE, RECORD_FILE, "mlp_config.hpp"}
    assert main(["build", str(tmp_path / "lstm-missing"), "-t", "x86_64"]) == 2
    lstm = model_dir(tmp_path, "lstm", lstm_model())
    assert main(["build", str(lstm), "-t", "x86_64"]) == 11
    assert "failed at step 'import'" in capsys.readouterr().err


def test_cli_build_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    out = capsys.readouterr().out
    for word in ("--target", "--out", "aarch64", "deploy_io.json", "build.toml"):
        assert word in out


# --- aarch64 under qemu ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Aarch64Runner:
    qemu: str
    sysroot: Path
    driver: Path  # next to libtvm_runtime.so and libtvm_ffi.so (RUNPATH $ORIGIN)

    def run(self, library: Path, feeds: dict[str, np.ndarray], work: Path) -> list[np.ndarray]:
        specs = []
        for i, (name, value) in enumerate(feeds.items()):
            path = work / f"in{i}.bin"
            np.ascontiguousarray(value).tofile(path)
            specs.append(f"{path}:{value.dtype.name}:{'x'.join(str(d) for d in value.shape)}")
        proc = subprocess.run(
            [self.qemu, "-L", str(self.sysroot), str(self.driver), str(library), str(work / "out"), *specs],
            capture_output=True, text=True, timeout=300,
        )
        assert proc.returncode == 0, f"tvm_run under qemu failed:\n{proc.stdout}\n{proc.stderr}"
        outputs = []
        for line in proc.stdout.splitlines():
            _, index, dtype, shape = line.split(" ")
            dims = [int(d) for d in shape.split("x")] if shape else []
            outputs.append(np.fromfile(work / f"out{index}.bin", dtype=dtype).reshape(dims))
        return outputs


@pytest.fixture(scope="session")
def aarch64_runner() -> Aarch64Runner:
    qemu = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    if qemu is None:
        pytest.skip("qemu-user is not installed (apt-get install qemu-user-static)")
    cxx = shutil.which("aarch64-linux-gnu-g++")
    if cxx is None:
        pytest.skip("the aarch64 cross compiler is not installed (apt-get install g++-aarch64-linux-gnu)")
    sysroot = Path("/usr/aarch64-linux-gnu")
    if not (sysroot / "lib" / "ld-linux-aarch64.so.1").exists():
        pytest.skip(f"no aarch64 C library under {sysroot} (apt-get install libc6-arm64-cross)")
    import tvm_ffi.libinfo

    tvm_version = importlib.metadata.version("apache-tvm")
    ffi_version = importlib.metadata.version("apache-tvm-ffi")
    # ./dev.sh setup fetches the aarch64 runtime (demo/fetch_aarch64_runtime.py) and points
    # ZOOSTORE_TVM_AARCH64_RUNTIME at it: tests never download anything themselves.
    override = os.environ.get("ZOOSTORE_TVM_AARCH64_RUNTIME")
    if not override:
        pytest.skip("ZOOSTORE_TVM_AARCH64_RUNTIME is not set; run the tests with ./dev.sh test, which fetches the aarch64 TVM runtime")
    runtime = Path(override)
    if not (runtime / "libtvm_runtime.so").is_file():
        pytest.skip(f"ZOOSTORE_TVM_AARCH64_RUNTIME={override} holds no libtvm_runtime.so; run ./dev.sh setup")
    key = hashlib.sha256(DRIVER.read_bytes() + f"{tvm_version} {ffi_version}".encode()).hexdigest()[:16]
    driver = runtime / f"tvm_run-{key}"
    if not driver.is_file():
        staged = runtime / f".tvm_run-{key}.{os.getpid()}"
        cmd = [
            cxx, "-std=c++17", "-O1", str(DRIVER), "-o", str(staged),
            f"-I{tvm_ffi.libinfo.find_include_path()}", f"-I{tvm_ffi.libinfo.find_dlpack_include_path()}",
            f"-L{runtime}", "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,-rpath,$ORIGIN",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"cross-compiling the driver failed:\n{proc.stderr}"
        staged.rename(driver)
    assert elf_machine(driver) == EM_AARCH64
    return Aarch64Runner(qemu, sysroot, driver)


@needs_cross
@pytest.mark.parametrize(
    ("name", "make", "dims"),
    [
        ("mlp", lambda: hm.mlp(1), {"batch": 2}),
        ("convnet", lambda: hm.convnet(1), {}),
        ("two_outputs", hm.two_outputs, {}),
        ("tokens", hm.token_classifier, {"seq": 3}),
    ],
)
def test_aarch64_artifact_runs_under_qemu(
    tmp_path: Path, aarch64_runner: Aarch64Runner, name: str, make: object, dims: dict[str, int]
) -> None:
    model = make()  # type: ignore[operator]
    inputs, outputs = graph_nodes(model)
    io = ([(n.name, list(n.shape), n.dtype) for n in inputs], [(n.name, list(n.shape), n.dtype) for n in outputs])
    hm.write_model(tmp_path / name, model, descriptor=hm.descriptor_text("model.onnx", *io, dims=dims or None))
    [result] = build_model(tmp_path / name, targets=["aarch64"])
    feeds, _ = feeds_for(result.out_dir)
    got = aarch64_runner.run(result.library, feeds, tmp_path)
    want = onnx_reference(tmp_path / name / "model.onnx", feeds)
    assert [g.shape for g in got] == [w.shape for w in want]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


# --- real models shipped in PyPI packages ----------------------------------------------------------


def _make_models_module() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_models", REPO / "demo" / "make_models.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_cross
@pytest.mark.parametrize("name", ["squeezenet-light", "silero-vad"])
def test_real_model_checks_builds_and_runs_on_both_archs(
    tmp_path: Path, request: pytest.FixtureRequest, name: str
) -> None:
    from zoostore.integrations.onnx_check import check_model

    mm = _make_models_module()
    make = {"squeezenet-light": mm.make_squeezenet, "silero-vad": mm.make_silero}[name]  # type: ignore[attr-defined]
    network = make(tmp_path / "models")
    if network is None:
        pytest.skip(f"{name}: its source package is not installed (see demo/make_models.py)")
    report = check_model(network)
    assert report.ok, report.problems
    results = build_model(network.parent, targets=["x86_64", "aarch64"], out=tmp_path / "build")
    feeds, names = feeds_for(results[0].out_dir)
    want = onnx_reference(network, feeds)
    for got in [run_in_process(results[0].library, feeds)]:
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)
    assert elf_machine(results[1].library) == EM_AARCH64
    try:
        runner = request.getfixturevalue("aarch64_runner")
    except pytest.skip.Exception as exc:
        pytest.skip(f"x86_64 verified; aarch64 run skipped: {exc}")
    got = runner.run(results[1].library, feeds, tmp_path)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5)


# --- Autoware ModelZoo folders -------------------------------------------------------------------

AUTOWARE = REPO / "tests" / "data" / "autoware"
ENCODER = AUTOWARE / "perception/lidar_obstacle_detection/centerpoint_encoder/onnx_centerpoint_encoder/definition.yaml"


def autoware_encoder(tmp_path: Path) -> Path:
    """centerpoint_encoder's real definition.yaml and a stand-in network of its declared names
    and shapes, input_features[40000, 32, 9] -> ReduceMax(axis 2) -> Transpose ->
    pillar_features[40000, 1, 32], in model_files/ as in the ModelZoo."""
    folder = tmp_path / "centerpoint_encoder" / "onnx_centerpoint_encoder"  # as in the ModelZoo
    (folder / "model_files").mkdir(parents=True)
    shutil.copy(ENCODER, folder / "definition.yaml")
    graph = helper.make_graph(
        [helper.make_node("ReduceMax", ["input_features"], ["m"], axes=[2], keepdims=1),
         helper.make_node("Transpose", ["m"], ["pillar_features"], perm=[0, 2, 1])],
        "centerpoint_encoder_stand_in",
        [helper.make_tensor_value_info("input_features", TensorProto.FLOAT, [40000, 32, 9])],
        [helper.make_tensor_value_info("pillar_features", TensorProto.FLOAT, [40000, 1, 32])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(folder / "model_files" / "pts_voxel_encoder_centerpoint.onnx"))
    return folder


def test_autoware_folder_builds_from_model_files(tmp_path: Path) -> None:
    folder = autoware_encoder(tmp_path)
    [result] = build_model(folder, targets=["x86_64"])
    assert result.out_dir == folder / "build" / "x86_64"
    assert result.record.source_file == "pts_voxel_encoder_centerpoint.onnx"
    io = json.loads((result.out_dir / IO_FILE).read_text())
    assert io["inputs"] == [{"name": "input_features", "shape": [40000, 32, 9], "dtype": "float32"}]
    assert io["outputs"] == [{"name": "pillar_features", "shape": [40000, 1, 32], "dtype": "float32"}]
    feeds, _ = feeds_for(result.out_dir)
    [got] = run_in_process(result.library, feeds)
    [want] = onnx_reference(folder / "model_files" / "pts_voxel_encoder_centerpoint.onnx", feeds)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_autoware_lfs_pointer_and_framework_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from zoostore.documents.model_folder import LfsPointerError

    folder = tmp_path / "onnx_fp32_kitti"
    (folder / "model_files").mkdir(parents=True)
    shutil.copy(AUTOWARE / "perception/lidar_obstacle_detection/point_pillars_rpn/onnx_fp32_kitti/definition.yaml",
                folder / "definition.yaml")
    pointer = folder / "model_files" / "rpn.onnx"
    shutil.copy(AUTOWARE / "lfs-pointer-example.pb", pointer)
    with pytest.raises(LfsPointerError, match=r"rpn.onnx is a Git LFS pointer .*git lfs pull"):
        build_model(folder, targets=["x86_64"])
    with pytest.raises(LfsPointerError, match="git lfs pull"):
        build_model(pointer, targets=["x86_64"])
    assert main(["build", str(folder), "-t", "x86_64"]) == 2
    assert "git lfs pull" in capsys.readouterr().err
    pointer.unlink()
    with pytest.raises(UsageError, match=r"definition.yaml: network.filename: 'model_files/rpn.onnx' does not exist"):
        build_model(folder, targets=["x86_64"])
    yolo2 = tmp_path / "yolo2"
    (yolo2 / "model_files").mkdir(parents=True)
    shutil.copy(AUTOWARE / "perception/camera_obstacle_detection/yolo_v2_tiny/tensorflow_fp32_coco/definition.yaml",
                yolo2 / "definition.yaml")
    (yolo2 / "model_files" / "yolov2-tiny.pb").write_bytes(b"a frozen TensorFlow graph")
    with pytest.raises(UsageError, match=r"network.framework: build compiles ONNX networks, found 'Tensorflow'"):
        build_model(yolo2, targets=["x86_64"])


def test_autoware_build_writes_a_cpp_header_that_compiles(tmp_path: Path) -> None:
    """The header names the network as Autoware does (the folder above definition.yaml),
    carries the version given to build, is the same bytes for a second build elsewhere, and
    compiles on its own (g++ -std=c++17 -fsyntax-only) with the version check usable in a
    static_assert."""
    folder = autoware_encoder(tmp_path / "a")
    [result] = build_model(folder, targets=["x86_64"], version="1.2.3", out=tmp_path / "out-a")
    header = result.out_dir / "centerpoint_encoder_config.hpp"
    assert header in result.files and result.record.files[-1] == header.name
    assert result.record.model == "centerpoint_encoder" and result.record.model_version == "1.2.3"
    text = header.read_text()
    for line in (
        'inline constexpr char network_name[] = "centerpoint_encoder";',
        "inline constexpr ModelVersion modelzoo_version{1, 2, 3};",
        f'inline constexpr char tvm_version[] = "{result.record.tvm_version}";',
        'inline constexpr char arch[] = "x86_64";',
        "inline constexpr std::int64_t input0_shape[] = {40000, 32, 9};",
        '  {"input_features", 2, 32, 1, "float32", 3, input0_shape},',
        '  {"pillar_features", 2, 32, 1, "float32", 3, output0_shape},',
    ):
        assert line in text, line
    assert '"x86_64-linux-gnu' in text  # the target
    again = autoware_encoder(tmp_path / "b" / "elsewhere")
    [second] = build_model(again, targets=["x86_64"], version="1.2.3", out=tmp_path / "out-b")
    assert (second.out_dir / header.name).read_bytes() == header.read_bytes()
    main_cpp = tmp_path / "main.cpp"
    main_cpp.write_text(f"""#include "{header}"
#include "{header}"
namespace m = zoostore::models::centerpoint_encoder;
constexpr zoostore::ModelVersion supported[] = {{{{1, 2, 0}}}};
constexpr zoostore::ModelVersion unsupported[] = {{{{1, 1, 0}}}};
constexpr zoostore::ModelVersion none[] = {{{{0, 0, 0}}}};
static_assert(m::has_version && m::modelzoo_version.patch == 3);
static_assert(zoostore::check_version(m::modelzoo_version, supported, unsupported) == zoostore::VersionStatus::supported);
static_assert(zoostore::check_version({{1, 1, 7}}, supported, unsupported) == zoostore::VersionStatus::unsupported);
static_assert(zoostore::check_version({{2, 0, 0}}, supported, none) == zoostore::VersionStatus::unknown);
static_assert(m::num_inputs == 1 && m::network_inputs[0].shape[2] == 9 && m::network_outputs[0].ndim == 3);
int main() {{ return 0; }}
""")
    proc = subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-pedantic", "-Werror", "-fsyntax-only", str(main_cpp)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(UsageError, match="invalid version"):
        build_model(folder, targets=["x86_64"], version="1.2")


def test_build_runs_the_models_test_data_sets_and_fails_on_a_wrong_output(tmp_path: Path) -> None:
    """The ONNX Model Zoo layout's `test_data_set_N` beside the model: the x86_64 library must
    reproduce the expected outputs; a set of other input shapes is skipped and said so."""
    from onnx import numpy_helper

    src = model_dir(tmp_path, "mlp", hm.mlp(1), (hm.MLP_IO[0], hm.MLP_IO[1]))
    rng = np.random.default_rng(3)

    def write_set(n: int, x: np.ndarray, delta: float = 0.0) -> None:
        folder = src / f"test_data_set_{n}"
        folder.mkdir()
        [want] = onnx_reference(src / "model.onnx", {"x": x})
        (folder / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x").SerializeToString())
        (folder / "output_0.pb").write_bytes(numpy_helper.from_array(want + delta, "probs").SerializeToString())

    write_set(0, rng.standard_normal((1, 16)).astype(np.float32))
    write_set(1, rng.standard_normal((3, 16)).astype(np.float32))  # the build bound batch=1
    [result] = build_model(src, targets=["x86_64"], out=tmp_path / "out")
    step = next(s for s in result.steps if s.step == "test data x86_64")
    assert "1/2 test data set(s) match TVM" in step.detail and "1 set(s) skipped" in step.detail
    # The result is in build.toml, and so in the metadata publish gives the version.
    assert result.record.test_data == {"passed": 1, "found": 2, "skipped": 1}
    assert result.record.meta["test_data"] == {"passed": 1, "found": 2, "skipped": 1}

    write_set(2, rng.standard_normal((1, 16)).astype(np.float32), delta=0.01)
    with pytest.raises(BuildError, match=r"does not reproduce the model's test data: test_data_set_2: TVM output 'probs'"):
        build_model(src, targets=["x86_64"], out=tmp_path / "out2")


def test_build_runs_test_data_through_the_aarch64_library_under_qemu(tmp_path: Path) -> None:
    from onnx import numpy_helper

    from zoostore.integrations.qemu import Aarch64Runner

    runner = Aarch64Runner.find()
    if isinstance(runner, str):
        pytest.skip(runner)
    src = model_dir(tmp_path, "mlp", hm.mlp(1), (hm.MLP_IO[0], hm.MLP_IO[1]))
    x = np.random.default_rng(5).standard_normal((1, 16)).astype(np.float32)
    [want] = onnx_reference(src / "model.onnx", {"x": x})
    folder = src / "test_data_set_0"
    folder.mkdir()
    (folder / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x").SerializeToString())
    (folder / "output_0.pb").write_bytes(numpy_helper.from_array(want, "probs").SerializeToString())
    [result] = build_model(src, targets=["aarch64"], out=tmp_path / "out")
    step = next(s for s in result.steps if s.step == "test data aarch64")
    assert "1/1 test data set(s) match TVM" in step.detail
    (folder / "output_0.pb").write_bytes(numpy_helper.from_array(want + 0.01, "probs").SerializeToString())
    with pytest.raises(BuildError, match="does not reproduce the model's test data"):
        build_model(src, targets=["aarch64"], out=tmp_path / "out2")


# --- what a failed build leaves, and what its errors say ---------------------------------------------


def test_a_build_failing_its_test_data_leaves_the_output_folder_as_it_was(tmp_path: Path) -> None:
    """A rebuild whose library fails the test data must not leave the new library beside the old
    build.toml (publish would take the pair): every file of OUT/<arch>/ moves in only at the end."""
    from onnx import numpy_helper

    src = model_dir(tmp_path, "mlp", hm.mlp(1), (hm.MLP_IO[0], hm.MLP_IO[1]))
    x = np.random.default_rng(5).standard_normal((1, 16)).astype(np.float32)
    [want] = onnx_reference(src / "model.onnx", {"x": x})
    (src / "test_data_set_0").mkdir()
    (src / "test_data_set_0" / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x").SerializeToString())
    (src / "test_data_set_0" / "output_0.pb").write_bytes(numpy_helper.from_array(want, "probs").SerializeToString())
    out = tmp_path / "out"
    build_model(src, targets=["x86_64"], out=out)
    before = {p.name: p.read_bytes() for p in (out / "x86_64").iterdir()}
    onnx.save(hm.mlp(2), src / "model.onnx")  # other weights: the old test data no longer matches
    with pytest.raises(BuildError) as info:
        build_model(src, targets=["x86_64"], out=out)
    assert {p.name: p.read_bytes() for p in (out / "x86_64").iterdir()} == before
    assert sorted(p.name for p in out.iterdir()) == ["x86_64"]  # no staging folder left behind
    message = str(info.value)
    assert "for x86_64: the compiled library does not reproduce the model's test data" in message
    assert "left as it was" in message and "zoostore check" in message


@pytest.mark.parametrize(("content", "says"), [
    (b"this is not onnx\n", "is not a readable ONNX model: Error parsing message"),
    (b"", "is not an ONNX model: it holds no graph (0 bytes)"),
])
def test_a_network_that_is_not_onnx_is_named_with_what_to_do(tmp_path: Path, content: bytes, says: str) -> None:
    from zoostore.integrations.onnx_check import check_model

    src = model_dir(tmp_path, "mlp", hm.mlp(1), hm.MLP_IO)
    (src / "model.onnx").write_bytes(content)
    with pytest.raises(BuildError) as info:
        build_model(src, targets=["x86_64"], out=tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"build {src} failed at step 'import': {src / 'model.onnx'} {says}")
    assert "expected a serialized ONNX ModelProto" in message
    assert not (tmp_path / "out").exists()
    report = check_model(src / "model.onnx")
    assert [p for p in report.problems if says in p] and len(report.problems) == 1, report.problems


def test_unsupported_operator_says_what_to_do(tmp_path: Path) -> None:
    src = model_dir(tmp_path, "lstm", lstm_model())
    with pytest.raises(BuildError) as info:
        build_model(src, targets=["x86_64"], out=tmp_path / "out")
    assert "cannot convert these operators: re-export the network without them" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_targets_separated_by_commas_get_a_hint() -> None:
    with pytest.raises(UsageError, match="give several as --target x86_64 aarch64"):
        parse_arch("x86_64,aarch64")


def test_cli_build_says_why_aarch64_test_data_was_not_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from onnx import numpy_helper

    src = model_dir(tmp_path, "mlp", hm.mlp(1), (hm.MLP_IO[0], hm.MLP_IO[1]))
    x = np.zeros((1, 16), np.float32)
    [want] = onnx_reference(src / "model.onnx", {"x": x})
    (src / "test_data_set_0").mkdir()
    (src / "test_data_set_0" / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x").SerializeToString())
    (src / "test_data_set_0" / "output_0.pb").write_bytes(numpy_helper.from_array(want, "probs").SerializeToString())
    monkeypatch.setattr(tvm_build.platform, "machine", lambda: "x86_64")
    monkeypatch.setenv("ZOOSTORE_TVM_AARCH64_RUNTIME", str(tmp_path / "no-runtime"))
    targets = ["x86_64", "aarch64"] if shutil.which("aarch64-linux-gnu-g++") else ["x86_64"]
    assert main(["build", str(src), "-t", *targets, "-o", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "1/1 test data set(s) match TVM" in out
    if "aarch64" in targets:
        assert "test data not run on aarch64: $ZOOSTORE_TVM_AARCH64_RUNTIME" in out
    # --json carries the same details (per arch and step); -q prints nothing on success.
    assert main(["build", str(src), "-t", *targets, "-o", str(tmp_path / "o"), "--json"]) == 0
    builds = {b["arch"]: b for b in json.loads(capsys.readouterr().out)["builds"]}
    assert "1/1 test data set(s) match TVM" in builds["x86_64"]["details"]["test data x86_64"]
    if "aarch64" in targets:
        assert "$ZOOSTORE_TVM_AARCH64_RUNTIME" in builds["aarch64"]["details"]["test data aarch64"]
    assert main(["build", str(src), "-t", "x86_64", "-o", str(tmp_path / "o"), "-q"]) == 0
    assert capsys.readouterr().out == ""


def test_model_version_is_written_in_its_canonical_form(tmp_path: Path) -> None:
    src = model_dir(tmp_path, "mlp", hm.mlp(1), hm.MLP_IO)
    [result] = build_model(src, targets=["x86_64"], out=tmp_path / "out", version="v1.2.0")
    assert result.record.model_version == "1.2.0"
    assert 'version[] = "1.2.0";' in (tmp_path / "out" / "x86_64" / "mlp_config.hpp").read_text()


def test_an_output_that_is_a_file_is_refused_before_compiling(tmp_path: Path) -> None:
    src = model_dir(tmp_path, "mlp", hm.mlp(1), hm.MLP_IO)
    (tmp_path / "afile").write_text("keep me")
    with pytest.raises(UsageError, match=r"the output .*afile is a file; expected a directory .* give another --out"):
        build_model(src, targets=["x86_64"], out=tmp_path / "afile")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x86_64").write_text("keep me")
    with pytest.raises(UsageError, match=r"x86_64 is a file"):
        build_model(src, targets=["x86_64"], out=tmp_path / "out")
    assert (tmp_path / "afile").read_text() == "keep me"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x86_64"]
