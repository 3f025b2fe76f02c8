"""Offline mode: `--offline`, `offline=`, or $ZOOSTORE_OFFLINE for fetch, sync and zoo://.
Light on purpose: sync's no-op path reads it."""

from __future__ import annotations

import os

from zoostore.core.errors import UsageError

#: Set to 1 (or true, yes, on) to make `fetch`, `sync` and `zoo://` work from the cache alone,
#: like `--offline` (huggingface_hub's HF_HUB_OFFLINE).
OFFLINE_ENV = "ZOOSTORE_OFFLINE"


def offline_requested(offline: bool | None = None) -> bool:
    """`offline` when given, else $ZOOSTORE_OFFLINE (1/true/yes/on; 0/false/no/off or unset)."""
    if offline is not None:
        return offline
    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"${OFFLINE_ENV}={value!r}: expected 1, true, yes or on (offline), or 0, false, no, off")
