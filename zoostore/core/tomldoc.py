"""Reading versioned TOML documents (store config, manifests, lockfiles) the same way."""

from __future__ import annotations

import tomllib
from typing import Any

from zoostore.core.errors import FormatError, NewerFormatError


def load_versioned(text: str, *, where: str, supported: int, hint: str = "",
                   error: type[FormatError] = FormatError) -> tuple[dict[str, Any], int]:
    """Parse TOML and check its integer `format` key: (document, format). Invalid TOML or a
    missing format is an `error` (FormatError, or ConfigError for a project's own files) naming
    `where`; a newer format asks to upgrade."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: not valid TOML ({exc}){hint}") from exc
    except RecursionError:
        raise error(f"{where}: not valid TOML (nested too deeply){hint}") from None
    fmt = doc.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise error(f"{where}: key 'format' must be an integer, got {fmt!r}{hint}")
    if fmt > supported:
        raise NewerFormatError(where, fmt, supported)
    return doc, fmt
