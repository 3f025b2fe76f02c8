"""zoostore.testing.faultproxy: each fault does what it says, bounded and reproducible; requests
pass through intact (methods, bodies, chunked framing, Expect: 100-continue, Host), so that S3
signatures made for the proxy's address verify at moto with IAM authentication on."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import io
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from zoostore.testing.faultproxy import FaultProxy, Faults

BLOB = bytes(i % 251 for i in range(200_000))


def request(url: str, method: str = "GET", path: str = "/blob", *, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection; the response read in full (errors propagate)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def site(tmp_path: Path, serve_directory: Callable[..., Any]) -> Any:
    (tmp_path / "blob").write_bytes(BLOB)
    (tmp_path / "empty").write_bytes(b"")
    return serve_directory(tmp_path, ranges=True)


# -- an upstream that echoes what it received --------------------------------------------------


class _Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, Any]]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            data = b""
            for _ in range(10_000):
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
            raise AssertionError("too many chunks")
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        body = self._body()
        record = {"method": self.command, "path": self.path, "headers": self.headers.items(),
                  "body_sha256": hashlib.sha256(body).hexdigest(), "body_len": len(body)}
        self.seen.append(record)
        out = json.dumps(record).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET


@pytest.fixture
def echo() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("Echo", (_Echo,), {"seen": seen}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- passing through ---------------------------------------------------------------------------


def test_without_faults_responses_pass_through(site: Any) -> None:
    with FaultProxy(site.url) as proxy:
        assert request(proxy.url)[::2] == (200, BLOB)
        status, headers, body = request(proxy.url, headers={"Range": "bytes=10-19"})
        assert (status, body, headers["Content-Range"]) == (206, BLOB[10:20], f"bytes 10-19/{len(BLOB)}")
        status, headers, body = request(proxy.url, "HEAD")
        assert (status, headers["Content-Length"], body) == (200, str(len(BLOB)), b"")
        assert request(proxy.url, path="/missing")[0] == 404
        stats = proxy.stats
    assert (stats.requests, stats.faults_total, stats.upstream_errors) == (4, 0, 0)


def test_methods_bodies_and_host_pass_through(echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = echo
    payload = b"x" * 300_000
    with FaultProxy(url) as proxy:
        netloc = urllib.parse.urlsplit(proxy.url).netloc
        for method in ("PUT", "POST"):
            record = json.loads(request(proxy.url, method, "/k?x-id=1", body=payload)[2])
            assert (record["method"], record["path"], record["body_len"]) == (method, "/k?x-id=1", len(payload))
            assert record["body_sha256"] == hashlib.sha256(payload).hexdigest()
        chunked = json.loads(request(proxy.url, "PUT", "/c", body=iter([b"ab", b"", b"cde" * 50_000]))[2])
        assert chunked["body_sha256"] == hashlib.sha256(b"ab" + b"cde" * 50_000).hexdigest()
        assert ["Transfer-Encoding", "chunked"] in chunked["headers"]
        record = json.loads(request(proxy.url, "DELETE", "/k", headers={"X-Amz-Date": "20240101T000000Z"})[2])
        assert record["method"] == "DELETE" and ["X-Amz-Date", "20240101T000000Z"] in record["headers"]
    for record in seen:  # the client's Host, unchanged (what SigV4 signed)
        assert [v for k, v in record["headers"] if k.lower() == "host"] == [netloc]


def _send_head(url: str, body_len: int) -> socket.socket:
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    sock.sendall(f"PUT /e HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Length: {body_len}\r\n"
                 "Expect: 100-continue\r\n\r\n".encode())
    return sock


def test_expect_100_continue(echo: tuple[str, list[dict[str, Any]]]) -> None:
    url, seen = echo
    with FaultProxy(url) as proxy:
        with _send_head(proxy.url, 5) as sock:
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(b"hello")
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 200 and json.loads(response.read())["body_len"] == 5
        assert not any(k.lower() == "expect" for k, _ in seen[-1]["headers"])
        # an injected error comes instead of 100 Continue; the body is never sent
        proxy.faults = Faults(status_5xx=1.0, status_codes=(503,))
        with _send_head(proxy.url, 5) as sock:
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert (response.status, response.getheader("Connection")) == (503, "close")
        assert len(seen) == 1 and proxy.stats.expect_continue == 2


# -- each fault --------------------------------------------------------------------------------


def test_truncate_sends_full_length_then_part_of_the_body(site: Any) -> None:
    with FaultProxy(site.url, Faults(truncate=1.0)) as proxy:
        with pytest.raises(http.client.IncompleteRead) as caught:
            request(proxy.url)
        assert len(caught.value.partial) + (caught.value.expected or 0) == len(BLOB)
        assert BLOB.startswith(caught.value.partial)
        assert request(proxy.url, "HEAD")[0] == 200  # no body: nothing to cut, not counted
        assert request(proxy.url, path="/empty")[::2] == (200, b"")
        assert proxy.stats.faults["truncate"] == 1


@pytest.mark.parametrize("point", ["before_upstream", "before_response", "mid_body"])
def test_reset_is_a_connection_error(site: Any, point: Any) -> None:
    with FaultProxy(site.url, Faults(reset=1.0, reset_points=(point,))) as proxy:
        with pytest.raises(ConnectionError):
            request(proxy.url)
        assert proxy.stats.faults["reset"] == 1
    assert len(site.requests) == (0 if point == "before_upstream" else 1)


def test_ignore_range_answers_200_with_the_whole_body(site: Any) -> None:
    with FaultProxy(site.url, Faults(ignore_range=1.0)) as proxy:
        assert request(proxy.url, headers={"Range": "bytes=0-9"})[::2] == (200, BLOB)
        assert request(proxy.url)[::2] == (200, BLOB)  # no Range: not a fault
        assert proxy.stats.faults["ignore_range"] == 1
    assert [r[2] for r in site.requests] == [None, None]


def test_status_codes_and_s3_slowdown(site: Any) -> None:
    codes = (429, 500, 502, 503, 504)
    with FaultProxy(site.url, Faults(status_5xx=1.0, status_codes=codes, seed=1)) as proxy:
        assert {request(proxy.url)[0] for _ in range(40)} == set(codes)
        proxy.faults = Faults(status_5xx=1.0, status_codes=(503,), s3_slowdown=True)
        status, headers, body = request(proxy.url)
        assert (status, headers["Content-Type"]) == (503, "application/xml")
        assert b"<Code>SlowDown</Code>" in body
        assert request(proxy.url, "HEAD")[::2] == (503, b"")
        assert proxy.stats.faults["status_5xx"] == 42
    assert site.requests == []


def test_latency(site: Any) -> None:
    with FaultProxy(site.url, Faults(latency=1.0, latency_s=0.3)) as proxy:
        start = time.monotonic()
        assert request(proxy.url)[0] == 200
        assert time.monotonic() - start >= 0.3
        assert proxy.stats.faults["latency"] == 1


def test_max_faults_bounds_the_total_also_across_threads(site: Any) -> None:
    with FaultProxy(site.url, Faults(status_5xx=1.0, latency=1.0, latency_s=0.01, max_faults=5)) as proxy:
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: request(proxy.url)[0], range(40)))
        stats = proxy.stats
    assert stats.faults_total == 5 and stats.requests == 40
    assert statuses.count(200) == 40 - stats.faults["status_5xx"]


def test_methods_filter(site: Any) -> None:
    with FaultProxy(site.url, Faults(status_5xx=1.0, methods=frozenset({"get"}))) as proxy:
        assert request(proxy.url, "HEAD")[0] == 200
        assert request(proxy.url)[0] >= 500
        assert proxy.stats.faults_total == 1


def test_same_seed_same_faults(site: Any) -> None:
    def outcomes(seed: int) -> list[str]:
        out = []
        with FaultProxy(site.url, Faults(status_5xx=0.3, truncate=0.3, seed=seed)) as proxy:
            for _ in range(20):
                try:
                    out.append(str(request(proxy.url)[0]))
                except http.client.IncompleteRead:
                    out.append("truncated")
        return out

    first = outcomes(7)
    assert first == outcomes(7) and len(set(first)) > 1


def test_stop_is_bounded_with_idle_and_waiting_connections(site: Any) -> None:
    proxy = FaultProxy(site.url, Faults(latency=1.0, latency_s=60.0)).start()
    parts = urllib.parse.urlsplit(proxy.url)
    idle = socket.create_connection((parts.hostname, parts.port), timeout=5)
    outcome: list[object] = []

    def wait_for_latency() -> None:
        try:
            outcome.append(request(proxy.url)[0])
        except (OSError, http.client.HTTPException) as exc:
            outcome.append(exc)

    waiting = threading.Thread(target=wait_for_latency, daemon=True)
    waiting.start()
    time.sleep(0.3)
    start = time.monotonic()
    proxy.stop(timeout=3.0)
    assert time.monotonic() - start < 3.0
    waiting.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionError), outcome
    assert idle.recv(1) == b""  # the idle keep-alive connection was closed
    idle.close()


def test_faults_are_validated_and_loopback_only() -> None:
    for bad in ({"truncate": 0.6, "reset": 0.6}, {"status_codes": (404,)}, {"latency": 1.5},
                {"reset_points": ("later",)}, {"max_faults": -1}):
        with pytest.raises(ValueError):
            Faults(**bad)
    for upstream, host in (("http://10.1.2.3:80", "127.0.0.1"), ("https://127.0.0.1:1", "127.0.0.1"),
                           ("http://127.0.0.1:1", "0.0.0.0")):
        with pytest.raises(ValueError):
            FaultProxy(upstream, host=host)


def test_unreachable_upstream_is_a_502() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with FaultProxy(f"http://127.0.0.1:{port}") as proxy:
        assert request(proxy.url)[0] == 502
        assert proxy.stats.upstream_errors == 1


# -- S3 through the proxy (moto) ---------------------------------------------------------------


def _s3(endpoint: str, key: str, secret: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret,
                        region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, **config))


def test_s3_through_the_proxy_with_signatures_checked(moto_endpoint: str) -> None:
    """moto checks SigV4 signatures only with IAM authentication on: a user with keys is made
    first, then authentication is switched on for this test only."""
    import boto3
    from botocore.exceptions import ClientError
    from moto.core.authorization import enable_iam_authentication

    iam = boto3.client("iam", endpoint_url=moto_endpoint, aws_access_key_id="testing",
                       aws_secret_access_key="testing", region_name="us-east-1")
    user = f"faultproxy-{time.time_ns()}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    keys = iam.create_access_key(UserName=user)["AccessKey"]
    bucket = f"faultproxy-{time.time_ns()}"
    _s3(moto_endpoint, "testing", "testing").create_bucket(Bucket=bucket)

    with FaultProxy(moto_endpoint) as proxy:
        s3 = _s3(proxy.url, keys["AccessKeyId"], keys["SecretAccessKey"])
        with enable_iam_authentication():
            s3.put_object(Bucket=bucket, Key="a/bytes", Body=BLOB)
            s3.put_object(Bucket=bucket, Key="a/file", Body=io.BytesIO(BLOB))  # Expect: 100-continue
            assert s3.get_object(Bucket=bucket, Key="a/bytes")["Body"].read() == BLOB
            assert s3.get_object(Bucket=bucket, Key="a/file", Range="bytes=5-9")["Body"].read() == BLOB[5:10]
            # the check is real: a wrong secret, or a Host other than the one signed, fails
            wrong = _s3(proxy.url, keys["AccessKeyId"], "not-the-secret")
            with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
                wrong.get_object(Bucket=bucket, Key="a/bytes")

            def other_host(request: Any, **_: Any) -> None:
                request.headers["Host"] = "127.0.0.1:1"

            s3.meta.events.register("before-send.s3.GetObject", other_host)
            with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
                s3.get_object(Bucket=bucket, Key="a/bytes")
        assert proxy.stats.expect_continue >= 1 and proxy.stats.faults_total == 0


def test_s3_client_retries_an_injected_slowdown(moto_endpoint: str) -> None:
    bucket = f"faultproxy-{time.time_ns()}"
    _s3(moto_endpoint, "testing", "testing").create_bucket(Bucket=bucket)
    faults = Faults(status_5xx=1.0, status_codes=(503,), s3_slowdown=True, max_faults=1)
    with FaultProxy(moto_endpoint, faults) as proxy:
        s3 = _s3(proxy.url, "testing", "testing", retries={"mode": "standard", "max_attempts": 3})
        s3.put_object(Bucket=bucket, Key="k", Body=io.BytesIO(b"data"))
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
        assert proxy.stats.faults["status_5xx"] == 1 and proxy.stats.requests == 3
