"""What docs/consumer.md promises a Python consumer of `zoostore.fetch` / `fetch_version`
beyond the files themselves (the snapshot layout is tests/test_snapshot.py's)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import zoostore
from helpers_store import published_store, write_dir
from zoostore.core.errors import NotFoundError
from zoostore.ops.publish import publish
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


def test_fetching_a_file_under_an_arch_the_version_lacks_says_to_check_the_arch(tmp_path: Path) -> None:
    """A typo such as x86_46 resolves to the version's architecture-independent files only: the
    error says so and names the architectures it has, as zoo:// does."""
    store = published_store(tmp_path, {"lib.so": b"x" * 100})
    publish(store, "m", "1.0.0", [write_dir(tmp_path / "doc", {"README.md": "read me"})], arch="any", check=False)
    opts = {"store": str(tmp_path / "store"), "cache": str(tmp_path / "cache")}
    with pytest.raises(NotFoundError, match=r"has no file 'lib.so'; it has no files for x86_46, only "
                       r"architecture-independent ones \(its architectures: any, x86_64\): check the arch"):
        zoostore.fetch("m", "1.0.0", "lib.so", arch="x86_46", **opts)
    assert zoostore.fetch("m", "1.0.0", "lib.so", arch="x86_64", **opts).read_bytes() == b"x" * 100


def test_fetching_a_missing_file_of_an_architecture_independent_version_does_not_blame_the_arch(
        tmp_path: Path) -> None:
    store = published_store(tmp_path, {"README.md": b"read me"}, arch="any")
    opts = {"store": str(tmp_path / "store"), "cache": str(tmp_path / "cache")}
    with pytest.raises(NotFoundError, match=r"has no file 'lib.so'; files: README.md") as exc:
        zoostore.fetch("m", "1.0.0", "lib.so", arch="x86_64", **opts)
    assert "check the arch" not in str(exc.value)
