"""The smoke step of `zoostore check`: one onnxruntime (CPU) run of a model on generated inputs,
its outputs compared with the descriptor's declared shapes.

When onnxruntime refuses to load a model whose IR version or opset is newer than it supports
(`onnx.helper.make_model` stamps the newest its onnx knows, often ahead of the onnxruntime
installed), the problem says so in words, with the model's number, the highest this
onnxruntime loads, and the three ways out, instead of onnxruntime's C++ source location. The
numbers come from onnxruntime's own message (onnxruntime/core/graph/model.cc, "Unsupported model
IR version: A, max supported IR version: B"; model_load_utils.h, "Opset A is under development
... support for domain D is till opset B"). onnxruntime stops at the IR version, so a tiny model
with the same opset is loaded too, and an opset it would refuse next is named in the same run.

Split from `zoostore.integrations.onnx_check`, which runs it as the step after `nodes`; the
report it fills is that module's `CheckReport` (typed here by the attributes it touches, so
that the import points one way).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from zoostore.core.errors import MissingDependencyError, UsageError
from zoostore.integrations.feeds import smoke_inputs

if TYPE_CHECKING:
    from zoostore.documents.descriptor import ModelDescriptor, TensorSpec

INSTALL_HINT = "pip install 'zoostore[onnx]'"

_IR_TOO_NEW = re.compile(r"Unsupported model IR version: (\d+), max supported IR version: (\d+)")
_OPSET_TOO_NEW = re.compile(r"Opset (\d+) is under development.*?support for domain (\S+) is till opset (\d+)", re.S)
_WAYS_OUT = "or publish with --no-check to skip the check"


class SmokeReport(Protocol):
    """What the smoke step reads from and writes to a check report."""

    path: Path
    problems: list[str]
    warnings: list[str]
    ir_version: int | None
    opsets: dict[str, int]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


def import_optional(name: str) -> Any:
    """`name` imported, or MissingDependencyError with the extra to install."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise MissingDependencyError(
            f"zoostore check needs {name.split('.')[0]}, which is not installed ({exc}): "
            f"{INSTALL_HINT}"
        ) from exc


def one_line(exc: BaseException) -> str:
    """An exception's text on one line, at most ~2000 characters."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split()) if len(text) < 2000 else " ".join(text[:2000].split()) + " ..."


def smoke(report: SmokeReport, desc: ModelDescriptor | None, detail: list[str]) -> None:
    np = import_optional("numpy")
    ort = import_optional("onnxruntime")
    try:
        feeds = smoke_inputs(report.inputs, desc)
    except UsageError as exc:
        report.problems.append(f"smoke: {exc}")
        return
    options = ort.SessionOptions()
    # Fatal only: the report carries the error text, and warnings about unused initializers
    # are noise.
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        report.problems += load_refusal(report, ort, str(exc)) or [f"smoke: onnxruntime cannot load the model: {one_line(exc)}"]
        return
    try:
        results = session.run(None, feeds)
    except Exception as exc:
        shapes = ", ".join(f"{k}{list(v.shape)}:{v.dtype}" for k, v in feeds.items())
        report.problems.append(f"smoke: onnxruntime run on inputs {shapes} failed: {one_line(exc)}")
        return
    detail.append(
        "inputs " + ", ".join(f"{k}{list(v.shape)}" for k, v in feeds.items())
        + " -> outputs " + ", ".join(f"{o.name}{list(np.shape(r))}" for o, r in zip(session.get_outputs(), results, strict=False))
    )
    names = [o.name for o in session.get_outputs()]
    for name, value in zip(names, results, strict=True):
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            report.warnings.append(f"smoke: output {name!r} holds non-finite values (NaN or inf) on the generated inputs")
        declared = desc.output(name) if desc else None
        if desc is None or declared is None:
            continue
        # What the graph fixes was compared in `nodes`; the run checks the rest.
        graph = next((o.shape for o in report.outputs if o.name == name), ())
        if graph and len(graph) != len(declared.shape):
            continue
        mismatch = arr.ndim != len(declared.shape)
        for i, want in enumerate(declared.shape if not mismatch else ()):
            if graph and isinstance(graph[i], int):
                continue
            bound = desc.bind(want)
            mismatch = mismatch or (bound is not None and bound != arr.shape[i])
        if mismatch:
            report.problems.append(
                f"smoke: output {name!r} came out with shape {list(arr.shape)}; {desc.file_name} "
                f"declares {list(declared.shape)}"
                + (f" with dims {dict(desc.dims)}" if desc.dims else "")
            )


def load_refusal(report: SmokeReport, ort: Any, text: str) -> list[str]:
    """onnxruntime's refusal to load a model too new for it, explained (module docstring); []
    for any other failure."""
    version = getattr(ort, "__version__", "?")
    ir = _IR_TOO_NEW.search(text)
    if ir is None:
        opset = _OPSET_TOO_NEW.search(text)
        if opset is None:
            return []
        return [_opset_problem(version, int(opset.group(1)), int(opset.group(3)), opset.group(2))]
    have, most = int(ir.group(1)), int(ir.group(2))
    problems = [
        f"smoke: the model has IR version {have}, but onnxruntime {version} loads IR versions up to {most} "
        f"(onnx.helper.make_model stamps the newest IR version the installed onnx knows): re-save the model "
        f"with a lower IR version (model.ir_version = {most}, or make_model(..., ir_version={most})), "
        f"upgrade onnxruntime (pip install -U onnxruntime), {_WAYS_OUT}"]
    default_opset = report.opsets.get("ai.onnx")
    refused = _probe_opset(ort, default_opset, most) if default_opset is not None else None
    if refused is not None:
        problems.append(_opset_problem(version, *refused))
    return problems


def _opset_problem(version: str, have: int, most: int, domain: str = "ai.onnx") -> str:
    # onnx.version_converter converts the default domain only, and make_opsetid('') names it:
    # another domain (ai.onnx.ml) is re-made with its own opset id.
    fix = (f"convert it (onnx.version_converter.convert_version(model, {most})) or make it with "
           f"opset_imports=[onnx.helper.make_opsetid('', {most})]" if domain in ("ai.onnx", "") else
           f"make it with opset_imports=[..., onnx.helper.make_opsetid('{domain}', {most})] (and nodes of that opset)")
    return (f"smoke: the model imports opset {have} of {domain}, but onnxruntime {version} supports opsets up "
            f"to {most}: {fix}, upgrade onnxruntime (pip install -U onnxruntime), {_WAYS_OUT}")


def _probe_opset(ort: Any, opset: int, ir_version: int) -> tuple[int, int] | None:
    """(the model's opset, the highest this onnxruntime supports) when it refuses a one-node
    model of that opset at an IR version it loads; None when it loads it (or the probe fails
    otherwise: the IR problem alone is reported)."""
    try:
        helper = import_optional("onnx.helper")
        onnx = import_optional("onnx")
        vi = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [vi],
                                  [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
        probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)
        options = ort.SessionOptions()
        options.log_severity_level = 4
        ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        found = _OPSET_TOO_NEW.search(str(exc))
        return (int(found.group(1)), int(found.group(3))) if found else None
    return None
