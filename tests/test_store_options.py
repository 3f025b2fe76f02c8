"""Store options through every door: --store-option, $ZOOSTORE_STORE_OPTIONS, zoo.toml's
[store_options], storage_options= in Python and zoo://; on moto, with no AWS_ENDPOINT_URL set."""

from __future__ import annotations

import inspect
import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import fsspec
import pytest

from zoostore.cli import main
from zoostore.core.errors import ConfigError
from zoostore.documents.project import load_project
from zoostore.storage.options import STORE_OPTIONS_ENV, cli_options, for_backend, parse_option_pairs


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", STORE_OPTIONS_ENV, "ZOOSTORE_STORE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")  # credentials: the standard variables
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    name = f"opts-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=name)
    return name


def model(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "weights.bin").write_bytes(b"options " * 4000)
    return src


def test_command_line_options_reach_the_s3_backend(bucket: str, moto_endpoint: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    url = f"s3://{bucket}/zoo"
    opts = ["--store-option", f"endpoint_url={moto_endpoint}", "--store-option", "region=us-east-1"]
    assert main(["init", url, *opts]) == 0
    assert main(["publish", url, "net", "1.0.0", str(model(tmp_path)), "--no-check", "-q", *opts]) == 0
    capsys.readouterr()
    assert main(["ls", url, "--json", *opts]) == 0
    assert [m["model"] for m in json.loads(capsys.readouterr().out)["models"]] == ["net"]
    assert main(["ls", url, "--store-option", "no-equals-sign"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_environment_options_and_python_options(bucket: str, moto_endpoint: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import zoostore

    url = f"s3://{bucket}/zoo"
    zoo, _ = zoostore.init_store(url, storage_options={"endpoint_url": moto_endpoint, "region": "us-east-1"})
    zoostore.publish(zoo, "net", "1.0.0", [model(tmp_path)], check=False)
    monkeypatch.setenv(STORE_OPTIONS_ENV, json.dumps({"endpoint_url": moto_endpoint}))
    assert main(["ls", url, "net"]) == 0
    path = zoostore.fetch("net@1.0.0", path="weights.bin", store=url)
    assert path.read_bytes() == b"options " * 4000
    monkeypatch.setenv(STORE_OPTIONS_ENV, "{not json")
    assert main(["ls", url]) == 2


def test_zoo_toml_options_serve_lock_sync_fetch_and_zoo_urls(bucket: str, moto_endpoint: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import zoostore

    url = f"s3://{bucket}/zoo"
    zoo, _ = zoostore.init_store(url, storage_options={"endpoint_url": moto_endpoint})
    zoostore.publish(zoo, "net", "1.0.0", [model(tmp_path)], check=False)
    project = tmp_path / "project"
    project.mkdir()
    (project / "zoo.toml").write_text(
        f'store = "{url}"\narchs = ["x86_64"]\n[store_options]\nendpoint_url = "{moto_endpoint}"\n'
        'region = "us-east-1"\n[models]\nnet = "^1"\n')
    monkeypatch.chdir(project)
    assert main(["sync", "-q"]) == 0
    assert (project / "models" / "net" / "x86_64" / "weights.bin").read_bytes() == b"options " * 4000
    assert zoostore.fetch("net", "1.0.0", "weights.bin").exists()
    fsspec.config.conf.pop("zoo", None)
    with fsspec.open("zoo://net@^1/any/weights.bin", "rb", skip_instance_cache=True) as f:
        assert f.read(8) == b"options "


def test_zoo_toml_refuses_credentials(tmp_path: Path) -> None:
    (tmp_path / "zoo.toml").write_text('store = "s3://b/zoo"\n[store_options]\nsecret = "hunter2"\n[models]\n')
    with pytest.raises(ConfigError, match=r"\[store_options\]: secret would put credentials in a committed file"):
        load_project(tmp_path)


def test_defaults_a_backend_has_no_use_for_are_dropped_there(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "local")
    assert main(["init", store, "--store-option", "endpoint_url=http://127.0.0.1:9"]) == 0
    assert main(["ls", store, "--store-option", "profile=nobody"]) == 0


def test_translation_per_backend() -> None:
    with cli_options({"region": "eu-central-1", "profile": "zoo", "headers": {"X": "1"}}):
        s3 = for_backend("s3", {"endpoint_url": "http://127.0.0.1:1"})
        assert s3 == {"profile": "zoo", "headers": {"X": "1"},
                      "client_kwargs": {"region_name": "eu-central-1", "endpoint_url": "http://127.0.0.1:1"}}
        assert for_backend("http", None) == {"headers": {"X": "1"}}
        assert for_backend("local", None) == {}
    assert for_backend("generic", {"anon": True}, scheme="gs") == {"token": "anon"}
    assert for_backend("s3", {"anon": True}, {"anon": False}) == {"anon": True}  # explicit beats defaults
    assert parse_option_pairs(["anon=true", "max_attempts=3", "endpoint_url=http://h:1/x"]) == {
        "anon": True, "max_attempts": 3, "endpoint_url": "http://h:1/x"}


def test_every_store_command_takes_store_options() -> None:
    from zoostore.cli import STORE_COMMANDS, build_parser

    _, commands = build_parser()
    for name in STORE_COMMANDS:
        assert any("--store-option" in a.option_strings for a in commands[name]._actions), name




def test_the_documented_timeout_defaults_are_the_ones_in_effect() -> None:
    """docs/remote-stores.md said `timeout` defaults to 60 s for s3 too; an S3 store that stalled
    gave up after 5 attempts in 77 s: without the option, s3fs's own 5 s (connect) and 15 s
    (read) apply. The table says so."""
    import s3fs

    from zoostore.storage.backends.http import HttpBackend
    from zoostore.storage.backends.s3_config import client_options as _client_options

    doc = (Path(__file__).parent.parent / "docs" / "remote-stores.md").read_text()
    row = next(line for line in doc.splitlines() if line.startswith("| `timeout`"))
    config = _client_options({})["config_kwargs"]
    assert "read_timeout" not in config and "connect_timeout" not in config   # s3fs's then
    assert f"{s3fs.S3FileSystem.read_timeout} s to read" in row and f"{s3fs.S3FileSystem.connect_timeout} s to connect" in row, row
    assert inspect.signature(HttpBackend.__init__).parameters["timeout"].default == 60.0 and "60 (http)" in row, row
