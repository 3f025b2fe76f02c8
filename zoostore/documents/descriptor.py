"""The model descriptor: what a maintainer declares about one model, and its `model.toml` form.

One descriptor model (`ModelDescriptor`), two file formats: `model.toml` (read here) and the
`definition.yaml` of Autoware's ModelZoo (read by `zoostore.documents.definition_yaml`);
`zoostore.documents.model_folder.load_descriptor` picks whichever a model folder holds.
`model.toml` mirrors `definition.yaml` (network file, framework, provenance, training,
licences, input and output nodes with shapes and data types, preprocessing), in TOML:

    models/yolo-tiny/1.2.0/
        model.onnx
        model.toml

    format = 1                          # optional; a newer format is refused with "upgrade"
    network = "model.onnx"              # relative path inside the folder (model_files/x.onnx)
    framework = "onnx"
    summary = "Camera obstacle detection, COCO"
    task = "object-detection"
    model_license = "Apache-2.0"
    data_license = "CC-BY-4.0"          # optional
    training = "COCO 2017, fully"       # optional: what it was trained on
    enable_testing = true               # optional (default true): CI may run the model
    [provenance]                        # optional
    source = "https://github.com/..."
    description = "Converted from the Darknet weights with ..."
    [dims]                              # optional: binds symbolic dimensions (default 1)
    batch = 1
    [[inputs]]
    name = "images"
    shape = ["batch", 3, 416, 416]      # int, -1 (dynamic, as Autoware writes it), or a name
    dtype = "float32"
    [[outputs]]
    name = "boxes"
    shape = ["batch", 13, 13, 425]
    dtype = "float32"
    [preprocessing]                     # optional: a TVM module run before the network
    module = "preprocessing/preprocessing.py"
    module_name = "scatter"
    [[preprocessing.inputs]]            # same keys as [[inputs]]
    ...
    [meta]                              # optional free metadata: dataset, accuracy, classes...
    dataset = "coco17"

`check` compares the declared nodes with the network's graph and feeds the smoke run inputs of
the declared shapes; `build` binds symbolic dimensions through `dims` (a -1 or an unbound name
becomes 1); `publish` stores `to_meta()` in the manifest's `[meta]`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from zoostore.core.errors import DescriptorError, FormatError, InvalidPathError, NewerFormatError
from zoostore.core.names import check_relpath
from zoostore.core.records import dataclass
from zoostore.documents.folder_files import MODEL_TOML

FORMAT = 1
FILE_NAME = MODEL_TOML

#: A dimension whose size the network fixes only at run time. Autoware's definition.yaml
#: writes it as -1 ("Use -1 for variable sizes", its definition_template.yaml); model.toml
#: accepts the same spelling, or a name (`"batch"`) that `[dims]` can bind.
DYNAMIC = -1

#: Element types a node may declare: the numpy spellings of the ONNX tensor types that
#: onnxruntime and TVM both handle.
DTYPES = frozenset({
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "bfloat16", "float32", "float64",
})

_T = TypeVar("_T")

#: What a required top-level key holds, for the message that says it is missing.
_REQUIRED = {
    "network": 'the network file, a path inside the model folder such as "model.onnx"',
    "framework": 'the network\'s framework, such as "onnx"',
    "model_license": 'the model\'s licence, an SPDX id such as "Apache-2.0"',
}
# definition.yaml holds them in its `network:` table (filename is the network).
_REQUIRED |= {"network.filename": _REQUIRED["network"], "network.framework": _REQUIRED["framework"],
              "network.model_license": _REQUIRED["model_license"]}

_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_TOP_KEYS = frozenset({
    "format", "network", "framework", "summary", "task", "model_license", "data_license",
    "training", "enable_testing", "provenance", "dims", "inputs", "outputs", "preprocessing", "meta",
})
_NODE_KEYS = frozenset({"name", "shape", "dtype", "description"})
_PROVENANCE_KEYS = frozenset({"source", "description"})
_PREPROCESSING_KEYS = frozenset({"module", "module_name", "inputs", "outputs"})
#: Keys `to_meta` writes itself; a `[meta]` entry may not shadow them.
_RESERVED_META = frozenset({
    "framework", "network", "task", "summary", "provenance", "model_license", "data_license",
    "training", "enable_testing", "preprocessing", "inputs", "outputs", "dims",
})


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output node. `shape` holds ints (`DYNAMIC`, -1, for a size fixed at run
    time) and names of symbolic dimensions."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str
    description: str = ""

    def concrete_shape(self, dims: Mapping[str, int], *, default: int = 1) -> tuple[int, ...]:
        """The shape with symbolic dimensions bound by `dims` (unbound ones and -1 become
        `default`)."""
        sizes = (bind_dim(d, dims) for d in self.shape)
        return tuple(default if size is None else size for size in sizes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.description:
            out["description"] = self.description
        return out


def bind_dim(dim: int | str, dims: Mapping[str, int]) -> int | None:
    """The size a declared dimension fixes: an int as is, a name through `dims`, and None for
    `DYNAMIC` or an unbound name (any size matches)."""
    if isinstance(dim, str):
        return dims.get(dim)
    return None if dim == DYNAMIC else dim


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """A module run before the network (Autoware: a TVMScript file whose `module_name`
    function scatters pillar features into a pseudo-image), with its own nodes."""

    module: str
    module_name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "module_name": self.module_name,
            "inputs": [n.to_dict() for n in self.inputs],
            "outputs": [n.to_dict() for n in self.outputs],
        }


@dataclass(frozen=True, slots=True)
class ModelDescriptor:
    """A parsed, validated descriptor (`model.toml` or `definition.yaml`). Build one with
    `load`/`parse` (model.toml), `definition_yaml.load` or `model_folder.load_descriptor`."""

    network: str
    framework: str
    model_license: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    summary: str = ""
    task: str = ""
    data_license: str = ""
    source: str = ""
    provenance: str = ""
    training: str = ""
    enable_testing: bool = True
    preprocessing: Preprocessing | None = None
    dims: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    meta: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    #: The file it was read from; None when parsed from text.
    path: Path | None = field(default=None, compare=False)

    @classmethod
    def load(cls, path: Path | str) -> ModelDescriptor:
        """Read `path` (a `model.toml`, or a directory holding one)."""
        p = Path(path)
        if p.is_dir():
            p = p / FILE_NAME
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DescriptorError.whole(
                p, f"no such file; a model directory needs a {FILE_NAME} (or Autoware's "
                f"definition.yaml) describing its network (see docs/pipeline.md)"
            ) from None
        return cls.parse(text, path=p)

    @classmethod
    def parse(cls, text: str, *, path: Path | None = None) -> ModelDescriptor:
        where = str(path) if path else FILE_NAME
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise DescriptorError.whole(where, f"not valid TOML: {exc}") from exc
        return _TomlReader(where).descriptor(doc, path)

    @property
    def file_name(self) -> str:
        """`model.toml` or `definition.yaml`: for messages that compare with the graph."""
        return self.path.name if self.path else FILE_NAME

    @property
    def network_path(self) -> Path:
        """The network file, resolved against the folder of the descriptor it was read from."""
        base = self.path.parent if self.path else Path(".")
        return base / self.network

    def bind(self, dim: int | str) -> int | None:
        """`bind_dim` with this descriptor's `dims`."""
        return bind_dim(dim, self.dims)

    def input(self, name: str) -> TensorSpec | None:
        return next((n for n in self.inputs if n.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((n for n in self.outputs if n.name == name), None)

    def to_meta(self) -> dict[str, Any]:
        """Model-level metadata for the manifest's `[meta]`: plain TOML values only, empty
        fields left out (`enable_testing` only when false), the free `[meta]` table merged in."""
        out: dict[str, Any] = {"framework": self.framework, "network": self.network}
        for key in ("summary", "task", "model_license", "data_license", "training"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if not self.enable_testing:
            out["enable_testing"] = False
        provenance = {k: v for k, v in (("source", self.source), ("description", self.provenance)) if v}
        if provenance:
            out["provenance"] = provenance
        out["inputs"] = [n.to_dict() for n in self.inputs]
        out["outputs"] = [n.to_dict() for n in self.outputs]
        if self.preprocessing is not None:
            out["preprocessing"] = self.preprocessing.to_dict()
        if self.dims:
            out["dims"] = dict(self.dims)
        out.update(_plain(dict(self.meta)))
        return out


def _plain(value: Any) -> Any:
    """A deep copy with mappings as dicts and sequences as lists (tomli_w serialisable)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def did_you_mean(key: str, allowed: frozenset[str]) -> str:
    """` (did you mean 'summary'?)` for a misspelt key, or ''."""
    import difflib  # only when a key is wrong

    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


class FieldReader:
    """Validation shared by both descriptor formats, with messages that name the file and the
    key: `<file>: <key>: <what is wrong>`."""

    #: Where the keys are described, for the message listing several problems.
    docs = "docs/pipeline.md"

    def __init__(self, where: str) -> None:
        self.where = where
        #: Problems noted so far (`DescriptorError.problems` items), for readers that report them all.
        self.problems: list[dict[str, str]] = []

    def problem(self, key: str, message: str) -> dict[str, str]:
        return {"file": self.where, "key": key, "message": message}

    def fail(self, key: str, message: str) -> DescriptorError:
        return DescriptorError(f"{self.where}: {key}: {message}", problems=[self.problem(key, message)])

    def note(self, key: str, message: str) -> None:
        """Record a problem and read on: `finish` reports every one in one error."""
        self.problems.append(self.problem(key, message))

    def attempt(self, read: Callable[[], _T], default: _T) -> _T:
        """`read()`, or `default` with its problem noted (a NewerFormatError still stops)."""
        try:
            return read()
        except NewerFormatError:
            raise
        except DescriptorError as exc:
            self.problems += exc.problems or [self.problem("", str(exc).removeprefix(f"{self.where}: "))]
            return default
        except FormatError as exc:
            self.problems.append(self.problem("", str(exc).removeprefix(f"{self.where}: ")))
            return default

    def finish(self) -> None:
        """Raise one DescriptorError listing every noted problem, if any: a maintainer fixes a
        descriptor in one pass instead of one key per run."""
        lines = [f"{p['key']}: {p['message']}" if p["key"] else p["message"] for p in self.problems]
        if len(lines) == 1:
            raise DescriptorError(f"{self.where}: {lines[0]}", problems=self.problems)
        if lines:
            raise DescriptorError(
                f"{self.where}: {len(lines)} problems; fix them all, then run again "
                f"(the keys are described in {self.docs}):\n"
                + "\n".join(f"  {line}" for line in lines), problems=self.problems)

    def string(self, doc: Mapping[str, Any], key: str, *, prefix: str = "", required: bool = False) -> str:
        full = prefix + key
        value = doc.get(key)
        if value is None:
            if required:
                what = _REQUIRED.get(full)
                raise self.fail(full, f"missing (required): expected {what}" if what else "missing (required)")
            return ""
        if not isinstance(value, str):
            raise self.fail(full, f"expected a string, found {type(value).__name__} {value!r}")
        if required and not value.strip():
            raise self.fail(full, "must not be empty")
        return value

    def relpath(self, value: str, key: str) -> str:
        """A path inside the model folder (`./model_files/x.onnx` -> `model_files/x.onnx`)."""
        text = value
        while text.startswith("./"):
            text = text[2:]
        try:
            return check_relpath(text)
        except InvalidPathError as exc:
            raise self.fail(
                key, f"expected a file name or a relative POSIX path inside the model folder "
                f"(no '..', not absolute, no backslash), found {value!r}"
            ) from exc

    def dtype(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or value not in DTYPES:
            raise self.fail(key, f"unknown dtype {value!r}; expected one of {', '.join(sorted(DTYPES))}")
        return value

    def shape(self, shape: Any, key: str) -> tuple[int | str, ...]:
        if shape is None:
            raise self.fail(key, "missing (required): expected an array of sizes and dimension names, "
                            "such as [1, 3, 224, 224] or [\"batch\", 80]")
        if not isinstance(shape, list):
            raise self.fail(key, f"expected an array of ints and dimension names, found {shape!r}")
        dims: list[int | str] = []
        for j, d in enumerate(shape):
            if isinstance(d, bool) or not isinstance(d, int | str):
                raise self.fail(f"{key}[{j}]", f"expected an int or a dimension name, found {d!r}")
            if isinstance(d, int) and d < 0 and d != DYNAMIC:
                raise self.fail(f"{key}[{j}]", f"expected a size >= 0, or -1 for a dynamic size, found {d}")
            if isinstance(d, str) and not _SYMBOL.fullmatch(d):
                raise self.fail(f"{key}[{j}]", f"expected a dimension name like 'batch', found {d!r}")
            dims.append(d)
        return tuple(dims)

    def unique(self, nodes: list[TensorSpec], key: str) -> tuple[TensorSpec, ...]:
        """`nodes`, each repeated name noted (a name that failed to read, "", was noted already)."""
        seen: set[str] = set()
        for i, node in enumerate(nodes):
            if node.name in seen:
                self.note(f"{key}[{i}].name", f"duplicate node name {node.name!r}")
            seen.add(node.name or f"\0{i}")
        return tuple(nodes)


class _TomlReader(FieldReader):
    """model.toml into a ModelDescriptor. Every problem is noted and reported at once (`finish`);
    only a newer `format` stops the reading, since the rest may mean something else there."""

    def unknown(self, doc: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
        extras = sorted(set(doc) - allowed)
        if not extras:
            return
        for extra in extras:
            self.note(prefix + extra, f"unknown key{did_you_mean(extra, allowed)}; expected one of "
                      f"{', '.join(sorted(allowed))} (free metadata goes in [meta])")

    def table(self, doc: Mapping[str, Any], key: str, expected: str) -> dict[str, Any]:
        """An optional table, {} when absent (or wrong, noted)."""
        value = doc.get(key, {})
        if not isinstance(value, dict):
            self.note(key, f"expected {expected}, found {type(value).__name__} {value!r}")
            return {}
        return value

    def descriptor(self, doc: dict[str, Any], path: Path | None) -> ModelDescriptor:
        fmt = doc.get("format", FORMAT)
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
            self.note("format", f"expected a positive integer, found {fmt!r}")
        elif fmt > FORMAT:
            raise NewerFormatError(self.where, fmt, FORMAT)
        self.unknown(doc, _TOP_KEYS, "")
        network = self.attempt(lambda: self.relpath(self.string(doc, "network", required=True), "network"), "")
        framework = self.attempt(lambda: self.string(doc, "framework", required=True), "")
        model_license = self.attempt(lambda: self.string(doc, "model_license", required=True), "")
        optional = {key: self.attempt(lambda: self.string(doc, key), "")  # noqa: B023 (called at once)
                    for key in ("summary", "task", "data_license", "training")}
        prov = self.table(doc, "provenance", "a table with source and description")
        self.unknown(prov, _PROVENANCE_KEYS, "provenance.")
        source = self.attempt(lambda: self.string(prov, "source", prefix="provenance."), "")
        provenance = self.attempt(lambda: self.string(prov, "description", prefix="provenance."), "")
        dims = self.dims(doc.get("dims", {}))
        meta = self.table(doc, "meta", "a table of free metadata")
        for key in sorted(set(meta) & _RESERVED_META):
            self.note(f"meta.{key}", "is a descriptor field; set it at the top level")
        testing = doc.get("enable_testing", True)
        if not isinstance(testing, bool):
            self.note("enable_testing", f"expected true or false, found {testing!r}")
        inputs = self.nodes(doc, "inputs")
        outputs = self.nodes(doc, "outputs")
        preprocessing = self.preprocessing(doc.get("preprocessing"))
        self.finish()
        # A symbolic dimension that `dims` does not bind is fine: it defaults to 1.
        return ModelDescriptor(
            network=network, framework=framework, model_license=model_license, inputs=inputs, outputs=outputs,
            summary=optional["summary"], task=optional["task"], data_license=optional["data_license"],
            source=source, provenance=provenance, training=optional["training"], enable_testing=bool(testing),
            preprocessing=preprocessing, dims=MappingProxyType(dims), meta=MappingProxyType(meta), path=path,
        )

    def preprocessing(self, raw: Any) -> Preprocessing | None:
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.note("preprocessing", "expected a table with module, module_name, inputs, outputs")
            return None
        self.unknown(raw, _PREPROCESSING_KEYS, "preprocessing.")
        module = self.attempt(lambda: self.relpath(
            self.string(raw, "module", prefix="preprocessing.", required=True), "preprocessing.module"), "")
        return Preprocessing(
            module=module,
            module_name=self.attempt(lambda: self.string(raw, "module_name", prefix="preprocessing.", required=True), ""),
            inputs=self.nodes(raw, "inputs", prefix="preprocessing."),
            outputs=self.nodes(raw, "outputs", prefix="preprocessing."),
        )

    def dims(self, raw: Any) -> dict[str, int]:
        if not isinstance(raw, dict):
            self.note("dims", "expected a table of name = positive integer")
            return {}
        out: dict[str, int] = {}
        for name, value in raw.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                self.note(f"dims.{name}", f"expected a positive integer, found {value!r}")
            else:
                out[name] = value
        return out

    def nodes(self, doc: Mapping[str, Any], key: str, *, prefix: str = "") -> tuple[TensorSpec, ...]:
        full = prefix + key
        raw = doc.get(key)
        if raw is None:
            self.note(full, f"missing (required): declare each node as [[{full}]] with name, shape and dtype")
            return ()
        if not isinstance(raw, list) or not raw or not all(isinstance(n, dict) for n in raw):
            self.note(full, f"expected a non-empty array of tables ([[{full}]]), found {raw!r}")
            return ()
        out: list[TensorSpec] = []
        no_shape: tuple[int | str, ...] = ()
        for i, node in enumerate(raw):
            at = f"{full}[{i}]."
            self.unknown(node, _NODE_KEYS, at)
            name = self.attempt(lambda: self.string(node, "name", prefix=at, required=True), "")
            dtype = self.attempt(lambda: self.dtype(self.string(node, "dtype", prefix=at, required=True), at + "dtype"), "")
            shape = self.attempt(lambda: self.shape(node.get("shape"), at + "shape"), no_shape)
            out.append(TensorSpec(name, shape, dtype, self.attempt(lambda: self.string(node, "description", prefix=at), "")))
        return self.unique(out, full)
