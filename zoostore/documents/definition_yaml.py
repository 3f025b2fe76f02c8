"""Autoware ModelZoo's `definition.yaml`, read into the same `ModelDescriptor` as `model.toml`.

    perception/lidar_obstacle_detection/point_pillars_rpn/onnx_fp32_kitti/
        definition.yaml
        model_files/rpn.onnx            (a Git LFS pointer until `git lfs pull`)

    version: 1                          # format of definition.yaml; newer ones are refused
    enable_testing: true
    preprocessing:                      # optional (centerpoint_backbone)
      module: ./preprocessing/preprocessing.py
      module_name: scatter
      input_nodes: [...]                # same node form as below
      output_nodes: [...]
    network:
      filename: ./model_files/rpn.onnx  # relative to the folder of definition.yaml
      framework: ONNX
      provenance: https://github.com/...
      training: Kitti 3D Object detection evaluation 2017 dataset
      model_license: Apache-2.0
      data_license: Creative Commons BY-NC-SA 3.0
    network_parameters:
      datatype: float32                 # older files and the template: one type for all nodes
      input_nodes:
        - name: input.1
          description:
          datatype: float32             # newer files (since modelzoo a49fcc0): per node
          shape: [1, 64, 496, 432]      # -1 for a size fixed at run time
      output_nodes:
        - name: 184                     # YAML 1.1 would read an int: kept as the string "184"

Field mapping: `network.provenance` -> `source`, `network.training` -> `training`; the rest
keep their names. Node names are read as the text written (the loader resolves no ints,
floats or booleans implicitly), so `184` stays "184", `0184` stays "0184" (YAML 1.1 would
read the octal 132) and `yes` stays "yes"; `version`, `enable_testing` and shape sizes are
converted here, with an error naming the file and key when they do not parse.

PyYAML is imported inside `parse`: `import zoostore` never loads it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zoostore.core.errors import DescriptorError, MissingDependencyError, NewerFormatError
from zoostore.documents.descriptor import FieldReader, ModelDescriptor, Preprocessing, TensorSpec, did_you_mean
from zoostore.documents.folder_files import DEFINITION_YAML

FILE_NAME = DEFINITION_YAML
#: The `version` Autoware's definition_template.yaml documents ("integer version number of
#: the definition.yaml format"); both the per-node and the older shared `datatype` are 1.
FORMAT = 1

_TOP_KEYS = frozenset({"version", "enable_testing", "preprocessing", "network", "network_parameters"})
_NETWORK_KEYS = frozenset({"filename", "framework", "provenance", "training", "model_license", "data_license"})
_PARAMETER_KEYS = frozenset({"datatype", "input_nodes", "output_nodes"})
_PREPROCESSING_KEYS = frozenset({"module", "module_name", "datatype", "input_nodes", "output_nodes"})
_NODE_KEYS = frozenset({"name", "description", "datatype", "shape"})
_INT = re.compile(r"[-+]?[0-9]+")
# YAML 1.1 booleans (https://yaml.org/type/bool.html), which PyYAML's SafeLoader also reads.
_TRUE = frozenset({"true", "yes", "on", "y"})
_FALSE = frozenset({"false", "no", "off", "n"})


def load(path: Path | str) -> ModelDescriptor:
    """Read a `definition.yaml` (or a directory holding one)."""
    p = Path(path)
    if p.is_dir():
        p = p / FILE_NAME
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DescriptorError.whole(p, "no such file") from None
    except UnicodeDecodeError as exc:
        raise DescriptorError.whole(p, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    return parse(text, path=p)


def parse(text: str, *, path: Path | None = None) -> ModelDescriptor:
    where = str(path) if path else FILE_NAME
    doc = _load_yaml(text, where)
    if not isinstance(doc, dict):
        found = "an empty file" if doc is None else "a list" if isinstance(doc, list) else f"a single value ({doc!r:.40})"
        raise DescriptorError.whole(where, "expected a mapping with version, network and network_parameters "
                                    f"(as in Autoware's definition_template.yaml), found {found}")
    return _YamlReader(where).descriptor(doc, path)


def _load_yaml(text: str, where: str) -> Any:
    try:
        import yaml
    except ImportError as exc:
        raise MissingDependencyError(
            f"reading {where} needs PyYAML, which is not installed ({exc}): pip install 'PyYAML>=6,<7'"
        ) from exc

    class StringLoader(yaml.SafeLoader):  # type: ignore[misc]
        """SafeLoader without implicit int, float and bool: node names stay as written."""

    StringLoader.yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers if tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    try:
        return yaml.load(text, Loader=StringLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DescriptorError.whole(where, f"not valid YAML{at}: {' '.join(str(problem).split())}") from exc


class _YamlReader(FieldReader):
    """definition.yaml (already loaded, every scalar a string or None) into a ModelDescriptor.
    Every problem is noted and reported at once (`finish`); only a newer `version` stops the
    reading, and a missing table's keys are not reported again one by one."""

    docs = "docs/autoware.md"

    def table(self, doc: Mapping[str, Any], key: str, allowed: frozenset[str], *, prefix: str = "") -> dict[str, Any]:
        value = doc.get(key)
        if not isinstance(value, dict):
            raise self.fail(prefix + key, f"missing or not a mapping: expected keys {', '.join(sorted(allowed))}")
        self.unknown(value, allowed, prefix + key + ".")
        return value

    def unknown(self, doc: Mapping[str, Any], allowed: frozenset[str], prefix: str) -> None:
        for extra in sorted(str(k) for k in set(doc) - allowed):
            self.note(prefix + extra, f"unknown key{did_you_mean(extra, allowed)}; expected one of {', '.join(sorted(allowed))}")

    def integer(self, value: Any, key: str) -> int:
        if value is None and key == "version":
            raise self.fail(key, f"missing (required): expected the format number, {FORMAT} (Autoware's template "
                            f"starts with 'version: {FORMAT}')")
        if not isinstance(value, str) or not _INT.fullmatch(value.strip()):
            raise self.fail(key, f"expected an integer, found {value!r}")
        return int(value)

    def boolean(self, value: Any, key: str) -> bool:
        if value is None:
            raise self.fail(key, "missing (required): expected true or false")
        text = value.strip().lower() if isinstance(value, str) else value
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise self.fail(key, f"expected true or false, found {value!r}")

    def descriptor(self, doc: dict[str, Any], path: Path | None) -> ModelDescriptor:
        self.unknown(doc, _TOP_KEYS, "")
        version = self.attempt(lambda: self.integer(doc.get("version"), "version"), FORMAT)
        if version > FORMAT:
            # Autoware's format, not zoostore's: "written by a newer zoostore" would mislead.
            raise NewerFormatError(
                self.where, version, FORMAT,
                message=f"{self.where}: 'version: {version}' is a newer definition.yaml format than the "
                        f"version {FORMAT} (Autoware's definition_template.yaml) this zoostore reads: upgrade "
                        f"zoostore (pip install -U zoostore), or write 'version: {FORMAT}' if the file follows "
                        f"that template")
        if version < 1:
            self.note("version", f"expected 1, found {version}")
        network = self.attempt(lambda: self.table(doc, "network", _NETWORK_KEYS), None)
        params = self.attempt(lambda: self.table(doc, "network_parameters", _PARAMETER_KEYS), None)
        net = network or {}

        def text(key: str, *, required: bool = False) -> str:
            if network is None:
                return ""  # the table's own problem is noted already
            return self.attempt(lambda: self.string(net, key, prefix="network.", required=required), "")

        def nodes(key: str) -> tuple[TensorSpec, ...]:
            if params is None:
                return ()
            return self.attempt(lambda: self.nodes(params, key, "network_parameters."), ())

        filename = text("filename", required=True)
        network_path = self.attempt(lambda: self.relpath(filename, "network.filename"), "") if filename else ""
        framework, model_license = text("framework", required=True), text("model_license", required=True)
        data_license, source, training = text("data_license"), text("provenance"), text("training")
        testing = self.attempt(lambda: self.boolean(doc.get("enable_testing"), "enable_testing"), True)
        inputs, outputs = nodes("input_nodes"), nodes("output_nodes")
        pre = None if doc.get("preprocessing") is None else self.attempt(lambda: self.preprocessing(doc), None)
        self.finish()
        return ModelDescriptor(network=network_path, framework=framework, model_license=model_license,
                               data_license=data_license, source=source, training=training, enable_testing=testing,
                               inputs=inputs, outputs=outputs, preprocessing=pre, path=path)

    def preprocessing(self, doc: Mapping[str, Any]) -> Preprocessing:
        raw = self.table(doc, "preprocessing", _PREPROCESSING_KEYS)
        module = self.attempt(lambda: self.relpath(
            self.string(raw, "module", prefix="preprocessing.", required=True), "preprocessing.module"), "")
        return Preprocessing(
            module=module,
            module_name=self.attempt(lambda: self.string(raw, "module_name", prefix="preprocessing.", required=True), ""),
            inputs=self.attempt(lambda: self.nodes(raw, "input_nodes", "preprocessing."), ()),
            outputs=self.attempt(lambda: self.nodes(raw, "output_nodes", "preprocessing."), ()),
        )

    def nodes(self, table: Mapping[str, Any], key: str, prefix: str) -> tuple[TensorSpec, ...]:
        full = prefix + key
        raw = table.get(key)
        if not isinstance(raw, list) or not raw or not all(isinstance(n, dict) for n in raw):
            raise self.fail(full, f"expected a non-empty list of nodes (name, description, datatype, shape), found {raw!r}")
        shared = table.get("datatype")
        out: list[TensorSpec] = []
        no_shape: tuple[int | str, ...] = ()
        for i, node in enumerate(raw):
            # Each key's problem is noted and the next read, as in model.toml (`_TomlReader.nodes`).
            at = f"{full}[{i}]."
            self.unknown(node, _NODE_KEYS, at)
            name = self.attempt(lambda: self.string(node, "name", prefix=at, required=True), "")  # noqa: B023
            dtype = self.attempt(lambda: self.datatype(node, shared, at, prefix), "")  # noqa: B023
            shape = self.attempt(lambda: self.sizes(node.get("shape"), at + "shape"), no_shape)  # noqa: B023
            out.append(TensorSpec(name, shape, dtype,
                                  self.attempt(lambda: self.string(node, "description", prefix=at), "")))  # noqa: B023
        return self.unique(out, full)

    def datatype(self, node: Mapping[str, Any], shared: Any, at: str, prefix: str) -> str:
        """A node's own datatype (modelzoo since a49fcc0), else the older shared one."""
        if node.get("datatype") is not None:
            return self.dtype(node["datatype"], at + "datatype")
        if shared is not None:
            return self.dtype(shared, prefix + "datatype")
        raise self.fail(at + "datatype", f"missing: give each node a datatype (or {prefix}datatype for all)")

    def sizes(self, raw: Any, key: str) -> tuple[int | str, ...]:
        if raw is None:
            raise self.fail(key, "missing (required): expected a list of sizes (-1 for a dynamic one)")
        if not isinstance(raw, list):
            raise self.fail(key, f"expected a list of sizes (-1 for a dynamic one), found {raw!r}")
        # Sizes arrive as text (no implicit ints): integers become ints, names stay symbolic.
        values = [int(d) if isinstance(d, str) and _INT.fullmatch(d.strip()) else d for d in raw]
        return self.shape(values, key)
