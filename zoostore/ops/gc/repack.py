"""gc repack: copy the live frames of mostly-dead old packs (each verified) into new packs and
rewrite the recipes that name them; the old packs go in a later run, after the grace period."""

from __future__ import annotations

from collections.abc import Mapping
import blake3
from zoostore.storage import codec
from zoostore.storage.backends.base import ObjectInfo
from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError, IntegrityError, ObjectNotFoundError
from zoostore.storage.pack import PackSlot, TRAILER_SIZE, FileList, PackBuilder, footer_span, pack_key, parse_footer
from zoostore.core.progress import Progress
from zoostore.storage.recipe import ChunkRef, Recipe, blob_key
from zoostore.repository import Store
from zoostore.ops.gc.results import GcResult
from zoostore.ops.gc.survey import _RecipeIndex, _Survey


# ---------------------------------------------------------------------------------- repack


def _repack(zoo: Store, sources: list[ObjectInfo], survey: _Survey, index: _RecipeIndex, cutoff: float,
            progress: Progress, result: GcResult) -> None:
    """Copy the live frames of `sources` into new packs and point the recipes at them."""
    backend = zoo.backend
    source_keys = {s.key for s in sources}
    users = sorted(k for k in survey.kept if source_keys.intersection(index.packs(k)))
    recipes: dict[str, Recipe] = {}
    for key in users:
        try:
            recipes[key] = Recipe.decode(Digest(key.rsplit("/", 1)[-1]), backend.get(key))
        except (ObjectNotFoundError, FormatError, IntegrityError) as exc:
            result.notes.append(f"repack skipped: recipe {key} could not be read again ({exc})")
            return
    # (source pack, offset) -> (chunk id, raw length, frame length) and which recipes use it.
    wanted: dict[tuple[str, int], tuple[Digest, int, int]] = {}
    served_by: dict[tuple[str, int], set[str]] = {}
    for key, recipe in recipes.items():
        for ref in recipe.chunks:
            pk = pack_key(ref.pack)
            if pk in source_keys:
                wanted[(pk, ref.offset)] = (ref.chunk, ref.raw_length, ref.length)
                served_by.setdefault((pk, ref.offset), set()).add(key)

    moved: dict[tuple[str, int], tuple[PackSlot, int]] = {}
    builder = PackBuilder()
    slot = PackSlot()
    serving: set[str] = set()
    carried: dict[Digest, FileList] = {}
    done_sources: list[str] = []
    target = zoo.config.pack_target_size

    def file_list(key: str) -> FileList:
        r = recipes[key]
        return FileList(r.blob, r.size, tuple((c.chunk, c.raw_length) for c in r.chunks))

    def flush(last: bool) -> None:
        nonlocal builder, slot, serving
        if not len(builder):
            return
        lists = {recipes[k].blob: file_list(k) for k in sorted(serving)}
        if last:  # file lists the source packs carried for blobs that stay
            for blob, fl in carried.items():
                lists.setdefault(blob, fl)
        builder.add_file_list(list(lists.values()))
        pack_id, data, _ = builder.finish()
        backend.put_if_absent(pack_key(pack_id), data)
        slot.id = pack_id
        result.packs_written += 1
        result.bytes_written += len(data)
        builder, slot, serving = PackBuilder(), PackSlot(), set()

    progress.start("repack", sum(s.size for s in sources))
    try:
        for source in sources:
            progress.advance("repack", source.size)
            try:
                info = backend.stat(source.key)
                if info.mtime >= cutoff:
                    continue  # reused by a publisher since the survey: leave it
                data = backend.get(source.key)
            except ObjectNotFoundError:
                continue
            problem = _check_source(source.key, data, wanted)
            if problem:
                result.notes.append(f"repack skipped {source.key}: {problem}; run 'zoostore verify --read-data'")
                continue
            start, end = footer_span(data[-TRAILER_SIZE:], len(data), where=source.key)
            for fl in parse_footer(data[start:end], where=source.key).files:
                if blob_key(fl.blob) in survey.kept:
                    carried.setdefault(fl.blob, fl)
            for (pk, offset), (chunk, raw_length, length) in sorted(wanted.items()):
                if pk != source.key:
                    continue
                if builder.size >= target:
                    # Flush before adding, not after: the last pack always holds a frame, so
                    # the carried file lists always have a pack to live in.
                    flush(last=False)
                moved[(pk, offset)] = (slot, builder.add(chunk, data[offset : offset + length], raw_length))
                serving.update(served_by[(pk, offset)])
            done_sources.append(source.key)
        flush(last=True)
        if not done_sources:
            return
        # Old packs stay readable for at least the grace period from now: readers and
        # publishers may hold recipes that still name them.
        for key in done_sources:
            try:
                backend.freshen(key)
            except ObjectNotFoundError:
                pass
        done = set(done_sources)
        for key, recipe in recipes.items():
            chunks = []
            for ref in recipe.chunks:
                pk = pack_key(ref.pack)
                if pk in done:
                    new_slot, new_offset = moved[(pk, ref.offset)]
                    assert new_slot.id is not None
                    ref = ChunkRef(ref.chunk, ref.raw_length, new_slot.id, new_offset, ref.length)
                chunks.append(ref)
            rewritten = Recipe(recipe.blob, recipe.size, tuple(chunks))
            if rewritten.chunks != recipe.chunks:
                # Same key, different bytes: the one overwrite in a content-addressed store.
                backend.put(key, rewritten.encode())
                index.record(key, rewritten)
                zoo.blobs.remember(rewritten)
                result.recipes_rewritten += 1
        result.packs_repacked = len(done_sources)
    finally:
        progress.done("repack")


def _check_source(key: str, data: bytes, wanted: Mapping[tuple[str, int], tuple[Digest, int, int]]) -> str | None:
    """Why the pack must not be copied (its bytes or a live frame fail verification), or None."""
    name = key.rsplit("/", 1)[-1]
    actual = blake3.blake3(data).hexdigest()
    if actual != name:
        return f"its bytes hash to {actual}, expected its name {name}"
    try:
        footer_span(data[-TRAILER_SIZE:], len(data), where=key)
    except FormatError as exc:
        return str(exc)
    for (pk, offset), (chunk, raw_length, length) in wanted.items():
        if pk != key:
            continue
        frame = data[offset : offset + length]
        try:
            raw = codec.decode(frame, where=f"{key} offset {offset}")
        except FormatError as exc:
            return str(exc)
        if len(raw) != raw_length or blake3.blake3(raw).digest() != chunk.raw:
            return f"chunk {chunk} at offset {offset} does not match its id"
    return None
