"""Reading pack footers and verifying packs: the one implementation gc and verify share.

    packs/<aa>/<pack id>   [frame][frame]…[footer][trailer]   (zoostore.storage.pack)

A pack is sound when its bytes hash to its name, its footer parses, and every frame decodes to
the length and BLAKE3 its entry states. `verify --read-data` checks every frame of every pack;
gc's repack checks the frames it is about to copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import blake3

from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError
from zoostore.core.records import dataclass
from zoostore.storage import codec
from zoostore.storage.backends.base import Backend
from zoostore.storage.pack import TRAILER_SIZE, Footer, PackEntry, footer_span, parse_footer


def fetch_footer(backend: Backend, key: str, size: int, *, max_chunk: int = codec.MAX_RAW) -> Footer:
    """The footer of the pack at `key` (`size` bytes), with two ranged reads; its lengths
    bounded by `max_chunk`, the store's largest chunk (`parse_footer`)."""
    tail = backend.get_range(key, max(0, size - TRAILER_SIZE), size)
    start, end = footer_span(tail, size, where=key)
    return parse_footer(backend.get_range(key, start, end), where=key, max_chunk=max_chunk, frames_end=start)


def footer_of(data: bytes, key: str, *, max_chunk: int = codec.MAX_RAW) -> Footer:
    """The footer of a whole pack held in memory."""
    start, end = footer_span(data[-TRAILER_SIZE:], len(data), where=key)
    return parse_footer(data[start:end], where=key, max_chunk=max_chunk, frames_end=start)


@dataclass(frozen=True, slots=True)
class PackProblem:
    """One thing wrong with a pack: `chunk` names the frame, or is None for the whole pack."""

    kind: str  # "bad-pack" or "bad-chunk"
    chunk: Digest | None
    message: str


#: Raw bytes of a delta frame's base chunk, by the base's 32-byte id; None when unknown.
BaseLookup = Callable[[bytes], "bytes | None"]


def pack_problems(key: str, data: bytes, frames: Iterable[PackEntry] | None = None, *,
                  max_chunk: int = codec.MAX_RAW, bases: BaseLookup | None = None,
                  deferred: list[tuple[PackEntry, bytes]] | None = None) -> Iterator[PackProblem]:
    """Everything wrong with the pack `data` stored at `key`: its hash against its name, its
    footer, and each frame of `frames` (default: every frame the footer lists). No frame
    decodes to more than `max_chunk` bytes, the store's largest chunk (a zstd bomb is a
    bad-chunk, not an allocation). A delta frame is decoded against the base `bases` gives
    (verified bytes); without one it goes to `deferred` (entry, frame) for the caller to check
    once it has the base, or, with no `deferred` either, is a problem."""
    name = key.rsplit("/", 1)[-1]
    actual = blake3.blake3(data).hexdigest()
    if actual != name:
        yield PackProblem("bad-pack", None, f"pack bytes hash to blake3:{actual}, expected its name {name}")
    try:
        footer = footer_of(data, key, max_chunk=max_chunk)
    except FormatError as exc:
        yield PackProblem("bad-pack", None, f"footer unreadable: {exc}")
        return
    view = memoryview(data)
    for e in footer.entries if frames is None else frames:
        frame = view[e.offset : e.offset + e.length]
        try:
            base_id = codec.delta_base(frame, max_raw=max_chunk, where=f"{key} chunk {e.chunk}")
        except FormatError as exc:
            yield PackProblem("bad-chunk", e.chunk, str(exc))
            continue
        base = bases(base_id) if base_id is not None and bases is not None else None
        if base_id is not None and base is None and deferred is not None:
            deferred.append((e, bytes(frame)))
            continue
        problem = frame_problem(key, e, frame, base, max_chunk=max_chunk)
        if problem is not None:
            yield problem


def frame_problem(key: str, e: PackEntry, frame: bytes | memoryview, base: bytes | None, *,
                  max_chunk: int = codec.MAX_RAW) -> PackProblem | None:
    """What is wrong with one frame of the pack at `key` (None: it decodes to its chunk);
    `base` is the verified base of a delta frame."""
    try:
        raw = codec.decode(frame, max_raw=max_chunk, where=f"{key} chunk {e.chunk} at offset {e.offset}", base=base)
    except FormatError as exc:
        return PackProblem("bad-chunk", e.chunk, str(exc))
    got = blake3.blake3(raw).hexdigest()
    if got != e.chunk.hex or len(raw) != e.raw_length:
        return PackProblem("bad-chunk", e.chunk, f"chunk {e.chunk} at offset {e.offset}: expected hash "
                                                 f"{e.chunk.hex} ({e.raw_length} bytes), got {got} ({len(raw)} bytes)")
    return None
