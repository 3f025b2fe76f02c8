"""gc survey: list packs/ and blobs/, read the recipes that are kept, and say which objects
are unreferenced and old enough to delete, and how live each pack is."""

from __future__ import annotations

import re
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from zoostore.core.records import dataclass
from zoostore.storage.backends.base import ObjectInfo
from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError, IntegrityError, NewerFormatError, NotFoundError, ObjectNotFoundError
from zoostore.documents.manifest import Manifest
from zoostore.storage.pack import pack_key
from zoostore.core.progress import Progress
from zoostore.storage.recipe import Recipe, RecipeEdits, blob_key, decode_stored
from zoostore.repository import Store


_HEX = re.compile(r"[0-9a-f]{64}")

#: Concurrent recipe reads and stats (object stores answer in tens of milliseconds).
IO_WORKERS = 16

# ---------------------------------------------------------------------------------- the survey


def _read_manifests(zoo: Store, *, known: Mapping[str, Manifest] | None = None,
                    tokens: dict[str, tuple[Manifest, str]] | None = None) -> dict[str, Manifest]:
    """Every manifest (IO_WORKERS at a time), except that the ones in `known` (read or written
    by the caller after its cutoff) are taken as they are; `tokens`, if given, receives each
    manifest read with its compare-and-swap token. One that does not parse stops gc: its
    references would be unknown."""
    known = known or {}

    def read(model: str) -> Manifest | None:
        try:
            if tokens is None:
                return zoo.manifest(model)
            m, token = zoo.manifest_versioned(model)
            if m is not None and token is not None:
                tokens[model] = (m, token)  # one key per thread: dict assignment is atomic
            return m
        except NotFoundError:
            return None  # deleted while we listed
        except NewerFormatError:
            raise  # "upgrade zoostore" says it all
        except FormatError as exc:
            raise FormatError(f"{exc}; gc cannot tell what this manifest references and deleted "
                              f"nothing: fix or restore it first") from exc

    models = [m for m in zoo.models() if m not in known]
    with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:
        out = {model: m for model, m in zip(models, pool.map(read, models)) if m is not None}
    return {**known, **out}


def _referenced(manifests: Mapping[str, Manifest]) -> set[str]:
    return {blob_key(entry.blob) for m in manifests.values() for r in m.versions.values()
            for _, _, entry in r.blobs()}


def _is_object_key(key: str, prefix: str) -> bool:
    """`<prefix>/<aa>/<64 hex>`: gc only ever deletes keys in the layout it understands."""
    parts = key.split("/")
    return (len(parts) == 3 and parts[0] == prefix and _HEX.fullmatch(parts[2]) is not None
            and parts[1] == parts[2][:2])


class _RecipeIndex:
    """What gc remembers of each recipe it read: the packs it names, and with `frames` every
    (pack, offset, frame length); both include the bases of its delta frames, which stay live
    as long as a kept recipe's delta frame uses them; and the base recipe of one stored as edits. Recipes are immutable per key except for repack (gc itself),
    so a plan's reads stay valid for its execute. (A publish's last check deletes a recipe that
    names a missing pack and writes it anew; the new one names packs younger than the cutoff
    or reused, and so freshened, ones: what a stale read of it misses, the look keeps.)"""

    def __init__(self, *, frames: bool) -> None:
        self.frames = frames
        self._packs: dict[str, tuple[str, ...]] = {}
        self._bases: dict[str, str] = {}  # recipe key -> the key of the recipe it is stored as edits of
        self._frames: dict[str, tuple[tuple[str, int, int], ...]] = {}
        self._names: dict[str, str] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._packs

    def _intern(self, name: str) -> str:
        return self._names.setdefault(name, name)

    def record(self, key: str, recipe: Recipe | RecipeEdits) -> None:
        """A recipe stored as edits names its own frames; the frames it copies are its base
        recipe's, which stays kept (and so live) as long as it is (`_keep_bases`)."""
        self._packs[key] = tuple(self._intern(pack_key(p)) for p in recipe.packs)
        if isinstance(recipe, RecipeEdits):
            self._bases[key] = self._intern(blob_key(recipe.against))
        if self.frames:
            self._frames[key] = tuple((self._intern(pack_key(r.pack)), r.offset, r.length)
                                      for r in recipe.refs)

    def remember(self, key: str, names: tuple[str, ...]) -> None:
        """Record what a cached earlier read found (`recipe_cache`: `names`), without reading again."""
        self._packs[key] = tuple(self._intern(p) for p in names if not p.startswith("blobs/"))
        for name in names:
            if name.startswith("blobs/"):
                self._bases[key] = self._intern(name)

    def packs(self, key: str) -> tuple[str, ...]:
        return self._packs.get(key, ())

    def base(self, key: str) -> str | None:
        """The key of the recipe `key` is stored as edits of, if any."""
        return self._bases.get(key)

    def names(self, key: str) -> tuple[str, ...]:
        """What `recipe_cache` keeps of a recipe: its packs, then its base recipe's key."""
        base = self._bases.get(key)
        return self.packs(key) + ((base,) if base else ())

    def frames_of(self, key: str) -> tuple[tuple[str, int, int], ...]:
        return self._frames.get(key, ())

    def read(self, zoo: Store, key: str) -> str | None:
        """Read and record one recipe; returns a problem description, or None."""
        digest = Digest(key.rsplit("/", 1)[-1])
        try:
            recipe = decode_stored(digest, zoo.backend.get(key))
        except ObjectNotFoundError:
            return f"recipe {key} disappeared while gc read it"
        except (FormatError, IntegrityError) as exc:
            return f"recipe {key} is damaged ({exc}), so gc cannot tell which packs it needs"
        self.record(key, recipe)
        return None

    def packs_of(self, zoo: Store, key: str) -> tuple[tuple[str, ...], str | None]:
        if key not in self._packs:
            problem = self.read(zoo, key)
            if problem:
                return (), problem
        return self._packs[key], None


def _keep_bases(zoo: Store, recipes: Mapping[str, ObjectInfo], kept: set[str], index: _RecipeIndex,
                problems: list[str]) -> None:
    """Add to `kept` the base recipes of kept recipes stored as edits (however old, whether or
    not a version lists them), reading those not read yet. A base is a whole recipe (chain depth
    one), so this ends after one round unless the store is damaged."""
    seen: set[str] = set()
    while True:
        wanted = {b: k for k in sorted(kept) if (b := index.base(k)) is not None and b not in kept and b not in seen}
        if not wanted:
            return
        seen.update(wanted)
        todo = []
        for base, user in sorted(wanted.items()):
            if base not in recipes:
                problems.append(f"recipe {user} is stored as edits of recipe {base}, which the store does not "
                                f"have (damaged store; 'zoostore verify --repair' rebuilds it from pack footers)")
                continue
            kept.add(base)
            if base not in index:
                todo.append(base)
        with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:  # one GET each, as for kept recipes
            problems.extend(p for p in pool.map(lambda k: index.read(zoo, k), todo) if p)


@dataclass(slots=True)
class _Survey:
    """gc's view of the store: recipes and packs listed, which are referenced and kept, and problems met."""

    recipes: dict[str, ObjectInfo]
    packs: dict[str, ObjectInfo]
    referenced: set[str]
    kept: set[str]
    live_packs: set[str]
    frames: dict[str, dict[int, int]]  # pack key -> offset -> frame length (with frames=True)
    problems: list[str]


def _survey(zoo: Store, referenced: set[str], cutoff: float, index: _RecipeIndex,
            progress: Progress, *, frames: bool) -> _Survey:
    """List packs/ then blobs/ (a recipe can only name packs written before it), then read
    every kept recipe that `index` does not know yet."""
    backend = zoo.backend
    progress.start("list packs", None, unit="objects")
    packs = {}
    for info in backend.list("packs/"):
        if _is_object_key(info.key, "packs"):
            packs[info.key] = info
            progress.advance("list packs")
    progress.done("list packs")
    progress.start("list recipes", None, unit="objects")
    recipes = {}
    for info in backend.list("blobs/"):
        if _is_object_key(info.key, "blobs"):
            recipes[info.key] = info
            progress.advance("list recipes")
    progress.done("list recipes")

    problems = []
    for key in sorted(referenced - recipes.keys()):
        problems.append(f"a retained version lists blob {key.rsplit('/', 1)[-1]} but the store has "
                        f"no recipe {key} (damaged store; its chunks may still be in packs)")
    kept = {k for k, info in recipes.items() if k in referenced or info.mtime >= cutoff}
    remembered = None
    if not frames:  # what an earlier gc on this machine read: only new recipes cost a request
        from zoostore.ops.gc import recipe_cache
        from zoostore.storage.cache import default_cache_dir

        remembered = recipe_cache.cache_file(default_cache_dir(), zoo.url)
        for key, names in recipe_cache.load(remembered, zoo.url, recipes).items():
            if key not in index:  # kept ones, and maybe base recipes of kept ones (_keep_bases)
                index.remember(key, names)
    todo = sorted(k for k in kept if k not in index)
    progress.start("read recipes", len(todo), unit="recipes")
    try:
        with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:
            for problem in pool.map(lambda k: index.read(zoo, k), todo):
                progress.advance("read recipes")
                if problem:
                    problems.append(problem)
    finally:
        progress.done("read recipes")
    _keep_bases(zoo, recipes, kept, index, problems)
    if remembered is not None:
        recipe_cache.save(remembered, zoo.url, recipes, ((k, index.names(k)) for k in kept if k in index))
    live: set[str] = set()
    live_frames: dict[str, dict[int, int]] = {}
    for key in kept:
        live.update(index.packs(key))
        if frames:
            for pack, offset, length in index.frames_of(key):
                live_frames.setdefault(pack, {})[offset] = length
    return _Survey(recipes, packs, referenced, kept, live, live_frames, problems)
