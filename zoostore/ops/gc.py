"""Garbage collection: drop the versions nobody keeps, then delete what no retained version reaches.

    plan = plan_gc(zoo, keep=["yolo@^2"], keep_locks=["old/zoo.lock", "new/zoo.lock"])
    print(plan)                    # versions dropped; recipes, packs and bytes to delete
    result = plan.execute(progress)

Roots and reachability (the store layout is drawn in zoostore.repository):

    manifests/<model>.toml   retained versions ──files──▶ blob ids
    blobs/<aa>/<blob id>     a recipe is kept if a retained version lists it, or if it is younger
                             than the cutoff (a publisher may be about to list it)
    packs/<aa>/<pack id>     a pack is kept if a kept recipe names it, or if it is younger than
                             the cutoff (a publisher may be about to write a recipe naming it)

Retention: without `keep` rules every version stays. A `KeepRule` (`MODEL@RANGE`, `MODEL@TAG`
or bare `MODEL`) and a lockfile's pins narrow only the models they name: for such a model the
versions a rule matches, a lockfile pins, or a tag (explicit, or the implicit `latest`) points at
stay, and the others are dropped from its manifest with compare-and-swap.

Order of a run (the safety argument is in docs/gc.md):
1. `plan_gc` reads the store clock once (`Backend.now`): cutoff = now - grace. It reads every
   manifest, decides the drops, and surveys the store as it would be after them: lists packs/,
   then blobs/, reads every kept recipe. Nothing is changed.
2. `GcPlan.execute` drops the versions (CAS, re-applied to the current manifest, so a tag moved
   meanwhile still protects its version), re-reads every manifest, re-lists packs/ and blobs/,
   reads recipes it has not seen, and deletes only objects that the plan listed and that are
   still unreferenced and older than the cutoff. Right before each delete request it stats the
   candidates again and sends the request within the store's settle time of those stats; a publisher
   that freshened an old object re-checks it the store's settle time later (zoostore.storage.blobs), so a
   delete that raced a freshen is seen before any manifest names the object. Recipes go before
   packs, so a visible recipe's packs exist.
3. `repack` rewrites old packs whose live fraction is below the threshold: live frames are
   copied (each verified) into new packs whose footers carry the file lists of the recipes they
   serve, the old packs are freshened (so they outlive readers holding old recipes by the grace
   period) and the recipes are overwritten to name the new packs. A later run deletes the old
   packs once they are unreferenced and older than the cutoff.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from zoostore.storage import codec

from zoostore.core import semver
from zoostore.storage.backends.base import ObjectInfo
from zoostore.documents.store_config import format_duration
from zoostore.core.digest import Digest
from zoostore.core.errors import (
    FormatError,
    IntegrityError,
    NewerFormatError,
    NotFoundError,
    ObjectNotFoundError,
    ReadOnlyError,
    UsageError,
    ZooError,
)
from zoostore.documents.lockfile import Lock
from zoostore.documents.manifest import Manifest
from zoostore.storage.pack import PackSlot, TRAILER_SIZE, FileList, PackBuilder, footer_span, pack_key, parse_footer
from zoostore.core.spec import ModelSpec
from zoostore.core.progress import NullProgress, Progress
from zoostore.storage.recipe import ChunkRef, Recipe, blob_key
from zoostore.repository import Store

#: Default `--repack-threshold`: rewrite packs less than half live (restic's prune default
#: tolerates 5% unused space overall; per pack, half is the usual "mostly dead" line).
REPACK_THRESHOLD = 0.5
#: Candidates stat-ed and deleted per request: small enough that a batch's stats and its delete
#: fit in the settle window on a slow link; S3 allows 1,000 keys per DeleteObjects.
DELETE_BATCH = 100
#: Concurrent recipe reads and stats (object stores answer in tens of milliseconds).
IO_WORKERS = 16

_HEX = re.compile(r"[0-9a-f]{64}")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


# ---------------------------------------------------------------------------------- retention


@dataclass(frozen=True, slots=True)
class KeepRule:
    """`--keep MODEL@RANGE`: which versions of one model stay. `spec` None keeps every version."""

    model: str
    spec: str | None = None

    @classmethod
    def parse(cls, text: str) -> KeepRule:
        try:
            parsed = ModelSpec.parse(text)
        except UsageError as exc:
            raise UsageError(f"--keep {text!r}: {exc}; expected MODEL@RANGE, e.g. yolo-v2-tiny@^1.2, "
                             f"or MODEL alone for every version") from None
        return cls(parsed.model, parsed.spec if parsed.explicit else None)

    def matches(self, manifest: Manifest) -> set[str]:
        """The versions of `manifest` this rule keeps; a range that matches none, or an unknown
        tag, is a usage error (gc would otherwise drop every untagged version of the model)."""
        if self.spec is None:
            return set(manifest.versions)
        if self.spec == "latest" or self.spec in manifest.tags:
            target = manifest.latest() if self.spec == "latest" else manifest.tags[self.spec]
            return {target} if target else set()
        listed = ", ".join(manifest.sorted_versions()) or "none"
        if not semver.is_range(self.spec):
            tags = ", ".join(sorted(manifest.tags)) or "none"
            raise UsageError(f"--keep {self}: {self.spec!r} is neither a version range nor a tag of "
                             f"{self.model} (tags: {tags}; versions: {listed})")
        found = {v for v in manifest.versions if semver.satisfies(v, self.spec)}
        if not found:
            raise UsageError(
                f"--keep {self} matches no version of {self.model} (versions: {listed}); gc would "
                f"drop every untagged version of it. Check the range (prereleases match only ranges "
                f"that name one), or keep the model whole with --keep {self.model}"
            )
        return found

    def __str__(self) -> str:
        return self.model if self.spec is None else f"{self.model}@{self.spec}"


def pinned_versions(lock_text: str, *, where: str = "zoo.lock") -> dict[str, set[str]]:
    """Model -> the version a `zoo.lock` pins (as a set, so several lockfiles merge)."""
    lock = Lock.loads(lock_text, where=where)
    return {name: {m.version} for name, m in lock.models.items()}


def pinned_blobs(lock_text: str, *, where: str = "zoo.lock") -> set[Digest]:
    """Every blob id a `zoo.lock` names (what `cache prune --keep-lock` keeps)."""
    lock = Lock.loads(lock_text, where=where)
    return {f.blob for m in lock.models.values() for f in m.files}


def read_lock(location: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> str:
    """A lockfile's text from a local path or any fsspec URL."""
    text = os.fspath(location)
    try:
        if _SCHEME.match(text):
            import fsspec

            with fsspec.open(text, "rb", **dict(storage_options or {})) as f:
                data: bytes = f.read()
            return data.decode("utf-8")
        return Path(text).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read lockfile {text}: {exc}") from exc


def _always_retained(m: Manifest) -> set[str]:
    out = {v for v in m.tags.values() if v in m.versions}
    latest = m.latest()
    if latest:
        out.add(latest)
    return out


# ---------------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class DroppedVersion:
    model: str
    version: str
    size: int  # bytes of the files it lists (shared content may stay)

    def __str__(self) -> str:
        return f"{self.model}@{self.version}"


@dataclass(frozen=True, slots=True)
class RepackItem:
    pack: str  # key
    size: int
    live_bytes: int

    @property
    def live_fraction(self) -> float:
        return self.live_bytes / self.size if self.size else 0.0


@dataclass(slots=True)
class GcResult:
    dropped: list[DroppedVersion] = field(default_factory=list)
    recipes_deleted: int = 0
    recipe_bytes: int = 0
    packs_deleted: int = 0
    pack_bytes: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    bytes_written: int = 0
    recipes_rewritten: int = 0
    kept_changed: int = 0  # objects the plan listed that execute kept (used or refreshed meanwhile)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = []
        if self.dropped:
            lines.append(f"dropped {len(self.dropped)} version(s): {', '.join(map(str, self.dropped))}")
        lines.append(f"deleted {self.recipes_deleted} recipe(s) ({_human(self.recipe_bytes)}) and "
                     f"{self.packs_deleted} pack(s) ({_human(self.pack_bytes)})")
        if self.packs_repacked:
            lines.append(f"repacked {self.packs_repacked} pack(s) into {self.packs_written} "
                         f"({_human(self.bytes_written)}), rewrote {self.recipes_rewritten} recipe(s); "
                         f"the old packs go in a run after the grace period")
        if self.kept_changed:
            lines.append(f"kept {self.kept_changed} object(s) the plan listed: they were used or "
                         f"refreshed since it was made")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    __str__ = summary


class GcPlan:
    """What a gc run will do. `str(plan)` lists it; `execute` does it (once)."""

    def __init__(self, zoo: Store, *, now: float, grace: float, drops: Mapping[str, Sequence[DroppedVersion]],
                 recipes: Sequence[ObjectInfo], packs: Sequence[ObjectInfo], repacks: Sequence[RepackItem],
                 repack_threshold: float, kept_recipes: int, kept_packs: int, young_recipes: int,
                 young_packs: int, notes: Sequence[str], problems: Sequence[str], index: _RecipeIndex,
                 repack: bool) -> None:
        self.zoo = zoo
        self.now = now
        self.grace = grace
        self.cutoff = now - grace
        self.drops = {m: tuple(v) for m, v in drops.items() if v}
        self.recipes = tuple(recipes)
        self.packs = tuple(packs)
        self.repacks = tuple(repacks)
        self.repack = repack
        self.repack_threshold = repack_threshold
        self.kept_recipes = kept_recipes
        self.kept_packs = kept_packs
        self.young_recipes = young_recipes
        self.young_packs = young_packs
        self.notes = tuple(notes)
        self.problems = tuple(problems)
        self._index = index
        self._executed = False

    # -- reading the plan
    @property
    def dropped_versions(self) -> list[DroppedVersion]:
        return [d for m in sorted(self.drops) for d in self.drops[m]]

    @property
    def bytes_to_delete(self) -> int:
        return sum(i.size for i in self.recipes) + sum(i.size for i in self.packs)

    @property
    def empty(self) -> bool:
        return not (self.drops or self.recipes or self.packs or self.repacks)

    def summary(self) -> str:
        stamp = dt.datetime.fromtimestamp(self.cutoff, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines = [f"gc plan for {self.zoo.url}: grace {format_duration(self.grace)}, only objects "
                 f"last modified before {stamp} (store clock) can go"]
        dropped = self.dropped_versions
        if dropped:
            lines.append(f"versions to drop ({len(dropped)}):")
            for model in sorted(self.drops):
                listed = ", ".join(f"{d.version} ({_human(d.size)})" for d in self.drops[model])
                lines.append(f"  {model}: {listed}")
        else:
            lines.append("versions to drop: none")
        lines.append(f"recipes to delete: {len(self.recipes)} ({_human(sum(i.size for i in self.recipes))})")
        lines.append(f"packs to delete: {len(self.packs)} ({_human(sum(i.size for i in self.packs))})")
        if self.repack:
            if self.repacks:
                total = sum(r.size for r in self.repacks)
                live = sum(r.live_bytes for r in self.repacks)
                lines.append(f"packs to repack (live < {self.repack_threshold:.0%}): {len(self.repacks)} "
                             f"({_human(total)}, {_human(live)} live to copy; the old packs go in a "
                             f"run after the grace period)")
            else:
                lines.append(f"packs to repack (live < {self.repack_threshold:.0%}): none")
        lines.append(f"kept: {self.kept_recipes} recipes, {self.kept_packs} packs (of which "
                     f"{self.young_recipes} unreferenced recipes and {self.young_packs} unreferenced "
                     f"packs are younger than the grace period)")
        lines.append(f"total to delete: {_human(self.bytes_to_delete)}")
        lines.extend(f"warning: {p}" for p in self.problems)
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self) -> str:
        return (f"GcPlan({self.zoo.url!r}, drops={len(self.dropped_versions)}, recipes={len(self.recipes)}, "
                f"packs={len(self.packs)}, repacks={len(self.repacks)})")

    # -- acting
    def execute(self, progress: Progress | None = None) -> GcResult:
        """Drop, re-read, re-list, delete, repack; see the module docstring for the order."""
        if self._executed:
            raise UsageError("this gc plan was already executed; make a new plan with plan_gc")
        self._executed = True
        progress = progress or NullProgress()
        result = GcResult()
        zoo = self.zoo

        # 1. Drop versions. The change re-reads tags: a tag moved onto a dropped version since
        #    the plan keeps it.
        for model, drops in sorted(self.drops.items()):
            wanted = {d.version for d in drops}
            actually: set[str] = set()

            def change(m: Manifest | None, wanted: set[str] = wanted, actually: set[str] = actually) -> Manifest | None:
                actually.clear()
                if m is None:
                    return None
                drop = (wanted & set(m.versions)) - _always_retained(m)
                actually.update(drop)
                return m.without_versions(drop) if drop else m

            zoo.update_manifest(model, change)
            result.dropped.extend(d for d in drops if d.version in actually)
            if len(actually) < len(wanted):
                kept = sorted(wanted - actually, key=semver.parse_version)
                result.notes.append(f"{model}: kept {', '.join(kept)}: tagged or gone since the plan")

        # 2. Survey the store as it is now: live set from the manifests after the drop, then
        #    listings, then recipes not read yet.
        manifests = _read_manifests(zoo)
        survey = _survey(zoo, _referenced(manifests), self.cutoff, self._index, progress,
                         frames=self.repack)
        problems = list(survey.problems)

        # 3. Recipes first: the plan's candidates that are still unreferenced and old.
        recipe_candidates = [i.key for i in self.recipes
                             if (info := survey.recipes.get(i.key)) is not None
                             and i.key not in survey.kept and info.mtime < self.cutoff]
        deleted, skipped = self._delete_checked(recipe_candidates, "delete recipes", progress, result)
        result.kept_changed += len(self.recipes) - len(deleted)
        result.recipes_deleted = len(deleted)
        result.recipe_bytes = sum(survey.recipes[k].size for k in deleted)
        # A candidate that turned out fresh is kept, and so are its packs.
        extra_live: set[str] = set()
        for key in skipped:
            packs, problem = self._index.packs_of(zoo, key)
            extra_live.update(packs)
            if problem:
                problems.append(problem)

        # 4. Packs: not named by any kept recipe, old, and not about to be repacked.
        if problems:
            result.notes.append("no pack was deleted or repacked because the store has problems "
                                "(see warnings); run 'zoostore verify --repair' first")
            result.notes.extend(problems)
            result.kept_changed += len(self.packs)
            return result
        live = survey.live_packs | extra_live
        pack_candidates = [i.key for i in self.packs
                           if (info := survey.packs.get(i.key)) is not None
                           and i.key not in live and info.mtime < self.cutoff]
        deleted, _ = self._delete_checked(pack_candidates, "delete packs", progress, result)
        result.kept_changed += len(self.packs) - len(deleted)
        result.packs_deleted = len(deleted)
        result.pack_bytes = sum(survey.packs[k].size for k in deleted)

        # 5. Repack.
        if self.repack and self.repacks:
            sources = []
            for item in self.repacks:
                info = survey.packs.get(item.pack)
                if info is None or info.mtime >= self.cutoff:
                    continue
                live_bytes = sum(survey.frames.get(item.pack, {}).values())
                if 0 < live_bytes < self.repack_threshold * info.size:
                    sources.append(info)
            if sources:
                _repack(zoo, sources, survey, self._index, self.cutoff, progress, result)
        return result

    def _delete_checked(self, keys: list[str], task: str, progress: Progress,
                        result: GcResult) -> tuple[list[str], list[str]]:
        """Delete `keys` that a stat right before the request still shows older than the cutoff.
        Returns (deleted, skipped). Each request goes out within the settle window of its stats
        (see the module docstring); a batch whose stats were slow is split and stat-ed again."""
        backend = self.zoo.backend
        deleted: list[str] = []
        skipped: list[str] = []
        progress.start(task, len(keys), unit="objects")

        def stat(key: str) -> ObjectInfo | None:
            try:
                return backend.stat(key)
            except ObjectNotFoundError:
                return None

        def run(batch: list[str], pool: ThreadPoolExecutor) -> None:
            window = self.zoo.config.settle_seconds
            started = time.monotonic()
            infos = list(pool.map(stat, batch))
            if time.monotonic() - started > window / 2:
                if len(batch) > 1:
                    half = len(batch) // 2
                    run(batch[:half], pool)
                    run(batch[half:], pool)
                else:
                    skipped.extend(batch)
                    result.notes.append(f"kept {batch[0]}: stat-ing it took longer than half the "
                                        f"settle window ({window:g} s)")
                return
            old = [k for k, info in zip(batch, infos) if info is not None and info.mtime < self.cutoff]
            skipped.extend(k for k, info in zip(batch, infos) if info is not None and info.mtime >= self.cutoff)
            if old:
                backend.delete(old)
                deleted.extend(old)
            elapsed = time.monotonic() - started
            if elapsed > window:
                result.notes.append(
                    f"a delete request went out {elapsed:.1f} s after its stats, beyond the "
                    f"{window:g} s settle window: a publish racing it may have reused a deleted "
                    f"object; run 'zoostore verify'"
                )
            progress.advance(task, len(batch))

        try:
            with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:
                for start in range(0, len(keys), DELETE_BATCH):
                    run(keys[start : start + DELETE_BATCH], pool)
        finally:
            progress.done(task)
        return deleted, skipped


def plan_gc(
    zoo: Store,
    *,
    keep: Sequence[str | KeepRule] = (),
    keep_locks: Sequence[str | os.PathLike[str]] = (),
    grace: float | None = None,
    repack: bool = False,
    repack_threshold: float = REPACK_THRESHOLD,
    now: float | None = None,
    lock_storage_options: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> GcPlan:
    """Decide what a gc run does, changing nothing. `grace` defaults to the store's (zoostore.toml);
    `now` overrides the store clock (tests)."""
    progress = progress or NullProgress()
    caps = zoo.backend.capabilities
    if not (caps.writes and caps.deletes and caps.listing):
        raise ReadOnlyError(f"{zoo.url} cannot be garbage-collected: gc needs a store it can list, "
                            f"write and delete in (run it on the store's s3:// or local URL)")
    store_grace = zoo.config.grace_seconds
    grace = store_grace if grace is None else float(grace)
    if grace < 0:
        raise UsageError(f"--grace must not be negative, got {grace:g} s")
    if not 0 < repack_threshold <= 1:
        raise UsageError(f"--repack-threshold must be in (0, 1], got {repack_threshold:g}")
    notes: list[str] = []
    if grace < store_grace:
        note = (f"--grace {format_duration(grace)} is shorter than the store's grace period "
                f"{format_duration(store_grace)} (zoostore.toml [gc] grace): this is only safe when "
                f"nobody is publishing to {zoo.url} while gc runs (nor reading it, if an earlier "
                f"'gc --repack' rewrote recipes that readers may still hold)")
        notes.append(note)
        progress.note(note)
    rules = [r if isinstance(r, KeepRule) else KeepRule.parse(r) for r in keep]
    pins: dict[str, set[str]] = {}
    for location in keep_locks:
        text = read_lock(location, storage_options=lock_storage_options)
        for model, versions in pinned_versions(text, where=os.fspath(location)).items():
            pins.setdefault(model, set()).update(versions)

    started = zoo.backend.now() if now is None else float(now)
    cutoff = started - grace
    manifests = _read_manifests(zoo)

    # Which versions go.
    for rule in rules:
        if rule.model not in manifests:
            raise UsageError(f"--keep {rule}: the store has no model {rule.model!r}; models: "
                             f"{', '.join(sorted(manifests)) or 'none'}")
    drops: dict[str, list[DroppedVersion]] = {}
    for model in sorted({r.model for r in rules} | set(pins)):
        m = manifests.get(model)
        if m is None:
            notes.append(f"a lockfile pins {model}, which the store does not have")
            continue
        retained = _always_retained(m)
        for rule in rules:
            if rule.model == model:
                retained |= rule.matches(m)
        pinned = pins.get(model, set())
        gone = sorted(pinned - set(m.versions), key=_version_key)
        if gone:
            notes.append(f"a lockfile pins {model}@{', '.join(gone)}, which the store no longer has")
        retained |= pinned
        drop = [v for v in m.sorted_versions() if v not in retained]
        if drop:
            drops[model] = [DroppedVersion(model, v, m.versions[v].size) for v in drop]
            manifests[model] = m.without_versions(set(drop))

    index = _RecipeIndex(frames=repack)
    survey = _survey(zoo, _referenced(manifests), cutoff, index, progress, frames=repack)
    recipes = [info for key, info in sorted(survey.recipes.items()) if key not in survey.kept]
    problems = list(survey.problems)
    packs: list[ObjectInfo] = []
    repacks: list[RepackItem] = []
    if not problems:
        packs = [info for key, info in sorted(survey.packs.items())
                 if key not in survey.live_packs and info.mtime < cutoff]
        if repack:
            for key, info in sorted(survey.packs.items()):
                live_frames = survey.frames.get(key, {})
                live_bytes = sum(live_frames.values())
                if info.mtime < cutoff and 0 < live_bytes < repack_threshold * info.size:
                    # Only worth it if some frame is dead: a pack of live frames whose footer
                    # is large (tiny chunks) would be rewritten to itself, run after run.
                    if _has_dead_frames(zoo, info, live_frames, notes):
                        repacks.append(RepackItem(key, info.size, live_bytes))
    else:
        notes.append("no pack will be deleted or repacked because of the warnings above; run "
                     "'zoostore verify --repair' first")
    unreferenced_packs = [k for k in survey.packs if k not in survey.live_packs]
    return GcPlan(
        zoo, now=started, grace=grace, drops=drops, recipes=recipes, packs=packs, repacks=repacks,
        repack_threshold=repack_threshold,
        kept_recipes=len(survey.recipes) - len(recipes),
        kept_packs=len(survey.packs) - len(packs),
        young_recipes=sum(1 for k in survey.kept if k not in survey.referenced and k in survey.recipes),
        young_packs=sum(1 for k in unreferenced_packs if survey.packs[k].mtime >= cutoff),
        notes=notes, problems=problems, index=index, repack=repack,
    )


def _has_dead_frames(zoo: Store, info: ObjectInfo, live: Mapping[int, int], notes: list[str]) -> bool:
    try:
        tail = zoo.backend.get_range(info.key, max(0, info.size - TRAILER_SIZE), info.size)
        start, end = footer_span(tail, info.size, where=info.key)
        footer = parse_footer(zoo.backend.get_range(info.key, start, end), where=info.key)
    except (FormatError, ObjectNotFoundError) as exc:
        notes.append(f"not repacking {info.key}: its footer is unreadable ({exc})")
        return False
    return any(e.offset not in live for e in footer.entries)


def _version_key(v: str) -> Any:
    try:
        return (0, semver.parse_version(v))
    except ZooError:
        return (1, v)


# ---------------------------------------------------------------------------------- the survey


def _read_manifests(zoo: Store) -> dict[str, Manifest]:
    """Every manifest. One that does not parse stops gc: its references would be unknown."""
    out = {}
    for model in zoo.models():
        try:
            out[model] = zoo.manifest(model)
        except NotFoundError:
            continue  # deleted while we listed
        except NewerFormatError:
            raise  # "upgrade zoostore" says it all
        except FormatError as exc:
            raise FormatError(f"{exc}; gc cannot tell what this manifest references and deleted "
                              f"nothing: fix or restore it first") from exc
    return out


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
    (pack, offset, frame length). Recipes are immutable per key except for repack (gc itself),
    so a plan's reads stay valid for its execute."""

    def __init__(self, *, frames: bool) -> None:
        self.frames = frames
        self._packs: dict[str, tuple[str, ...]] = {}
        self._frames: dict[str, tuple[tuple[str, int, int], ...]] = {}
        self._names: dict[str, str] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._packs

    def _intern(self, name: str) -> str:
        return self._names.setdefault(name, name)

    def record(self, key: str, recipe: Recipe) -> None:
        self._packs[key] = tuple(self._intern(pack_key(p)) for p in recipe.packs)
        if self.frames:
            self._frames[key] = tuple((self._intern(pack_key(r.pack)), r.offset, r.length)
                                      for r in recipe.chunks)

    def packs(self, key: str) -> tuple[str, ...]:
        return self._packs.get(key, ())

    def frames_of(self, key: str) -> tuple[tuple[str, int, int], ...]:
        return self._frames.get(key, ())

    def read(self, zoo: Store, key: str) -> str | None:
        """Read and record one recipe; returns a problem description, or None."""
        digest = Digest(key.rsplit("/", 1)[-1])
        try:
            recipe = Recipe.decode(digest, zoo.backend.get(key))
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


@dataclass(slots=True)
class _Survey:
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
    live: set[str] = set()
    live_frames: dict[str, dict[int, int]] = {}
    for key in kept:
        live.update(index.packs(key))
        if frames:
            for pack, offset, length in index.frames_of(key):
                live_frames.setdefault(pack, {})[offset] = length
    return _Survey(recipes, packs, referenced, kept, live, live_frames, problems)


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


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


__all__ = ["DroppedVersion", "GcPlan", "GcResult", "KeepRule", "RepackItem", "pinned_blobs",
           "pinned_versions", "plan_gc", "read_lock"]
