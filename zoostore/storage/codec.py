"""Chunk frames: one chunk, encoded by the smallest of a few codecs, with a 5-byte header.

frame := codec (u8) | raw length (u32 little-endian) | payload

codec 0 raw            payload is the chunk itself
codec 1 zstd           payload is one zstd frame of the chunk
codec 2 zstd-bytegroup the chunk split into 4 byte planes (bytes 0,4,8,… then 1,5,9,… then
                       2,6,… then 3,7,…; plane i holds ceil((n-i)/4) bytes), the planes
                       concatenated and compressed as one zstd frame. On float32 weights the
                       exponent bytes line up in one plane and compress well where plain zstd
                       sees noise (the "byte grouping" of Hugging Face Xet and of
                       Zarr/Blosc's shuffle filter).

The writer keeps the smallest encoding and falls back to raw when nothing helps. Only probe
chunks are encoded with every codec: a file's first `PROBE` chunks, then the first new chunk of
every encoding batch (about 1 MiB, zoostore.storage.writer). `BatchEncoder` encodes the rest of
a batch with the codec that minimises the bytes expected from the batch's probes plus the
file's history (`CodecChooser`), and plain zstd frames of code with more match search than a
level-1 store's (`boosted_zstd`). docs/codec.md explains both and has the measurements.

How the writer fills a bytegroup frame (any zstd frame decodes the same way, so this is a
writer's choice, not format): each plane goes into its own zstd block (a block flush after
planes 0, 1 and 2). A zstd block has one set of entropy tables; with the planes in one block,
the well-compressing exponent plane shares a literal Huffman table with the noise-like
mantissa planes and most of the gain is lost. On all-MiniLM-L6-v2's float32 weights at level 3,
one block stores 89.8% of the raw size, one block per plane 83.8%, and with the plane
parameters of `_plane_compressor` 82.6% (docs/benchmarks.md).

Speed notes (docs/benchmarks.md): the byte split and merge (zoostore.storage.planes) run in C
without the GIL where setup.py could build it, else as CPython slices; zstd and BLAKE3
release the GIL;
`zoostore.storage.frames_into.decode_into` writes a chunk straight into a caller's buffer (zstd
decompressing into it), so a reader assembles a whole
read segment without per-chunk copies.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import field

import blake3
import zstandard

from zoostore.core.errors import FormatError
from zoostore.core.records import dataclass
from zoostore.storage import planes as byte_planes

RAW, ZSTD, BYTEGROUP, DELTA = 0, 1, 2, 3
#: The codecs a store lists in `codecs.enabled` (every chunk can be encoded with them alone).
CODEC_NAMES = {RAW: "raw", ZSTD: "zstd", BYTEGROUP: "zstd-bytegroup4"}
#: Every frame codec a reader knows: the enabled ones and delta frames (`[codecs] delta = true`).
FRAME_NAMES = {**CODEC_NAMES, DELTA: "zstd-delta"}
#: A delta frame's payload starts with the id of its base chunk.
BASE_ID_SIZE = 32
HEADER = struct.Struct("<BI")
HEADER_SIZE = HEADER.size  # 5
#: Largest raw chunk any store may declare (documents.store_config.MAX_CHUNK is the same cap on
#: each chunking size). A frame header claiming more is malformed before anything is allocated;
#: readers pass their store's own `chunking.largest`, which is smaller.
MAX_RAW = 64 * 1024 * 1024
#: A file's first chunks, all tried with every codec (the writer waits for them before planning
#: the rest of the file, so that the second batch already has a history).
PROBE = 8
#: How much a probe chunk's sizes count in the file's history: the weight of older probes
#: decays by this factor per probe (about the last 10 probes, i.e. 10 MiB, matter).
HISTORY_DECAY = 0.9
#: How much the file's history weighs against a batch's own probe, in probe chunks: 1 lets a
#: batch that clearly differs (code after a float table) follow its own data, and keeps a probe
#: chunk that happens to be atypical from deciding a batch on its own (docs/codec.md).
HISTORY_WEIGHT = 1.0
#: Probes per batch at most, when a batch's first probe disagrees with the file's history.
MAX_PROBES = 3
#: A codec is tried on a probe chunk only when the frames of the codecs before it (in
#: `codecs.enabled` order) are above this fraction of the raw chunk. Byte-grouping pays off on
#: float weights, which plain zstd leaves at 85-95% of raw; on chunks zstd brings to 60% or less
#: it would gain 0.15% of the benchmark zoo, at a quarter of publish's CPU (docs/codec.md).
WORTH_TRYING = {BYTEGROUP: 0.6}
#: In stores at zstd level 1 or 2 (the default is 1), plain zstd frames of chunks that compress
#: to BOOST_BELOW or less (code, tables, text) get more match search (`boosted_zstd`): a frame
#: per chunk cannot refer back across chunks, and at level 1 template-heavy C++ libraries lose up
#: to 17% against whole-file `zstd -1`. Chunks up to BIG_CHUNK: BOOST_LEVEL with 4-byte matches
#: (zstd's own choice for larger inputs); longer ones BOOST_LEVEL, plus BIG_LEVEL (greedy) where
#: that leaves at most REPETITIVE. Weights and byte planes keep the store's level (docs/codec.md).
BOOST_BELOW = 0.7
BOOST_LEVEL = 3
#: A file's first chunks (no history) are tasted: their first TASTE bytes at the store's level.
TASTE = 8 * 1024
BIG_CHUNK = 128 * 1024
REPETITIVE = 0.15
BIG_LEVEL = 4
#: Byte-plane compression parameters (see `_plane_compressor`): the size a plane of a 64 KiB
#: chunk has, and the hash table size (2^8 entries).
PLANE_HINT = 16 * 1024
PLANE_HASH_LOG = 8

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "compressors", None)
    if cache is None:
        cache = _local.compressors = {}
    comp = cache.get(level)
    if comp is None:
        # write_content_size lets the decoder allocate exactly once.
        comp = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return comp


def _code_compressor() -> zstandard.ZstdCompressor:
    comp: zstandard.ZstdCompressor | None = getattr(_local, "code_compressor", None)
    if comp is None:
        params = zstandard.ZstdCompressionParameters.from_level(
            BOOST_LEVEL, source_size=BIG_CHUNK, min_match=4, write_content_size=1)
        comp = _local.code_compressor = zstandard.ZstdCompressor(compression_params=params)
    return comp


def _plane_compressor(level: int) -> zstandard.ZstdCompressor:
    cache: dict[int, zstandard.ZstdCompressor] | None = getattr(_local, "plane_compressors", None)
    if cache is None:
        cache = _local.plane_compressors = {}
    comp = cache.get(level)
    if comp is None:
        # Byte planes of weights are short-range noise with a skewed byte histogram: the
        # literal Huffman coder does the work, and short matches cost more than the literals
        # they replace. Keeping only matches of 7+ bytes (zstd's maximum min_match) from a
        # small hash table makes level 1 about twice as fast and 1-2% smaller on
        # all-MiniLM-L6-v2 (docs/benchmarks.md).
        params = zstandard.ZstdCompressionParameters.from_level(
            level, source_size=PLANE_HINT, window_log=17, min_match=7, hash_log=PLANE_HASH_LOG,
            write_content_size=1)
        comp = cache[level] = zstandard.ZstdCompressor(compression_params=params)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec: zstandard.ZstdDecompressor | None = getattr(_local, "decompressor", None)
    if dec is None:
        dec = _local.decompressor = zstandard.ZstdDecompressor()
    return dec


def _bytegroup_frame(data: bytes | memoryview, level: int) -> bytes:
    planes = byte_planes.split(data)
    n = sum(len(p) for p in planes)
    obj = _plane_compressor(level).compressobj(size=n)
    parts = [HEADER.pack(BYTEGROUP, n)]
    for i, plane in enumerate(planes):
        if not plane:
            continue
        parts.append(obj.compress(plane))
        if i < 3 and planes[i + 1]:
            # One zstd block per plane: each gets its own entropy tables (module docstring).
            parts.append(obj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    parts.append(obj.flush())
    return b"".join(parts)


def encode(data: bytes | memoryview, codec: int, *, level: int = 3) -> bytes:
    """One frame of `data` with a given codec at exactly this zstd level (no size comparison)."""
    n = len(data)
    if codec == RAW:
        return HEADER.pack(codec, n) + data
    if codec == ZSTD:
        return HEADER.pack(codec, n) + _compressor(level).compress(data)
    if codec == BYTEGROUP:
        return _bytegroup_frame(data, level)
    raise ValueError(f"unknown codec {codec}")


def boosted_zstd(data: bytes | memoryview) -> bytes:
    """The boosted plain zstd frame of a chunk (see BOOST_BELOW)."""
    n = len(data)
    if n <= BIG_CHUNK:
        return HEADER.pack(ZSTD, n) + _code_compressor().compress(data)
    frame = encode(data, ZSTD, level=BOOST_LEVEL)
    if len(frame) > REPETITIVE * n:
        return frame
    greedy = encode(data, ZSTD, level=BIG_LEVEL)
    return greedy if len(greedy) < len(frame) else frame


def level_boosts(level: int) -> bool:
    """Whether plain zstd frames of a store at `level` may be boosted (levels 1 and 2)."""
    return 0 < level < BOOST_LEVEL


def boosted(data: bytes | memoryview, frame: bytes, level: int) -> bytes:
    """`frame` (encoded at the store's `level`), or the chunk's smaller `boosted_zstd` frame
    where `frame` is plain zstd of at most BOOST_BELOW of the chunk in a level-1/2 store."""
    if frame[0] != ZSTD or not level_boosts(level) or len(frame) > BOOST_BELOW * len(data):
        return frame
    better = boosted_zstd(data)
    return better if len(better) < len(frame) else frame


def _smallest(data: bytes | memoryview, codecs: tuple[int, ...], level: int, boost: bool | None,
              probe: bool) -> tuple[bytes, list[tuple[int, int]]]:
    # boost: True = boosted_zstd right away, False = `boosted` afterwards, None = never.
    n = len(data)
    best: bytes | None = None
    sizes = [(RAW, HEADER_SIZE + n)]
    for c in codecs:
        if c == RAW:
            continue
        if probe and c in WORTH_TRYING and best is not None and len(best) <= WORTH_TRYING[c] * n:
            continue
        frame = boosted_zstd(data) if boost and c == ZSTD and level_boosts(level) else encode(data, c, level=level)
        sizes.append((c, len(frame)))
        if best is None or len(frame) < len(best):
            best = frame
    if best is None or len(best) >= HEADER_SIZE + n:
        return encode(data, RAW), sizes
    return (boosted(data, best, level) if boost is False else best), sizes


def encode_best(data: bytes | memoryview, codecs: tuple[int, ...], *, level: int = 3,
                boost: bool | None = False) -> bytes:
    """The smallest frame among `codecs`; raw when no codec makes the chunk smaller. Plain zstd
    is encoded `boosted_zstd` right away with `boost=True`, at `level` and then `boosted` with
    False, and at exactly `level` with None."""
    return _smallest(data, codecs, level, boost, probe=False)[0]


@dataclass(frozen=True, slots=True)
class Probe:
    """The frame length every codec gave one chunk (raw counts as header + chunk)."""

    raw_length: int
    sizes: tuple[tuple[int, int], ...]  # (codec, frame length)


def encode_probe(data: bytes | memoryview, codecs: tuple[int, ...], *, level: int = 3,
                 boost: bool | None = False) -> tuple[bytes, Probe]:
    """`encode_best`, and what every codec tried gave: a codec in WORTH_TRYING is skipped (and
    left out of the probe) when a cheaper one already made the chunk smaller than its threshold."""
    frame, sizes = _smallest(data, codecs, level, boost, probe=True)
    return frame, Probe(len(data), tuple(sizes))


def compresses_well(probe: Probe) -> bool:
    """Whether a probe's plain zstd frame is at most BOOST_BELOW of its chunk."""
    zstd = dict(probe.sizes).get(ZSTD)
    return zstd is not None and zstd <= BOOST_BELOW * probe.raw_length


#: Expected frame bytes per raw byte, per codec (a `CodecChooser`'s history at one moment).
History = tuple[tuple[int, float], ...]


@dataclass(slots=True)
class CodecChooser:
    """One file's probe history, in file order (see the module docstring). Not thread-safe: the
    writer records probes and takes snapshots on its main thread, in file order, so the
    codec choice (and the packs) are the same on every run whatever the thread timing."""

    codecs: tuple[int, ...]
    _cost: dict[int, float] = field(default_factory=dict)
    _weight: float = 0.0

    def record(self, probe: Probe) -> None:
        if not probe.raw_length:
            return
        self._weight = self._weight * HISTORY_DECAY + 1.0
        for c, size in probe.sizes:
            # A decayed mean: new = old + (x - old) / weight.
            old = self._cost.get(c, size / probe.raw_length)
            self._cost[c] = old + (size / probe.raw_length - old) / self._weight

    def history(self) -> History:
        return tuple(sorted(self._cost.items()))


class BatchEncoder:
    """Encodes one batch of a file's chunks on an encoder thread. The first chunk that needs
    encoding is a probe (every codec). Where the probe and the file's history prefer the same
    codec, the rest of the batch gets it; where they disagree, the next chunks are probes too
    (at most MAX_PROBES), and then the codec that minimises the probes' bytes plus
    HISTORY_WEIGHT probes' worth of the history's expected bytes wins. With `history=None`
    every chunk is a probe (a file's first chunks). A batch planned for plain zstd whose
    expected bytes are at most BOOST_BELOW of raw gets `boosted_zstd` frames, and so does a probe
    after a probe (or history, or TASTE) that compressed well; others are `boosted` alone. With
    `boostable=False` (code cut into large chunks) nothing is boosted."""

    def __init__(self, codecs: tuple[int, ...], history: History | None, *, level: int,
                 boostable: bool = True) -> None:
        self.codecs, self.level = codecs, level
        self.may_boost = boostable and level_boosts(level)
        self.history = dict(history) if history is not None else None
        adaptive = sum(1 for c in codecs if c != RAW) >= 2
        self.probes: list[Probe] = []
        self.plan: tuple[int, ...] | None = None if adaptive else codecs
        self.boost = False  # plain zstd frames `boosted_zstd` right away (else `boosted`)
        self._expect_code = None if self.history is None else self.history.get(ZSTD, 1.0) <= BOOST_BELOW

    @property
    def planned(self) -> bool:
        """Whether the next chunk gets the batch's codec (True) or is a probe."""
        return self.plan is not None

    def encode(self, data: bytes | memoryview) -> tuple[bytes, Probe | None]:
        if self.plan is not None:
            return encode_best(data, self.plan, level=self.level, boost=self.boost if self.may_boost else None), None
        if self._expect_code is None and self.may_boost:
            taste = data[:TASTE]
            self._expect_code = len(encode(taste, ZSTD, level=self.level)) <= BOOST_BELOW * len(taste) + HEADER_SIZE
        boost = bool(self._expect_code) if self.may_boost else None
        frame, probe = encode_probe(data, self.codecs, level=self.level, boost=boost)
        self._expect_code = compresses_well(probe)
        self.probes.append(probe)
        if self.history is not None:
            self.plan = self._decide(self.history)
        return frame, probe

    def _decide(self, history: dict[int, float]) -> tuple[int, ...] | None:
        """The batch's codec, or None to probe one more chunk first."""
        raw = sum(p.raw_length for p in self.probes)
        local: dict[int, float] = {}
        for p in self.probes:
            for c, size in p.sizes:
                local[c] = local.get(c, 0.0) + size
        if not history or not raw:
            expected, total = local, float(raw)
        elif _cheapest(local) != _cheapest(history) and len(self.probes) < MAX_PROBES:
            # A second opinion costs one chunk's extra encoding; a wrong batch costs up to
            # 20% of a megabyte (a probe chunk can be atypical: a float table inside code).
            return None
        else:
            share = HISTORY_WEIGHT * raw / len(self.probes)
            expected = {c: size + share * history.get(c, size / raw) for c, size in local.items()}
            total = raw + share
        best = _cheapest(expected)
        self.boost = best == ZSTD and expected[best] <= BOOST_BELOW * total
        return (best,)


def _cheapest(expected: dict[int, float]) -> int:
    # Ties go to the cheaper codec: raw, then zstd, then byte-grouping.
    return min(sorted(expected), key=lambda c: expected[c])


def frame_codec(frame: bytes | memoryview) -> int:
    return int(frame[0])


def max_frame(max_raw: int) -> int:
    """Longest frame that holds a chunk of at most `max_raw` bytes: the writer stores a chunk
    raw whenever no codec makes it smaller (`encode_best`), so no frame exceeds the raw one."""
    return HEADER_SIZE + max_raw


def _payload(frame: bytes | memoryview, where: str, max_raw: int) -> tuple[int, int, memoryview]:
    if len(frame) < HEADER_SIZE:
        raise FormatError(f"{where}: truncated chunk frame ({len(frame)} bytes, header is 5)")
    codec, n = HEADER.unpack_from(frame)
    if codec not in FRAME_NAMES:
        raise FormatError(
            f"{where}: unknown chunk codec {codec}; this zoostore knows "
            f"{sorted(FRAME_NAMES)}: upgrade zoostore"
        )
    if n > max_raw:
        raise FormatError(
            f"{where}: frame says {n} raw bytes, more than the store's largest chunk ({max_raw} "
            f"bytes): the frame is damaged or hostile; nothing was decoded"
        )
    return codec, n, memoryview(frame)[HEADER_SIZE:]


def _empty_or_checked(payload: memoryview, n: int, where: str) -> bool:
    """Check the size a zstd payload's header declares against the frame's `n` raw bytes (see
    `_decompress`); True when the frame is empty (nothing to decompress)."""
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError as exc:
        raise FormatError(f"{where}: corrupt zstd payload ({exc})") from exc
    # python-zstandard's frame_content_size says -1 for "not declared".
    if declared >= 0 and declared != zstandard.CONTENTSIZE_UNKNOWN and declared != n:
        raise FormatError(
            f"{where}: frame says {n} raw bytes but its zstd payload declares {declared}: the "
            f"frame is damaged or hostile; nothing was decoded"
        )
    if n == 0:
        if declared == 0:
            return True
        raise FormatError(f"{where}: frame says 0 raw bytes but carries a zstd payload of unknown size")
    return False


def _decompress(payload: memoryview, n: int, where: str,
                dec: zstandard.ZstdDecompressor | None = None) -> bytes:
    """The zstd payload of a frame that declares `n` raw bytes, never producing more.

    python-zstandard's one-shot `decompress` allocates the content size a zstd frame header
    declares and ignores `max_output_size` then (a 40 KB "bomb" declaring 1 GiB of zeros got
    1 GiB); so the declared size is checked against `n` first. Without a declared size the
    output buffer is `max_output_size = n` and a longer payload is an error; with `n = 0`
    (which python-zstandard reads as "no limit") nothing is decompressed at all."""
    if _empty_or_checked(payload, n, where):
        return b""
    try:
        data = (dec or _decompressor()).decompress(payload, max_output_size=n)
    except zstandard.ZstdError as exc:
        raise FormatError(f"{where}: corrupt zstd payload, or longer than the {n} bytes the frame "
                          f"says ({exc})") from exc
    if len(data) != n:
        raise FormatError(f"{where}: frame says {n} raw bytes but decodes to {len(data)}")
    return data


def decode(frame: bytes | memoryview, *, where: str = "frame", max_raw: int = MAX_RAW,
           base: bytes | None = None) -> bytes:
    """The chunk bytes of one frame, at most `max_raw` (the store's largest chunk). Raises
    FormatError on a malformed frame before allocating; the caller verifies the chunk id. A
    delta frame needs `base`, the raw bytes of its base chunk (`delta_base` names it)."""
    codec, n, payload = _payload(frame, where, max_raw)
    if codec == DELTA:
        return _undelta(payload, n, where, base)
    if codec == RAW:
        if len(payload) != n:
            raise FormatError(f"{where}: frame says {n} raw bytes but decodes to {len(payload)}")
        return bytes(payload)
    data = _decompress(payload, n, where)
    return byte_planes.ungroup(data, n) if codec == BYTEGROUP else data


# ---------------------------------------------------------------------------------- delta frames
#
# frame := codec (u8 = 3) | raw length (u32) | base chunk id (32) | zstd frame
#
# The zstd frame (with content size, without a dictionary id) is compressed with the base
# chunk's raw bytes as a raw-content dictionary (zstd's "reference prefix", what `zstd
# --patch-from` does for whole files): a chunk that differs from its base in a few bytes costs
# a few dozen bytes. The base is never itself a delta frame (chain depth one), so a reader needs
# at most one extra chunk per delta frame. Decoding checks that the base bytes it is given hash
# to the id the frame names: a wrong or damaged base is a FormatError, never wrong bytes.


def _raw_dict(base: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def encode_delta(data: bytes | memoryview, base_id: bytes, base: bytes, *, level: int = 3) -> bytes:
    """A delta frame of `data` against the non-delta chunk `base` whose id is `base_id`."""
    if len(base_id) != BASE_ID_SIZE:
        raise ValueError(f"base chunk id must be {BASE_ID_SIZE} bytes, got {len(base_id)}")
    comp = zstandard.ZstdCompressor(level=level, dict_data=_raw_dict(base), write_content_size=True,
                                    write_dict_id=False)
    return HEADER.pack(DELTA, len(data)) + base_id + comp.compress(data)


def delta_base(frame: bytes | memoryview, *, where: str = "frame", max_raw: int = MAX_RAW) -> bytes | None:
    """The raw 32-byte id of the base chunk a delta frame names; None for any other frame."""
    codec, _, payload = _payload(frame, where, max_raw)
    if codec != DELTA:
        return None
    if len(payload) < BASE_ID_SIZE:
        raise FormatError(f"{where}: truncated delta frame ({len(payload)} payload bytes, the base id is 32)")
    return bytes(payload[:BASE_ID_SIZE])


def _undelta(payload: memoryview, n: int, where: str, base: bytes | None) -> bytes:
    if len(payload) < BASE_ID_SIZE:
        raise FormatError(f"{where}: truncated delta frame ({len(payload)} payload bytes, the base id is 32)")
    named = bytes(payload[:BASE_ID_SIZE])
    if base is None:
        raise FormatError(f"{where}: a delta frame against base chunk blake3:{named.hex()}, but "
                          f"the reader has no base for it (the recipe names none)")
    actual = blake3.blake3(base).digest()
    if actual != named:
        raise FormatError(f"{where}: delta frame names base chunk blake3:{named.hex()} but was given "
                          f"bytes hashing to blake3:{actual.hex()}: the base is damaged or the recipe "
                          f"names the wrong one; nothing was decoded")
    dec = zstandard.ZstdDecompressor(dict_data=_raw_dict(base))
    return _decompress(payload[BASE_ID_SIZE:], n, where, dec)
