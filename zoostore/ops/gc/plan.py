"""gc plan and execute: decide what to drop and delete (nothing changes), then act on a
fresh look at the store (docs/gc.md has the safety argument; the package docstring the order)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from zoostore.core import semver
from zoostore.storage.backends.base import ObjectInfo
from zoostore.documents.store_config import format_duration
from zoostore.core.errors import ConflictError, FormatError, ObjectNotFoundError, ReadOnlyError, UsageError, ZooError
from zoostore.documents.manifest import Manifest
from zoostore.storage.packcheck import fetch_footer
from zoostore.core.progress import NullProgress, Progress
from zoostore.repository import Store
from zoostore.core.units import human_bytes
from zoostore.ops.gc.retention import KeepRule, _always_retained, pinned_versions, read_lock
from zoostore.ops.gc.results import DroppedVersion, GcResult, RepackItem
from zoostore.ops.gc.survey import IO_WORKERS, _RecipeIndex, _Survey, _read_manifests, _referenced, _survey
from zoostore.ops.gc.repack import _repack
from zoostore.ops.gc.leftovers import delete_leftovers, describe, find_leftovers
from zoostore.ops.gc.deletes import delete_checked


#: Default `--repack-threshold`: rewrite packs less than half live (restic's prune default
#: tolerates 5% unused space overall; per pack, half is the usual "mostly dead" line).
REPACK_THRESHOLD = 0.5




class GcPlan:
    """What a gc run will do. `str(plan)` lists it; `execute` does it (once)."""

    #: Stale leftovers of killed writers to delete (ops.gc.leftovers); set by plan_gc.
    leftovers: tuple[ObjectInfo, ...] = ()
    #: The manifests the plan drops versions from, as it read them, with their CAS tokens: the
    #: drop's first compare-and-swap tries them (a changed manifest only costs a conflict and a
    #: re-read); set by plan_gc.
    read: Mapping[str, tuple[Manifest, str]] = {}
    #: The plan's own survey (listings, kept recipes, live packs); execute acts on it instead of
    #: listing again when the manifests after the drop reference nothing it did not (set by plan_gc).
    surveyed: _Survey | None = None

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
        return not (self.drops or self.recipes or self.packs or self.repacks or self.leftovers)

    def summary(self) -> str:
        stamp = dt.datetime.fromtimestamp(self.cutoff, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines = [f"gc plan for {self.zoo.url}: grace {format_duration(self.grace)}, only objects "
                 f"last modified before {stamp} (store clock) can go"]
        dropped = self.dropped_versions
        if dropped:
            lines.append(f"versions to drop ({len(dropped)}):")
            for model in sorted(self.drops):
                listed = ", ".join(f"{d.version} ({human_bytes(d.size)})" for d in self.drops[model])
                lines.append(f"  {model}: {listed}")
        else:
            lines.append("versions to drop: none")
        lines.append(f"recipes to delete: {len(self.recipes)} ({human_bytes(sum(i.size for i in self.recipes))})")
        lines.append(f"packs to delete: {len(self.packs)} ({human_bytes(sum(i.size for i in self.packs))})")
        if self.repack:
            if self.repacks:
                total = sum(r.size for r in self.repacks)
                live = sum(r.live_bytes for r in self.repacks)
                lines.append(f"packs to repack (live < {self.repack_threshold:.0%}): {len(self.repacks)} "
                             f"({human_bytes(total)}, {human_bytes(live)} live to copy; the old packs go in a "
                             f"run after the grace period)")
            else:
                lines.append(f"packs to repack (live < {self.repack_threshold:.0%}): none")
        lines.append(f"kept: {self.kept_recipes} recipes, {self.kept_packs} packs (of which "
                     f"{self.young_recipes} unreferenced recipes and {self.young_packs} unreferenced "
                     f"packs are younger than the grace period)")
        if self.leftovers:
            lines.append(f"to delete: {describe(self.leftovers)}")
        lines.append(f"total to delete: {human_bytes(self.bytes_to_delete)}")
        lines.extend(f"warning: {p}" for p in self.problems)
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    __str__ = summary

    def __repr__(self) -> str:
        return (f"GcPlan({self.zoo.url!r}, drops={len(self.dropped_versions)}, recipes={len(self.recipes)}, "
                f"packs={len(self.packs)}, repacks={len(self.repacks)})")

    # -- acting
    def execute(self, progress: Progress | None = None) -> GcResult:
        """Drop, re-read, re-list, delete, repack; see the package docstring for the order."""
        if self._executed:
            raise UsageError("this gc plan was already executed; make a new plan with plan_gc")
        self._executed = True
        progress = progress or NullProgress()
        result = GcResult()
        result.leftovers_deleted, result.leftover_bytes = delete_leftovers(self.zoo, self.leftovers, grace=self.grace,
                                                                             now=self.now)
        written = self._drop_versions(result)
        # The live set from the manifests after the drop (the ones the drop just wrote need no
        # second read: each is the model's state at its CAS, after the cutoff was taken, which
        # is all the safety argument asks of the re-read).
        referenced = _referenced(_read_manifests(self.zoo, known=written))
        survey = self._unchanged_survey(referenced) or _survey(
            self.zoo, referenced, self.cutoff, self._index, progress, frames=self.repack)
        problems = list(survey.problems)
        extra_live = self._delete_recipes(survey, problems, progress, result)
        if problems:
            result.notes.append("no pack was deleted or repacked because the store has problems "
                                "(see warnings); run 'zoostore verify --repair' first")
            result.notes.extend(problems)
            result.kept_changed += len(self.packs)
            return result
        self._delete_packs(survey, survey.live_packs | extra_live, progress, result)
        if self.repack and self.repacks:
            sources = [info for item in self.repacks
                       if (info := survey.packs.get(item.pack)) is not None and info.mtime < self.cutoff
                       and 0 < sum(survey.frames.get(item.pack, {}).values()) < self.repack_threshold * info.size]
            if sources:
                _repack(self.zoo, sources, survey, self._index, self.cutoff, progress, result)
        return result

    def _unchanged_survey(self, referenced: set[str]) -> _Survey | None:
        """The plan's survey, if it still holds: the manifests reference no blob it did not
        (the drop went as planned, nothing committed since names a new blob) and there is no
        repack (which needs every frame as it is now). What changed since its listings is what
        in-flight publishers wrote or freshened (a pack a publisher wrote and found already
        stored counts as reused: it freshens that too), and the look before each delete covers
        that as it covers what they write after a fresh listing (docs/gc.md, "Listing once")."""
        plan = self.surveyed
        if plan is None or self.repack or plan.problems or not referenced <= plan.referenced:
            return None
        return plan

    def _drop_versions(self, result: GcResult) -> dict[str, Manifest]:
        """Drop the planned versions (CAS). The change re-reads tags: a tag moved onto a dropped
        version since the plan keeps it. Returns each model's manifest as the CAS left it."""
        def drop(model: str) -> tuple[set[str], Manifest | None]:
            wanted = {d.version for d in self.drops[model]}
            actually: set[str] = set()

            def change(m: Manifest | None) -> Manifest | None:
                actually.clear()
                if m is None:
                    return None
                dropping = (wanted & set(m.versions)) - _always_retained(m)
                actually.update(dropping)
                return m.drop_versions(dropping) if dropping else m

            after = self.zoo.update_manifest(model, change, current=self.read.get(model))
            return actually, after

        models = sorted(self.drops)
        written: dict[str, Manifest] = {}
        with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:  # one CAS per model, independent
            futures = [pool.submit(drop, model) for model in models]
        failed: BaseException | None = None
        for model, future in zip(models, futures):
            try:
                actually, after = future.result()
            except ConflictError as exc:  # the CAS gave up: this model keeps every version (safe)
                result.notes.append(f"{model}: no version dropped ({exc}); run gc again")
                continue
            except BaseException as exc:  # re-raised below, after every model's outcome is counted
                failed = failed or exc
                continue
            if after is not None:
                written[model] = after
            drops = self.drops[model]
            result.dropped.extend(d for d in drops if d.version in actually)
            if len(actually) < len(drops):
                kept = sorted({d.version for d in drops} - actually, key=semver.parse_version)
                result.notes.append(f"{model}: kept {', '.join(kept)}: tagged or gone since the plan")
        if failed is not None:
            raise failed
        return written

    def _delete_recipes(self, survey: _Survey, problems: list[str], progress: Progress,
                        result: GcResult) -> set[str]:
        """Recipes first: the plan's candidates still unreferenced and old. Returns the packs
        of candidates that turned out fresh (they stay)."""
        candidates = [i.key for i in self.recipes
                      if (info := survey.recipes.get(i.key)) is not None
                      and i.key not in survey.kept and info.mtime < self.cutoff]
        # Base recipes (of recipes stored as edits) go after the recipes that name them, and stay
        # when one of those stays: a publisher reusing it freshened its base too (docs/gc.md).
        bases = _bases_of(self.zoo, self._index, candidates) if self.zoo.config.recipe_edits else set()
        deleted, skipped = self._delete_checked([k for k in candidates if k not in bases], "delete recipes",
                                                progress, result, prefix="blobs/", listed=len(survey.recipes))
        held = {b for k in skipped if (b := self._index.base(k)) is not None}
        more, skipped_bases = self._delete_checked([k for k in candidates if k in bases and k not in held],
                                                   "delete recipes", progress, result,
                                                   prefix="blobs/", listed=len(survey.recipes))
        deleted += more
        skipped += skipped_bases + sorted(held & bases)
        result.kept_changed += len(self.recipes) - len(deleted)
        result.recipes_deleted = len(deleted)
        result.recipe_bytes = sum(survey.recipes[k].size for k in deleted)
        extra_live: set[str] = set()
        for key in skipped:
            packs, problem = self._index.packs_of(self.zoo, key)
            extra_live.update(packs)
            if problem:
                problems.append(problem)
        return extra_live

    def _delete_packs(self, survey: _Survey, live: set[str], progress: Progress, result: GcResult) -> None:
        """Packs not named by any kept recipe, old, and not about to be repacked."""
        candidates = [i.key for i in self.packs
                      if (info := survey.packs.get(i.key)) is not None
                      and i.key not in live and info.mtime < self.cutoff]
        deleted, _ = self._delete_checked(candidates, "delete packs", progress, result,
                                          prefix="packs/", listed=len(survey.packs))
        result.kept_changed += len(self.packs) - len(deleted)
        result.packs_deleted = len(deleted)
        result.pack_bytes = sum(survey.packs[k].size for k in deleted)

    def _delete_checked(self, keys: list[str], task: str, progress: Progress, result: GcResult, *,
                        prefix: str, listed: int) -> tuple[list[str], list[str]]:
        """Delete `keys` that a look (stat or listing) right before the request still shows
        older than the cutoff. Returns (deleted, kept because fresh); see ops.gc.deletes."""
        done = delete_checked(self.zoo.backend, keys, prefix=prefix, listed=listed, cutoff=self.cutoff,
                              window=self.zoo.config.settle_seconds, task=task, progress=progress,
                              result=result)
        return done.deleted, done.fresh


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
    notes: list[str] = []
    grace = _check_arguments(zoo, grace, repack_threshold, notes, progress)
    rules = [r if isinstance(r, KeepRule) else KeepRule.parse(r) for r in keep]
    pins = _lock_pins(keep_locks, lock_storage_options)
    started = zoo.backend.now() if now is None else float(now)
    cutoff = started - grace
    tokens: dict[str, tuple[Manifest, str]] = {}
    manifests = _read_manifests(zoo, tokens=tokens)
    drops = _drops(manifests, rules, pins, notes)

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
            repacks = _repack_candidates(zoo, survey, cutoff, repack_threshold, notes)
    else:
        notes.append("no pack will be deleted or repacked because of the warnings above; run "
                     "'zoostore verify --repair' first")
    unreferenced_packs = [k for k in survey.packs if k not in survey.live_packs]
    plan = GcPlan(
        zoo, now=started, grace=grace, drops=drops, recipes=recipes, packs=packs, repacks=repacks,
        repack_threshold=repack_threshold,
        kept_recipes=len(survey.recipes) - len(recipes),
        kept_packs=len(survey.packs) - len(packs),
        young_recipes=sum(1 for k in survey.kept if k not in survey.referenced and k in survey.recipes),
        young_packs=sum(1 for k in unreferenced_packs if survey.packs[k].mtime >= cutoff),
        notes=notes, problems=problems, index=index, repack=repack,
    )
    plan.leftovers = tuple(find_leftovers(zoo, grace=grace, now=started))
    plan.read = {m: tokens[m] for m in drops if m in tokens}
    plan.surveyed = survey
    return plan


def _check_arguments(zoo: Store, grace: float | None, repack_threshold: float, notes: list[str],
                     progress: Progress) -> float:
    """The grace period this run uses; refuses stores gc cannot clean and bad arguments, and
    warns when the grace is shorter than the store's."""
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
    if grace < store_grace:
        note = (f"--grace {format_duration(grace)} is shorter than the store's grace period "
                f"{format_duration(store_grace)} (zoostore.toml [gc] grace): this is only safe when "
                f"nobody is publishing to {zoo.url} while gc runs (nor reading it, if an earlier "
                f"'gc --repack' rewrote recipes that readers may still hold)")
        notes.append(note)
        progress.note(note)
    return grace


def _lock_pins(keep_locks: Sequence[str | os.PathLike[str]],
               storage_options: Mapping[str, Any] | None) -> dict[str, set[str]]:
    """Model -> versions any of the lockfiles pins."""
    pins: dict[str, set[str]] = {}
    for location in keep_locks:
        text = read_lock(location, storage_options=storage_options)
        for model, versions in pinned_versions(text, where=os.fspath(location)).items():
            pins.setdefault(model, set()).update(versions)
    return pins


def _drops(manifests: dict[str, Manifest], rules: Sequence[KeepRule], pins: Mapping[str, set[str]],
           notes: list[str]) -> dict[str, list[DroppedVersion]]:
    """The versions that go, per model; `manifests` becomes the store as it is after the drops."""
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
    return drops


def _repack_candidates(zoo: Store, survey: _Survey, cutoff: float, threshold: float,
                       notes: list[str]) -> list[RepackItem]:
    """Old packs less than `threshold` live that have a dead frame."""
    out = []
    for key, info in sorted(survey.packs.items()):
        live_frames = survey.frames.get(key, {})
        live_bytes = sum(live_frames.values())
        if info.mtime < cutoff and 0 < live_bytes < threshold * info.size:
            # Only worth it if some frame is dead: a pack of live frames whose footer
            # is large (tiny chunks) would be rewritten to itself, run after run.
            if _has_dead_frames(zoo, info, live_frames, notes):
                out.append(RepackItem(key, info.size, live_bytes))
    return out


def _has_dead_frames(zoo: Store, info: ObjectInfo, live: Mapping[int, int], notes: list[str]) -> bool:
    try:
        footer = fetch_footer(zoo.backend, info.key, info.size)
    except (FormatError, ObjectNotFoundError) as exc:
        notes.append(f"not repacking {info.key}: its footer is unreadable ({exc})")
        return False
    return any(e.offset not in live for e in footer.entries)


def _bases_of(zoo: Store, index: _RecipeIndex, keys: list[str]) -> set[str]:
    """Which of `keys` some recipe among them is stored as edits of (reads those not read yet)."""
    with ThreadPoolExecutor(max_workers=IO_WORKERS) as pool:
        list(pool.map(lambda k: index.packs_of(zoo, k), [k for k in keys if k not in index]))
    return {b for k in keys if (b := index.base(k)) is not None} & set(keys)


def _version_key(v: str) -> Any:
    try:
        return (0, semver.parse_version(v))
    except ZooError:
        return (1, v)
