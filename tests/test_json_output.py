"""`--json` on every command that reports something: one document on stdout, `"schema": 1` first,
the keys docs/json.md promises, and every such command listed there."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from zoostore.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent

# The commands whose --json needs ONNX or TVM are covered in test_check.py / test_build.py.
HEAVY = {"check", "build"}


def json_commands() -> set[str]:
    _, commands = build_parser()
    found = set()
    for name, parser in commands.items():
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parsers = [(f"{name} {n}", p) for s in subs for n, p in s.choices.items()] or [(name, parser)]
        found |= {label for label, p in parsers if any("--json" in a.option_strings for a in p._actions)}
    return found


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert isinstance(doc, dict), argv
    assert list(doc)[0] == "schema" and doc["schema"] == 1, (argv, out[:200])
    return doc


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOOSTORE_STORE", raising=False)
    model = tmp_path / "net"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"w" * 5000)
    return tmp_path


def test_every_reporting_command_prints_one_versioned_document(zoo: Path, capsys: pytest.CaptureFixture[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store = str(zoo / "store")
    seen = set()

    def doc(*argv: str) -> dict[str, Any]:
        seen.add(argv[0] if argv[0] != "cache" else f"cache {argv[1]}")
        return run_json(capsys, *argv)

    created = doc("init", store)
    assert created["created"] is True and created["store"].endswith("/store") and created["warnings"] == []
    assert doc("init", store)["created"] is False
    published = doc("publish", store, "net", "1.0.0", str(zoo / "net"), "--arch", "x86_64", "--no-check")
    assert published["version"] == "1.0.0"
    assert doc("publish", store, "net", "1.1.0", str(zoo / "net"), "--arch", "x86_64", "--no-check",
               "--dry-run")["dry_run"] is True
    doc("publish", store, "net", "1.1.0", str(zoo / "net"), "--arch", "x86_64", "--no-check")
    released = doc("publish-release", store, "1.1.0", str(zoo / "net"), "--arch", "x86_64", "--no-check")
    assert [(m["model"], m["version"], m["unchanged"]) for m in released["models"]] == [("net", "1.1.0", True)]
    assert doc("tag", store, "net", "stable", "1.0.0") == {
        "schema": 1, "model": "net", "tag": "stable", "version": "1.0.0", "tags": {"stable": "1.0.0"}}
    assert doc("tag", store, "net", "stable", "--delete")["version"] is None
    yanked = doc("yank", store, "net", "1.1.0", "--reason", "bad weights")
    assert yanked["yanked"] == "bad weights" and yanked["latest"] == "1.0.0"
    unyanked = doc("yank", store, "net", "1.1.0", "--undo")
    assert unyanked["yanked"] is None and unyanked["latest"] == "1.1.0"
    assert doc("meta", store, "net", "1.1.0", "dataset=coco")["meta"] == {"dataset": "coco"}
    assert [m["model"] for m in doc("ls", store)["models"]] == ["net"]
    assert [v["version"] for v in doc("ls", store, "net")["versions"]] == ["1.0.0", "1.1.0"]
    catalog = doc("catalog", store)["models"]
    assert [v["version"] for v in catalog[0]["versions"]] == ["1.1.0", "1.0.0"]
    assert catalog[0]["versions"][0]["meta"] == {"dataset": "coco"}
    assert doc("config", store)["grace"]
    assert doc("verify", store)["ok"] is True
    assert "plan" in doc("gc", store, "--dry-run")
    assert doc("export", store, str(zoo / "mirror"))
    assert doc("get", "net@1.0.0", "--store", store, "--arch", "x86_64")["files"][0]["path"] == "weights.bin"

    project = zoo / "project"
    project.mkdir()
    (project / "zoo.toml").write_text('store = "../store"\narchs = ["x86_64"]\n[models]\nnet = "^1.0"\n')
    monkeypatch.chdir(project)
    assert doc("lock")["models"] == {"net": "1.1.0"}
    assert doc("sync")
    assert [r["model"] for r in doc("outdated")["models"]] == ["net"]
    assert doc("cache", "info")["blobs"] >= 1
    assert doc("cache", "verify")["ok"] is True
    assert doc("cache", "prune", "--all", "--dry-run")["dry_run"] is True

    assert seen | HEAVY == json_commands(), "a command with --json is not exercised here"


def test_every_json_command_is_documented() -> None:
    text = (ROOT / "docs" / "json.md").read_text()
    documented = set(re.findall(r"`([a-z-]+(?: [a-z]+)?) --json`", text))
    documented |= {f"cache {s}" for s in ("info", "prune") if "`cache info/prune --json`" in text}
    assert json_commands() <= documented, json_commands() - documented


def test_a_failure_with_json_is_one_error_document(zoo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tag", str(zoo / "nowhere"), "net", "stable", "1.0.0", "--json"]) == 6
    captured = capsys.readouterr()
    assert captured.out == ""
    error = json.loads(captured.err)["error"]
    assert error["code"] == 6 and error["kind"] == "StoreNotFoundError" and "zoostore.toml" in error["message"]


def test_an_invalid_model_toml_is_exit_2_with_its_problems_listed(zoo: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The message lists every problem for a person; `problems` lists them for a script."""
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "w.bin").write_bytes(b"weights")
    (folder / "model.toml").write_text('network = 3\nframework = "onnx"\n')
    assert main(["init", str(zoo / "store")]) == 0
    capsys.readouterr()
    assert main(["publish", str(zoo / "store"), "bad", "1.0.0", str(folder), "--no-check", "--json"]) == 2
    captured = capsys.readouterr()
    error = json.loads(captured.err)["error"]
    assert captured.out == "" and error["code"] == 2 and error["kind"] == "DescriptorError"
    assert [p["key"] for p in error["problems"]] == ["network", "model_license", "inputs", "outputs"]
    assert {p["file"] for p in error["problems"]} == {str(folder / "model.toml")}
    assert all(f"  {p['key']}: {p['message']}" in error["message"] for p in error["problems"])


def test_a_usage_error_with_json_ends_with_the_error_document(capsys: pytest.CaptureFixture[str]) -> None:
    # argparse's own errors (a missing argument, an option without its value) printed usage only.
    for argv, words in ((["publish", "store", "m1", "--json"], "the following arguments are required: VERSION, PATH"),
                        (["sync", "--json", "--arch"], "argument --arch: expected one argument")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: zoostore ")    # the usage is still there, for a person
        doc = json.loads(err.strip().splitlines()[-1])
        assert doc == {"error": {"code": 2, "kind": "UsageError", "message": f"zoostore {argv[0]}: {words}"}}
    with pytest.raises(SystemExit):
        main(["publish", "store", "m1"])             # without --json: no document
    assert "{" not in capsys.readouterr().err


def test_a_file_in_the_way_of_a_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x")
    assert main(["init", str(tmp_path / "afile")]) == 1
    assert "File exists" in (err := capsys.readouterr().err) and "choose another path, or move it away" in err
    assert main(["init", str(tmp_path / "afile" / "sub"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert doc["error"]["kind"] == "NotADirectoryError" and "a part of that path is a file" in doc["error"]["message"]
