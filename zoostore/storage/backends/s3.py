"""S3 backend (and S3-compatible servers) over s3fs, using S3 conditional writes.

    s3://<bucket>/<prefix>/zoostore.toml        key "zoostore.toml" -> object "<prefix>/zoostore.toml"
    s3://<bucket>/<prefix>/packs/3f/3fa9...e1
    s3://<bucket>/<prefix>/tmp/clock-<uuid>     a short-lived probe written by `now()`
    s3://<bucket>/<prefix>/tmp/cas-probe-<uuid> a short-lived probe of conditional writes

How the calls are made: every operation is a coroutine that calls the S3 API through
`S3FileSystem._call_s3` (s3fs's request path: credentials, region) and runs on s3fs's event-loop
thread via `_run` (which cancels a request on Ctrl-C). Calling the API directly, rather than
`fs.pipe_file(...)`, is what gives us the conditional-write headers and the response (ETag,
status code) that the contract needs. s3fs turns a `ClientError` into a builtin
(`FileExistsError` for a failed If-None-Match, `OSError` otherwise) and keeps the original as
`__cause__`; `_error` reads the S3 error code and HTTP status from there.

Retries: one layer, ours (`retry.RetryPolicy`: exponential backoff with full jitter, bounded in
attempts and seconds; storage options `max_attempts`, `retry_deadline`, `timeout`). It retries
connection errors, timeouts, truncated bodies, 429/500/502/503/504 and SlowDown; botocore's and
s3fs's own retries are switched off (botocore's unless `config_kwargs["retries"]` is given) so that
attempts do not multiply. Retrying a conditional PUT is safe: it fails with 412 if anything
changed meanwhile.

- put_if_absent: PutObject with `If-None-Match: *`; 412 PreconditionFailed -> False (already
  there); 409 ConditionalRequestConflict (a concurrent conditional write to the same key is in
  flight) -> retry with backoff; a 500 that outlives the retries -> False if the key now exists.
  On a server that failed the probe, a HEAD comes first, so that `init` does not replace an
  existing `zoostore.toml` (racy, but content-addressed keys hold the same bytes anyway).
- put_cas: PutObject with `If-Match: <etag>` (or `If-None-Match: *` when `expected` is None); 412,
  or 404 for `If-Match` on a vanished key, -> ConflictError; 409 -> retry. The ETag goes out
  *bare* (without its quotes): radosgw 16 matches only that form on PUT, AWS and moto accept
  both; the probe below switches to the quoted form for a server that wants it. A 500 that
  outlives the retries is a ConflictError too: radosgw answers some losers of a race with 500
  (ECANCELED) instead of 412, and the caller re-reads anyway. A retried PUT whose first attempt
  succeeded but whose answer was lost reports a conflict; the caller re-reads and finds its own
  change, which is harmless for manifests.
- The first conditional write of a backend probes the server (`probe_cas`): on a fresh probe key,
  `If-None-Match: *` must fail, `If-Match` with a wrong ETag must fail, `If-Match` with the
  right one must succeed. The result sets `capabilities.atomic_cas` and `cas_report`; where it
  fails, put_cas raises `CasUnsupportedError` unless in single-writer mode (base.py). The probe
  shows that the server honours the headers, not that it applies them atomically under
  concurrency (moto does not); no sequential probe can show that.
- put: a plain PutObject (S3 replaces objects atomically).
- get_range, get_range_into: one ranged GetObject, its body read piece by piece into the buffer;
  416 (start at or past the end) -> nothing; from a server that ignores Range (200 instead of
  206) the bytes before the range are skipped, so bytes never come from the wrong offset.
- list: paginated ListObjectsV2 under the prefix; LastModified -> mtime. `fresh_listing`: AWS S3
  lists are strongly consistent (since 2020-12), moto's trivially, and radosgw checks an index
  entry with a pending write against the object itself while it lists. For an S3-compatible server
  whose listings may lag its writes, the storage option `stale_listing = true` turns it off.
- delete: DeleteObjects, 1,000 keys per request (the S3 limit), Quiet mode; absent keys count as
  deleted. Per-key errors raise `OSError` naming them.
- freshen: CopyObject onto itself with `MetadataDirective=REPLACE`, which S3 accepts as a change
  and which sets LastModified to now. It drops user metadata and Content-Type (zoostore sets
  neither) and, being a single CopyObject, is limited to objects below 5 GB (packs are 16-64 MiB).
- now(): the store's clock, read as the LastModified of a probe object `tmp/clock-<uuid>` that is
  put, HEAD-ed and deleted. LastModified in HTTP headers has one-second resolution, so `now()`
  may lag the true time by up to a second: gc then deletes slightly less, which is the safe side.

Conditional writes are atomic on AWS S3 (since 2024-08 for If-None-Match, 2024-11 for If-Match)
and, as measured, on radosgw 16 (docs/radosgw.md).
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import itertools
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import s3fs
from botocore import exceptions as botoexc

from zoostore.storage.backends.base import (Backend, Capabilities, ObjectInfo, Versioned, flag_option,
                                            single_writer_option)
from zoostore.storage.backends.retry import RetryPolicy, notice_retry
from zoostore.core import cancel, forks
from zoostore.core.errors import ConflictError, ObjectNotFoundError, RemoteError
from zoostore.storage.backends.s3_config import client_options, endpoint, split_url
from zoostore.storage.backends.s3_errors import error_of, fatal_error, is_not_found, is_transient, retry_after

_STOP_POLL = 0.1  # seconds between checks for a stop request while a request runs
T = TypeVar("T")
#: A syntactically valid ETag that no object has (MD5 of nothing is d41d8cd9..., not this).
_WRONG_ETAG = "0" * 32

#: DeleteObjects accepts at most 1,000 keys per request (S3 API reference).
DELETE_BATCH = 1000
#: Attempts on 409 ConditionalRequestConflict (or a 500 on put_if_absent) before giving up.
_CONFLICT_ATTEMPTS = 8
class S3Backend(Backend):
    """A `Backend` over `s3://bucket/prefix`. `storage_options` go to `s3fs.S3FileSystem`
    (with `skip_instance_cache=True` unless given, so backends never share hidden state), except
    zoostore's own: `single_writer`, `stale_listing`, `max_attempts`, `retry_deadline`, `timeout`."""

    capabilities = Capabilities(fresh_listing=True)

    def __init__(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        scheme, bucket, prefix = split_url(url)
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = prefix + "/" if prefix else ""
        self.url = f"{scheme}://{bucket}/{prefix}".rstrip("/")
        options = dict(storage_options or {})
        self.single_writer = single_writer_option(options)
        if flag_option(options, "stale_listing"):
            # A server whose listings may lag its writes: gc re-checks every candidate with a
            # HEAD before deleting it instead of trusting a listing (docs/remote-stores.md).
            self.capabilities = Capabilities(fresh_listing=False)
        self.retry = RetryPolicy.from_options(options)
        self.endpoint = endpoint(options, url=self.url)
        self._client_options = client_options(options)
        #: What the conditional-write probe found (None until the first conditional write).
        self.cas_report: str | None = None
        self._quoted_if_match = False
        self.start_over()
        forks.start_over_after_fork(self)

    def start_over(self) -> None:
        """A client of its own: at creation, and in a forked child (s3fs refuses to run there:
        its event loop thread and connections are the parent's). Made on first use: in a child,
        after fsspec's own fork handler has dropped the parent's event loop."""
        self._client: s3fs.S3FileSystem | None = None
        self._client_lock = threading.Lock()
        self._probe_lock = threading.Lock()

    @property
    def _fs(self) -> s3fs.S3FileSystem:
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = s3fs.S3FileSystem(**self._client_options)
                    self._client.retries = 1  # s3fs's own retry loop: one attempt, ours retries
                client = self._client
        return client

    # -- plumbing --------------------------------------------------------------------------

    def _run(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
        """Run a coroutine on s3fs's loop, like fsspec.asyn.sync, but cancel it once a stop is
        requested (Ctrl-C, core.cancel): a stalled request would hold its worker, and the pool
        joining it, for a whole read timeout and its retries."""
        future = asyncio.run_coroutine_threadsafe(fn(*args, **kwargs), self._fs.loop)
        try:
            while not concurrent.futures.wait((future,), timeout=_STOP_POLL).done:  # ends with the request
                cancel.check()
        except BaseException:
            future.cancel()
            raise
        return future.result()

    async def _retrying(self, attempt_fn: Callable[[], Awaitable[T]]) -> T:
        """Run one request (a fresh coroutine per attempt) under the retry policy."""
        started = time.monotonic()
        for attempt in itertools.count():
            try:
                return await attempt_fn()
            except Exception as e:
                if not is_transient(e):
                    fatal = fatal_error(e, url=self.url, endpoint=self.endpoint, bucket=self.bucket)
                    if fatal is not None:
                        raise fatal from e
                    raise
                wait = self.retry.next_delay(attempt, started, retry_after=retry_after(e))
                if wait is None:
                    # botocore's own retries are off (zoostore retries): drop its "(reached max
                    # retries: 0)", which reads as if nothing had been retried.
                    last = re.sub(r"\s*\(reached max retries: \d+\)", "", str(e))
                    raise RemoteError(
                        f"S3 request to {self.endpoint} for {self.url} kept failing: gave up after "
                        f"{attempt + 1} attempt(s) (retry budget: {self.retry.describe()}); last error: "
                        f"{type(e).__name__}: {last}. Check that the endpoint is up and reachable, or "
                        "raise max_attempts / retry_deadline (docs/remote-stores.md)"
                    ) from e
                code, status = error_of(e)  # "HTTP 503 SlowDown" says more than "OSError"
                what = f"HTTP {status}" + (f" {code}" if code and code != str(status) else "") if status else ""
                notice_retry(self.url, f"S3 request to {self.endpoint} failed ({what or type(e).__name__})", self.retry)
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

    async def _call(self, method: str, **kwargs: Any) -> Any:
        return await self._retrying(lambda: self._fs._call_s3(method, Bucket=self.bucket, **kwargs))

    def _full(self, key: str) -> str:
        return self.prefix + key

    def _missing(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"object {key!r} not found in {self.url}", key=key)

    def _conflict(self, key: str, expected: str | None, detail: str) -> ConflictError:
        return ConflictError(
            f"compare-and-swap on {key!r} in {self.url} lost: expected "
            f"{'no object' if expected is None else 'ETag ' + expected} but {detail}; "
            "re-read the object, re-apply the change and retry. If no other process writes "
            f"this store, the server at {self.endpoint} may not honour If-Match "
            "(docs/remote-stores.md)"
        )

    async def _read_body(self, key: str, **kwargs: Any) -> tuple[bytes, dict[str, Any]]:
        """GetObject and read the whole body; a failed request or a truncated body is retried."""

        async def attempt() -> tuple[bytes, dict[str, Any]]:
            response = await self._fs._call_s3("get_object", Bucket=self.bucket, Key=self._full(key), **kwargs)
            body = response["Body"]
            try:
                parts = []
                while chunk := await body.read(1 << 18):
                    parts.append(chunk)
                    cancel.check()  # Ctrl-C: stop between pieces, the connection is dropped
                return b"".join(parts), response
            finally:
                body.close()

        try:
            return await self._retrying(attempt)
        except Exception as e:
            if is_not_found(e):
                raise self._missing(key) from None
            raise

    def get(self, key: str) -> bytes:
        return self._run(self._read_body, key)[0]

    def get_versioned(self, key: str) -> Versioned:
        data, response = self._run(self._read_body, key)
        return Versioned(data=data, token=str(response["ETag"]))

    async def _get_range_into(self, key: str, start: int, buf: memoryview) -> int:
        """`len(buf)` bytes from `start` into `buf`, piece by piece (no joined body, no slice of it)."""
        if start < 0:
            raise ValueError(f"invalid byte range starting at {start} for {key!r}")
        if not len(buf):
            await self._stat(key)  # the contract still wants ObjectNotFoundError
            return 0

        async def attempt() -> int:
            response = await self._fs._call_s3("get_object", Bucket=self.bucket, Key=self._full(key),
                                               Range=f"bytes={start}-{start + len(buf) - 1}")
            whole = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 206) == 200 or "ContentRange" not in response
            skip, got, body = start if whole else 0, 0, response["Body"]   # a server that ignored Range sent it all
            try:
                while got < len(buf) and (piece := await body.read(1 << 18)):
                    cancel.check()  # Ctrl-C: stop between pieces, the connection is dropped
                    use = piece[skip:][: len(buf) - got]
                    skip = max(0, skip - len(piece))
                    buf[got : got + len(use)] = use
                    got += len(use)
                return got
            finally:
                body.close()

        try:
            return await self._retrying(attempt)
        except Exception as e:
            if is_not_found(e):
                raise self._missing(key) from None
            code, status = error_of(e)
            if status == 416 or code == "InvalidRange":
                return 0  # start is at or past the end of an existing object
            raise

    async def _get_range(self, key: str, start: int, end: int) -> bytes:
        if end < start:
            raise ValueError(f"invalid byte range [{start}, {end}) for {key!r}")
        with memoryview(bytearray(end - start)) as view:
            return bytes(view[: await self._get_range_into(key, start, view)])

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self._run(self._get_range, key, start, end)

    def get_range_into(self, key: str, start: int, buf: bytearray) -> int:
        with memoryview(buf) as view:
            return self._run(self._get_range_into, key, start, view)

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        async def all_ranges() -> list[bytes]:
            return list(await asyncio.gather(*(self._get_range(key, s, e) for s, e in ranges)))
        return self._run(all_ranges)

    async def _stat(self, key: str) -> ObjectInfo:
        try:
            response = await self._call("head_object", Key=self._full(key))
        except Exception as e:
            if is_not_found(e):
                raise self._missing(key) from None
            raise
        return ObjectInfo(
            key=key, size=int(response["ContentLength"]), mtime=response["LastModified"].timestamp()
        )

    def stat(self, key: str) -> ObjectInfo:
        return self._run(self._stat, key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        for page in self.list_pages(prefix):
            yield from page

    def list_pages(self, prefix: str) -> Iterator[builtins.list[ObjectInfo]]:
        """One ListObjectsV2 request (up to 1,000 keys) per page, sent when the caller asks."""
        kwargs: dict[str, Any] = {"Prefix": self._full(prefix)}
        strip = len(self.prefix)
        while True:
            page = self._run(self._call, "list_objects_v2", **kwargs)
            # A key ending in "/" is a console "folder" marker, not an object.
            yield [ObjectInfo(key=item["Key"][strip:], size=int(item["Size"]), mtime=item["LastModified"].timestamp())
                   for item in page.get("Contents", []) if not item["Key"].endswith("/")]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    # -- writes ----------------------------------------------------------------------------

    async def _put_conditional(self, key: str, data: bytes, condition: dict[str, str]) -> tuple[str, str]:
        """PutObject with a condition. Returns ("ok", etag); ("failed", "") on 412, or 404 for
        If-Match; ("busy", "") when 409s outlast `_CONFLICT_ATTEMPTS`; ("500", "") when a 500
        outlasts the retry policy (radosgw's answer to some losers of a race)."""
        for attempt in range(_CONFLICT_ATTEMPTS):
            try:
                response = await self._call("put_object", Key=self._full(key), Body=data, **condition)
            except Exception as e:
                code, status = error_of(e)
                if status == 412 or code == "PreconditionFailed":
                    return "failed", ""
                if "IfMatch" in condition and (status == 404 or code == "NoSuchKey"):
                    return "failed", ""
                if status == 500:
                    return "500", ""
                if status == 409 or code == "ConditionalRequestConflict":
                    await asyncio.sleep(self.retry.delay(attempt))
                    continue
                raise
            return "ok", str(response["ETag"])
        return "busy", ""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        if not self._probed().atomic_cas and self.exists(key):
            return False  # the server ignores If-None-Match: check first (racy, but never clobbers a seen object)
        for _ in range(_CONFLICT_ATTEMPTS):
            outcome, _ = self._run(self._put_conditional, key, bytes(data), {"IfNoneMatch": "*"})
            if outcome == "500" and not self.exists(key):
                continue  # the 500 was not a lost race: nothing is there yet
            if outcome in ("ok", "failed", "500"):
                return outcome == "ok"
        raise ConflictError(
            f"put of {key!r} to {self.url} kept meeting concurrent conditional writes "
            f"(409 ConditionalRequestConflict or 500, {_CONFLICT_ATTEMPTS} attempts); retry later"
        )

    def put_cas(self, key: str, data: bytes, *, expected: str | None) -> str:
        self._check_cas(key)
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": self._if_match(expected)}
        outcome, etag = self._run(self._put_conditional, key, bytes(data), condition)
        if outcome == "failed":
            raise self._conflict(key, expected, "the object changed (412 Precondition Failed)")
        if outcome == "500":
            raise self._conflict(key, expected, "the server answered 500, which radosgw gives some losers of a race")
        if outcome == "busy":
            raise self._conflict(key, expected, "other writers kept it busy (409)")
        return etag

    def put(self, key: str, data: bytes) -> None:
        self._run(self._call, "put_object", Key=self._full(key), Body=bytes(data))

    # -- the conditional-write probe -------------------------------------------------------

    def _if_match(self, token: str) -> str:
        bare = token.strip('"')
        return f'"{bare}"' if self._quoted_if_match else bare

    def _probed(self) -> Capabilities:
        """The capabilities, after probing the server once (on the first conditional write)."""
        with self._probe_lock:
            if self.cas_report is None:
                self.probe_cas()
        return self.capabilities

    def _check_cas(self, key: str) -> None:
        """Refuse a compare-and-swap unless the server honours conditions or single-writer mode."""
        if not self._probed().atomic_cas:
            self.refuse_unsafe_cas(
                key, f"the server at {self.endpoint} failed zoostore's conditional-write check: {self.cas_report}"
            )

    def probe_cas(self) -> bool:
        """Check that the server honours If-None-Match: * and If-Match; record the result in
        `capabilities.atomic_cas` and `cas_report`. Returns atomic_cas."""
        atomic, quoted, report = self._run(self._probe)
        self._quoted_if_match = quoted
        self.cas_report = report
        self.capabilities = replace(self.capabilities, atomic_cas=atomic)
        return atomic

    async def _probe(self) -> tuple[bool, bool, str]:
        """(honours both conditions, If-Match wants quoted ETags, what was seen)."""
        name = f"tmp/cas-probe-{uuid.uuid4().hex}"
        key = self._full(name)

        async def landed(body: bytes) -> bool:
            """Whether the probe holds `body`: a conditional PUT whose answer was lost (a reset,
            a truncated response) and that was retried answers 412, its first attempt having
            changed the ETag; that is the server honouring If-Match, not refusing it."""
            return (await self._read_body(name))[0] == body

        async def put(body: bytes, **condition: str) -> tuple[int, str]:
            try:
                response = await self._call("put_object", Key=key, Body=body, **condition)
            except RemoteError:  # the retry budget spent on a flaky network: no answer, not a refusal
                raise
            except Exception as e:
                status = error_of(e)[1]
                if not status:
                    raise
                return status, ""
            return 200, str(response["ETag"])

        response = await self._call("put_object", Key=key, Body=b"zoostore conditional-write probe 1")
        etag = str(response["ETag"])  # (a failed plain PUT raises: the checks below need the object)
        try:
            status, _ = await put(b"2", IfNoneMatch="*")
            if status == 200:
                return False, False, "it overwrote an existing object despite If-None-Match: *"
            status, _ = await put(b"3", IfMatch=_WRONG_ETAG)
            if status == 200:
                return False, False, "it replaced an object despite If-Match with a wrong ETag"
            status, _ = await put(b"4", IfMatch=etag.strip('"'))
            if status == 200 or await landed(b"4"):
                return True, False, "honours If-None-Match: * and If-Match (bare ETags)"
            status, _ = await put(b"5", IfMatch=f'"{etag.strip(chr(34))}"')
            if status == 200 or await landed(b"5"):
                return True, True, "honours If-None-Match: * and If-Match (quoted ETags)"
            return False, False, (
                f"it refused If-Match with the object's current ETag, bare and quoted (HTTP {status})"
            )
        finally:
            try:
                await self._call("delete_object", Key=key)
            except Exception:  # noqa: BLE001 - a leftover probe is harmless; gc of tmp/ is not ours
                pass

    def delete(self, keys: Iterable[str]) -> None:
        batch: list[str] = []
        for key in keys:
            batch.append(key)
            if len(batch) == DELETE_BATCH:
                self._run(self._delete_batch, batch)
                batch = []
        if batch:
            self._run(self._delete_batch, batch)

    async def _delete_batch(self, keys: Sequence[str]) -> None:
        response = await self._call(
            "delete_objects",
            Delete={"Objects": [{"Key": self._full(k)} for k in keys], "Quiet": True},
        )
        errors = response.get("Errors") or []
        if errors:
            shown = ", ".join(f"{e.get('Key')}: {e.get('Code')} {e.get('Message', '')}".strip() for e in errors[:5])
            raise OSError(
                f"DeleteObjects on {self.url} failed for {len(errors)} of {len(keys)} keys ({shown}); "
                "the other keys were deleted. Check the credentials' s3:DeleteObject permission"
            )

    async def _freshen(self, key: str) -> None:
        try:
            await self._call(
                "copy_object",
                Key=self._full(key),
                CopySource={"Bucket": self.bucket, "Key": self._full(key)},
                MetadataDirective="REPLACE",
            )
        except Exception as e:
            if is_not_found(e):
                raise self._missing(key) from None
            raise

    def freshen(self, key: str) -> None:
        self._run(self._freshen, key)

    async def _now(self) -> float:
        probe = self._full(f"tmp/clock-{uuid.uuid4().hex}")
        await self._call("put_object", Key=probe, Body=b"")
        try:
            response = await self._call("head_object", Key=probe)
        finally:
            await self._call("delete_object", Key=probe)
        return float(response["LastModified"].timestamp())

    def now(self) -> float:
        return self._run(self._now)

    def __repr__(self) -> str:
        return f"S3Backend({self.url!r})"
