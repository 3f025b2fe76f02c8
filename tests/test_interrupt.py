"""Ctrl-C: sync and publish stop at the next check (the flag of zoostore.core.cancel), exit 130,
leave no temp files, and a second sync resumes from the prefix a stopped read kept (checked again on use)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from zoostore.core import cancel
from zoostore.core.digest import hash_file
from zoostore.core.errors import Interrupted
from zoostore.documents.store_config import StoreConfig
from zoostore.ops.publish import publish
from zoostore.repository import init_store, open_store
from zoostore.testing.faultproxy import FaultProxy, Faults

pytestmark = pytest.mark.slow


def wait_for(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob(".zoostore-tmp-*")] if root.exists() else []


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed into place meanwhile
        return 0


def test_cancel_flag() -> None:
    cancel.reset()
    cancel.check()
    cancel.request()
    with pytest.raises(Interrupted, match="interrupted: reading x"):
        cancel.check("reading x")
    cancel.reset()


def test_a_stop_request_lasts_while_the_interrupted_operation_unwinds() -> None:
    # The workers see it while they are joined; once the KeyboardInterrupt has left the block
    # the flag is clear again, so a caller that carries on (a notebook) is not stopped at once.
    cancel.reset()
    started, stopped = threading.Event(), threading.Event()

    def worker() -> None:
        started.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                cancel.check()
            except Interrupted:
                stopped.set()
                return
            time.sleep(0.001)

    pool = ThreadPoolExecutor(max_workers=1)
    with pytest.raises(KeyboardInterrupt), cancel.on_interrupt(pool):
        pool.submit(worker)
        assert started.wait(10)
        raise KeyboardInterrupt
    assert stopped.is_set() and not cancel.requested()
    # Set before (the CLI's SIGINT handler does, and the process is ending): it stays set.
    cancel.request()
    with pytest.raises(KeyboardInterrupt), cancel.on_interrupt(ThreadPoolExecutor(max_workers=1)):
        raise KeyboardInterrupt
    assert cancel.requested()
    cancel.reset()


def test_a_library_caller_carries_on_after_interrupting_a_sync_and_a_publish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers_store import project_dir, write_dir

    from zoostore.documents.project import load_project
    from zoostore.ops import sync_fill
    from zoostore.ops.sync import sync_project
    from zoostore.storage import writer

    cancel.reset()
    files = {f"w{i}.bin": os.urandom((2 << 20) + i) for i in range(3)} | {"small.txt": "x"}
    zoo, _ = init_store(tmp_path / "store")
    real_cut = writer._FileChunker._cut

    def ctrl_c(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(writer._FileChunker, "_cut", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        publish(zoo, "m", "1.0.0", [write_dir(tmp_path / "src", files)], arch="x86_64", check=False)
    assert not cancel.requested() and zoo.models() == []
    monkeypatch.setattr(writer._FileChunker, "_cut", real_cut)
    publish(zoo, "m", "1.0.0", [tmp_path / "src"], arch="x86_64", check=False)   # not stopped at once

    project = load_project(project_dir(tmp_path))
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    real_small = sync_fill._fill_small
    monkeypatch.setattr(sync_fill, "_fill_small", ctrl_c)   # on the main thread, inside the fill
    with pytest.raises(KeyboardInterrupt):
        sync_project(project)
    assert not cancel.requested()
    monkeypatch.setattr(sync_fill, "_fill_small", real_small)
    report = sync_project(project)
    assert sorted(report.placed) == sorted(f"m/x86_64/{name}" for name in files)


def test_ctrl_c_in_a_finalizer_sets_the_flag_without_an_ignored_traceback() -> None:
    # A KeyboardInterrupt raised in a weakref callback is printed as "Exception ignored ...
    # Traceback" and dropped (seen once in CI on the publish test below); there the handler only
    # sets the flag, on which the workers stop and the command ends with exit 130 all the same.
    import types
    import weakref

    from zoostore.cli import _on_sigint

    in_callback = types.SimpleNamespace(f_code=weakref.WeakSet()._remove.__code__)
    in_del = types.SimpleNamespace(f_code=compile("def __del__(self): pass", "x.py", "exec").co_consts[0])
    try:
        for frame in (in_callback, in_del):
            cancel.reset()
            assert _on_sigint(2, frame) is None
            assert cancel.requested()
        cancel.reset()
        with pytest.raises(KeyboardInterrupt):
            _on_sigint(2, types.SimpleNamespace(f_code=_size.__code__))   # anywhere else: interrupt at once
        assert cancel.requested()
    finally:
        cancel.reset()


def test_interrupted_sync_stops_cleans_up_and_resumes(http_store: Any, tmp_path: Path) -> None:
    zoo, _ = init_store(http_store.root, config=StoreConfig(pack_target_size=2 << 20))
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        (src / f"w{i}.bin").write_bytes(os.urandom(40 << 20))
    publish(zoo, "big", "1.0.0", [src], arch="x86_64", check=False)
    base = http_store.url.rsplit("/", 1)[0]
    env = dict(os.environ, ZOOSTORE_CACHE=str(tmp_path / "cache"), ZOOSTORE_NO_PROGRESS="1")
    env.pop("ZOOSTORE_OFFLINE", None)
    # Slow enough that the sync is still reading when it is interrupted: 1 s per request, and
    # each file is ten 4 MiB segments read a few at a time.
    with FaultProxy(base, Faults(latency=1.0, latency_s=1.0, seed=1)) as proxy:
        proj = tmp_path / "proj"
        proj.mkdir()
        (proj / "zoo.toml").write_text(f'store = "{proxy.url}/zoo"\narchs = ["x86_64"]\n[models]\nbig = "1.0.0"\n')
        cache_blobs = tmp_path / "cache" / "blobs"
        p = subprocess.Popen([sys.executable, "-m", "zoostore", "sync"], cwd=proj, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: any(_size(t) >= 4 << 20 for t in temps(cache_blobs)))  # a segment is written
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
        assert temps(tmp_path / "cache") == [] and temps(proj) == []
        done = [f for f in cache_blobs.rglob("*") if f.is_file()]
        assert len(done) < 2  # it stopped instead of finishing the downloads
        partial = [f for f in (tmp_path / "cache" / "partial").rglob("*") if f.is_file()]
        assert partial, "the decoded prefix was not kept"
        kept = sum(f.stat().st_size for f in partial)

        again = subprocess.run([sys.executable, "-m", "zoostore", "sync", "--json"], cwd=proj, env=env,
                               capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)
        assert report["bytes_reused"] >= kept - (1 << 20)  # whole chunks of the kept prefix
    for f in src.iterdir():
        assert hash_file(proj / "models" / "big" / "x86_64" / f.name) == hash_file(f)
    assert not any((tmp_path / "cache" / "partial").rglob("*.*"))


def test_interrupted_publish_commits_nothing_and_publishing_again_works(moto_endpoint: str, tmp_path: Path) -> None:
    import boto3

    bucket = f"intr-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"w{i}.bin").write_bytes(os.urandom(3 << 20))
    url = f"s3://{bucket}/zoo"
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", ZOOSTORE_NO_PROGRESS="1")
    with FaultProxy(moto_endpoint, Faults(latency=1.0, latency_s=0.5, seed=2, methods=frozenset({"PUT"}))) as proxy:
        opts = ["--store-option", f"endpoint_url={proxy.url}", "--store-option", "region=us-east-1"]
        assert subprocess.run([sys.executable, "-m", "zoostore", "init", url, "--pack-size", "1MiB", *opts],
                              env=env, capture_output=True, timeout=120).returncode == 0
        p = subprocess.Popen([sys.executable, "-m", "zoostore", "publish", url, "net", "1.0.0", str(src),
                              "--no-check", *opts], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        start = proxy.stats.requests
        wait_for(lambda: proxy.stats.requests >= start + 4)  # packs are on their way
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        assert p.returncode == 130 and "Traceback" not in err, err
        assert "nothing was published; run the command again" in err, err
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": moto_endpoint,
                                                                         "region_name": "us-east-1"}}
    zoo = open_store(url, storage_options=options)
    assert zoo.models() == []  # nothing was published
    cancel.reset()
    result = publish(zoo, "net", "1.0.0", [src], arch="any", check=False)
    assert sorted(result.files) == [f"w{i}.bin" for i in range(4)]
