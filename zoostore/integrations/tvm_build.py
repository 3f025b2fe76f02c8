"""`zoostore build`: compile a model's ONNX network with Apache TVM, one directory per arch.

    OUT/
      x86_64/
        deploy_lib.so     the Relax VM executable and its kernels, weights embedded
        deploy_io.json    what a C++ runtime needs to call it: entry, input/output names,
                          shapes, dtypes, in call order
        build.toml        TVM and tvm-ffi versions, target, compiler and options, source hash
        <model>_config.hpp  C++ constants (see cpp_header): name, zoo version if given, TVM
                          version, target, input/output names, shapes, dtypes
      aarch64/
        ...               same, linked with Debian's aarch64-linux-gnu-g++

Pipeline per model: onnx.load -> relax.frontend.onnx.from_onnx (symbolic dimensions bound
by the model.toml's `dims`, else 1) -> DecomposeOpsForInference -> tvm.compile per target ->
export_library, linked by our own `fcompile` so that the link is reproducible.

Byte-reproducible by construction, checked by the tests: the objects TVM writes carry no
paths or times; the link runs with relative object names from a fixed-name work directory
(`-ffile-prefix-map`, `SOURCE_DATE_EPOCH=0`, `LC_ALL=C` for anything gcc might embed), the
GNU build-id is a hash of the content, and `build.toml` holds no timestamps or host names.

`publish` reads `build.toml` back with `read_build_record` and turns it into
`requires.tvm = ">=X.Y.0 <X.(Y+1).0"` plus per-arch metadata.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

from zoostore.core.atomic import atomic_write
from zoostore.core.errors import BuildError, MissingDependencyError, UsageError
from zoostore.core.records import dataclass
from zoostore.documents.build_record import RECORD_FILE, BuildRecord, read_build_record, tvm_requirement
from zoostore.documents.descriptor import FILE_NAME as DESCRIPTOR_FILE
from zoostore.documents.descriptor import ModelDescriptor, TensorSpec
from zoostore.documents.model_folder import descriptor_for_network, network_of, refuse_lfs_pointer
from zoostore.integrations.test_data import find_data_sets, run_data_sets

if TYPE_CHECKING:
    from zoostore.core.progress import Progress

INSTALL_HINT = "pip install 'zoostore[tvm]'"
FORMAT = 1
LIBRARY = "deploy_lib.so"
IO_FILE = "deploy_io.json"
#: Name of the link's work directory: fixed, so that nothing random can reach the output.
_WORK_NAME = "zoostore-build"


@dataclass(frozen=True, slots=True)
class Arch:
    """A CPU architecture `build` targets: the LLVM triple and the GNU toolchain prefix."""

    name: str
    triple: str

    @property
    def target(self) -> dict[str, str]:
        # Baseline ISA only (no -mcpu): the artifact must run on every CPU of the arch.
        return {"kind": "llvm", "mtriple": self.triple}

    @property
    def compiler(self) -> str:
        """`g++` on a host of this arch, else the Debian cross compiler."""
        return "g++" if platform.machine() == self.name else f"{self.triple}-g++"


ARCHS: Mapping[str, Arch] = {
    "x86_64": Arch("x86_64", "x86_64-linux-gnu"),
    "aarch64": Arch("aarch64", "aarch64-linux-gnu"),
}
_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}

#: Extra link flags; `-shared -fPIC` come first. The build-id hashes the content (never a
#: random or time-based id). `fcompile` adds `-ffile-prefix-map=<work dir>=.` too, which
#: matters when TVM hands it a C source to compile (C-source modules) along with the objects.
LINK_FLAGS = ("-Wl,--build-id=sha1",)


def parse_arch(name: str) -> Arch:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in ARCHS:
        several = " (give several as --target x86_64 aarch64, not separated by commas)" if "," in name else ""
        raise UsageError(f"unknown target architecture {name!r}: expected one of {', '.join(ARCHS)}{several}")
    return ARCHS[key]


@dataclass(frozen=True, slots=True)
class BuildStep:
    step: str
    seconds: float
    detail: str = ""


@dataclass(frozen=True, slots=True)
class BuildResult:
    """One arch's build: where its files went and how long each step took."""

    arch: str
    out_dir: Path
    files: tuple[Path, ...]
    record: BuildRecord
    steps: tuple[BuildStep, ...]

    @property
    def library(self) -> Path:
        return self.out_dir / LIBRARY

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)


def _import_tvm() -> Any:
    try:
        import tvm
        from tvm.relax.frontend import onnx as _frontend  # noqa: F401  (fails without onnx)
    except ImportError as exc:
        raise MissingDependencyError(
            f"zoostore build needs Apache TVM and onnx, which are not installed ({exc}): {INSTALL_HINT}"
        ) from exc
    return tvm


def find_network(model: Path) -> tuple[Path, ModelDescriptor | None]:
    """The ONNX file of a model directory: the one its descriptor names (`model.toml`, or
    Autoware's `definition.yaml` with the network under `model_files/`), else the only
    `*.onnx`. `model` may also be the ONNX file itself. A Git LFS pointer is refused
    (`LfsPointerError`, with the hint to run `git lfs pull`)."""
    if model.is_file():
        refuse_lfs_pointer(model)
        return model, descriptor_for_network(model)
    if not model.is_dir():
        raise UsageError(f"{model}: no such model directory")
    described = network_of(model)
    if described is not None:
        network, desc = described
        if desc.framework.lower() != "onnx":
            key = "framework" if desc.file_name == DESCRIPTOR_FILE else "network.framework"
            raise UsageError(f"{desc.path}: {key}: build compiles ONNX networks, found {desc.framework!r}")
        return network, desc
    candidates = sorted(model.glob("*.onnx"))
    if len(candidates) != 1:
        raise UsageError(
            f"{model}: has no {DESCRIPTOR_FILE} and {len(candidates)} .onnx files (nor a "
            f"definition.yaml); add a {DESCRIPTOR_FILE} naming the network to build"
        )
    refuse_lfs_pointer(candidates[0])
    return candidates[0], None


def _compiler_version(cc: str) -> str:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True, env=_link_env())
    except (OSError, subprocess.CalledProcessError):
        return ""
    return out.stdout.splitlines()[0].strip() if out.stdout else ""


def _link_env() -> dict[str, str]:
    env = dict(os.environ)
    # https://reproducible-builds.org/docs/source-date-epoch/ : gcc uses it for __DATE__/__TIME__.
    env.update({"SOURCE_DATE_EPOCH": "0", "LC_ALL": "C", "TZ": "UTC"})
    return env


def _make_fcompile(cc: str, work: Path, log: list[str]) -> Any:
    """A replacement for tvm's `create_shared` that links with relative object names, from
    `work` as the working directory, with a fixed environment."""

    def fcompile(output: str, objects: Sequence[str], options: Sequence[str] | None = None, **_: Any) -> None:
        rel = [os.path.relpath(o, work) for o in objects]
        flags = [*LINK_FLAGS, f"-ffile-prefix-map={work}=.", *(options or [])]
        cmd = [cc, "-shared", "-fPIC", "-o", os.path.abspath(output), *rel, *flags]
        # Logged without the random paths, so build.toml stays reproducible too.
        log.append(" ".join([cc, "-shared", "-fPIC", "-o", LIBRARY, *rel, *LINK_FLAGS]))
        proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=_link_env())
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")

    return fcompile


class _Steps:
    def __init__(self, label: str, progress: Progress | None) -> None:
        self.label = label
        self.progress = progress
        self.done: list[BuildStep] = []

    @contextmanager
    def step(self, name: str, arch: str = "") -> Iterator[list[str]]:
        where = f"{self.label}{' for ' + arch if arch else ''}"
        task = f"build {where}: {name}"
        if self.progress:
            self.progress.start(task, None, unit="step")
        detail: list[str] = []
        start = time.perf_counter()
        try:
            yield detail
        except (BuildError, MissingDependencyError, UsageError):
            raise
        except Exception as exc:
            text = " ".join(str(exc).split()) or type(exc).__name__
            raise BuildError(f"build {where} failed at step {name!r}: {type(exc).__name__}: {text}") from exc
        finally:
            self.done.append(BuildStep(f"{name}{' ' + arch if arch else ''}", time.perf_counter() - start, "; ".join(detail)))
            if self.progress:
                self.progress.done(task)


def _shape_of(expr: Any) -> list[int | str]:
    out: list[int | str] = []
    for v in expr.values:
        try:
            out.append(int(v))
        except (TypeError, ValueError):
            out.append(str(v))
    return out


def _output_specs(mod: Any, names: Sequence[str]) -> list[TensorSpec]:
    ret = mod["main"].ret_ty
    fields = list(ret.fields) if hasattr(ret, "fields") else [ret]
    if len(fields) != len(names):
        raise RuntimeError(f"the compiled main returns {len(fields)} values, the graph has {len(names)} outputs")
    specs = []
    for name, f in zip(names, fields, strict=True):
        shape = _shape_of(f.shape) if getattr(f, "shape", None) is not None else []
        specs.append(TensorSpec(name, tuple(shape), str(f.dtype)))
    return specs


# longer than 60 lines: one arch's build is a fixed sequence (import, compile, export, header,
# record) whose steps share the timing list; splitting it per step is left for a later change.
def build_model(
    model: Path | str,
    *,
    targets: Sequence[str],
    out: Path | str | None = None,
    name: str | None = None,
    version: str | None = None,
    progress: Progress | None = None,
) -> list[BuildResult]:
    """Compile `model` (a directory with model.toml, definition.yaml or one .onnx, or the .onnx
    itself) for every arch in `targets`, writing `OUT/<arch>/`. `out` defaults to
    `<model dir>/build`; `name` (for build.toml and the C++ header) to the folder's name;
    `version` (semver) goes into build.toml and the header.
    Raises `BuildError` naming the model, the step and TVM's or the compiler's message."""
    from zoostore.core.digest import hash_file
    from zoostore.core.semver import parse_version
    from zoostore.integrations import cpp_header
    from zoostore.integrations.feeds import concrete_input_shapes
    from zoostore.integrations.onnx_check import graph_nodes, read_model

    archs = [parse_arch(t) for t in targets]
    if not archs:
        raise UsageError("build needs at least one --target (x86_64, aarch64)")
    archs = list({a.name: a for a in archs}.values())
    if version:
        version = str(parse_version(version))  # v1.2.0 and =1.2.0 are 1.2.0, in build.toml and the header
    model = Path(model)
    network, desc = find_network(model)
    model_dir = network.parent if model.is_file() else model
    model_name = name or _model_name(model_dir, desc)
    header = cpp_header.header_name(model_name)
    out_root = Path(out) if out is not None else model_dir / "build"
    label = str(model)
    for folder in (out_root, *(out_root / a.name for a in archs)):
        if folder.exists() and not folder.is_dir():  # refused before minutes of compiling, not after
            raise UsageError(f"build {label}: the output {folder} is a file; expected a directory (OUT holds one "
                             "folder per arch): give another --out, or move the file away")
    for arch in archs:
        if shutil.which(arch.compiler) is None:
            pkg = "g++" if arch.compiler == "g++" else f"g++-{arch.triple}"
            raise BuildError(
                f"build {label} for {arch.name}: the linker {arch.compiler} is not installed: "
                f"apt-get install {pkg}"
            )
    tvm = _import_tvm()
    import tvm_ffi
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    steps = _Steps(label, progress)
    with steps.step("import") as detail:
        try:
            proto = read_model(network, external_data=True)  # external data is read from next to the file
        except ValueError as exc:
            raise BuildError(f"build {label} failed at step 'import': {exc}") from exc
        inputs, outputs = graph_nodes(proto)
        shapes = concrete_input_shapes(inputs, desc)
        shape_dict = {name: list(s) for name, s in shapes.items()}
        try:
            mod = from_onnx(proto, shape_dict=shape_dict, keep_params_in_input=False)
        except tvm.error.OpNotImplemented as exc:
            tvm_text = " ".join(str(exc).split())
            raise BuildError(
                f"build {label} failed at step 'import': OpNotImplemented: {tvm_text}. The Relax ONNX frontend "
                f"of TVM {tvm.__version__} cannot convert these operators: re-export the network without them "
                "(or with them decomposed into supported ones), or publish the ONNX source without a TVM build"
            ) from exc
        mod = relax.transform.DecomposeOpsForInference()(mod)
        in_specs = [TensorSpec(i.name, tuple(shapes[i.name]), i.dtype) for i in inputs]
        out_specs = _output_specs(mod, [o.name for o in outputs])
        detail.append(", ".join(f"{k}{v}" for k, v in shape_dict.items()))
    source_blake3 = str(hash_file(network))

    results: list[BuildResult] = []
    for arch in archs:
        mark = len(steps.done)
        target = tvm.target.Target(arch.target)
        with steps.step("compile", arch.name):
            executable = tvm.compile(mod, target=target, relax_pipeline="default", tir_pipeline="default")
        arch_dir = out_root / arch.name
        out_root.mkdir(parents=True, exist_ok=True)
        # Every file is made in a staging folder beside OUT/<arch>/ and moves in only when all of
        # them are written and the test data passed: a failed build leaves OUT/<arch>/ as it was.
        with tempfile.TemporaryDirectory(prefix=".zoostore-build-", dir=out_root) as staging:
            stage = Path(staging)
            link_log: list[str] = []
            with steps.step("export", arch.name) as detail, tempfile.TemporaryDirectory(prefix="zoostore-build-") as tmp:
                work = Path(tmp) / _WORK_NAME
                work.mkdir()
                fcompile = _make_fcompile(arch.compiler, work, link_log)
                executable.export_library(str(stage / LIBRARY), fcompile=fcompile, workspace_dir=str(work))
                detail.append(f"{(stage / LIBRARY).stat().st_size} bytes")
            tested: dict[str, int] = {}
            if find_data_sets(network):
                with steps.step("test data", arch.name) as detail:
                    detail += _run_data_sets(stage / LIBRARY, network, in_specs, out_specs, label, arch.name, tested)
            with steps.step("write", arch.name):
                io_doc = {
                    "format": FORMAT,
                    "library": LIBRARY,
                    "executor": "relax.vm",
                    "entry": "main",
                    "inputs": [n.to_dict() for n in in_specs],
                    "outputs": [n.to_dict() for n in out_specs],
                }
                _write_atomic(stage / IO_FILE, json.dumps(io_doc, indent=2) + "\n")
                _write_atomic(stage / header, cpp_header.render_config_header(
                    model=model_name, arch=arch.name, tvm_version=str(tvm.__version__), target=str(target),
                    inputs=in_specs, outputs=out_specs, version=version, library=LIBRARY,
                ))
                record_doc: dict[str, Any] = {
                    "format": FORMAT,
                    "arch": arch.name,
                    "model": model_name,
                    **({"version": version} if version else {}),
                    "files": [LIBRARY, IO_FILE, header],
                    "source": {"file": network.name, "blake3": source_blake3},
                    "tvm": {
                        "version": str(tvm.__version__),
                        "ffi_version": str(tvm_ffi.__version__),
                        "target": str(target),
                        "executor": "relax.vm",
                    },
                    "compiler": {"command": arch.compiler, "version": _compiler_version(arch.compiler)},
                    "options": {
                        "frontend": "relax.frontend.onnx.from_onnx(keep_params_in_input=False)",
                        "passes": ["DecomposeOpsForInference"],
                        "relax_pipeline": "default",
                        "tir_pipeline": "default",
                        "link": link_log[-1] if link_log else "",
                        "input_shapes": {k: v for k, v in shape_dict.items()},
                    },
                    "inputs": [n.to_dict() for n in in_specs],
                    "outputs": [n.to_dict() for n in out_specs],
                    **({"test_data": tested} if tested else {}),
                }
                _write_atomic(
                    stage / RECORD_FILE,
                    "# written by 'zoostore build'; publish reads it for requires.tvm and meta\n" + tomli_w.dumps(record_doc),
                )
                arch_dir.mkdir(exist_ok=True)
                for file in (LIBRARY, IO_FILE, header, RECORD_FILE):
                    os.replace(stage / file, arch_dir / file)
        results.append(BuildResult(
            arch=arch.name,
            out_dir=arch_dir,
            files=(arch_dir / LIBRARY, arch_dir / IO_FILE, arch_dir / RECORD_FILE, arch_dir / header),
            record=read_build_record(arch_dir),
            steps=tuple(steps.done[:1] + steps.done[mark:]) if not results else tuple(steps.done[mark:]),
        ))
    return results


def _run_data_sets(library: Path, network: Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                   label: str, arch: str, tested: dict[str, int]) -> list[str]:
    """Run the model's `test_data_set_N` folders through the built library (in process on this
    machine's arch, under qemu for aarch64 on x86_64 when the cross tools are there) and fail
    the build when an output leaves the tolerance. A set whose input shapes differ from the
    shapes the build bound is skipped and said so, and so is an arch nothing here can run."""
    import numpy as np

    names = [o.name for o in outputs]
    bound = {i.name: tuple(i.shape) for i in inputs}
    skipped: list[str] = []
    if arch == platform.machine():
        import tvm
        from tvm import relax

        vm = relax.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.cpu())

        def run(feeds: dict[str, Any]) -> dict[str, Any]:
            result = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(feeds[i.name])) for i in inputs])
            values = [result] if hasattr(result, "numpy") else list(result)  # a tensor, or a tuple of them
            return {n: v.numpy() for n, v in zip(names, values, strict=True)}
    else:
        from zoostore.integrations.qemu import Aarch64Runner

        runner = Aarch64Runner.find() if arch == "aarch64" else f"no way to run {arch} code here"
        if isinstance(runner, str):
            return [f"test data not run on {arch}: {runner}"]

        def run(feeds: dict[str, Any]) -> dict[str, Any]:
            return runner.run(library, {i.name: feeds[i.name] for i in inputs}, names)

    def guarded(feeds: dict[str, Any]) -> dict[str, Any]:
        shapes = {k: tuple(np.shape(v)) for k, v in feeds.items()}
        if shapes != bound:
            skipped.append(f"{shapes} != {bound}")
            return {}
        return run(feeds)

    results = run_data_sets(network, list(bound), names, guarded, label="TVM")
    problems = [p for p in results.problems if "was not produced" not in p or not skipped]
    if problems:
        raise BuildError(f"build {label} for {arch}: the compiled library does not reproduce the model's test data: "
                         + "; ".join(problems[:5]) + f". The output folder was left as it was. Run 'zoostore check "
                         f"{label}': if it fails the test data too, the data is wrong or stale (fix it, or make it "
                         "again from this network); if not, TVM computes this model differently from onnxruntime")
    note = [f"{len(skipped)} set(s) skipped: input shapes differ from the build's"] if skipped else []
    tested.update(passed=results.passed, found=results.found, skipped=len(skipped))  # into build.toml
    return results.detail + note


def _model_name(model_dir: Path, desc: ModelDescriptor | None) -> str:
    """`models/mlp/1.0.0` -> `mlp`; `models/mlp` -> `mlp`; Autoware's
    `point_pillars_rpn/onnx_fp32_kitti` (definition.yaml) -> `point_pillars_rpn`, the network
    name its inference_engine_tvm_config.hpp files use. Informational in build.toml (publish
    names the model itself). Never a full path, which would make build.toml path-dependent."""
    name = model_dir.resolve().name
    if desc is not None and desc.file_name != DESCRIPTOR_FILE:
        return model_dir.resolve().parent.name
    if re.fullmatch(r"v?\d+(\.\d+)*([-+].*)?", name):
        return model_dir.resolve().parent.name
    return name


def _write_atomic(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))
