"""Content digests: `blake3:<64 lowercase hex>`, the id of every chunk, blob and pack.

A blob id is the BLAKE3 of the whole file, so `b3sum FILE` prints the same hex.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import blake3

from zoostore.core.errors import InvalidDigestError
from zoostore.core.records import dataclass

_HEX = re.compile(r"[0-9a-f]{64}")
PREFIX = "blake3:"


@dataclass(frozen=True, slots=True, order=True)
class Digest:
    """A BLAKE3-256 digest, kept as 64 lowercase hex characters."""

    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse `blake3:<hex>` (or bare hex, as `b3sum` prints it)."""
        body = text.strip()
        if body.startswith(PREFIX):
            body = body[len(PREFIX):]
        body = body.lower()
        if not _HEX.fullmatch(body):
            raise InvalidDigestError(
                f"invalid digest {text!r}: expected 'blake3:' followed by 64 hex characters "
                f"(as 'b3sum FILE' prints), e.g. blake3:{'0' * 64}"
            )
        return cls(body)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Digest:
        return cls(raw.hex())

    @classmethod
    def of(cls, data: bytes | bytearray | memoryview) -> Digest:
        return cls(blake3.blake3(data).hexdigest())

    @property
    def raw(self) -> bytes:
        return bytes.fromhex(self.hex)

    @property
    def short(self) -> str:
        return self.hex[:12]

    def __str__(self) -> str:
        return PREFIX + self.hex

    # Written out rather than made by `records.dataclass` (whose generic ones take twice as long):
    # a Digest is the key of nearly every dict and set zoostore keeps.
    def __eq__(self, other: object) -> bool:
        if isinstance(other, Digest) and other.__class__ is self.__class__:   # as dataclasses compares
            return self.hex == other.hex
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.hex)


def hash_file(path: str | os.PathLike[str]) -> Digest:
    """BLAKE3 of a file's bytes, memory-mapped and multi-threaded (the GIL is released)."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if Path(path).stat().st_size == 0:
        return Digest(hasher.hexdigest())
    hasher.update_mmap(path)
    return Digest(hasher.hexdigest())
