"""`build.toml`: how `zoostore build` made one architecture's artifacts, read back by publish.

    OUT/<arch>/build.toml

    format = 1
    arch = "x86_64"
    model = "yolo"
    files = ["deploy_lib.so", "deploy_io.json"]
    options = { ... }                    # what the build was given (input shapes, ...)
    [tvm]      version, ffi_version, target, executor
    [compiler] command, version
    [source]   file, blake3              # the ONNX network compiled
    [[inputs]] / [[outputs]]             name, shape, dtype
    [test_data] passed, found, skipped   # only when the model has test_data_set_N folders

`zoostore.integrations.tvm_build` writes it; `publish` turns it into
`requires.tvm = ">=X.Y.0 <X.(Y+1).0"` plus per-arch metadata. It lives here, with the other
documents, so that publishing never imports the TVM integration.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any

from zoostore.core.errors import FormatError, NewerFormatError
from zoostore.core.records import dataclass
from zoostore.documents.descriptor import TensorSpec
from zoostore.documents.folder_files import BUILD_TOML

FORMAT = 1
RECORD_FILE = BUILD_TOML


def tvm_requirement(version: str) -> str:
    """`0.27.0.post1` -> `>=0.27.0 <0.28.0`: TVM keeps its runtime ABI within a minor series
    (the X.Y rule of the Autoware ModelZoo versioning)."""
    m = re.match(r"(\d+)\.(\d+)", version)
    if not m:
        raise FormatError(f"TVM version {version!r} does not start with MAJOR.MINOR")
    major, minor = int(m.group(1)), int(m.group(2))
    return f">={major}.{minor}.0 <{major}.{minor + 1}.0"


@dataclass(frozen=True, slots=True)
class BuildRecord:
    """A parsed `build.toml`: how one arch's artifacts were built."""

    arch: str
    model: str
    tvm_version: str
    tvm_ffi_version: str
    target: str
    compiler: str
    compiler_version: str
    source_file: str
    source_blake3: str
    options: Mapping[str, Any] = field(hash=False)
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    files: tuple[str, ...] = ()
    #: The zoo version given to build (`--model-version`), else "".
    model_version: str = ""
    #: The model's test data sets run through this library: passed, found, skipped ({} if none).
    test_data: Mapping[str, int] = field(default_factory=dict, hash=False)
    path: Path | None = field(default=None, compare=False)

    @property
    def requires(self) -> dict[str, str]:
        """Runtime requirements for the manifest's `requires`."""
        return {"tvm": tvm_requirement(self.tvm_version)}

    @property
    def meta(self) -> dict[str, Any]:
        """Per-arch build metadata, plain TOML values."""
        return {
            "tvm": self.tvm_version,
            "tvm_ffi": self.tvm_ffi_version,
            "target": self.target,
            "compiler": self.compiler_version or self.compiler,
            "executor": "relax.vm",
            "options": json.loads(json.dumps(dict(self.options))),
            "source": {"file": self.source_file, "blake3": self.source_blake3},
            **({"test_data": dict(self.test_data)} if self.test_data else {}),
        }


def read_build_record(directory: Path | str) -> BuildRecord:
    """Read `DIR/build.toml` (DIR is one arch's output directory)."""
    d = Path(directory)
    path = d / RECORD_FILE if d.is_dir() or not d.name.endswith(".toml") else d
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError(f"{path}: no such file; run 'zoostore build' to produce it") from None
    except tomllib.TOMLDecodeError as exc:
        raise FormatError(f"{path}: not valid TOML: {exc}") from exc

    def need(table: Mapping[str, Any], key: str, where: str, kind: type = str) -> Any:
        if key not in table:
            raise FormatError(f"{path}: {where}{key}: missing")
        if not isinstance(table[key], kind):
            raise FormatError(f"{path}: {where}{key}: expected {kind.__name__}, found {table[key]!r}")
        return table[key]

    fmt = need(doc, "format", "", int)
    if fmt > FORMAT:
        raise NewerFormatError(str(path), fmt, FORMAT)
    tvm = need(doc, "tvm", "", dict)
    compiler = need(doc, "compiler", "", dict)
    source = need(doc, "source", "", dict)
    io_nodes = []
    for kind in ("inputs", "outputs"):
        nodes = []
        for i, n in enumerate(doc.get(kind, [])):
            where = f"{kind}[{i}]."
            nodes.append(TensorSpec(need(n, "name", where), tuple(need(n, "shape", where, list)), need(n, "dtype", where)))
        io_nodes.append(tuple(nodes))
    return BuildRecord(
        arch=need(doc, "arch", ""),
        model=doc.get("model", ""),
        tvm_version=need(tvm, "version", "tvm."),
        tvm_ffi_version=need(tvm, "ffi_version", "tvm."),
        target=need(tvm, "target", "tvm."),
        compiler=need(compiler, "command", "compiler."),
        compiler_version=compiler.get("version", ""),
        source_file=need(source, "file", "source."),
        source_blake3=need(source, "blake3", "source."),
        options=dict(doc.get("options", {})),
        inputs=io_nodes[0],
        outputs=io_nodes[1],
        files=tuple(doc.get("files", [])),
        model_version=str(doc.get("version", "")),
        test_data=_test_data(doc.get("test_data", {}), path),
        path=path,
    )


def _test_data(value: Any, path: Path) -> dict[str, int]:
    if not isinstance(value, dict) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value.values()):
        raise FormatError(f"{path}: test_data: expected a table of counts (passed, found, skipped), got {value!r:.80}")
    return {str(k): int(v) for k, v in value.items()}
