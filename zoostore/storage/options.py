"""Store options: one mechanism for the command line, zoo.toml, the environment and Python.

Layers, later wins:

    zoo.toml [store_options]              the project's (never secrets)
    $ZOOSTORE_STORE_OPTIONS               a JSON object, e.g. for a CI job
    --store-option KEY=VALUE              the command line (`cli_options`)
    storage_options={...}                 Python: open_store, init_store, fetch, sync, zoo://

Four keys mean the same on every backend that has the notion, and are translated for it:
`endpoint_url`, `region`, `profile`, `anon`. Any other key goes to the backend as it is (for
`s3://`, s3fs's `S3FileSystem` arguments; see docs/remote-stores.md). The layers below
`storage_options` are defaults for whatever store a command opens: a key that a backend has no
use for (an S3 endpoint when the store is a local directory) is dropped there, not an error.
Credentials stay in the standard AWS and cloud mechanisms: zoo.toml refuses keys that hold them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from zoostore.core.errors import ConfigError, UsageError

STORE_OPTIONS_ENV = "ZOOSTORE_STORE_OPTIONS"
#: The backend-neutral keys (translated per backend by `for_backend`).
COMMON_KEYS = ("endpoint_url", "region", "profile", "anon")
#: Keys that hold credentials: refused in files a project commits.
SECRET_KEYS = frozenset({"key", "secret", "token", "password", "session_token", "secret_access_key",
                         "access_key_id", "aws_secret_access_key", "aws_access_key_id", "aws_session_token",
                         "client_secret", "account_key", "sas_token", "credential", "credentials"})
#: What each kind of backend accepts among the defaults' keys (None: anything).
_ACCEPTS: dict[str, frozenset[str] | None] = {
    "local": frozenset({"fsync", "lock_wait"}),
    "memory": frozenset(),
    "http": frozenset({"headers", "timeout", "cache_bytes", "max_attempts", "retry_deadline"}),
    "s3": None,
    "generic": None,
}

_cli: ContextVar[Mapping[str, Any]] = ContextVar("zoostore_cli_store_options", default={})


def parse_option_pairs(items: list[str], *, option: str = "--store-option") -> dict[str, Any]:
    """`KEY=VALUE` pairs; a value that reads as TOML (true, 5, "text") is that value."""
    import tomllib

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{option} {item!r}: expected KEY=VALUE, e.g. endpoint_url=http://127.0.0.1:7480")
        try:
            out[key] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value.strip()
    return out


def env_options() -> dict[str, Any]:
    text = os.environ.get(STORE_OPTIONS_ENV, "").strip()
    if not text:
        return {}
    import json

    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"${STORE_OPTIONS_ENV} is not JSON ({exc}); expected an object such as "
                          '{"endpoint_url": "http://127.0.0.1:7480", "region": "us-east-1"}') from None
    if not isinstance(doc, dict):
        raise ConfigError(f"${STORE_OPTIONS_ENV} must be a JSON object, got {type(doc).__name__}")
    return doc


@contextmanager
def cli_options(options: Mapping[str, Any]) -> Iterator[None]:
    """Make `--store-option`s the defaults of every store opened inside the block."""
    token = _cli.set(dict(options))
    try:
        yield
    finally:
        _cli.reset(token)


def refuse_secrets(options: Mapping[str, Any], where: str) -> None:
    """Credentials never go into zoo.toml (it is committed)."""
    found = sorted(k for k in options if k.lower() in SECRET_KEYS)
    if found:
        raise ConfigError(f"{where}: {', '.join(found)} would put credentials in a committed file; use the "
                          "standard mechanisms instead (AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
                          "~/.aws/credentials, GOOGLE_APPLICATION_CREDENTIALS, ...)")


def for_backend(kind: str, explicit: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None,
                *, scheme: str = "") -> dict[str, Any]:
    """The options one backend gets: the default layers (zoo.toml's, the environment's, the
    command line's) filtered to what `kind` uses, under the caller's explicit options, with
    the common keys translated."""
    layered = {**(defaults or {}), **env_options(), **_cli.get()}
    accepts = _ACCEPTS.get(kind)
    if accepts is not None:
        layered = {k: v for k, v in layered.items() if k in accepts}
    return _translate(kind, scheme, {**layered, **(explicit or {})})


def _translate(kind: str, scheme: str, options: dict[str, Any]) -> dict[str, Any]:
    if kind == "s3":
        region = options.pop("region", None)
        endpoint = options.pop("endpoint_url", None)
        if region is not None or endpoint is not None:
            client = dict(options.get("client_kwargs") or {})
            if region is not None:
                client.setdefault("region_name", region)
            if endpoint is not None:
                client.setdefault("endpoint_url", endpoint)
            options["client_kwargs"] = client
    elif scheme in ("gs", "gcs") and "anon" in options:
        if options.pop("anon") is True:
            options.setdefault("token", "anon")  # gcsfs's spelling of anonymous access
    return options
