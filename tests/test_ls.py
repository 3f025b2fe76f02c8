"""`zoostore ls`: models, a model's versions, and one version's files (`MODEL VERSION` as well as
`MODEL@VERSION`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_store import write_dir

from zoostore.cli import main
from zoostore.ops.publish import publish
from zoostore.repository import Store, init_store


@pytest.fixture
def zoo(tmp_path: Path) -> Store:
    store, _ = init_store(tmp_path / "store")
    for arch, body in (("x86_64", b"x86 library"), ("aarch64", b"arm library, longer")):
        publish(store, "net", "1.2.0", [write_dir(tmp_path / arch, {"deploy_lib.so": body, "graph.json": "{}"})],
                arch=arch, check=False)
    publish(store, "net", "1.3.0", [write_dir(tmp_path / "new", {"w.bin": b"w"})], check=False, tags=["stable"])
    return store


def test_model_version_lists_that_versions_files_per_arch(zoo: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """`ls STORE MODEL VERSION` was an argparse error; it lists what MODEL@VERSION lists."""
    assert main(["ls", zoo.url, "net", "1.2.0"]) == 0
    out = capsys.readouterr().out
    assert main(["ls", zoo.url, "net@1.2.0"]) == 0
    assert capsys.readouterr().out == out
    lines = out.splitlines()
    assert lines[0].startswith("net@1.2.0") and "aarch64,x86_64" in lines[0]
    files = [line.split() for line in lines[1:]]
    blobs = {(a, p): e.blob for a, p, e in zoo.manifest("net").versions["1.2.0"].blobs()}
    assert {(f[0], f[1]) for f in files} == set(blobs) and len(files) == 4
    for f in files:
        assert f[-1] == str(blobs[(f[0], f[1])])  # size then blob id
    assert ["x86_64", "deploy_lib.so", "11", "B"] == files[[f[:2] for f in files].index(["x86_64", "deploy_lib.so"])][:4]


def test_model_version_takes_a_tag_or_a_range_and_json(zoo: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", zoo.url, "net", "stable", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in doc["versions"]] == ["1.3.0"]
    assert doc["versions"][0]["files"] == [{"arch": "any", "path": "w.bin", "blob": str(next(iter(
        zoo.manifest("net").versions["1.3.0"].files["any"].values())).blob), "size": 1}]
    assert main(["ls", zoo.url, "net", "^1", "--json"]) == 0  # a range: files of every version it names
    assert all("files" in v for v in json.loads(capsys.readouterr().out)["versions"])


def test_model_version_errors_say_what_to_run(zoo: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", zoo.url, "net", "9.9.9"]) == 6
    assert "versions: 1.2.0, 1.3.0" in capsys.readouterr().err
    assert main(["ls", zoo.url, "net@1.2.0", "1.2.0"]) == 2
    assert "give MODEL@VERSION or MODEL VERSION, not both" in capsys.readouterr().err


def test_an_empty_model_with_a_version_is_refused_not_the_model_list(zoo: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """`ls STORE "" 1.2.0` (an unset shell variable as MODEL) listed every model and ignored 1.2.0."""
    assert main(["ls", zoo.url, "", "1.2.0"]) == 2
    captured = capsys.readouterr()
    assert "invalid model name ''" in captured.err and captured.out == ""


def _columns(text: str) -> int:
    """Terminal columns of `text`: East Asian wide and fullwidth characters take two."""
    import unicodedata

    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in text)


def test_file_columns_line_up_with_wide_characters_in_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A CJK path took 40 code points but more columns, pushing its size and blob id right."""
    store, _ = init_store(tmp_path / "store")
    publish(store, "zh", "1.0.0", [write_dir(tmp_path / "zh", {"模型/权重.bin": b"w", "plain.bin": b"p",
                                                                "ｆｕｌｌ.bin": b"f", "cafe\u0301.txt": b"c"})], check=False)
    assert main(["ls", store.url, "zh", "1.0.0"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert len(lines) == 4
    ends = {_columns(line[:line.index(" B  blake3:")]) for line in lines}
    assert len(ends) == 1, lines
    from zoostore.cli._ui import ljust

    assert ljust("模型", 6) == "模型  " and ljust("abc", 6) == "abc   " and ljust("模" * 5, 6) == "模" * 5


def test_ls_and_a_resolution_error_agree_that_latest_is_a_tag(zoo: Store, capsys: pytest.CaptureFixture[str]) -> None:
    """ls shows `tags=latest` (`net@latest` resolves); the error listing the tags said `tags: none`."""
    assert main(["ls", zoo.url, "net"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("net@1.3.0") and last.endswith(" tags=latest,stable"), last
    assert main(["ls", zoo.url, "net@latest"]) == 0
    capsys.readouterr()
    assert main(["ls", zoo.url, "net@nosuchtag"]) == 6
    assert "tags: latest=1.3.0, stable=1.3.0; versions: 1.2.0, 1.3.0" in capsys.readouterr().err
