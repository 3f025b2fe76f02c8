"""ZooFileSystem: the read-only `zoo://` fsspec filesystem (the path grammar and the reading
rules are in the package docstring, `zoostore.zoofs`)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fsspec.callbacks import DEFAULT_CALLBACK, Callback
from fsspec.spec import AbstractFileSystem
from fsspec.utils import isfilelike

from zoostore.core.atomic import atomic_writer
from zoostore.core.digest import Digest
from zoostore.core.errors import IntegrityError, NotFoundError, OfflineError, ResolutionError
from zoostore.documents.manifest import FileEntry, Manifest, Release
from zoostore.documents.resolve import select
from zoostore.core.offline import OFFLINE_ENV
from zoostore.repository import Store, open_store
from zoostore.storage.cache import Cache
from zoostore.storage.recipe import Recipe
from zoostore.zoofs.file import ZooFile
from zoostore.zoofs.instances import AcrossProcesses, _ZooCached
from zoostore.zoofs.paths import (ZooPath, dir_info, file_info, listing, missing_file, read_only_error,
                                  version_info)
from zoostore.zoofs.reading import LocalReader, ReaderPool, VersionKept, chunk_runs, range_args, span, stream
from zoostore.zoofs.readonly import ReadOnlyMixin

__all__ = ["ZooFileSystem"]

#: Seconds a manifest (and the model list) is reused before it is read again. Manifests are
#: mutable (new versions, tags, yanks); a short reuse keeps one glob or one `get` consistent
#: and cheap without hiding a publish for long. `invalidate_cache()` forgets them at once.
DEFAULT_MANIFEST_TTL = 30.0
#: Recipes an instance keeps decoded (a 1 GB file's recipe is about 850 KB); cached files kept open.
RECIPES_KEPT, READERS_KEPT = 256, 8

class ZooFileSystem(ReadOnlyMixin, AcrossProcesses, AbstractFileSystem, metaclass=_ZooCached):  # type: ignore[misc]
    """Read-only `zoo://` filesystem; see the package docstring for the path grammar.

    Storage options (all keyword-only):
      store          the store: path, fsspec URL or an opened `Store`; default: discovered
      store_options  options for the store's backend (endpoint_url, region, profile, anon,
                     s3fs arguments, HTTP headers, ...; zoostore.storage.options)
      cache          local cache directory; default $ZOOSTORE_CACHE or ~/.cache/zoostore;
                     False reads whole files straight from the store (still verified)
      manifest_ttl   seconds a manifest is reused (default 30); 0 re-reads on every call
      offline        never contact the store (default: $ZOOSTORE_OFFLINE): cache only
    """

    protocol = "zoo"
    root_marker = ""

    def __init__(self, *, store: str | Store, store_options: Mapping[str, Any] | None = None,
                 cache: str | bool = True, manifest_ttl: float = DEFAULT_MANIFEST_TTL,
                 store_defaults: Mapping[str, Any] | None = None, offline: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._store_arg = store
        self._store_options = dict(store_options or {})
        self._store_defaults = dict(store_defaults or {})
        self._zoo: Store | None = store if isinstance(store, Store) else None
        self.cache: Cache | None = None if cache is False else Cache(str(cache))
        self.manifest_ttl = float(manifest_ttl)
        self.offline = bool(offline)
        self._lock = threading.Lock()
        self._manifests: dict[str, tuple[float, Manifest]] = {}
        self._models: tuple[float, list[str]] | None = None
        self._warned: set[str] = set()
        self._recipes: OrderedDict[Digest, Recipe] = OrderedDict()
        self._readers = ReaderPool(READERS_KEPT)

    # ------------------------------------------------------------------ store and manifests
    @property
    def zoo(self) -> Store:
        """The opened store, opened on first use."""
        if self.offline:   # also when given a Store object: offline never reads the store
            raise OfflineError(f"zoo:// is offline (offline=True or ${OFFLINE_ENV}); a model listing or an uncached "
                               f"file needs the store {self.store_url}: read it once online (offline=False, "
                               f"${OFFLINE_ENV} unset)")
        if self._zoo is None:
            with self._lock:
                if self._zoo is None:
                    zoo = open_store(str(self._store_arg), storage_options=self._store_options or None,
                                     default_options=self._store_defaults or None)
                    assert isinstance(zoo, Store)
                    self._zoo = zoo
        return self._zoo

    @property
    def store_url(self) -> str:  # as given, never what opening made of it: it keys the cached manifests
        return self._store_arg.url if isinstance(self._store_arg, Store) else str(self._store_arg)

    def __repr__(self) -> str:
        return f"ZooFileSystem(store={self.store_url!r})"

    def invalidate_cache(self, path: str | None = None) -> None:
        """Forget cached manifests (all of them, or the model of `path`) and the model list."""
        with self._lock:
            self._models = None
            if path is None:
                self._manifests.clear()
                return
            model = ZooPath.parse(self._strip_protocol(path)).model
            if model is None:
                self._manifests.clear()
            else:
                self._manifests.pop(model, None)

    def _fresh(self, stamp: float) -> bool:
        return time.monotonic() - stamp < self.manifest_ttl

    def models(self) -> list[str]:
        with self._lock:
            cached = self._models
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        names = self.zoo.models()
        with self._lock:
            self._models = (time.monotonic(), names)
        return names

    def manifest(self, model: str) -> Manifest:
        with self._lock:
            cached = self._manifests.get(model)
        if cached is not None and self._fresh(cached[0]):
            return cached[1]
        manifest = self._offline_manifest(model) if self.offline else self.zoo.manifest(model)
        if self.cache is not None and not self.offline:
            self.cache.save_manifest(self.store_url, model, manifest.to_toml())
        with self._lock:
            self._manifests[model] = (time.monotonic(), manifest)
        return manifest

    def _offline_manifest(self, model: str) -> Manifest:
        text = self.cache.cached_manifest(self.store_url, model) if self.cache is not None else None
        if text is None:
            raise OfflineError(f"zoo:// is offline (offline=True or ${OFFLINE_ENV}): the cache holds no manifest "
                               f"of {model} from {self.store_url} (never read online on this machine); read it "
                               f"once online (offline=False, ${OFFLINE_ENV} unset)")
        return Manifest.parse(text, where=f"{self.store_url.rstrip('/')}/manifests/{model}.toml (cached copy)")

    def _release(self, zp: ZooPath) -> Release:
        """The release a path's spec picks (for its arch, when it names one)."""
        assert zp.model is not None and zp.spec is not None
        manifest = self.manifest(zp.model)
        try:
            release, notes = select(manifest, zp.spec, arch=zp.arch)
        except ResolutionError as exc:
            # fsspec callers test for FileNotFoundError; the message already lists what exists.
            raise NotFoundError(f"zoo://{zp.text}: {exc}") from exc
        for note in notes:
            if note not in self._warned:
                self._warned.add(note)
                warnings.warn(note, UserWarning, stacklevel=4)
        if zp.arch is not None and not release.files_for(zp.arch):
            raise NotFoundError(
                f"zoo://{zp.text}: {zp.model}@{release.version} has no files for {zp.arch}; "
                f"its architectures: {listing(release.archs)}"
            )
        return release

    # ------------------------------------------------------------------ paths and listings
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        text = super()._strip_protocol(path)
        return text.strip("/")

    @classmethod
    def _parent(cls, path: str) -> str:
        path = cls._strip_protocol(path)
        if "/" in path:
            return path.rsplit("/", 1)[0]
        return path.partition("@")[0] if "@" in path else ""

    def _files(self, zp: ZooPath) -> tuple[Release, dict[str, FileEntry]]:
        release = self._release(zp)
        assert zp.arch is not None
        return release, release.files_for(zp.arch)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        name = self._strip_protocol(path)
        zp = ZooPath.parse(name)
        if zp.model is None:
            return {"name": "", "size": 0, "type": "directory"}
        if zp.spec is None:
            manifest = self.manifest(zp.model)
            return {"name": name, "size": 0, "type": "directory", "model": zp.model,
                    "summary": manifest.summary, "latest": manifest.latest(),
                    "tags": dict(manifest.tags), "versions": manifest.sorted_versions()}
        if zp.arch is None:
            release = self._release(zp)
            return version_info(name, release, self.manifest(zp.model))
        release, files = self._files(zp)
        if not zp.rel:
            return dir_info(name, zp, release)
        entry = files.get(zp.rel)
        if entry is not None:
            return file_info(name, zp, release, zp.rel, entry)
        prefix = zp.rel + "/"
        if any(p.startswith(prefix) for p in files):
            return dir_info(name, zp, release)
        raise missing_file(zp, release, files)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        name = self._strip_protocol(path)
        zp = ZooPath.parse(name)
        out: list[dict[str, Any]]
        if zp.model is None:
            out = [{"name": m, "size": 0, "type": "directory"} for m in self.models()]
        elif zp.spec is None:
            manifest = self.manifest(zp.model)
            out = [version_info(f"{zp.model}@{v}", manifest.versions[v], manifest)
                   for v in manifest.sorted_versions()]
        elif zp.arch is None:
            release = self._release(zp)
            out = [{"name": f"{name}/{arch}", "size": 0, "type": "directory", "model": release.model,
                    "version": release.version, "arch": arch} for arch in release.archs]
        else:
            release, files = self._files(zp)
            if zp.rel in files:  # ls of a file lists the file, as on local disks
                out = [file_info(name, zp, release, zp.rel, files[zp.rel])]
            else:
                prefix = zp.rel + "/" if zp.rel else ""
                children: dict[str, dict[str, Any]] = {}
                for p in sorted(files):
                    if not p.startswith(prefix):
                        continue
                    head, sep, _ = p[len(prefix):].partition("/")
                    child = f"{name}/{head}"
                    if sep:
                        sub = ZooPath(child, zp.model, zp.spec, zp.arch, prefix + head)
                        children.setdefault(head, dir_info(child, sub, release))
                    else:
                        children[head] = file_info(child, zp, release, p, files[p])
                if not children:
                    raise missing_file(zp, release, files)
                out = list(children.values())
        return out if detail else [o["name"] for o in out]

    def walk(self, path: str, maxdepth: int | None = None, topdown: bool = True,
             on_error: Any = "omit", **kwargs: Any) -> Iterator[Any]:
        """fsspec's walk, with depth counted by '/' as glob counts it: `MODEL` and its versions
        `MODEL@V` are both one level deep, so `zoo://yolo@*/x86_64/*.so` globs across versions.
        Below the version level this is fsspec's own walk."""
        path = self._strip_protocol(path)
        if "/" in path or "@" in path:
            yield from super().walk(path, maxdepth=maxdepth, topdown=topdown, on_error=on_error, **kwargs)
            return
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        detail = kwargs.pop("detail", False)
        try:
            listing = self.ls(path, detail=True, **kwargs)
        except OSError as exc:
            if on_error == "raise":
                raise
            if callable(on_error):
                on_error(exc)
            return
        dirs = {info["name"].rsplit("/", 1)[-1]: info for info in listing}
        shown: Any = dirs if detail else list(dirs)
        if topdown:
            yield path, shown, {} if detail else []
        # The root's children (models) sit at the depth of their own children (versions).
        below = maxdepth if path == "" or maxdepth is None else maxdepth - 1
        if below is None or below >= 1:
            for info in dirs.values():
                yield from self.walk(info["name"], maxdepth=below, topdown=topdown, on_error=on_error,
                                     detail=detail, **kwargs)
        if not topdown:
            yield path, shown, {} if detail else []

    def _file(self, path: str) -> tuple[ZooPath, Release, FileEntry]:
        name = self._strip_protocol(path)
        zp = ZooPath.parse(name)
        if zp.arch is None or not zp.rel:
            raise IsADirectoryError(f"zoo://{name} is a directory (a model, version or arch), not a file")
        release, files = self._files(zp)
        entry = files.get(zp.rel)
        if entry is None:
            if any(p.startswith(zp.rel + "/") for p in files):
                raise IsADirectoryError(f"zoo://{name} is a directory, not a file")
            raise missing_file(zp, release, files)
        self._check_size(zp, entry)
        return zp, release, entry

    def _check_size(self, zp: ZooPath, entry: FileEntry) -> None:
        """The manifest's size must be the file's: a mismatch would truncate or pad reads."""
        local = self._cached_path(entry.blob)
        actual = local.stat().st_size if local is not None else (
            self._recipe(entry.blob).size if not self.offline else entry.size)
        if actual != entry.size:
            raise IntegrityError(
                f"zoo://{zp.text}: the manifest says {entry.size} bytes but blob {entry.blob} holds {actual}: "
                f"the manifest is wrong; run 'zoostore verify' on the store", obj=str(entry.blob))

    def ukey(self, path: str) -> str:
        """The blob id: the same content has the same key under every version and spec."""
        return str(self._file(path)[2].blob)

    def checksum(self, path: str) -> int:
        return int(self._file(path)[2].blob.hex, 16)

    def modified(self, path: str) -> Any:
        info = self.info(path)
        if "published" not in info:
            raise IsADirectoryError(f"zoo://{info['name']} has no publication time")
        return dt.datetime.fromisoformat(info["published"])

    created = modified

    # ------------------------------------------------------------------ reading
    def _cached_path(self, blob: Digest) -> Path | None:
        if self.cache is not None and self.cache.has(blob):
            return self.cache.blob_path(blob)
        return None

    def _recipe(self, blob: Digest) -> Recipe:
        """A blob's recipe (immutable): remembered, else from the local cache, else from the
        store."""
        with self._lock:
            recipe = self._recipes.get(blob)
            if recipe is not None:
                self._recipes.move_to_end(blob)
                return recipe
        recipe = self.cache.cached_recipe(blob) if self.cache is not None else None
        if recipe is None:
            recipe = self.zoo.blobs.recipe(blob)
        with self._lock:
            self._recipes[blob] = recipe
            while len(self._recipes) > RECIPES_KEPT:
                self._recipes.popitem(last=False)
        return recipe

    def _local_reader(self, local: Path, blob: Digest) -> LocalReader:
        """A reader of the cached file, trusted while the cache's verified stamp holds."""
        return LocalReader(local, self._recipe(blob), trusted=self.cache is not None and self.cache.stamp_holds(blob))

    def _read_local(self, local: Path, entry: FileEntry, start: int, end: int) -> bytes | None:
        """Bytes [start, end) of the cached file `local`, verified; None if it changed."""
        return self._readers.read(local, entry.blob, start, end, lambda: self._local_reader(local, entry.blob))

    def _read(self, entry: FileEntry, start: int, end: int) -> bytes:
        """Bytes [start, end) of a file: from the cache when it holds the file, else from the
        chunks covering the range; verified by chunk either way."""
        local = self._cached_path(entry.blob)
        if local is not None:
            data = self._read_local(local, entry, start, end)
            if data is not None:
                return data
        return self.zoo.blobs.read_range(entry.blob, start, end)

    def _whole(self, model: str, entry: FileEntry, what: str) -> bytes:
        """A whole file, verified against its blob id: through the cache (fetched into it when
        absent), or streamed from the store when this filesystem has no cache."""
        if self.cache is None:
            return b"".join(stream(self.zoo, entry, what))
        blobs = None if self.offline else self.zoo.blobs   # offline: ensure() names what is not cached
        data = self.cache.ensure(blobs, entry.blob, model=model, what=what).read_bytes()
        if Digest.of(data) == entry.blob:
            self.cache.stamp(entry.blob)  # verified whole just now: later range reads trust it
        else:
            # Changed in place through a hard link: re-hash, drop and fetch again.
            data = self.cache.ensure(blobs, entry.blob, model=model, what=what, verify=True).read_bytes()
            if Digest.of(data) != entry.blob:
                raise IntegrityError(
                    f"{what}: the cached file {self.cache.blob_path(entry.blob)} does not hash to "
                    f"{entry.blob} even after fetching it again; is something writing to the cache?",
                    obj=str(self.cache.blob_path(entry.blob)), expected=entry.blob.hex,
                )
        return data

    def _version_kept(self, model: str, version: str, entry: FileEntry, what: str) -> VersionKept:
        """Around reads of a file of model@version: `reading.VersionKept`, with a fresh look at
        the model's manifest (none offline: the cache's copy cannot tell)."""
        def release() -> Release | None:
            self.invalidate_cache(model)
            try:
                return self.zoo.manifest(model).versions.get(version)
            except NotFoundError:  # the whole model is gone
                return None
        return VersionKept(None if self.offline else release, entry.blob, what=what, name=f"{model}@{version}",
                           store=self.store_url)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        zp, release, entry = self._file(path)
        s, e = span(entry.size, start, end)
        with self._version_kept(release.model, release.version, entry, f"zoo://{zp.text}"):
            if s == 0 and e == entry.size:
                return self._whole(release.model, entry, f"zoo://{zp.text}")
            return self._read(entry, s, e) if s < e else b""

    def cat_ranges(self, paths: list[str], starts: Any, ends: Any, max_gap: int | None = None,
                   on_error: str = "return", **kwargs: Any) -> list[Any]:
        """Byte ranges of one or more files. Ranges of one file whose chunks touch or overlap
        are fetched together, so each chunk is fetched (and verified) once; `max_gap` is
        accepted for compatibility and ignored (merging is by chunk, not by byte gap)."""
        starts, ends = range_args(paths, starts, ends)
        out: list[Any] = [None] * len(paths)
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(paths):
            groups.setdefault(self._strip_protocol(p), []).append(i)
        for p, idx in groups.items():
            try:
                self._cat_ranges_one(p, idx, starts, ends, out)
            except Exception as exc:
                if on_error != "return":
                    raise
                for i in idx:
                    if out[i] is None:
                        out[i] = exc
        return out

    def _cat_ranges_one(self, path: str, idx: list[int], starts: list[Any], ends: list[Any],
                        out: list[Any]) -> None:
        zp, release, entry = self._file(path)
        with self._version_kept(release.model, release.version, entry, f"zoo://{zp.text}"):
            self._cat_ranges_entry(entry, idx, starts, ends, out)

    def _cat_ranges_entry(self, entry: FileEntry, idx: list[int], starts: list[Any], ends: list[Any],
                          out: list[Any]) -> None:
        spans = {i: span(entry.size, starts[i], ends[i]) for i in idx}
        if self._cached_path(entry.blob) is not None or entry.size == 0:
            for i, (s, e) in spans.items():
                out[i] = self._read(entry, s, e) if s < e else b""
            return
        recipe = self._recipe(entry.blob)
        for i in idx:
            if spans[i][0] >= spans[i][1]:
                out[i] = b""
        for first, last, members in chunk_runs(recipe, spans):
            base = recipe.starts[first]
            stop = recipe.starts[last] + recipe.chunks[last].raw_length
            data = self.zoo.blobs.read_range(entry.blob, base, stop)
            for i in members:
                s, e = spans[i]
                out[i] = data[s - base : e - base]

    def get_file(self, rpath: str, lpath: Any, callback: Callback = DEFAULT_CALLBACK,
                 outfile: Any = None, **kwargs: Any) -> None:
        """Copy one file out of the zoo, through the local cache (fetched once, verified);
        the local file is an ordinary writable copy, never a link into the cache."""
        if outfile is None and isfilelike(lpath):
            outfile = lpath
        info = self.info(rpath)
        if info["type"] == "directory":
            if outfile is None:
                os.makedirs(lpath, exist_ok=True)
            return
        zp, release, entry = self._file(rpath)
        what = f"zoo://{zp.text}"
        callback.set_size(entry.size)
        with self._version_kept(release.model, release.version, entry, what):
            local = None
            if self.cache is not None:
                # verify=True re-hashes a cached file (changed in place through a hard link?).
                blobs = None if self.offline else self.zoo.blobs
                local = self.cache.ensure(blobs, entry.blob, model=release.model, what=what, verify=True)
            if outfile is not None:
                if local is not None:
                    with open(local, "rb") as src:
                        shutil.copyfileobj(src, outfile)
                else:
                    for data in stream(self.zoo, entry, what):
                        outfile.write(data)
            else:
                dest = Path(os.fspath(lpath))
                dest.parent.mkdir(parents=True, exist_ok=True)
                if local is not None:
                    # Bytes only, not copy(): the cache's 0444 mode stays there.
                    with open(local, "rb") as src, atomic_writer(dest, fsync=False) as out:
                        shutil.copyfileobj(src, out)
                else:
                    self.zoo.blobs.get_file(entry.blob, dest)  # verified, atomic
        callback.relative_update(entry.size)

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: dict[str, Any] | None = None, **kwargs: Any) -> ZooFile:
        if mode != "rb":
            raise read_only_error(f"open (mode {mode!r})", path, self.store_url)
        zp, release, entry = self._file(path)
        return ZooFile(self, zp.text, entry=entry, model=release.model, block_size=block_size,
                       cache_type=kwargs.pop("cache_type", "none"), cache_options=cache_options,
                       info=file_info(zp.text, zp, release, zp.rel, entry))
