"""`zoostore publish-release`: several models as one release, planned first, uploaded through one
writer (shared packs), committed model by model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_store import write_dir

from zoostore.cli import main
from zoostore.core.errors import ImmutableError, UsageError
from zoostore.ops.publish import plan_publish, publish
from zoostore.ops.release import execute_release
from zoostore.documents.store_config import StoreConfig
from zoostore.repository import Store, init_store, open_store


def _files(seed: int) -> dict[str, bytes]:
    """A model's files: 300 KiB that compress (several chunks) and a small config."""
    rows = b"".join(b"row %08d of model %d\n" % (i * seed, seed) for i in range(13000))
    return {"weights.bin": rows, "config.json": b'{"seed": %d}' % seed}


@pytest.fixture
def zoo(tmp_path: Path) -> Store:
    return init_store(tmp_path / "store")[0]


def _root(zoo: Store) -> Path:
    return Path(zoo.url.removeprefix("file://"))


def _objects(zoo: Store) -> set[str]:
    root = _root(zoo)
    return {str(p.relative_to(root)) for sub in ("packs", "blobs") for p in (root / sub).rglob("*") if p.is_file()}


def _models(tmp_path: Path, names: list[str]) -> list[Path]:
    return [write_dir(tmp_path / "release" / n, _files(i + 1)) for i, n in enumerate(names)]


def _conflicting(zoo: Store, tmp_path: Path, names: list[str], arch: str = "any") -> list[Path]:
    """Release folders for `names`, each model already published as 1.0.0 with other bytes."""
    for name in names:
        publish(zoo, name, "1.0.0", [write_dir(tmp_path / "other" / name, {"weights.bin": b"other " + name.encode()})],
                arch=arch, check=False)
    return _models(tmp_path, names)


def test_release_publishes_every_model_as_publishing_each_would_and_shares_packs(zoo: Store, tmp_path: Path,
                                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _models(tmp_path, ["alpha", "beta", "gamma"])
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--arch", "x86_64", "--no-check",
                 "--tag", "bleedingedge"]) == 0
    out = capsys.readouterr()
    assert "alpha@1.0.0 (x86_64): 2 file(s)" in out.out and "published 3 model(s) as 1.0.0" in out.err
    # The same blobs as publishing each model alone into another store.
    alone = init_store(tmp_path / "alone")[0]
    store = open_store(zoo.url)
    packs: dict[str, set[str]] = {}
    for d in dirs:
        publish(alone, d.name, "1.0.0", [d], arch="x86_64", check=False)
        m = store.manifest(d.name)
        assert m.versions["1.0.0"].files["x86_64"] == alone.manifest(d.name).versions["1.0.0"].files["x86_64"]
        assert m.tags == {"bleedingedge": "1.0.0"}
        for path, entry in m.versions["1.0.0"].files["x86_64"].items():
            packs.setdefault(d.name, set()).update(str(p) for p in store.blobs.recipe(entry.blob).packs)
            assert store.blobs.read_range(entry.blob, 0, entry.size) == (d / path).read_bytes()
    # One writer: the models' chunks share a pack (each model alone would end its own).
    assert packs["alpha"] & packs["beta"] & packs["gamma"]
    assert len({k for k in _objects(zoo) if k.startswith("packs")}) < len({k for k in _objects(alone) if k.startswith("packs")})
    assert main(["verify", zoo.url]) == 0


def test_an_immutable_conflict_in_any_model_refuses_the_release_before_anything_is_uploaded(zoo: Store, tmp_path: Path) -> None:
    dirs = _models(tmp_path, ["alpha", "beta"])
    other = write_dir(tmp_path / "other", {"weights.bin": b"different bytes"})
    publish(zoo, "beta", "1.0.0", [other], arch="x86_64", check=False)
    before = _objects(zoo)
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--arch", "x86_64", "--no-check"]) == 7
    assert _objects(zoo) == before
    assert zoo.models() == ["beta"]


def test_publishing_the_release_again_uploads_nothing(zoo: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _models(tmp_path, ["alpha", "beta"])
    args = ["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--arch", "x86_64", "--no-check"]
    assert main(args) == 0
    before = _objects(zoo)
    capsys.readouterr()
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["models"]
    assert [(r["model"], r["unchanged"], r["new_stored_bytes"]) for r in doc] == [("alpha", True, 0), ("beta", True, 0)]
    assert _objects(zoo) == before


def test_a_failed_commit_names_the_models_already_published(zoo: Store, tmp_path: Path) -> None:
    dirs = _models(tmp_path, ["alpha", "beta"])
    plans = [plan_publish(zoo, d.name, "1.0.0", [d], arch="x86_64") for d in dirs]
    # A concurrent publisher puts other bytes in beta@1.0.0 between the plan and the commit.
    publish(open_store(zoo.url), "beta", "1.0.0", [write_dir(tmp_path / "other", {"x": b"x"})], arch="x86_64", check=False)
    with pytest.raises(ImmutableError, match=r"published before this failed: alpha@1\.0\.0"):
        execute_release(plans)
    assert "1.0.0" in open_store(zoo.url).manifest("alpha").versions


def test_model_names_dry_run_and_bad_arguments(zoo: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _models(tmp_path, ["alpha", "beta"])
    before = _objects(zoo)
    assert main(["publish-release", zoo.url, "2.0.0", f"renamed={dirs[0]}", str(dirs[1]), "--no-check",
                 "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["models"]
    assert [(p["model"], p["dry_run"], sorted(p["new"])) for p in doc] == [
        ("renamed", True, ["config.json", "weights.bin"]), ("beta", True, ["config.json", "weights.bin"])]
    assert _objects(zoo) == before and zoo.models() == []
    # The same model twice is refused before anything is read; so is a file or a missing folder.
    assert main(["publish-release", zoo.url, "2.0.0", f"alpha={dirs[1]}", str(dirs[0]), "--no-check"]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["publish-release", zoo.url, "2.0.0", str(dirs[0] / "config.json"), "--no-check"]) == 2
    assert "is not a directory" in capsys.readouterr().err
    assert main(["publish-release", zoo.url, "2.0.0", "Bad Name=" + str(dirs[0]), "--no-check"]) == 2
    assert zoo.models() == [] and _objects(zoo) == before


def test_the_api_refuses_two_plans_of_one_model(zoo: Store, tmp_path: Path) -> None:
    d = _models(tmp_path, ["alpha"])[0]
    plans = [plan_publish(zoo, "alpha", "1.0.0", [d], arch=a) for a in ("x86_64", "aarch64")]
    with pytest.raises(UsageError, match="given twice"):
        execute_release(plans)
    with pytest.raises(UsageError, match="no models given"):
        execute_release([])
    assert zoo.models() == [] and not _objects(zoo)


def test_dir_arguments_name_models_as_given_and_never_default_to_the_working_directory(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _models(tmp_path, ["alpha", "beta"])
    links = tmp_path / "out"
    links.mkdir()
    (links / "yolo").symlink_to(dirs[0], target_is_directory=True)  # a build tree of links
    monkeypatch.chdir(tmp_path / "release")
    assert main(["publish-release", zoo.url, "1.0.0", str(links / "yolo"), "beta/", ".", "--no-check",
                 "--dry-run", "--json"]) == 0
    assert [p["model"] for p in json.loads(capsys.readouterr().out)["models"]] == ["yolo", "beta", "release"]
    # `yolo=$OUT` with $OUT unset would otherwise publish the working directory as yolo.
    assert main(["publish-release", zoo.url, "1.0.0", "yolo=", "--no-check"]) == 2
    assert "names no directory" in capsys.readouterr().err
    # A directory that is no model name is refused with the way out, before any model is read.
    (tmp_path / "release" / "My Model").mkdir()
    assert main(["publish-release", zoo.url, "1.0.0", "alpha", "My Model", "--no-check"]) == 2
    assert "invalid model name 'My Model'" in (err := capsys.readouterr().err) and "MODEL=DIR" in err
    assert zoo.models() == [] and not _objects(zoo)


def test_the_grace_period_counts_from_the_shared_upload_not_from_planning_the_other_models(
        tmp_path: Path) -> None:
    from dataclasses import replace

    from zoostore.core.errors import ConflictError

    zoo = init_store(tmp_path / "store", config=StoreConfig(grace_seconds=3600))[0]
    dirs = _models(tmp_path, ["alpha", "beta"])
    plans = [plan_publish(zoo, d.name, "1.0.0", [d], arch="x86_64") for d in dirs]
    plans[0].started -= 3600  # as if planning the other models (ONNX checks, hashing) took an hour
    assert [r.model for r in execute_release(plans)] == ["alpha", "beta"]
    # An upload slower than half the grace period still commits nothing.
    zoo.config = replace(zoo.config, grace_seconds=0.0)
    later = [plan_publish(zoo, d.name, "1.1.0", [d], arch="x86_64") for d in dirs]
    with pytest.raises(ConflictError, match="more than half the store's gc grace period"):
        execute_release(later)
    assert sorted(open_store(zoo.url).manifest("alpha").versions) == ["1.0.0"]


def test_a_warning_about_the_store_or_the_version_is_said_once_not_once_per_model(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _models(tmp_path, ["alpha", "beta", "gamma"])
    # gs:// and az:// stores (the generic backend) have no atomic compare-and-swap.
    monkeypatch.setattr(Store, "cas_warning", lambda self: "no atomic compare-and-swap here")
    assert main(["publish-release", zoo.url, "1.0.0-20220504", *map(str, dirs), "--no-check"]) == 0
    err = capsys.readouterr().err
    assert err.count("no atomic compare-and-swap here") == 1
    assert err.count("which looks like the date 2022-05-04") == 1


def test_an_unchanged_model_gets_its_tags_and_a_file_two_models_share_is_stored_once(
        zoo: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    alpha = _models(tmp_path, ["alpha"])[0]
    publish(zoo, "alpha", "1.0.0", [alpha], arch="x86_64", check=False)
    shared = (alpha / "weights.bin").read_bytes()
    beta = write_dir(tmp_path / "release" / "beta", {"weights.bin": shared, "copy/weights.bin": shared,
                                                     "config.json": b'{"beta": true}'})
    gamma = write_dir(tmp_path / "release" / "gamma", {"w.bin": b"gamma " * 50000, "again.bin": b"gamma " * 50000})
    before = _objects(zoo)
    assert main(["publish-release", zoo.url, "1.0.0", str(alpha), str(beta), str(gamma), "--arch", "x86_64",
                 "--no-check", "--tag", "stable", "--json"]) == 0
    doc = {m["model"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert doc["alpha"]["unchanged"] and doc["alpha"]["new_stored_bytes"] == 0
    assert doc["beta"]["new_stored_bytes"] < 100  # only config.json: the weights are alpha's blob
    store = open_store(zoo.url)
    assert {m: store.manifest(m).tags for m in ("alpha", "beta", "gamma")} == {m: {"stable": "1.0.0"} for m in
                                                                              ("alpha", "beta", "gamma")}
    files = store.manifest("beta").versions["1.0.0"].files["x86_64"]
    alpha_files = store.manifest("alpha").versions["1.0.0"].files["x86_64"]
    assert files["weights.bin"] == files["copy/weights.bin"] == alpha_files["weights.bin"]
    new_blobs = {k for k in _objects(zoo) - before if k.startswith("blobs")}
    assert len(new_blobs) == 2  # beta's config.json and gamma's one blob, not the shared ones again
    g = store.manifest("gamma").versions["1.0.0"].files["x86_64"]
    assert store.blobs.read_range(g["again.bin"].blob, 0, g["again.bin"].size) == b"gamma " * 50000
    assert main(["verify", zoo.url]) == 0


def test_a_chunk_reused_from_another_models_versions_is_freshened_like_any_reuse(tmp_path: Path) -> None:
    import os
    import random

    from zoostore.storage.pack import pack_key

    zoo = init_store(tmp_path / "store", config=StoreConfig(grace_seconds=3600))[0]
    rng = random.Random(7)
    a_bytes, b_bytes = rng.randbytes(1 << 20), rng.randbytes(1 << 20)
    publish(zoo, "alpha", "1.0.0", [write_dir(tmp_path / "a1", {"w.bin": a_bytes})], check=False)
    publish(zoo, "beta", "1.0.0", [write_dir(tmp_path / "b1", {"w.bin": b_bytes})], check=False)
    beta_packs = {pack_key(p) for p in zoo.blobs.recipe(zoo.manifest("beta").versions["1.0.0"].files["any"]["w.bin"].blob).packs}
    old = zoo.backend.now() - 7200  # older than the grace period: gc could delete them if unreferenced
    for info in list(zoo.backend.list("packs/")) + list(zoo.backend.list("blobs/")):
        os.utime(_root(zoo) / info.key, (old, old))
    # alpha 2.0.0 holds beta's 1.0.0 bytes with a new tail: its chunks come from beta's dedup index
    # (beta 2.0.0 is other bytes, so only alpha's reuse can freshen beta's old pack).
    plans = [plan_publish(zoo, "alpha", "2.0.0", [write_dir(tmp_path / "a2", {"w.bin": b_bytes + b"tail"})]),
             plan_publish(zoo, "beta", "2.0.0", [write_dir(tmp_path / "b2", {"w.bin": rng.randbytes(1 << 16)})])]
    results = execute_release(plans)
    assert results[0].new_stored_bytes < 100_000  # not alpha's 1 MiB again: beta's chunks were reused
    store = open_store(zoo.url)
    alpha2 = store.manifest("alpha").versions["2.0.0"].files["any"]["w.bin"]
    assert {pack_key(p) for p in store.blobs.recipe(alpha2.blob).packs} & beta_packs
    cutoff = zoo.backend.now() - 1800
    assert beta_packs and all(zoo.backend.stat(k).mtime > cutoff for k in beta_packs)
    assert store.blobs.read_range(alpha2.blob, 0, alpha2.size) == b_bytes + b"tail"


def _beta_loses_its_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Model beta's commit fails as if a concurrent publisher won its manifest (until
    `monkeypatch.undo()`)."""
    from zoostore.core.errors import ConflictError
    from zoostore.ops.publish import PublishPlan

    commit = PublishPlan.commit

    def beta_loses(plan: PublishPlan) -> object:
        if plan.model == "beta":
            raise ConflictError("beta: lost a race (simulated)")
        return commit(plan)

    monkeypatch.setattr(PublishPlan, "commit", beta_loses)


def test_a_commit_that_fails_midway_exits_with_its_code_and_running_again_finishes_the_release(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _models(tmp_path, ["alpha", "beta", "gamma"])
    _beta_loses_its_commit(monkeypatch)
    args = ["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check"]
    assert main(args) == 7
    err = capsys.readouterr().err
    assert "lost a race" in err and "published before this failed: alpha@1.0.0;" in err
    assert zoo.models() == ["alpha"]
    uploaded = _objects(zoo)
    monkeypatch.undo()
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["models"]
    assert [(m["model"], m["unchanged"], m["new_stored_bytes"]) for m in doc] == [
        ("alpha", True, 0), ("beta", False, 0), ("gamma", False, 0)]  # the first run uploaded them
    assert _objects(zoo) == uploaded and open_store(zoo.url).models() == ["alpha", "beta", "gamma"]


def test_an_immutable_refusal_explains_precedence_only_when_the_version_was_spelt_otherwise(
        zoo: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    publish(zoo, "alpha", "1.0.0+20220504", [write_dir(tmp_path / "old", {"w.bin": b"old"})], check=False)
    alpha = _models(tmp_path, ["alpha"])[0]
    assert main(["publish-release", zoo.url, "1.0.0+20220504", str(alpha), "--no-check"]) == 7
    assert "equal in precedence" not in (err := capsys.readouterr().err) and "already published" in err
    assert main(["publish-release", zoo.url, "v1.0.0", str(alpha), "--no-check"]) == 7
    assert "v1.0.0 and 1.0.0+20220504 are equal in precedence" in capsys.readouterr().err


def test_planning_shows_the_hashing_as_progress(zoo: Store, tmp_path: Path) -> None:
    """A large release hashes for a while before anything is uploaded: each model's hashing is a
    progress task over its bytes."""
    from zoostore.core.progress import NullProgress

    class Recorder(NullProgress):
        def __init__(self) -> None:
            super().__init__()
            self.tasks: dict[str, list[int]] = {}

        def start(self, task: str, total: int | None = None, *, unit: str = "B") -> None:
            self.tasks[task] = [total or 0, 0]

        def advance(self, task: str, amount: int = 1) -> None:
            self.tasks[task][1] += amount

    progress = Recorder()
    dirs = _models(tmp_path, ["alpha", "beta"])
    plans = [plan_publish(zoo, d.name, "1.0.0", [d], arch="x86_64", progress=progress) for d in dirs]
    for d in dirs:
        size = sum(p.stat().st_size for p in d.iterdir())
        assert progress.tasks[f"hash {d.name}"] == [size, size]
    assert [p.model for p in plans] == ["alpha", "beta"] and zoo.models() == []


def test_json_of_a_release_that_fails_midway_lists_what_was_published(
        zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _models(tmp_path, ["alpha", "beta"])
    _beta_loses_its_commit(monkeypatch)
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check", "--json"]) == 7
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["complete"] is False and [m["model"] for m in doc["models"]] == ["alpha"]
    assert json.loads(err)["error"]["code"] == 7 and "alpha@1.0.0" in json.loads(err)["error"]["message"]
    monkeypatch.undo()
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["complete"] is True


def test_bad_arguments_say_which_is_wrong_as_given(zoo: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    _models(tmp_path, ["alpha"])
    monkeypatch.chdir(tmp_path / "release")
    # VERSION and DIR swapped: the version is named, not a missing directory called "1.0.0".
    assert main(["publish-release", zoo.url, "alpha", "1.0.0", "--no-check"]) == 2
    assert "invalid version 'alpha'" in (err := capsys.readouterr().err) and "not a directory" not in err
    # A missing path is said to be missing, a file to be no directory.
    assert main(["publish-release", zoo.url, "1.0.0", "alpah", "--no-check"]) == 2
    assert "'alpah' does not exist" in capsys.readouterr().err
    assert main(["publish-release", zoo.url, "1.0.0", "alpha/config.json", "--no-check"]) == 2
    assert "'alpha/config.json' is not a directory" in capsys.readouterr().err
    # One model given twice is shown as the user spelt both arguments.
    assert main(["publish-release", zoo.url, "1.0.0", "alpha", "./alpha/", "--no-check"]) == 2
    assert "given twice (alpha and ./alpha/)" in capsys.readouterr().err
    assert zoo.models() == [] and not _objects(zoo)


def test_the_summary_names_the_tags_set_and_the_models_already_published(
        zoo: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _models(tmp_path, ["alpha", "beta"])
    assert main(["publish-release", zoo.url, "1.0.0", str(dirs[0]), "--no-check"]) == 0
    capsys.readouterr()
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check", "--tag", "edge"]) == 0
    out, err = capsys.readouterr()
    assert "alpha@1.0.0 (any)" in out and "unchanged (already published); tagged edge" in out
    assert "beta@1.0.0 (any)" in out and out.count("tagged edge") == 2
    assert "published 2 model(s) as 1.0.0 (1 of them already published)" in err


def test_every_conflicting_model_is_named_in_one_run(zoo: Store, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _models(tmp_path, ["alpha", "beta", "gamma"])
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check"]) == 0
    before = _objects(zoo)
    for d in (dirs[0], dirs[2]):
        (d / "config.json").write_bytes(b'{"changed": true}')
    capsys.readouterr()
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check"]) == 7
    err = capsys.readouterr().err
    assert "2 of 3 models were refused" in err and "nothing was uploaded" in err
    assert "alpha@1.0.0 (any) is already published" in err and "gamma@1.0.0 (any) is already published" in err
    assert "beta@" not in err and _objects(zoo) == before


def test_every_model_failing_the_onnx_check_is_named_in_one_run(zoo: Store, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("onnx", reason="the ONNX check needs onnx (pip install 'zoostore[onnx]')")
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime (pip install 'zoostore[onnx]')")
    dirs = [write_dir(tmp_path / n, {"model.onnx": b"not a model " + n.encode()}) for n in ("alpha", "beta")]
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs)]) == 10
    err = capsys.readouterr().err
    assert "2 of 2 models were refused" in err and "alpha/model.onnx" in err and "beta/model.onnx" in err
    assert zoo.models() == [] and not _objects(zoo)


def test_many_refused_models_are_listed_three_in_full_then_by_name(zoo: Store, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Ten refused models in full took ~130 lines; three in full, then names, --json every one."""
    names = [f"m{i:02d}" for i in range(13)]
    dirs = _conflicting(zoo, tmp_path, names, arch="x86_64")
    args = ["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--arch", "x86_64", "--no-check"]
    assert main(args) == 7
    err = capsys.readouterr().err
    assert "13 of 13 models were refused" in err
    assert err.count("is already published with different content") == 3, err
    assert ("\n... and 10 more models refused: m03, m04, m05, m06, m07, m08, m09, m10, m11, m12 "
            "(--json lists each in full under error.refused)") in err
    assert len(err.splitlines()) < 50, err
    assert main([*args, "--json"]) == 7
    error = json.loads(capsys.readouterr().err)["error"]
    assert sorted({d["model"] for d in error["differences"]}) == names
    assert [r["model"] for r in error["refused"]] == names
    assert all(r["kind"] == "ImmutableError" and f"{r['model']}@1.0.0 (x86_64) is already published" in r["message"]
               for r in error["refused"])


def test_hidden_files_of_every_model_are_said_once(zoo: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dirs = _models(tmp_path, ["alpha", "beta"])
    for d in dirs:
        (d / ".DS_Store").write_bytes(b"\0")
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "hidden" in line]
    assert len(notes) == 1 and notes[0].startswith("zoostore: skipped 2 hidden files (alpha/.DS_Store, beta/.DS_Store): ")
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check", "-q"]) == 0
    assert "hidden" not in capsys.readouterr().err


def test_a_conflict_after_a_failed_check_keeps_its_differences_for_json(zoo: Store, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """The conflict's message says '--json lists every one under error.differences'; that held
    only when the first refused model was a conflict, not a failed ONNX check."""
    pytest.importorskip("onnx", reason="the ONNX check needs onnx (pip install 'zoostore[onnx]')")
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime (pip install 'zoostore[onnx]')")
    alpha = write_dir(tmp_path / "alpha", {"model.onnx": b"not a model"})
    many = {f"lib{i:02d}.so": b"new %d" % i for i in range(12)}
    publish(zoo, "beta", "1.0.0", [write_dir(tmp_path / "old" / "beta", {p: b"old " + b for p, b in many.items()})],
            check=False)
    beta = write_dir(tmp_path / "beta", many)
    assert main(["publish-release", zoo.url, "1.0.0", str(alpha), str(beta), "--json"]) == 10
    error = json.loads(capsys.readouterr().err)["error"]
    assert "... and 2 more (--json lists every one under error.differences)" in error["message"]
    assert [d["path"] for d in error["differences"]] == sorted(many)


def test_each_models_shadowed_path_warning_names_the_model(zoo: Store, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Two models whose `any` file differs from their x86_64 one warned with the same text
    ('1.0.0 already has w under x86_64'), which the terminal says once: one model's was lost."""
    for name in ("alpha", "beta"):
        publish(zoo, name, "1.0.0", [write_dir(tmp_path / "x86" / name, {"w": b"x86 " + name.encode()})],
                arch="x86_64", check=False)
    dirs = [write_dir(tmp_path / name, {"w": b"any " + name.encode()}) for name in ("alpha", "beta")]
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "already has w under x86_64" in line]
    assert [line.split(" already has")[0] for line in warned] == ["zoostore: warning: alpha@1.0.0",
                                                                 "zoostore: warning: beta@1.0.0"], warned


def test_one_refused_model_beyond_those_listed_is_one_more_model(zoo: Store, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    names = [f"m{i:02d}" for i in range(4)]
    dirs = _conflicting(zoo, tmp_path, names)
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check"]) == 7
    assert "\n... and 1 more model refused: m03 (--json" in capsys.readouterr().err


def test_every_models_invalid_model_toml_is_named_in_one_run(zoo: Store, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A model.toml names all its problems at once, but publish-release stopped at the first
    model with one: a zoo whose descriptors all lacked a key took a run per model."""
    dirs = _models(tmp_path, ["alpha", "beta", "gamma"])
    for d in (dirs[0], dirs[2]):
        (d / "model.toml").write_text('framework = "onnx"\n')
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check"]) == 2  # bad input
    err = capsys.readouterr().err
    assert "2 of 3 models were refused" in err and "nothing was uploaded" in err, err
    assert "alpha/model.toml: 4 problems" in err and "gamma/model.toml: 4 problems" in err, err
    assert zoo.models() == [] and not _objects(zoo)
    # --json: every problem of both files as data, not only in the message.
    assert main(["publish-release", zoo.url, "1.0.0", *map(str, dirs), "--no-check", "--json"]) == 2
    error = json.loads(capsys.readouterr().err)["error"]
    assert error["kind"] == "DescriptorError" and len(error["problems"]) == 8
    assert {(Path(p["file"]).parent.name, p["key"]) for p in error["problems"]} == {
        (m, k) for m in ("alpha", "gamma") for k in ("network", "model_license", "inputs", "outputs")}


def test_quiet_publish_and_release_print_nothing_on_success_but_still_warn(zoo: Store, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """-q is for scripts that need only the exit status: no hash line per file, no summary;
    a warning (a date written as a prerelease) still reaches stderr."""
    dirs = _models(tmp_path, ["alpha", "beta"])
    assert main(["publish", zoo.url, "alpha", "1.0.0", str(dirs[0]), "--no-check", "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["publish", zoo.url, "alpha", "1.0.0", str(dirs[0]), "--no-check", "-q"]) == 0  # unchanged
    assert capsys.readouterr() == ("", "")
    assert main(["publish-release", zoo.url, "2.0.0", *map(str, dirs), "--no-check", "-q"]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["publish", zoo.url, "alpha", "1.2.3-20260504", str(dirs[0]), "--no-check", "-q"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("zoostore: warning: ") and "+20260504" in out.err
    assert main(["publish-release", zoo.url, "1.2.4-20260504", *map(str, dirs), "--no-check", "-q"]) == 0
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("zoostore: warning: ") == 1
