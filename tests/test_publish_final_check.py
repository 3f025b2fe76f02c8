"""The publish's final check: objects the publish uploaded itself (not only those it reused)
must still exist when the manifest is written (issue 13). A gc with a grace period shorter
than a publish can delete a publish's new packs before any manifest names them; the publish
then uploads again or fails, and never lists a version nobody can read.

Phases are driven as in tests/test_gc_state_machine.py: `plan_publish`, `PublishPlan.upload`,
then the deletion a too-eager gc would make, then `PublishPlan.commit`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoostore.core.digest import Digest
from zoostore.core.errors import ConflictError
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.publish import PublishPlan, plan_publish, publish
from zoostore.ops.verify import verify_store
from zoostore.repository import Store, init_store, open_store
from zoostore.storage.pack import pack_key
from zoostore.storage.recipe import Recipe, blob_key

SMALL = StoreConfig(pack_target_size=64 * 1024)


def _files(d: Path, seed: int) -> Path:
    d.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rng.normal(0, 1, 100_000).astype(np.float32).tofile(d / "weights.bin")  # several packs
    (d / "labels.txt").write_text(f"labels {seed}\n")
    return d


def _recipe(zoo: Store, blob: Digest) -> Recipe:
    return Recipe.decode(blob, zoo.backend.get(blob_key(blob)))


def _new_packs(plan: PublishPlan) -> list[str]:
    return sorted({pack_key(p) for e in plan.entries.values() for p in _recipe(plan.store, e.blob).packs})


def _readable(url: str, plan: PublishPlan, tmp: Path, *, verify: bool = True) -> None:
    """Every file of the version reads back, verified, from a freshly opened store (and
    `verify` finds nothing wrong with the store)."""
    zoo = open_store(url)
    for path, entry in plan.entries.items():
        out = zoo.blobs.get_file(entry.blob, tmp / "out" / path)
        assert out.read_bytes() == plan.files[path].read_bytes()
    assert not verify or verify_store(zoo).problems == []


@pytest.fixture
def zoo(tmp_path: Path) -> Store:
    store, _ = init_store(tmp_path / "store", config=SMALL)
    return store


@pytest.mark.parametrize("what", ["new-pack", "all-new-packs", "new-recipe"])
def test_objects_deleted_after_upload_are_uploaded_again(zoo: Store, tmp_path: Path, what: str) -> None:
    plan = plan_publish(zoo, "m", "1.0.0", [_files(tmp_path / "src", 1)])
    plan.upload()
    packs = _new_packs(plan)
    assert len(packs) >= 2
    weights = plan.entries["weights.bin"].blob
    doomed = {"new-pack": packs[:1], "all-new-packs": packs, "new-recipe": [blob_key(weights)]}[what]
    zoo.backend.delete(doomed)  # what a gc with too short a grace does between upload and commit
    plan.commit()
    assert "1.0.0" in zoo.manifest("m").versions
    for key in doomed:
        assert zoo.backend.exists(key) or what == "new-pack"  # re-uploaded (a pack may be cut differently)
    _readable(zoo.url, plan, tmp_path)


def test_reused_pack_deleted_after_upload_is_uploaded_again(zoo: Store, tmp_path: Path) -> None:
    publish(zoo, "m", "1.0.0", [_files(tmp_path / "v1", 1)], check=False)
    src = _files(tmp_path / "v2", 1)
    (src / "labels.txt").write_text("new labels\n")  # weights.bin reused as it is
    plan = plan_publish(zoo, "m", "1.1.0", [src])
    plan.upload()
    zoo.backend.delete([pack_key(p) for p in _recipe(zoo, plan.entries["weights.bin"].blob).packs])
    plan.commit()
    # The deleted pack also held 1.0.0's labels.txt: that damage is this test's, not the publish's.
    _readable(zoo.url, plan, tmp_path, verify=False)


def test_objects_deleted_again_after_the_second_upload_fail_the_publish(zoo: Store, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_publish(zoo, "m", "1.0.0", [_files(tmp_path / "src", 1)])
    plan.upload()
    zoo.backend.delete(_new_packs(plan)[:1])
    real = zoo.blobs.put_files

    def upload_then_gc(*args: Any, **kwargs: Any) -> Any:
        results = real(*args, **kwargs)
        zoo.backend.delete([k for k in (info.key for info in zoo.backend.list("packs/"))])
        return results

    monkeypatch.setattr(zoo.blobs, "put_files", upload_then_gc)
    with pytest.raises(ConflictError, match=r"deleted from .* while this publish ran.*nothing was published"):
        plan.commit()
    with pytest.raises(FileNotFoundError):
        zoo.manifest("m")  # no manifest lists the unreadable version


def test_final_check_costs_one_exists_per_object(zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_publish(zoo, "m", "1.0.0", [_files(tmp_path / "src", 1)])
    plan.upload()
    calls: list[str] = []
    real = type(zoo.backend).exists
    monkeypatch.setattr(type(zoo.backend), "exists", lambda self, key: calls.append(key) or real(self, key))
    plan.commit()
    assert sorted(calls) == sorted([blob_key(e.blob) for e in plan.entries.values()] + _new_packs(plan))
    assert not any(os.fspath(k).startswith("manifests/") for k in calls)
