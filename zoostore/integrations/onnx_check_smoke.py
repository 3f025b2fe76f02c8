"""The smoke step of `zoostore check`: one onnxruntime (CPU) run of a model on generated inputs,
its outputs compared with the descriptor's declared shapes.

Split from `zoostore.integrations.onnx_check`, which runs it as the step after `nodes`; the
report it fills is that module's `CheckReport` (typed here by the attributes it touches, so
that the import points one way).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from zoostore.core.errors import MissingDependencyError, UsageError
from zoostore.integrations.feeds import smoke_inputs

if TYPE_CHECKING:
    from zoostore.documents.descriptor import ModelDescriptor, TensorSpec

INSTALL_HINT = "pip install 'zoostore[onnx]'"


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
        report.problems.append(f"smoke: onnxruntime cannot load the model: {one_line(exc)}")
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
