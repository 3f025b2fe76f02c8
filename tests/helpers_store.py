"""Small stores and projects for tests: a folder of files, published as one model version, and a
project whose zoo.toml pins it."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

import zoostore.ops.publish
import zoostore.storage.writer
from zoostore.core.digest import hash_file

from zoostore.documents.store_config import StoreConfig
from zoostore.ops.publish import publish
from zoostore.repository import Store, init_store


def write_dir(d: Path, files: Mapping[str, bytes | str]) -> Path:
    """`files` (relative path -> bytes, or text) under `d`; returns `d`."""
    d.mkdir(parents=True, exist_ok=True)
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            (d / rel).write_text(data)
        else:
            (d / rel).write_bytes(data)
    return d


def published_store(tmp_path: Path, files: Mapping[str, bytes | str], *, config: StoreConfig | None = None,
                    model: str = "m", version: str = "1.0.0", arch: str = "x86_64") -> Store:
    """A store at tmp_path/store holding `files` (written to tmp_path/src) as model@version."""
    store, _ = init_store(tmp_path / "store", config=config)
    publish(store, model, version, [write_dir(tmp_path / "src", files)], arch=arch, check=False)
    return store


def project_dir(tmp_path: Path, name: str = "project", *, models: Mapping[str, str] | None = None,
                archs: Iterable[str] = ("x86_64",), store: str = "../store") -> Path:
    """A project folder tmp_path/name whose zoo.toml pins `models` (default m = 1.0.0)."""
    p = tmp_path / name
    p.mkdir()
    pins = "".join(f'{m} = "{spec}"\n' for m, spec in (models or {"m": "1.0.0"}).items())
    arch_list = ", ".join(f'"{a}"' for a in archs)
    (p / "zoo.toml").write_text(f'store = "{store}"\narchs = [{arch_list}]\n[models]\n{pins}')
    return p


def flip_a_bit(path: Path) -> None:
    """Damage a file in place the way a stray write would, then set its mtime back: size and
    mtime are unchanged, only ctime (which no user call can restore) moves."""
    st = path.stat()
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)[0]
        f.seek(1000)
        f.write(bytes([byte ^ 0x10]))
    os.chmod(path, st.st_mode & 0o777)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def count_hashes(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count, by file name, the whole-file hashes a publish computes itself (the plan's and the
    writer's `hash_file`)."""
    calls: Counter[str] = Counter()

    def counted(path: Any) -> Any:
        calls[Path(path).name] += 1
        return hash_file(path)

    monkeypatch.setattr(zoostore.ops.publish, "hash_file", counted)
    monkeypatch.setattr(zoostore.storage.writer, "hash_file", counted)
    return calls
