"""Ctrl-C while an S3 request is stalled (a server that accepted the request and answers
nothing): the request is cancelled at once instead of holding its worker, and the pool joining
it, for a whole read timeout and its retries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from zoostore.cli import _stop_workers_on_sigint
from zoostore.core import cancel
from zoostore.core.errors import Interrupted
from zoostore.storage.backends import open_backend
from zoostore.testing.faultproxy import FaultProxy, Faults

STALL = Faults(latency=1.0, latency_s=60, methods=frozenset({"GET"}), seed=1)


def _bucket(endpoint: str) -> str:
    import boto3

    bucket = f"stall-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    return bucket


def _wait_for(predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def test_sigint_requests_the_stop_before_the_main_thread_unwinds() -> None:
    cancel.reset()
    try:
        with pytest.raises(KeyboardInterrupt), _stop_workers_on_sigint():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler raises as soon as the signal arrives
        assert cancel.requested()  # worker threads see the flag without waiting for the unwinding
    finally:
        cancel.reset()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_stop_request_cancels_a_stalled_s3_request(moto_endpoint: str) -> None:
    bucket = _bucket(moto_endpoint)
    with FaultProxy(moto_endpoint, STALL) as proxy:
        backend = open_backend(f"s3://{bucket}/zoo", storage_options={
            "key": "testing", "secret": "testing", "timeout": 120,
            "client_kwargs": {"endpoint_url": proxy.url, "region_name": "us-east-1"}})
        outcome: list[BaseException] = []

        def read() -> None:
            try:
                backend.get("zoostore.toml")
            except BaseException as exc:  # noqa: BLE001 - the test looks at what it was
                outcome.append(exc)

        worker = threading.Thread(target=read, daemon=True)
        cancel.reset()
        try:
            worker.start()
            _wait_for(lambda: proxy.stats.faults["latency"] >= 1)  # the request is stalled
            cancel.request()
            worker.join(timeout=30)  # the stall lasts 60 s, the read timeout 120 s
            assert not worker.is_alive(), "the stalled request kept its thread after the stop request"
        finally:
            cancel.reset()
    assert len(outcome) == 1 and isinstance(outcome[0], Interrupted), outcome


@pytest.mark.slow  # subprocesses and a moto store: a few seconds
def test_ctrl_c_during_a_stalled_sync_stops_at_once_and_the_sync_resumes(moto_endpoint: str, tmp_path: Path) -> None:
    bucket = _bucket(moto_endpoint)
    url = f"s3://{bucket}/zoo"
    src = tmp_path / "net"
    src.mkdir()
    for i in range(3):
        (src / f"w{i}.bin").write_bytes(os.urandom(300_000))
    env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
               ZOOSTORE_NO_PROGRESS="1", ZOOSTORE_CACHE=str(tmp_path / "cache"))
    env.pop("ZOOSTORE_OFFLINE", None)
    zoostore = [sys.executable, "-m", "zoostore"]
    direct = dict(env, ZOOSTORE_STORE_OPTIONS=f'{{"endpoint_url": "{moto_endpoint}"}}')
    for args in (["init", url], ["publish-release", url, "1.0.0", str(src), "--no-check", "-q"]):
        done = subprocess.run(zoostore + args, env=direct, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "zoo.toml").write_text(f'store = "{url}"\n[models]\nnet = "1.0.0"\n')
    assert subprocess.run(zoostore + ["lock"], cwd=proj, env=direct, capture_output=True, timeout=120).returncode == 0

    with FaultProxy(moto_endpoint, Faults()) as proxy:
        stalled = dict(env, ZOOSTORE_STORE_OPTIONS=f'{{"endpoint_url": "{proxy.url}", "timeout": 120}}')
        p = subprocess.Popen(zoostore + ["sync"], cwd=proj, env=stalled, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: proxy.stats.requests >= 1)  # the store is open: what follows runs on workers
            proxy.faults = STALL
            _wait_for(lambda: proxy.stats.faults["latency"] >= 1)
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=30)  # the stall lasts 60 s
        finally:
            if p.poll() is None:
                p.kill()
                p.communicate()
        assert p.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    again = subprocess.run(zoostore + ["sync"], cwd=proj, env=direct, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert sorted(f.name for f in (proj / "models" / "net").rglob("*.bin")) == ["w0.bin", "w1.bin", "w2.bin"]
