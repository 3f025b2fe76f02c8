"""model.toml: parsing, validation messages that name file and key, and to_meta."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import tomli_w

from zoostore.documents.descriptor import ModelDescriptor, TensorSpec
from zoostore.core.errors import FormatError, NewerFormatError

FULL = """\
format = 1
network = "model.onnx"
framework = "onnx"
summary = "Camera obstacle detection"
task = "object-detection"
model_license = "Apache-2.0"
data_license = "CC-BY-4.0"

[provenance]
source = "https://example.org/yolo"
description = "converted from darknet"

[dims]
batch = 2

[[inputs]]
name = "images"
shape = ["batch", 3, 416, 416]
dtype = "float32"
description = "RGB, 0..1"

[[outputs]]
name = "boxes"
shape = ["batch", 13, 13, 425]
dtype = "float32"

[[outputs]]
name = "count"
shape = []
dtype = "int64"

[meta]
dataset = "coco17"
"acc@1" = 0.71
classes = ["car", "person"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "model.toml"
    path.write_text(text, encoding="utf-8")
    return path


def replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


def test_load_full_descriptor(tmp_path: Path) -> None:
    d = ModelDescriptor.load(write(tmp_path, FULL))
    assert d.network == "model.onnx" and d.framework == "onnx"
    assert d.summary == "Camera obstacle detection" and d.task == "object-detection"
    assert (d.model_license, d.data_license) == ("Apache-2.0", "CC-BY-4.0")
    assert (d.source, d.provenance) == ("https://example.org/yolo", "converted from darknet")
    assert d.inputs == (TensorSpec("images", ("batch", 3, 416, 416), "float32", "RGB, 0..1"),)
    assert [o.name for o in d.outputs] == ["boxes", "count"]
    assert d.outputs[1].shape == ()
    assert dict(d.dims) == {"batch": 2}
    assert d.meta["acc@1"] == 0.71
    assert d.path == tmp_path / "model.toml"
    assert d.network_path == tmp_path / "model.onnx"
    assert d.input("images") is d.inputs[0] and d.input("nope") is None
    assert d.output("count") is d.outputs[1]


def test_load_accepts_the_directory(tmp_path: Path) -> None:
    write(tmp_path, FULL)
    assert ModelDescriptor.load(tmp_path).network == "model.onnx"


def test_descriptor_is_frozen(tmp_path: Path) -> None:
    d = ModelDescriptor.load(write(tmp_path, FULL))
    with pytest.raises(AttributeError):
        d.network = "other.onnx"  # type: ignore[misc]
    with pytest.raises(TypeError):
        d.dims["batch"] = 3  # type: ignore[index]


def test_concrete_shape_binds_dims() -> None:
    spec = TensorSpec("x", ("batch", 3, "seq"), "float32")
    assert spec.concrete_shape({"batch": 4, "seq": 7}) == (4, 3, 7)
    assert spec.concrete_shape({}) == (1, 3, 1)


def test_to_meta_is_plain_toml(tmp_path: Path) -> None:
    meta = ModelDescriptor.load(write(tmp_path, FULL)).to_meta()
    assert meta["framework"] == "onnx" and meta["task"] == "object-detection"
    assert meta["model_license"] == "Apache-2.0" and meta["data_license"] == "CC-BY-4.0"
    assert meta["provenance"] == {"source": "https://example.org/yolo", "description": "converted from darknet"}
    assert meta["inputs"] == [{"name": "images", "shape": ["batch", 3, 416, 416], "dtype": "float32",
                               "description": "RGB, 0..1"}]
    assert meta["outputs"][1] == {"name": "count", "shape": [], "dtype": "int64"}
    assert meta["dims"] == {"batch": 2}
    assert meta["dataset"] == "coco17" and meta["classes"] == ["car", "person"]
    # What publish does with it: serialise into the manifest and read it back unchanged.
    assert tomllib.loads(tomli_w.dumps({"meta": meta}))["meta"] == meta


def test_to_meta_leaves_out_empty_fields(tmp_path: Path) -> None:
    minimal = """\
network = "m.onnx"
framework = "onnx"
model_license = "MIT"
[[inputs]]
name = "x"
shape = [1]
dtype = "float32"
[[outputs]]
name = "y"
shape = [1]
dtype = "float32"
"""
    meta = ModelDescriptor.load(write(tmp_path, minimal)).to_meta()
    assert set(meta) == {"framework", "network", "model_license", "inputs", "outputs"}


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ('network = "model.onnx"\n', "", "network", "missing"),
        ('model_license = "Apache-2.0"\n', "", "model_license", "missing"),
        ('framework = "onnx"', "framework = 3", "framework", "expected a string"),
        ('network = "model.onnx"', 'network = "../model.onnx"', "network", "file name"),
        ('dtype = "float32"\ndescription', 'dtype = "float"\ndescription', "inputs[0].dtype", "unknown dtype"),
        ('shape = ["batch", 3, 416, 416]', 'shape = ["batch", true, 416, 416]', "inputs[0].shape[1]", "int or a dimension name"),
        ('shape = ["batch", 3, 416, 416]', 'shape = ["batch", -3, 416, 416]', "inputs[0].shape[1]", ">= 0"),
        ('shape = ["batch", 3, 416, 416]', 'shape = ["batch", 3.5, 416, 416]', "inputs[0].shape[1]", "int or a dimension name"),
        ('shape = ["batch", 3, 416, 416]', 'shape = ["two words", 3, 416, 416]', "inputs[0].shape[0]", "dimension name"),
        ('shape = ["batch", 3, 416, 416]', 'shape = "1x3"', "inputs[0].shape", "array"),
        ('name = "count"', 'name = "boxes"', "outputs[1].name", "duplicate"),
        ('summary = "Camera obstacle detection"', 'sumary = "typo"', "sumary", "unknown key"),
        ('description = "RGB, 0..1"', 'layout = "NCHW"', "inputs[0].layout", "unknown key"),
        ("batch = 2", "batch = 0", "dims.batch", "positive integer"),
        ('dataset = "coco17"', 'task = "x"', "meta.task", "descriptor field"),
        ("format = 1", 'format = "1"', "format", "positive integer"),
        ('source = "https://example.org/yolo"', 'url = "x"', "provenance.url", "unknown key"),
    ],
)
def test_validation_names_file_and_key(tmp_path: Path, old: str, new: str, key: str, words: str) -> None:
    path = write(tmp_path, replace(FULL, old, new))
    with pytest.raises(FormatError) as info:
        ModelDescriptor.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert words in message


def test_missing_nodes(tmp_path: Path) -> None:
    text = FULL.split("[[inputs]]")[0]
    with pytest.raises(FormatError, match=r"inputs: missing \(required\)"):
        ModelDescriptor.load(write(tmp_path, text))


def test_newer_format_says_upgrade(tmp_path: Path) -> None:
    with pytest.raises(NewerFormatError, match="upgrade zoostore"):
        ModelDescriptor.load(write(tmp_path, replace(FULL, "format = 1", "format = 7")))


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "network = \n")
    with pytest.raises(FormatError, match="not valid TOML"):
        ModelDescriptor.load(path)
    with pytest.raises(FormatError, match="no such file"):
        ModelDescriptor.load(tmp_path / "elsewhere" / "model.toml")


def test_for_network_only_applies_to_the_named_file(tmp_path: Path) -> None:
    write(tmp_path, FULL)
    assert ModelDescriptor.for_network(tmp_path / "model.onnx") is not None
    assert ModelDescriptor.for_network(tmp_path / "other.onnx") is None
    assert ModelDescriptor.for_network(tmp_path / "sub" / "model.onnx") is None
