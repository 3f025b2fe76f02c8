"""`zoostore check`: is an ONNX file fit to publish? The ONNX Model Store's acceptance test.

Steps, each timed and reported, every problem collected rather than stopping at the first
(a report lists all that is wrong with a file, as restic's checker does):

    load     refuse a Git LFS pointer (with the hint to run `git lfs pull`), parse the
             protobuf (external data left on disk) and the descriptor that names the file:
             model.toml next to it, or Autoware's definition.yaml above `model_files/`
    checker  onnx.checker.check_model(path, full_check=True): graph, types, shape inference,
             external data files present
    policy   IR version and default-domain opset inside an `OpsetPolicy`
    nodes    graph inputs and outputs against the descriptor's declared nodes (a declared -1
             matches any size)
    smoke    one onnxruntime run on generated inputs of the declared shapes: floats from a
             seeded normal RNG, integers (token ids, sample rates) and booleans zero; -1 and
             unbound symbolic dimensions are 1
    data     every `test_data_set_N/` beside the model (the ONNX Model Zoo's layout) run with
             onnxruntime and compared with its expected outputs (see `test_data`)

onnx, onnxruntime and numpy are imported inside the functions: `import zoostore` stays light,
and their absence is a `MissingDependencyError` naming the extra to install.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoostore.core.errors import CheckFailedError, DescriptorError, FormatError, MissingDependencyError, UsageError
from zoostore.core.records import dataclass
from zoostore.documents.descriptor import ModelDescriptor, TensorSpec
from zoostore.documents.model_folder import (LfsPointerError, descriptor_for_network, is_lfs_pointer,
                                             lfs_pointer_message, network_of)
from zoostore.integrations.onnx_check_smoke import INSTALL_HINT as INSTALL_HINT
from zoostore.integrations.onnx_check_smoke import import_optional as _import
from zoostore.integrations.onnx_check_smoke import one_line as _text
from zoostore.integrations.onnx_check_smoke import smoke as _smoke
from zoostore.integrations.test_data import find_data_sets, run_data_sets
from zoostore.ops.publish_inputs import check_regular

# Re-exported: they were born here, and tests and callers import them from this module.
from zoostore.integrations.feeds import concrete_input_shapes as concrete_input_shapes
from zoostore.integrations.feeds import smoke_inputs as smoke_inputs

if TYPE_CHECKING:
    from zoostore.core.progress import Progress
#: onnxruntime supports every opset from 7 on ("All versions of ONNX Runtime support ONNX opsets
#: from ONNX v1.2.1+ (opset version 7 and higher)", onnxruntime docs, Compatibility); IR version 3
#: is the one ONNX 1.0 wrote and the oldest the checker accepts.
DEFAULT_MIN_OPSET = 7
DEFAULT_MIN_IR_VERSION = 3

#: ONNX TensorProto element type names (lower-cased) that differ from numpy's.
_ONNX_TO_DTYPE = {"float": "float32", "double": "float64"}


@dataclass(frozen=True, slots=True)
class OpsetPolicy:
    """Which models a zoo accepts. `None` maxima mean what the installed onnx knows."""

    min_opset: int = DEFAULT_MIN_OPSET
    max_opset: int | None = None
    min_ir_version: int = DEFAULT_MIN_IR_VERSION
    max_ir_version: int | None = None

    def __post_init__(self) -> None:
        if self.max_opset is not None and self.max_opset < self.min_opset:
            raise UsageError(
                f"opset policy: --max-opset {self.max_opset} is below --min-opset {self.min_opset}"
            )

    def resolved(self) -> OpsetPolicy:
        """The policy with `None` maxima replaced by the installed onnx's limits."""
        onnx = _import("onnx")
        return OpsetPolicy(
            min_opset=self.min_opset,
            max_opset=self.max_opset if self.max_opset is not None else int(onnx.defs.onnx_opset_version()),
            min_ir_version=self.min_ir_version,
            max_ir_version=self.max_ir_version if self.max_ir_version is not None else int(onnx.IR_VERSION),
        )


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of a check: its name, outcome, wall time and a short human detail."""

    step: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass(slots=True)
class CheckReport:
    """Everything `check` found about one file. `ok` when `problems` is empty; warnings (for
    instance non-finite smoke outputs) never fail a check."""

    path: Path
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    steps: list[StepResult] = field(default_factory=list)
    ir_version: int | None = None
    producer: str = ""  # producer_name and producer_version, e.g. "pytorch 2.3.0"
    opsets: dict[str, int] = field(default_factory=dict)
    inputs: list[TensorSpec] = field(default_factory=list)
    outputs: list[TensorSpec] = field(default_factory=list)
    descriptor: Path | None = None
    data_sets: tuple[int, int] = (0, 0)  # (passed, found) test_data_set_N folders

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
            "ir_version": self.ir_version, "producer": self.producer,
            "opsets": dict(self.opsets),
            "inputs": [n.to_dict() for n in self.inputs],
            "outputs": [n.to_dict() for n in self.outputs],
            "descriptor": str(self.descriptor) if self.descriptor else None,
            "data_sets": {"passed": self.data_sets[0], "found": self.data_sets[1]},
            "steps": [
                {"step": s.step, "ok": s.ok, "seconds": round(s.seconds, 4), "detail": s.detail}
                for s in self.steps
            ],
            "seconds": round(self.seconds, 4),
        }


class _Steps:
    """Times steps, tells the progress reporter, and records a StepResult for each."""

    def __init__(self, report: CheckReport, progress: Progress | None) -> None:
        self.report = report
        self.progress = progress

    @contextmanager
    def step(self, name: str) -> Iterator[list[str]]:
        """Yields a list the step appends its detail lines to; problems added during the step
        mark it failed."""
        task = f"check {self.report.path}: {name}"
        if self.progress:
            self.progress.start(task, None, unit="step")
        before = len(self.report.problems)
        detail: list[str] = []
        start = time.perf_counter()
        try:
            yield detail
        finally:
            elapsed = time.perf_counter() - start
            ok = len(self.report.problems) == before
            self.report.steps.append(StepResult(name, ok, elapsed, "; ".join(detail)))
            if self.progress:
                self.progress.done(task)


def dtype_name(elem_type: int) -> str:
    """The numpy-style name (`float32`, `int64`) of an ONNX TensorProto element type."""
    onnx = _import("onnx")
    name = str(onnx.TensorProto.DataType.Name(elem_type)).lower()
    return _ONNX_TO_DTYPE.get(name, name)


def _value_info_spec(vi: Any) -> TensorSpec:
    tt = vi.type.tensor_type
    shape: list[int | str] = []
    if tt.HasField("shape"):
        for i, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            else:
                # Unnamed unknown dimensions get a positional name so they stay symbolic.
                shape.append(d.dim_param or f"?{i}")
    return TensorSpec(vi.name, tuple(shape), dtype_name(tt.elem_type) if tt.elem_type else "undefined")


def graph_nodes(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The real inputs (initializers excluded: IR < 4 lists weights as inputs) and outputs."""
    weights = {init.name for init in model.graph.initializer}
    inputs = [_value_info_spec(vi) for vi in model.graph.input if vi.name not in weights]
    outputs = [_value_info_spec(vi) for vi in model.graph.output]
    return inputs, outputs


def read_model(path: Path, *, external_data: bool) -> Any:
    """The ModelProto in `path`, or ValueError saying why the file is not an ONNX model.
    Protobuf decodes what it can: an empty file is an empty ModelProto, so a model with
    neither nodes nor outputs is refused too, instead of failing later as "IR version 0"."""
    onnx = _import("onnx")
    try:
        model = onnx.load(str(path), load_external_data=external_data)
    except Exception as exc:  # protobuf DecodeError, OSError: all mean "not an ONNX file"
        raise ValueError(f"{path} is not a readable ONNX model: {_text(exc)}; expected a serialized ONNX "
                         "ModelProto: export the network again") from exc
    if not model.graph.node and not model.graph.output:
        size = path.stat().st_size
        raise ValueError(f"{path} is not an ONNX model: it holds no graph ({size} bytes); expected a serialized "
                         "ONNX ModelProto: export the network again")
    return model


def find_onnx_files(paths: Iterable[Path | str]) -> list[Path]:
    """Files named on the command line; for a model folder with a descriptor (model.toml or
    definition.yaml), the network it names; for other directories every `*.onnx` below, sorted.
    A path that cannot be checked (an invalid descriptor, a network that is missing or not ONNX,
    nothing there) does not stop the others: one error names every such path."""
    found: list[Path] = []
    refused: list[UsageError] = []
    given = [Path(raw) for raw in paths]
    for p in given:
        try:
            found.extend(_onnx_files_of(p))
        except UsageError as exc:  # a NewerFormatError (upgrade zoostore) is no UsageError: it stops
            refused.append(exc)
    if len(refused) == 1:
        raise refused[0]
    if refused and all(isinstance(exc, DescriptorError) for exc in refused):
        raise DescriptorError(f"{len(refused)} of {sum(p.is_dir() for p in given)} folders have an invalid "
                              "model.toml or definition.yaml:\n" + "\n".join(map(str, refused)),
                              problems=[p for exc in refused for p in getattr(exc, "problems", [])])
    if refused:
        error = UsageError(f"{len(refused)} of {len(given)} paths cannot be checked:\n" + "\n".join(map(str, refused)))
        error.problems = [p for exc in refused for p in getattr(exc, "problems", [])]  # type: ignore[attr-defined]
        raise error
    return found


#: The end of the error for a PATH (or a descriptor's network) that is no regular file.
CHECK_REGULAR_FIX = "zoostore check reads ONNX files only"

def _onnx_files_of(p: Path) -> list[Path]:
    """The ONNX files one command-line path stands for (`find_onnx_files`); UsageError when none."""
    try:
        described = network_of(p) if p.is_dir() else None
    except LfsPointerError as exc:
        return [exc.path]  # check_model reports it, with the hint to run git lfs pull
    if described is not None:
        network, desc = described
        if desc.framework.lower() != "onnx":
            raise UsageError(f"{desc.path}: framework is {desc.framework!r}: check tests ONNX networks only")
        return [network]
    if p.is_dir():
        # is_file: a named pipe called x.onnx is passed over (reading it would wait forever)
        files = sorted(f for f in p.rglob("*.onnx") if f.is_file())
        if not files:
            raise UsageError(f"{p}: no .onnx files in this directory or below it")
        return files
    if p.exists():
        check_regular(p, CHECK_REGULAR_FIX)
        return [p]
    raise UsageError(f"{p}: no such file or directory")


# longer than 60 lines: the check's steps (load, checker, opset, nodes, smoke run) append to one
# report in order and stop early on a failed load; each step is already its own function.
def check_model(
    path: Path | str,
    *,
    policy: OpsetPolicy | None = None,
    descriptor: ModelDescriptor | None = None,
    progress: Progress | None = None,
) -> CheckReport:
    """Check one ONNX file; never raises for a bad model (the problems are in the report),
    only `MissingDependencyError` when onnx or onnxruntime is absent.

    `descriptor` defaults to the descriptor that names the file (`descriptor_for_network`).
    A Git LFS pointer is a problem whose text says to run `git lfs pull`.
    """
    onnx = _import("onnx")
    _import("onnxruntime")
    path = Path(path)
    report = CheckReport(path=path)
    steps = _Steps(report, progress)
    pol = (policy or OpsetPolicy()).resolved()

    model = None
    with steps.step("load") as detail:
        if is_lfs_pointer(path):
            report.problems.append(f"load: {lfs_pointer_message(path)}")
            return report
        if descriptor is None:
            try:
                descriptor = descriptor_for_network(path)
            except FormatError as exc:
                report.problems.append(f"load: {exc}")
        if descriptor is not None:
            report.descriptor = descriptor.path
            detail.append(f"descriptor {descriptor.path or '(given)'}")
        try:
            # External tensors stay on disk: the checker and onnxruntime read them by path.
            model = read_model(path, external_data=False)
        except ValueError as exc:
            report.problems.append(f"load: {exc}")
    if model is None:
        return report

    report.ir_version = int(model.ir_version)
    report.producer = f"{model.producer_name} {model.producer_version}".strip()
    report.opsets = {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}
    report.inputs, report.outputs = graph_nodes(model)

    with steps.step("checker") as detail:
        try:
            onnx.checker.check_model(str(path), full_check=True)
            detail.append("full_check passed")
        except Exception as exc:  # ValidationError, InferenceError, and friends
            report.problems.append(f"checker: {_text(exc)}")

    with steps.step("policy") as detail:
        _check_policy(report, pol, detail)

    with steps.step("nodes") as detail:
        if descriptor is None:
            detail.append("no model.toml or definition.yaml: declared nodes not compared")
        else:
            _compare_nodes(report, descriptor)
            detail.append(f"{len(report.inputs)} inputs, {len(report.outputs)} outputs")

    with steps.step("smoke") as detail:
        _smoke(report, descriptor, detail)
    if find_data_sets(path):
        with steps.step("data") as detail:
            _data_sets(report, detail)
    return report


def _data_sets(report: CheckReport, detail: list[str]) -> None:
    ort = _import("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(report.path), options, providers=["CPUExecutionProvider"])
    except Exception:
        return  # `smoke` already reported that onnxruntime cannot load the model
    outputs = [o.name for o in report.outputs]

    def run(feeds: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(outputs, session.run(outputs, feeds), strict=True))

    results = run_data_sets(report.path, [i.name for i in report.inputs], outputs, run, label="onnxruntime")
    report.data_sets = (results.passed, results.found)
    report.problems += [f"data: {p}" for p in results.problems]
    detail += results.detail


def check_files(
    paths: Iterable[Path | str],
    *,
    policy: OpsetPolicy | None = None,
    progress: Progress | None = None,
) -> list[CheckReport]:
    """`check_model` on every ONNX file named or found under the directories named."""
    return [check_model(p, policy=policy, progress=progress) for p in find_onnx_files(paths)]


def require_valid(
    paths: Iterable[Path | str],
    *,
    policy: OpsetPolicy | None = None,
    progress: Progress | None = None,
) -> list[CheckReport]:
    """What `publish` runs on `.onnx` files unless `--no-check`: check every file named (files
    that are not `.onnx` are ignored) and raise `CheckFailedError` listing every problem of
    every failing file. The error's `reports` attribute holds all reports."""
    onnx_files = [Path(p) for p in paths if str(p).lower().endswith(".onnx")]
    reports = [check_model(p, policy=policy, progress=progress) for p in onnx_files]
    failed = [r for r in reports if not r.ok]
    if failed:
        from zoostore.documents.manifest import LISTED

        lines = [f"{len(failed)} of {len(reports)} ONNX file(s) failed the check:"]
        problems = [f"  {r.path}: {p}" for r in failed for p in r.problems]
        lines += problems[:LISTED]
        if len(problems) > LISTED:
            more = len(problems) - LISTED
            lines.append(f"  ... and {more} more problem{'s' if more > 1 else ''} ('zoostore check PATH' lists every one)")
        lines.append("fix the model or its descriptor (model.toml or definition.yaml), or publish with --no-check to skip the check")
        err = CheckFailedError("\n".join(lines))
        err.reports = reports  # type: ignore[attr-defined]
        raise err
    return reports


def _check_policy(report: CheckReport, pol: OpsetPolicy, detail: list[str]) -> None:
    ir = report.ir_version or 0
    assert pol.max_ir_version is not None and pol.max_opset is not None
    if ir < pol.min_ir_version:
        report.problems.append(
            f"policy: IR version {ir} is older than the minimum {pol.min_ir_version}; "
            f"re-export the model with a newer exporter"
        )
    elif ir > pol.max_ir_version:
        report.problems.append(
            f"policy: IR version {ir} is newer than {pol.max_ir_version}, the newest this onnx "
            f"understands; upgrade onnx or export with an older IR version"
        )
    opset = report.opsets.get("ai.onnx")
    if opset is None:
        report.problems.append("policy: the model imports no default-domain (ai.onnx) opset")
    elif opset < pol.min_opset:
        report.problems.append(
            f"policy: opset {opset} is below the minimum {pol.min_opset}; convert it with "
            f"onnx.version_converter.convert_version(model, {pol.min_opset}) or lower --min-opset"
        )
    elif opset > pol.max_opset:
        report.problems.append(
            f"policy: opset {opset} is above the maximum {pol.max_opset}; export with "
            f"opset <= {pol.max_opset} or raise --max-opset"
        )
    detail.append(
        f"IR {ir} (allowed {pol.min_ir_version}..{pol.max_ir_version}), opset {opset} "
        f"(allowed {pol.min_opset}..{pol.max_opset})"
    )


def _compare_nodes(report: CheckReport, desc: ModelDescriptor) -> None:
    for kind, declared, actual in (
        ("input", desc.inputs, report.inputs),
        ("output", desc.outputs, report.outputs),
    ):
        declared_names = [n.name for n in declared]
        actual_names = [n.name for n in actual]
        for name in declared_names:
            if name not in actual_names:
                report.problems.append(
                    f"nodes: {desc.file_name} declares {kind} {name!r} but the graph has "
                    f"{kind}s {actual_names}"
                )
        for name in actual_names:
            if name not in declared_names:
                report.problems.append(
                    f"nodes: the graph has {kind} {name!r} that {desc.file_name} does not declare "
                    f"(declared: {declared_names})"
                )
        if set(declared_names) == set(actual_names) and declared_names != actual_names:
            report.problems.append(
                f"nodes: {kind} order differs: graph {actual_names}, {desc.file_name} {declared_names}"
            )
        for node in declared:
            got = next((n for n in actual if n.name == node.name), None)
            if got is None:
                continue
            if node.dtype != got.dtype:
                report.problems.append(
                    f"nodes: {kind} {node.name!r} dtype: {desc.file_name} says {node.dtype}, "
                    f"the graph has {got.dtype}"
                )
            if not got.shape and got.dtype == "undefined":
                continue
            if len(node.shape) != len(got.shape):
                report.problems.append(
                    f"nodes: {kind} {node.name!r} rank: {desc.file_name} says {list(node.shape)}, "
                    f"the graph has {list(got.shape)}"
                )
                continue
            for i, (want, have) in enumerate(zip(node.shape, got.shape, strict=True)):
                if isinstance(have, int):
                    bound = desc.bind(want)
                    if bound is not None and bound != have:
                        report.problems.append(
                            f"nodes: {kind} {node.name!r} dimension {i}: {desc.file_name} says "
                            f"{want!r}{f' = {bound}' if isinstance(want, str) else ''}, "
                            f"the graph fixes {have}"
                        )
