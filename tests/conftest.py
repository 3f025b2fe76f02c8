"""Shared fixtures: loopback servers that the tests start themselves.

- `moto_endpoint`: one moto S3 server per session on 127.0.0.1 (port chosen by the OS).
- `s3_bucket`: a fresh, empty bucket per test; `s3_storage_options`: s3fs options for it.
- `serve_directory`: a threaded HTTP server on 127.0.0.1 serving a directory, either honouring
  `Range` (`ranges=True`) or Python's plain `SimpleHTTPRequestHandler`, which ignores it.
  `http_store` / `http_store_no_ranges` build on it.
"""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def s3_client(moto_endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


@pytest.fixture
def s3_bucket(s3_client: Any) -> str:
    name = f"zoo-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_storage_options(moto_endpoint: str) -> dict[str, Any]:
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"},
    }


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
