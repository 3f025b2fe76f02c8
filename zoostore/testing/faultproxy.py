"""A fault-injecting HTTP reverse proxy on loopback, for tests and benchmarks.

Put it between a client (zoostore's HTTP backend, s3fs, botocore) and a loopback server (a
directory served by `http.server`, moto, radosgw) to see how the client copes with a bad network
or a struggling server, reproducibly:

    with FaultProxy(moto_url, Faults(status_5xx=0.2, truncate=0.1, seed=7, max_faults=20)) as proxy:
        client = boto3.client("s3", endpoint_url=proxy.url, ...)   # path-style addressing
        ...
        assert proxy.stats.faults["truncate"] <= 20

Faults, each drawn per request with its probability from a `random.Random(seed)`:

- `latency`: wait `latency_s` before forwarding;
- `status_5xx`: answer one of `status_codes` (500, 502, 503, 504, 429) without asking upstream;
  with `s3_slowdown`, a 503 carries S3's `<Error><Code>SlowDown</Code>` XML body;
- `reset`: abort the connection with a TCP RST (SO_LINGER 0) at one of `reset_points`: before
  the request reaches upstream, after upstream handled it but before any response byte, or after
  the headers and part of the body (the client sees ConnectionResetError);
- `truncate`: send the headers with the full Content-Length, part of the body, then close
  cleanly (the client sees http.client.IncompleteRead);
- `ignore_range`: drop `Range`/`If-Range` before forwarding, so the answer is 200 with the whole
  body. Drawn only for requests that carry `Range`. botocore *signs* `Range`, so against a
  server that checks SigV4 signatures (radosgw, moto with IAM auth) this fault yields 403
  SignatureDoesNotMatch instead: use it with unsigned HTTP stores.

`max_faults` bounds the total number injected (latency included), `methods` limits faults to
some methods; other requests pass through untouched. Outcomes are deterministic for a given
seed and request order (each eligible request draws the same five numbers).

Forwarding: every method, headers in order (hop-by-hop ones dropped), the client's `Host`
unchanged (SigV4 signs it, so signatures made for the proxy's address verify upstream), request
bodies streamed with their framing (Content-Length, or chunked re-chunked as it arrives), one
upstream connection per request. `Expect: 100-continue` is answered by the proxy itself, like
nginx does: it decides on its faults first, then sends `100 Continue` and streams the body
upstream without `Expect` (botocore does not sign `Expect`); an injected 5xx is sent instead of
`100 Continue` and the unread body ends the connection, as S3 does. `stop()` is bounded: it
shuts down every open socket (idle keep-alive connections included) and joins for at most
`timeout` seconds. Only loopback addresses are accepted, on both sides.

One module, longer than 500 lines: an HTTP/1.1 proxy handles body framing in both directions
(length, chunked, until-close, 100-continue), and each fault point sits inside that flow.
"""

from __future__ import annotations

import contextlib
import http
import http.client
import http.server
import ipaddress
import random
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, Literal

from zoostore.core.records import dataclass

__all__ = ["FAULT_KINDS", "Faults", "FaultProxy", "ProxyStats", "ResetPoint"]

ResetPoint = Literal["before_upstream", "before_response", "mid_body"]
FAULT_KINDS = ("latency", "status_5xx", "reset", "truncate", "ignore_range")
STATUS_CODES = frozenset({429, 500, 502, 503, 504})
_RESET_POINTS = frozenset({"before_upstream", "before_response", "mid_body"})
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                         "proxy-authorization", "te", "trailer", "trailers", "transfer-encoding",
                         "upgrade", "expect"})
_BLOCK = 64 * 1024
_MAX_BLOCKS = 1 << 24  # bounds every body loop: 1 TiB in 64 KiB blocks
_MAX_LINE = 65536
_MAX_TRAILERS = 100
_MAX_REQUESTS_PER_CONNECTION = 100_000
_MAX_BUFFERED = 256 << 20  # an upstream body without Content-Length is buffered to be cut
_SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message>"
             b"<RequestId>FAULTPROXY</RequestId><HostId>faultproxy</HostId></Error>")


@dataclass(frozen=True)
class Faults:
    """What to inject. Probabilities are per request; `status_5xx + reset + truncate +
    ignore_range` must not exceed 1 (one of them at most per request, `latency` on top)."""

    latency: float = 0.0
    latency_s: float = 0.1
    status_5xx: float = 0.0
    status_codes: tuple[int, ...] = (500, 502, 503, 504)
    s3_slowdown: bool = False
    reset: float = 0.0
    reset_points: tuple[ResetPoint, ...] = ("before_upstream", "before_response", "mid_body")
    truncate: float = 0.0
    ignore_range: float = 0.0
    seed: int = 0
    max_faults: int | None = None
    methods: frozenset[str] | None = None  # None: every method

    def __post_init__(self) -> None:
        probabilities = (self.latency, self.status_5xx, self.reset, self.truncate, self.ignore_range)
        if any(not 0.0 <= p <= 1.0 for p in probabilities):
            raise ValueError(f"fault probabilities must be within [0, 1]: {self}")
        if sum(probabilities[1:]) > 1.0 + 1e-9:
            raise ValueError("status_5xx + reset + truncate + ignore_range must not exceed 1")
        if not self.status_codes or not set(self.status_codes) <= STATUS_CODES:
            raise ValueError(f"status_codes must be among {sorted(STATUS_CODES)}: {self.status_codes}")
        if not self.reset_points or not set(self.reset_points) <= _RESET_POINTS:
            raise ValueError(f"reset_points must be among {sorted(_RESET_POINTS)}")
        if self.latency_s < 0 or (self.max_faults is not None and self.max_faults < 0):
            raise ValueError("latency_s and max_faults must not be negative")
        if self.methods is not None:
            object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot: requests seen, faults injected by kind (every kind present), requests that
    asked for `100-continue`, and upstream failures (answered 502 or cut)."""

    requests: int
    faults: Mapping[str, int]
    expect_continue: int
    upstream_errors: int

    @property
    def faults_total(self) -> int:
        return sum(self.faults.values())


@dataclass
class _Plan:
    """The faults drawn for one request. `kind` holds a reserved slot of max_faults until
    `FaultProxy._settle` counts it as injected or gives it back."""

    latency_s: float = 0.0
    kind: str | None = None
    status: int = 503
    slowdown: bool = False
    reset_point: str = "before_upstream"
    fraction: float = 0.0
    settled: bool = True


class FaultProxy:
    """The proxy; a context manager (`with FaultProxy(url, faults) as p: p.url`)."""

    def __init__(self, upstream_url: str, faults: Faults | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(upstream_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"upstream must be an http:// URL: {upstream_url!r}")
        _loopback(parts.hostname, "upstream")
        self._upstream = (parts.hostname, parts.port or 80)
        self._upstream_netloc = parts.netloc
        self._prefix = parts.path.rstrip("/")
        self._family, self._host = _loopback(host, "host")
        self._port = port
        self.timeout = timeout
        self._lock = threading.Lock()
        self._faults = faults or Faults()
        self._rng = random.Random(self._faults.seed)
        self._injected = 0
        self._requests = self._expect = self._upstream_errors = 0
        self._counts = dict.fromkeys(FAULT_KINDS, 0)
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server((self._host, self._port), self, self._family)
        serving = threading.Event()

        def serve() -> None:
            serving.set()
            server.serve_forever(poll_interval=0.05)

        self._server = server
        self._serve_thread = threading.Thread(target=serve, name="faultproxy", daemon=True)
        self._serve_thread.start()
        serving.wait(5.0)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, cut open connections, join handler threads for at most `timeout` s."""
        server, self._server = self._server, None
        if server is None:
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        server.shutdown()  # returns within poll_interval: serve_forever is running
        server.server_close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in [*threads, self._serve_thread]:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FaultProxy is not started")
        port = self._server.server_address[1]
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{port}"

    # -- faults and counters -----------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._faults

    @faults.setter
    def faults(self, faults: Faults) -> None:
        """Swap the faults (e.g. after setting up fixtures): restarts the random sequence and
        the max_faults budget; stats keep counting."""
        with self._lock:
            self._faults, self._rng, self._injected = faults, random.Random(faults.seed), 0

    @property
    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(self._requests, MappingProxyType(dict(self._counts)), self._expect,
                              self._upstream_errors)

    def _plan(self, method: str, has_range: bool, expect: bool) -> _Plan:
        with self._lock:
            self._requests += 1
            self._expect += expect
            f = self._faults
            if f.methods is not None and method not in f.methods:
                return _Plan()
            u_latency, u_kind, u_code, u_point, fraction = (self._rng.random() for _ in range(5))
            budget = f.max_faults - self._injected if f.max_faults is not None else 1 << 62
            plan = _Plan(fraction=fraction, slowdown=f.s3_slowdown,
                         status=f.status_codes[int(u_code * len(f.status_codes))],
                         reset_point=f.reset_points[int(u_point * len(f.reset_points))])
            if budget > 0 and u_latency < f.latency:
                plan.latency_s, budget = f.latency_s, budget - 1
                self._injected += 1
                self._counts["latency"] += 1
            edge = 0.0
            for kind, p in (("status_5xx", f.status_5xx), ("reset", f.reset),
                            ("truncate", f.truncate), ("ignore_range", f.ignore_range)):
                edge += p
                if u_kind < edge:
                    if budget > 0 and (kind != "ignore_range" or has_range):
                        plan.kind, plan.settled = kind, False
                        self._injected += 1
                    break
            return plan

    def _settle(self, plan: _Plan, injected: bool) -> None:
        with self._lock:
            if plan.kind is None or plan.settled:
                return
            plan.settled = True
            if injected:
                self._counts[plan.kind] += 1
            else:
                self._injected -= 1

    def _upstream_error(self) -> None:
        with self._lock:
            self._upstream_errors += 1

    def _track(self, sock: socket.socket | None, add: bool) -> None:
        with self._lock:
            if sock is not None:
                (self._sockets.add if add else self._sockets.discard)(sock)
            (self._threads.add if add else self._threads.discard)(threading.current_thread())

    def _connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(*self._upstream, timeout=self.timeout)
        conn.connect()
        with self._lock:
            if conn.sock is not None:
                self._sockets.add(conn.sock)
        return conn

    def _disconnect(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if conn.sock is not None:
                self._sockets.discard(conn.sock)
        conn.close()


def _loopback(host: str, what: str) -> tuple[socket.AddressFamily, str]:
    if host == "localhost":
        return socket.AF_INET, "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None or not ip.is_loopback:
        raise ValueError(f"{what} must be a loopback address (127.0.0.0/8, ::1, localhost): {host!r}")
    return (socket.AF_INET6 if ip.version == 6 else socket.AF_INET), str(ip)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: FaultProxy, family: socket.AddressFamily) -> None:
        self.address_family = family
        self.owner = owner
        super().__init__(address, _Handler)

    def server_bind(self) -> None:  # HTTPServer's calls socket.getfqdn: a DNS lookup
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # else a client that went away: normal
            super().handle_error(request, client_address)


class _ClientError(Exception):
    """The client's request cannot be read (bad framing, or it went away)."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _expect_pending = False

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.owner.timeout)
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            with contextlib.suppress(OSError):
                super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        for _ in range(_MAX_REQUESTS_PER_CONNECTION):
            if self.close_connection or self.server.owner._stopping.is_set():
                return
            self.handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def parse_request(self) -> bool:
        self._expect_pending = False
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        self._expect_pending = True  # answered in _forward, once the faults are decided
        return True

    def do_GET(self) -> None:
        owner = self.server.owner
        plan = owner._plan(self.command, "Range" in self.headers, self._expect_pending)
        try:
            self._forward(plan)
        except (_ClientError, OSError, http.client.HTTPException):
            self.close_connection = True
        finally:
            owner._settle(plan, injected=False)

    do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # -- the request -------------------------------------------------------------------------

    def _forward(self, plan: _Plan) -> None:
        owner = self.server.owner
        if plan.latency_s and owner._stopping.wait(plan.latency_s):
            raise _ClientError("the proxy is stopping")
        if plan.kind == "status_5xx":
            owner._settle(plan, injected=True)
            self._reply_status(plan)
            return
        if plan.kind == "reset" and plan.reset_point == "before_upstream":
            owner._settle(plan, injected=True)
            self._reset()
            return
        framing, length = self._request_framing()
        strip = {"range", "if-range"} if plan.kind == "ignore_range" else set()
        headers = _forwardable(self.headers.items(), strip)
        if not any(k.lower() == "host" for k, _ in headers):
            headers.insert(0, ("Host", owner._upstream_netloc))
        if plan.kind == "ignore_range":
            owner._settle(plan, injected=True)
        try:
            conn = owner._connect()
        except OSError as exc:
            self._drain(framing, length)
            return self._reply_upstream_error(exc)
        try:
            response = self._send_upstream(conn, headers, framing, length)
            if response is not None:
                self._relay(plan, response)
        finally:
            owner._disconnect(conn)

    def _request_framing(self) -> tuple[str, int]:
        encodings = ",".join(self.headers.get_all("Transfer-Encoding") or []).lower()
        if encodings:
            if encodings.split(",")[-1].strip() != "chunked":
                self.send_error(400, "unsupported Transfer-Encoding")
                raise _ClientError(encodings)
            return "chunked", 0
        lengths = set(self.headers.get_all("Content-Length") or [])
        if not lengths:
            return "none", 0
        value = lengths.pop().strip()
        if lengths or not value.isdigit():
            self.send_error(400, "bad Content-Length")
            raise _ClientError(value)
        return "length", int(value)

    def _body(self, framing: str, length: int, trailers: list[bytes]) -> Iterator[bytes]:
        """The request body, block by block (decoded when chunked); sends `100 Continue` first
        if the client waits for it."""
        if framing == "none" or (framing == "length" and length == 0):
            return
        if self._expect_pending:
            self._expect_pending = False
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if framing == "length":
            yield from _read_exactly(self.rfile, length)
            return
        for _ in range(_MAX_BLOCKS):
            line = self.rfile.readline(_MAX_LINE + 1)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _ClientError(f"bad chunk size line {line[:80]!r}") from None
            if size == 0:
                for _ in range(_MAX_TRAILERS):
                    line = self.rfile.readline(_MAX_LINE + 1)
                    if line in (b"\r\n", b"\n", b""):
                        return
                    trailers.append(line)
                raise _ClientError("too many trailers")
            yield from _read_exactly(self.rfile, size)
            if self.rfile.readline(_MAX_LINE + 1) not in (b"\r\n", b"\n"):
                raise _ClientError("chunk not followed by CRLF")
        raise _ClientError("too many chunks")

    def _drain(self, framing: str, length: int) -> None:
        for _ in self._body(framing, length, []):
            pass

    def _send_upstream(self, conn: http.client.HTTPConnection, headers: list[tuple[str, str]],
                       framing: str, length: int) -> http.client.HTTPResponse | None:
        """Sends the request and streams the body; None if upstream failed (502 sent)."""
        try:
            conn.putrequest(self.command, self.server.owner._prefix + self.path,
                            skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            if framing == "chunked":
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
        except OSError as exc:
            self._drain(framing, length)
            self._reply_upstream_error(exc)
            return None
        upstream_ok, trailers = True, list[bytes]()
        for block in self._body(framing, length, trailers):
            if upstream_ok:  # if upstream stops reading, drain the client and read its answer
                try:
                    conn.send(b"%X\r\n%s\r\n" % (len(block), block) if framing == "chunked" else block)
                except OSError:
                    upstream_ok = False
        try:
            if framing == "chunked" and upstream_ok:
                conn.send(b"0\r\n" + b"".join(trailers) + b"\r\n")
            return conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            self._reply_upstream_error(exc)
            return None

    # -- the response ------------------------------------------------------------------------

    def _relay(self, plan: _Plan, response: http.client.HTTPResponse) -> None:
        owner = self.server.owner
        no_body = (self.command == "HEAD" or response.status in (204, 304)
                   or 100 <= response.status < 200)
        if plan.kind == "reset" and (plan.reset_point == "before_response" or no_body):
            owner._settle(plan, injected=True)
            return self._reset()
        cut = plan.kind in ("reset", "truncate") and not no_body
        blocks: Iterator[bytes] = _response_blocks(response)
        length = None if response.chunked else response.length
        if cut and length is None:
            buffered = b"".join(_bounded(blocks, _MAX_BUFFERED))
            blocks, length = iter([buffered]), len(buffered)
        if cut and length == 0:  # nothing to cut: a reset happens before the response instead
            if plan.kind == "reset":
                owner._settle(plan, injected=True)
                return self._reset()
            owner._settle(plan, injected=False)
            cut = False
        framing = "none" if no_body else "length" if length is not None else (
            "chunked" if self.request_version >= "HTTP/1.1" else "close")
        drop = {"content-length"} if framing in ("chunked", "close") else set()
        self.send_response_only(response.status, response.reason)
        for name, value in _forwardable(response.getheaders(), drop):
            if not (cut and name.lower() == "content-length"):
                self.send_header(name, value)
        if cut:
            self.send_header("Content-Length", str(length))
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        if framing == "close":
            self.send_header("Connection", "close")
        self.end_headers()
        if no_body:
            return
        if cut:
            assert length is not None
            owner._settle(plan, injected=True)
            self._write_body(blocks, "length", int(plan.fraction * length))
            if plan.kind == "reset":
                self._reset()
            self.close_connection = True  # truncate: a clean close (FIN) after part of the body
            return
        sent = self._write_body(blocks, framing, length)
        if length is not None and sent != length:  # upstream cut its body short: so do we
            owner._upstream_error()
            self.close_connection = True

    def _write_body(self, blocks: Iterator[bytes], framing: str, limit: int | None) -> int:
        sent = 0
        for block in blocks:
            if limit is not None:
                block = block[: limit - sent]
            if block:
                self.wfile.write(b"%X\r\n%s\r\n" % (len(block), block) if framing == "chunked" else block)
                sent += len(block)
            if limit is not None and sent >= limit:
                break
        if framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")
        if framing == "close":
            self.close_connection = True
        return sent

    def _reply_status(self, plan: _Plan) -> None:
        """The injected error, before `100 Continue` if the client waits for one; a body the
        client has not sent is not waited for (the connection then closes), else drained."""
        if self._expect_pending:
            self.close_connection = True
        else:
            self._drain(*self._request_framing())
        if plan.slowdown and plan.status == 503:
            body, ctype = _SLOWDOWN, "application/xml"
        else:
            phrase = http.HTTPStatus(plan.status).phrase
            body, ctype = f"{plan.status} {phrase} (injected by faultproxy)\n".encode(), "text/plain"
        self._reply(plan.status, body, ctype)

    def _reply_upstream_error(self, exc: BaseException) -> None:
        self.server.owner._upstream_error()
        self.close_connection = True
        self._reply(502, f"faultproxy: upstream failed: {exc!r}\n".encode(), "text/plain")

    def _reply(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response_only(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        """Close with a TCP RST: SO_LINGER 0, and no FIN first (socketserver would shutdown())."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()  # the last reference besides the socket: close() now really closes
        self.connection.close()


def _forwardable(headers: Any, drop: set[str]) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = list(headers)
    named = {token.strip().lower() for name, value in items if name.lower() == "connection"
             for token in value.split(",")}
    return [(k, v) for k, v in items if k.lower() not in _HOP_BY_HOP | drop | named]


def _read_exactly(stream: Any, size: int) -> Iterator[bytes]:
    remaining = size
    for _ in range(size // _BLOCK + 1):
        if remaining <= 0:
            return
        data: bytes = stream.read(min(_BLOCK, remaining))
        if not data:
            raise _ClientError(f"body ended {remaining} bytes early")
        remaining -= len(data)
        yield data
    if remaining > 0:
        raise _ClientError(f"body ended {remaining} bytes early")


def _response_blocks(response: http.client.HTTPResponse) -> Iterator[bytes]:
    for _ in range(_MAX_BLOCKS):
        data = response.read(_BLOCK)
        if not data:
            return
        yield data


def _bounded(blocks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    total = 0
    for block in blocks:
        total += len(block)
        if total > limit:
            raise http.client.HTTPException(f"upstream body over {limit} bytes without a length")
        yield block
