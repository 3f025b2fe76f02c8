"""What docs/consumer.md promises a Python consumer of `zoostore.fetch` / `fetch_version`
beyond the files themselves (the snapshot layout is tests/test_snapshot.py's)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import zoostore
from helpers_store import published_store
from zoostore.ops.tags import yank


@pytest.mark.parametrize("call", ["fetch", "fetch_version"])
def test_fetching_a_yanked_version_warns_with_the_reason(tmp_path: Path, call: str) -> None:
    """docs/consumer.md: "`lock`, `outdated`, `zoostore.fetch` and `zoo://` warn too" about a
    yanked version; fetch returned it silently."""
    store = published_store(tmp_path, {"lib.so": b"x" * 100})
    yank(store, "m", "1.0.0", "wrong anchors")
    opts = {"arch": "x86_64", "store": str(tmp_path / "store"), "cache": str(tmp_path / "cache")}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if call == "fetch":
            path = zoostore.fetch("m", "1.0.0", "lib.so", **opts)
        else:
            path = zoostore.fetch_version("m@1.0.0", **opts) / "lib.so"
    assert path.read_bytes() == b"x" * 100    # an exact version still resolves (as zoo:// does)
    assert [str(w.message) for w in caught] == ["m@1.0.0 is yanked: wrong anchors"]
    assert caught[0].filename == __file__      # pointing at the caller's line
