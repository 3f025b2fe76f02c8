"""Manifests and publishing: immutability, archs, tags, yanking, dedup, CAS under concurrency."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zoostore.cli import main as cli
from zoostore.documents.store_config import StoreConfig
from zoostore.core.errors import (
    FormatError, ImmutableError, InvalidPathError, NotFoundError, ReadOnlyError, ResolutionError,
    UsageError,
)
from zoostore.documents.manifest import Manifest, manifest_key
from zoostore.core.names import check_relpath, normalize_arch
from zoostore.ops.publish import plan_publish, publish
from zoostore.repository import init_store, open_store
from zoostore.storage.pack import pack_key

SMALL = StoreConfig(pack_target_size=256 * 1024)


def write_model(d: Path, seed: int = 0, n: int = 200_000, extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    np.random.default_rng(seed).normal(0, 0.05, n).astype(np.float32).tofile(d / "weights.bin")
    (d / "config.json").write_text(json.dumps({"seed": seed, "extra": extra}))
    return d


@pytest.fixture
def zoo(tmp_path: Path):  # type: ignore[no-untyped-def]
    z, _ = init_store(tmp_path / "store", config=SMALL)
    return z


# ------------------------------------------------------------------ paths and archs
@pytest.mark.parametrize("bad", ["", "../x", "a/../../x", "/etc/passwd", "C:/x", "c:x", "a\\b", "a//b", "./a", "a/./b", "a/"])
def test_paths_that_leave_the_version_are_refused(bad: str) -> None:
    with pytest.raises(InvalidPathError):
        check_relpath(bad)


@pytest.mark.parametrize("alias,name", [("amd64", "x86_64"), ("X86_64", "x86_64"), ("arm64", "aarch64"), ("noarch", "any"), ("riscv64", "riscv64")])
def test_arch_aliases(alias: str, name: str) -> None:
    assert normalize_arch(alias) == name


def test_manifest_with_escaping_path_is_refused_on_read_naming_file_and_key(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    publish(zoo, "m", "1.0.0", [write_model(tmp_path / "v1")], check=False)
    key = Path(zoo.url.removeprefix("file://")) / manifest_key("m")
    key.write_text(key.read_text().replace('"config.json"', '"../x"'))
    with pytest.raises(FormatError, match=r'manifests/m.toml: versions."1.0.0".files.any."../x".*leaves the version'):
        zoo.manifest("m")


def test_manifest_from_newer_format_is_refused(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    publish(zoo, "m", "1.0.0", [write_model(tmp_path / "v1")], check=False)
    key = Path(zoo.url.removeprefix("file://")) / manifest_key("m")
    key.write_text(key.read_text().replace("format = 1", "format = 3"))
    with pytest.raises(FormatError, match="upgrade zoostore"):
        zoo.manifest("m")


# ------------------------------------------------------------------ publish rules
def test_publish_then_resolve_and_read_back(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = write_model(tmp_path / "v1")
    (src / "sub").mkdir()
    (src / "sub" / "labels.txt").write_text("cat\ndog\n")
    (src / ".hidden").write_text("skip me")
    result = publish(zoo, "m", "1.0.0", [src], arch="amd64", check=False, summary="a model")
    assert set(result.files) == {"weights.bin", "config.json", "sub/labels.txt"}
    r = open_store(zoo.url).resolve("m", "^1", arch="x86_64")
    assert r.version == "1.0.0" and set(r.files) == set(result.files)
    out = tmp_path / "out"
    zoo.blobs.get_file(r.files["sub/labels.txt"].blob, out)
    assert out.read_text() == "cat\ndog\n"
    assert zoo.manifest("m").summary == "a model"


def test_republishing_identical_content_uploads_nothing(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = write_model(tmp_path / "v1")
    publish(zoo, "m", "1.0.0", [src], check=False)
    before = sorted(i.key for i in zoo.backend.list(""))
    again = publish(zoo, "m", "1.0.0", [src], check=False)
    assert again.unchanged and again.new_stored_bytes == 0
    assert sorted(i.key for i in zoo.backend.list("")) == before


def test_different_content_for_published_version_is_refused_with_hashes(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    publish(zoo, "m", "1.0.0", [write_model(tmp_path / "v1")], check=False)
    with pytest.raises(ImmutableError) as info:
        publish(zoo, "m", "1.0.0", [write_model(tmp_path / "v2", seed=1)], check=False)
    assert "weights.bin: published blake3:" in str(info.value) and "now blake3:" in str(info.value)
    assert isinstance(info.value, FileExistsError)


def test_new_arch_joins_existing_version(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    publish(zoo, "m", "1.0.0", [write_model(tmp_path / "a", seed=1)], arch="x86_64", check=False)
    publish(zoo, "m", "1.0.0", [write_model(tmp_path / "b", seed=2)], arch="arm64", check=False)
    m = zoo.manifest("m")
    assert m.versions["1.0.0"].archs == ["aarch64", "x86_64"]
    with pytest.raises(ResolutionError, match="has no files for riscv64"):
        zoo.resolve("m", "1.0.0", arch="riscv64")


def test_a_path_under_any_and_under_an_arch_with_other_bytes_warns(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    publish(zoo, "m", "1.0.0", [write_model(tmp_path / "any", seed=1)], check=False)
    r = publish(zoo, "m", "1.0.0", [write_model(tmp_path / "x86", seed=2)], arch="x86_64", check=False)
    assert any("weights.bin" in w and "under any with other bytes" in w and "consumers on x86_64" in w
               for w in r.warnings), r.warnings
    # The other way round: `any` published after an arch that holds the same path.
    r = publish(zoo, "m", "1.1.0", [write_model(tmp_path / "a2", seed=3)], arch="aarch64", check=False)
    assert not r.warnings
    r = publish(zoo, "m", "1.1.0", [write_model(tmp_path / "any2", seed=4)], check=False)
    assert any("under aarch64 with other bytes: consumers on aarch64" in w for w in r.warnings), r.warnings
    # The same bytes under both say nothing, and neither does a no-op re-run.
    same = write_model(tmp_path / "same", seed=5)
    publish(zoo, "m", "1.2.0", [same], check=False)
    assert not publish(zoo, "m", "1.2.0", [same], arch="x86_64", check=False).warnings
    assert not publish(zoo, "m", "1.0.0", [write_model(tmp_path / "x86", seed=2)], arch="x86_64",
                       check=False).warnings


def test_republishing_a_file_whose_recipe_names_a_missing_pack_repairs_it(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from zoostore.ops.verify import verify_store

    src = write_model(tmp_path / "v1")
    publish(zoo, "m", "1.0.0", [src], check=False)
    root = Path(zoo.url.removeprefix("file://"))
    for pack in (root / "packs").rglob("*"):
        if pack.is_file():
            pack.unlink()  # a damaged store: every recipe names a missing pack
    assert verify_store(open_store(zoo.url)).problems
    # Republishing the same files (as a new version) stores them anew and overwrites the
    # damaged recipes, instead of failing at the settle check on every retry.
    r = publish(open_store(zoo.url), "m", "1.1.0", [src], check=False)
    assert r.new_stored_bytes > 0
    fresh = open_store(zoo.url)
    assert verify_store(fresh, read_data=True).problems == []
    for version in ("1.0.0", "1.1.0"):  # the same blobs: the old version reads again too
        for path, entry in fresh.manifest("m").versions[version].files["any"].items():
            out = fresh.blobs.get_file(entry.blob, tmp_path / "out" / version / path)
            assert out.read_bytes() == (src / path).read_bytes()


@pytest.mark.parametrize("lost", ["all packs", "one pack"])
def test_a_changed_file_whose_earlier_chunks_sit_in_a_lost_pack_is_stored_anew(
        zoo, tmp_path: Path, lost: str) -> None:  # type: ignore[no-untyped-def]
    # A damaged store: the packs of version 1.0.0 are gone. A new version of a changed file
    # would reuse most of 1.0.0's chunks (and take delta bases and recipe edits from them);
    # it stores those chunks anew instead, where it used to fail with "deleted by a concurrent
    # gc ... publish again" on every retry.
    from zoostore.ops.verify import verify_store

    v1 = write_model(tmp_path / "v1", n=1_000_000)
    publish(zoo, "m", "1.0.0", [v1], check=False)
    root = Path(zoo.url.removeprefix("file://"))
    packs = sorted(p for p in (root / "packs").rglob("*") if p.is_file())
    for pack in packs if lost == "all packs" else packs[:1]:
        pack.unlink()
    w = np.fromfile(v1 / "weights.bin", dtype=np.float32)
    w[500_000:500_100] += 1.0
    v2 = tmp_path / "v2"
    shutil.copytree(v1, v2)
    w.tofile(v2 / "weights.bin")
    r = publish(open_store(zoo.url), "m", "1.1.0", [v2], check=False)
    fresh = open_store(zoo.url)
    files = fresh.manifest("m").versions["1.1.0"].files["any"]
    for path, entry in files.items():
        assert fresh.blobs.get_file(entry.blob, tmp_path / "out" / path).read_bytes() == (v2 / path).read_bytes()
    # 1.1.0's recipes name only packs that exist, and its changed
    # file is stored whole again: verify still finds 1.0.0's damage, which is not repaired.
    for entry in files.values():
        assert all((root / pack_key(pack)).is_file() for pack in fresh.blobs.recipe(entry.blob).packs)
    assert verify_store(fresh).problems
    assert r.new_stored_bytes > 0


def test_a_new_model_whose_name_differs_from_an_existing_one_only_in_case_is_refused(
        zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    # On macOS and Windows manifests/Yolo.toml is manifests/yolo.toml (and so are consumers'
    # model folders): the second name is refused before anything is uploaded.
    publish(zoo, "yolo", "1.0.0", [write_model(tmp_path / "a")], check=False)
    with pytest.raises(UsageError, match="differ only in case.*Publish as 'yolo'"):
        publish(zoo, "Yolo", "1.0.0", [write_model(tmp_path / "b", seed=2)], check=False)
    assert zoo.models() == ["yolo"]
    assert cli(["publish", zoo.url, "YOLO", "1.1.0", str(tmp_path / "b"), "--no-check"]) == 2
    assert "differ only in case" in capsys.readouterr().err
    # The commit checks again (a publish planned before the other model existed).
    plan = plan_publish(zoo, "MiDaS", "1.0.0", [tmp_path / "b"])
    publish(zoo, "midas", "1.0.0", [write_model(tmp_path / "c", seed=3)], check=False)
    with pytest.raises(UsageError, match="differ only in case"):
        plan.upload()
        plan.commit()
    assert sorted(zoo.models()) == ["midas", "yolo"]


def test_changing_a_model_the_store_lacks_is_not_taken_for_a_new_model(
        zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    # Only a change that would create the manifest is checked for a case clash: a tag, yank or
    # meta edit of 'YOLO' next to 'yolo' names the missing model (not found, exit 6), and a
    # change that writes nothing neither fails nor lists manifests/.
    from zoostore.core.errors import NotFoundError
    from zoostore.ops.tags import tag

    publish(zoo, "yolo", "1.0.0", [write_model(tmp_path / "a")], check=False)
    with pytest.raises(NotFoundError, match="YOLO"):
        tag(zoo, "YOLO", "stable", "1.0.0")
    assert cli(["yank", zoo.url, "YOLO", "1.0.0", "--reason", "bad"]) == 6
    assert "differ only in case" not in capsys.readouterr().err
    listed: list[str] = []
    real_list = zoo.backend.list
    zoo.backend.list = lambda prefix="": listed.append(prefix) or real_list(prefix)  # type: ignore[method-assign]
    assert zoo.update_manifest("Yolo", lambda m: m) is None
    assert listed == []


def test_a_release_of_two_new_models_differing_only_in_case_is_refused_before_uploading(
        zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Neither exists yet, so each plan alone passes; the release must still refuse the pair up
    # front (it used to upload both and commit 'Yolo' before refusing 'yolo': half a release).
    from zoostore.ops.release import execute_release

    plans = [plan_publish(zoo, name, "1.0.0", [write_model(tmp_path / name.lower() / name, seed=i)])
             for i, name in enumerate(["Yolo", "yolo"])]
    with pytest.raises(UsageError, match="differ only in case"):
        execute_release(plans)
    assert zoo.models() == [] and not list(Path(zoo.url.removeprefix("file://")).joinpath("packs").rglob("*.*"))


def test_a_store_that_has_both_spellings_already_still_publishes_each(
        zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Made before the refusal (or by hand): both models keep publishing new versions, and
    # publish-release takes them together; only a third spelling is refused.
    from zoostore.ops.release import execute_release

    publish(zoo, "yolo", "1.0.0", [write_model(tmp_path / "a")], check=False)
    root = Path(zoo.url.removeprefix("file://"))
    (root / "manifests" / "Yolo.toml").write_text(
        (root / "manifests" / "yolo.toml").read_text().replace('"yolo"', '"Yolo"'))
    assert zoo.models() == ["Yolo", "yolo"] and zoo.manifest("Yolo").model == "Yolo"
    for i, name in enumerate(["Yolo", "yolo"]):
        publish(zoo, name, "1.1.0", [write_model(tmp_path / f"b{i}", seed=10 + i)], check=False)
    plans = [plan_publish(zoo, name, "1.2.0", [write_model(tmp_path / f"c{i}", seed=20 + i)])
             for i, name in enumerate(["Yolo", "yolo"])]
    assert [r.version for r in execute_release(plans)] == ["1.2.0", "1.2.0"]
    assert all(sorted(zoo.manifest(m).versions) == ["1.0.0", "1.1.0", "1.2.0"] for m in ("Yolo", "yolo"))
    with pytest.raises(UsageError, match="differ only in case"):
        publish(zoo, "YOLO", "1.0.0", [write_model(tmp_path / "d", seed=3)], check=False)


def test_date_like_prerelease_warns_and_suggests_build_metadata(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = publish(zoo, "m", "1.2.3-20220504", [write_model(tmp_path / "v")], check=False)
    assert any("1.2.3+20220504" in w for w in r.warnings)
    r2 = publish(zoo, "m", "1.2.4+20220504", [write_model(tmp_path / "w", seed=3)], check=False)
    assert not r2.warnings


def test_invalid_inputs_are_usage_errors(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = write_model(tmp_path / "v")
    with pytest.raises(UsageError, match="version"):
        publish(zoo, "m", "1.2", [src], check=False)
    with pytest.raises(UsageError, match="model name"):
        publish(zoo, "../evil", "1.0.0", [src], check=False)
    with pytest.raises(UsageError, match="no such file"):
        publish(zoo, "m", "1.0.0", [tmp_path / "missing"], check=False)
    with pytest.raises(UsageError, match="reads as a version range"):
        publish(zoo, "m", "1.0.0", [src], tags=["x"], check=False)


def test_new_version_uploads_little_more_than_what_changed(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    v1 = write_model(tmp_path / "v1", n=1_000_000)
    publish(zoo, "m", "1.0.0", [v1], check=False)
    w = np.fromfile(v1 / "weights.bin", dtype=np.float32)
    w[500_000:500_100] += 1.0  # 400 bytes change in a 4 MB file
    v2 = tmp_path / "v2"
    shutil.copytree(v1, v2)
    w.tofile(v2 / "weights.bin")
    r = publish(zoo, "m", "1.1.0", [v2], check=False)
    assert r.new_stored_bytes < 3 * SMALL.chunking.max_size
    assert r.new_stored_bytes < 0.15 * r.size


def test_tags_yank_and_latest(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for i, v in enumerate(["1.0.0", "1.1.0", "1.2.0-rc.1"]):
        publish(zoo, "m", v, [write_model(tmp_path / v, seed=i)], check=False)
    assert zoo.resolve("m", "latest", arch="x86_64").version == "1.1.0"
    assert cli([zoo.url, "x"][:0] + ["tag", zoo.url, "m", "bleedingedge", "1.2.0-rc.1"]) == 0
    assert zoo.resolve("m", "bleedingedge", arch="x86_64").version == "1.2.0-rc.1"
    assert cli(["yank", zoo.url, "m", "1.1.0", "--reason", "bad accuracy"]) == 0
    assert zoo.resolve("m", "latest", arch="x86_64").version == "1.0.0"
    assert zoo.resolve("m", "^1", arch="x86_64").version == "1.0.0"
    pinned = zoo.resolve("m", "1.1.0", arch="x86_64")  # an exact pin still works, with a warning
    assert pinned.version == "1.1.0" and any("yanked" in w for w in pinned.warnings)
    assert cli(["yank", zoo.url, "m", "1.1.0", "--undo"]) == 0
    assert zoo.resolve("m", "latest", arch="x86_64").version == "1.1.0"
    assert cli(["tag", zoo.url, "m", "bleedingedge", "--delete"]) == 0
    with pytest.raises(ResolutionError, match="no tag or version 'bleedingedge'"):
        zoo.resolve("m", "bleedingedge", arch="x86_64")
    assert cli(["tag", zoo.url, "m", "latest", "1.0.0"]) == 2


def test_unknown_model_lists_models(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    publish(zoo, "alpha", "1.0.0", [write_model(tmp_path / "a")], check=False)
    with pytest.raises(NotFoundError, match="models: alpha"):
        zoo.manifest("beta")


def test_descriptor_becomes_model_metadata(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = write_model(tmp_path / "v")
    (src / "model.toml").write_text(
        'network = "weights.bin"\nframework = "onnx"\nsummary = "tiny test net"\ntask = "classification"\n'
        'model_license = "Apache-2.0"\n[meta]\ndataset = "toy"\n'
        '[[inputs]]\nname = "x"\nshape = [1, 3]\ndtype = "float32"\n'
        '[[outputs]]\nname = "y"\nshape = [1, 2]\ndtype = "float32"\n'
    )
    publish(zoo, "m", "1.0.0", [src], check=False)
    m = zoo.manifest("m")
    assert m.meta["task"] == "classification" and m.meta["framework"] == "onnx"
    assert m.meta["model_license"] == "Apache-2.0" and m.meta["dataset"] == "toy"
    assert m.meta["inputs"] == [{"name": "x", "shape": [1, 3], "dtype": "float32"}]
    assert m.summary == "tiny test net"


def test_an_incomplete_model_toml_names_every_missing_key_in_one_run(zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    src = write_model(tmp_path / "v")
    (src / "model.toml").write_text('framework = "onnx"\n[[inputs]]\nname = "x"\nshape = [1, 3]\ndtype = "float32"\n')
    assert cli(["publish", zoo.url, "m", "1.0.0", str(src), "--no-check", "-q"]) == 2  # bad input, not a newer format
    err = capsys.readouterr().err
    assert "model.toml: 3 problems; fix them all, then run again" in err, err
    for key in ("network", "model_license", "outputs"):
        assert f"\n  {key}: missing (required)" in err, err
    assert "m" not in list(zoo.models())


def test_publish_to_http_store_is_refused(zoo, tmp_path: Path, serve_directory: Any) -> None:  # type: ignore[no-untyped-def]
    served = serve_directory(Path(zoo.url.removeprefix("file://")).parent)
    http_zoo = open_store(served.url + "/store")
    with pytest.raises(ReadOnlyError) as info:
        publish(http_zoo, "m", "1.0.0", [write_model(tmp_path / "v")], check=False)
    assert isinstance(info.value, PermissionError)


def test_reused_old_objects_are_freshened(tmp_path: Path) -> None:
    zoo, _ = init_store(tmp_path / "store", config=StoreConfig(pack_target_size=256 * 1024, grace_seconds=3600))
    v1 = write_model(tmp_path / "v1", n=400_000)
    publish(zoo, "m", "1.0.0", [v1], check=False)
    root = Path(zoo.url.removeprefix("file://"))
    old = zoo.backend.now() - 7200
    for info in list(zoo.backend.list("packs/")) + list(zoo.backend.list("blobs/")):
        os.utime(root / info.key, (old, old))
    publish(zoo, "other", "1.0.0", [v1], check=False)  # reuses every blob and pack
    cutoff = zoo.backend.now() - 1800
    assert all(i.mtime > cutoff for i in zoo.backend.list("packs/"))
    assert all(i.mtime > cutoff for i in zoo.backend.list("blobs/"))


# ------------------------------------------------------------------ CLI surface
def test_cli_publish_ls_catalog(zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    src = write_model(tmp_path / "v")
    assert cli(["publish", zoo.url, "m", "1.0.0", str(src), "--arch", "x86_64", "--meta", "acc@1=0.71",
                "--requires", "tvm=>=0.27.0 <0.28.0", "--no-check"]) == 0
    assert "weights.bin" in capsys.readouterr().out
    assert cli(["ls", zoo.url, "m", "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert doc["versions"][0]["meta"] == {"acc@1": 0.71}
    assert doc["versions"][0]["requires"] == {"tvm": ">=0.27.0 <0.28.0"}
    assert cli(["catalog", zoo.url, "--output", str(tmp_path / "CATALOG.md")]) == 0
    table = (tmp_path / "CATALOG.md").read_text()
    assert "| **m**" in table and "x86_64" in table and "acc@1=0.71" in table
    assert cli(["publish", zoo.url, "m", "1.0.0", str(write_model(tmp_path / "w", seed=9)), "--no-check", "-q"]) in (0, 7)
    assert cli(["publish", zoo.url, "m", "1.0.0", str(write_model(tmp_path / "w2", seed=9)), "--arch", "x86_64", "--no-check", "-q"]) == 7



def test_a_requirement_written_as_name_and_operator_is_refused_with_the_fix(zoo, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # `--requires tvm>=0.27` splits at the first '=': key 'tvm>'. A published version is immutable,
    # so a requirement no project's [runtime] can name would be a permanent, silent no-op.
    src = write_model(tmp_path / "v")
    for arg, fix in (("tvm>=0.27", "--requires tvm='>=0.27'"), ("onnxruntime<=1.20", "--requires onnxruntime='<=1.20'"),
                     ("t vm=0.27", None)):
        assert cli(["publish", zoo.url, "m", "1.0.0", str(src), "--requires", arg, "--no-check"]) == 2
        err = capsys.readouterr().err
        assert "is not a runtime name" in err and (fix is None or fix in err) and "Traceback" not in err
    assert "m" not in zoo.models()
    assert cli(["publish", zoo.url, "m", "1.0.0", str(src), "--requires", "apache-tvm_ffi.x=^0.1", "--no-check", "-q"]) == 0

# ------------------------------------------------------------------ concurrency
def _publisher(url: str, options: dict[str, Any] | None, src: str, jobs: list[tuple[str, str]]) -> None:
    zoo = open_store(url, storage_options=options)
    for version, arch in jobs:
        publish(zoo, "shared", version, [src + f"/{version}-{arch}"], arch=arch, check=False)


def _concurrent_publishers(url: str, options: dict[str, Any] | None, tmp_path: Path, workers: int, per: int) -> None:
    jobs = [[(f"1.{w}.{i}", ("x86_64", "aarch64")[(w + i) % 2]) for i in range(per)] for w in range(workers)]
    # Every worker also adds the other arch to worker 0's first version: many writers, one entry.
    for w in range(1, workers):
        jobs[w].append(("1.0.0", "aarch64" if w % 2 else "riscv64"))
    src = tmp_path / "src"
    for w_jobs in jobs:
        for version, arch in w_jobs:
            d = src / f"{version}-{arch}"
            if not d.exists():
                write_model(d, seed=hash((version, arch)) % 1000, n=5000)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_publisher, args=(url, options, str(src), j)) for j in jobs]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    m = open_store(url, storage_options=options).manifest("shared")
    for w_jobs in jobs:
        for version, arch in w_jobs:
            assert arch in m.versions[version].files, f"{version}/{arch} was lost"


def test_concurrent_publishers_local(tmp_path: Path) -> None:
    zoo, _ = init_store(tmp_path / "store", config=SMALL)
    _concurrent_publishers(zoo.url, None, tmp_path, workers=6, per=3)


def test_concurrent_publishers_s3(tmp_path: Path, s3_bucket: str, s3_storage_options: dict[str, Any]) -> None:
    url = f"s3://{s3_bucket}/zoo"
    init_store(url, config=SMALL, storage_options=s3_storage_options)
    _concurrent_publishers(url, s3_storage_options, tmp_path, workers=4, per=3)


def test_manifest_toml_round_trip(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    publish(zoo, "m", "1.0.0", [write_model(tmp_path / "v")], meta={"acc@1": 0.5, "classes": 80}, tags=["stable"], check=False)
    m = zoo.manifest("m")
    assert Manifest.parse(m.to_toml(), where="x") == m


def test_publish_slower_than_half_the_grace_period_commits_nothing(tmp_path: Path) -> None:
    from zoostore.core.errors import ConflictError

    zoo, _ = init_store(tmp_path / "store", config=StoreConfig(pack_target_size=256 * 1024, grace_seconds=0.0))
    with pytest.raises(ConflictError, match="more than half the store's gc grace period"):
        publish(zoo, "m", "1.0.0", [write_model(tmp_path / "v")], check=False)
    with pytest.raises(NotFoundError):
        zoo.manifest("m")


# ------------------------------------------------------------------ plan, then execute
def _tree(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under a local store: bytes and mtime (ns), to show that nothing changed."""
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_plan_says_what_is_new_and_what_is_stored_and_changes_nothing(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from zoostore.ops.publish import plan_publish

    v1 = write_model(tmp_path / "v1")
    publish(zoo, "m", "1.0.0", [v1])
    v2 = tmp_path / "v2"
    shutil.copytree(v1, v2)
    (v2 / "config.json").write_text('{"changed": true}')
    root = Path(zoo.url.removeprefix("file://"))
    before = _tree(root)
    plan = plan_publish(zoo, "m", "1.1.0", [v2], arch="x86_64", tags=["stable"])
    assert _tree(root) == before
    assert plan.new_files == ["config.json"] and not plan.unchanged
    assert plan.known  # weights.bin's chunks are indexed for dedup; config.json is new
    text = str(plan)
    assert "publish m@1.1.0 (x86_64)" in text and "stable -> 1.1.0" in text
    assert f"new       {plan.entries['config.json'].blob}" in text
    assert f"in store  {plan.entries['weights.bin'].blob}" in text
    result = plan.execute()
    assert result.files == plan.entries and zoo.manifest("m").tags == {"stable": "1.1.0"}
    assert [r.new for r in result.uploaded] == [True, False]  # config.json, weights.bin


def test_plan_of_identical_content_is_a_no_op_and_different_content_conflicts_before_upload(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from zoostore.ops.publish import plan_publish

    src = write_model(tmp_path / "v1")
    publish(zoo, "m", "1.0.0", [src])
    again = plan_publish(zoo, "m", "1.0.0", [src], tags=["stable"])
    assert again.unchanged and again.new_files == [] and "identical content" in str(again)
    assert again.execute().unchanged and zoo.manifest("m").tags == {"stable": "1.0.0"}
    root = Path(zoo.url.removeprefix("file://"))
    before = _tree(root)
    other = write_model(tmp_path / "v2", seed=5)
    with pytest.raises(ImmutableError) as info:
        plan_publish(zoo, "m", "1.0.0", [other])
    assert str(hash_of(other / "weights.bin")) in str(info.value)
    assert _tree(root) == before


def hash_of(path: Path) -> Any:
    from zoostore.core.digest import hash_file

    return hash_file(path)


def test_cli_publish_dry_run_prints_the_plan_and_leaves_the_store_byte_identical(zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    publish(zoo, "m", "1.0.0", [write_model(tmp_path / "v1")], tags=["stable"])
    root = Path(zoo.url.removeprefix("file://"))
    before = _tree(root)
    capsys.readouterr()
    src = write_model(tmp_path / "v2", seed=3)
    assert cli(["publish", zoo.url, "m", "1.1.0", str(src), "--tag", "stable", "--no-check", "--dry-run", "-q"]) == 0
    out, err = capsys.readouterr()
    assert "publish m@1.1.0 (any)" in out and "new " in out and "stable -> 1.1.0" in out
    assert "dry run: nothing was changed" in err
    assert cli(["publish", zoo.url, "m", "1.1.0", str(src), "--no-check", "--dry-run", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["dry_run"] and sorted(doc["new"]) == ["config.json", "weights.bin"]
    assert _tree(root) == before
    assert zoo.manifest("m").tags == {"stable": "1.0.0"}


def test_checker_sees_every_file_and_refuses_before_anything_is_stored(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from zoostore.core.errors import CheckFailedError

    src = write_model(tmp_path / "v")
    seen: list[list[str]] = []

    def refuse(files: Any) -> None:
        seen.append(sorted(f.name for f in files))
        raise CheckFailedError("no")

    root = Path(zoo.url.removeprefix("file://"))
    before = _tree(root)
    with pytest.raises(CheckFailedError):
        publish(zoo, "m", "1.0.0", [src], check=refuse)
    assert seen == [["config.json", "weights.bin"]] and _tree(root) == before
    with pytest.raises(UsageError, match="no default check"):
        publish(zoo, "m", "1.0.0", [src], check=True)  # type: ignore[arg-type]


def test_public_publish_runs_the_onnx_check_by_default(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("onnx", reason="the ONNX check needs onnx (pip install 'zoostore[onnx]')")
    pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime (pip install 'zoostore[onnx]')")
    import zoostore
    from zoostore.core.errors import CheckFailedError

    src = write_model(tmp_path / "v")
    (src / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(CheckFailedError, match="model.onnx"):
        zoostore.publish(zoo, "m", "1.0.0", [src])
    with pytest.raises(NotFoundError):
        zoo.manifest("m")
    assert cli(["publish", zoo.url, "m", "1.0.0", str(src), "-q"]) != 0
    assert zoostore.publish(zoo, "m", "1.0.0", [src], check=False).files.keys() >= {"model.onnx"}


def test_publish_imports_no_integration() -> None:
    import ast
    import subprocess
    import sys

    import zoostore.ops.publish as ops_publish
    import zoostore.ops.tags as ops_tags

    for module in (ops_publish, ops_tags):
        tree = ast.parse(Path(str(module.__file__)).read_text())
        names = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [n for n in names if n.startswith(("zoostore.integrations", "zoostore.cli"))], module.__name__
    code = ("import sys, zoostore.ops.publish, zoostore.ops.tags; "
            "print([m for m in sys.modules if m.startswith('zoostore.integrations')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _build_dir(path: Path, arch: str, target: str, compiler: str, test_data: str = "") -> Path:
    src = write_model(path)
    (src / "build.toml").write_text(
        f'format = 1\narch = "{arch}"\nmodel = "m"\nfiles = ["weights.bin"]\noptions = {{ opt_level = 3 }}\n'
        '[source]\nfile = "model.onnx"\nblake3 = "blake3:00"\n'
        f'[tvm]\nversion = "0.27.1"\nffi_version = "0.1.0"\ntarget = "{target}"\n'
        f'[compiler]\ncommand = "{compiler}"\nversion = "{compiler} 14"\n{test_data}'
    )
    return src


def test_build_record_becomes_requires_and_meta(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = _build_dir(tmp_path / "x86_64", "x86_64", "llvm", "g++")
    publish(zoo, "m", "1.0.0", [src], arch="x86_64", requires={"cuda": ">=12"}, meta={"acc@1": 0.5})
    release = zoo.manifest("m").versions["1.0.0"]
    assert release.requires == {"tvm": ">=0.27.0 <0.28.0", "cuda": ">=12"}
    assert release.meta["builds"]["x86_64"]["tvm"] == "0.27.1" and release.meta["acc@1"] == 0.5
    assert release.meta["builds"]["x86_64"]["options"] == {"opt_level": 3}


def test_each_architectures_build_record_is_kept_beside_the_others(
        zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # The x86_64 and aarch64 builds of one version come from two publishes (two CI runners):
    # the second used to overwrite the first's target, compiler and test data.
    x86 = _build_dir(tmp_path / "x86_64", "x86_64", "llvm -mcpu=x86-64", "g++",
                     '[test_data]\npassed = 2\nfound = 2\n')
    arm = _build_dir(tmp_path / "aarch64", "aarch64", "llvm -mtriple=aarch64-linux-gnu", "aarch64-linux-gnu-g++",
                     '[test_data]\npassed = 0\nfound = 2\nskipped = 2\n')
    publish(zoo, "m", "1.0.0", [x86], arch="x86_64", meta={"acc@1": 0.5})
    publish(zoo, "m", "1.0.0", [arm], arch="aarch64")
    builds = zoo.manifest("m").versions["1.0.0"].meta["builds"]
    assert builds["x86_64"]["target"] == "llvm -mcpu=x86-64" and builds["x86_64"]["compiler"] == "g++ 14"
    assert builds["aarch64"]["compiler"] == "aarch64-linux-gnu-g++ 14"
    assert zoo.manifest("m").versions["1.0.0"].meta["acc@1"] == 0.5
    # Publishing the same x86_64 build again is a no-op, not a metadata conflict ...
    assert publish(zoo, "m", "1.0.0", [x86], arch="x86_64").unchanged
    # ... and the catalog says which architecture ran which tests.
    from zoostore.ops.catalog import _onnx_cells

    facts, _ = _onnx_cells(zoo.manifest("m").versions["1.0.0"].meta)
    assert facts == "TVM aarch64 tests 0/2; TVM x86_64 tests 2/2"


def test_backend_without_atomic_cas_warns_through_progress(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from zoostore.core.progress import NullProgress

    zoo.backend.capabilities = replace(zoo.backend.capabilities, atomic_cas=False)
    progress = NullProgress()
    result = publish(zoo, "m", "1.0.0", [write_model(tmp_path / "v")], progress=progress)
    assert any("no atomic compare-and-swap" in n for n in progress.notes)
    assert any("no atomic compare-and-swap" in w for w in result.warnings)
    tags_progress = NullProgress()
    from zoostore.ops.tags import tag

    tag(zoo, "m", "stable", "1.0.0", progress=tags_progress)
    assert any("one writer at a time" in n for n in tags_progress.notes)


def test_tag_and_yank_operations(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from zoostore.ops.tags import tag, untag, unyank, yank

    for i, v in enumerate(["1.0.0", "1.1.0"]):
        publish(zoo, "m", v, [write_model(tmp_path / v, seed=i)])
    assert tag(zoo, "m", "stable", "1.0.0").tags == {"stable": "1.0.0"}
    with pytest.raises(NotFoundError, match="no such version"):  # exit 6, as `ls` of it
        tag(zoo, "m", "stable", "9.9.9")
    with pytest.raises(NotFoundError, match="has no version 9.9.9"):
        yank(zoo, "m", "9.9.9", "bad")
    assert cli(["meta", zoo.url, "m", "9.9.9", "k=1"]) == 6
    with pytest.raises(UsageError, match="implicit"):
        tag(zoo, "m", "latest", "1.0.0")
    assert untag(zoo, "m", "stable").tags == {}
    assert yank(zoo, "m", "1.1.0", "  wrong labels ").versions["1.1.0"].yanked == "wrong labels"
    assert zoo.manifest("m").latest() == "1.0.0"
    with pytest.raises(UsageError, match="needs a reason"):
        yank(zoo, "m", "1.0.0", " ")
    assert unyank(zoo, "m", "1.1.0").latest() == "1.1.0"
    with pytest.raises(NotFoundError, match="no model 'ghost'.*models: m"):
        tag(zoo, "ghost", "stable", "1.0.0")
    assert not (Path(zoo.url.removeprefix("file://")) / manifest_key("ghost")).exists()


def test_cli_warns_on_a_backend_without_atomic_cas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import replace

    from zoostore.storage.backends.local import LocalBackend

    monkeypatch.setattr(LocalBackend, "capabilities", replace(LocalBackend.capabilities, atomic_cas=False))
    store = str(tmp_path / "store")
    assert cli(["init", store]) == 0
    assert "no atomic compare-and-swap" in capsys.readouterr().err
    src = write_model(tmp_path / "v")
    assert cli(["publish", store, "m", "1.0.0", str(src), "--no-check", "-q"]) == 0
    assert "one writer at a time" in capsys.readouterr().err
    assert cli(["tag", store, "m", "stable", "1.0.0"]) == 0
    assert "one writer at a time" in capsys.readouterr().err


def test_a_conflict_lists_the_first_ten_differing_files_and_json_keeps_them_all(zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """scipy's 47 differing libraries drowned what to do; the message now shows ten."""
    def folder(name: str, salt: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        for i in range(47):
            (d / f"lib{i:02d}.so").write_text(f"{salt}{i}")
        return d

    publish(zoo, "scipy", "1.0.0", [folder("a", "old")], check=False)
    new = folder("b", "new")
    assert cli(["publish", zoo.url, "scipy", "1.0.0", str(new), "--no-check", "-q"]) == 7
    err = capsys.readouterr().err
    listed = [line for line in err.splitlines() if line.startswith("  lib")]
    assert [line.split(":")[0] for line in listed] == [f"  lib{i:02d}.so" for i in range(10)], err
    assert "Differences (47 files):" in err and "  ... and 37 more (--json lists every one under error.differences)" in err
    assert err.rstrip().endswith("Publish a new version instead (e.g. bump the patch number)."), err
    assert cli(["publish", zoo.url, "scipy", "1.0.0", str(new), "--no-check", "--json"]) == 7
    error = json.loads(capsys.readouterr().err)["error"]
    assert "... and 37 more" in error["message"]
    assert [d["path"] for d in error["differences"]] == [f"lib{i:02d}.so" for i in range(47)]
    assert error["differences"][0]["published"].startswith("blake3:") and error["differences"][0]["now"].startswith("blake3:")
    with pytest.raises(ImmutableError) as info:
        publish(zoo, "scipy", "1.0.0", [new], check=False)
    assert len(info.value.differences) == 47 and len(str(info.value).splitlines()) == 13


def _with_hidden(d: Path) -> Path:
    write_model(d)
    (d / ".DS_Store").write_bytes(b"\0")
    (d / ".gitattributes").write_text("*.bin filter=lfs\n")
    (d / ".git").mkdir()
    (d / ".git" / "config").write_text("[core]\n")
    (d / "sub").mkdir()
    (d / "sub" / ".keep").write_text("")
    return d


def test_hidden_files_are_skipped_and_said_once_on_stderr(zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """They were skipped silently; a trial user lost a .gitattributes without knowing."""
    src = _with_hidden(tmp_path / "v")
    assert cli(["publish", zoo.url, "m", "1.0.0", str(src), "--no-check"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "hidden" in line]
    assert notes == ["zoostore: skipped 3 hidden files and 1 hidden directory (.git/, .DS_Store, .gitattributes, "
                     "sub/.keep): a directory's files and subdirectories whose names start with '.' are not "
                     "published; name such a file as a PATH of its own to publish it (under its bare name, at the top "
                     "of the version)"], err
    assert sorted(zoo.manifest("m").versions["1.0.0"].files["any"]) == ["config.json", "weights.bin"]
    assert cli(["publish", zoo.url, "m", "1.0.0", str(src), "--no-check", "-q"]) == 0
    assert "hidden" not in capsys.readouterr().err
    # Named on the command line, a hidden file is published.
    assert cli(["publish", zoo.url, "m", "1.0.1", str(src), str(src / ".gitattributes"), "--no-check", "-q"]) == 0
    assert ".gitattributes" in zoo.manifest("m").versions["1.0.1"].files["any"]


def test_a_folder_of_only_hidden_files_says_they_were_skipped(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    d = tmp_path / "only"
    d.mkdir()
    (d / ".env").write_text("x")
    with pytest.raises(UsageError, match=r"no files found \(skipped 1 hidden file \(\.env\)"):
        publish(zoo, "m", "1.0.0", [d], check=False)


def test_a_hidden_file_also_named_as_a_path_is_not_said_to_be_skipped(zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """The note said '.gitattributes' was skipped while the same command published it."""
    src = _with_hidden(tmp_path / "v")
    assert cli(["publish", zoo.url, "m", "1.0.0", str(src), str(src / ".gitattributes"), "--no-check"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "hidden" in line]
    assert notes and notes[0].startswith("zoostore: skipped 2 hidden files and 1 hidden directory "
                                         "(.git/, .DS_Store, sub/.keep): "), notes
    assert ".gitattributes" in zoo.manifest("m").versions["1.0.0"].files["any"]


def test_the_hidden_note_says_a_named_file_publishes_under_its_bare_name(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """'name such a file as a PATH of its own' suggested sub/.keep would keep its folder; it
    publishes as '.keep', at the top of the version."""
    src = _with_hidden(tmp_path / "v")
    r = publish(zoo, "m", "1.0.0", [src, src / "sub" / ".keep"], check=False)
    assert ".keep" in r.files and "sub/.keep" not in r.files
    from zoostore.ops.publish_inputs import hidden_note

    assert hidden_note(["sub/.keep"]).endswith("name such a file as a PATH of its own to publish it "
                                               "(under its bare name, at the top of the version)")


def test_a_conflict_of_one_file_says_one_file(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "w.bin").write_bytes(name.encode())
    publish(zoo, "m", "1.0.0", [tmp_path / "a"], check=False)
    with pytest.raises(ImmutableError, match=r"Differences \(1 file\):\n  w\.bin: published blake3:"):
        publish(zoo, "m", "1.0.0", [tmp_path / "b"], check=False)


def test_json_documents_list_the_skipped_hidden_files(zoo, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """With --json a script learnt of skipped hidden files only from a line of text on stderr."""
    src = _with_hidden(tmp_path / "v")
    hidden = [".git/", ".DS_Store", ".gitattributes", "sub/.keep"]
    for extra in (["--dry-run"], []):
        assert cli(["publish", zoo.url, "m", "1.0.0", str(src), "--no-check", "--json", *extra]) == 0
        assert json.loads(capsys.readouterr().out)["skipped_hidden"] == hidden, extra
    assert cli(["publish-release", zoo.url, "1.0.1", f"m={src}", "--no-check", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["models"][0]["skipped_hidden"] == hidden
