"""Cost against history length: `ls`, `catalog`, resolving and publishing a model with many
versions do work linear in its versions (counted operations, never wall-clock), and a publish
reads and parses the manifest once when no other writer intervenes (issue 13)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from zoostore.cli import main as cli
from zoostore.core import semver
from zoostore.documents import manifest as manifest_mod
from zoostore.documents.manifest import Manifest
from zoostore.documents.resolve import select, select_versions
from zoostore.ops.catalog import catalog_markdown
from zoostore.ops.publish import plan_publish, publish
from zoostore.repository import Store, init_store, open_store


def _store_with_versions(root: Path, n: int) -> Store:
    zoo, _ = init_store(root / f"store{n}")
    src = root / f"f{n}.bin"
    src.write_bytes(b"weights %d" % n)
    publish(zoo, "m", "0.0.1", [src], check=False)
    rel = zoo.manifest("m").versions["0.0.1"]

    def many(m: Manifest | None) -> Manifest:
        assert m is not None
        versions = {f"1.{i}.0": replace(rel, version=f"1.{i}.0") for i in range(n)}
        versions["1.0.1"] = replace(rel, version="1.0.1", yanked="broken")
        return replace(m, versions=versions, tags={"stable": "1.0.0", "edge": f"1.{n - 1}.0"})

    zoo.update_manifest("m", many)
    return zoo


@contextlib.contextmanager
def _counting(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> Iterator[list[int]]:
    calls = [0]
    real: Callable[..., Any] = getattr(obj, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    with monkeypatch.context() as mp:
        mp.setattr(obj, name, counted)
        yield calls


def _parses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int, op: Callable[[Store], object]) -> int:
    zoo = _store_with_versions(tmp_path, n)
    with _counting(monkeypatch, semver, "parse_version") as calls:
        op(zoo)
    return calls[0]


def _ls(zoo: Store) -> None:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert cli(["ls", zoo.url, "m"]) == 0
        assert cli(["ls", zoo.url, "m@^1", "--json"]) == 0
    assert "tags=edge,latest" in out.getvalue()


@pytest.mark.parametrize("op", [_ls, catalog_markdown], ids=["ls", "catalog"])
def test_listing_versions_is_linear_in_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                op: Callable[[Store], object]) -> None:
    # Quadratic before: every row recomputed `latest` over all versions (N^2 version parses).
    small = _parses(tmp_path, monkeypatch, 100, op)
    large = _parses(tmp_path, monkeypatch, 400, op)
    assert large <= 30 * 400, large
    assert large <= 4.5 * small, (small, large)


def test_manifest_queries_match_their_definitions(tmp_path: Path) -> None:
    m = _store_with_versions(tmp_path, 30).manifest("m")
    assert m.latest() == "1.29.0"
    assert m.tags_of("1.29.0") == ["edge", "latest"] and m.tags_of("1.0.0") == ["stable"] and m.tags_of("1.5.0") == []
    assert m.same_version("v1.3.0+build") == "1.3.0" and m.same_version("7.0.0") is None
    assert m.sorted_versions()[:3] == ["1.0.0", "1.0.1", "1.1.0"]
    yanked_latest = m.with_yank("1.29.0", "bad")
    assert yanked_latest.latest() == "1.28.0" and yanked_latest.tags_of("1.29.0") == ["edge"]
    assert m.latest() == "1.29.0"  # the cached answer belongs to the unchanged value
    assert select_versions(m, "latest") == ["1.29.0"] and select_versions(yanked_latest, "latest") == ["1.28.0"]
    release, _ = select(m, "^1.0")
    assert release.version == "1.29.0"


def test_resolving_is_linear_in_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def resolve_all(zoo: Store) -> None:
        m = zoo.manifest("m")
        for spec in ("latest", "stable", "1.3.0", "^1.2", "edge"):
            select(m, spec)
    small = _parses(tmp_path, monkeypatch, 100, resolve_all)
    large = _parses(tmp_path, monkeypatch, 400, resolve_all)
    assert large <= 4.5 * small, (small, large)


def test_publish_reads_and_parses_the_manifest_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo = _store_with_versions(tmp_path, 50)
    src = tmp_path / "new.bin"
    src.write_bytes(b"new weights")
    backend = type(zoo.backend)
    real_get = backend.get_versioned
    keys: list[str] = []

    def get_versioned(self: Any, key: str) -> Any:
        keys.append(key)
        return real_get(self, key)

    monkeypatch.setattr(backend, "get_versioned", get_versioned)
    with _counting(monkeypatch, manifest_mod.Manifest, "parse") as parses:
        publish(zoo, "m", "2.0.0", [src], check=False, tags=["next"])
    # The manifest once; the model index once (a publish makes sure it lists the model).
    assert (parses[0], sorted(keys)) == (1, ["index.toml", "manifests/m.toml"])
    m = zoo.manifest("m")
    assert "2.0.0" in m.versions and m.tags["next"] == "2.0.0" and len(m.versions) == 52


def test_publish_after_a_concurrent_writer_reads_again_and_keeps_both(tmp_path: Path) -> None:
    zoo = _store_with_versions(tmp_path, 5)
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    plan = plan_publish(zoo, "m", "3.0.0", [a])
    publish(open_store(zoo.url), "m", "3.1.0", [b], check=False)  # lands between plan and commit
    plan.execute()
    m = zoo.manifest("m")
    assert {"3.0.0", "3.1.0"} <= set(m.versions)


def test_tag_only_publish_with_a_stale_plan_checks_the_stored_manifest(tmp_path: Path) -> None:
    zoo = _store_with_versions(tmp_path, 3)
    src = tmp_path / "x.bin"
    src.write_bytes(b"x")
    publish(zoo, "m", "4.0.0", [src], check=False, tags=["pin"])
    plan = plan_publish(zoo, "m", "4.0.0", [src], tags=["pin"])  # unchanged: only the tag to set
    assert plan.unchanged
    zoo.update_manifest("m", lambda m: m.with_tag("pin", None) if m else None)  # someone removes it
    plan.execute()
    assert zoo.manifest("m").tags["pin"] == "4.0.0"
