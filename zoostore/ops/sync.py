"""Consumer operations: lock, sync, outdated, fetch.

    {dest}/{model}/{arch}/{path}          files placed by sync (hard links into the cache)
    {dest}/.zoostore-state.json           what sync placed: path -> blob, size, mtime, inode

The no-op path is the common one (every CI build): it reads zoo.toml, zoo.lock and the state
file, stats each file, and stops. It imports neither the storage stack (fsspec, s3fs) nor onnx
nor tvm, and never opens the store. Only files whose stat differs from the state file are
re-examined.

Destination safety: a file is placed through a temp name in its final directory and renamed
over the target, so a crash never leaves a partial file; a directory that resolves outside
`dest` (a symlink planted there) is refused; files sync did not place are never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoostore.documents.project import Project, load_project
from zoostore.core.digest import Digest, hash_file
from zoostore.core.errors import (
    BlobNotFoundError, IntegrityError, LockOutOfDateError, NotFoundError, OfflineError, UsageError,
)
from zoostore.documents.lockfile import Lock, LockedFile, LockedModel
from zoostore.core.progress import NullProgress, Progress

if TYPE_CHECKING:
    from zoostore.storage.cache import Cache
    from zoostore.repository import Store

STATE_NAME = ".zoostore-state.json"
LINK_MODES = ("auto", "hardlink", "copy", "symlink")
#: Files fetched into the cache concurrently by one sync.
SYNC_FILES_IN_FLIGHT = 4


# ---------------------------------------------------------------------------------- lock
@dataclass
class LockResult:
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


def _open_zoo(project: Project) -> Store:
    from zoostore.repository import open_store

    return open_store(project.store_url)


def lock_project(project: Project, *, upgrade: bool | Iterable[str] = False, zoo: Store | None = None,
                 write: bool = True, progress: Progress | None = None) -> LockResult:
    """Resolve every model of `project` and write zoo.lock. Models whose requirement is unchanged
    keep their pinned version unless upgraded (`upgrade=True` for all, or model names)."""
    from zoostore.documents.resolve import select

    progress = progress or NullProgress()
    old = Lock.read(project.lock_path)
    if old is not None and (old.store != project.store or dict(old.runtime) != dict(project.runtime)):
        old = None  # pins from another store or runtime mean nothing here
    upgrade_all = upgrade is True
    upgrade_set = set() if isinstance(upgrade, bool) else set(upgrade)
    unknown = upgrade_set - set(project.models)
    if unknown:
        raise UsageError(f"--upgrade names {sorted(unknown)}, which zoo.toml does not declare; models: {', '.join(sorted(project.models))}")
    zoo = zoo or _open_zoo(project)
    result = LockResult(Lock(store=project.store, runtime=dict(project.runtime)))
    models: dict[str, LockedModel] = {}
    for name, req in sorted(project.models.items()):
        prev = old.models.get(name) if old else None
        keep = (prev is not None and not upgrade_all and name not in upgrade_set
                and (prev.spec, prev.archs, prev.files_filter) == (req.spec, req.archs, req.files))
        manifest = zoo.manifest(name)
        if keep and prev is not None and prev.version in manifest.versions:
            release, warnings = select(manifest, prev.version, runtime=project.runtime, arch=req.archs)
        else:
            release, warnings = select(manifest, req.spec, runtime=project.runtime, arch=req.archs)
        for w in warnings:
            progress.note(w)
        result.warnings.extend(warnings)
        files = []
        for arch in req.archs:
            for path, entry in sorted(release.files_for(arch).items()):
                if req.wants(path):
                    files.append(LockedFile(arch, path, entry.blob, entry.size))
        if not files:
            raise NotFoundError(f"{name}@{release.version}: no file matches {list(req.files)} for {list(req.archs)}; "
                                f"files: {', '.join(sorted(p for a in req.archs for p in release.files_for(a)))}")
        models[name] = LockedModel(name, req.spec, req.archs, req.files, release.version, tuple(files))
        before = prev.version if prev else None
        if before != release.version:
            result.changes.append((name, before, release.version))
    for name in sorted(set(old.models) - set(models) if old else ()):
        result.changes.append((name, old.models[name].version if old else None, None))
    result.lock = Lock(store=project.store, models=models, runtime=dict(project.runtime))
    if write:
        result.written = result.lock.write(project.lock_path)
    return result


# ---------------------------------------------------------------------------------- sync
@dataclass
class SyncReport:
    dest: Path
    placed: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    kept_modified: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0   # stored bytes fetched from the store
    bytes_reused: int = 0       # chunk bytes read from cached older versions instead
    bytes_placed: int = 0
    store_opened: bool = False
    relocked: bool = False
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dest": str(self.dest), "placed": self.placed, "unchanged": self.unchanged,
            "removed": self.removed, "kept_modified": self.kept_modified,
            "bytes_downloaded": self.bytes_downloaded, "bytes_reused": self.bytes_reused,
            "bytes_placed": self.bytes_placed, "store_opened": self.store_opened,
            "relocked": self.relocked, "warnings": self.warnings,
        }


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def _read_state(dest: Path) -> dict[str, dict[str, Any]]:
    try:
        doc = json.loads((dest / STATE_NAME).read_text())
        files = doc.get("files", {})
        return files if isinstance(files, dict) and doc.get("format") == 1 else {}
    except (OSError, ValueError):
        return {}


def _write_state(dest: Path, state: Mapping[str, Mapping[str, Any]]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / f".{STATE_NAME}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"format": 1, "files": dict(sorted(state.items()))}, indent=1))
    os.replace(tmp, dest / STATE_NAME)


def _inside(dest_real: str, directory: Path) -> bool:
    real = os.path.realpath(directory)
    return real == dest_real or real.startswith(dest_real + os.sep)


def _safe_parent(dest: Path, dest_real: str, target: Path) -> None:
    """Create target's parent directories, refusing any that resolve outside dest."""
    rel_parts = target.parent.relative_to(dest).parts
    d = dest
    for part in rel_parts:
        d = d / part
        if d.is_symlink() or (d.exists() and not _inside(dest_real, d)):
            raise UsageError(f"{d} is a symlink or leaves {dest}; sync never writes through it. Remove it and sync again")
        d.mkdir(exist_ok=True)


def _place(cache_file: Path, target: Path, blob: Digest, link: str) -> None:
    tmp = target.with_name(f".{target.name}.zoostore-{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        if link == "symlink":
            os.symlink(cache_file, tmp)
        elif link in ("auto", "hardlink"):
            try:
                os.link(cache_file, tmp)
            except OSError:
                if link == "hardlink":
                    raise UsageError(f"cannot hard-link {cache_file} to {target} (different filesystems?); use --link copy") from None
                link = "copy"
        if link == "copy":
            shutil.copyfile(cache_file, tmp)
            actual = hash_file(tmp)
            if actual != blob:
                raise IntegrityError(f"copy of {cache_file} hashes to {actual}, expected {blob}; the cache is damaged: "
                                     f"delete {cache_file} and sync again", obj=str(cache_file), expected=blob.hex, actual=actual.hex)
            os.chmod(tmp, 0o444)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def sync_project(project: Project, *, locked: bool = False, frozen: bool = False, offline: bool = False,
                 archs: Iterable[str] | None = None, dest: str | os.PathLike[str] | None = None,
                 link: str = "auto", verify: bool = False, cache: Cache | None = None,
                 progress: Progress | None = None) -> SyncReport:
    """Materialise zoo.lock under dest; see the module docstring."""
    if link not in LINK_MODES:
        raise UsageError(f"--link {link!r}: expected one of {', '.join(LINK_MODES)}")
    progress = progress or NullProgress()
    report = SyncReport(dest=Path(dest) if dest else project.dest)
    lock = Lock.read(project.lock_path)
    if frozen:
        if lock is None:
            raise UsageError(f"--frozen needs {project.lock_path}, which does not exist; run 'zoostore lock'")
    else:
        reasons = out_of_date_reasons(project, lock)
        if reasons:
            if locked:
                raise LockOutOfDateError(f"{project.lock_path} is out of date with {project.config_path.name}: "
                                         f"{'; '.join(reasons)}. Run 'zoostore lock' and commit the result")
            if offline:
                raise OfflineError(f"{project.lock_path} is out of date ({'; '.join(reasons)}) and --offline forbids "
                                   f"resolving; run 'zoostore lock' online, or use --frozen")
            lock = lock_project(project, progress=progress).lock
            report.relocked = True
    assert lock is not None

    wanted_archs = None
    if archs:
        from zoostore.core.names import normalize_arch

        wanted_archs = {normalize_arch(a) for a in archs}
    dest_dir = report.dest
    desired: dict[str, tuple[str, str, LockedFile]] = {}  # rel -> (model, version, file)
    for name, m in sorted(lock.models.items()):
        for f in m.files:
            if wanted_archs is None or f.arch in wanted_archs:
                desired[f"{name}/{f.arch}/{f.path}"] = (name, m.version, f)
    if wanted_archs:
        missing = wanted_archs - {f.arch for m in lock.models.values() for f in m.files}
        if missing:
            raise UsageError(f"--arch {', '.join(sorted(missing))}: zoo.lock has no files for it; add it to archs in zoo.toml and lock")

    state = _read_state(dest_dir)
    todo: list[str] = []
    for rel, (_, _, f) in desired.items():
        st = state.get(rel)
        target = dest_dir / rel
        if st is not None and st.get("blob") == str(f.blob):
            try:
                key = _stat_key(target.lstat())
            except OSError:
                key = None
            if key is not None and list(key) == [st.get("size"), st.get("mtime_ns"), st.get("ino")]:
                if not verify or (not target.is_symlink() and hash_file(target) == f.blob) or \
                        (target.is_symlink() and hash_file(target.resolve()) == f.blob):
                    report.unchanged += 1
                    continue
        todo.append(rel)
    stale = [rel for rel in state if rel not in desired]
    if not todo and not stale:
        return report

    from zoostore.storage.cache import Cache

    cache = cache or Cache()
    zoo: Store | None = None
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest_real = os.path.realpath(dest_dir)
    new_state = {rel: st for rel, st in state.items() if rel in desired and rel not in todo}
    try:
        # 1. Which cached files can be trusted? A file we placed before that no longer matches
        #    may have been written through a hard link, damaging the cached copy too.
        needed: dict[Digest, tuple[str, str, bool]] = {}  # blob -> (model, what, suspect)
        for rel in todo:
            name, version, f = desired[rel]
            suspect = verify or rel in state
            prev = needed.get(f.blob)
            needed[f.blob] = (name, f"{name}@{version} {f.arch}/{f.path}", suspect or bool(prev and prev[2]))
        damaged = {b for b, (_, _, suspect) in needed.items()
                   if suspect and cache.has(b) and hash_file(cache.blob_path(b)) != b}
        if not offline and any(not cache.has(b) or b in damaged for b in needed):
            zoo = _open_lock_store(project, lock)
            report.store_opened = True
            _warn_yanked(zoo, lock, report, progress)

        # 2. Fill the cache, a few files at a time: small files are latency-bound, and one
        #    file's decode leaves cores idle while its next segment is fetched.
        def fill(blob: Digest) -> Path:
            name, what, _ = needed[blob]
            try:
                return cache.ensure(zoo.blobs if zoo else None, blob, model=name, progress=progress,
                                    what=what, verify=blob in damaged)
            except BlobNotFoundError:
                raise NotFoundError(f"{what} (blob {blob}) is gone from the store {lock.store}: it was deleted "
                                    f"(gc?) or never published. Run 'zoostore lock --upgrade {name}' to move to a "
                                    f"version the store has") from None

        progress.start("sync files", len(todo), unit="files")
        cached: dict[Digest, Path] = {}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=SYNC_FILES_IN_FLIGHT) as pool:
            for blob, path in zip(needed, pool.map(fill, needed)):
                cached[blob] = path

        # 3. Place, in lock order.
        for rel in todo:
            name, version, f = desired[rel]
            target = dest_dir / rel
            _safe_parent(dest_dir, dest_real, target)
            _place(cached[f.blob], target, f.blob, link)
            new_state[rel] = {"blob": str(f.blob), **dict(zip(("size", "mtime_ns", "ino"), _stat_key(target.lstat())))}
            report.placed.append(rel)
            report.bytes_placed += f.size
            progress.advance("sync files")
        progress.done("sync files")
        for rel in stale:
            st = state[rel]
            target = dest_dir / rel
            try:
                current = list(_stat_key(target.lstat()))
            except OSError:
                continue
            if current == [st.get("size"), st.get("mtime_ns"), st.get("ino")]:
                target.unlink()
                report.removed.append(rel)
                _prune_dirs(dest_dir, target.parent)
            else:
                report.kept_modified.append(rel)
                msg = f"{target} left the lock but was modified after sync placed it; left in place"
                report.warnings.append(msg)
                progress.note(msg)
    finally:
        _write_state(dest_dir, new_state)
        if zoo is not None:
            report.bytes_downloaded = zoo.blobs.stats.bytes_fetched
            report.bytes_reused = zoo.blobs.stats.bytes_local
    return report


def _open_lock_store(project: Project, lock: Lock) -> Store:
    from zoostore.documents.project import resolve_store_url
    from zoostore.repository import open_store

    return open_store(resolve_store_url(lock.store, project.root))


def _warn_yanked(zoo: Store, lock: Lock, report: SyncReport, progress: Progress) -> None:
    for name, m in lock.models.items():
        try:
            release = zoo.manifest(name).versions.get(m.version)
        except FileNotFoundError:
            continue
        if release is not None and release.yanked:
            msg = f"zoo.lock pins {name}@{m.version}, which is yanked: {release.yanked}. Consider 'zoostore lock --upgrade {name}'"
            report.warnings.append(msg)
            progress.note(msg)


def _prune_dirs(dest: Path, d: Path) -> None:
    while d != dest and dest in d.parents:
        try:
            d.rmdir()
        except OSError:
            return
        d = d.parent


# ---------------------------------------------------------------------------------- outdated
@dataclass(frozen=True)
class OutdatedRow:
    model: str
    spec: str
    locked: str | None
    matching: str | None
    newest: str | None


def outdated(project: Project, *, zoo: Store | None = None) -> list[OutdatedRow]:
    from zoostore.core import semver
    from zoostore.core.errors import ResolutionError
    from zoostore.documents.resolve import select

    zoo = zoo or _open_zoo(project)
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
        locked = lock.models[name].version if lock and name in lock.models else None
        rows.append(OutdatedRow(name, req.spec, locked, matching, newest))
    return rows


# ---------------------------------------------------------------------------------- Python API
def _store_for(store: str | None) -> str:
    if store:
        return store
    env = os.environ.get("ZOOSTORE_STORE")
    if env:
        return env
    from zoostore.documents.project import find_project

    found = find_project()
    if found is None:
        raise UsageError("no store given: pass store=..., set ZOOSTORE_STORE, or run inside a project with a zoo.toml")
    return load_project(found).store_url


def fetch(model: str, spec: str = "latest", path: str = "", *, arch: str | None = None,
          store: str | None = None, cache: str | os.PathLike[str] | None = None,
          progress: Progress | None = None) -> Path:
    """The local path of one file of a model version: cached, verified, read-only (like
    `hf_hub_download`). `spec` is a version, range or tag; `arch` defaults to this machine's."""
    from zoostore.storage.cache import Cache
    from zoostore.core.names import host_arch
    from zoostore.documents.resolve import find_file
    from zoostore.repository import open_store

    zoo = open_store(_store_for(store))
    resolved = zoo.resolve(model, spec, arch=arch or host_arch())
    if not path:
        raise UsageError(f"fetch needs a file path; {model}@{resolved.version} ({resolved.arch}) has: "
                         f"{', '.join(sorted(resolved.files))}")
    entry = find_file(resolved, path)
    return Cache(cache).ensure(zoo.blobs, entry.blob, model=model, progress=progress,
                               what=f"{model}@{resolved.version} {resolved.arch}/{path}")


def sync(project: str | os.PathLike[str] | None = None, **options: Any) -> SyncReport:
    """`zoostore sync` from Python: same options as `sync_project`."""
    return sync_project(load_project(project), **options)
