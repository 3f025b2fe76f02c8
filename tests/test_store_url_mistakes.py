"""Store URLs with a typo: a slip in '://' is refused with the URL that was probably meant
(instead of becoming a local folder named 's3:'), a bucket name botocore would refuse is a
usage error naming the bucket (instead of an internal error)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoostore.cli import main
from zoostore.core.errors import UsageError
from zoostore.storage.backends import open_backend


@pytest.mark.parametrize("typed, meant", [
    ("s3:/zoo/models", "s3://zoo/models"),
    ("s3:zoo/models", "s3://zoo/models"),
    ("s3//zoo/models", "s3://zoo/models"),
    ("HTTPS:/host/zoo", "https://host/zoo"),
    ("gs:/bucket/zoo", "gs://bucket/zoo"),
])
def test_a_url_with_a_slip_in_its_separator_is_refused_with_what_was_meant(
        typed: str, meant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match=f"did you mean '{meant}'"):
        open_backend(typed)
    assert list(tmp_path.iterdir()) == []


def test_init_does_not_create_a_local_folder_for_a_mistyped_url(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "s3:/zoo/models"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 's3://zoo/models'" in err and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["./s3:/zoo", "models/s3:x", "s3", "https/zoo"])
def test_local_folders_that_only_look_alike_still_open(path: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert open_backend(path).url.startswith("file:")


@pytest.mark.parametrize("url", ["s3://zoo /models", "s3://my_bucket?/models", "s3://zoo\t/models"])
def test_an_invalid_bucket_name_is_a_usage_error_naming_it(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("s3fs")
    with pytest.raises(UsageError, match="is not a valid bucket name"):
        open_backend(url, storage_options={"endpoint_url": "http://127.0.0.1:9", "anon": True})
    assert main(["ls", url, "--store-option", "endpoint_url=http://127.0.0.1:9", "--store-option", "anon=true"]) == 2
    err = capsys.readouterr().err
    assert "is not a valid bucket name" in err and "internal error" not in err, err


@pytest.mark.parametrize("where", ["option", "environment"])
def test_an_endpoint_without_its_scheme_is_a_usage_error_saying_what_to_write(
        where: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("s3fs")
    args = ["ls", "s3://zoo/models", "--store-option", "anon=true"]
    if where == "option":
        args += ["--store-option", "endpoint_url=127.0.0.1:9000"]
    else:
        monkeypatch.setenv("AWS_ENDPOINT_URL", "127.0.0.1:9000")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "did you mean 'http://127.0.0.1:9000'" in err and "internal error" not in err, err
