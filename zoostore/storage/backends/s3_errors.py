"""What S3 errors mean: transient (retry), not found, or fatal with a message a user can act on.

s3fs and botocore raise their own exception types and wrap S3's error codes in `response`
dictionaries; these helpers read both, for `S3Backend` (s3.py).
"""

from __future__ import annotations

import asyncio

import s3fs
from botocore import exceptions as botoexc

from zoostore.core.errors import AccessDeniedError, RemoteError, StoreNotFoundError
from zoostore.storage.backends.retry import RETRY_CODES, RETRY_STATUSES, unreachable, unreachable_cause

#: Exceptions that mean "the request or its body did not get through": retried.
_TRANSIENT = tuple(getattr(s3fs.core, "S3_RETRYABLE_ERRORS", ())) + (
    ConnectionError,
    TimeoutError,
    asyncio.TimeoutError,
    botoexc.HTTPClientError,
    botoexc.ConnectionError,
    botoexc.IncompleteReadError,
)


def error_of(exc: BaseException) -> tuple[str, int]:
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


def is_not_found(exc: BaseException) -> bool:
    code, status = error_of(exc)
    return code != "NoSuchBucket" and (status == 404 or code in ("NoSuchKey", "NotFound", "404"))


#: The variable botocore reads a certificate authority bundle from.
CA_VARIABLE = "AWS_CA_BUNDLE"


def is_transient(exc: BaseException) -> bool:
    if unreachable_cause(exc) is not None:
        return False   # no such host, or a certificate that does not verify: `fatal_error` says which
    code, status = error_of(exc)
    if status in RETRY_STATUSES or code in RETRY_CODES:
        return True
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, _TRANSIENT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def retry_after(exc: BaseException) -> float | None:
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            value = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("retry-after", "")
            return float(value) if str(value).isdigit() else None
        seen = seen.__cause__
    return None



def fatal_error(exc: BaseException, *, url: str, endpoint: str, bucket: str) -> Exception | None:
    """The error a user can act on, for failures retrying cannot fix: credentials missing,
    unknown or refused, permission denied, the bucket missing, an endpoint whose host name does
    not exist or whose certificate does not verify. None for anything else."""
    where = f"{url} at {endpoint}"
    creds = ("set AWS_PROFILE (a profile of ~/.aws/config) or AWS_ACCESS_KEY_ID and "
             "AWS_SECRET_ACCESS_KEY, or use anon=true for a public bucket (docs/remote-stores.md)")
    if isinstance(exc, (botoexc.NoCredentialsError, botoexc.PartialCredentialsError)):
        return AccessDeniedError(f"no AWS credentials found for {where}: {creds}")
    if isinstance(exc, botoexc.ProfileNotFound):
        return AccessDeniedError(f"{exc} (store {where}): check AWS_PROFILE or the store option "
                                 "'profile', and the profiles in ~/.aws/config and ~/.aws/credentials")
    why = unreachable(exc, endpoint, ca_variable=CA_VARIABLE,
                      url_hint="the endpoint URL (storage option endpoint_url, or AWS_ENDPOINT_URL)")
    if why is not None:
        return RemoteError(f"{url}: {why}")
    code, status = error_of(exc)
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                "TokenRefreshRequired"):
        return AccessDeniedError(f"{where} refused the credentials ({code}): check the key id and secret "
                                 f"or the profile in use; {creds}")
    if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
        return AccessDeniedError(f"access denied to {where} ({code or status}): the credentials in use lack "
                                 "the permission (reading needs s3:GetObject and s3:ListBucket; publishing "
                                 "s3:PutObject; gc s3:DeleteObject), or belong to another account")
    if code == "NoSuchBucket":
        return StoreNotFoundError(f"bucket {bucket!r} does not exist at {endpoint}: check the "
                                  f"store URL {url}, or create the bucket first (aws s3 mb s3://{bucket})")
    return None

