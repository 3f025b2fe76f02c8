"""Shared fixtures: loopback servers that the tests start themselves.

- `moto_endpoint`: one moto S3 server per session on 127.0.0.1 (port chosen by the OS).
- `radosgw`: one Ceph radosgw per session (zoostore.testing.radosgw), a real S3 server. Skipped
  with the reason when the Ceph programs are missing, except under CI (`CI=true`), where that
  fails the test instead: CI must exercise the real server.
- `s3_server`: parametrized over both ("moto", "radosgw"), so every test that uses the S3
  fixtures below runs against each. `s3_bucket`: a fresh, empty bucket per test;
  `s3_storage_options`: s3fs options for it; `s3_client`: a botocore client.
- `moto_ignoring_conditions`: a second moto endpoint (same in-process state) in front of which
  If-Match / If-None-Match are stripped: an S3 server that ignores conditional writes.
- `serve_directory`: a threaded HTTP server on 127.0.0.1 serving a directory, either honouring
  `Range` (`ranges=True`) or Python's plain `SimpleHTTPRequestHandler`, which ignores it.
  `http_store` / `http_store_no_ranges` build on it.
"""

from __future__ import annotations

import copy
import functools
import http.server
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# Loopback only: never route test traffic through a proxy from the environment.
for _var in ("NO_PROXY", "no_proxy"):
    os.environ[_var] = ",".join(filter(None, [os.environ.get(_var, ""), "127.0.0.1", "localhost"]))


# -- S3 (moto) ---------------------------------------------------------------------------


class _Serialised:
    """Runs moto's WSGI app one request at a time.

    moto 5.2.5 honours If-None-Match / If-Match on PutObject, but checks then stores without a
    lock, so two threads could both pass the check. AWS S3 makes conditional writes atomic;
    serialising the server restores that guarantee, so concurrency tests exercise our client
    code against the semantics S3 actually provides.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self._lock:
            return list(self._app(environ, start_response))


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    wsgi_server = server._server  # noqa: SLF001 - see _Serialised for why
    assert wsgi_server is not None
    wsgi_server.app = _Serialised(wsgi_server.app)
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class _IgnoreConditions:
    """WSGI middleware that drops conditional-write headers: a server without compare-and-swap."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self._app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        for header in ("HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH"):
            environ.pop(header, None)
        return self._app(environ, start_response)


@pytest.fixture(scope="session")
def moto_ignoring_conditions(moto_endpoint: str) -> Iterator[str]:
    """An endpoint onto the same moto state that ignores If-Match / If-None-Match."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    wsgi_server = server._server  # noqa: SLF001
    assert wsgi_server is not None
    wsgi_server.app = _IgnoreConditions(_Serialised(wsgi_server.app))
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def moto_options(endpoint: str) -> dict[str, Any]:
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }


# -- S3 (radosgw) ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def radosgw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from zoostore.testing.radosgw import RadosGW, available

    reason = available()
    if reason is not None:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"CI must test against radosgw, but: {reason}")
        pytest.skip(reason)
    # memstore capacity, not an allocation: deleted objects hold memory for 60-90 s until
    # radosgw's garbage collector runs, and a full OSD makes PUTs hang, so leave room.
    rgw = RadosGW(tmp_path_factory.mktemp("radosgw"), memstore_bytes=4 << 30)
    rgw.start()
    try:
        yield rgw
    finally:
        rgw.stop()


# -- S3, either server -----------------------------------------------------------------------


@dataclass(frozen=True)
class S3Server:
    name: str
    endpoint: str
    options: dict[str, Any]
    client: Any


@pytest.fixture(scope="session", params=["moto", "radosgw"])
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    if request.param == "moto":
        import boto3

        endpoint = request.getfixturevalue("moto_endpoint")
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        return S3Server("moto", endpoint, moto_options(endpoint), client)
    rgw = request.getfixturevalue("radosgw")
    return S3Server("radosgw", rgw.endpoint_url, rgw.storage_options(), rgw.client())


@pytest.fixture
def s3_client(s3_server: S3Server) -> Any:
    return s3_server.client


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    name = f"zoo-{uuid.uuid4().hex[:20]}"
    s3_server.client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_storage_options(s3_server: S3Server) -> dict[str, Any]:
    return copy.deepcopy(s3_server.options)


# -- HTTP ------------------------------------------------------------------------------------

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Python's static file handler (ignores Range), silent, recording requests."""

    log_record: list[tuple[str, str, str | None]]  # (method, path, Range header), set per server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.log_record.append(("GET", self.path, self.headers.get("Range")))
        super().do_GET()

    def do_HEAD(self) -> None:
        self.log_record.append(("HEAD", self.path, self.headers.get("Range")))
        super().do_HEAD()


class _RangeHandler(_QuietHandler):
    """Adds single-range `Range: bytes=a-b` support (206 / 416), like nginx or a CDN."""

    def do_GET(self) -> None:
        header = self.headers.get("Range")
        match = _RANGE.match(header or "")
        path = self.translate_path(self.path)
        if not match or not os.path.isfile(path):
            super().do_GET()
            return
        self.log_record.append(("GET", self.path, header))
        data = Path(path).read_bytes()
        start = int(match.group(1))
        end = int(match.group(2)) + 1 if match.group(2) else len(data)
        if start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        end = min(end, len(data))
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.send_header("Content-Length", str(end - start))
        self.send_header("Last-Modified", self.date_time_string(int(os.stat(path).st_mtime)))
        self.end_headers()
        self.wfile.write(data[start:end])


@dataclass
class ServedDirectory:
    root: Path
    url: str
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)


@pytest.fixture
def serve_directory() -> Iterator[Callable[..., ServedDirectory]]:
    """`serve_directory(root, ranges=True)` -> ServedDirectory; servers stop after the test."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(root: Path, *, ranges: bool = True) -> ServedDirectory:
        log: list[tuple[str, str, str | None]] = []
        base = _RangeHandler if ranges else _QuietHandler
        handler_class = type("Handler", (base,), {"log_record": log})
        handler = functools.partial(handler_class, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        host, port = server.server_address[:2]
        return ServedDirectory(root=root, url=f"http://{host!s}:{port}", requests=log)

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_store(tmp_path: Path, serve_directory: Callable[..., ServedDirectory]) -> ServedDirectory:
    """A store directory served over HTTP with Range support, at `<url>/zoo`."""
    (tmp_path / "zoo").mkdir()
    served = serve_directory(tmp_path, ranges=True)
    return ServedDirectory(root=tmp_path / "zoo", url=served.url + "/zoo", requests=served.requests)


@pytest.fixture
def http_store_no_ranges(tmp_path: Path, serve_directory: Callable[..., ServedDirectory]) -> ServedDirectory:
    """The same, served by plain `SimpleHTTPRequestHandler`, which ignores Range."""
    (tmp_path / "zoo").mkdir()
    served = serve_directory(tmp_path, ranges=False)
    return ServedDirectory(root=tmp_path / "zoo", url=served.url + "/zoo", requests=served.requests)
