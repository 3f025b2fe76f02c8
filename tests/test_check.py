"""`zoostore check`: onnx checker, opset policy, declared nodes, onnxruntime smoke run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helpers_models as hm
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from zoostore.cli import main
from zoostore.documents.descriptor import ModelDescriptor
from zoostore.core.errors import CheckFailedError, MissingDependencyError, UsageError
from zoostore.integrations.onnx_check import (
    CheckReport,
    OpsetPolicy,
    check_files,
    check_model,
    concrete_input_shapes,
    find_onnx_files,
    graph_nodes,
    require_valid,
    smoke_inputs,
)

STEPS = ["load", "checker", "policy", "nodes", "smoke"]


class Recorder:
    """A zoostore.core.progress.Progress that remembers what it was told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def start(self, task: str, total: int | None = None, *, unit: str = "B") -> None:
        self.events.append(("start", task))

    def advance(self, task: str, amount: int = 1) -> None:
        self.events.append(("advance", task))

    def done(self, task: str) -> None:
        self.events.append(("done", task))

    def note(self, message: str) -> None:
        self.events.append(("note", message))


def mlp_dir(tmp_path: Path, *, descriptor: str | None = "default", **kw: object) -> Path:
    if descriptor == "default":
        descriptor = hm.descriptor_text("model.onnx", *hm.MLP_IO, dims={"batch": 2})
    return hm.write_model(tmp_path / "mlp", hm.mlp(1), descriptor=descriptor, **kw)  # type: ignore[arg-type]


def assert_problem(report: CheckReport, *needles: str) -> None:
    assert not report.ok
    text = "\n".join(report.problems)
    for n in needles:
        assert n in text, f"{n!r} not in problems:\n{text}"


def test_good_model_with_descriptor(tmp_path: Path) -> None:
    path = mlp_dir(tmp_path)
    progress = Recorder()
    report = check_model(path, progress=progress)
    assert report.ok, report.problems
    assert [s.step for s in report.steps] == STEPS
    assert all(s.ok and s.seconds >= 0 for s in report.steps)
    assert report.descriptor == path.parent / "model.toml"
    assert (report.ir_version, report.opsets) == (hm.IR_VERSION, {"ai.onnx": hm.OPSET})
    assert [(n.name, n.shape, n.dtype) for n in report.inputs] == [("x", ("batch", 16), "float32")]
    # The smoke run used the batch size the model.toml binds.
    assert "x[2, 16]" in report.steps[-1].detail and "probs[2, 4]" in report.steps[-1].detail
    starts = [t for kind, t in progress.events if kind == "start"]
    assert starts == [f"check {path}: {s}" for s in STEPS]
    assert [t for kind, t in progress.events if kind == "done"] == starts
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["ok"] is True and [s["step"] for s in doc["steps"]] == STEPS


def test_good_model_without_descriptor(tmp_path: Path) -> None:
    report = check_model(mlp_dir(tmp_path, descriptor=None))
    assert report.ok, report.problems
    assert report.descriptor is None
    assert "no model.toml" in report.steps[3].detail
    assert "x[1, 16]" in report.steps[-1].detail  # symbolic batch -> 1


def test_integer_inputs_get_zeros(tmp_path: Path) -> None:
    # Gather fails on token ids outside the vocabulary: random ints would break real text models.
    path = hm.write_model(tmp_path / "tok", hm.token_classifier())
    report = check_model(path)
    assert report.ok, report.problems
    feeds = smoke_inputs(report.inputs, None)
    assert feeds["ids"].dtype == np.int64 and not feeds["ids"].any()


def test_smoke_inputs_are_deterministic_and_use_dims(tmp_path: Path) -> None:
    desc = ModelDescriptor.parse(hm.descriptor_text("model.onnx", *hm.MLP_IO, dims={"batch": 3}))
    inputs, _ = graph_nodes(hm.mlp(1))
    a, b = smoke_inputs(inputs, desc), smoke_inputs(inputs, desc)
    assert a["x"].shape == (3, 16) and a["x"].dtype == np.float32
    assert np.array_equal(a["x"], b["x"])
    assert concrete_input_shapes(inputs, None) == {"x": (1, 16)}


def test_initializers_listed_as_inputs_are_not_inputs(tmp_path: Path) -> None:
    # IR version 3 models (onnx < 1.2 exporters) list every weight among the graph inputs.
    report = check_model(hm.write_model(tmp_path / "ir3", hm.legacy(hm.mlp(1), opset=9)))
    assert report.ok, report.problems
    assert [n.name for n in report.inputs] == ["x"]


def test_descriptor_mismatches_are_reported(tmp_path: Path) -> None:
    desc = hm.descriptor_text(
        "model.onnx",
        [("x", ["batch", 15], "float16"), ("mask", ["batch"], "bool")],
        [("probs", ["batch", 4, 1], "float32")],
    )
    report = check_model(mlp_dir(tmp_path, descriptor=desc))
    assert_problem(
        report,
        "declares input 'mask'",
        "input 'x' dtype: model.toml says float16, the graph has float32",
        "input 'x' dimension 1: model.toml says 15, the graph fixes 16",
        "output 'probs' rank",
    )
    assert [s.step for s in report.steps if not s.ok] == ["nodes"]


def test_undeclared_graph_input_and_bound_dim_mismatch(tmp_path: Path) -> None:
    desc = hm.descriptor_text("model.onnx", [("y", ["b", 16], "float32")],
                              [("probs", ["b", "classes"], "float32")], dims={"b": 2, "classes": 5})
    report = check_model(mlp_dir(tmp_path, descriptor=desc))
    assert_problem(
        report,
        "the graph has input 'x' that model.toml does not declare",
        "output 'probs' dimension 1: model.toml says 'classes' = 5, the graph fixes 4",
    )


def test_smoke_output_shape_against_declared(tmp_path: Path) -> None:
    # The graph declares a symbolic output; only the run shows it disagrees with model.toml.
    model = hm.mlp(1)
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "classes"
    desc = hm.descriptor_text("model.onnx", *hm.MLP_IO[:1], [("probs", ["batch", 5], "float32")])
    path = hm.write_model(tmp_path / "m", model, descriptor=desc)
    report = check_model(path)
    assert_problem(report, "smoke: output 'probs' came out with shape [1, 4]; model.toml declares ['batch', 5]")


def test_opset_policy(tmp_path: Path) -> None:
    path = mlp_dir(tmp_path)
    assert_problem(check_model(path, policy=OpsetPolicy(min_opset=18)), "opset 17 is below the minimum 18")
    assert_problem(check_model(path, policy=OpsetPolicy(min_opset=7, max_opset=13)),
                   "opset 17 is above the maximum 13")
    assert check_model(path, policy=OpsetPolicy(min_opset=17, max_opset=17)).ok
    with pytest.raises(UsageError, match="below --min-opset"):
        OpsetPolicy(min_opset=12, max_opset=11)


def test_old_opset_fails_default_policy(tmp_path: Path) -> None:
    report = check_model(hm.write_model(tmp_path / "old", hm.legacy(hm.mlp(1), opset=6)))
    assert_problem(report, "opset 6 is below the minimum 7", "convert_version")


def test_ir_version_newer_than_onnx_knows(tmp_path: Path) -> None:
    report = check_model(hm.write_model(tmp_path / "new", hm.mlp(1, ir_version=onnx.IR_VERSION + 1)))
    assert_problem(report, f"IR version {onnx.IR_VERSION + 1} is newer than {onnx.IR_VERSION}")


def test_checker_failure_carries_onnx_text(tmp_path: Path) -> None:
    model = hm.mlp(1)
    model.graph.node[1].input[0] = "nowhere"  # Relu reads a value nothing produces
    report = check_model(hm.write_model(tmp_path / "bad", model))
    assert_problem(report, "checker:", "nowhere")
    assert not next(s for s in report.steps if s.step == "checker").ok


def test_runtime_failure_is_a_problem(tmp_path: Path) -> None:
    # Valid to the checker (batch is symbolic) but Reshape cannot fit 1*4 values into [3].
    shape = numpy_helper.from_array(np.array([3], dtype=np.int64), "shape")
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])], [shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    report = check_model(hm.write_model(tmp_path / "reshape", model))
    assert_problem(report, "smoke: onnxruntime run on inputs x[1, 4]:float32 failed", "Reshape")
    assert [s.step for s in report.steps if not s.ok] == ["smoke"]


def test_non_finite_outputs_warn_but_pass(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Sub", ["x", "x"], ["z"]), helper.make_node("Log", ["z"], ["y"])], "log0",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    report = check_model(hm.write_model(tmp_path / "log", model))
    assert report.ok
    assert report.warnings and "non-finite" in report.warnings[0]


def test_not_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\xff\x00 definitely not protobuf" * 10)
    report = check_model(path)
    assert_problem(report, "load:", "is not a readable ONNX model")
    assert [s.step for s in report.steps] == ["load"]


def test_broken_model_toml_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    path = mlp_dir(tmp_path, descriptor='network = "model.onnx"\n')
    report = check_model(path)
    # Every missing key in one problem (was the first one only).
    assert_problem(report, "load:", "model.toml: 4 problems", "\n  framework: missing (required)",
                   "\n  model_license: missing", "\n  inputs: missing", "\n  outputs: missing")


def test_external_data(tmp_path: Path) -> None:
    path = mlp_dir(tmp_path, external_data=True)
    data = path.parent / "model.onnx.data"
    assert data.is_file() and path.stat().st_size < data.stat().st_size
    report = check_model(path)
    assert report.ok, report.problems
    data.unlink()
    report = check_model(path)
    assert_problem(report, "checker:", "model.onnx.data")


def test_find_files_and_check_files(tmp_path: Path) -> None:
    hm.write_model(tmp_path / "zoo" / "b", hm.mlp(1))
    hm.write_model(tmp_path / "zoo" / "a" / "1.0.0", hm.convnet(1))
    (tmp_path / "zoo" / "README").write_text("not a model")
    files = find_onnx_files([tmp_path / "zoo"])
    assert files == [tmp_path / "zoo" / "a" / "1.0.0" / "model.onnx", tmp_path / "zoo" / "b" / "model.onnx"]
    assert all(r.ok for r in check_files([tmp_path / "zoo"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no .onnx files"):
        find_onnx_files([tmp_path / "empty"])
    with pytest.raises(UsageError, match="no such file"):
        find_onnx_files([tmp_path / "missing.onnx"])


def test_require_valid_for_publish(tmp_path: Path) -> None:
    good = mlp_dir(tmp_path)
    bad = hm.write_model(tmp_path / "old", hm.legacy(hm.mlp(1), opset=6))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"not checked")
    assert [r.path for r in require_valid([good, weights])] == [good]
    with pytest.raises(CheckFailedError) as info:
        require_valid([good, bad, weights])
    message = str(info.value)
    assert "1 of 2 ONNX file(s) failed" in message and str(bad) in message and "--no-check" in message
    assert [r.ok for r in info.value.reports] == [True, False]  # type: ignore[attr-defined]


def test_missing_onnxruntime_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'zoostore\[onnx\]'"):
        check_model(mlp_dir(tmp_path))




def test_cli_text_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = mlp_dir(tmp_path)
    assert main(["check", str(path.parent)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok   {path}  (IR 8, opset 17,")
    for step in STEPS:
        assert f" {step} " in out
    assert "1 passed, 0 failed" in out


def test_cli_failure_exit_code_and_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = mlp_dir(tmp_path)
    assert main(["check", str(path), "--max-opset", "13"]) == 10
    captured = capsys.readouterr()
    assert f"FAIL {path}" in captured.out and "problem: policy: opset 17 is above the maximum 13" in captured.out
    assert "1 of 1 ONNX file(s) failed" in captured.err
    assert main(["check", str(path), "--min-opset", "18", "-q"]) == 10
    out = capsys.readouterr().out
    assert " checker " not in out and "below the minimum 18" in out
    assert main(["check", str(tmp_path / "nope.onnx")]) == 2


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = mlp_dir(tmp_path)
    bad = hm.write_model(tmp_path / "old", hm.legacy(hm.mlp(1), opset=6))
    assert main(["check", "--json", str(good), str(bad)]) == 10
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False
    assert [(f["path"], f["ok"]) for f in doc["files"]] == [(str(good), True), (str(bad), False)]
    assert any(p.startswith("policy: opset 6") for p in doc["files"][1]["problems"])


def test_cli_help_mentions_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    out = capsys.readouterr().out
    for flag in ("--min-opset", "--max-opset", "--json", "model.toml"):
        assert flag in out


# --- Autoware ModelZoo folders: definition.yaml, model_files/, Git LFS pointers --------------------

AUTOWARE = Path(__file__).resolve().parent / "data" / "autoware"
_NP_TO_ONNX = {"float32": TensorProto.FLOAT, "int32": TensorProto.INT32, "int64": TensorProto.INT64}


def stand_in(desc: ModelDescriptor, *, input_shapes: dict[str, list[object]] | None = None) -> onnx.ModelProto:
    """A trivial network with the declared node names, types and shapes: every output is the
    mean of the first input broadcast (Expand) to the output's declared shape."""
    first = desc.inputs[0].name
    nodes = [helper.make_node("ReduceMean", [first], ["mean"], keepdims=0)]
    inits = []
    for o in desc.outputs:
        inits.append(numpy_helper.from_array(np.array(o.shape, dtype=np.int64), f"shape_{o.name}"))
        nodes.append(helper.make_node("Expand", ["mean", f"shape_{o.name}"], [o.name]))
    shapes = input_shapes or {}
    graph = helper.make_graph(
        nodes, "stand_in",
        [helper.make_tensor_value_info(i.name, _NP_TO_ONNX[i.dtype], shapes.get(i.name, list(i.shape)))
         for i in desc.inputs],
        [helper.make_tensor_value_info(o.name, _NP_TO_ONNX[o.dtype], list(o.shape)) for o in desc.outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def autoware_folder(tmp_path: Path, definition: Path, text: str | None = None) -> tuple[Path, ModelDescriptor]:
    """The model folder laid out as in the ModelZoo: definition.yaml, model_files/ (empty)."""
    from zoostore.documents.model_folder import load_descriptor

    folder = tmp_path / definition.parent.parent.name
    (folder / "model_files").mkdir(parents=True)
    (folder / "definition.yaml").write_text(text or definition.read_text(encoding="utf-8"), encoding="utf-8")
    return folder, load_descriptor(folder)


ONNX_DEFINITIONS = [
    p for p in sorted(AUTOWARE.glob("**/definition.yaml")) if "framework: ONNX" in p.read_text(encoding="utf-8")
]


@pytest.mark.parametrize("definition", ONNX_DEFINITIONS, ids=lambda p: p.parent.parent.name)
def test_autoware_folder_checks_with_a_stand_in_network(tmp_path: Path, definition: Path) -> None:
    folder, desc = autoware_folder(tmp_path, definition)
    onnx.save_model(stand_in(desc), str(desc.network_path))
    assert find_onnx_files([folder]) == [desc.network_path]
    report = check_model(desc.network_path)
    assert report.ok, report.problems
    assert report.descriptor == folder / "definition.yaml"
    assert [n.name for n in report.outputs] == [n.name for n in desc.outputs]  # "184", not 184
    assert [s.step for s in report.steps] == STEPS


def test_autoware_node_mismatch_names_definition_yaml(tmp_path: Path) -> None:
    rpn = AUTOWARE / "perception/lidar_obstacle_detection/point_pillars_rpn/onnx_fp32_kitti/definition.yaml"
    folder, desc = autoware_folder(tmp_path, rpn)
    model = stand_in(desc)
    model.graph.output[2].name = "186"
    model.graph.node[-1].output[0] = "186"
    onnx.save_model(model, str(desc.network_path))
    report = check_model(desc.network_path)
    assert_problem(report, "nodes: definition.yaml declares output '187' but the graph has outputs ['184', '185', '186']",
                   "the graph has output '186' that definition.yaml does not declare")


def test_autoware_dynamic_dims(tmp_path: Path) -> None:
    """yolo_v2_tiny declares its batch as -1; as an ONNX stand-in with a symbolic batch it runs
    with batch 1, and a graph that fixes the batch matches -1 too."""
    yolo2 = AUTOWARE / "perception/camera_obstacle_detection/yolo_v2_tiny/tensorflow_fp32_coco/definition.yaml"
    text = yolo2.read_text(encoding="utf-8").replace("framework: Tensorflow", "framework: ONNX")
    folder, desc = autoware_folder(tmp_path, yolo2, text.replace("yolov2-tiny.pb", "yolov2-tiny.onnx"))
    assert desc.inputs[0].shape == (-1, 416, 416, 3)
    onnx.save_model(stand_in(desc, input_shapes={"input": ["N", 416, 416, 3]}), str(desc.network_path))
    report = check_model(desc.network_path)
    assert report.ok, report.problems
    assert concrete_input_shapes(report.inputs, desc) == {"input": (1, 416, 416, 3)}
    assert "inputs input[1, 416, 416, 3] -> outputs output[1, 13, 13, 425]" in report.steps[-1].detail
    onnx.save_model(stand_in(desc, input_shapes={"input": [2, 416, 416, 3]}), str(desc.network_path))
    assert check_model(desc.network_path).ok


def test_non_onnx_framework_folder_is_a_usage_error(tmp_path: Path) -> None:
    yolo2 = AUTOWARE / "perception/camera_obstacle_detection/yolo_v2_tiny/tensorflow_fp32_coco/definition.yaml"
    folder, desc = autoware_folder(tmp_path, yolo2)
    desc.network_path.write_bytes(b"a frozen TensorFlow graph")
    with pytest.raises(UsageError, match=r"framework is 'Tensorflow': check tests ONNX networks only"):
        find_onnx_files([folder])


def test_lfs_pointer_is_refused_with_the_git_lfs_hint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rpn = AUTOWARE / "perception/lidar_obstacle_detection/point_pillars_rpn/onnx_fp32_kitti/definition.yaml"
    folder, desc = autoware_folder(tmp_path, rpn)
    shutil.copy(AUTOWARE / "lfs-pointer-example.pb", desc.network_path)
    report = check_model(desc.network_path)
    assert_problem(report, "load: ", "is a Git LFS pointer for sha256:8e9d39f9", "git lfs pull")
    assert "Wire format" not in "\n".join(report.problems)
    assert [(s.step, s.ok) for s in report.steps] == [("load", False)]
    with pytest.raises(CheckFailedError, match="git lfs pull"):
        require_valid([desc.network_path])  # what publish runs
    assert main(["check", str(folder)]) == 10
    out = capsys.readouterr().out
    assert f"FAIL {desc.network_path}" in out and "git lfs pull" in out


def _broken_onnx_files(tmp_path: Path, n: int) -> list[Path]:
    """`n` files named brokenNN.onnx that are not protobuf."""
    bad = [tmp_path / f"broken{i:02d}.onnx" for i in range(n)]
    for path in bad:
        path.write_bytes(b"not a protobuf")
    return bad


def test_a_failed_check_of_many_files_lists_ten_problems_then_a_count(tmp_path: Path) -> None:
    bad = _broken_onnx_files(tmp_path, 13)
    with pytest.raises(CheckFailedError) as info:
        require_valid(bad)
    lines = str(info.value).splitlines()
    assert lines[0] == "13 of 13 ONNX file(s) failed the check:"
    assert [line.split(":")[0].rsplit("/", 1)[-1] for line in lines[1:11]] == [f"broken{i:02d}.onnx" for i in range(10)]
    assert lines[11] == "  ... and 3 more problems ('zoostore check PATH' lists every one)"
    assert len(info.value.reports) == 13  # type: ignore[attr-defined]


def _relu_model(path: Path, **kwargs: Any) -> Path:
    """A one-node model made with onnx.helper's defaults (the newest IR version and opset the
    installed onnx knows), or with `kwargs` (ir_version, opset_imports) for make_model."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    onnx.save(helper.make_model(graph, **kwargs), path)
    return path


def _ort_refuses_helper_defaults(tmp_path: Path) -> bool:
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(_relu_model(tmp_path / "probe.onnx")), providers=["CPUExecutionProvider"])
    except Exception:
        return True
    return False


def test_an_ir_version_newer_than_onnxruntime_loads_is_explained(tmp_path: Path) -> None:
    """A trial user's onnx.helper model failed the smoke run with onnxruntime's raw C++ message."""
    import onnxruntime as ort

    if not _ort_refuses_helper_defaults(tmp_path):
        pytest.skip(f"onnxruntime {ort.__version__} loads onnx {onnx.__version__}'s newest IR version and opset")
    path = _relu_model(tmp_path / "new.onnx")
    report = check_model(path)
    smoke = [p for p in report.problems if p.startswith("smoke:")]
    assert smoke and not any("ONNXRuntimeError" in p or ".cc:" in p for p in smoke), smoke
    if "IR version" not in smoke[0]:
        pytest.skip("onnxruntime loads this IR version, only the opset is too new (the next test)")
    found = re.fullmatch(
        rf"smoke: the model has IR version {onnx.IR_VERSION}, but onnxruntime {re.escape(ort.__version__)} loads "
        r"IR versions up to (\d+) \(onnx.helper.make_model stamps the newest IR version the installed onnx knows\): "
        r"re-save the model with a lower IR version \(model.ir_version = \1, or make_model\(..., ir_version=\1\)\), "
        r"upgrade onnxruntime \(pip install -U onnxruntime\), or publish with --no-check to skip the check", smoke[0])
    assert found, smoke[0]
    most = int(found.group(1))
    assert most < onnx.IR_VERSION
    # Re-saved as the message says: the IR version passes (the opset may still be too new).
    lower = check_model(_relu_model(tmp_path / "lower.onnx", ir_version=most))
    assert not any("IR version" in p for p in lower.problems), lower.problems


def _skip_unless_onnxruntime_refuses(path: Path, what: str) -> None:
    """Skip the test unless this onnxruntime refuses `path` as "under development" (`what` it
    imports is newer than it supports): the message these tests read."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        if "is under development" not in str(exc):
            pytest.skip(f"onnxruntime refuses {what} with another message: {exc}")
        return
    pytest.skip(f"onnxruntime {ort.__version__} loads {what} (onnx {onnx.__version__})")


def test_an_opset_newer_than_onnxruntime_supports_is_explained_in_the_same_run(tmp_path: Path) -> None:
    import onnxruntime as ort

    opset = onnx.defs.onnx_opset_version()
    path = _relu_model(tmp_path / "m.onnx", ir_version=8, opset_imports=[helper.make_opsetid("", opset)])
    _skip_unless_onnxruntime_refuses(path, f"opset {opset}")
    message = (rf"smoke: the model imports opset {opset} of ai.onnx, but onnxruntime {re.escape(ort.__version__)} supports "
               r"opsets up to (\d+): convert it \(onnx.version_converter.convert_version\(model, \1\)\) or make it with "
               r"opset_imports=\[onnx.helper.make_opsetid\('', \1\)\], upgrade onnxruntime \(pip install -U onnxruntime\), "
               r"or publish with --no-check to skip the check")
    assert [p for p in check_model(path).problems if re.fullmatch(message, p)], check_model(path).problems
    # With onnx.helper's defaults both are named at once, the IR version first.
    both = [p for p in check_model(_relu_model(tmp_path / "d.onnx")).problems if p.startswith("smoke:")]
    if "IR version" in both[0]:
        assert len(both) == 2 and re.fullmatch(message, both[1]), both


def test_publish_of_a_model_too_new_for_onnxruntime_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not _ort_refuses_helper_defaults(tmp_path):
        pytest.skip("the installed onnxruntime loads onnx.helper's defaults")
    folder = tmp_path / "m"
    folder.mkdir()
    _relu_model(folder / "model.onnx")
    assert main(["init", str(tmp_path / "store")]) == 0
    assert main(["publish", str(tmp_path / "store"), "m", "1.0.0", str(folder), "-q"]) == 10
    err = capsys.readouterr().err
    assert "smoke: the model " in err and "upgrade onnxruntime" in err and "--no-check" in err, err
    assert "ONNXRuntimeError" not in err
    assert main(["publish", str(tmp_path / "store"), "m", "1.0.0", str(folder), "-q", "--no-check"]) == 0


def test_an_ai_onnx_ml_opset_too_new_is_not_advised_as_a_default_domain_one(tmp_path: Path) -> None:
    """onnx.version_converter converts the default domain only, and make_opsetid('', N) sets
    the default domain: neither fixes an ai.onnx.ml opset that onnxruntime refuses."""
    path = _relu_model(tmp_path / "ml.onnx", ir_version=8,
                       opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.onnx.ml", 99)])
    _skip_unless_onnxruntime_refuses(path, "ai.onnx.ml opset 99")
    smoke = [p for p in check_model(path).problems if p.startswith("smoke:")]
    found = re.fullmatch(
        r"smoke: the model imports opset 99 of ai.onnx.ml, but onnxruntime \S+ supports opsets up to (\d+): "
        r"make it with opset_imports=\[..., onnx.helper.make_opsetid\('ai.onnx.ml', \1\)\] \(and nodes of that "
        r"opset\), upgrade onnxruntime \(pip install -U onnxruntime\), or publish with --no-check to skip the check",
        smoke[0]) if smoke else None
    assert found, smoke


def test_onnxruntime_refusals_are_read_from_its_messages_whatever_is_installed(tmp_path: Path) -> None:
    """Known answers for `load_refusal` from onnxruntime 1.31.1's own texts: the tests above
    skip when the installed onnxruntime loads onnx.helper's defaults, and then nothing would fail."""
    from types import SimpleNamespace

    from zoostore.integrations.onnx_check_smoke import load_refusal

    ort = SimpleNamespace(__version__="1.31.1")
    report = SimpleNamespace(opsets={}, path=tmp_path / "m.onnx")
    prefix = "[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:/onnxruntime_src/onnxruntime/core/graph/"
    ir = prefix + "model.cc:256 onnxruntime::Model::Model(...) Unsupported model IR version: 14, max supported IR version: 13\n"
    opset = (prefix + "model_load_utils.h:46 void onnxruntime::model_load_utils::ValidateOpsetForDomain(...) ONNX Runtime "
             "only *guarantees* support for models stamped with official released onnx opset versions. Opset {have} is "
             "under development and support for this is limited. The operator schemas and or other functionality may "
             "change before next ONNX release and in this case ONNX Runtime will not guarantee backward compatibility. "
             "Current official support for domain {domain} is till opset {most}.\n")
    assert load_refusal(report, ort, ir) == [
        "smoke: the model has IR version 14, but onnxruntime 1.31.1 loads IR versions up to 13 (onnx.helper.make_model "
        "stamps the newest IR version the installed onnx knows): re-save the model with a lower IR version "
        "(model.ir_version = 13, or make_model(..., ir_version=13)), upgrade onnxruntime (pip install -U onnxruntime), "
        "or publish with --no-check to skip the check"]
    assert load_refusal(report, ort, opset.format(have=28, domain="ai.onnx", most=26)) == [
        "smoke: the model imports opset 28 of ai.onnx, but onnxruntime 1.31.1 supports opsets up to 26: convert it "
        "(onnx.version_converter.convert_version(model, 26)) or make it with opset_imports=[onnx.helper.make_opsetid('', 26)], "
        "upgrade onnxruntime (pip install -U onnxruntime), or publish with --no-check to skip the check"]
    assert load_refusal(report, ort, opset.format(have=9, domain="ai.onnx.ml", most=5)) == [
        "smoke: the model imports opset 9 of ai.onnx.ml, but onnxruntime 1.31.1 supports opsets up to 5: make it with "
        "opset_imports=[..., onnx.helper.make_opsetid('ai.onnx.ml', 5)] (and nodes of that opset), upgrade onnxruntime "
        "(pip install -U onnxruntime), or publish with --no-check to skip the check"]
    assert load_refusal(report, ort, prefix + "model.cc:1 Protobuf parsing failed.") == []


def test_one_problem_beyond_the_ten_listed_is_one_more_problem(tmp_path: Path) -> None:
    bad = _broken_onnx_files(tmp_path, 11)
    with pytest.raises(CheckFailedError) as info:
        require_valid(bad)
    assert str(info.value).splitlines()[11] == "  ... and 1 more problem ('zoostore check PATH' lists every one)"


def test_a_multi_line_problem_stays_indented_under_its_file(tmp_path: Path) -> None:
    """A model.toml's problems (one per line) came out at column 2, under no file."""
    from zoostore.cli.check import format_report

    folder = tmp_path / "m"
    folder.mkdir()
    _relu_model(folder / "model.onnx", ir_version=8, opset_imports=[helper.make_opsetid("", 13)])
    (folder / "model.toml").write_text('framework = "onnx"\n')
    lines = "\n".join(format_report(check_model(folder / "model.onnx"), quiet=True)).splitlines()
    problem = next(i for i, line in enumerate(lines) if line.startswith("     problem: load:"))
    assert lines[problem + 1].startswith(" " * 14 + "  network: missing (required)"), lines


def test_every_model_folder_with_an_invalid_descriptor_is_named_in_one_run(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """`zoostore check models/*` stopped at the first folder whose model.toml was invalid."""
    from zoostore.cli import main

    folders = []
    for name in ("a", "b", "c"):
        folders.append(tmp_path / name)
        folders[-1].mkdir()
        _relu_model(folders[-1] / "model.onnx", ir_version=8, opset_imports=[helper.make_opsetid("", 13)])
    for folder in (folders[0], folders[2]):
        (folder / "model.toml").write_text('framework = "onnx"\n')
    assert main(["check", *map(str, folders)]) == 2  # bad input, not a newer format
    err = capsys.readouterr().err
    assert err.startswith("zoostore: error: 2 of 3 folders have an invalid model.toml or definition.yaml:\n"), err
    assert f"{folders[0] / 'model.toml'}: 4 problems" in err and f"{folders[2] / 'model.toml'}: 4 problems" in err, err


def test_every_path_that_cannot_be_checked_is_named_in_one_run(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """`zoostore check models/*` stopped at the first folder with a usage problem (a network
    that is not ONNX, a missing network file, nothing to check): a zoo took one run per folder."""
    toml = ('network = "model.onnx"\nframework = "onnx"\nmodel_license = "MIT"\n'
            '[[inputs]]\nname = "x"\nshape = [1, 2]\ndtype = "float32"\n'
            '[[outputs]]\nname = "y"\nshape = [1, 2]\ndtype = "float32"\n')
    folders = {name: tmp_path / name for name in ("tflite", "gone", "invalid", "empty", "ok")}
    for name, folder in folders.items():
        folder.mkdir()
        if name != "empty":
            _relu_model(folder / "model.onnx", ir_version=8, opset_imports=[helper.make_opsetid("", 13)])
    (folders["tflite"] / "model.toml").write_text(toml.replace('framework = "onnx"', 'framework = "tflite"'))
    (folders["gone"] / "model.toml").write_text(toml.replace('network = "model.onnx"', 'network = "gone.onnx"'))
    (folders["invalid"] / "model.toml").write_text(toml.replace('model_license = "MIT"', 'licence = "MIT"'))
    (folders["ok"] / "model.toml").write_text(toml)
    argv = ["check", *map(str, folders.values()), str(tmp_path / "nowhere.onnx")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoostore: error: 5 of 6 paths cannot be checked:\n"), err
    for words in ("framework is 'tflite'", "'gone.onnx' does not exist", "invalid/model.toml: 2 problems",
                  "empty: no .onnx files", "nowhere.onnx: no such file"):
        assert words in err, (words, err)
    assert main([*argv, "--json"]) == 2
    error = json.loads(capsys.readouterr().err)["error"]
    assert [p["key"] for p in error["problems"]] == ["licence", "model_license"]
    # One path with a problem is raised as it is; a descriptor from a newer zoostore still stops (exit 5).
    assert main(["check", str(folders["ok"]), str(folders["tflite"])]) == 2
    assert capsys.readouterr().err.startswith("zoostore: error: " + str(folders["tflite"] / "model.toml"))
    (folders["invalid"] / "model.toml").write_text("format = 9\n" + toml)
    assert main(["check", str(folders["gone"]), str(folders["invalid"])]) == 5
    assert "upgrade zoostore" in capsys.readouterr().err


def test_a_named_pipe_is_refused_or_passed_over_instead_of_waiting_for_a_writer(tmp_path: Path) -> None:
    """Reading a FIFO waits for a writer forever: check names it (exit 2) when it is a PATH or
    a descriptor's network, and passes over one that a folder holds beside real models."""
    path = mlp_dir(tmp_path)                       # mlp/model.onnx with a model.toml
    loose = tmp_path / "loose"
    loose.mkdir()
    os.mkfifo(loose / "x.onnx")
    shutil.copy(path, loose / "real.onnx")
    described = tmp_path / "described"
    shutil.copytree(path.parent, described)
    (described / "model.onnx").unlink()
    os.mkfifo(described / "model.onnx")
    cases = [([str(loose / "x.onnx")], 2, "x.onnx is a named pipe (FIFO), not a regular file: zoostore check reads ONNX files only"),
             ([str(described)], 2, "'model.onnx' is not a regular file in"),
             ([str(loose)], 0, "1 passed, 0 failed")]
    for args, code, needle in cases:
        # In a child with a time limit: a regression hangs instead of failing.
        proc = subprocess.run([sys.executable, "-m", "zoostore", "check", *args], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == code, proc.stderr
        assert needle in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
