"""Publish records each .onnx file's ONNX metadata on the version (IR version, opsets, producer,
inputs, outputs, test data results), and `--min-opset` refuses older models."""

from __future__ import annotations

import json
from pathlib import Path

import helpers_models as hm
import numpy as np
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import zoostore
from zoostore.cli import main
from zoostore.core.errors import CheckFailedError
from zoostore.documents.store_config import StoreConfig
from zoostore.repository import Store, init_store


@pytest.fixture
def zoo(tmp_path: Path) -> Store:
    return init_store(tmp_path / "store", config=StoreConfig(pack_target_size=1 << 20))[0]


def mlp_folder(tmp_path: Path, *, data_set: bool = False) -> Path:
    model = hm.write_model(tmp_path / "src", hm.mlp(1), descriptor=None)
    if data_set:
        x = np.ones((2, 16), np.float32)
        [probs] = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})
        folder = model.parent / "test_data_set_0"
        folder.mkdir()
        (folder / "input_0.pb").write_bytes(numpy_helper.from_array(x, "x").SerializeToString())
        (folder / "output_0.pb").write_bytes(numpy_helper.from_array(probs, "probs").SerializeToString())
    return model.parent


def test_publish_stores_onnx_metadata_per_version(zoo: Store, tmp_path: Path) -> None:
    src = mlp_folder(tmp_path, data_set=True)
    zoostore.publish(zoo, "mlp", "1.0.0", [src], arch="any", meta={"accuracy": 0.71})
    meta = zoo.manifest("mlp").versions["1.0.0"].meta
    assert meta["accuracy"] == 0.71
    assert meta["onnx"] == {"model.onnx": {
        "ir_version": hm.IR_VERSION, "opsets": {"ai.onnx": hm.OPSET}, "producer": "zoostore-demo",
        "inputs": [{"name": "x", "shape": ["batch", 16], "dtype": "float32"}],
        "outputs": [{"name": "probs", "shape": ["batch", 4], "dtype": "float32"}],
        "test_data": {"passed": 1, "found": 1},
    }}
    # The same files again: the same metadata, so the publish is the usual idempotent success.
    again = zoostore.publish(zoo, "mlp", "1.0.0", [src], arch="any", meta={"accuracy": 0.71})
    assert again.unchanged
    # The catalog's data carries it.
    assert main(["catalog", zoo.url, "--json"]) == 0


def test_cli_min_opset_refuses_an_older_model(zoo: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = mlp_folder(tmp_path)
    assert main(["publish", zoo.url, "mlp", "1.0.0", str(src), "--min-opset", str(hm.OPSET + 1)]) == 10
    err = capsys.readouterr().err
    assert f"opset {hm.OPSET}" in err and "--no-check" in err
    assert zoo.models() == []
    assert main(["publish", zoo.url, "mlp", "1.0.0", str(src), "--min-opset", str(hm.OPSET), "--json"]) == 0
    capsys.readouterr()
    assert main(["ls", zoo.url, "mlp@1.0.0", "--json"]) == 0
    [version] = json.loads(capsys.readouterr().out)["versions"]
    assert version["meta"]["onnx"]["model.onnx"]["opsets"] == {"ai.onnx": hm.OPSET}


def test_explicit_meta_wins_over_what_the_check_found(zoo: Store, tmp_path: Path) -> None:
    src = mlp_folder(tmp_path)
    zoostore.publish(zoo, "mlp", "1.0.0", [src], meta={"onnx": "see the model card"})
    assert zoo.manifest("mlp").versions["1.0.0"].meta["onnx"] == "see the model card"


def test_a_failing_check_still_refuses(zoo: Store, tmp_path: Path) -> None:
    src = tmp_path / "bad"
    src.mkdir()
    (src / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(CheckFailedError):
        zoostore.publish(zoo, "mlp", "1.0.0", [src])


def test_catalog_shows_onnx_facts_in_markdown_and_escaped_html(zoo: Store, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    src = mlp_folder(tmp_path, data_set=True)
    zoostore.publish(zoo, "mlp", "1.0.0", [src], meta={"accuracy": 0.71, "dataset": "<script>x</script>"})
    zoostore.publish(zoo, "mlp", "1.1.0", [src], meta={"accuracy": 0.72})
    from zoostore.ops.tags import yank

    yank(zoo, "mlp", "1.0.0", "wrong | labels")
    assert main(["catalog", zoo.url, "--download-base", "https://mirror.example/zoo/"]) == 0
    md = capsys.readouterr().out
    row = next(line for line in md.splitlines() if "~~1.0.0~~" in line)
    assert f"opset {hm.OPSET}, IR {hm.IR_VERSION}, tests 1/1" in row and "x float32[batch×16]" in row
    assert "(yanked: wrong \\| labels)" in row and "accuracy=0.71" in row
    assert "[files](https://mirror.example/zoo/mlp/1.0.0/)" in row
    assert md.splitlines()[4].count("|") == md.splitlines()[5].count("|") == row.count("|") - row.count("\\|")

    out = tmp_path / "catalog.html"
    assert main(["catalog", zoo.url, "-o", str(out)]) == 0
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page and '<td class="yanked">1.0.0 (yanked: wrong | labels)</td>' in page
    assert page.count("<tr>") == 3  # the header and two versions
