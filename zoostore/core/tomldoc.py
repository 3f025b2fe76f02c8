"""Reading versioned TOML documents (store config, manifests, lockfiles) the same way."""

from __future__ import annotations

import tomllib
from typing import Any

from zoostore.core.errors import FormatError, NewerFormatError


def load_versioned(text: str, *, where: str, supported: int, hint: str = "") -> tuple[dict[str, Any], int]:
    """Parse TOML and check its integer `format` key: (document, format). Invalid TOML or a
    missing format is a FormatError naming `where`; a newer format asks to upgrade."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FormatError(f"{where}: not valid TOML ({exc}){hint}") from exc
    fmt = doc.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise FormatError(f"{where}: key 'format' must be an integer, got {fmt!r}{hint}")
    if fmt > supported:
        raise NewerFormatError(where, fmt, supported)
    return doc, fmt
