"""Model test data sets as the ONNX Model Zoo ships them, and comparing outputs with them.

    model_dir/model.onnx
    model_dir/test_data_set_0/input_0.pb      serialized onnx.TensorProto, one per graph input
    model_dir/test_data_set_0/output_0.pb     the expected outputs, in graph order

A tensor's `name` binds it to a graph input or output; an unnamed one binds by position (the
ONNX Model Zoo's files mostly carry names, older ones do not). `check` runs every set with
onnxruntime and `build` runs them through the compiled TVM library; both compare with
`allclose(rtol, atol)`, the tolerance the ONNX Model Zoo's own test uses.

onnx and numpy are imported inside the functions (`import zoostore` stays light).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zoostore.core.errors import FormatError
from zoostore.core.records import dataclass

#: onnx/models' test tolerance (its `test_models.py` compares with rtol=1e-3, atol=1e-5).
DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-5
_SET = re.compile(r"^test_data_set_(\d+)$")
_TENSOR = re.compile(r"^(input|output)_(\d+)\.pb$")


@dataclass(frozen=True, slots=True)
class DataSet:
    """One `test_data_set_N` folder: its input and expected output tensors by graph name."""

    path: Path
    inputs: dict[str, Any]
    outputs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class DataSetResults:
    """What running a model's data sets found: problems, a detail line, passed of found."""

    problems: list[str]
    detail: list[str]
    passed: int
    found: int


def find_data_sets(model: Path) -> list[Path]:
    """The `test_data_set_N` folders beside `model`, in N order."""
    found = [(int(m.group(1)), d) for d in model.parent.iterdir()
             if d.is_dir() and (m := _SET.match(d.name))] if model.parent.is_dir() else []
    return [d for _, d in sorted(found)]


def load_data_set(folder: Path, input_names: Sequence[str], output_names: Sequence[str]) -> DataSet:
    """Read one folder's tensors and bind them to the graph's names (FormatError when a file
    is not a tensor, names a node the graph lacks, or a position has no node)."""
    import onnx
    from onnx import numpy_helper

    tensors: dict[str, dict[int, tuple[str, Any]]] = {"input": {}, "output": {}}
    for f in sorted(folder.iterdir()):
        m = _TENSOR.match(f.name)
        if not m:
            continue
        proto = onnx.TensorProto()
        try:
            proto.ParseFromString(f.read_bytes())
            value = numpy_helper.to_array(proto)
        except Exception as exc:  # DecodeError, or a tensor numpy cannot hold
            raise FormatError(f"{f}: not a serialized onnx.TensorProto ({exc})") from exc
        tensors[m.group(1)][int(m.group(2))] = (proto.name, value)
    if not tensors["input"] or not tensors["output"]:
        raise FormatError(f"{folder}: a test data set needs input_K.pb and output_K.pb files; found "
                          f"{len(tensors['input'])} input(s) and {len(tensors['output'])} output(s)")
    return DataSet(folder, _bind(folder, "input", tensors["input"], input_names),
                   _bind(folder, "output", tensors["output"], output_names))


def _bind(folder: Path, kind: str, found: Mapping[int, tuple[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    bound: dict[str, Any] = {}
    for k, (name, value) in sorted(found.items()):
        if name:
            if name not in names:
                raise FormatError(f"{folder}/{kind}_{k}.pb names {kind} {name!r}, which the graph does not have; "
                                  f"its {kind}s: {', '.join(names)}")
        elif k < len(names):
            name = names[k]
        else:
            raise FormatError(f"{folder}/{kind}_{k}.pb is unnamed and the graph has only {len(names)} {kind}(s)")
        bound[name] = value
    return bound


def compare_outputs(expected: Mapping[str, Any], got: Mapping[str, Any], *, rtol: float = DEFAULT_RTOL,
                    atol: float = DEFAULT_ATOL) -> tuple[list[str], float]:
    """Problems (shape, dtype kind, values out of tolerance) and the largest absolute difference."""
    import numpy as np

    problems: list[str] = []
    worst = 0.0
    for name, want in expected.items():
        have = got.get(name)
        if have is None:
            problems.append(f"output {name!r} was not produced")
            continue
        want, have = np.asarray(want), np.asarray(have)
        if want.shape != have.shape:
            problems.append(f"output {name!r} has shape {list(have.shape)}, expected {list(want.shape)}")
            continue
        if want.dtype.kind in "fc":
            diff = np.abs(have.astype(np.float64) - want.astype(np.float64))
            worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
            bad = ~np.isclose(have, want, rtol=rtol, atol=atol, equal_nan=True)
            if bad.any():
                problems.append(f"output {name!r}: {int(bad.sum())} of {bad.size} values differ beyond "
                                f"rtol={rtol:g} atol={atol:g} (largest difference {float(diff.max()):.3g})")
        elif not np.array_equal(want, have):
            problems.append(f"output {name!r}: {int((want != have).sum())} of {want.size} values differ")
    return problems, worst


def run_data_sets(model: Path, input_names: Sequence[str], output_names: Sequence[str],
                  run: Callable[[dict[str, Any]], Mapping[str, Any]], *, label: str,
                  rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> DataSetResults:
    """Run every data set beside `model` through `run` (feeds -> outputs by name); no data
    sets is no problem."""
    problems: list[str] = []
    detail: list[str] = []
    sets = find_data_sets(model)
    passed, compared, worst = 0, 0, 0.0
    for folder in sets:
        try:
            data = load_data_set(folder, input_names, output_names)
            got = run(data.inputs)
        except FormatError as exc:
            problems.append(str(exc))
            continue
        except Exception as exc:  # the runtime's own errors: a failed run is a problem to report
            problems.append(f"{folder.name}: {label} run failed: {str(exc).strip().splitlines()[0][:300]}")
            continue
        found, diff = compare_outputs(data.outputs, got, rtol=rtol, atol=atol)
        worst, compared = max(worst, diff), compared + 1
        problems += [f"{folder.name}: {label} {p}" for p in found]
        passed += not found
    if sets:  # a difference only when some set was compared: "largest difference 0" would claim a match
        largest = f" (largest difference {worst:.3g})" if compared else ""
        detail.append(f"{passed}/{len(sets)} test data set(s) match {label}{largest}")
    return DataSetResults(problems, detail, passed, len(sets))
