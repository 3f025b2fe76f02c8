"""S3 backend (and S3-compatible servers) over s3fs, using S3 conditional writes.

    s3://<bucket>/<prefix>/zoostore.toml        key "zoostore.toml" -> object "<prefix>/zoostore.toml"
    s3://<bucket>/<prefix>/packs/3f/3fa9...e1
    s3://<bucket>/<prefix>/tmp/clock-<uuid>     a short-lived probe written by `now()`

How the calls are made: every operation is a coroutine that calls the S3 API through
`S3FileSystem._call_s3` (s3fs's request path: credentials, region, retries of transient errors)
and runs on s3fs's event-loop thread via `fsspec.asyn.sync`. Calling the API directly, rather than
`fs.pipe_file(...)`, is what gives us the conditional-write headers and the response (ETag,
status code) that the contract needs. s3fs turns a `ClientError` into a builtin (`FileExistsError`
for a failed If-None-Match, `OSError` otherwise) and keeps the original as `__cause__`; `_error`
reads the S3 error code and HTTP status from there.

- put_if_absent: PutObject with `If-None-Match: *`; 412 PreconditionFailed -> False (already
  there); 409 ConditionalRequestConflict (a concurrent conditional write to the same key is in
  flight) -> retry with backoff.
- put_cas: PutObject with `If-Match: <etag>` (or `If-None-Match: *` when `expected` is None); 412,
  or 404 for `If-Match` on a vanished key, -> ConflictError; 409 -> retry. The token is the ETag,
  quotes included. A retried PUT whose first attempt succeeded but whose answer was lost reports
  a conflict; the caller re-reads and finds its own change, which is harmless for manifests.
- get_range: ranged GetObject; 416 (start at or past the end) -> b""; a server that ignores Range
  (200 instead of 206) has its full body sliced, so bytes never come from the wrong offset.
- list: paginated ListObjectsV2 under the prefix; LastModified -> mtime.
- delete: DeleteObjects, 1,000 keys per request (the S3 limit), Quiet mode; absent keys count as
  deleted. Per-key errors raise `OSError` naming them.
- freshen: CopyObject onto itself with `MetadataDirective=REPLACE`, which S3 accepts as a change
  and which sets LastModified to now. It drops user metadata and Content-Type (zoostore sets
  neither) and, being a single CopyObject, is limited to objects below 5 GB (packs are 16-64 MiB).
- now(): the store's clock, read as the LastModified of a probe object `tmp/clock-<uuid>` that is
  put, HEAD-ed and deleted. LastModified in HTTP headers has one-second resolution, so `now()`
  may lag the true time by up to a second: gc then deletes slightly less, which is the safe side.

Conditional writes are atomic on AWS S3 (since 2024-08 for If-None-Match, 2024-11 for If-Match).
S3-compatible servers that silently ignore these headers would make both operations plain PUTs:
check your server before trusting `atomic_cas`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import fsspec.asyn
import s3fs

from zoostore.storage.backends.base import Backend, Capabilities, ObjectInfo, Versioned
from zoostore.core.errors import ConflictError, ObjectNotFoundError, UsageError

T = TypeVar("T")

#: DeleteObjects accepts at most 1,000 keys per request (S3 API reference).
DELETE_BATCH = 1000
#: Attempts on 409 ConditionalRequestConflict before giving up with ConflictError.
_CONFLICT_ATTEMPTS = 8
_READ_ATTEMPTS = 3
_RETRYABLE_READ = tuple(getattr(s3fs.core, "S3_RETRYABLE_ERRORS", ())) + (ConnectionError, TimeoutError)


def _error(exc: BaseException) -> tuple[str, int]:
    """(S3 error code, HTTP status) of an exception from s3fs/botocore; ("", 0) if none."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            code = str(response.get("Error", {}).get("Code", ""))
            status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if not status and code.isdigit():
                status = int(code)
            return code, status
        seen = seen.__cause__
    return "", 0


def _is_not_found(exc: BaseException) -> bool:
    code, status = _error(exc)
    return status == 404 or code in ("NoSuchKey", "NotFound", "404")


class S3Backend(Backend):
    """A `Backend` over `s3://bucket/prefix`. `storage_options` go to `s3fs.S3FileSystem`
    (with `skip_instance_cache=True` unless given, so backends never share hidden state)."""

    capabilities = Capabilities()

    def __init__(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        scheme, sep, rest = url.partition("://")
        bucket, _, prefix = rest.partition("/")
        if not sep or not bucket:
            raise UsageError(f"store URL {url!r} names no bucket: expected s3://BUCKET[/PREFIX]")
        prefix = prefix.strip("/")
        self.bucket = bucket
        self.prefix = prefix + "/" if prefix else ""
        self.url = f"{scheme}://{bucket}/{prefix}".rstrip("/")
        options = {"skip_instance_cache": True, **(storage_options or {})}
        options.pop("asynchronous", None)  # we drive the loop ourselves through fsspec.asyn.sync
        self._fs = s3fs.S3FileSystem(**options)

    # -- plumbing --------------------------------------------------------------------------

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        return fsspec.asyn.sync(self._fs.loop, fn, *args, **kwargs)  # type: ignore[no-any-return]

    async def _call(self, method: str, **kwargs: Any) -> Any:
        return await self._fs._call_s3(method, Bucket=self.bucket, **kwargs)

    def _full(self, key: str) -> str:
        return self.prefix + key

    def _missing(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"object {key!r} not found in {self.url}", key=key)

    def _conflict(self, key: str, expected: str | None, detail: str) -> ConflictError:
        return ConflictError(
            f"compare-and-swap on {key!r} in {self.url} lost: expected "
            f"{'no object' if expected is None else 'ETag ' + expected} but {detail}; "
            "re-read the object, re-apply the change and retry"
        )

    async def _read_body(self, key: str, **kwargs: Any) -> tuple[bytes, dict[str, Any]]:
        """GetObject and read the whole body, retrying transient failures of the body read."""
        for attempt in range(_READ_ATTEMPTS):
            try:
                response = await self._call("get_object", Key=self._full(key), **kwargs)
            except Exception as e:
                if _is_not_found(e):
                    raise self._missing(key) from None
                raise
            body = response["Body"]
            try:
                return await body.read(), response
            except _RETRYABLE_READ:
                if attempt + 1 == _READ_ATTEMPTS:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)
            finally:
                body.close()
        raise AssertionError("unreachable")

    # -- reads -----------------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        return self._run(self._read_body, key)[0]

    def get_versioned(self, key: str) -> Versioned:
        data, response = self._run(self._read_body, key)
        return Versioned(data=data, token=str(response["ETag"]))

    async def _get_range(self, key: str, start: int, end: int) -> bytes:
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end}) for {key!r}")
        if end == start:
            await self._stat(key)  # the contract still wants ObjectNotFoundError
            return b""
        try:
            data, response = await self._read_body(key, Range=f"bytes={start}-{end - 1}")
        except ObjectNotFoundError:
            raise
        except Exception as e:
            code, status = _error(e)
            if status == 416 or code == "InvalidRange":
                return b""  # start is at or past the end of an existing object
            raise
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 206)
        if status == 200 or "ContentRange" not in response:
            return bytes(data[start:end])  # the server ignored Range and sent the whole object
        return bytes(data[: end - start])

    def get_range(self, key: str, start: int, end: int) -> bytes:
        return self._run(self._get_range, key, start, end)

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        async def all_ranges() -> list[bytes]:
            return list(await asyncio.gather(*(self._get_range(key, s, e) for s, e in ranges)))

        return self._run(all_ranges)

    async def _stat(self, key: str) -> ObjectInfo:
        try:
            response = await self._call("head_object", Key=self._full(key))
        except Exception as e:
            if _is_not_found(e):
                raise self._missing(key) from None
            raise
        return ObjectInfo(
            key=key, size=int(response["ContentLength"]), mtime=response["LastModified"].timestamp()
        )

    def stat(self, key: str) -> ObjectInfo:
        return self._run(self._stat, key)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        kwargs: dict[str, Any] = {"Prefix": self._full(prefix)}
        strip = len(self.prefix)
        while True:
            page = self._run(self._call, "list_objects_v2", **kwargs)
            for item in page.get("Contents", []):
                name = item["Key"]
                if name.endswith("/"):
                    continue  # a console "folder" marker, not an object
                yield ObjectInfo(key=name[strip:], size=int(item["Size"]), mtime=item["LastModified"].timestamp())
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    # -- writes ----------------------------------------------------------------------------

    async def _put_conditional(self, key: str, data: bytes, condition: dict[str, str]) -> tuple[str, str]:
        """PutObject with a condition. Returns ("ok", etag), ("failed", "") on 412/404."""
        delay = 0.05
        for attempt in range(_CONFLICT_ATTEMPTS):
            try:
                response = await self._call("put_object", Key=self._full(key), Body=data, **condition)
            except Exception as e:
                code, status = _error(e)
                if status == 412 or code == "PreconditionFailed":
                    return "failed", ""
                if "IfMatch" in condition and (status == 404 or code == "NoSuchKey"):
                    return "failed", ""
                if (status == 409 or code == "ConditionalRequestConflict") and attempt + 1 < _CONFLICT_ATTEMPTS:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                if status == 409 or code == "ConditionalRequestConflict":
                    return "busy", ""
                raise
            return "ok", str(response["ETag"])
        return "busy", ""

    def put_if_absent(self, key: str, data: bytes) -> bool:
        outcome, _ = self._run(self._put_conditional, key, bytes(data), {"IfNoneMatch": "*"})
        if outcome == "busy":
            raise ConflictError(
                f"put of {key!r} to {self.url} kept meeting concurrent conditional writes "
                f"(409 ConditionalRequestConflict, {_CONFLICT_ATTEMPTS} attempts); retry later"
            )
        return outcome == "ok"

    def put_cas(self, key: str, data: bytes, *, expected: str | None) -> str:
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
        outcome, etag = self._run(self._put_conditional, key, bytes(data), condition)
        if outcome == "failed":
            raise self._conflict(key, expected, "the object changed (412 Precondition Failed)")
        if outcome == "busy":
            raise self._conflict(key, expected, "other writers kept it busy (409)")
        return etag

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
            if _is_not_found(e):
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
