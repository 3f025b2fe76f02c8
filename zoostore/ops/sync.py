"""`zoostore sync`: materialise zoo.lock under the project's destination.

    read the lock (relock if zoo.toml moved)  ->  plan: which files differ from the state file
    ->  claim: leave alone what sync did not place (a conflict, unless --force)
    ->  check cached copies (hash unless their verified stamp holds), fetch what is missing
    ->  remove files that left the lock  ->  place files  ->  write the state file
    ->  raise DestinationConflictError naming the conflicts, if any

Placing, the state file and destination safety live in `zoostore.ops.place`; locking in
`zoostore.ops.lock`; checking and filling the cache (small files from a local store in
batches) in `zoostore.ops.sync_fill`.

The no-op path is the common one (every CI build): it reads zoo.toml, zoo.lock and the state
file, stats each file, and stops. It imports neither the storage stack (fsspec, s3fs) nor onnx
nor tvm, and never opens the store. Only files whose stat differs from the state file are
re-examined.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoostore.core.digest import Digest, hash_file
from zoostore.core.errors import (
    BlobNotFoundError, DestinationConflictError, IntegrityError, LockOutOfDateError, NotFoundError, OfflineError,
    UsageError, ZooError,
)
from zoostore.core.progress import NullProgress, Progress
from zoostore.core.records import dataclass
from zoostore.documents.project import DEFAULT_LAYOUT, Project, load_project
from zoostore.ops import sync_fast
from zoostore.ops.place import (
    LINK_MODES, State, already_placed, clear_target, owned, place_file, read_state, remove_placed, remove_stale_temps,
    resolves_inside, safe_parent, state_entry, unchanged_since, write_state,
)

if TYPE_CHECKING:
    from zoostore.documents.lockfile import Lock
    from zoostore.ops.sync_fill import Need
    from zoostore.ops.sync_paths import Wanted
    from zoostore.repository import Store
    from zoostore.storage.cache import Cache

@dataclass
class SyncReport:
    """What a sync did: files placed, unchanged, removed, left alone and why, and the bytes fetched."""

    dest: Path
    placed: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    kept_modified: list[str] = field(default_factory=list)
    conflicts: dict[str, str] = field(default_factory=dict)  # path -> why it was left alone
    replaced: list[str] = field(default_factory=list)   # paths --force replaced
    ignored: list[str] = field(default_factory=list)    # invalid state-file or lockfile entries
    bytes_downloaded: int = 0   # stored bytes fetched from the store
    bytes_reused: int = 0       # chunk bytes read from the cache (older versions, partial downloads) instead
    bytes_placed: int = 0
    store_opened: bool = False
    relocked: bool = False
    locked: list[str] = field(default_factory=list)  # "model old -> new" when sync re-locked
    warnings: list[str] = field(default_factory=list)
    layout: str = DEFAULT_LAYOUT   # zoo.toml's, for tools that find files (the CMake module)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": str(self.dest), "placed": self.placed, "unchanged": self.unchanged,
            "removed": self.removed, "kept_modified": self.kept_modified,
            "conflicts": self.conflicts, "replaced": self.replaced, "ignored": self.ignored,
            "bytes_downloaded": self.bytes_downloaded, "bytes_reused": self.bytes_reused,
            "bytes_placed": self.bytes_placed, "store_opened": self.store_opened,
            "relocked": self.relocked, "locked": self.locked, "warnings": self.warnings,
            "layout": self.layout,
        }


def sync_project(project: Project, *, locked: bool = False, frozen: bool = False, offline: bool | None = None,
                 archs: Iterable[str] | None = None, dest: str | os.PathLike[str] | None = None,
                 link: str = "auto", verify: bool = False, force: bool = False, cache: Cache | None = None,
                 progress: Progress | None = None) -> SyncReport:
    """Materialise zoo.lock under dest; see the module docstring. A path that holds something
    sync did not place is left alone and, once everything else is placed, raises
    DestinationConflictError naming it; `force` replaces such files instead. `offline` (default:
    $ZOOSTORE_OFFLINE) never contacts the store."""
    from zoostore.core.offline import offline_requested

    offline = offline_requested(offline)
    if link not in LINK_MODES:
        raise UsageError(f"--link {link!r}: expected one of {', '.join(LINK_MODES)}")
    progress = progress or NullProgress()
    report = SyncReport(dest=Path(dest) if dest else project.dest, layout=str(project.layout))
    state = read_state(report.dest)
    archs = list(archs) if archs else None
    if not verify:
        count = sync_fast.unchanged(project, report.dest, state, archs=archs, frozen=frozen, link=link)
        if count is not None:
            report.unchanged = count
            return report
    from zoostore.ops.sync_paths import desired_paths  # here: the no-op sync above never needs it

    lock, lock_hash, checked = _current_lock(project, locked=locked, frozen=frozen, offline=offline, report=report,
                                             progress=progress)
    desired, bad = desired_paths(lock, archs, project.layout)
    _ignore(report, bad, progress)
    _ignore(report, state.ignored, progress)
    todo = _changed(report.dest, desired, state.files, verify=verify, report=report, link=link)
    stale = [rel for rel in state.files if rel not in desired]
    plan = _Plan(lock, desired, todo, stale, state, sync_fast.record(project, lock_hash, archs, up_to_date=checked))
    if not todo and not stale:
        if state.ignored or (state.lock != plan.record and not report.ignored):
            # forget ignored entries (reported once); remember the lock for the next no-op
            write_state(report.dest, state.files, lock=None if report.ignored else plan.record)
        return report
    _execute(project, plan, report, cache=cache, offline=offline, link=link, force=force, verify=verify,
             progress=progress)
    _raise_conflicts(report)
    return report


@dataclass(frozen=True)
class _Plan:
    """What a sync that has something to do works from."""

    lock: Lock
    desired: dict[str, Wanted]
    todo: list[str]             # paths to (re)place
    stale: list[str]            # paths sync placed that left the lock
    state: State                # the state file as read
    record: dict[str, str]      # what the new state file is the placement of, if it is exact (sync_fast)


def _execute(project: Project, plan: _Plan, report: SyncReport, *, cache: Cache | None, offline: bool, link: str,
             force: bool, verify: bool, progress: Progress) -> None:
    """Claim, fetch what the cache lacks, remove stale files, place, write the state file."""
    from zoostore.ops.cache_users import register_dest
    from zoostore.ops.sync_fill import check_cache, fill_cache, refill_gone
    from zoostore.storage.cache import UNSTAMPED, Cache

    desired, state = plan.desired, plan.state
    cache = cache or Cache()
    todo = _claim(report, desired, plan.todo, state, force=force, link=link, cache=cache, progress=progress)
    zoo: Store | None = None
    report.dest.mkdir(parents=True, exist_ok=True)
    register_dest(cache, report.dest)
    new_state = {rel: st for rel, st in state.files.items() if rel in desired and rel not in todo
                 and rel not in report.conflicts}
    try:
        needed = _needs(desired, todo, verify=verify)
        missing = check_cache(cache, needed, lambda msg: _warn(report, msg, progress))
        if not offline:
            zoo = _store_for(project, plan.lock, report, progress, data=bool(missing))
        progress.start("sync files", len(todo), unit="files")
        sizes: dict[Digest, int] = {}
        cached = fill_cache(cache, zoo, needed, missing, lock=plan.lock, progress=progress, sizes=sizes)
        # ensure() and put_small() stamped what they fetched; sync's hard links change ctime, so
        # each stamp is written again below, in place (small files have none: `Cache.check`
        # hashes them instead)
        stamped = [blob for blob in cached if needed[blob].size > UNSTAMPED]
        fetched = {blob: cache.stat_key(blob) for blob in stamped if blob in missing}
        # Stale files go before placing: a path that was a directory may now be a file.
        _remove_stale(report, state.files, plan.stale, progress)
        gone = _place_all(report, desired, todo, cached, sizes, new_state, link=link, force=force, progress=progress)
        if gone:   # `zoostore cache prune` removed cached files between the fill and their placing
            refill_gone(cache, needed, gone, lambda: zoo or (None if offline else _open_lock_store(
                project, plan.lock, progress, quick=False)), lambda rels, paths: _place_all(
                report, desired, rels, paths, {}, new_state, link=link, force=force, progress=progress),
                lock=plan.lock, progress=progress)
        for blob in stamped:   # a hard link changed ctime, not the bytes
            cache.stamp(blob, relinked=True, since=fetched.get(blob))
        progress.done("sync files")
    finally:
        exact = not report.ignored and not report.conflicts and new_state.keys() == desired.keys() and all(
            new_state[rel]["blob"] == str(w.file.blob) for rel, w in desired.items())
        write_state(report.dest, new_state, lock=plan.record if exact else None)
        if zoo is not None:
            report.bytes_downloaded = zoo.blobs.stats.bytes_fetched
            report.bytes_reused = zoo.blobs.stats.bytes_local


def _warn(report: SyncReport, msg: str, progress: Progress) -> None:
    report.warnings.append(msg)
    progress.note(msg)


def _ignore(report: SyncReport, entries: Iterable[str], progress: Progress) -> None:
    for entry in entries:
        msg = f"ignored {entry}; sync neither deletes nor writes through it"
        report.ignored.append(entry)
        report.warnings.append(msg)
        progress.note(msg)


def _claim(report: SyncReport, desired: Mapping[str, Wanted], todo: list[str], state: State, *,
           force: bool, link: str, cache: Cache, progress: Progress) -> list[str]:
    """The paths of `todo` that sync may (re)place: what is there is absent, sync's own (see
    `place.owned`), or replaced by `force`. The others become conflicts, left alone. A file
    that the state file does not list but that is already placed (`place.already_placed`)
    joins `state` as it is."""
    mine = []
    base = f"{report.dest}{os.sep}"
    for rel in todo:
        entry = state.files.get(rel)
        if entry is None and _absent(base + rel):
            mine.append(rel)   # `owned` says so too; a cold sync of thousands of files asks only this
            continue
        file = desired[rel].file
        # never through a symlinked directory: placing there is refused (`safe_parent`)
        if entry is None and resolves_inside(report.dest, rel) and (kept := already_placed(
                base + rel, file.blob, file.size, link, cache.blob_path(file.blob))) is not None:
            state.files[rel] = kept
            report.unchanged += 1
            continue
        blobs = [desired[rel].file.blob]
        if entry is not None and _is_digest(entry["blob"]):
            blobs.append(Digest.parse(entry["blob"]))
        if owned(report.dest / rel, entry, tuple(blobs)):
            mine.append(rel)
        elif force:
            why = "a file modified since sync placed it" if entry is not None else "a file sync did not place"
            msg = f"{report.dest / rel}: replaced {why} (--force)"
            report.replaced.append(rel)
            report.warnings.append(msg)
            progress.note(msg)
            mine.append(rel)
        else:
            report.conflicts[rel] = "sync did not place this file, or it was modified since"
    return mine


def _absent(path: str) -> bool:
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    return False


def _is_digest(text: str) -> bool:
    try:
        Digest.parse(text)
    except ValueError:
        return False
    return True


def _raise_conflicts(report: SyncReport) -> None:
    if not report.conflicts:
        return
    items = [f"{rel} ({why})" for rel, why in report.conflicts.items()]
    shown = "; ".join(items[:10]) + (f"; and {len(items) - 10} more" if len(items) > 10 else "")
    raise DestinationConflictError(
        f"sync left {len(report.conflicts)} path(s) in {report.dest} alone: {shown}. Every other file was placed. "
        f"Move them away and sync again, or run 'zoostore sync --force' to replace them (a directory is never "
        f"replaced)", paths=list(report.conflicts))


def _current_lock(project: Project, *, locked: bool, frozen: bool, offline: bool, report: SyncReport,
                  progress: Progress) -> tuple[Lock, str, bool]:
    """zoo.lock, re-locked first when it is out of date with zoo.toml (unless --locked,
    --offline or --frozen say otherwise); with the BLAKE3 of its bytes (`sync_fast`) and
    whether it is up to date with zoo.toml (not known with --frozen)."""
    from zoostore.documents.lockfile import Lock
    from zoostore.ops.lock import lock_project, out_of_date_reasons

    try:
        data: bytes | None = project.lock_path.read_bytes()
    except FileNotFoundError:
        data = None
    lock = None if data is None else Lock.from_bytes(data, where=str(project.lock_path))
    if frozen:
        if lock is None or data is None:
            raise UsageError(f"--frozen needs {project.lock_path}, which does not exist; run 'zoostore lock'")
        return lock, sync_fast.lock_digest(data), False
    reasons = out_of_date_reasons(project, lock)
    if not reasons:
        assert lock is not None and data is not None
        return lock, sync_fast.lock_digest(data), True
    if locked:
        raise LockOutOfDateError(f"{project.lock_path} is out of date with {project.config_path.name}: "
                                 f"{'; '.join(reasons)}. Run 'zoostore lock' and commit the result")
    if offline:
        raise OfflineError(f"{project.lock_path} is out of date ({'; '.join(reasons)}) and --offline forbids "
                           f"resolving; run 'zoostore lock' online, or use --frozen")
    report.relocked = True
    result = lock_project(project, progress=progress)
    report.locked = [f"{name} {old or '(new)'} -> {new or '(removed)'}" for name, old, new in result.changes]
    return result.lock, sync_fast.lock_digest(result.lock.dumps().encode("utf-8")), True


def _changed(dest: Path, desired: Mapping[str, Wanted], state: Mapping[str, Mapping[str, Any]], *,
             verify: bool, report: SyncReport, link: str = "auto") -> list[str]:
    """The files to place: those whose state entry is missing, names another blob, or whose
    stat changed (or, with verify, whose content no longer hashes to the blob), and with `link`
    other than auto, those placed the other way (a symlink where copies or hard links are asked)."""
    todo: list[str] = []
    for rel, w in desired.items():
        st = state.get(rel)
        if st is None:
            todo.append(rel)
            continue
        target = dest / rel
        if (st.get("blob") == str(w.file.blob) and unchanged_since(target, st)
                and (link == "auto" or target.is_symlink() == (link == "symlink"))):
            if not verify or hash_file(target.resolve() if target.is_symlink() else target) == w.file.blob:
                report.unchanged += 1
                continue
        todo.append(rel)
    return todo


def _needs(desired: Mapping[str, Wanted], todo: list[str], *, verify: bool) -> dict[Digest, Need]:
    from zoostore.ops.sync_fill import Need

    needed: dict[Digest, Need] = {}
    for rel in todo:
        w = desired[rel]
        needed[w.file.blob] = Need(w.model, w.what, verify, w.file.size)
    return needed


def _place_all(report: SyncReport, desired: Mapping[str, Wanted], todo: list[str], cached: Mapping[Digest, Path],
               sizes: Mapping[Digest, int], new_state: dict[str, Any], *, link: str, force: bool,
               progress: Progress) -> dict[str, Digest]:
    """Place the files, in lock order, recording each in the new state as it lands; a path
    whose directories hold something sync did not place becomes a conflict. Returns the paths
    (and blobs) whose cached file vanished before it was placed (a concurrent `cache prune`). A hard link to
    an absent target is made first (`place_file` does the same, but this loop over string
    paths is most of placing thousands of small files); anything else goes to `place_file`.
    `sizes`: files the fill just wrote and verified, whose size need not be read again."""
    cleaned = {str(report.dest)}   # directories made safe (once per sync: thousands of files share a few)
    remove_stale_temps(report.dest)  # a killed sync's state-file temp
    base = f"{report.dest}{os.sep}"
    gone: dict[str, Digest] = {}
    for rel in todo:
        f = desired[rel].file
        target = base + rel
        source = cached[f.blob]
        try:
            if (parent := os.path.dirname(target)) not in cleaned:
                safe_parent(report.dest, Path(target), force=force)
                cleaned.add(parent)
                remove_stale_temps(Path(parent))  # a killed sync's partial files
            if sizes.get(f.blob) != f.size and (actual := os.stat(source).st_size) != f.size:
                raise IntegrityError(f"{rel}: zoo.lock says {f.size} bytes but blob {f.blob} holds {actual}: the "
                                     f"lock or the manifest it came from is wrong; run 'zoostore lock --upgrade' "
                                     f"and 'zoostore verify' on the store", obj=str(f.blob))
            if link == "copy" or link == "symlink" or not _linked(source, target):
                clear_target(Path(target))
                place_file(source, Path(target), f.blob, link)
        except DestinationConflictError as exc:
            report.conflicts[rel] = str(exc)
            progress.advance("sync files")
            continue
        except FileNotFoundError as exc:
            if isinstance(exc, ZooError) or os.path.exists(source):
                raise
            gone[rel] = f.blob
            continue
        new_state[rel] = state_entry(target, f.blob)
        report.placed.append(rel)
        report.bytes_placed += f.size
        progress.advance("sync files")
    return gone


def _linked(source: Path, target: str) -> bool:
    """A hard link at target, if nothing is there (link(2) never follows or replaces a name)."""
    try:
        os.link(source, target)
    except OSError:
        return False
    return True


def _remove_stale(report: SyncReport, state: Mapping[str, Mapping[str, Any]], stale: list[str],
                  progress: Progress) -> None:
    """Remove files sync placed that left the lock; modified ones stay, with a warning. An entry
    whose directory resolves outside dest (a symlink planted there) is ignored and reported."""
    for rel in stale:
        target = report.dest / rel
        if not resolves_inside(report.dest, rel):
            _ignore(report, [f"state entry {rel!r}: its directory resolves outside {report.dest}"], progress)
            continue
        removed = remove_placed(report.dest, target, state[rel])
        if removed:
            report.removed.append(rel)
        elif removed is False:
            report.kept_modified.append(rel)
            msg = f"{target} left the lock but was modified after sync placed it; left in place"
            report.warnings.append(msg)
            progress.note(msg)


#: Attempts per request when sync opens the store only for the yank check (every file cached): a
#: store that is down then costs a warning within a moment, not the ~16 s a download may wait.
YANK_CHECK_ATTEMPTS = 3


def _open_lock_store(project: Project, lock: Lock, progress: Progress, *, quick: bool = False) -> Store:
    """The store of the lock (with --frozen, zoo.toml's may differ), by find_store_url's rule;
    `quick`: with YANK_CHECK_ATTEMPTS unless the user chose `max_attempts` (any layer)."""
    from dataclasses import replace

    from zoostore.ops.lock import open_project_store

    project = replace(project, store=lock.store)
    if quick and "max_attempts" not in project.store_options and not os.environ.get("ZOOSTORE_MAX_ATTEMPTS"):
        # Under zoo.toml's options: $ZOOSTORE_STORE_OPTIONS and --store-option still win.
        project = replace(project, store_options={**project.store_options, "max_attempts": YANK_CHECK_ATTEMPTS})
    return open_project_store(project, progress)


def _store_for(project: Project, lock: Lock, report: SyncReport, progress: Progress, *, data: bool) -> Store | None:
    """The lock's store, opened whenever sync places files: for the chunks the cache lacks
    (`data`), and in any case to warn about pins that were yanked since zoo.lock was written.
    When only the yank check needs it, an unreachable store is a warning, not a failure."""
    from zoostore.core.errors import ZooError

    try:
        zoo = _open_lock_store(project, lock, progress, quick=not data)
        _warn_yanked(zoo, lock, report, progress)
    except ZooError as exc:
        if data:
            raise
        msg = f"could not check zoo.lock's pins for yanked versions ({exc}); placed the files from the cache"
        report.warnings.append(msg)
        progress.note(msg)
        return None
    report.store_opened = data
    return zoo


def _warn_yanked(zoo: Store, lock: Lock, report: SyncReport, progress: Progress) -> None:
    names = sorted(lock.models)
    if zoo.url.startswith("file:"):   # nothing to wait for: threads would only add their start-up
        found = [zoo.pin_status(n, lock.models[n].version) for n in names]
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8) as pool:  # one GET per model: in parallel on remote stores
            found = list(pool.map(lambda n: zoo.pin_status(n, lock.models[n].version), names))
    for name, status in zip(names, found):
        if status is None:
            continue
        version, (kind, detail) = lock.models[name].version, status
        if kind == "yanked":
            msg = f"zoo.lock pins {name}@{version}, which is yanked: {detail}. {_yanked_advice(zoo, lock, name)}"
        else:
            has = f"its versions: {detail}" if detail else "the model is not in it"
            msg = (f"zoo.lock pins {name}@{version}, which the store does not list ({has}; gc dropped it, or "
                   f"zoo.lock was edited): its files are placed by the blob ids zoo.lock pins; run 'zoostore "
                   f"lock' to pin a version the store has")
        report.warnings.append(msg)
        progress.note(msg)


def _yanked_advice(zoo: Store, lock: Lock, name: str) -> str:
    """What to do about a yanked pin: the upgrade, when the range holds another version (else
    `lock --upgrade` would only fail: no version matches)."""
    from zoostore.core.errors import ResolutionError, ZooError
    from zoostore.documents.resolve import select

    pinned = lock.models[name]
    upgrade = f"Consider 'zoostore lock --upgrade {name}'"
    try:
        other = select(zoo.manifest(name), pinned.spec, runtime=lock.runtime, arch=list(pinned.archs))[0].version
    except ResolutionError:
        other = None
    except ZooError:
        return upgrade   # advice only: a failing read must not fail the sync
    if other is None or other == pinned.version:   # an exact pin may still name the yanked version
        return (f"No other version matches {pinned.spec!r}: change {name}'s range in zoo.toml, then run "
                f"'zoostore lock'")
    return f"{upgrade} (to {other})"


def sync(project: str | os.PathLike[str] | None = None, **options: Any) -> SyncReport:
    """`zoostore sync` from Python: same options as `sync_project`."""
    return sync_project(load_project(project), **options)
