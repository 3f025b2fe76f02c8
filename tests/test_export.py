"""`zoostore export`: a plain, verified mirror with SHA256SUMS and index.json; incremental."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import fsspec
import numpy as np
import pytest

from zoostore.cli import main
from zoostore.core.errors import FormatError
from zoostore.documents.store_config import StoreConfig
import zoostore.ops.export as export_module
from zoostore.ops.export import export_store, parse_sums
from zoostore.ops.publish import publish
from zoostore.repository import Store, init_store


def files(d: Path, seed: int, n: int = 50_000) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    np.random.default_rng(seed).normal(0, 1, n).astype(np.float32).tofile(d / "weights.bin")
    (d / "sub").mkdir(exist_ok=True)
    (d / "sub" / "labels.txt").write_text(f"labels {seed}\n")
    return d


@pytest.fixture
def zoo(tmp_path: Path) -> Store:
    store, _ = init_store(tmp_path / "store", config=StoreConfig(pack_target_size=256 * 1024))
    publish(store, "net", "1.0.0", [files(tmp_path / "src/a", 1)], arch="x86_64", check=False)
    publish(store, "net", "1.0.0", [files(tmp_path / "src/b", 2)], arch="aarch64", check=False)
    publish(store, "other", "0.1.0", [files(tmp_path / "src/c", 3)], check=False, tags=["bleedingedge"])
    return store


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_writes_plain_files_sums_and_index(zoo: Store, tmp_path: Path) -> None:
    out = tmp_path / "mirror"
    report = export_store(zoo, out)
    assert sorted(report.written) == [
        "net/1.0.0/aarch64/sub/labels.txt", "net/1.0.0/aarch64/weights.bin",
        "net/1.0.0/x86_64/sub/labels.txt", "net/1.0.0/x86_64/weights.bin",
        "other/0.1.0/any/sub/labels.txt", "other/0.1.0/any/weights.bin",
    ]
    assert (out / "net/1.0.0/x86_64/weights.bin").read_bytes() == (tmp_path / "src/a/weights.bin").read_bytes()
    assert (out / "net/1.0.0/aarch64/sub/labels.txt").read_text() == "labels 2\n"
    if shutil.which("sha256sum"):
        proc = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out / "net/1.0.0", capture_output=True, text=True)
        assert proc.returncode == 0 and proc.stdout.count(": OK") == 4, proc.stdout + proc.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == 1 and sorted(index["models"]) == ["net", "other"]
    assert index["models"]["other"]["tags"] == {"bleedingedge": "0.1.0"}
    entry = index["models"]["net"]["versions"]["1.0.0"]["files"]["x86_64"]["weights.bin"]
    assert entry["sha256"] == sha256(out / "net/1.0.0/x86_64/weights.bin")
    assert entry["size"] == 200_000 and entry["blob"].startswith("blake3:")
    assert not list(out.rglob("*.tmp"))


def test_export_is_incremental(zoo: Store, tmp_path: Path) -> None:
    out = tmp_path / "mirror"
    export_store(zoo, out)
    again = export_store(zoo, out)
    assert again.written == [] and again.skipped == 6 and again.bytes_written == 0
    publish(zoo, "net", "1.1.0", [files(tmp_path / "src/d", 4)], arch="x86_64", check=False)
    (out / "net/1.0.0/aarch64/weights.bin").unlink()  # a lost file is written again
    (out / "other/0.1.0/any/sub/labels.txt").write_text("cut")  # so is one of the wrong size
    third = export_store(zoo, out)
    assert sorted(third.written) == ["net/1.0.0/aarch64/weights.bin", "net/1.1.0/x86_64/sub/labels.txt",
                                     "net/1.1.0/x86_64/weights.bin", "other/0.1.0/any/sub/labels.txt"]
    assert (out / "other/0.1.0/any/sub/labels.txt").read_text() == "labels 3\n"
    sums = parse_sums((out / "net/1.1.0/SHA256SUMS").read_text())
    assert sums == {"x86_64/sub/labels.txt": sha256(out / "net/1.1.0/x86_64/sub/labels.txt"),
                    "x86_64/weights.bin": sha256(out / "net/1.1.0/x86_64/weights.bin")}


def test_export_one_model_keeps_the_others_in_the_index(zoo: Store, tmp_path: Path) -> None:
    out = tmp_path / "mirror"
    export_store(zoo, out)
    report = export_store(zoo, out, models=["other"])
    assert report.skipped == 2
    assert sorted(json.loads((out / "index.json").read_text())["models"]) == ["net", "other"]
    first = export_store(zoo, tmp_path / "only", models=["net"])
    assert len(first.written) == 4 and not (tmp_path / "only/other").exists()


def test_export_to_an_fsspec_url(zoo: Store) -> None:
    report = export_store(zoo, "memory://zoostore-export-test/mirror")
    fs = fsspec.filesystem("memory")
    try:
        assert len(report.written) == 6
        data = fs.cat("/zoostore-export-test/mirror/other/0.1.0/any/sub/labels.txt")
        assert data == b"labels 3\n"
        assert export_store(zoo, "memory://zoostore-export-test/mirror").skipped == 6
    finally:
        fs.rm("/zoostore-export-test", recursive=True)


def test_a_foreign_index_is_refused(zoo: Store, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m/index.json").write_text('{"format": 99}')
    with pytest.raises(FormatError, match="remove it to export everything again"):
        export_store(zoo, tmp_path / "m")


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_file_download_with_expected_hash(zoo: Store, tmp_path: Path) -> None:
    out = tmp_path / "mirror"
    export_store(zoo, out)
    entry = json.loads((out / "index.json").read_text())["models"]["net"]["versions"]["1.0.0"]["files"]["x86_64"]["weights.bin"]
    script = tmp_path / "get.cmake"
    script.write_text(
        f'file(DOWNLOAD "file://{out}/net/1.0.0/x86_64/weights.bin" "{tmp_path}/got.bin"\n'
        f'     EXPECTED_HASH SHA256={entry["sha256"]} STATUS status)\n'
        'list(GET status 0 code)\nif(NOT code EQUAL 0)\n  message(FATAL_ERROR "${status}")\nendif()\n')
    proc = subprocess.run(["cmake", "-P", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "got.bin").read_bytes() == (tmp_path / "src/a/weights.bin").read_bytes()


def test_cli_export(zoo: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "store"), str(tmp_path / "mirror"), "--model", "other", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert len(summary["written"]) == 2 and summary["skipped"] == 0
    assert main(["export", str(tmp_path / "store"), str(tmp_path / "mirror")]) == 0
    assert "4 written" in capsys.readouterr().err


@pytest.mark.parametrize("victim", ["SHA256SUMS", "index.json"])
def test_a_full_disk_leaves_the_old_sums_and_index_and_no_temp_file(zoo: Store, tmp_path: Path, victim: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # SHA256SUMS was written in place (a full disk left it empty: `sha256sum -c` then fails for
    # every file of the version) and index.json's temp file stayed behind.
    from fsspec.implementations.local import LocalFileOpener

    out = tmp_path / "mirror"
    export_store(zoo, out)
    before = {p: p.read_bytes() for p in out.rglob(victim)}
    publish(zoo, "net", "1.0.0", [files(tmp_path / "src/d", 4)], arch="riscv64", check=False)  # new sums, new index
    real_write, real_temp, targets = LocalFileOpener.write, export_module._temp, {}

    def temp(path: str) -> str:
        targets[name := real_temp(path)] = path
        return name

    def write(self: LocalFileOpener, data: bytes) -> int:
        if victim in targets.get(self.path, self.path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return int(real_write(self, data))

    monkeypatch.setattr(LocalFileOpener, "write", write)
    monkeypatch.setattr(export_module, "_temp", temp)
    with pytest.raises(OSError) as full:
        export_store(zoo, out)
    assert full.value.errno == errno.ENOSPC and full.value.filename.endswith(victim)
    assert {p: p.read_bytes() for p in out.rglob(victim)} == before   # the old ones, whole
    assert not [p for p in out.rglob("*") if "zoostore-export" in p.name or p.name.endswith(".tmp")]
    monkeypatch.setattr(LocalFileOpener, "write", real_write)
    export_store(zoo, out)   # after room is made, the export completes
    assert "riscv64/weights.bin" in (out / "net/1.0.0/SHA256SUMS").read_text()
    assert "riscv64" in json.loads((out / "index.json").read_text())["models"]["net"]["versions"]["1.0.0"]["files"]


def test_an_export_stopped_before_its_index_keeps_the_files_it_wrote(zoo: Store, tmp_path: Path) -> None:
    # A full disk stopped the export before index.json: the next run re-wrote every file, and
    # each rewrite needs room for a second copy beside the first, so on the disk that had just
    # filled it could never finish. Files that hash to their blob are kept; others are written.
    out = tmp_path / "mirror"
    export_store(zoo, out)
    (out / "index.json").unlink()
    (out / "net/1.0.0/SHA256SUMS").unlink()
    (out / "other/0.1.0/any/weights.bin").chmod(0o644)
    with open(out / "other/0.1.0/any/weights.bin", "r+b") as f:   # same size, other bytes
        f.write(b"X")
    again = export_store(zoo, out)
    assert again.written == ["other/0.1.0/any/weights.bin"] and again.skipped == 5
    assert (out / "other/0.1.0/any/weights.bin").read_bytes() == (tmp_path / "src/c/weights.bin").read_bytes()
    assert parse_sums((out / "net/1.0.0/SHA256SUMS").read_text())["x86_64/weights.bin"] == sha256(
        out / "net/1.0.0/x86_64/weights.bin")
    assert sorted(json.loads((out / "index.json").read_text())["models"]) == ["net", "other"]



def test_names_up_to_the_file_system_limit_export(zoo: Store, tmp_path: Path) -> None:
    # The temp name was the target's name plus a suffix: a 250-byte name, which publish, sync
    # and get take, failed with "File name too long" half way through the export.
    src = tmp_path / "long"
    src.mkdir()
    name = "a" * 250 + ".bin"
    (src / name).write_bytes(b"long name\n")
    publish(zoo, "longf", "1.0.0", [src], check=False)
    out = tmp_path / "mirror"
    report = export_store(zoo, out, models=["longf"])
    assert (out / "longf/1.0.0/any" / name).read_bytes() == b"long name\n"
    assert name in (out / "longf/1.0.0/SHA256SUMS").read_text() and report.written
    assert not [p for p in out.rglob("*") if "zoostore-export" in p.name]
