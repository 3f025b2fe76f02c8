"""Publish reads real model folders as they are: Autoware's definition.yaml becomes the version's
metadata, and Git LFS pointers are refused before anything is stored."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
from test_check import AUTOWARE, ONNX_DEFINITIONS, autoware_folder, stand_in

import zoostore
from zoostore.cli import main
from zoostore.documents.model_folder import LfsPointerError
from zoostore.repository import Store, init_store


@pytest.fixture
def zoo(tmp_path: Path) -> Store:
    return init_store(tmp_path / "store")[0]


def test_definition_yaml_becomes_the_versions_metadata(zoo: Store, tmp_path: Path) -> None:
    definition = ONNX_DEFINITIONS[0]
    folder, desc = autoware_folder(tmp_path, definition)
    onnx.save(stand_in(desc), folder / desc.network)  # `network` is model_files/NAME
    zoostore.publish(zoo, "net", "1.0.0", [folder])
    meta = zoo.manifest("net").versions["1.0.0"].meta
    assert meta["framework"] == desc.framework and meta["network"] == desc.network
    assert [n["name"] for n in meta["inputs"]] == [i.name for i in desc.inputs]
    assert meta["onnx"][Path(desc.network).name]["opsets"] == {"ai.onnx": 17}
    # A later version with another description keeps each version's own.
    old_name = Path(desc.network).name
    text = definition.read_text(encoding="utf-8").replace(old_name, "renamed.onnx")
    shutil.rmtree(folder)
    folder2, desc2 = autoware_folder(tmp_path, definition, text)
    onnx.save(stand_in(desc2), folder2 / desc2.network)
    zoostore.publish(zoo, "net", "1.1.0", [folder2])
    m = zoo.manifest("net")
    assert m.versions["1.0.0"].meta["network"] == desc.network
    assert m.versions["1.1.0"].meta["network"] == desc2.network and desc2.network.endswith("renamed.onnx")


def test_lfs_pointers_are_refused_before_anything_is_stored(zoo: Store, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"real bytes" * 100)
    shutil.copy(AUTOWARE / "lfs-pointer-example.pb", src / "net.pb")
    with pytest.raises(LfsPointerError, match="git lfs pull"):
        zoostore.publish(zoo, "net", "1.0.0", [src], check=False)
    assert main(["publish", zoo.url, "net", "1.0.0", str(src), "--no-check"]) == 2
    assert "is a Git LFS pointer" in capsys.readouterr().err
    assert zoo.models() == [] and not any((Path(zoo.url.removeprefix("file://")) / "packs").rglob("*"))
