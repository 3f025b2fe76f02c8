"""Read-only HTTP(S) backend: a CDN or static web server in front of a store.

    https://cdn.example.org/zoo/zoostore.toml          key "zoostore.toml"
    https://cdn.example.org/zoo/packs/3f/3fa9...e1     key "packs/3f/3fa9...e1" (percent-encoded)

Plain `urllib.request`, one connection per request: no dependency beyond the standard library,
thread-safe without shared sessions, and HTTP proxies / `NO_PROXY` work as everywhere else.

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
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from email.message import Message
from http.client import HTTPMessage
from typing import Any, NoReturn

import blake3

from zoostore.storage.backends.base import Backend, Capabilities, ObjectInfo, Versioned
from zoostore.core.errors import ObjectNotFoundError, ReadOnlyError

DEFAULT_CACHE_BYTES = 256 * 1024 * 1024


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


class _NoDirectoryRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects, except `key` -> `key/`: that is a server saying "a directory", and a
    directory is not an object (keys never end in "/"), so answer 404 instead of its listing."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: HTTPMessage, newurl: str
    ) -> urllib.request.Request | None:
        old_path = urllib.parse.urlsplit(req.full_url).path
        new_path = urllib.parse.urlsplit(urllib.parse.urljoin(req.full_url, newurl)).path
        if new_path == old_path + "/":
            raise urllib.error.HTTPError(req.full_url, 404, "a directory, not an object", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


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
    ) -> None:
        self.url = url.rstrip("/")
        self._base = self.url + "/"
        self._headers = {"Accept-Encoding": "identity", **(headers or {})}
        self._timeout = timeout
        #: False once the server answered a ranged GET with the wrong bytes or the whole object.
        self.ranges_supported = True
        self._cache = _WholeObjectCache(cache_bytes)
        self._opener = urllib.request.build_opener(_NoDirectoryRedirects)

    # -- plumbing --------------------------------------------------------------------------

    def _object_url(self, key: str) -> str:
        return self._base + urllib.parse.quote(key, safe="/")

    def _missing(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(
            f"object {key!r} not found at {self._object_url(key)} (HTTP 404)", key=key
        )

    def _request(
        self, key: str, *, method: str = "GET", extra: dict[str, str] | None = None
    ) -> tuple[int, Message, bytes]:
        """(status, headers, body) of one request; 404/410 -> ObjectNotFoundError; 416 is
        returned, other errors raise `urllib.error.HTTPError` (an OSError)."""
        request = urllib.request.Request(
            self._object_url(key), method=method, headers={**self._headers, **(extra or {})}
        )
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                body = response.read() if method != "HEAD" else b""
                return int(response.status), response.headers, body
        except urllib.error.HTTPError as e:
            with e:
                if e.code in (404, 410):
                    raise self._missing(key) from None
                if e.code == 416:
                    return 416, e.headers, b""
                raise

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
        request = urllib.request.Request(self._base, method="HEAD", headers=self._headers)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                date = response.headers.get("Date")
        except urllib.error.HTTPError as e:  # a 403/404 on the root still carries the Date
            with e:
                date = e.headers.get("Date")
        return _http_date(date) or time.time()

    # -- writes: refused -------------------------------------------------------------------

    def _read_only(self, what: str) -> NoReturn:
        raise ReadOnlyError(
            f"cannot {what} at {self.url}: HTTP(S) stores are read-only; "
            "publish to the store's s3:// or local URL instead"
        )

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        self._read_only(f"list {prefix!r}")

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
