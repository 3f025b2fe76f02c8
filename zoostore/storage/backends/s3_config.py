"""How an `s3://` store URL and its storage options become an s3fs client for `S3Backend`
(s3.py): the bucket and prefix, the endpoint, s3fs's options with zoostore's defaults. A
mistake in them is a UsageError naming what was given and what was meant, not botocore's
bare validation error surfacing as an internal error."""

from __future__ import annotations

import os
import re
from typing import Any

from zoostore.core.errors import UsageError

#: What botocore accepts as a bucket name (ARNs of access points aside).
_BUCKET = re.compile(r"[a-zA-Z0-9.\-_]{1,255}")


def split_url(url: str) -> tuple[str, str, str]:
    """(scheme, bucket, prefix without slashes at either end) of `scheme://bucket/prefix`."""
    scheme, sep, rest = url.partition("://")
    bucket, _, prefix = rest.partition("/")
    if not sep or not bucket:
        raise UsageError(f"store URL {url!r} names no bucket: expected s3://BUCKET[/PREFIX]")
    if not _BUCKET.fullmatch(bucket):  # botocore refuses it too, but as a bare ParamValidationError
        raise UsageError(f"store URL {url!r}: {bucket!r} is not a valid bucket name (letters, digits, '.', "
                         "'-' and '_' only; AWS: 3-63 lowercase letters, digits, '.' and '-'): check the URL "
                         "for a typo or stray spaces")
    return scheme, bucket, prefix.strip("/")


def endpoint(options: dict[str, Any], *, url: str) -> str:
    """The endpoint requests go to ("AWS S3" for AWS's own), as the options or the
    environment set it; one without http:// or https:// is refused (store `url` named)."""
    found = str(
        options.get("endpoint_url")
        or (options.get("client_kwargs") or {}).get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or "AWS S3"
    )
    if found != "AWS S3" and not re.match(r"https?://", found, re.IGNORECASE):
        raise UsageError(f"the S3 endpoint {found!r} for {url} is not an http:// or https:// URL "
                         f"(botocore: 'Invalid endpoint'): did you mean 'http://{found}' or 'https://"
                         f"{found}'? Set the storage option endpoint_url or AWS_ENDPOINT_URL(_S3) to it")
    return found


def client_options(options: dict[str, Any]) -> dict[str, Any]:
    """s3fs options with zoostore's defaults: our retries only, `timeout` for botocore."""
    options = {"skip_instance_cache": True, **options}
    options.pop("asynchronous", None)  # we drive the loop ourselves (S3Backend._run)
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
    timeout = options.pop("timeout", None)
    if timeout is not None:
        config.setdefault("connect_timeout", float(timeout))
        config.setdefault("read_timeout", float(timeout))
    options["config_kwargs"] = config
    return options
