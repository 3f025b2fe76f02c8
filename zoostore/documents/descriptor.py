"""`model.toml`: what a maintainer declares about one model, next to its network file.

Mirrors the `definition.yaml` of Autoware's ModelZoo (network file, framework, provenance,
licences, input and output nodes with shapes and data types), in TOML:

    models/yolo-tiny/1.2.0/
        model.onnx
        model.toml

    format = 1                          # optional; a newer format is refused with "upgrade"
    network = "model.onnx"              # file name, next to model.toml
    framework = "onnx"
    summary = "Camera obstacle detection, COCO"
    task = "object-detection"
    model_license = "Apache-2.0"
    data_license = "CC-BY-4.0"          # optional
    [provenance]                        # optional
    source = "https://github.com/..."
    description = "Converted from the Darknet weights with ..."
    [dims]                              # optional: binds symbolic dimensions (default 1)
    batch = 1
    [[inputs]]
    name = "images"
    shape = ["batch", 3, 416, 416]      # int, or a name for a symbolic dimension
    dtype = "float32"
    [[outputs]]
    name = "boxes"
    shape = ["batch", 13, 13, 425]
    dtype = "float32"
    [meta]                              # optional free metadata: dataset, accuracy, classes...
    dataset = "coco17"

`check` compares the declared nodes with the network's graph and feeds the smoke run inputs of
the declared shapes; `build` binds symbolic dimensions through `dims`; `publish` stores
`to_meta()` in the manifest's `[meta]`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from zoostore.core.errors import FormatError, NewerFormatError

FORMAT = 1
FILE_NAME = "model.toml"

#: Element types a node may declare: the numpy spellings of the ONNX tensor types that
#: onnxruntime and TVM both handle.
DTYPES = frozenset({
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "bfloat16", "float32", "float64",
})

_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_TOP_KEYS = frozenset({
    "format", "network", "framework", "summary", "task", "model_license", "data_license",
    "provenance", "dims", "inputs", "outputs", "meta",
})
_NODE_KEYS = frozenset({"name", "shape", "dtype", "description"})
_PROVENANCE_KEYS = frozenset({"source", "description"})
#: Keys `to_meta` writes itself; a `[meta]` entry may not shadow them.
_RESERVED_META = frozenset({
    "framework", "network", "task", "summary", "provenance", "model_license", "data_license",
    "inputs", "outputs", "dims",
})


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output node. `shape` holds ints and names of symbolic dimensions."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str
    description: str = ""

    def concrete_shape(self, dims: Mapping[str, int], *, default: int = 1) -> tuple[int, ...]:
        """The shape with symbolic dimensions bound by `dims` (unbound ones become `default`)."""
        return tuple(d if isinstance(d, int) else int(dims.get(d, default)) for d in self.shape)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}
        if self.description:
            out["description"] = self.description
        return out


@dataclass(frozen=True, slots=True)
class ModelDescriptor:
    """A parsed, validated `model.toml`. Build one with `load` or `parse`."""

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
            raise FormatError(
                f"{p}: no such file; a model directory needs a {FILE_NAME} describing its "
                f"network (see docs/pipeline.md)"
            ) from None
        return cls.parse(text, path=p)

    @classmethod
    def parse(cls, text: str, *, path: Path | None = None) -> ModelDescriptor:
        where = str(path) if path else FILE_NAME
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise FormatError(f"{where}: not valid TOML: {exc}") from exc
        return _Parser(where).descriptor(doc, path)

    @classmethod
    def for_network(cls, network: Path) -> ModelDescriptor | None:
        """The `model.toml` next to `network` if there is one and it describes that file."""
        candidate = network.parent / FILE_NAME
        if not candidate.is_file():
            return None
        desc = cls.load(candidate)
        return desc if desc.network == network.name else None

    @property
    def network_path(self) -> Path:
        """The network file, resolved next to the `model.toml` it was read from."""
        base = self.path.parent if self.path else Path(".")
        return base / self.network

    def input(self, name: str) -> TensorSpec | None:
        return next((n for n in self.inputs if n.name == name), None)

    def output(self, name: str) -> TensorSpec | None:
        return next((n for n in self.outputs if n.name == name), None)

    def to_meta(self) -> dict[str, Any]:
        """Model-level metadata for the manifest's `[meta]`: plain TOML values only, empty
        fields left out, the free `[meta]` table merged in."""
        out: dict[str, Any] = {"framework": self.framework, "network": self.network}
        for key in ("summary", "task", "model_license", "data_license"):
            value = getattr(self, key)
            if value:
                out[key] = value
        provenance = {k: v for k, v in (("source", self.source), ("description", self.provenance)) if v}
        if provenance:
            out["provenance"] = provenance
        out["inputs"] = [n.to_dict() for n in self.inputs]
        out["outputs"] = [n.to_dict() for n in self.outputs]
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


class _Parser:
    """Validation with messages that name the file and the key."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, key: str, message: str) -> FormatError:
        return FormatError(f"{self.where}: {key}: {message}")

    def string(self, doc: Mapping[str, Any], key: str, *, prefix: str = "", required: bool = False) -> str:
        full = prefix + key
        if key not in doc:
            if required:
                raise self.fail(full, "missing (required)")
            return ""
        value = doc[key]
        if not isinstance(value, str):
            raise self.fail(full, f"expected a string, found {type(value).__name__} {value!r}")
        if required and not value.strip():
            raise self.fail(full, "must not be empty")
        return value

    def unknown(self, doc: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
        extra = sorted(set(doc) - allowed)
        if extra:
            raise self.fail(
                prefix + extra[0],
                f"unknown key; expected one of {', '.join(sorted(allowed))} "
                f"(free metadata goes in [meta])",
            )

    def descriptor(self, doc: dict[str, Any], path: Path | None) -> ModelDescriptor:
        fmt = doc.get("format", FORMAT)
        if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
            raise self.fail("format", f"expected a positive integer, found {fmt!r}")
        if fmt > FORMAT:
            raise NewerFormatError(self.where, fmt, FORMAT)
        self.unknown(doc, _TOP_KEYS, "")
        network = self.string(doc, "network", required=True)
        if "/" in network or "\\" in network or network in (".", ".."):
            raise self.fail("network", f"expected a file name next to {FILE_NAME}, found {network!r}")
        prov = doc.get("provenance", {})
        if not isinstance(prov, dict):
            raise self.fail("provenance", "expected a table with source and description")
        self.unknown(prov, _PROVENANCE_KEYS, "provenance.")
        dims = self.dims(doc.get("dims", {}))
        meta = doc.get("meta", {})
        if not isinstance(meta, dict):
            raise self.fail("meta", f"expected a table, found {type(meta).__name__}")
        shadow = sorted(set(meta) & _RESERVED_META)
        if shadow:
            raise self.fail(f"meta.{shadow[0]}", "is a descriptor field; set it at the top level")
        framework = self.string(doc, "framework", required=True)
        model_license = self.string(doc, "model_license", required=True)
        inputs = self.nodes(doc, "inputs")
        outputs = self.nodes(doc, "outputs")
        # A symbolic dimension that `dims` does not bind is fine: it defaults to 1.
        return ModelDescriptor(
            network=network,
            framework=framework,
            model_license=model_license,
            inputs=inputs,
            outputs=outputs,
            summary=self.string(doc, "summary"),
            task=self.string(doc, "task"),
            data_license=self.string(doc, "data_license"),
            source=self.string(prov, "source", prefix="provenance."),
            provenance=self.string(prov, "description", prefix="provenance."),
            dims=MappingProxyType(dims),
            meta=MappingProxyType(meta),
            path=path,
        )

    def dims(self, raw: Any) -> dict[str, int]:
        if not isinstance(raw, dict):
            raise self.fail("dims", "expected a table of name = positive integer")
        out: dict[str, int] = {}
        for name, value in raw.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise self.fail(f"dims.{name}", f"expected a positive integer, found {value!r}")
            out[name] = value
        return out

    def nodes(self, doc: Mapping[str, Any], key: str) -> tuple[TensorSpec, ...]:
        raw = doc.get(key)
        if raw is None:
            raise self.fail(key, f"missing (required): declare each node as [[{key}]] name, shape, dtype")
        if not isinstance(raw, list) or not raw or not all(isinstance(n, dict) for n in raw):
            raise self.fail(key, f"expected a non-empty array of tables ([[{key}]])")
        seen: set[str] = set()
        out = []
        for i, node in enumerate(raw):
            prefix = f"{key}[{i}]."
            self.unknown(node, _NODE_KEYS, prefix)
            name = self.string(node, "name", prefix=prefix, required=True)
            if name in seen:
                raise self.fail(prefix + "name", f"duplicate node name {name!r}")
            seen.add(name)
            dtype = self.string(node, "dtype", prefix=prefix, required=True)
            if dtype not in DTYPES:
                raise self.fail(prefix + "dtype", f"unknown dtype {dtype!r}; expected one of {', '.join(sorted(DTYPES))}")
            shape = node.get("shape")
            if not isinstance(shape, list):
                raise self.fail(prefix + "shape", f"expected an array of ints and dimension names, found {shape!r}")
            dims: list[int | str] = []
            for j, d in enumerate(shape):
                if isinstance(d, bool) or not isinstance(d, int | str):
                    raise self.fail(f"{prefix}shape[{j}]", f"expected an int or a dimension name, found {d!r}")
                if isinstance(d, int) and d < 0:
                    raise self.fail(f"{prefix}shape[{j}]", f"expected a size >= 0, found {d}")
                if isinstance(d, str) and not _SYMBOL.fullmatch(d):
                    raise self.fail(f"{prefix}shape[{j}]", f"expected a dimension name like 'batch', found {d!r}")
                dims.append(d)
            out.append(TensorSpec(name, tuple(dims), dtype, self.string(node, "description", prefix=prefix)))
        return tuple(out)
