"""The conditional-write check on a flaky network: a conditional PUT of the probe whose answer
is lost and that is retried sees 412 (its own first attempt changed the ETag). That is the
server honouring If-Match; the check used to conclude the opposite and refuse every manifest
write of the process ("it refused If-Match with the object's current ETag", exit 2)."""

from __future__ import annotations

import random
import uuid

from zoostore.storage.backends import open_backend
from zoostore.storage.backends.s3 import S3Backend
from zoostore.testing.faultproxy import FaultProxy, Faults


def _seed_resetting_only(request: int, probability: float) -> int:
    """A seed whose first reset falls on the `request`-th PUT (0-based): FaultProxy draws five
    numbers per eligible request, the second deciding the fault (faultproxy's docstring)."""
    for seed in range(10_000):
        rng = random.Random(seed)
        kinds = [[rng.random() for _ in range(5)][1] for _ in range(request + 1)]
        if all(u >= probability for u in kinds[:-1]) and kinds[-1] < probability:
            return seed
    raise AssertionError("no seed found")


def test_a_lost_answer_to_the_probes_if_match_put_is_not_taken_for_a_refusal(moto_endpoint: str) -> None:
    import boto3

    bucket = f"probe-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    # The probe's PUTs: the object, If-None-Match: *, If-Match wrong, If-Match right (index 3).
    # Its first attempt reaches moto, the answer is lost, the retry answers 412.
    faults = Faults(reset=0.5, reset_points=("before_response",), methods=frozenset({"PUT"}),
                    seed=_seed_resetting_only(3, 0.5), max_faults=1)
    with FaultProxy(moto_endpoint, faults) as proxy:
        backend = open_backend(f"s3://{bucket}/zoo", storage_options={
            "key": "testing", "secret": "testing", "max_attempts": 3,
            "client_kwargs": {"endpoint_url": proxy.url, "region_name": "us-east-1"}})
        assert backend.put_if_absent("manifests/m.toml", b"m") is True
        assert proxy.stats.faults["reset"] == 1
    assert isinstance(backend, S3Backend)
    assert backend.cas_report is not None and backend.cas_report.startswith("honours"), backend.cas_report


def test_a_probe_put_that_keeps_failing_is_a_remote_error_not_a_verdict_on_the_server(moto_endpoint: str) -> None:
    import boto3
    import pytest

    from zoostore.core.errors import RemoteError

    bucket = f"probe-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=bucket)
    # Both attempts of the probe's first (plain) PUT answer 503: there is no object, and the
    # If-None-Match: * PUT that follows succeeded, read as "it overwrote an existing object".
    faults = Faults(status_5xx=1.0, status_codes=(503,), methods=frozenset({"PUT"}), max_faults=2)
    with FaultProxy(moto_endpoint, faults) as proxy:
        backend = open_backend(f"s3://{bucket}/zoo", storage_options={
            "key": "testing", "secret": "testing", "max_attempts": 2,
            "client_kwargs": {"endpoint_url": proxy.url, "region_name": "us-east-1"}})
        assert isinstance(backend, S3Backend)
        with pytest.raises(RemoteError, match="gave up after 2 attempt"):
            backend.probe_cas()
        assert backend.cas_report is None  # no verdict: the next conditional write checks again
        assert backend.put_if_absent("manifests/m.toml", b"m") is True
    assert backend.cas_report is not None and backend.cas_report.startswith("honours"), backend.cas_report


def test_the_retry_notice_names_the_status_and_s3_error_code(moto_endpoint: str) -> None:
    import boto3
    import pytest

    bucket = f"notice-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="zoo/x", Body=b"x")
    faults = Faults(status_5xx=1.0, status_codes=(503,), s3_slowdown=True, methods=frozenset({"GET"}), max_faults=1)
    with FaultProxy(moto_endpoint, faults) as proxy:
        backend = open_backend(f"s3://{bucket}/zoo", storage_options={
            "key": "testing", "secret": "testing",
            "client_kwargs": {"endpoint_url": proxy.url, "region_name": "us-east-1"}})
        with pytest.warns(UserWarning, match=r"failed \(HTTP 503 SlowDown\); retrying with backoff"):
            assert backend.get("x") == b"x"
