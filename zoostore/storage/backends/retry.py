"""Retry policy for remote backends: exponential backoff with full jitter, bounded in count and time.

Transient failures (a refused or reset connection, a timeout, a truncated body, HTTP 429, 500,
502, 503, 504, S3's SlowDown) are retried by the S3 and HTTP backends with one policy:

    attempt 1 -> wait uniform(0, min(cap, base * 2**0)) -> attempt 2 -> ... -> attempt N
    stop early when `deadline` seconds have passed since the first attempt

Full jitter (each wait uniform between 0 and the exponential bound) is the variant the AWS
Architecture Blog measured as spreading competing clients best ("Exponential Backoff And
Jitter", 2015). A `Retry-After` answer (seconds) raises the wait to what the server asked, capped
by `cap`. Storage options `max_attempts` (default 10; 1 disables retries) and `retry_deadline`
(seconds, default 120) configure it; so do `ZOOSTORE_MAX_ATTEMPTS` and `ZOOSTORE_RETRY_DEADLINE`.
Ten attempts wait up to 33 s in all (16 s expected), so a store that restarts or a load
balancer that answers 503 for a few seconds costs a sync a pause, not a failure (five attempts,
the default before, gave up after at most 1.5 s). The first retry against a store is said once
on stderr (`notice_retry`), so a pause is never silent.
Every retried read is verified by the layers above (chunk and blob hashes), so a retry can never
return wrong bytes silently.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from typing import Any

from zoostore.core.errors import UsageError
from zoostore.core.records import dataclass

#: HTTP statuses that mean "try again": too many requests, server error, bad gateway,
#: unavailable, gateway timeout (RFC 9110 section 15.6; 429 from RFC 6585).
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: S3 error codes that mean the same (AWS S3 API reference, "Error responses").
RETRY_CODES = frozenset({"SlowDown", "InternalError", "RequestTimeout", "ServiceUnavailable",
                         "Throttling", "ThrottlingException"})

DEFAULT_ATTEMPTS = 10
DEFAULT_DEADLINE = 120.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to retry one request."""

    max_attempts: int = DEFAULT_ATTEMPTS
    deadline: float = DEFAULT_DEADLINE
    base: float = 0.1
    cap: float = 10.0

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> RetryPolicy:
        """Pop `max_attempts` and `retry_deadline` from storage options (else the environment)."""
        attempts = options.pop("max_attempts", None)
        if attempts is None:
            attempts = os.environ.get("ZOOSTORE_MAX_ATTEMPTS") or DEFAULT_ATTEMPTS
        deadline = options.pop("retry_deadline", None)
        if deadline is None:
            deadline = os.environ.get("ZOOSTORE_RETRY_DEADLINE") or DEFAULT_DEADLINE
        try:
            policy = cls(max_attempts=int(attempts), deadline=float(deadline))
        except (TypeError, ValueError):
            raise UsageError(
                f"invalid retry options max_attempts={attempts!r}, retry_deadline={deadline!r}: "
                "expected a whole number of attempts (1 = no retries) and a number of seconds"
            ) from None
        if policy.max_attempts < 1 or policy.deadline < 0:
            raise UsageError(
                f"invalid retry options max_attempts={policy.max_attempts}, retry_deadline="
                f"{policy.deadline:g}: expected at least 1 attempt and a non-negative deadline"
            )
        return policy

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (0-based)."""
        import random  # only after a failure: keeps random off every command's start-up

        wait = random.uniform(0, min(self.cap, self.base * 2**attempt))
        if retry_after is not None:
            wait = max(wait, min(self.cap, retry_after))
        return wait

    def next_delay(self, attempt: int, started: float, *, retry_after: float | None = None) -> float | None:
        """The wait before another attempt after failed attempt `attempt` (0-based) of a request
        that started at `started` (time.monotonic()), or None when the budget is spent."""
        if attempt + 1 >= self.max_attempts:
            return None
        wait = self.delay(attempt, retry_after=retry_after)
        if time.monotonic() + wait - started > self.deadline:
            return None
        return wait

    def describe(self) -> str:
        return f"{self.max_attempts} attempts within {self.deadline:g} s"


def unreachable_cause(exc: BaseException) -> BaseException | None:
    """The cause of `exc` that no retry can change, or None: a host name the resolver says does
    not exist (a resolver that is down is transient) or a TLS certificate that does not verify."""
    import socket  # only after a failure: neither is on every command's start-up
    import ssl

    no_such_name = {getattr(socket, n) for n in ("EAI_NONAME", "EAI_NODATA") if hasattr(socket, n)}
    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError) or (
                isinstance(seen, socket.gaierror) and seen.errno in no_such_name):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def unreachable(exc: BaseException, endpoint: str, *, ca_variable: str, url_hint: str = "the URL") -> str | None:
    """Why `endpoint` cannot be reached however often a request is retried (`unreachable_cause`),
    or None. `ca_variable` is the environment variable that names a certificate authority for
    this client; `url_hint` says where the host name was given."""
    import ssl

    cause = unreachable_cause(exc)
    if cause is None:
        return None
    if isinstance(cause, ssl.SSLCertVerificationError):
        # aiohttp's own subclass keeps the ssl module's error as `certificate_error`
        reason = (getattr(cause, "verify_message", None)
                  or getattr(getattr(cause, "certificate_error", None), "verify_message", None) or cause)
        return (f"the TLS certificate of {endpoint} does not verify ({reason}); "
                f"retrying cannot change that. If the server's certificate comes from your own "
                f"certificate authority, set {ca_variable} to that authority's PEM file; check that "
                f"{url_hint} names the host the certificate was issued for")
    assert isinstance(cause, OSError)
    return (f"the host name of {endpoint} does not resolve ({cause.strerror}); retrying cannot "
            f"change that: check {url_hint} for a typo, and this machine's DNS")


_noticed: set[str] = set()
_noticed_lock = threading.Lock()


def notice_retry(where: str, error: str, policy: RetryPolicy) -> None:
    """Warn, once per store and process, that a request to `where` failed with a transient
    `error` and is being retried (the CLI prints warnings as `zoostore: warning: ...`)."""
    with _noticed_lock:
        if where in _noticed:
            return
        _noticed.add(where)
    warnings.warn(f"{where}: {error}; retrying with backoff ({policy.describe()} per request; "
                  f"storage option max_attempts=1 or ZOOSTORE_MAX_ATTEMPTS=1 fails at once instead)",
                  stacklevel=2)
