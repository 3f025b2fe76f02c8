"""Destination safety of `zoostore sync`: what sync may replace, remove or write through.

sync places only what it owns: a path holding a file it did not place (or one modified since)
is left alone unless --force; planted state-file keys and lockfile paths never reach outside
dest; temp files never follow a planted symlink; a path may switch between file and directory
across versions; names up to the file system's 255-byte limit sync.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import zoostore.core.atomic
import zoostore.ops.place
from zoostore.cli import main as cli
from zoostore.core.errors import DestinationConflictError, UsageError
from zoostore.documents.project import load_project
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.publish import publish
from zoostore.ops.sync import sync_project
from zoostore.repository import Store, init_store

STATE = ".zoostore-state.json"


def tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    store, _ = init_store(tmp_path / "store", config=StoreConfig(pack_target_size=256 * 1024))
    publish(store, "m", "1.0.0", [tree(tmp_path / "v1", {"a/b": "v1 a/b\n", "c": "v1 c\n", "keep": "k\n"})],
            arch="x86_64", check=False)
    publish(store, "m", "2.0.0", [tree(tmp_path / "v2", {"a": "v2 a\n", "c/d": "v2 c/d\n", "keep": "k\n"})],
            arch="x86_64", check=False)
    return store


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "project"
    p.mkdir()
    pin(p, "1.0.0")
    return p


def pin(project: Path, version: str) -> None:
    (project / "zoo.toml").write_text(f'store = "../store"\narchs = ["x86_64"]\n[models]\nm = "{version}"\n')


def test_user_file_at_wanted_path_is_left_alone_unless_force(zoo: Store, project: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    dest = project / "models"
    mine = dest / "m/x86_64/c"
    mine.parent.mkdir(parents=True)
    mine.write_text("the user's own c\n")
    with pytest.raises(DestinationConflictError, match=r"m/x86_64/c \(sync did not place") as exc:
        sync_project(load_project(project))
    assert exc.value.paths == ["m/x86_64/c"] and mine.read_text() == "the user's own c\n"
    # Every other file was placed; the conflicting one is not in the state file.
    assert (dest / "m/x86_64/a/b").read_text() == "v1 a/b\n" and (dest / "m/x86_64/keep").read_text() == "k\n"
    assert "m/x86_64/c" not in json.loads((dest / STATE).read_text())["files"]
    # The CLI: exit 7 (conflict), the message names the path and the way out; the file stays.
    assert cli(["sync", "--project", str(project), "-q"]) == 7
    err = capsys.readouterr().err
    assert "m/x86_64/c" in err and "--force" in err and mine.read_text() == "the user's own c\n"
    # --force replaces it, says so, and sync then owns it.
    assert cli(["sync", "--project", str(project), "--force", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["replaced"] == ["m/x86_64/c"] and out["placed"] == ["m/x86_64/c"]
    assert mine.read_text() == "v1 c\n"
    assert sync_project(load_project(project)).unchanged == 3


def test_file_with_the_wanted_bytes_is_adopted_when_the_state_file_is_lost(zoo: Store, project: Path) -> None:
    sync_project(load_project(project))
    dest = project / "models"
    (dest / STATE).unlink()
    r = sync_project(load_project(project))
    # adopted as they are (hard links to the cached files): nothing placed again, no conflict
    assert r.placed == [] and r.unchanged == 3 and not r.conflicts
    assert sorted(zoostore.ops.place.read_state(dest).files) == ["m/x86_64/a/b", "m/x86_64/c", "m/x86_64/keep"]


def test_placed_file_modified_then_left_the_lock_is_kept(zoo: Store, project: Path) -> None:
    sync_project(load_project(project), link="copy")
    c = project / "models/m/x86_64/c"
    os.chmod(c, 0o644)
    c.write_text("edited\n")
    pin(project, "2.0.0")   # c becomes a directory in 2.0.0: the edited file is in the way
    with pytest.raises(DestinationConflictError, match=r"m/x86_64/c/d .*is a file where sync needs a directory"):
        sync_project(load_project(project))
    assert c.read_text() == "edited\n"
    assert (project / "models/m/x86_64/a").read_text() == "v2 a\n"
    r = sync_project(load_project(project), force=True)
    assert r.placed == ["m/x86_64/c/d"] and (c / "d").read_text() == "v2 c/d\n"


@pytest.mark.parametrize("link", ["auto", "copy", "symlink"])
def test_path_switches_between_file_and_directory_across_versions(zoo: Store, project: Path, link: str) -> None:
    dest = project / "models/m/x86_64"
    sync_project(load_project(project), link=link)
    assert (dest / "a/b").read_text() == "v1 a/b\n" and (dest / "c").read_text() == "v1 c\n"
    pin(project, "2.0.0")
    r = sync_project(load_project(project), link=link)
    assert sorted(r.removed) == ["m/x86_64/a/b", "m/x86_64/c"]
    assert (dest / "a").read_text() == "v2 a\n" and (dest / "c/d").read_text() == "v2 c/d\n"
    pin(project, "1.0.0")
    sync_project(load_project(project), link=link)
    assert (dest / "a/b").read_text() == "v1 a/b\n" and (dest / "c").read_text() == "v1 c\n"
    assert sync_project(load_project(project), link=link, verify=True).unchanged == 3


def test_directory_in_the_way_is_never_replaced_even_with_force(zoo: Store, project: Path) -> None:
    sync_project(load_project(project))
    mine = project / "models/m/x86_64/a/notes.txt"
    mine.write_text("mine\n")
    pin(project, "2.0.0")
    for force in (False, True):
        with pytest.raises(DestinationConflictError, match=r"m/x86_64/a .*directory holding files sync did not place"):
            sync_project(load_project(project), force=force)
        assert mine.read_text() == "mine\n" and (project / "models/m/x86_64/c/d").read_text() == "v2 c/d\n"


def test_planted_state_keys_never_delete_outside_dest(zoo: Store, project: Path, tmp_path: Path) -> None:
    sync_project(load_project(project))
    dest = project / "models"
    victims = {name: tmp_path / name for name in ("victim1", "victim2", "victim3")}
    for v in victims.values():
        v.write_text("precious\n")
    (dest / "evil").symlink_to(tmp_path, target_is_directory=True)   # a symlinked directory inside dest
    doc = json.loads((dest / STATE).read_text())

    def entry(p: Path) -> dict[str, Any]:
        st = p.lstat()   # the victim's real stat: the old code would have deleted it
        return {"blob": "blake3:" + "0" * 64, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}

    planted = {
        "../../victim1": entry(victims["victim1"]),
        str(victims["victim2"]): entry(victims["victim2"]),
        "m/x86_64/../../../../victim1": entry(victims["victim1"]),
        "evil/x86_64/../victim3": entry(victims["victim3"]),
        "evil/x/victim3": entry(victims["victim3"]),   # valid, but its directory resolves outside dest
        "": entry(victims["victim1"]),
        "m/x86_64/ok": "not a table",
    }
    doc["files"].update(planted)
    (dest / STATE).write_text(json.dumps(doc))
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "victim3").write_text("precious\n")
    doc["files"]["evil/x/victim3"] = entry(tmp_path / "x" / "victim3")
    (dest / STATE).write_text(json.dumps(doc))
    r = sync_project(load_project(project))
    assert all(v.read_text() == "precious\n" for v in victims.values())
    assert (tmp_path / "x" / "victim3").read_text() == "precious\n"
    assert r.removed == [] and len(r.ignored) == len(planted)
    assert any("'../../victim1'" in w and "leaves the version" in w for w in r.warnings)
    assert any("is absolute" in w for w in r.warnings)
    assert any("evil/x/victim3" in w and "resolves outside" in w for w in r.warnings)
    # Reported once: the rewritten state file holds only what sync placed.
    assert sorted(json.loads((dest / STATE).read_text())["files"]) == ["m/x86_64/a/b", "m/x86_64/c", "m/x86_64/keep"]
    assert sync_project(load_project(project)).ignored == []


def test_lockfile_entry_leaving_dest_is_ignored(zoo: Store, project: Path, tmp_path: Path) -> None:
    sync_project(load_project(project))
    lock = project / "zoo.lock"
    text = lock.read_text()
    assert 'arch = "x86_64", path = "c"' in text
    lock.write_text(text.replace('arch = "x86_64", path = "c"', 'arch = "../../..", path = "c"'))
    r = sync_project(load_project(project), frozen=True)
    assert any("zoo.lock entry 'm/../../../c'" in w for w in r.warnings) and r.ignored
    assert not (tmp_path / "c").exists() and not (project / "c").exists()


@pytest.fixture
def planted_temp_names(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every other temp name is `.zoostore-tmp-planted`: where a symlink waits under that name,
    creating the temp file must fail (and retry) rather than follow it."""
    real = zoostore.core.atomic.temp_name
    calls = iter(range(10**6))

    def fake() -> str:
        return ".zoostore-tmp-planted" if next(calls) % 2 == 0 else real()

    monkeypatch.setattr(zoostore.core.atomic, "temp_name", fake)
    monkeypatch.setattr(zoostore.ops.place, "temp_name", fake)
    yield ".zoostore-tmp-planted"


@pytest.mark.parametrize("link", ["auto", "copy", "symlink"])
def test_temp_files_never_follow_a_planted_symlink(zoo: Store, project: Path, tmp_path: Path,
                                                   planted_temp_names: str, link: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for d in (project / "models", project / "models/m/x86_64", project / "models/m/x86_64/a"):
        d.mkdir(parents=True, exist_ok=True)
        (d / planted_temp_names).symlink_to(victim)
    sync_project(load_project(project), link=link)
    assert victim.read_text() == "precious\n"
    assert (project / "models/m/x86_64/c").read_text() == "v1 c\n"
    assert json.loads((project / "models" / STATE).read_text())["format"] == 1
    assert (project / "models" / planted_temp_names).is_symlink()


def test_state_file_symlink_is_replaced_not_written_through(zoo: Store, project: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (project / "models").mkdir()
    (project / "models" / STATE).symlink_to(victim)
    sync_project(load_project(project))
    assert victim.read_text() == "precious\n" and not (project / "models" / STATE).is_symlink()


def test_symlinked_model_directory_is_still_refused(zoo: Store, project: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (project / "models").mkdir()
    (project / "models/m").symlink_to(tmp_path / "out", target_is_directory=True)
    with pytest.raises(UsageError, match="symlink"):
        sync_project(load_project(project))
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("link", ["auto", "copy"])
def test_symlinked_model_directory_is_refused_even_holding_the_wanted_bytes(
        zoo: Store, project: Path, tmp_path: Path, link: str) -> None:
    """A file without a state entry that already holds its blob is adopted as placed (a lost
    state file), but never through a symlinked directory: sync does not claim, nor later
    replace, files outside dest."""
    out = tree(tmp_path / "out", {"x86_64/a/b": "v1 a/b\n", "x86_64/c": "v1 c\n", "x86_64/keep": "k\n"})
    (project / "models").mkdir()
    (project / "models/m").symlink_to(out, target_is_directory=True)
    with pytest.raises(UsageError, match="symlink"):
        sync_project(load_project(project), link=link)
    state = project / "models" / STATE
    assert not state.exists() or json.loads(state.read_text())["files"] == {}


@pytest.mark.parametrize("link", ["auto", "copy"])
def test_file_name_of_250_bytes_publishes_and_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, link: str) -> None:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    store, _ = init_store(tmp_path / "store")
    name = "é" * 100 + "w" * 46 + ".bin"   # 200 + 46 + 4 = 250 bytes in UTF-8
    assert len(name.encode()) == 250
    publish(store, "m", "1.0.0", [tree(tmp_path / "src", {name: "long\n"})], arch="x86_64", check=False)
    project = tmp_path / "project"
    project.mkdir()
    pin(project, "1.0.0")
    r = sync_project(load_project(project), link=link)
    assert r.placed == [f"m/x86_64/{name}"]
    assert (project / "models/m/x86_64" / name).read_text() == "long\n"
    assert sync_project(load_project(project), link=link).unchanged == 1


def test_force_warning_tells_a_modified_placed_file_from_a_foreign_one(zoo: Store, project: Path) -> None:
    """`sync --force` over a file sync had placed and the user then edited warned 'replaced a
    file sync did not place': it had placed it. The warning now says which of the two it was."""
    sync_project(load_project(project), link="copy")
    placed = project / "models" / "m" / "x86_64" / "keep"
    placed.chmod(0o644)
    placed.write_text("edited\n")
    (project / "models" / "m" / "x86_64" / "c").unlink()
    (project / "models" / "m" / "x86_64" / "c").write_text("mine\n")
    state = json.loads((project / "models" / STATE).read_text())
    del state["files"]["m/x86_64/c"]   # as if the user's file had been there first
    (project / "models" / STATE).write_text(json.dumps(state))
    r = sync_project(load_project(project), force=True, link="copy")
    assert sorted(r.replaced) == ["m/x86_64/c", "m/x86_64/keep"]
    by_path = {w.split(": ", 1)[0].rsplit("/", 1)[-1]: w for w in r.warnings}
    assert "modified since sync placed it" in by_path["keep"] and "did not place" not in by_path["keep"], r.warnings
    assert "did not place" in by_path["c"], r.warnings
    assert placed.read_text() == "k\n"


def test_sync_with_another_link_mode_replaces_symlinks_it_placed(zoo: Store, project: Path) -> None:
    """`sync --link symlink`, then `sync --link copy` (say, to ship the folder): '0 placed, N
    unchanged', and the symlinks into the cache stayed. An explicit --link now re-places files
    placed the other way; `auto` accepts either."""
    sync_project(load_project(project), link="symlink")
    placed = project / "models" / "m" / "x86_64" / "keep"
    assert placed.is_symlink()
    r = sync_project(load_project(project), link="copy")
    assert len(r.placed) == 3 and r.unchanged == 0
    assert not placed.is_symlink() and placed.read_text() == "k\n"
    for link in ("copy", "hardlink", "auto"):
        assert sync_project(load_project(project), link=link).unchanged == 3
    r = sync_project(load_project(project), link="symlink")
    assert len(r.placed) == 3 and placed.is_symlink()
