"""The model index: `zoostore ls`, `catalog` and `zoo://` listings over an HTTPS mirror that
cannot list directories; publish keeps `index.toml` current; init writes it for older stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fsspec
import pytest

from zoostore.cli import main
from zoostore.core.errors import FormatError, NewerFormatError, NotFoundError
from zoostore.documents.store_config import StoreConfig
from zoostore.documents.store_index import INDEX_KEY, parse_index, render_index
from zoostore.ops.publish import publish
from zoostore.repository import init_store, open_store


def src(tmp_path: Path, name: str) -> Path:
    d = tmp_path / "src" / name
    d.mkdir(parents=True)
    (d / "weights.bin").write_bytes(name.encode() * 1000)
    return d


def test_publish_keeps_the_index_and_a_mirror_lists_through_it(http_store: Any, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    zoo, _ = init_store(http_store.root, config=StoreConfig(pack_target_size=1 << 20))
    assert parse_index((http_store.root / INDEX_KEY).read_text(), where="i") == []
    publish(zoo, "beta", "1.0.0", [src(tmp_path, "b1")], check=False)
    publish(zoo, "alpha", "1.0.0", [src(tmp_path, "a1")], check=False)
    publish(zoo, "alpha", "1.1.0", [src(tmp_path, "a2")], check=False)
    assert parse_index((http_store.root / INDEX_KEY).read_text(), where="i") == ["alpha", "beta"]

    mirror = open_store(http_store.url)
    assert not mirror.backend.capabilities.listing and mirror.models() == ["alpha", "beta"]
    assert main(["ls", http_store.url, "--json"]) == 0
    assert [m["model"] for m in json.loads(capsys.readouterr().out)["models"]] == ["alpha", "beta"]
    assert main(["catalog", http_store.url, "--json"]) == 0
    assert [v["version"] for v in json.loads(capsys.readouterr().out)["models"][0]["versions"]] == ["1.1.0", "1.0.0"]
    fs = fsspec.filesystem("zoo", store=http_store.url, cache=False, skip_instance_cache=True)
    assert sorted(p.rstrip("/").split("/")[-1] for p in fs.ls("", detail=False)) == ["alpha", "beta"]


def test_init_writes_the_index_of_an_older_store(http_store: Any, tmp_path: Path) -> None:
    zoo, _ = init_store(http_store.root)
    publish(zoo, "net", "1.0.0", [src(tmp_path, "n")], check=False)
    (http_store.root / INDEX_KEY).unlink()  # a store from before the index
    with pytest.raises(NotFoundError, match="run 'zoostore init' once on the store's writable URL"):
        open_store(http_store.url).models()
    assert main(["init", str(http_store.root)]) == 0
    assert open_store(http_store.url).models() == ["net"]
    (http_store.root / INDEX_KEY).write_text("not toml [")
    publish(zoo, "other", "1.0.0", [src(tmp_path, "o")], check=False)  # a damaged index is rebuilt
    assert open_store(http_store.url).models() == ["net", "other"]


def test_a_publish_heals_an_index_that_a_failed_first_publish_left_without_its_model(tmp_path: Path) -> None:
    """The first publish of a model writes its manifest, then adds it to the index; when the
    index update fails (a lock held past lock_wait: LockTimeoutError, exit 7), running the same
    publish again uploads nothing and must still add the model, as must the next version."""
    zoo, _ = init_store(tmp_path / "store")
    net = src(tmp_path, "n1")
    publish(zoo, "net", "1.0.0", [net], check=False)
    publish(zoo, "other", "1.0.0", [src(tmp_path, "o1")], check=False)
    index = tmp_path / "store" / INDEX_KEY
    index.write_text(render_index(["other"]).decode())   # as the failed update left it
    publish(zoo, "net", "1.0.0", [net], check=False)   # the re-run: unchanged
    assert parse_index(index.read_text(), where="i") == ["net", "other"]
    index.write_text(render_index(["other"]).decode())
    publish(zoo, "net", "1.1.0", [src(tmp_path, "n2")], check=False)
    assert parse_index(index.read_text(), where="i") == ["net", "other"]


def test_index_format_is_a_promise(tmp_path: Path) -> None:
    assert render_index(["b", "a", "a"]).decode().endswith('format = 1\nmodels = [\n    "a",\n    "b",\n]\n')
    with pytest.raises(NewerFormatError, match="upgrade zoostore"):
        parse_index('format = 2\nmodels = []\n', where="index.toml")
    for bad in ('format = 1\nmodels = "a"\n', 'format = 1\nmodels = ["../x"]\n', "models = []\n"):
        with pytest.raises(FormatError, match="index.toml"):
            parse_index(bad, where="index.toml")
    zoo, _ = init_store(tmp_path / "store")
    (tmp_path / "store" / INDEX_KEY).write_text('format = 2\nmodels = []\n')
    with pytest.raises(NewerFormatError):  # never overwritten by an older zoostore
        publish(zoo, "net", "1.0.0", [src(tmp_path, "n")], check=False)
