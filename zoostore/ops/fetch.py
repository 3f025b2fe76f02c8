"""`zoostore.fetch` and `fetch_version`: a model version's files as local paths (cached,
verified), under their own names.

    <cache>/blobs/<hex>                                               the verified file
    <cache>/snapshots/<store key>/<model>/<version>/<arch>/<path>     hard link to it (what is returned)

A snapshot directory holds the files of one version for one consumer arch (the arch's own
files and the `any` ones) that were fetched so far; `fetch_version` fetches all of them.
"""

from __future__ import annotations

import os
import posixpath
import stat
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoostore.core.errors import UsageError
from zoostore.core.progress import Progress
from zoostore.core.records import dataclass

if TYPE_CHECKING:
    from zoostore.core.digest import Digest
    from zoostore.documents.manifest import FileEntry, Manifest
    from zoostore.documents.resolve import Resolved
    from zoostore.storage.blobs import BlobStore
    from zoostore.storage.cache import Cache
    from zoostore.storage.local_index import LocalIndex


from zoostore.core.offline import OFFLINE_ENV, offline_requested  # noqa: E402 - re-exported


def fetch(model: str, spec: str = "latest", path: str = "", *, arch: str | None = None,
          store: str | None = None, cache: str | os.PathLike[str] | None = None, offline: bool | None = None,
          progress: Progress | None = None, storage_options: dict[str, Any] | None = None) -> Path:
    """The local path of one file of a model version: cached, verified, read-only (like
    `hf_hub_download`). `model` may be `MODEL@SPEC` (then `spec` must be left at its default);
    `spec` is a version, range or tag; `arch` defaults to this machine's. The store is found by
    `zoostore.documents.project.find_store`: `store`, else $ZOOSTORE_STORE, else zoo.toml (with
    its `[store_options]`); `storage_options` go to the store's backend over those.
    `offline` (default: $ZOOSTORE_OFFLINE) never contacts the store: the spec is resolved
    against the manifest as the last online fetch of this model read it, and the file must be
    cached; else OfflineError names what is missing.

    The path is `<cache>/snapshots/<store key>/<model>/<version>/<arch>/<path>`: the file under
    its own name (a hard link to the verified cached blob), in a directory where the version's
    other files appear as they are fetched too, so `deploy_lib.so` loads with TVM and
    `model.onnx` finds its external data. `fetch_version` fetches them all."""
    from zoostore.documents.resolve import find_file

    where = _locate(model, spec, arch=arch, store=store, cache=cache, offline=offline,
                    storage_options=storage_options)
    resolved = where.resolved
    if not path:
        raise UsageError(f"fetch needs a file path; {resolved.model}@{resolved.version} ({resolved.arch}) has: "
                         f"{', '.join(sorted(resolved.files))} (fetch_version fetches them all)")
    entry = find_file(resolved, path)
    what = f"{resolved.model}@{resolved.version} {resolved.arch}/{path}"
    blob = _cached_verified(where.cache, where.blobs, entry.blob, model=resolved.model, what=what, progress=progress)
    return _link(where.cache, blob, entry, where.directory, path, resolved.files)


@dataclass(frozen=True)
class Snapshot:
    """A version's files for one arch, fetched and linked under their own names."""

    directory: Path
    model: str
    version: str
    arch: str
    files: Mapping[str, FileEntry]


def fetch_version(model: str, spec: str = "latest", *, arch: str | None = None, store: str | None = None,
                  cache: str | os.PathLike[str] | None = None, offline: bool | None = None,
                  progress: Progress | None = None, storage_options: dict[str, Any] | None = None) -> Path:
    """The snapshot directory of a whole version for `arch` (its own files and the `any`
    ones), every file fetched and verified: `snapshot_version(...).directory`. The options are
    those of `fetch` (like huggingface_hub's `snapshot_download`)."""
    return _snapshot(model, spec, arch=arch, store=store, cache=cache, offline=offline,
                     progress=progress, storage_options=storage_options).directory


def snapshot_version(model: str, spec: str = "latest", *, arch: str | None = None, store: str | None = None,
                     cache: str | os.PathLike[str] | None = None, offline: bool | None = None,
                     progress: Progress | None = None,
                     storage_options: dict[str, Any] | None = None) -> Snapshot:
    """`fetch_version`, with what was resolved (`zoostore get` prints it). Offline, every file
    must be cached; an OfflineError names all that are not."""
    return _snapshot(model, spec, arch=arch, store=store, cache=cache, offline=offline,
                     progress=progress, storage_options=storage_options)


def _snapshot(model: str, spec: str, *, arch: str | None, store: str | None,
              cache: str | os.PathLike[str] | None, offline: bool | None, progress: Progress | None,
              storage_options: dict[str, Any] | None) -> Snapshot:
    """`snapshot_version`, called by it and by `fetch_version` at one depth (warnings name
    the caller's line)."""
    from zoostore.core.errors import OfflineError

    where = _locate(model, spec, arch=arch, store=store, cache=cache, offline=offline,
                    storage_options=storage_options, stacklevel=4, whole=True)
    r, files = where.resolved, where.cache
    if where.blobs is None:
        missing = sorted(p for p, e in r.files.items() if not files.has(e.blob))
        if missing:
            raise OfflineError(f"offline (--offline or ${OFFLINE_ENV}): {r.model}@{r.version} ({r.arch}) has "
                               f"{len(missing)} file(s) not in the cache {files.root}: {', '.join(missing)}; "
                               f"fetch them once online (without --offline, ${OFFLINE_ENV} unset)")
    index = files.local_index()
    for path, entry in sorted(r.files.items()):
        what = f"{r.model}@{r.version} {r.arch}/{path}"
        blob = _cached_verified(files, where.blobs, entry.blob, model=r.model, what=what, progress=progress,
                                index=index)
        _link(files, blob, entry, where.directory, path, r.files)
    where.directory.mkdir(parents=True, exist_ok=True)   # a version with no files for this arch
    return Snapshot(where.directory, r.model, r.version, r.arch, r.files)


@dataclass(frozen=True)
class _Located:
    """A resolved version with the cache, the store's blobs (None offline) and its snapshot folder."""

    resolved: Resolved
    cache: Cache
    blobs: BlobStore | None   # None: offline
    directory: Path           # the version's snapshot directory


def _locate(model: str, spec: str, *, arch: str | None, store: str | None,
            cache: str | os.PathLike[str] | None, offline: bool | None,
            storage_options: dict[str, Any] | None, stacklevel: int = 3, whole: bool = False) -> _Located:
    """Parse `MODEL[@SPEC]`, find the store and its manifest (online or cached), resolve.
    The resolution's warnings (a yanked exact version, newer versions skipped) are warned, as
    lock and zoo:// do; `stacklevel` makes them name the public caller's line. For a `whole`
    version an arch neither known nor published is refused (a file's fetch says "check the
    arch" when the file is not among the `any` ones)."""
    from zoostore.core.names import host_arch, normalize_arch
    from zoostore.core.spec import LATEST, ModelSpec
    from zoostore.documents.project import find_store
    from zoostore.documents.resolve import resolve
    from zoostore.storage.cache import Cache

    parsed = ModelSpec.parse(model)
    if parsed.explicit and spec != LATEST:
        raise UsageError(f"fetch({model!r}, {spec!r}): the spec is given twice; pass either "
                         f"{model!r} or ({parsed.model!r}, {spec!r})")
    if parsed.explicit:
        spec = parsed.spec
    # A known arch or alias (amd64 -> x86_64); an unusual one from a manifest is kept, but it
    # must look like an arch: it becomes a directory name.
    explicit_arch = arch
    arch = normalize_arch(arch, allow_new=True) if arch is not None else host_arch()
    (url, defaults), files = find_store(store), Cache(cache)
    manifest, blobs = _manifest(files, url, parsed.model, spec, offline=offline_requested(offline),
                                storage_options=storage_options, default_options=defaults)
    resolved = resolve(manifest, spec, arch=arch)
    if whole and explicit_arch is not None:
        _refuse_unknown_arch(explicit_arch, arch, manifest.versions[resolved.version].files, parsed.model, resolved.version)
    for note in resolved.warnings:
        warnings.warn(note, UserWarning, stacklevel=stacklevel)
    directory = files.snapshot_dir(url, parsed.model, resolved.version, resolved.arch)
    return _Located(resolved, files, blobs, directory)


def _refuse_unknown_arch(given: str, arch: str, archs: Iterable[str], model: str, version: str) -> None:
    """UsageError for an arch that is neither known nor one this version was published for: a
    typo (`x86`) would otherwise get the version's `any` files alone, a model missing its
    libraries, and exit 0. `publish --arch` and `sync --arch` refuse it the same way."""
    from zoostore.core.names import KNOWN_ARCHS, normalize_arch

    has = sorted(a for a in archs if a != "any")
    if arch in KNOWN_ARCHS or arch in has:
        return
    normalize_arch(given, new_hint=(f"{model}@{version} has files for {', '.join(has)} (and 'any')" if has
                                    else f"{model}@{version} has only 'any' files"))


def needs_own_inode(path: str, files: Iterable[str]) -> bool:
    """Whether `path` must be a file of its own (a copy) rather than a hard link to the cache:
    a non-`.onnx` file at or below the folder of an `.onnx` file of the same version may be
    that model's external data, and onnx (seen with 1.23) refuses external data with more than
    one hard link, or a symlink, as a possible "hardlink attack" (onnx/checker.cc). Naming
    decides, so that fetching one file never needs to read another."""
    if path.endswith(".onnx"):
        return False
    parent = posixpath.dirname(path)
    for other in files:
        if other.endswith(".onnx"):
            folder = posixpath.dirname(other)
            if not folder or parent == folder or parent.startswith(folder + "/"):
                return True
    return False


def _link(cache: Cache, cached: Path, entry: FileEntry, directory: Path, path: str,
          files: Iterable[str]) -> Path:
    """directory/path as a hard link to the verified cached file, or a verified copy where
    linking fails or `needs_own_inode`; made through a temp name and a rename, and kept when
    it already is that link (same inode) or that copy (same size and bytes: hashed, as a copy
    has no stamp)."""
    from zoostore.core.digest import hash_file
    from zoostore.ops.place import clear_target, place_file, safe_parent

    target = directory / path
    copy = needs_own_inode(path, files)
    try:
        st = target.lstat()
        if os.path.samefile(target, cached) and not copy:
            return target
        if (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size == entry.size
                and hash_file(target) == entry.blob):
            return target   # a copy made earlier (by choice, or where linking failed)
    except OSError:
        pass
    directory.mkdir(parents=True, exist_ok=True)
    # The snapshot tree is zoostore's own: a file where a directory belongs is replaced.
    safe_parent(directory, target, force=True)
    clear_target(target)
    place_file(cached, target, entry.blob, "copy" if copy else "auto")
    cache.stamp(entry.blob, relinked=True)   # a link changed the cached file's ctime, nothing else
    return target


def _manifest(cache: Cache, url: str, model: str, spec: str, *, offline: bool,
              storage_options: dict[str, Any] | None = None,
              default_options: dict[str, Any] | None = None) -> tuple[Manifest, BlobStore | None]:
    """The model's manifest and the store's blobs: read from the store (and its copy kept in
    the cache), or offline the cached copy and no blobs."""
    from zoostore.core.errors import OfflineError
    from zoostore.documents.manifest import Manifest
    from zoostore.repository import open_store

    if offline:
        text = cache.cached_manifest(url, model)
        if text is None:
            raise OfflineError(f"offline (--offline or ${OFFLINE_ENV}): cannot resolve {model}@{spec}: the cache "
                               f"{cache.root} holds no manifest of {model} from {url} (no online fetch of it on this "
                               f"machine yet). Fetch it once online (without --offline, ${OFFLINE_ENV} unset)")
        return Manifest.parse(text, where=f"{url.rstrip('/')}/manifests/{model}.toml (cached copy)"), None
    zoo = open_store(url, storage_options=storage_options, default_options=default_options)
    manifest = zoo.manifest(model)
    cache.save_manifest(url, model, manifest.to_toml())
    return manifest, zoo.blobs


def _cached_verified(cache: Cache, blobs: BlobStore | None, blob: Digest, *, model: str, what: str,
                     progress: Progress | None, index: LocalIndex | None = None) -> Path:
    """The cached file for `blob`, checked before it is returned (`Cache.check`: hashed unless
    its verified stamp holds); a damaged one is dropped, fetched again, and warned about."""
    found = cache.check(blob)
    if found == "damaged":
        msg = (f"the cached file for {what} ({cache.blob_path(blob)}) no longer hashes to {blob}: "
               f"dropped it and fetching it again")
        if progress is not None:
            progress.note(msg)
        else:
            warnings.warn(msg, UserWarning, stacklevel=3)
    return cache.ensure(blobs, blob, model=model, progress=progress, what=what, index=index)   # stamps what it fetches


def copy_snapshot(snapshot: Snapshot, dest: str | os.PathLike[str], *, force: bool = False) -> list[str]:
    """Copy a fetched version's files to `dest/<path>` (read-only, each hashed again before it
    appears, through a temp name); returns the paths copied. A file already there with the
    same bytes is left as it is. Any other file or symlink at a wanted path is a
    DestinationConflictError naming them all, raised before anything is written, unless
    `force`; a directory holding files is never replaced."""
    from zoostore.core.digest import hash_file
    from zoostore.core.errors import DestinationConflictError
    from zoostore.ops.place import clear_target, place_file, safe_parent

    root = Path(dest)
    todo: list[str] = []
    conflicts: list[str] = []
    for path, entry in sorted(snapshot.files.items()):
        target = root / path
        if target.is_symlink() or target.is_file():
            if not target.is_symlink() and hash_file(target) == entry.blob:
                continue
            if not force:
                conflicts.append(str(target))
                continue
        todo.append(path)
    if conflicts:
        raise DestinationConflictError(
            f"{len(conflicts)} file(s) in {root} differ from {snapshot.model}@{snapshot.version} ({snapshot.arch}) "
            f"and were left alone: {', '.join(conflicts)}; remove them, or pass --force to replace them",
            paths=conflicts)
    root.mkdir(parents=True, exist_ok=True)
    for path in todo:
        target = root / path
        safe_parent(root, target, force=force)
        clear_target(target)
        place_file(snapshot.directory / path, target, snapshot.files[path].blob, "copy")
    return todo
