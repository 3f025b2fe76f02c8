"""Publish reads real model folders as they are: Autoware's definition.yaml becomes the version's
metadata, and Git LFS pointers are refused before anything is stored."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import onnx
import pytest
from test_check import AUTOWARE, ONNX_DEFINITIONS, autoware_folder, stand_in

import zoostore
from zoostore.cli import main
from zoostore.core.errors import UsageError
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


def _store_is_empty(zoo: Store) -> bool:
    root = Path(zoo.url.removeprefix("file://"))
    return zoo.models() == [] and not any((root / "packs").rglob("*")) and not any((root / "blobs").rglob("*"))


def test_names_that_cannot_be_published_are_refused_before_upload(zoo: Store, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from zoostore.core.errors import InvalidPathError

    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.bin").write_bytes(b"fine")
    bad = os.fsdecode(b"bad\xff.bin")
    (src / bad).write_bytes(b"latin-1 name")
    with pytest.raises(InvalidPathError, match=r"not valid UTF-8"):
        zoostore.publish(zoo, "net", "1.0.0", [src], check=False)
    assert main(["publish", zoo.url, "net", "1.0.0", str(src), "--no-check"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    (src / bad).unlink()
    deep = src / ("d" * 200) / ("e" * 200) / ("f" * 200) / ("g" * 200) / ("h" * 200) / ("i" * 200)
    deep.mkdir(parents=True)
    (deep / "w.bin").write_bytes(b"deep")
    with pytest.raises(InvalidPathError, match="too long to publish"):
        zoostore.publish(zoo, "net", "1.0.0", [src], check=False)
    assert _store_is_empty(zoo)


def test_symlinks_out_of_the_folder_are_refused_unless_followed(zoo: Store, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "credentials"
    secret.write_text("aws_secret_access_key = hunter2\n")
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "model.bin").write_bytes(b"weights" * 100)
    (src / "alias.bin").symlink_to("model.bin")          # inside: published as the file
    (src / "creds").symlink_to(secret)                   # outside: refused
    with pytest.raises(UsageError, match=r"creds is a symbolic link to .*credentials, outside the published directory"):
        zoostore.publish(zoo, "net", "1.0.0", [src], check=False)
    assert main(["publish", zoo.url, "net", "1.0.0", str(src), "--no-check"]) == 2
    assert "--follow-symlinks" in capsys.readouterr().err
    assert _store_is_empty(zoo)
    (src / "creds").unlink()
    (src / "outside").symlink_to(tmp_path, target_is_directory=True)  # a directory link out: refused too
    with pytest.raises(UsageError, match="outside the published directory"):
        zoostore.publish(zoo, "net", "1.0.0", [src], check=False)
    (src / "outside").unlink()
    (src / "dangling").symlink_to(tmp_path / "nothing")
    with pytest.raises(UsageError, match="does not exist"):
        zoostore.publish(zoo, "net", "1.0.0", [src], check=False)
    (src / "dangling").unlink()
    (src / "creds").symlink_to(secret)
    assert main(["publish", zoo.url, "net", "1.0.0", str(src), "--no-check", "--follow-symlinks", "-q"]) == 0
    files = zoo.manifest("net").versions["1.0.0"].files["any"]
    assert sorted(files) == ["alias.bin", "creds", "model.bin"]


def test_a_named_pipe_or_a_device_is_refused_instead_of_waiting_for_a_writer(zoo: Store, tmp_path: Path) -> None:
    import subprocess
    import sys

    src = tmp_path / "src"
    src.mkdir()
    (src / "model.bin").write_bytes(b"weights" * 100)
    os.mkfifo(src / "pipe")
    # In a child with a time limit: reading the pipe used to wait for a writer forever.
    for args in (["publish", zoo.url, "net", "1.0.0", str(src)], ["publish", zoo.url, "net", "1.0.0", str(src / "pipe")],
                 ["publish-release", zoo.url, "1.0.0", f"net={src}"], ["publish", zoo.url, "net", "1.0.0", os.devnull]):
        proc = subprocess.run([sys.executable, "-m", "zoostore", *args, "--no-check"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 2, proc.stderr
        kind = "a device" if os.devnull in args else "a named pipe (FIFO)"
        assert f"is {kind}, not a regular file" in proc.stderr and "Traceback" not in proc.stderr
    assert _store_is_empty(zoo)
