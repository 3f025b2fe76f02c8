"""Publish and sync through a fault-injecting proxy (5xx, SlowDown, resets, truncated bodies,
ignored Range) in front of moto, radosgw and a static HTTP server: they finish with the right
bytes, or fail with a clear error after the retry budget, never with wrong bytes."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from zoostore.core.digest import hash_file
from zoostore.core.errors import RemoteError
from zoostore.documents.project import load_project
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.publish import publish
from zoostore.ops.sync import sync_project
from zoostore.ops.verify import verify_store
from zoostore.repository import init_store, open_store
from zoostore.testing.faultproxy import FaultProxy, Faults

SMALL = StoreConfig(pack_target_size=1 << 20)


def model(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(3):
        (src / f"part{i}.bin").write_bytes(os.urandom(700_000 + i * 1000))
    (src / "labels.txt").write_text("cat\ndog\n" * 100)
    return src


def through(options: dict[str, Any], url: str) -> dict[str, Any]:
    out = copy.deepcopy(options)
    out.setdefault("client_kwargs", {})["endpoint_url"] = url
    out.update(max_attempts=8, retry_deadline=60)
    return out


def project(tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    proj = tmp_path / "project"
    proj.mkdir()
    (proj / "zoo.toml").write_text(f'store = "{store}"\narchs = ["x86_64"]\n[models]\nnet = "1.0.0"\n')
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    return proj


def assert_same_files(src: Path, dest: Path) -> None:
    for f in src.iterdir():
        assert hash_file(dest / f.name) == hash_file(f), f.name


S3_FAULTS = Faults(status_5xx=0.06, s3_slowdown=True, reset=0.04, truncate=0.04, seed=11, max_faults=40)


def test_publish_and_sync_on_s3_through_faults(s3_server: Any, s3_bucket: str, s3_storage_options: dict[str, Any],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"s3://{s3_bucket}/zoo"
    src = model(tmp_path)
    with FaultProxy(s3_server.endpoint, S3_FAULTS) as proxy:
        options = through(s3_storage_options, proxy.url)
        zoo, _ = init_store(url, config=SMALL, storage_options=options)
        publish(zoo, "net", "1.0.0", [src], arch="x86_64", check=False)
        proj = project(tmp_path, url, monkeypatch)
        monkeypatch.setenv("ZOOSTORE_STORE_OPTIONS", __import__("json").dumps(
            {"endpoint_url": proxy.url, "max_attempts": 8, "retry_deadline": 60}))
        for var, value in (("AWS_ACCESS_KEY_ID", s3_storage_options["key"]),
                           ("AWS_SECRET_ACCESS_KEY", s3_storage_options["secret"])):
            monkeypatch.setenv(var, value)
        report = sync_project(load_project(proj))
        assert len(report.placed) == 4
        assert proxy.stats.faults_total > 0, proxy.stats
    assert_same_files(src, proj / "models" / "net" / "x86_64")
    assert verify_store(open_store(url, storage_options=s3_storage_options), read_data=True).ok


def test_sync_over_http_through_faults_and_ignored_ranges(http_store: Any, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    zoo, _ = init_store(http_store.root, config=SMALL)
    src = model(tmp_path)
    publish(zoo, "net", "1.0.0", [src], arch="x86_64", check=False)
    base = http_store.url.rsplit("/", 1)[0]
    faults = Faults(status_5xx=0.05, reset=0.05, truncate=0.05, ignore_range=0.2, seed=5, max_faults=40)
    with FaultProxy(base, faults) as proxy:
        proj = project(tmp_path, f"{proxy.url}/zoo", monkeypatch)
        monkeypatch.setenv("ZOOSTORE_MAX_ATTEMPTS", "8")
        assert len(sync_project(load_project(proj)).placed) == 4
        assert proxy.stats.faults_total > 0
    assert_same_files(src, proj / "models" / "net" / "x86_64")


def test_a_server_that_keeps_failing_is_a_clear_error_and_places_nothing(http_store: Any, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    zoo, _ = init_store(http_store.root, config=SMALL)
    src = model(tmp_path)
    publish(zoo, "net", "1.0.0", [src], arch="x86_64", check=False)
    base = http_store.url.rsplit("/", 1)[0]
    proj = project(tmp_path, f"{http_store.url}", monkeypatch)
    from zoostore.ops.lock import lock_project

    lock_project(load_project(proj))  # locked while the server is healthy
    with FaultProxy(base, Faults(status_5xx=1.0, status_codes=(503,), seed=1)) as proxy:
        (proj / "zoo.toml").write_text((proj / "zoo.toml").read_text().replace(http_store.url, f"{proxy.url}/zoo"))
        lock = (proj / "zoo.lock").read_text().replace(http_store.url, f"{proxy.url}/zoo")
        (proj / "zoo.lock").write_text(lock)
        monkeypatch.setenv("ZOOSTORE_MAX_ATTEMPTS", "3")
        monkeypatch.setenv("ZOOSTORE_RETRY_DEADLINE", "10")
        with pytest.raises(RemoteError, match=r"gave up after 3 attempt\(s\).*HTTP 503"):
            sync_project(load_project(proj), locked=True)
    dest = proj / "models" / "net" / "x86_64"
    assert not dest.exists() or not any(p.is_file() for p in dest.iterdir())


@pytest.mark.slow  # the real backoff: about 3 s of waits
def test_the_default_retry_budget_rides_out_a_server_failing_for_a_few_seconds(
        http_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # The first 6 requests answer 503 (the first request fails 6 times in a row): the default
    # budget of 10 attempts outlasts that, where the earlier default of 5 gave up after at
    # most 1.5 s. The pause is said once on stderr, as a warning.
    from zoostore.cli import main as cli

    zoo, _ = init_store(http_store.root, config=SMALL)
    src = model(tmp_path)
    publish(zoo, "net", "1.0.0", [src], arch="x86_64", check=False)
    base = http_store.url.rsplit("/", 1)[0]
    monkeypatch.delenv("ZOOSTORE_MAX_ATTEMPTS", raising=False)
    monkeypatch.delenv("ZOOSTORE_RETRY_DEADLINE", raising=False)
    monkeypatch.setattr("zoostore.storage.backends.retry._noticed", set())
    with FaultProxy(base, Faults(status_5xx=1.0, status_codes=(503,), seed=1, max_faults=6)) as proxy:
        proj = project(tmp_path, f"{proxy.url}/zoo", monkeypatch)
        monkeypatch.chdir(proj)
        assert cli(["sync", "-q"]) == 0
        assert proxy.stats.faults_total == 6
    retries = [line for line in capsys.readouterr().err.splitlines() if "retrying" in line]
    assert len(retries) == 1 and retries[0].startswith("zoostore: warning: ") and "HTTP 503" in retries[0], retries
    assert "10 attempts" in retries[0]
    assert_same_files(src, proj / "models" / "net" / "x86_64")


def test_s3_retries_from_the_event_loop_thread_are_said_once_and_json_errors_stay_last(
        s3_server: Any, s3_bucket: str, s3_storage_options: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # S3 requests retry in fsspec's event-loop thread, many at once: the first retry is still
    # said once per store and process, as a CLI warning. A sync that gives up with --json
    # prints the notice before its error document, which stays stderr's last line.
    import json

    from zoostore.cli import main as cli

    url = f"s3://{s3_bucket}/zoo"
    src = model(tmp_path)
    zoo, _ = init_store(url, config=SMALL, storage_options=s3_storage_options)
    publish(zoo, "net", "1.0.0", [src], arch="x86_64", check=False)
    proj = project(tmp_path, url, monkeypatch)
    monkeypatch.chdir(proj)
    for var, value in (("AWS_ACCESS_KEY_ID", s3_storage_options["key"]),
                       ("AWS_SECRET_ACCESS_KEY", s3_storage_options["secret"])):
        monkeypatch.setenv(var, value)
    monkeypatch.setattr("zoostore.storage.backends.retry._noticed", set())
    with FaultProxy(s3_server.endpoint, Faults(status_5xx=0.5, status_codes=(503,), seed=3, max_faults=12)) as proxy:
        monkeypatch.setenv("ZOOSTORE_STORE_OPTIONS", json.dumps({"endpoint_url": proxy.url, "max_attempts": 8}))
        assert cli(["sync", "--json"]) == 0
        assert proxy.stats.faults_total > 1
    out, err = capsys.readouterr()
    json.loads(out)
    retries = [line for line in err.splitlines() if "retrying" in line]
    assert len(retries) == 1 and retries[0].startswith("zoostore: warning: "), err
    monkeypatch.setattr("zoostore.storage.backends.retry._noticed", set())
    with FaultProxy(s3_server.endpoint, Faults(status_5xx=1.0, status_codes=(503,), seed=3)) as proxy:
        monkeypatch.setenv("ZOOSTORE_STORE_OPTIONS", json.dumps({"endpoint_url": proxy.url, "max_attempts": 2}))
        monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cold-cache"))  # the store must be read
        assert cli(["sync", "--json", "--dest", str(tmp_path / "elsewhere")]) != 0
    lines = capsys.readouterr().err.splitlines()
    assert "error" in json.loads(lines[-1])
    assert len([line for line in lines if "retrying" in line]) == 1, lines
