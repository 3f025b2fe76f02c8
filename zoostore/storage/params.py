"""What the storage layer needs to know about a store: chunking, packing, codecs, and the two
times of the publish/gc handshake. `documents.store_config.StoreConfig` (zoostore.toml) provides
them; storage never reads that document itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Chunking:
    """FastCDC parameters; fixed for the life of a store (chunk ids depend on them)."""

    min_size: int = 16 * 1024
    avg_size: int = 64 * 1024
    max_size: int = 256 * 1024
    algorithm: str = "fastcdc-2020"


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
