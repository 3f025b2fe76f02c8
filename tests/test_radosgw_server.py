"""The radosgw test server (zoostore.testing.radosgw): starts, serves S3, stops without leftovers.

Skipped when the Ceph programs are missing (Debian: ceph-mon ceph-osd radosgw ceph-common).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zoostore.testing.radosgw import RadosGW, available

pytestmark = pytest.mark.skipif(available() is not None, reason=str(available()))


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie holds no resources)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_radosgw_serves_s3_and_stops_cleanly(tmp_path: Path) -> None:
    from botocore.exceptions import ClientError

    rgw = RadosGW(tmp_path / "rgw")
    with rgw:
        assert rgw.endpoint_url.startswith("http://127.0.0.1:")
        pids = rgw.pids
        assert len(pids) == 3 and all(_alive(pid) for pid in pids)

        rgw.make_bucket("zoo")
        s3 = rgw.client()
        body = os.urandom(300_000)
        put = s3.put_object(Bucket="zoo", Key="a/b.bin", Body=body)
        got = s3.get_object(Bucket="zoo", Key="a/b.bin")
        assert got["Body"].read() == body
        assert got["ETag"] == put["ETag"]

        # A create-only write of an existing key is refused; the object is unchanged.
        with pytest.raises(ClientError) as refused:
            s3.put_object(Bucket="zoo", Key="a/b.bin", Body=b"other", IfNoneMatch="*")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
        assert s3.get_object(Bucket="zoo", Key="a/b.bin")["Body"].read() == body
        # ... and accepted for a new key.
        s3.put_object(Bucket="zoo", Key="new", Body=b"new", IfNoneMatch="*")

        # Everything lives under the working directory.
        assert (tmp_path / "rgw" / "ceph.conf").is_file()
        assert (tmp_path / "rgw" / "log" / "client.rgw.log").is_file()

    assert not rgw.running()
    assert rgw.pids == []
    assert [pid for pid in pids if _alive(pid)] == []
    rgw.stop()  # idempotent
