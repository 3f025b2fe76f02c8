"""Store verification and repair: find every problem, not just the first.

Checks, cheapest first (restic's `check` is the model):
1. every file a manifest lists has a recipe, and the recipe's size matches the manifest;
2. every recipe decodes (checksum, format), every pack it names exists, and every frame it
   names lies inside that pack;
3. with `read_data` (or a subset n/m of the packs), every pack is downloaded, its id re-hashed,
   its footer parsed, and every frame decoded and re-hashed against its chunk id; recipes that
   name a bad or missing chunk are reported with the blob they break, and so are recipes that
   place a chunk where the pack's footer has another chunk or another length (a damaged or
   hostile recipe: a whole-file read still refuses wrong bytes, but `repair` rebuilds it). A
   delta frame is checked after every pack was read, against its base (located by a recipe or
   a footer, fetched and verified like any chunk); a bad base breaks every file whose delta
   frames use it.

`repair` rebuilds missing or damaged recipes from pack footers: entries locate each chunk, and
the file lists of each publish's last pack give each file's chunk order (see zoostore.storage.pack);
a file list written as edits of a base blob's is resolved against that blob's recipe or, when
that is damaged too, its file list. A rebuilt recipe is always a whole one (format 1 or 2).

A recipe stored as edits (format 3) is checked resolved against its base recipe: a missing or
unfitting base makes it a bad-recipe.
"""

from __future__ import annotations

import time
from collections.abc import Set as AbstractSet
from dataclasses import field, replace

import blake3

from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError, IntegrityError, ObjectNotFoundError, ZooError
from zoostore.core.records import dataclass
from zoostore.storage import codec
from zoostore.storage.packcheck import fetch_footer, footer_of, frame_problem, pack_problems
from zoostore.storage.pack import FileList, Footer, PackEntry, pack_key
from zoostore.core.progress import NullProgress, Progress
from zoostore.storage import edits
from zoostore.storage.recipe import ChunkRef, Recipe, RecipeEdits, blob_key, decode_stored
from zoostore.repository import Store
from zoostore.ops.gc.leftovers import find_leftovers


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem `verify` found: its kind, the object and what is wrong with it."""

    kind: str  # missing-recipe, bad-recipe, missing-pack, bad-frame-range, bad-pack, bad-chunk, size-mismatch
    obj: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.obj}: {self.message}"


#: Problems of a recipe alone: a repair that rebuilt every broken recipe has fixed them.
REPAIRABLE = ("missing-recipe", "bad-recipe", "recipe-mismatch")


@dataclass(slots=True)
class VerifyReport:
    """What `verify` checked and found, and what `--repair` repaired."""

    problems: list[Problem] = field(default_factory=list)
    recipes: int = 0
    packs: int = 0
    packs_read: int = 0
    chunks_read: int = 0
    bytes_read: int = 0
    repaired: list[str] = field(default_factory=list)
    unrepaired: list[str] = field(default_factory=list)
    #: Stale leftovers of killed writers (partial temp files, probes; ops.gc.leftovers): not
    #: problems, nothing lists them, but `zoostore gc` deletes them.
    leftovers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems or (not self.unrepaired and len(self.repaired) > 0 and
                                     all(p.kind in REPAIRABLE for p in self.problems))

    def add(self, kind: str, obj: str, message: str) -> None:
        self.problems.append(Problem(kind, obj, message))


def _digest_from_key(key: str) -> Digest | None:
    name = key.rsplit("/", 1)[-1]
    try:
        return Digest.parse(name)
    except ZooError:
        return None


def read_footer(store: Store, pack: Digest, size: int) -> Footer:
    return fetch_footer(store.backend, pack_key(pack), size)


def verify_store(store: Store, *, read_data: bool = False, subset: tuple[int, int] | None = None,
                 repair: bool = False, progress: Progress | None = None) -> VerifyReport:
    """Check the store; see the module docstring. `subset=(n, m)` reads the n-th of m slices
    of the packs (1-based), so m runs with n = 1..m read everything once."""
    progress = progress or NullProgress()
    report = VerifyReport()
    backend = store.backend

    packs: dict[Digest, int] = {}
    for info in backend.list("packs/"):
        d = _digest_from_key(info.key)
        if d is not None:
            packs[d] = info.size
    report.packs = len(packs)
    recipe_keys = {d: info.key for info in backend.list("blobs/") if (d := _digest_from_key(info.key))}

    # 1. manifests -> recipes
    referenced = store.referenced_blobs() if hasattr(store, "referenced_blobs") else {}
    broken_blobs: set[Digest] = set()
    for blob, (size, where) in sorted(referenced.items()):
        if blob not in recipe_keys:
            report.add("missing-recipe", blob_key(blob), f"{where} needs blob {blob} but the store has no recipe for it")
            broken_blobs.add(blob)

    # 2. recipes -> packs and frames
    recipes = _check_recipes(store, recipe_keys, packs, referenced, report, broken_blobs, progress)

    # 3. read data
    if read_data or subset:
        _read_data(store, packs, recipes, subset, report, progress, broken_blobs)

    for info in find_leftovers(store, grace=store.config.grace_seconds, now=time.time()):  # no probe write: verify also runs read-only
        report.leftovers.append(f"{info.key} ({info.size} bytes)")
    if repair and broken_blobs:
        live_packs = {p for r in recipes.values() for p in r.packs}
        _repair(store, broken_blobs, packs, report, progress, prefer=live_packs, intact=recipes)
    return report


def _check_recipes(store: Store, recipe_keys: dict[Digest, str], packs: dict[Digest, int],
                   referenced: dict[Digest, tuple[int, str]], report: VerifyReport, broken_blobs: set[Digest],
                   progress: Progress) -> dict[Digest, Recipe]:
    """Read every recipe; each must parse, match its manifest size, and name existing packs
    and frame ranges inside them."""
    recipes: dict[Digest, Recipe] = {}
    stored: dict[Digest, Recipe | RecipeEdits] = {}
    progress.start("verify recipes", len(recipe_keys), unit="recipes")
    for blob, key in sorted(recipe_keys.items()):
        progress.advance("verify recipes")
        report.recipes += 1
        try:
            recipe = _whole_recipe(store, blob, stored)
        except (FormatError, IntegrityError) as exc:
            report.add("bad-recipe", key, str(exc))
            broken_blobs.add(blob)
            continue
        except ObjectNotFoundError:
            continue  # deleted while we ran (gc)
        recipes[blob] = recipe
        if blob in referenced and referenced[blob][0] != recipe.size:
            report.add("size-mismatch", key, f"{referenced[blob][1]} says {referenced[blob][0]} bytes, recipe says {recipe.size}")
        for ref in recipe.refs:  # delta frames' bases too
            psize = packs.get(ref.pack)
            if psize is None:
                report.add("missing-pack", pack_key(ref.pack), f"blob {blob} needs it (chunk {ref.chunk.short}) but it is not in the store")
                broken_blobs.add(blob)
                break
            if ref.offset + ref.length > psize:
                report.add("bad-frame-range", pack_key(ref.pack),
                           f"blob {blob} needs bytes {ref.offset}-{ref.offset + ref.length} but the pack has {psize}")
                broken_blobs.add(blob)
                break
    progress.done("verify recipes")
    return recipes


def _stored(store: Store, blob: Digest, memo: dict[Digest, Recipe | RecipeEdits]) -> Recipe | RecipeEdits:
    if blob not in memo:
        memo[blob] = decode_stored(blob, store.backend.get(blob_key(blob)), max_chunk=store.config.chunking.largest)
    return memo[blob]


def _whole_recipe(store: Store, blob: Digest, memo: dict[Digest, Recipe | RecipeEdits]) -> Recipe:
    """The blob's recipe, resolved against its base recipe when stored as edits (read once each)."""
    stored = _stored(store, blob, memo)
    if isinstance(stored, Recipe):
        return stored
    try:
        base = _stored(store, stored.against, memo)
    except ObjectNotFoundError:
        raise IntegrityError(f"recipe {blob_key(blob)} is stored as edits of recipe {blob_key(stored.against)}, "
                             f"which the store does not have", obj=blob_key(blob)) from None
    except (FormatError, IntegrityError) as exc:
        raise IntegrityError(f"recipe {blob_key(blob)} is stored as edits of recipe {blob_key(stored.against)}, "
                             f"which is damaged ({exc})", obj=blob_key(blob)) from None
    return stored.resolve(base)


def _read_data(store: Store, packs: dict[Digest, int], recipes: dict[Digest, Recipe],
               subset: tuple[int, int] | None, report: VerifyReport, progress: Progress,
               broken_blobs: set[Digest]) -> None:
    """Decode and check every frame of the packs (or the n-th of m slices of them), then name
    the blobs that use a corrupt chunk, or whose recipe disagrees with a footer read (such a
    recipe leaves `recipes`: it is not intact, and repair must not build on it)."""
    bad_chunks: set[tuple[Digest, Digest]] = set()  # (pack, chunk): a frame, not every copy of the chunk
    ordered = sorted(packs)
    if subset:
        n, m = subset
        ordered = [p for i, p in enumerate(ordered) if i % m == n - 1]
    progress.start("verify packs", sum(packs[p] for p in ordered))
    deferred: list[tuple[Digest, PackEntry, bytes]] = []
    located: dict[Digest, ChunkRef] = {}
    footers: dict[tuple[Digest, int], tuple[Digest, int, int]] = {}  # (pack, offset) -> (chunk, length, raw)
    for pack in ordered:
        _read_pack(store, pack, report, bad_chunks, deferred, located, footers)
        progress.advance("verify packs", packs[pack])
    progress.done("verify packs")
    _check_deltas(store, deferred, recipes, located, report, bad_chunks)
    footed = {pack for pack, _ in footers}  # packs read whose footer parsed
    mismatched: list[Digest] = []
    for blob, recipe in recipes.items():
        hit = next((r for r in recipe.refs if (r.pack, r.chunk) in bad_chunks), None)
        if hit is not None:
            report.add("bad-chunk", blob_key(blob), f"blob {blob} uses corrupt chunk {hit.chunk} in pack {hit.pack}")
        wrong = next((r for r in recipe.refs if r.pack in footed
                      and footers.get((r.pack, r.offset)) != (r.chunk, r.length, r.raw_length)), None)
        if wrong is not None:
            there = footers.get((wrong.pack, wrong.offset))
            has = "no frame starting there" if there is None else \
                f"chunk {there[0]} ({there[1]} bytes, {there[2]} raw) there"
            mismatched.append(blob)
            report.add("recipe-mismatch", blob_key(blob),
                       f"blob {blob}: its recipe places chunk {wrong.chunk} ({wrong.length} bytes, {wrong.raw_length} raw) "
                       f"at offset {wrong.offset} of pack {wrong.pack}, whose footer has {has}: the recipe is damaged; "
                       f"'zoostore verify --repair' rebuilds it")
            broken_blobs.add(blob)
    for blob in mismatched:  # not intact: repair must not take its chunk list for a base's
        del recipes[blob]


def _entries(data: bytes, key: str) -> list[PackEntry]:
    try:
        return footer_of(data, key).entries
    except FormatError:
        return []


def _read_pack(store: Store, pack: Digest, report: VerifyReport, bad_chunks: set[tuple[Digest, Digest]],
               deferred: list[tuple[Digest, PackEntry, bytes]], located: dict[Digest, ChunkRef],
               footers: dict[tuple[Digest, int], tuple[Digest, int, int]]) -> None:
    """Check one pack's frames; its delta frames go to `deferred`, its chunks to `located` and
    its footer's entries to `footers`."""
    key = pack_key(pack)
    try:
        data = store.backend.get(key)
    except ObjectNotFoundError:
        return
    report.packs_read += 1
    report.bytes_read += len(data)
    deltas: list[tuple[PackEntry, bytes]] = []
    for problem in pack_problems(key, data, max_chunk=store.config.chunking.largest, deferred=deltas):
        report.add(problem.kind, key, problem.message)
        if problem.chunk is not None:
            bad_chunks.add((pack, problem.chunk))
    deferred.extend((pack, e, frame) for e, frame in deltas)
    delta_chunks = {e.chunk for e, _ in deltas}
    entries = _entries(data, key)
    for e in entries:
        footers[pack, e.offset] = (e.chunk, e.length, e.raw_length)
        if e.chunk not in delta_chunks:
            located.setdefault(e.chunk, ChunkRef(e.chunk, e.raw_length, pack, e.offset, e.length))
    report.chunks_read += len(entries)


def _check_deltas(store: Store, deferred: list[tuple[Digest, PackEntry, bytes]], recipes: dict[Digest, Recipe],
                  located: dict[Digest, ChunkRef], report: VerifyReport,
                  bad_chunks: set[tuple[Digest, Digest]]) -> None:
    """Decode each delta frame against its base: the base a recipe names, else a plain frame of
    that chunk in a pack read; fetched and verified like any chunk (one read per frame)."""
    bases = {b.chunk: b for r in recipes.values() for b in r.bases}
    max_chunk = store.config.chunking.largest
    for pack, e, frame in deferred:
        key = pack_key(pack)
        base_id = Digest.from_bytes(codec.delta_base(frame) or b"")
        ref = bases.get(base_id) or located.get(base_id)
        try:
            base = store.blobs.chunk_bytes([ref], blob=e.chunk)[base_id] if ref is not None else None
        except ZooError:
            base = None
        if base is None:
            bad_chunks.add((pack, e.chunk))
            report.add("bad-chunk", key, f"delta frame of chunk {e.chunk} at offset {e.offset} needs base chunk "
                                         f"{base_id}, which is {'corrupt' if ref else 'in no pack or recipe'}")
            continue
        problem = frame_problem(key, e, frame, base, max_chunk=max_chunk)
        if problem is not None:
            report.add(problem.kind, key, problem.message)
            bad_chunks.add((pack, e.chunk))


def _with_bases(store: Store, refs: list[ChunkRef], locations: dict[Digest, ChunkRef]) -> list[ChunkRef]:
    """`refs` with the base of each delta frame (footers do not say which frames are deltas:
    each frame's header is read, one small ranged read per chunk; repair is rare)."""
    out = []
    for ref in refs:
        head = store.backend.get_range(pack_key(ref.pack), ref.offset, ref.offset + min(ref.length, 37))
        base_id = codec.delta_base(head, where=f"{pack_key(ref.pack)} chunk {ref.chunk}")
        base = locations.get(Digest.from_bytes(base_id)) if base_id is not None else None
        if base_id is not None and base is None:
            raise IntegrityError(f"delta frame of chunk {ref.chunk} needs base chunk blake3:{base_id.hex()}, "
                                 f"which is in no pack", obj=pack_key(ref.pack))
        out.append(replace(ref, base=base))
    return out


def _whole_list(fl: FileList, lists: dict[Digest, FileList],
                intact: dict[Digest, Recipe]) -> tuple[tuple[Digest, int], ...] | str:
    """A file list's chunks in file order, or why they cannot be known. A list written as edits
    takes its base's list from the base's intact recipe, else from the base's own file list."""
    if fl.base is None:
        return fl.chunks
    if fl.base in intact:
        base = [(r.chunk, r.raw_length) for r in intact[fl.base].chunks]
    elif fl.base in lists and lists[fl.base].base is None:
        base = list(lists[fl.base].chunks)
    else:
        return f"its file list is edits of blob {fl.base}, whose chunk list is in no intact recipe or footer"
    try:
        return tuple(edits.apply(base, fl.runs, fl.chunks, where=f"file list of blob {fl.blob}"))
    except IntegrityError as exc:
        return str(exc)


def _repair(store: Store, broken: set[Digest], packs: dict[Digest, int], report: VerifyReport,
            progress: Progress, *, prefer: AbstractSet[Digest] = frozenset(),
            intact: dict[Digest, Recipe] | None = None) -> None:
    """Rebuild recipes from footers. A chunk found in several packs (after `gc --repack`) is
    taken from a pack that intact recipes use (`prefer`), so repair keeps no dead pack alive."""
    locations: dict[Digest, ChunkRef] = {}
    file_lists: dict[Digest, FileList] = {}
    progress.start("read pack footers", len(packs), unit="packs")
    for pack, size in packs.items():
        progress.advance("read pack footers")
        try:
            footer = read_footer(store, pack, size)
        except (FormatError, ObjectNotFoundError):
            continue
        for e in footer.entries:
            if e.chunk not in locations or (pack in prefer and locations[e.chunk].pack not in prefer):
                locations[e.chunk] = ChunkRef(e.chunk, e.raw_length, pack, e.offset, e.length)
        for fl in footer.files:
            if fl.blob not in file_lists or (fl.base is None and file_lists[fl.blob].base is not None):
                file_lists[fl.blob] = fl  # a whole list over edits: it needs no base
    progress.done("read pack footers")
    for blob in sorted(broken):
        found = file_lists.get(blob)
        if found is None:
            report.unrepaired.append(f"{blob}: no pack footer lists this file; republish it")
            continue
        whole = _whole_list(found, file_lists, intact or {})
        if isinstance(whole, str):
            report.unrepaired.append(f"{blob}: {whole}; republish it")
            continue
        fl = replace(found, chunks=whole, base=None, runs=())
        missing = [c for c, _ in fl.chunks if c not in locations]
        if missing:
            report.unrepaired.append(f"{blob}: {len(missing)} of its chunks are in no pack (first: {missing[0]}); republish it")
            continue
        # Prove the rebuilt recipe right before making it visible.
        hasher = blake3.blake3()
        try:
            refs = [locations[c] for c, _ in fl.chunks]
            recipe = Recipe(blob, fl.size, tuple(_with_bases(store, refs, locations) if store.config.delta else refs))
            for data in store.blobs.iter_chunks(recipe):
                hasher.update(data)
        except ZooError as exc:
            report.unrepaired.append(f"{blob}: rebuilt recipe does not read back ({exc})")
            continue
        if hasher.hexdigest() != blob.hex:
            report.unrepaired.append(f"{blob}: rebuilt file hashes to {hasher.hexdigest()}; republish it")
            continue
        store.backend.delete([blob_key(blob)])
        store.backend.put_if_absent(blob_key(blob), recipe.encode())
        report.repaired.append(f"{blob}: recipe rebuilt from pack footers ({len(recipe.chunks)} chunks)")
