"""The store config, `<store>/zoostore.toml`: written once by `init`, read by every command.

    format = 1
    [chunking]          # never changes for a store: identical bytes must cut identically
    algorithm = "fastcdc-2020"
    min_size = 16384
    avg_size = 65536
    max_size = 262144
    [packs]
    target_size = 33554432
    [codecs]
    enabled = ["raw", "zstd", "zstd-bytegroup4"]
    zstd_level = 1
    delta = true        # only in format-2/3/4 stores: delta frames (docs/format.md)
    [chunking.code]     # only in format-4 stores: executables and libraries get larger chunks
    min_size = 131072
    avg_size = 524288
    max_size = 2097152
    [gc]
    grace = "24h"       # publish and gc must agree on it (see docs/gc.md)

A store without delta frames keeps format 1, byte for byte; `delta = true` makes it format 3
(format 2: delta frames only, as the first zoostore with them wrote it; 3 adds recipes stored as
edits of the previous version's), which an older zoostore refuses with "upgrade zoostore".
A `[chunking.code]` table (what `zoostore init` writes) makes it format 4: files that start
like code (ELF, Mach-O, PE, `ar`, wasm) are cut into larger chunks, which a format-3 zoostore
would refuse as too long.
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import Any

from zoostore.core.records import dataclass
from zoostore.storage import codec
from zoostore.storage.params import Chunking
from zoostore.core.errors import FormatError, UsageError
from zoostore.core.tomldoc import load_versioned

#: The newest config format this zoostore reads; 2 = a store with delta frames, 3 = and with
#: recipes stored as edits of a base recipe (recipe format 3, pack footer format 2), 4 = and
#: with larger chunks for code (`[chunking.code]`).
FORMAT = 4
#: The format a store needs for `delta = true`.
DELTA_FORMAT = 2
#: The format a store needs for recipes stored as edits; what a delta store gets when created.
EDITS_FORMAT = 3
#: The format a store needs for `[chunking.code]`.
CODE_FORMAT = 4
CONFIG_KEY = "zoostore.toml"

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in `24h`, `30m`, `1h30m`, `0s`, `90` (bare seconds)."""
    t = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        return float(t)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(t) or not t:
        raise UsageError(
            f"invalid duration {text!r}: expected a number with a unit (ms, s, m, h, d, w), "
            f"e.g. 24h, 30m, 1h30m or 0s"
        )
    return total


def format_duration(seconds: float) -> str:
    if seconds != int(seconds):
        return f"{round(seconds * 1000)}ms"
    s = int(seconds)
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


#: Default settle time of the publish/gc handshake: far above a request's latency, far below G.
DEFAULT_SETTLE = 2.0


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """A store's zoostore.toml: chunking, packs, codecs, the gc grace and settle times, and its format."""

    chunking: Chunking = field(default_factory=Chunking)
    pack_target_size: int = 32 * 1024 * 1024
    codecs: tuple[int, ...] = (codec.RAW, codec.ZSTD, codec.BYTEGROUP)
    zstd_level: int = 1  # level 3 stores 0.4% less at 20% more CPU (docs/bench-store.md)
    grace_seconds: float = 24 * 3600.0
    #: The handshake's settle time (docs/gc.md); written to zoostore.toml only when not the default.
    settle_seconds: float = DEFAULT_SETTLE
    #: Publish may store a new chunk as a delta frame against a similar chunk (docs/format.md).
    delta: bool = False
    format: int = 1

    def __post_init__(self) -> None:
        if self.delta and self.format < DELTA_FORMAT:
            object.__setattr__(self, "format", EDITS_FORMAT)  # delta frames need a format-2 store at least
        if self.chunking.code is not None and self.format < CODE_FORMAT:
            object.__setattr__(self, "format", CODE_FORMAT)

    @property
    def recipe_edits(self) -> bool:
        """Publish may store a recipe as edits of the previous version's (format-3 stores)."""
        return self.delta and self.format >= EDITS_FORMAT

    def to_toml(self) -> str:
        doc: dict[str, Any] = {
            "format": self.format,
            "chunking": {"algorithm": self.chunking.algorithm, **chunking_table(self.chunking)},
            "packs": {"target_size": self.pack_target_size},
            "codecs": {
                "enabled": [codec.CODEC_NAMES[c] for c in self.codecs],
                "zstd_level": self.zstd_level,
                **({"delta": True} if self.delta else {}),
            },
            "gc": {"grace": format_duration(self.grace_seconds),
                   **({"settle": format_duration(self.settle_seconds)} if self.settle_seconds != DEFAULT_SETTLE else {})},
        }
        import tomli_w  # only when writing: a sync reads these and never writes them

        return "# zoostore store config: written by 'zoostore init'; do not edit chunking.\n" + tomli_w.dumps(doc)

    @classmethod
    def from_toml(cls, text: str, *, where: str = CONFIG_KEY) -> StoreConfig:
        """Parse `zoostore.toml`. Any malformed value is a FormatError naming the file and the
        key; a newer format asks to upgrade zoostore."""
        doc, fmt = load_versioned(text, where=where, supported=FORMAT)
        if "chunking" not in doc:
            raise FormatError(f"{where}: missing key 'chunking'")
        ch = _section(doc, "chunking", where)
        if ch.get("algorithm", "fastcdc-2020") != "fastcdc-2020":
            raise FormatError(f"{where}: chunking.algorithm {ch['algorithm']!r} is unknown; expected 'fastcdc-2020'")
        sizes = _sizes(ch, where, "chunking")
        code = _sizes(_section(ch, "code", where, "chunking.code"), where, "chunking.code") if "code" in ch else None
        if code is not None and fmt < CODE_FORMAT:
            raise FormatError(f"{where}: [chunking.code] needs format = {CODE_FORMAT}, the file says format = "
                              f"{fmt}; an older zoostore would misread the store: fix the format")
        codecs = _section(doc, "codecs", where)
        names = {v: k for k, v in codec.CODEC_NAMES.items()}
        enabled = codecs.get("enabled", list(names))
        if not isinstance(enabled, list) or not enabled or not all(isinstance(n, str) for n in enabled):
            raise FormatError(f"{where}: codecs.enabled must be a non-empty list of codec names, got {enabled!r}")
        unknown = [n for n in enabled if n not in names]
        if unknown:
            raise FormatError(
                f"{where}: codecs.enabled names unknown codecs {unknown}; this zoostore knows "
                f"{sorted(names)}: upgrade zoostore"
            )
        delta = codecs.get("delta", False)
        if not isinstance(delta, bool):
            raise FormatError(f"{where}: codecs.delta must be true or false, got {delta!r:.40}")
        if delta and fmt < DELTA_FORMAT:
            raise FormatError(f"{where}: codecs.delta = true needs format = {DELTA_FORMAT}, the file says "
                              f"format = {fmt}; an older zoostore would misread the store: fix the format")
        gc = _section(doc, "gc", where)
        grace = gc.get("grace", "24h")
        if not isinstance(grace, str):
            raise FormatError(f"{where}: gc.grace must be a duration such as \"24h\", got {grace!r}")
        try:
            grace_seconds = parse_duration(grace)
        except UsageError as exc:
            raise FormatError(f"{where}: gc.grace: {exc}") from None
        if not 0 <= grace_seconds <= MAX_GRACE:
            raise FormatError(f"{where}: gc.grace {grace!r} is out of range (0 to 3650d)")
        settle = gc.get("settle", format_duration(DEFAULT_SETTLE))
        try:
            settle_seconds = parse_duration(settle) if isinstance(settle, str) else -1.0
        except UsageError:
            settle_seconds = -1.0
        if not 0 <= settle_seconds <= 600:
            raise FormatError(f"{where}: gc.settle must be a duration from 0s to 10m, got {settle!r}")
        return cls(
            chunking=Chunking(min_size=sizes[0], avg_size=sizes[1], max_size=sizes[2], code=code),
            pack_target_size=_int(_section(doc, "packs", where), "target_size", where, "packs", 1024, 2**40,
                                  default=32 * 1024 * 1024),
            codecs=tuple(names[n] for n in enabled),
            zstd_level=_int(codecs, "zstd_level", where, "codecs", -7, 22, default=3),
            grace_seconds=grace_seconds,
            settle_seconds=settle_seconds,
            delta=delta,
            format=fmt,
        )


#: Largest chunk a store may declare: bounds what a reader allocates for one chunk.
MAX_CHUNK = 64 * 1024 * 1024
#: Longest gc grace period (ten years): past it, time arithmetic overflows.
MAX_GRACE = 3650 * 86400.0


def chunking_table(ch: Chunking) -> dict[str, Any]:
    """The chunk sizes as zoostore.toml's `[chunking]` (and `config --json`) show them."""
    keys = ("min_size", "avg_size", "max_size")
    return {**dict(zip(keys, ch.sizes(False))), **({"code": dict(zip(keys, ch.code))} if ch.code else {})}


def _sizes(table: dict[str, Any], where: str, section: str) -> tuple[int, int, int]:
    low, avg, high = (_int(table, k, where, section, 64, MAX_CHUNK) for k in ("min_size", "avg_size", "max_size"))
    if not low <= avg <= high:
        raise FormatError(f"{where}: {section} sizes must satisfy min_size <= avg_size <= max_size, "
                          f"got {[low, avg, high]}")
    return low, avg, high


def _section(doc: dict[str, Any], key: str, where: str, name: str = "") -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise FormatError(f"{where}: [{name or key}] must be a table, got {type(value).__name__} {value!r:.40}")
    return value


def _int(table: dict[str, Any], key: str, where: str, section: str, low: int, high: int,
         default: int | None = None) -> int:
    if key not in table and default is not None:
        return default
    if key not in table:
        raise FormatError(f"{where}: missing key '{section}.{key}'")
    value = table[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise FormatError(f"{where}: {section}.{key} must be an integer from {low} to {high}, got {value!r:.40}")
    return value
