"""`zoostore check` runs the ONNX Model Zoo's `test_data_set_N` folders with onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import helpers_models as hm
import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from zoostore.cli import main
from zoostore.integrations.onnx_check import check_model
from zoostore.integrations.test_data import compare_outputs, find_data_sets, load_data_set


def write_set(model: Path, n: int, x: np.ndarray, probs: np.ndarray, *, names: bool = True) -> Path:
    folder = model.parent / f"test_data_set_{n}"
    folder.mkdir()
    (folder / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x" if names else "").SerializeToString())
    (folder / "output_0.pb").write_bytes(numpy_helper.from_array(probs, "probs" if names else "").SerializeToString())
    return folder


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return hm.write_model(tmp_path / "mlp", hm.mlp(1), descriptor=None)


def reference(model: Path, x: np.ndarray) -> np.ndarray:
    return np.asarray(ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0])


def test_matching_sets_pass_and_are_counted(model: Path) -> None:
    rng = np.random.default_rng(1)
    for n in (1, 0, 10):  # found in N order, not name order
        x = rng.standard_normal((3, 16)).astype(np.float32)
        write_set(model, n, x, reference(model, x), names=n != 10)  # set 10 binds by position
    assert [d.name for d in find_data_sets(model)] == ["test_data_set_0", "test_data_set_1", "test_data_set_10"]
    report = check_model(model)
    assert report.ok, report.problems
    assert report.data_sets == (3, 3)
    assert "3/3 test data set(s) match onnxruntime" in next(s.detail for s in report.steps if s.step == "data")


def test_outputs_beyond_tolerance_fail_with_the_difference(model: Path) -> None:
    x = np.ones((2, 16), np.float32)
    expected = reference(model, x)
    write_set(model, 0, x, expected)
    expected = expected.copy()
    expected[0, 0] += 0.05
    write_set(model, 1, x, expected)
    report = check_model(model)
    assert report.data_sets == (1, 2)
    assert any("test_data_set_1: onnxruntime output 'probs': 1 of 8 values differ beyond rtol=0.001" in p
               for p in report.problems), report.problems


@pytest.mark.parametrize("write, needle", [
    (lambda f: (f / "input_0.pb").write_bytes(b"\xff\xff not a tensor"), "not a serialized onnx.TensorProto"),
    (lambda f: (f / "input_0.pb").write_bytes(numpy_helper.from_array(np.ones((2, 16), np.float32), "y").SerializeToString()),
     "names input 'y', which the graph does not have"),
    (lambda f: (f / "output_0.pb").unlink(), "needs input_K.pb and output_K.pb"),
])
def test_broken_sets_are_problems_not_crashes(model: Path, write: object, needle: str) -> None:
    x = np.ones((2, 16), np.float32)
    folder = write_set(model, 0, x, reference(model, x))
    write(folder)  # type: ignore[operator]
    report = check_model(model)
    assert any(needle in p for p in report.problems), report.problems


def test_shape_and_integer_mismatches() -> None:
    problems, _ = compare_outputs({"a": np.zeros((2, 2)), "b": np.arange(4)}, {"a": np.zeros((2, 3)), "b": np.arange(4) + (np.arange(4) == 3)})
    assert problems == ["output 'a' has shape [2, 3], expected [2, 2]", "output 'b': 1 of 4 values differ"]
    assert compare_outputs({"a": np.zeros(1)}, {})[0] == ["output 'a' was not produced"]


def test_cli_reports_data_sets(model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x = np.ones((2, 16), np.float32)
    write_set(model, 0, x, reference(model, x))
    assert main(["check", str(model), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["files"][0]["data_sets"] == {"passed": 1, "found": 1}
    assert load_data_set(model.parent / "test_data_set_0", ["x"], ["probs"]).inputs["x"].shape == (2, 16)


def test_a_set_that_was_not_compared_claims_no_difference(model: Path) -> None:
    (model.parent / "test_data_set_0").mkdir()  # empty: nothing to compare
    report = check_model(model)
    assert any("test_data_set_0: a test data set needs input_K.pb and output_K.pb" in p for p in report.problems)
    detail = next(s.detail for s in report.steps if s.step == "data")
    assert detail == "0/1 test data set(s) match onnxruntime", detail
