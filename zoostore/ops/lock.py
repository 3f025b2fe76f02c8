"""Resolving a project into zoo.lock (`zoostore lock`), checking a lock against its project, and
`zoostore outdated`.

Light at import: sync's no-op path calls `out_of_date_reasons`, so the store and the resolver are
imported only by the functions that open a store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field
from typing import TYPE_CHECKING

from zoostore.core.errors import NotFoundError, UsageError
from zoostore.core.progress import NullProgress, Progress
from zoostore.core.records import dataclass
from zoostore.documents.lockfile import Lock, LockedFile, LockedModel
from zoostore.documents.project import STORE_ENV, Project, resolve_store_url

if TYPE_CHECKING:
    from zoostore.documents.manifest import Release
    from zoostore.repository import Store


@dataclass
class LockResult:
    """What `lock` resolved: the lock, each model's change (old and new version), warnings, whether written."""

    lock: Lock
    changes: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # model, old, new
    warnings: list[str] = field(default_factory=list)
    written: bool = False


def out_of_date_reasons(project: Project, lock: Lock | None) -> list[str]:
    """Why `lock` does not match `project` (empty: up to date)."""
    if lock is None:
        return [f"{project.lock_path.name} does not exist"]
    reasons = []
    if lock.store != project.store:
        reasons.append(f"store changed: lock has {lock.store!r}, zoo.toml has {project.store!r}")
    if dict(lock.runtime) != dict(project.runtime):
        reasons.append(f"[runtime] changed: lock has {dict(lock.runtime)}, zoo.toml has {dict(project.runtime)}")
    for name in sorted(set(project.models) | set(lock.models)):
        req, got = project.models.get(name), lock.models.get(name)
        if got is None:
            reasons.append(f"{name} is in zoo.toml but not locked")
        elif req is None:
            reasons.append(f"{name} is locked but no longer in zoo.toml")
        elif (req.spec, req.archs, req.files) != (got.spec, got.archs, got.files_filter):
            reasons.append(f"{name}: requirement changed ({got.spec!r} {list(got.archs)} -> {req.spec!r} {list(req.archs)})")
    return reasons


def open_project_store(project: Project, progress: Progress | None = None) -> Store:
    """The store `project` reads (see `find_store_url`), noting when $ZOOSTORE_STORE redirects
    it away from the store zoo.toml declares."""
    from zoostore.core.errors import StoreNotFoundError
    from zoostore.repository import open_store

    url = project.store_url
    declared = url == resolve_store_url(project.store, project.root)
    if progress is not None and not declared:
        progress.note(f"reading {url} (${STORE_ENV}) instead of {project.store} (zoo.toml)")
    try:
        return open_store(url, default_options=dict(project.store_options) if declared else None)
    except StoreNotFoundError as exc:
        # A consumer does not create the store: say where its URL came from instead.
        source = f"store = {project.store!r} in {project.root / 'zoo.toml'}" if declared else f"${STORE_ENV}"
        raise StoreNotFoundError(
            f"no zoostore store at {url} ({source}): check the URL (a typo, a store not created or "
            f"not mounted yet), or ask the store's maintainer; a maintainer creates one with "
            f"'zoostore init {url}'") from exc


def lock_project(project: Project, *, upgrade: bool | Iterable[str] = False, zoo: Store | None = None,
                 write: bool = True, progress: Progress | None = None) -> LockResult:
    """Resolve every model of `project` and write zoo.lock. Models whose requirement is unchanged
    keep their pinned version unless upgraded (`upgrade=True` for all, or model names)."""
    progress = progress or NullProgress()
    old = Lock.read(project.lock_path)
    if old is not None and (old.store != project.store or dict(old.runtime) != dict(project.runtime)):
        old = None  # pins from another store or runtime mean nothing here
    upgrade_all = upgrade is True
    upgrade_set = set() if isinstance(upgrade, bool) else set(upgrade)
    unknown = upgrade_set - set(project.models)
    if unknown:
        raise UsageError(f"--upgrade names {sorted(unknown)}, which zoo.toml does not declare; models: {', '.join(sorted(project.models))}")
    zoo = zoo or open_project_store(project, progress)
    result = LockResult(Lock(store=project.store, runtime=dict(project.runtime)))
    models: dict[str, LockedModel] = {}
    for name, req in sorted(project.models.items()):
        prev = old.models.get(name) if old else None
        keep = (prev is not None and not upgrade_all and name not in upgrade_set
                and (prev.spec, prev.archs, prev.files_filter) == (req.spec, req.archs, req.files))
        release = _choose(project, zoo, name, prev.version if keep and prev else None, result, progress)
        models[name] = _locked_model(project, name, release)
        before = prev.version if prev else None
        if before != release.version:
            result.changes.append((name, before, release.version))
    for name in sorted(set(old.models) - set(models) if old else ()):
        result.changes.append((name, old.models[name].version if old else None, None))
    result.lock = Lock(store=project.store, models=models, runtime=dict(project.runtime))
    if write:
        result.written = result.lock.write(project.lock_path)
    return result


def _choose(project: Project, zoo: Store, name: str, pinned: str | None, result: LockResult,
            progress: Progress) -> Release:
    """The release to lock: the pinned version while the store still has it, else the spec's."""
    from zoostore.core.names import ANY
    from zoostore.documents.resolve import select

    req = project.models[name]
    manifest = zoo.manifest(name)
    spec = pinned if pinned is not None and pinned in manifest.versions else req.spec
    release, warnings = select(manifest, spec, runtime=project.runtime, arch=req.archs)
    for a in req.archs:
        if a != ANY and a not in release.files and set(release.files) - {ANY}:
            warnings = [*warnings, f"{name}@{release.version} has no files of its own for {a} (it has "
                        f"{', '.join(release.archs)}); a consumer on {a} gets only its architecture-independent files"]
    for w in warnings:
        progress.note(w)
    result.warnings.extend(warnings)
    return release


def _locked_model(project: Project, name: str, release: Release) -> LockedModel:
    req = project.models[name]
    files = [LockedFile(arch, path, entry.blob, entry.size)
             for arch in req.archs for path, entry in sorted(release.files_for(arch).items()) if req.wants(path)]
    if not files:
        raise NotFoundError(f"{name}@{release.version}: no file matches {list(req.files)} for {list(req.archs)}; "
                            f"files: {', '.join(sorted(p for a in req.archs for p in release.files_for(a)))}")
    return LockedModel(name, req.spec, req.archs, req.files, release.version, tuple(files))


# ---------------------------------------------------------------------------------- outdated
@dataclass(frozen=True)
class OutdatedRow:
    """One model in `zoostore outdated`: its spec, locked version, newest matching and newest overall."""

    model: str
    spec: str
    locked: str | None
    matching: str | None
    newest: str | None
    #: The lock pinned this model under another requirement than zoo.toml's (edited since the
    #: last `zoostore lock`): `locked` may be outside `spec`; plain `zoostore lock` re-pins it.
    stale: bool = False
    #: The locked version is not in the store's manifest (gc dropped it, or zoo.lock was edited):
    #: plain `zoostore lock` re-pins it.
    unlisted: bool = False


def outdated(project: Project, *, zoo: Store | None = None) -> list[OutdatedRow]:
    """Per model: the locked version, the newest its spec allows, and the newest overall."""
    from zoostore.core import semver
    from zoostore.core.errors import ResolutionError
    from zoostore.documents.resolve import select

    zoo = zoo or open_project_store(project)
    lock = Lock.read(project.lock_path)
    rows = []
    for name, req in sorted(project.models.items()):
        m = zoo.manifest(name)
        try:
            matching: str | None = select(m, req.spec, runtime=project.runtime, arch=req.archs)[0].version
        except ResolutionError:
            matching = None
        alive = [v for v, r in m.versions.items() if not r.yanked]
        newest = max(alive, key=semver.parse_version) if alive else None
        got = lock.models.get(name) if lock else None
        locked = got.version if got else None
        stale = got is not None and (req.spec, req.archs, req.files) != (got.spec, got.archs, got.files_filter)
        rows.append(OutdatedRow(name, req.spec, locked, matching, newest, stale,
                                unlisted=locked is not None and locked not in m.versions))
    return rows
