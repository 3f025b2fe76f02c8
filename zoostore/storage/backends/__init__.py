"""Storage backends and the factory that picks one from a store URL.

    /srv/zoo, ./zoo, file:///srv/zoo, local:///srv/zoo  -> LocalBackend    (local.py)
    memory://name                                       -> MemoryBackend   (memory.py)
    s3://bucket/prefix                                  -> S3Backend       (s3.py, s3fs)
    http://host/zoo, https://host/zoo                   -> HttpBackend     (http.py, read-only)
    any other fsspec protocol (gs://, az://, ...)       -> GenericBackend  (generic.py,
                                                           best effort, atomic_cas=False)

Backends other than local and memory are imported only when their URL scheme is used, so
`import zoostore.storage.backends` never loads s3fs, botocore or aiohttp.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from zoostore.storage.backends.base import Backend, Capabilities, ObjectInfo, Versioned
from zoostore.core.errors import UsageError

__all__ = ["Backend", "Capabilities", "ObjectInfo", "Versioned", "open_backend"]

# "c:\\x" or "c:/x" is a Windows path, not a URL with scheme "c".
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def _check_options(scheme: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise UsageError(
            f"storage option(s) {', '.join(unknown)} are not understood by the {scheme} backend; "
            f"it accepts: {', '.join(sorted(allowed)) or 'none'}"
        )


def _file_url_to_path(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.netloc not in ("", "localhost"):
        raise UsageError(
            f"store URL {url!r} names host {parsed.netloc!r}: file:// URLs must be local "
            "(file:///absolute/path); mount remote disks and use their local path"
        )
    # urllib.request pulls in http.client, email and ssl: only file:// URLs need it.
    from urllib.request import url2pathname

    return url2pathname(parsed.path)


def open_backend(url_or_path: str, *, storage_options: dict[str, Any] | None = None,
                 default_options: dict[str, Any] | None = None) -> Backend:
    """The backend for a store location: a plain path or any fsspec URL.

    `storage_options` go to the backend: `fsync`, `lock_wait` for local directories; s3fs's
    `S3FileSystem` arguments for `s3://`; `headers`, `timeout`, `cache_bytes` for `http(s)://`;
    the fsspec filesystem's arguments for other protocols. Every backend also takes
    `single_writer` (base.py; meaningful where compare-and-swap is not atomic), and the remote
    ones (`s3://`, `http(s)://`) `max_attempts` and `retry_deadline` (retry.py).
    `default_options` (a project's zoo.toml), `$ZOOSTORE_STORE_OPTIONS` and the command line's
    `--store-option`s are layered under them (zoostore.storage.options).
    """
    from zoostore.storage.options import for_backend

    match = _SCHEME.match(url_or_path)
    scheme = match.group(1).lower() if match else ""
    kind = {"": "local", "file": "local", "local": "local", "memory": "memory", "s3": "s3", "s3a": "s3",
            "http": "http", "https": "http"}.get(scheme, "generic")
    options = for_backend(kind, storage_options, default_options, scheme=scheme)

    if not scheme:
        _not_a_mistyped_url(url_or_path)
    if scheme in ("", "file", "local"):
        from zoostore.storage.backends.local import LocalBackend

        _check_options("local", options, {"fsync", "lock_wait", "single_writer"})
        options.pop("single_writer", None)  # local compare-and-swap is atomic (lock file)
        path = url_or_path if not scheme else _file_url_to_path(url_or_path)
        return LocalBackend(path, **options)

    if scheme == "memory":
        from zoostore.storage.backends.memory import MemoryBackend

        _check_options("memory", options, {"single_writer"})
        return MemoryBackend(url_or_path[len("memory://") :])

    if scheme in ("s3", "s3a"):
        _require("s3fs", "s3", url_or_path)
        from zoostore.storage.backends.s3 import S3Backend

        return S3Backend(url_or_path, storage_options=options)

    if scheme in ("http", "https"):
        from zoostore.storage.backends.http import HttpBackend

        _check_options(
            scheme, options, {"headers", "timeout", "cache_bytes", "max_attempts", "retry_deadline", "single_writer"}
        )
        options.pop("single_writer", None)  # read-only: nothing to write
        return HttpBackend(url_or_path, **options)

    if scheme in _EXTRAS:
        _require(*_EXTRAS[scheme], url_or_path)
    _known_protocol(scheme, url_or_path)
    from zoostore.storage.backends.generic import GenericBackend

    return GenericBackend(url_or_path, storage_options=options)


#: URL scheme -> (the package fsspec needs for it, the zoostore extra that installs it).
_EXTRAS = {"gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"), "az": ("adlfs", "azure"), "abfs": ("adlfs", "azure"),
           "abfss": ("adlfs", "azure")}


#: A relative path that starts like a URL with a slip in its '://' (s3:/b/p, s3:b/p, s3//b/p):
#: opened as a local folder it would be a store named 's3:' next to the user, silently.
_MISTYPED = re.compile(r"(s3|s3a|gs|gcs|az|abfs|abfss|https?)(?::/?(?!/)|//)(.*)", re.IGNORECASE)


def _not_a_mistyped_url(path: str) -> None:
    match = _MISTYPED.fullmatch(path)
    if match:
        meant = f"{match.group(1).lower()}://{match.group(2).lstrip('/')}"
        raise UsageError(f"store location {path!r} looks like a mistyped URL: did you mean {meant!r}? (a URL needs "
                         f"'://'; for a local folder of that name write ./{path})")


def _known_protocol(scheme: str, url: str) -> None:
    import fsspec

    if scheme not in fsspec.available_protocols():
        raise UsageError(
            f"store URL {url!r}: unknown protocol {scheme}://. A store is a local path or a URL: "
            "s3://bucket/prefix, https://host/zoo, gs://, az://, file:///path, or another fsspec protocol"
        )


def _require(module: str, extra: str, url: str) -> None:
    """Refuse, with the install command, a store URL whose backend package is missing."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        from zoostore.core.errors import MissingDependencyError

        raise MissingDependencyError(
            f"{url}: stores on {url.split('://', 1)[0]}:// need the {module} package, which is not "
            f"installed: pip install 'zoostore[{extra}]'"
        )
