"""What the storage layer needs to know about a store: chunking, packing, codecs, and the two
times of the publish/gc handshake. `documents.store_config.StoreConfig` (zoostore.toml) provides
them; storage never reads that document itself."""

from __future__ import annotations

from typing import Protocol

from zoostore.core.records import dataclass


#: First bytes of executables, shared libraries and static archives: ELF, Mach-O (32/64-bit,
#: either byte order, universal), PE/COFF, `ar` archives (`.a`), WebAssembly.
CODE_MAGIC = (b"\x7fELF", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe",
              b"\xca\xfe\xba\xbe", b"MZ", b"!<arch>\n", b"\x00asm")
#: How many first bytes of a file `Chunking.cuts_as_code` looks at.
CODE_MAGIC_LEN = max(map(len, CODE_MAGIC))
#: The (min, avg, max) chunk sizes of code in stores created by `zoostore init` (format 4).
#: Code repeats itself 128-512 KiB apart, which a frame per 64 KiB chunk cannot reach; code of
#: one release shares next to nothing with the next at any chunk size (docs/design-decisions.md).
CODE_SIZES = (128 * 1024, 512 * 1024, 2 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class Chunking:
    """FastCDC parameters; fixed for the life of a store (chunk ids depend on them)."""

    min_size: int = 16 * 1024
    avg_size: int = 64 * 1024
    max_size: int = 256 * 1024
    algorithm: str = "fastcdc-2020"
    #: (min, avg, max) for files that start like code (CODE_MAGIC), or None: code is cut like
    #: every other file (stores before format 4).
    code: tuple[int, int, int] | None = None

    @property
    def largest(self) -> int:
        """The longest chunk this store may hold: what a reader accepts."""
        return max(self.max_size, self.code[2] if self.code else 0)

    def cuts_as_code(self, head: bytes) -> bool:
        """Whether a file whose first bytes are `head` (CODE_MAGIC_LEN of them) gets the code sizes."""
        return self.code is not None and head.startswith(CODE_MAGIC)

    def sizes(self, code: bool) -> tuple[int, int, int]:
        """(min, avg, max) for code (`cuts_as_code`) or for every other file."""
        return self.code if code and self.code is not None else (self.min_size, self.avg_size, self.max_size)


class StorageParams(Protocol):
    """The parameters blob readers and writers use (docs/format.md, docs/gc.md)."""

    @property
    def chunking(self) -> Chunking: ...
    @property
    def pack_target_size(self) -> int: ...
    @property
    def codecs(self) -> tuple[int, ...]: ...
    @property
    def zstd_level(self) -> int: ...
    #: Whether publish may store new chunks as delta frames against similar chunks.
    @property
    def delta(self) -> bool: ...
    #: Whether publish may store a recipe as edits of the previous version's (recipe format 3).
    @property
    def recipe_edits(self) -> bool: ...
    #: gc deletes only objects older than this; a publisher freshens reused objects older than half.
    @property
    def grace_seconds(self) -> float: ...
    #: A publisher that freshened an old object checks it again this long after (and gc sends
    #: each delete within this long of the stat that showed the object old).
    @property
    def settle_seconds(self) -> float: ...
