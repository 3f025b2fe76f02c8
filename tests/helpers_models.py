"""Tiny ONNX models built with onnx.helper, deterministic to the byte, for tests and the demo.

Weights come from a numpy RNG seeded by (model, version), so the same call always writes the
same bytes, and version 2 differs from version 1 in a few tensors only (the last layer), the
way a retrained head differs from its predecessor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Opset and IR version the generated models declare: supported by onnx 1.14+ and ORT 1.15+.
OPSET = 17
IR_VERSION = 8


def _rng(name: str, version: int, part: str) -> np.random.Generator:
    # A stable seed per (model, tensor group): v2 redraws only the groups that change.
    seed = sum(ord(c) * 31**i for i, c in enumerate(f"{name}/{part}")) % 2**32
    return np.random.default_rng([seed, version])


def _finish(graph: onnx.GraphProto, *, opset: int = OPSET, ir_version: int = IR_VERSION) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="zoostore-demo")
    model.ir_version = ir_version
    return model


def mlp(version: int = 1, *, features: int = 16, hidden: int = 32, classes: int = 4,
        opset: int = OPSET, ir_version: int = IR_VERSION) -> onnx.ModelProto:
    """x[batch, features] -> Gemm -> Relu -> Gemm -> Softmax -> probs[batch, classes]."""
    body = _rng("mlp", 1, "body")  # the hidden layer is shared by all versions
    head = _rng("mlp", version, "head")
    inits = [
        numpy_helper.from_array((body.standard_normal((features, hidden)) * 0.3).astype(np.float32), "w1"),
        numpy_helper.from_array((body.standard_normal(hidden) * 0.1).astype(np.float32), "b1"),
        numpy_helper.from_array((head.standard_normal((hidden, classes)) * 0.3).astype(np.float32), "w2"),
        numpy_helper.from_array((head.standard_normal(classes) * 0.1).astype(np.float32), "b2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["a"]),
        helper.make_node("Gemm", ["a", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, f"mlp_v{version}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    return _finish(graph, opset=opset, ir_version=ir_version)


def legacy(model: onnx.ModelProto, *, opset: int) -> onnx.ModelProto:
    """`model` as an IR version 3 file of `opset` declares it: every weight also listed as a
    graph input, as onnx < 1.2 exporters wrote them."""
    out = _copy(model)
    out.ir_version = 3
    del out.opset_import[:]
    out.opset_import.append(helper.make_opsetid("", opset))
    for init in out.graph.initializer:
        out.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return out


def convnet(version: int = 1, *, channels: int = 4, size: int = 8, classes: int = 3) -> onnx.ModelProto:
    """image[batch, 1, size, size] -> Conv 3x3 -> Relu -> MaxPool 2 -> Flatten -> Gemm -> logits."""
    body = _rng("convnet", 1, "body")
    head = _rng("convnet", version, "head")
    flat = channels * (size // 2) * (size // 2)
    inits = [
        numpy_helper.from_array((body.standard_normal((channels, 1, 3, 3)) * 0.5).astype(np.float32), "conv_w"),
        numpy_helper.from_array((body.standard_normal(channels) * 0.1).astype(np.float32), "conv_b"),
        numpy_helper.from_array((head.standard_normal((flat, classes)) * 0.2).astype(np.float32), "fc_w"),
        numpy_helper.from_array((head.standard_normal(classes) * 0.1).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, f"convnet_v{version}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    return _finish(graph)


def token_classifier(*, vocab: int = 50, width: int = 8, classes: int = 2) -> onnx.ModelProto:
    """ids[batch, seq] (int64 token ids) -> Gather(embedding) -> ReduceMean -> Gemm -> logits.

    An out-of-range token id makes Gather fail, which is why the smoke run feeds zeros."""
    rng = _rng("tokens", 1, "all")
    inits = [
        numpy_helper.from_array(rng.standard_normal((vocab, width)).astype(np.float32), "emb"),
        numpy_helper.from_array(rng.standard_normal((width, classes)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
    ]
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"]),
        helper.make_node("ReduceMean", ["e", "axes"], ["m"], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "tokens",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    return _finish(graph, opset=18)


def two_outputs() -> onnx.ModelProto:
    """x[batch, 4] -> (y = x * 2, z = sum(x)): a model with a tuple result."""
    inits = [numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")]
    nodes = [
        helper.make_node("Mul", ["x", "two"], ["y"]),
        helper.make_node("ReduceSum", ["x"], ["z"], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes, "two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 1])],
        inits,
    )
    return _finish(graph)


def node_toml(name: str, shape: list[Any], dtype: str) -> str:
    dims = ", ".join(f'"{d}"' if isinstance(d, str) else str(d) for d in shape)
    return f'name = "{name}"\nshape = [{dims}]\ndtype = "{dtype}"\n'


def descriptor_text(
    network: str,
    inputs: list[tuple[str, list[Any], str]],
    outputs: list[tuple[str, list[Any], str]],
    *,
    summary: str = "",
    task: str = "classification",
    dims: dict[str, int] | None = None,
    meta: dict[str, Any] | None = None,
    source: str = "generated by tests/helpers_models.py",
    model_license: str = "Apache-2.0",
) -> str:
    """A model.toml for a generated model."""
    lines = [
        "format = 1",
        f'network = "{network}"',
        'framework = "onnx"',
        f'summary = "{summary}"',
        f'task = "{task}"',
        f'model_license = "{model_license}"',
        'data_license = "CC0-1.0"',
        "",
        "[provenance]",
        f'source = "{source}"',
        'description = "deterministic weights from a seeded numpy RNG"',
        "",
    ]
    if dims:
        lines += ["[dims]", *(f"{k} = {v}" for k, v in dims.items()), ""]
    for kind, nodes in (("inputs", inputs), ("outputs", outputs)):
        for n in nodes:
            lines += [f"[[{kind}]]", node_toml(*n)]
    if meta:
        lines += ["[meta]"]
        for k, v in meta.items():
            lines.append(f"{k} = {v!r}".replace("'", '"'))
    return "\n".join(lines) + "\n"


MLP_IO = ([("x", ["batch", 16], "float32")], [("probs", ["batch", 4], "float32")])
CONVNET_IO = ([("image", ["batch", 1, 8, 8], "float32")], [("logits", ["batch", 3], "float32")])


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def write_model(
    directory: Path,
    model: onnx.ModelProto,
    *,
    network: str = "model.onnx",
    descriptor: str | None = None,
    external_data: bool = False,
) -> Path:
    """Write `model` (and `descriptor` as model.toml) into `directory`; return the .onnx path.
    `external_data` stores every initializer in `<network>.data` next to it."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / network
    if external_data:
        model = _copy(model)  # save_model moves the tensors out of the proto it is given
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{network}.data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    if descriptor is not None:
        (directory / "model.toml").write_text(descriptor, encoding="utf-8")
    return path
