"""The no-op sync that does not parse zoo.lock (zoostore.ops.sync_fast): it is taken only when
the state file is exactly the placement of these zoo.lock bytes, with this selection and these
requirements, and nothing in dest moved; every other case takes the full path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from zoostore.core.errors import DestinationConflictError, LockOutOfDateError
from zoostore.documents.lockfile import Lock
from zoostore.documents.project import load_project
from zoostore.ops.place import STATE_NAME
from zoostore.ops.publish import publish
from zoostore.ops.sync import sync_project
from zoostore.repository import init_store


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    zoo, _ = init_store(tmp_path / "store")
    for version, seed in (("1.0.0", 1), ("1.1.0", 2)):
        for arch in ("x86_64", "aarch64"):
            src = tmp_path / "src" / version / arch
            src.mkdir(parents=True)
            for i in range(3):
                (src / f"f{i}.bin").write_bytes(os.urandom(1000 + seed * 10 + i))
            publish(zoo, "net", version, [src], arch=arch, check=False)
    proj = tmp_path / "project"
    proj.mkdir()
    write_config(proj, "1.0.0")
    return proj


def write_config(proj: Path, spec: str) -> None:
    (proj / "zoo.toml").write_text(f'store = "../store"\narchs = ["x86_64", "aarch64"]\n[models]\nnet = "{spec}"\n')


def no_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> Lock:
        raise AssertionError("zoo.lock was parsed")

    monkeypatch.setattr(Lock, "loads", fail)


def test_noop_sync_does_not_parse_the_lock(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = sync_project(load_project(project))
    assert len(first.placed) == 6
    record = json.loads((project / "models" / STATE_NAME).read_text())["lock"]
    assert set(record) == {"lock", "select", "project"} and record["project"]
    with monkeypatch.context() as m:
        no_parsing(m)
        again = sync_project(load_project(project), locked=True)
        assert again.unchanged == 6 and not again.placed
        assert sync_project(load_project(project), frozen=True).unchanged == 6


def test_a_changed_requirement_is_still_out_of_date(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync_project(load_project(project))
    write_config(project, "1.1.0")   # zoo.lock unchanged, zoo.toml moved
    with pytest.raises(LockOutOfDateError):
        sync_project(load_project(project), locked=True)
    # --frozen uses zoo.lock as it is: still nothing to do, without parsing it
    no_parsing(monkeypatch)
    assert sync_project(load_project(project), frozen=True).unchanged == 6


def test_a_new_lock_is_parsed_and_placed(project: Path) -> None:
    sync_project(load_project(project))
    write_config(project, "1.1.0")
    up = sync_project(load_project(project))
    assert up.relocked and len(up.placed) == 6
    assert sync_project(load_project(project), locked=True).unchanged == 6
    # the same bytes rewritten (a git checkout) keep the fast path; other bytes do not
    lock_path = project / "zoo.lock"
    lock_path.write_bytes(lock_path.read_bytes())
    assert sync_project(load_project(project), locked=True).unchanged == 6
    lock_path.write_text(lock_path.read_text() + "\n")
    assert sync_project(load_project(project), locked=True).unchanged == 6   # parsed: still nothing to do


def test_a_moved_file_takes_the_full_path(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync_project(load_project(project))
    target = project / "models" / "net" / "x86_64" / "f0.bin"
    target.unlink()
    again = sync_project(load_project(project), locked=True)
    assert again.placed == ["net/x86_64/f0.bin"] and again.unchanged == 5
    # a file of the user's at that path conflicts as before
    target.unlink()
    target.write_bytes(b"mine")
    with pytest.raises(DestinationConflictError):
        sync_project(load_project(project), locked=True)
    # a conflict leaves no record: the next no-op must look again, and finds the conflict again
    assert "lock" not in json.loads((project / "models" / STATE_NAME).read_text())
    with pytest.raises(DestinationConflictError):
        sync_project(load_project(project), locked=True)


def test_another_selection_or_verify_takes_the_full_path(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sync_project(load_project(project))
    only = sync_project(load_project(project), archs=["x86_64"])
    assert len(only.removed) == 3 and only.unchanged == 3
    both = sync_project(load_project(project))
    assert len(both.placed) == 3 and both.unchanged == 3
    no_parsing(monkeypatch)
    with pytest.raises(AssertionError, match="parsed"):
        sync_project(load_project(project), verify=True)
    with pytest.raises(AssertionError, match="parsed"):
        sync_project(load_project(project), archs=["aarch64"])


def test_a_forged_record_cannot_hide_an_invalid_state_entry(project: Path) -> None:
    sync_project(load_project(project))
    state_path = project / "models" / STATE_NAME
    doc = json.loads(state_path.read_text())
    doc["files"]["../outside"] = dict(next(iter(doc["files"].values())))
    state_path.write_text(json.dumps(doc))
    report = sync_project(load_project(project), locked=True)
    assert any("../outside" in entry for entry in report.ignored)
