"""Model descriptors: model.toml and Autoware's definition.yaml (the real files in
tests/data/autoware), validation messages that name file and key, to_meta, model folders and
Git LFS pointers."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w

from zoostore.core.errors import FormatError, NewerFormatError, UsageError
from zoostore.documents import definition_yaml
from zoostore.documents.descriptor import DYNAMIC, ModelDescriptor, Preprocessing, TensorSpec, bind_dim
from zoostore.documents.model_folder import (
    LfsPointerError,
    descriptor_for_network,
    find_descriptor,
    is_lfs_pointer,
    load_descriptor,
    network_of,
    refuse_lfs_pointer,
)

AUTOWARE = Path(__file__).resolve().parent / "data" / "autoware"

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


def test_descriptor_for_network_only_applies_to_the_named_file(tmp_path: Path) -> None:
    write(tmp_path, FULL)
    assert descriptor_for_network(tmp_path / "model.onnx") is not None
    assert descriptor_for_network(tmp_path / "other.onnx") is None
    assert descriptor_for_network(tmp_path / "sub" / "model.onnx") is None


# --- -1 and the new model.toml fields --------------------------------------------------------------


def test_dynamic_dims_bind_to_the_default() -> None:
    spec = TensorSpec("x", (DYNAMIC, 416, "seq", 0), "float32")
    assert spec.concrete_shape({"seq": 5}) == (1, 416, 5, 0)
    assert spec.concrete_shape({}, default=2) == (2, 416, 2, 0)
    assert [bind_dim(d, {"seq": 5}) for d in spec.shape] == [None, 416, 5, 0]


def test_model_toml_takes_what_definition_yaml_says(tmp_path: Path) -> None:
    text = replace(FULL, 'network = "model.onnx"', 'network = "./model_files/model.onnx"\ntraining = "coco"\nenable_testing = false')
    text = replace(text, 'shape = ["batch", 3, 416, 416]', "shape = [-1, 3, 416, 416]")
    text = replace(text, "[meta]", """[preprocessing]
module = "preprocessing/preprocessing.py"
module_name = "scatter"
[[preprocessing.inputs]]
name = "coords"
shape = [40000, 3]
dtype = "int32"
[[preprocessing.outputs]]
name = "images"
shape = [1, 3, 416, 416]
dtype = "float32"

[meta]""")
    d = ModelDescriptor.load(write(tmp_path, text))
    assert d.network == "model_files/model.onnx"
    assert d.network_path == tmp_path / "model_files" / "model.onnx"
    assert d.inputs[0].shape == (-1, 3, 416, 416)
    assert (d.training, d.enable_testing) == ("coco", False)
    assert d.preprocessing == Preprocessing(
        "preprocessing/preprocessing.py", "scatter",
        (TensorSpec("coords", (40000, 3), "int32"),), (TensorSpec("images", (1, 3, 416, 416), "float32"),))
    meta = d.to_meta()
    assert meta["training"] == "coco" and meta["enable_testing"] is False
    assert meta["preprocessing"]["module_name"] == "scatter"
    assert tomllib.loads(tomli_w.dumps({"meta": meta}))["meta"] == meta


# --- definition.yaml: the real Autoware files ------------------------------------------------------

F32 = "float32"
#: What each real definition.yaml declares (tests/data/autoware, modelzoo c5bfb71): network,
#: framework, inputs and outputs as (name, shape); every node float32.
REAL: dict[str, tuple[str, str, list[tuple[str, tuple[int, ...]]], list[tuple[str, tuple[int, ...]]]]] = {
    "camera_obstacle_detection/yolo_v2_tiny/tensorflow_fp32_coco": (
        "model_files/yolov2-tiny.pb", "Tensorflow",
        [("input", (-1, 416, 416, 3))], [("output", (1, 13, 13, 425))]),
    "camera_obstacle_detection/yolo_v3/tensorflow_fp32_coco": (
        "model_files/yolov3-416.onnx", "ONNX",
        [("input", (1, 416, 416, 3))],
        [("conv2d_58", (1, 13, 13, 255)), ("conv2d_66", (1, 26, 26, 255)), ("conv2d_74", (1, 52, 52, 255))]),
    "lidar_obstacle_detection/baidu_cnn/onnx_bcnn": (
        "model_files/bcnn.onnx", "ONNX", [("data", (1, 4, 864, 864))], [("deconv0", (1, 12, 864, 864))]),
    "lidar_obstacle_detection/centerpoint_backbone/onnx_centerpoint_backbone": (
        "model_files/pts_backbone_neck_head_centerpoint.onnx", "ONNX",
        [("spatial_features", (1, 32, 560, 560))],
        [(n, (1, c, 560, 560)) for n, c in (("heatmap", 5), ("reg", 2), ("height", 1), ("dim", 3), ("rot", 2), ("vel", 2))]),
    "lidar_obstacle_detection/centerpoint_encoder/onnx_centerpoint_encoder": (
        "model_files/pts_voxel_encoder_centerpoint.onnx", "ONNX",
        [("input_features", (40000, 32, 9))], [("pillar_features", (40000, 1, 32))]),
    "lidar_obstacle_detection/point_pillars_pfe/onnx_fp32_kitti": (
        "model_files/pfe.onnx", "ONNX",
        [(n, (1, 1, 12000, 100)) for n in ("pillar_x", "pillar_y", "pillar_z", "pillar_i")]
        + [("num_points_per_pillar", (1, 12000))]
        + [(n, (1, 1, 12000, 100)) for n in ("x_sub_shaped", "y_sub_shaped", "mask")],
        [("174", (1, 64, 12000, 1))]),
    "lidar_obstacle_detection/point_pillars_rpn/onnx_fp32_kitti": (
        "model_files/rpn.onnx", "ONNX",
        [("input.1", (1, 64, 496, 432))],
        [("184", (1, 248, 216, 14)), ("185", (1, 248, 216, 2)), ("187", (1, 248, 216, 4))]),
}
REAL_FILES = sorted(AUTOWARE.glob("**/definition.yaml"))


def test_every_real_file_is_covered() -> None:
    assert len(REAL_FILES) == 7
    assert {p.parent.relative_to(AUTOWARE / "perception").as_posix() for p in REAL_FILES} == set(REAL)


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.parent.parent.name)
def test_real_definition_yaml(path: Path) -> None:
    network, framework, inputs, outputs = REAL[path.parent.relative_to(AUTOWARE / "perception").as_posix()]
    d = load_descriptor(path.parent)
    assert d == definition_yaml.load(path) and d.path == path
    assert (d.network, d.framework, d.model_license) == (network, framework, "Apache-2.0")
    assert d.network_path == path.parent / network
    assert d.enable_testing is True and d.data_license and d.source and d.training
    assert [(n.name, n.shape) for n in d.inputs] == inputs
    assert [(n.name, n.shape) for n in d.outputs] == outputs
    assert {n.dtype for n in d.inputs + d.outputs} == {F32}
    assert all(isinstance(n.name, str) for n in d.inputs + d.outputs)
    meta = d.to_meta()
    assert tomllib.loads(tomli_w.dumps({"meta": meta}))["meta"] == meta
    assert meta["provenance"] == {"source": d.source}


def test_real_files_details() -> None:
    rpn = load_descriptor(AUTOWARE / "perception/lidar_obstacle_detection/point_pillars_rpn/onnx_fp32_kitti")
    assert [o.name for o in rpn.outputs] == ["184", "185", "187"]  # YAML ints, kept as text
    assert rpn.source == "https://github.com/k0suke-murakami/kitti_pretrained_point_pillars.git"
    assert rpn.training == "Kitti 3D Object detection evaluation 2017 dataset"
    assert rpn.data_license == "Creative Commons BY-NC-SA 3.0" and rpn.preprocessing is None
    assert rpn.outputs[0].description == ""  # an empty `description:` is null in YAML
    yolo2 = load_descriptor(AUTOWARE / "perception/camera_obstacle_detection/yolo_v2_tiny/tensorflow_fp32_coco")
    assert yolo2.inputs[0].shape[0] == DYNAMIC and yolo2.inputs[0].description == "Camera Image RGB"
    assert yolo2.source == "./README.md"
    yolo3 = AUTOWARE / "perception/camera_obstacle_detection/yolo_v3/tensorflow_fp32_coco/definition.yaml"
    assert not yolo3.read_bytes().endswith(b"\n")  # no trailing newline, as in the repository
    backbone = load_descriptor(AUTOWARE / "perception/lidar_obstacle_detection/centerpoint_backbone/onnx_centerpoint_backbone")
    pre = backbone.preprocessing
    assert pre is not None
    assert (pre.module, pre.module_name) == ("preprocessing/preprocessing.py", "scatter")
    assert [(n.name, n.shape, n.dtype) for n in pre.inputs] == [
        ("pillar_features", (40000, 1, 32), "float32"), ("coords", (40000, 3), "int32")]
    assert [(n.name, n.shape) for n in pre.outputs] == [("spatial_features", (1, 32, 560, 560))]
    assert backbone.to_meta()["preprocessing"]["inputs"][1] == {"name": "coords", "shape": [40000, 3], "dtype": "int32"}


def test_legacy_file_with_one_shared_datatype() -> None:
    d = definition_yaml.load(AUTOWARE / "legacy" / "onnx_bcnn_at_0cf1a87_definition.yaml")
    assert d.enable_testing is False and d.to_meta()["enable_testing"] is False
    assert [(n.name, n.shape, n.dtype) for n in d.inputs] == [("input.1", (1, 6, 672, 672), "float32")]
    assert [(n.name, n.shape, n.dtype) for n in d.outputs] == [("261", (1, 12, 672, 672), "float32")]


def test_template_is_refused_cleanly() -> None:
    # Every blank of the template in one message: a maintainer fills them in one pass.
    with pytest.raises(FormatError) as info:
        definition_yaml.load(AUTOWARE / "definition_template.yaml")
    message = str(info.value)
    assert "definition_template.yaml: 10 problems; fix them all" in message
    for line in ["network.filename: missing (required)", "network.framework: missing (required)",
                 "network.model_license: missing (required)", "enable_testing: missing (required)",
                 "network_parameters.input_nodes[0].name: missing (required)",
                 "network_parameters.input_nodes[0].datatype: missing",
                 "network_parameters.output_nodes[0].name: missing (required)",
                 "network_parameters.output_nodes[0].datatype: missing",
                 "network_parameters.output_nodes[1].name: missing (required)",
                 "network_parameters.output_nodes[1].datatype: missing"]:
        assert f"\n  {line}" in message, line



def test_every_node_problem_of_a_definition_yaml_at_once(tmp_path: Path) -> None:
    """Within a node list only the first problem was reported (one node per run)."""
    (tmp_path / "definition.yaml").write_text(
        "version: 1\nenable_testing: true\n"
        "network: {filename: m.onnx, framework: ONNX, model_license: MIT}\n"
        "network_parameters:\n"
        "  input_nodes:\n"
        "    - {name: a, datatype: float33, shape: [1, x y]}\n"
        "    - {name: , datatype: float32, shape: [1]}\n"
        "    - {name: a, datatype: float32, shape: 3}\n"
        "  output_nodes:\n"
        "    - {name: o, shape: [1], colour: red}\n"
        "preprocessing: {module: /abs.py, input_nodes: []}\n", encoding="utf-8")
    with pytest.raises(FormatError) as info:
        load_descriptor(tmp_path)
    lines = [line.strip() for line in str(info.value).splitlines()[1:]]
    assert str(info.value).startswith(f"{tmp_path / 'definition.yaml'}: 11 problems; fix them all, then run again "
                                      "(the keys are described in docs/autoware.md):"), str(info.value)
    at = "network_parameters.input_nodes"
    assert [line.split(":")[0] for line in lines] == [
        f"{at}[0].datatype", f"{at}[0].shape[1]", f"{at}[1].name", f"{at}[2].shape", f"{at}[2].name",
        "network_parameters.output_nodes[0].colour", "network_parameters.output_nodes[0].datatype",
        "preprocessing.module", "preprocessing.module_name", "preprocessing.input_nodes", "preprocessing.output_nodes"], lines

RPN = AUTOWARE / "perception/lidar_obstacle_detection/point_pillars_rpn/onnx_fp32_kitti/definition.yaml"


def yaml_variant(tmp_path: Path, old: str, new: str, source: Path = RPN) -> Path:
    path = tmp_path / "definition.yaml"
    path.write_text(replace(source.read_text(encoding="utf-8"), old, new), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "key", "words"),
    [
        ("version: 1", "version: one", "version", "expected an integer"),
        ("enable_testing: true", "enable_testing: maybe", "enable_testing", "true or false"),
        ("enable_testing: true", "enable_test: true", "enable_test", "unknown key"),
        ("  filename: ./model_files/rpn.onnx", "  filename: ../rpn.onnx", "network.filename", "relative POSIX path"),
        ("  filename: ./model_files/rpn.onnx", "  filename: /abs/rpn.onnx", "network.filename", "relative POSIX path"),
        ("  framework: ONNX\n", "", "network.framework", "missing"),
        ("  model_license: Apache-2.0", "  model_license: [a, b]", "network.model_license", "expected a string"),
        ("  training: Kitti", "  trainng: Kitti", "network.trainng", "unknown key"),
        ("    - name: input.1", "    - name:", "network_parameters.input_nodes[0].name", "missing"),
        ("    - name: 185", "    - name: 184", "network_parameters.output_nodes[1].name", "duplicate"),
        ("      datatype: float32\n      shape:\n        - 1\n        - 64", "      datatype: float\n      shape:\n        - 1\n        - 64",
         "network_parameters.input_nodes[0].datatype", "unknown dtype"),
        ("      datatype: float32\n      shape:\n        - 1\n        - 64", "      shape:\n        - 1\n        - 64",
         "network_parameters.input_nodes[0].datatype", "missing"),
        ("        - 496", "        - -2", "network_parameters.input_nodes[0].shape[2]", "-1 for a dynamic size"),
        ("        - 496", "        - 4.5", "network_parameters.input_nodes[0].shape[2]", "dimension name"),
        ("        - 496", "        -", "network_parameters.input_nodes[0].shape[2]", "found None"),
        ("      shape:\n        - 1\n        - 64", "      shape: 1x64\n      old:\n        - 64", "network_parameters.input_nodes[0]", ""),
    ],
)
def test_definition_yaml_validation_names_file_and_key(tmp_path: Path, old: str, new: str, key: str, words: str) -> None:
    path = yaml_variant(tmp_path, old, new)
    with pytest.raises(FormatError) as info:
        load_descriptor(path)
    message = str(info.value)
    # One problem: "<file>: <key>: ...". Several (every problem is reported at once):
    # "<file>: N problems; ..." and one indented "<key>: ..." line each.
    assert message.startswith(f"{path}: "), message
    head, *rest = message.removeprefix(f"{path}: ").splitlines()
    lines = [line.strip() for line in rest] if " problems; " in head else [head]
    assert any(line.startswith(key) and words in line for line in lines), message


def test_definition_yaml_parse_errors_and_versions(tmp_path: Path) -> None:
    # Autoware's format, not zoostore's: not "written by a newer zoostore".
    with pytest.raises(NewerFormatError, match=r"definition.yaml: 'version: 2' is a newer definition.yaml format "
                                               r"than the version 1 .*upgrade zoostore.*or write 'version: 1'") as newer:
        load_descriptor(yaml_variant(tmp_path, "version: 1", "version: 2"))
    assert "newer zoostore" not in str(newer.value) and newer.value.found == 2
    for text, found in (("", "an empty file"), ("- a\n- b\n", "a list"), ("rpn.onnx\n", "a single value ('rpn.onnx')")):
        (tmp_path / "definition.yaml").write_text(text)
        with pytest.raises(FormatError, match=rf"expected a mapping with version, network and network_parameters "
                                              rf"\(as in Autoware's definition_template.yaml\), found {re.escape(found)}$"):
            load_descriptor(tmp_path / "definition.yaml")
    with pytest.raises(FormatError, match=r"definition.yaml: not valid YAML \(line 5, column 11\): expected ','"):
        load_descriptor(yaml_variant(tmp_path, "network:\n", "network:\n  - [unclosed\n"))
    (tmp_path / "definition.yaml").write_text("version: 1\nenable_testing: true\nnetwork: rpn.onnx\n")
    with pytest.raises(FormatError, match=r"(?s)definition.yaml: 2 problems.*\n  network: missing or not a mapping.*"
                                          r"\n  network_parameters: missing or not a mapping"):
        load_descriptor(tmp_path)
    (tmp_path / "definition.yaml").write_text("- a list\n- not a mapping\n")
    with pytest.raises(FormatError, match="expected a mapping"):
        load_descriptor(tmp_path)
    (tmp_path / "definition.yaml").write_bytes(b"version: \xff\xfe\n")
    with pytest.raises(FormatError, match="not UTF-8"):
        load_descriptor(tmp_path)


def test_node_names_stay_as_written(tmp_path: Path) -> None:
    path = yaml_variant(tmp_path, "    - name: 185", '    - name: "0185"')
    path.write_text(replace(path.read_text(), "    - name: 187", "    - name: yes"))
    d = load_descriptor(path)
    # YAML 1.1 reads 0185 as 0185 (not octal: 8 is no octal digit) but yes as true: neither here.
    assert [o.name for o in d.outputs] == ["184", "0185", "yes"]
    path.write_text(replace(path.read_text(), '    - name: "0185"', "    - name: 0x1F"))
    assert [o.name for o in load_descriptor(path).outputs] == ["184", "0x1F", "yes"]


# --- model folders and Git LFS pointers ------------------------------------------------------------


def autoware_folder(tmp_path: Path, source: Path = RPN) -> Path:
    folder = tmp_path / source.parent.name
    (folder / "model_files").mkdir(parents=True)
    shutil.copy(source, folder / "definition.yaml")
    return folder


def test_model_folder_lookup(tmp_path: Path) -> None:
    folder = autoware_folder(tmp_path)
    network = folder / "model_files" / "rpn.onnx"
    assert find_descriptor(folder) == folder / "definition.yaml"
    assert descriptor_for_network(network) == load_descriptor(folder)
    assert descriptor_for_network(folder / "model_files" / "other.onnx") is None
    with pytest.raises(UsageError, match=r"network.filename: 'model_files/rpn.onnx' does not exist"):
        network_of(folder)
    network.write_bytes(b"onnx bytes")
    found = network_of(folder)
    assert found is not None and found[0] == network and found[1].outputs[0].name == "184"
    assert network_of(tmp_path) is None
    with pytest.raises(FormatError, match=r"no model.toml or definition.yaml"):
        load_descriptor(tmp_path)
    write(folder, FULL)
    with pytest.raises(FormatError, match="holds both model.toml and definition.yaml"):
        load_descriptor(folder)
    assert load_descriptor(folder / "model.toml").network == "model.onnx"


def test_lfs_pointer_detection(tmp_path: Path) -> None:
    pointer = AUTOWARE / "lfs-pointer-example.pb"
    assert is_lfs_pointer(pointer)
    assert not is_lfs_pointer(RPN) and not is_lfs_pointer(tmp_path / "missing") and not is_lfs_pointer(tmp_path)
    folder = autoware_folder(tmp_path)
    shutil.copy(pointer, folder / "model_files" / "rpn.onnx")
    with pytest.raises(LfsPointerError) as info:
        network_of(folder)
    message = str(info.value)
    assert "is a Git LFS pointer for sha256:8e9d39f908ae752c" in message and "44958650 bytes" in message
    assert "git lfs pull" in message and info.value.path == folder / "model_files" / "rpn.onnx"
    with pytest.raises(LfsPointerError):
        refuse_lfs_pointer(folder / "model_files" / "rpn.onnx")


def test_yaml_is_imported_only_when_a_definition_is_read() -> None:
    code = (
        "import sys, zoostore, zoostore.documents.model_folder, zoostore.integrations.onnx_check, "
        "zoostore.integrations.tvm_build, zoostore.cli.check, zoostore.cli.build; "
        "assert 'yaml' not in sys.modules, 'yaml imported'; "
        f"zoostore.documents.model_folder.load_descriptor({str(RPN)!r}); "
        "assert 'yaml' in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_missing_pyyaml_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    from zoostore.core.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'PyYAML>=6,<7'"):
        load_descriptor(RPN)




def test_every_problem_of_a_model_toml_is_reported_at_once(tmp_path: Path) -> None:
    """A trial user fixed an incomplete model.toml one key per run; one error now names each
    missing or invalid key with what it expects."""
    path = write(tmp_path, 'summary = 3\nsumary = "typo"\n[[inputs]]\nname = "x"\nshape = [1, -3]\ndtype = "float"\n'
                           '[[outputs]]\nname = "y"\nshape = [1]\ndtype = "float32"\n[[outputs]]\nname = "y"\nshape = [1]\n'
                           'dtype = "float32"\n')
    with pytest.raises(FormatError) as info:
        ModelDescriptor.load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: 8 problems; fix them all, then run again"), message
    lines = message.splitlines()[1:]
    assert lines == [
        "  sumary: unknown key (did you mean 'summary'?); expected one of data_license, dims, enable_testing, format, framework, inputs, meta, "
        "model_license, network, outputs, preprocessing, provenance, summary, task, training (free metadata goes in [meta])",
        '  network: missing (required): expected the network file, a path inside the model folder such as "model.onnx"',
        '  framework: missing (required): expected the network\'s framework, such as "onnx"',
        '  model_license: missing (required): expected the model\'s licence, an SPDX id such as "Apache-2.0"',
        "  summary: expected a string, found int 3",
        "  inputs[0].dtype: unknown dtype 'float'; expected one of bfloat16, bool, float16, float32, float64, int16, "
        "int32, int64, int8, uint16, uint32, uint64, uint8",
        "  inputs[0].shape[1]: expected a size >= 0, or -1 for a dynamic size, found -3",
        "  outputs[1].name: duplicate node name 'y'",
    ], message


def test_missing_nodes_and_tables_are_all_reported(tmp_path: Path) -> None:
    path = write(tmp_path, 'network = "m.onnx"\nframework = "onnx"\nmodel_license = "MIT"\nprovenance = 1\n[dims]\nb = 0\n')
    with pytest.raises(FormatError) as info:
        ModelDescriptor.load(path)
    keys = [line.split(":")[0].strip() for line in str(info.value).splitlines()[1:]]
    assert keys == ["provenance", "dims.b", "inputs", "outputs"]


def test_a_node_without_shape_and_a_blank_network_key_say_missing_and_what_to_give(tmp_path: Path) -> None:
    """A node without `shape` said 'expected an array ..., found None'; definition.yaml's blank
    network keys said only 'missing (required)' where model.toml's say what they hold."""
    path = tmp_path / "model.toml"
    path.write_text('network = "m.onnx"\nframework = "onnx"\nmodel_license = "MIT"\n'
                    '[[inputs]]\nname = "x"\nshape = [1]\ndtype = "float32"\n'
                    '[[outputs]]\nname = "y"\ndtype = "float32"\n', encoding="utf-8")
    with pytest.raises(FormatError, match=r"outputs\[0\]\.shape: missing \(required\): expected an array of "):
        load_descriptor(path)
    (tmp_path / "yaml").mkdir()
    (tmp_path / "yaml" / "definition.yaml").write_text(
        "version: 1\nenable_testing: true\nnetwork: {filename: m.onnx, framework: , model_license: }\n"
        "network_parameters:\n  input_nodes: [{name: x, datatype: float32}]\n"
        "  output_nodes: [{name: y, datatype: float32, shape: [1]}]\n", encoding="utf-8")
    with pytest.raises(FormatError) as info:
        load_descriptor(tmp_path / "yaml")
    lines = [line.strip() for line in str(info.value).splitlines()[1:]]
    assert lines == [
        "network.framework: missing (required): expected the network's framework, such as \"onnx\"",
        "network.model_license: missing (required): expected the model's licence, an SPDX id such as \"Apache-2.0\"",
        "network_parameters.input_nodes[0].shape: missing (required): expected a list of sizes (-1 for a dynamic one)",
    ], lines


def test_a_definition_yaml_without_version_says_it_is_missing(tmp_path: Path) -> None:
    """It said 'version: expected an integer, found None'."""
    path = yaml_variant(tmp_path, "version: 1\n", "")
    with pytest.raises(FormatError, match=r"definition.yaml: version: missing \(required\): expected the format "
                                          r"number, 1 \(Autoware's template starts with 'version: 1'\)$"):
        load_descriptor(path)


def test_a_misspelt_definition_yaml_key_suggests_the_closest_one(tmp_path: Path) -> None:
    """model.toml's unknown keys suggest the closest known one (sumary -> summary); the doc's
    own example typo of a definition.yaml, trainng:, did not."""
    with pytest.raises(FormatError, match=r"network\.trainng: unknown key \(did you mean 'training'\?\); expected one of "):
        load_descriptor(yaml_variant(tmp_path, "  training: Kitti", "  trainng: Kitti"))


def test_an_invalid_descriptor_is_bad_input_with_every_problem_as_data(tmp_path: Path) -> None:
    """An invalid model.toml or definition.yaml is the maintainer's input to fix (exit 2 like a
    usage error), not a store document from a newer zoostore (exit 5); each problem is data."""
    from zoostore.cli import exit_code_for
    from zoostore.core.errors import DescriptorError

    path = write(tmp_path, replace(replace(FULL, 'summary = "Camera obstacle detection"', 'sumary = "typo"'),
                                   "batch = 2", "batch = 0"))
    with pytest.raises(DescriptorError) as info:
        ModelDescriptor.load(path)
    assert isinstance(info.value, UsageError) and exit_code_for(info.value) == 2
    assert [(p["file"], p["key"]) for p in info.value.problems] == [(str(path), "sumary"), (str(path), "dims.batch")]
    assert all(p["message"] in str(info.value) for p in info.value.problems)
    # A whole-file problem (not TOML, no such file, not YAML) has an empty key.
    for sub in ("t", "y", "n"):
        (tmp_path / sub).mkdir()
    for bad in (lambda: ModelDescriptor.load(write(tmp_path / "t", "network = \n")),
                lambda: ModelDescriptor.load(tmp_path / "elsewhere" / "model.toml"),
                lambda: load_descriptor(yaml_variant(tmp_path / "y", "network:\n", "network:\n  - [unclosed\n"))):
        with pytest.raises(DescriptorError) as info:
            bad()
        [problem] = info.value.problems
        assert problem["key"] == "" and str(info.value) == f"{problem['file']}: {problem['message']}"
    # A store document from a newer zoostore keeps exit 5.
    with pytest.raises(NewerFormatError) as newer:
        ModelDescriptor.load(write(tmp_path / "n", replace(FULL, "format = 1", "format = 7")))
    assert not isinstance(newer.value, DescriptorError) and exit_code_for(newer.value) == 5
