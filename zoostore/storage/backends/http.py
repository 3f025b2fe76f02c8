"""Read-only HTTP(S) backend: a CDN or static web server in front of a store.

    https://cdn.example.org/zoo/zoostore.toml          key "zoostore.toml"
    https://cdn.example.org/zoo/packs/3f/3fa9...e1     key "packs/3f/3fa9...e1" (percent-encoded)

Requests go through urllib3 (a dependency of botocore, so always installed): a thread-safe pool
of keep-alive connections per host, so a sync's many ranged reads do not each pay a TCP and TLS
handshake. `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` are honoured as `urllib.request` reads them.
Redirects are followed (at most 5), except `key` -> `key/`: that is a server saying "a
directory", and a directory is not an object (keys never end in "/"), so the answer is 404.

Retries (`retry.RetryPolicy`: exponential backoff with full jitter, bounded in attempts and
seconds; options `max_attempts`, `retry_deadline`): connection errors, timeouts (`timeout`
seconds per connect and per read), truncated bodies (fewer bytes than Content-Length, a broken
chunked stream) and HTTP 429/500/502/503/504 (honouring a `Retry-After` in seconds). When the
budget is spent, or on another HTTP error (401, 403, ...), `RemoteError` names the URL and status.

- get: GET; 404 (or 410) -> `ObjectNotFoundError`. `Accept-Encoding: identity` keeps byte ranges
  meaningful on servers that would otherwise compress on the fly.
- get_range: GET with `Range: bytes=a-b`. A 206 whose Content-Range starts elsewhere, or a 200
  (the server ignores Range, as Python's `http.server` does), is detected: the right bytes are
  sliced out of the full body, and the backend remembers that ranges do not work, so later calls
  fetch each object once and slice it from an LRU cache of whole objects bounded in bytes
  (`cache_bytes`, default 256 MiB; an object larger than the bound is fetched each time). Only
  `get_range` uses the cache, and store objects read by range (packs) are immutable, so it never
  serves stale bytes; `get` always goes to the server (manifests change).
- stat: HEAD (Content-Length, Last-Modified; a server without Last-Modified gives the Date of the
  answer). now(): the Date header of a HEAD on the store root, else this machine's clock.
- get_versioned: GET; the token is the ETag, else the BLAKE3 hex of the body. Nothing here
  compares tokens: HTTP stores cannot be written.
- Writes (put_if_absent, put_cas, put, delete, freshen) raise `ReadOnlyError` without touching the
  network. `list` raises `ReadOnlyError` too: directory listings (where a server has them) are
  HTML meant for people, and only gc, which must run against a writable URL anyway, lists stores.
"""

from __future__ import annotations

import email.utils
import itertools
import threading
import time
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from http.client import HTTPException
from typing import Any, NoReturn

import blake3
import urllib3

from zoostore.storage.backends.base import Backend, Capabilities, ObjectInfo, Versioned
from zoostore.storage.backends.retry import RETRY_STATUSES, RetryPolicy, notice_retry, unreachable
from zoostore.core import cancel, forks
from zoostore.core.errors import AccessDeniedError, ObjectNotFoundError, ReadOnlyError, RemoteError

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024
MAX_REDIRECTS = 5
#: Connections kept per host: enough for the blob reader's threads.
POOL_SIZE = 16
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: urllib3's errors that a retry can fix, minus those it cannot (bad URL, certificate).
_TRANSIENT = (urllib3.exceptions.HTTPError, HTTPException, ConnectionError, TimeoutError)
_PERMANENT = (urllib3.exceptions.LocationValueError, urllib3.exceptions.SSLError)

Headers = Mapping[str, str]


def _http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _content_range_start(value: str | None) -> int | None:
    """The first byte of `Content-Range: bytes a-b/total`; None if absent or unparsable."""
    if not value or not value.startswith("bytes "):
        return None
    first = value[len("bytes ") :].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def _origin(url: str) -> str:
    """scheme://host[:port] of a URL, as an error names the server."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _retry_after(headers: Headers) -> float | None:
    value = headers.get("Retry-After", "")
    return float(value) if value.isdigit() else None


class _Connections:
    """One urllib3 pool manager for direct connections and one per proxy, chosen per URL the
    way `urllib.request` does (`getproxies()`, `proxy_bypass()`)."""

    def __init__(self) -> None:
        self._direct = urllib3.PoolManager(num_pools=8, maxsize=POOL_SIZE)
        self._proxies = urllib.request.getproxies()
        self._via: dict[str, urllib3.PoolManager] = {}
        self._lock = threading.Lock()

    def for_url(self, url: str) -> urllib3.PoolManager:
        parts = urllib.parse.urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
            return self._direct
        with self._lock:
            manager = self._via.get(proxy)
            if manager is None:
                manager = self._via[proxy] = urllib3.ProxyManager(proxy, num_pools=8, maxsize=POOL_SIZE)
            return manager

    def clear(self) -> None:
        self._direct.clear()
        with self._lock:
            for manager in self._via.values():
                manager.clear()


class _WholeObjectCache:
    """Whole objects for servers that ignore Range: LRU, bounded in total bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self._limit:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old)
            self._items[key] = data
            self._size += len(data)
            while self._size > self._limit:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted)


class HttpBackend(Backend):
    """A read-only `Backend` over an `http://` or `https://` store root."""

    capabilities = Capabilities(writes=False, deletes=False, listing=False, atomic_cas=False)

    def __init__(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        max_attempts: int | None = None,
        retry_deadline: float | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._base = self.url + "/"
        self._headers = {"Accept-Encoding": "identity", **(headers or {})}
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        retry = {"max_attempts": max_attempts, "retry_deadline": retry_deadline}
        self.retry = RetryPolicy.from_options({k: v for k, v in retry.items() if v is not None})
        #: False once the server answered a ranged GET with the wrong bytes or the whole object.
        self.ranges_supported = True
        self._cache = _WholeObjectCache(cache_bytes)
        self._connections = _Connections()
        forks.start_over_after_fork(self)

    def start_over(self) -> None:
        """In a forked child: connections of its own (the parent's pooled keep-alive sockets,
        and pool locks another parent thread may have held at the fork, are the parent's)."""
        self._cache._lock = threading.Lock()
        self._connections = _Connections()

    # -- plumbing --------------------------------------------------------------------------

    def _object_url(self, key: str) -> str:
        return self._base + urllib.parse.quote(key, safe="/")

    def _missing(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(
            f"object {key!r} not found at {self._object_url(key)} (HTTP 404)", key=key
        )

    def _once(self, url: str, method: str, headers: dict[str, str]) -> tuple[int, Headers, bytes]:
        """One request with its redirects; the whole body read (a short one raises)."""
        for _ in range(MAX_REDIRECTS + 1):
            response = self._connections.for_url(url).request(
                method, url, headers=headers, timeout=self._timeout, retries=False, redirect=False,
                preload_content=False, enforce_content_length=True,
            )
            try:
                location = response.headers.get("Location")
                if response.status in _REDIRECTS and location:
                    new_url = urllib.parse.urljoin(url, location)
                    if urllib.parse.urlsplit(new_url).path == urllib.parse.urlsplit(url).path + "/":
                        # The server says "a directory"; a directory is not an object (keys never
                        # end in "/"), so answer 404 instead of following to its listing.
                        return 404, response.headers, b""
                    url, method = new_url, "GET" if response.status == 303 and method != "HEAD" else method
                    response.drain_conn()  # so that the connection can carry the next request
                    continue
                body = b"" if method == "HEAD" else _read_all(response)
                return response.status, response.headers, body
            finally:
                response.release_conn()
        return 310, {}, b""  # too many redirects (310 is unassigned; reported below)

    def _fetch(self, url: str, *, method: str = "GET", extra: dict[str, str] | None = None) -> tuple[int, Headers, bytes]:
        """(status, headers, body) of a request, retried on transient failures. Returns any
        status below 400, 404, 410 and 416; raises `RemoteError` for others and when the
        retry budget is spent."""
        headers = {**self._headers, **(extra or {})}
        started = time.monotonic()
        for attempt in itertools.count():
            try:
                status, answer, body = self._once(url, method, headers)
            except _PERMANENT as e:
                raise RemoteError(f"{method} {url} failed: "
                                  f"{unreachable(e, _origin(url), ca_variable='SSL_CERT_FILE') or e}") from e
            except _TRANSIENT as e:
                why = unreachable(e, _origin(url), ca_variable="SSL_CERT_FILE")
                if why is not None:
                    raise RemoteError(f"{method} {url} failed: {why}") from e
                wait = self.retry.next_delay(attempt, started)
                if wait is None:
                    raise self._gave_up(method, url, attempt, f"{type(e).__name__}: {e}") from e
                notice_retry(self.url, f"{method} failed ({type(e).__name__})", self.retry)
                cancel.check()
                time.sleep(wait)
                continue
            if status in RETRY_STATUSES:
                wait = self.retry.next_delay(attempt, started, retry_after=_retry_after(answer))
                if wait is None:
                    raise self._gave_up(method, url, attempt, f"HTTP {status}")
                notice_retry(self.url, f"{method} answered HTTP {status}", self.retry)
                time.sleep(wait)
                continue
            if status < 400 and status != 310 or status in (404, 410, 416):
                return status, answer, body
            raise (AccessDeniedError if status in (401, 403) else RemoteError)(
                f"{method} {url} answered HTTP {status}"
                + (" (more than 5 redirects)" if status == 310 else "")
                + ": check the URL and that the server lets this machine read the store"
                + (" (credentials or headers storage option)" if status in (401, 403) else "")
            )
        raise AssertionError("unreachable")

    def _gave_up(self, method: str, url: str, attempt: int, last: str) -> RemoteError:
        return RemoteError(
            f"{method} {url} kept failing: gave up after {attempt + 1} attempt(s) (retry budget: "
            f"{self.retry.describe()}); last error: {last}. Check that the server is up, or raise "
            "max_attempts / retry_deadline (docs/remote-stores.md)"
        )

    def _request(
        self, key: str, *, method: str = "GET", extra: dict[str, str] | None = None
    ) -> tuple[int, Headers, bytes]:
        """`_fetch` of a key; 404/410 -> ObjectNotFoundError."""
        status, headers, body = self._fetch(self._object_url(key), method=method, extra=extra)
        if status in (404, 410):
            raise self._missing(key)
        return status, headers, body

    def close(self) -> None:
        self._connections.clear()

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        return self._request(key)[2]

    def get_versioned(self, key: str) -> Versioned:
        _, headers, body = self._request(key)
        token = headers.get("ETag") or blake3.blake3(body).hexdigest()
        return Versioned(data=body, token=token)

    def _whole(self, key: str) -> bytes:
        data = self._cache.get(key)
        if data is None:
            data = self.get(key)
            self._cache.put(key, data)
        return data

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end}) for {key!r}")
        if not self.ranges_supported:
            return self._whole(key)[start:end]
        if end == start:
            self.stat(key)  # the contract still wants ObjectNotFoundError for absent keys
            return b""
        status, headers, body = self._request(key, extra={"Range": f"bytes={start}-{end - 1}"})
        if status == 416:
            return b""  # start is at or past the end of the object
        if status == 206 and _content_range_start(headers.get("Content-Range")) == start:
            if len(body) > end - start:
                return body[: end - start]
            return body
        # 200 (Range ignored) or a 206 for other bytes: never return bytes from another offset.
        self.ranges_supported = False
        if status == 200:
            self._cache.put(key, body)
            return body[start:end]
        return self._whole(key)[start:end]

    def stat(self, key: str) -> ObjectInfo:
        _, headers, _ = self._request(key, method="HEAD")
        length = headers.get("Content-Length")
        if length is None:
            size = len(self.get(key))  # chunked HEAD answers carry no length
        else:
            size = int(length)
        mtime = _http_date(headers.get("Last-Modified")) or _http_date(headers.get("Date")) or time.time()
        return ObjectInfo(key=key, size=size, mtime=mtime)

    def now(self) -> float:
        # Any answer on the store root, even 403 or 404, carries the server's Date.
        try:
            _, headers, _ = self._once(self._base, "HEAD", self._headers)
        except (*_TRANSIENT, *_PERMANENT):
            return time.time()
        return _http_date(headers.get("Date")) or time.time()

    # -- writes: refused -------------------------------------------------------------------

    def _read_only(self, what: str) -> NoReturn:
        raise ReadOnlyError(
            f"cannot {what} at {self.url}: HTTP(S) stores are read-only; "
            "publish to the store's s3:// or local URL instead"
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        # Not a write: say what cannot be done here, and where it can (verify and gc list).
        raise ReadOnlyError(
            f"cannot list {prefix!r} at {self.url}: an HTTP(S) mirror cannot be listed; run this "
            f"command (verify, gc) on the store's s3:// or local URL")

    def put_if_absent(self, key: str, data: bytes) -> bool:
        self._read_only(f"write {key!r}")

    def put_cas(self, key: str, data: bytes, *, expected: str | None) -> str:
        self._read_only(f"write {key!r}")

    def put(self, key: str, data: bytes) -> None:
        self._read_only(f"write {key!r}")

    def delete(self, keys: Iterable[str]) -> None:
        self._read_only("delete objects")

    def freshen(self, key: str) -> None:
        self._read_only(f"freshen {key!r}")

    def __repr__(self) -> str:
        return f"HttpBackend({self.url!r})"


def _read_all(response: Any, piece: int = 1 << 18) -> bytes:
    """The whole body, in pieces, stopping (and dropping the connection) on Ctrl-C."""
    parts: list[bytes] = []
    while True:
        data = response.read(piece)
        if not data:
            return b"".join(parts)
        parts.append(data)
        if cancel.requested():
            response.close()  # a half-read connection must not go back to the pool
            cancel.check()
