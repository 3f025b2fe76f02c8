"""gc repack: copy the live frames of mostly-dead old packs (each verified) into new packs and
rewrite the recipes that name them; the old packs go in a later run, after the grace period.
Delta frames and their bases are frames like the others (a recipe names both, `Recipe.refs`):
each moves on its own and the rewritten recipe points at both new places; a delta frame is
verified against its base before it is copied. A recipe stored as edits (format 3) names only
its new frames: those move like any, and it is rewritten as edits of the same base; the frames
it copies are its base recipe's, which is rewritten on its own."""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from zoostore.storage.backends.base import ObjectInfo
from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError, IntegrityError, ObjectNotFoundError, ZooError
from zoostore.storage.packcheck import BaseLookup, footer_of, pack_problems
from zoostore.storage.pack import FileList, PackBuilder, PackEntry, PackSlot, pack_key
from zoostore.core.progress import Progress
from zoostore.storage.recipe import ChunkRef, Recipe, RecipeEdits, blob_key, decode_stored
from zoostore.repository import Store
from zoostore.ops.gc.results import GcResult
from zoostore.ops.gc.survey import IO_WORKERS, _RecipeIndex, _Survey


# ---------------------------------------------------------------------------------- repack


def _repack(zoo: Store, sources: list[ObjectInfo], survey: _Survey, index: _RecipeIndex, cutoff: float,
            progress: Progress, result: GcResult) -> None:
    """Copy the live frames of `sources` into new packs and point the recipes at them."""
    source_keys = {s.key for s in sources}
    users = sorted(k for k in survey.kept if source_keys.intersection(index.packs(k)))

    def read(key: str) -> Recipe | RecipeEdits | str:
        try:
            return decode_stored(Digest(key.rsplit("/", 1)[-1]), zoo.backend.get(key))
        except (ObjectNotFoundError, FormatError, IntegrityError) as exc:
            return f"repack skipped: recipe {key} could not be read again ({exc})"

    recipes: dict[str, Recipe | RecipeEdits] = {}
    with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:  # one GET each: in parallel
        for key, got in zip(users, pool.map(read, users)):
            if isinstance(got, str):
                result.notes.append(got)
                return
            recipes[key] = got
    progress.start("repack", sum(s.size for s in sources))
    try:
        _Repacker(zoo, recipes, source_keys, survey, index, result).run(sources, cutoff, progress)
    finally:
        progress.done("repack")


class _Repacker:
    """One repack: the frames the kept recipes use in the source packs, copied in order into
    new packs (which also carry the file lists of the blobs they serve), then the recipes."""

    def __init__(self, zoo: Store, recipes: dict[str, Recipe | RecipeEdits], source_keys: set[str], survey: _Survey,
                 index: _RecipeIndex, result: GcResult) -> None:
        self.zoo, self.backend, self.recipes, self.survey = zoo, zoo.backend, recipes, survey
        self.index, self.result = index, result
        # (source pack, offset) -> (chunk id, raw length, frame length) and which recipes use it.
        self.wanted: dict[tuple[str, int], tuple[Digest, int, int]] = {}
        self.served_by: dict[tuple[str, int], set[str]] = {}
        self.bases = {b.chunk: b for r in recipes.values() for b in r.bases}
        for key, recipe in recipes.items():
            for ref in recipe.refs:
                pk = pack_key(ref.pack)
                if pk in source_keys:
                    self.wanted[(pk, ref.offset)] = (ref.chunk, ref.raw_length, ref.length)
                    self.served_by.setdefault((pk, ref.offset), set()).add(key)
        self.moved: dict[tuple[str, int], tuple[PackSlot, int]] = {}
        self.builder, self.slot, self.serving = PackBuilder(), PackSlot(), set[str]()
        self.carried: dict[Digest, FileList] = {}
        self.done_sources: list[str] = []

    def run(self, sources: list[ObjectInfo], cutoff: float, progress: Progress) -> None:
        for source in sources:
            progress.advance("repack", source.size)
            self._copy(source, cutoff)
        self._flush(last=True)
        if not self.done_sources:
            return
        # Old packs stay readable for at least the grace period from now: readers and
        # publishers may hold recipes that still name them.
        def freshen(key: str) -> None:
            try:
                self.backend.freshen(key)
            except ObjectNotFoundError:
                pass

        with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:  # one request each: in parallel
            list(pool.map(freshen, self.done_sources))
        self._rewrite_recipes(set(self.done_sources))
        self.result.packs_repacked = len(self.done_sources)

    def _copy(self, source: ObjectInfo, cutoff: float) -> None:
        try:
            if self.backend.stat(source.key).mtime >= cutoff:
                return  # reused by a publisher since the survey: leave it
            data = self.backend.get(source.key)
        except ObjectNotFoundError:
            return
        problem = _check_source(source.key, data, self.wanted, self._base)
        if problem:
            self.result.notes.append(f"repack skipped {source.key}: {problem}; run 'zoostore verify --read-data'")
            return
        for fl in footer_of(data, source.key).files:
            if blob_key(fl.blob) in self.survey.kept:
                self.carried.setdefault(fl.blob, fl)
        for (pk, offset), (chunk, raw_length, length) in sorted(self.wanted.items()):
            if pk != source.key:
                continue
            if self.builder.size >= self.zoo.config.pack_target_size:
                # Flush before adding, not after: the last pack always holds a frame, so
                # the carried file lists always have a pack to live in.
                self._flush(last=False)
            self.moved[(pk, offset)] = (self.slot, self.builder.add(chunk, data[offset : offset + length], raw_length))
            self.serving.update(self.served_by[(pk, offset)])
        self.done_sources.append(source.key)

    def _base(self, base_id: bytes) -> bytes | None:
        """The verified bytes of a delta frame's base chunk (still at its old place)."""
        ref = self.bases.get(Digest.from_bytes(base_id))
        if ref is None:
            return None
        try:
            return self.zoo.blobs.chunk_bytes([ref], blob=ref.chunk).get(ref.chunk)
        except ZooError:
            return None

    def _flush(self, *, last: bool) -> None:
        if not len(self.builder):
            return
        lists = {}
        for k in sorted(self.serving):
            lists[self.recipes[k].blob] = _file_list(self.recipes[k])
        if last:  # file lists the source packs carried for blobs that stay
            for blob, fl in self.carried.items():
                lists.setdefault(blob, fl)
        self.builder.add_file_list(list(lists.values()))
        pack_id, data, _ = self.builder.finish()
        self.backend.put_if_absent(pack_key(pack_id), data)
        self.slot.id = pack_id
        self.result.packs_written += 1
        self.result.bytes_written += len(data)
        self.builder, self.slot, self.serving = PackBuilder(), PackSlot(), set()

    def _rewrite_recipes(self, done: set[str]) -> None:
        changed: list[tuple[str, Recipe | RecipeEdits]] = []
        for key, recipe in self.recipes.items():
            chunks = []
            for ref in recipe.chunks if isinstance(recipe, Recipe) else recipe.new:
                base = self._moved(ref.base, done) if ref.base is not None else None
                chunks.append(replace(self._moved(ref, done), base=base))
            rewritten = (Recipe(recipe.blob, recipe.size, tuple(chunks)) if isinstance(recipe, Recipe)
                         else replace(recipe, new=tuple(chunks)))
            if rewritten != recipe:
                changed.append((key, rewritten))

        def put(item: tuple[str, Recipe | RecipeEdits]) -> None:
            # Same key, different bytes: the one overwrite in a content-addressed store.
            self.backend.put(item[0], item[1].encode())

        with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:  # one PUT each: in parallel
            for (key, rewritten), _ in zip(changed, pool.map(put, changed)):
                self.index.record(key, rewritten)
                if isinstance(rewritten, Recipe):
                    self.zoo.blobs.remember(rewritten)
                else:  # resolved on the next read
                    self.zoo.blobs.forget(rewritten.blob)
                self.result.recipes_rewritten += 1

    def _moved(self, ref: ChunkRef, done: set[str]) -> ChunkRef:
        """`ref` at its new place when its pack was repacked."""
        pk = pack_key(ref.pack)
        if pk not in done:
            return ref
        new_slot, new_offset = self.moved[(pk, ref.offset)]
        assert new_slot.id is not None
        return replace(ref, pack=new_slot.id, offset=new_offset)


def _file_list(recipe: Recipe | RecipeEdits) -> FileList:
    """What a footer says of a file whose frames it holds (as edits when the recipe is)."""
    if isinstance(recipe, Recipe):
        return FileList(recipe.blob, recipe.size, tuple((c.chunk, c.raw_length) for c in recipe.chunks))
    return FileList(recipe.blob, recipe.size, tuple((c.chunk, c.raw_length) for c in recipe.new),
                    recipe.against, recipe.runs)


def _check_source(key: str, data: bytes, wanted: Mapping[tuple[str, int], tuple[Digest, int, int]],
                  bases: BaseLookup) -> str | None:
    """Why the pack must not be copied (its bytes or a live frame fail verification), or None."""
    frames = [PackEntry(chunk, offset, length, raw_length)
              for (pk, offset), (chunk, raw_length, length) in wanted.items() if pk == key]
    problem = next(pack_problems(key, data, frames, bases=bases), None)
    return None if problem is None else problem.message
