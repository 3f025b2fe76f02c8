"""The local cache: full verified files, shared by every project and process of a user.

    $ZOOSTORE_CACHE, else $XDG_CACHE_HOME/zoostore, else ~/.cache/zoostore
    ├── CACHEDIR.TAG               marks the folder as a cache for backup tools
    ├── cache-format               "2": the layout below (zoostore.storage.cache_layout; a cache
    │                              without it, made by an earlier zoostore, is format 1:
    │                              blobs/<aa>/<blob hex> and so on, 256 fan-out folders a kind)
    ├── blobs/<blob hex>           a verified file, read-only, uncompressed (hard-link source)
    ├── recipes/<blob hex>         its recipe (which chunks sit at which offsets), for a file of
    │                              several chunks only: a single-chunk file is its own chunk
    ├── verified/<blob hex>        "inode size mtime_ns ctime_ns" of the file when last hashed,
    │                              for files over UNSTAMPED (64 KiB) only
    ├── models/<model>             blob ids cached for a model, one per line (append-only)
    ├── manifests/<store key>/     what `zoostore.fetch` last read from a store (for --offline):
    │   ├── store                  the store's URL (the key is BLAKE3 of it, first 32 hex)
    │   └── <model>.toml           the model's manifest as last fetched
    └── snapshots/<store key>/<model>/<version>/<arch>/<path>
                                   what `zoostore.fetch` returns: a hard link to blobs/<hex>
                                   (a copy where linking fails) under the file's own name, beside
                                   the version's other fetched files (huggingface_hub's snapshots)

A file enters `blobs/` only after its BLAKE3 matched (temp file, verify, atomic rename), so a
present file is a verified file; several processes may fill the cache at once and the loser of
a rename race simply replaces an identical file. Correctness never depends on file locks.

A present file is still not trusted blindly: hard links share its inode with project files, so
a write to one of those (root, or after a chmod) damages it. `check` re-hashes a cached file
before it is linked, copied or returned, unless its verified stamp still matches its stat. The
stamp includes ctime, which no user-level call can set back: a write followed by `os.utime`
restoring the mtime still misses the stamp and is hashed (and caught).

Chunk reuse: when a model is upgraded, the chunks the new version shares with cached versions
of the same model (`models/<model>`) are read from those local files instead of the store, so
an upgrade that changed 5% of a model downloads about 5%. A `LocalIndex` (one per sync, in
`zoostore.storage.local_index`) finds them: it reads each cached recipe of a model at most
once, and only when that model has cached files and a file of it must be fetched; files the
sync fetches join it from the recipe in hand.
A sync of N files therefore costs O(N) recipe reads, not one read per cached file per file.

Small files cost one file creation each, like rsync's: a file of one chunk has chunk id == blob
id (both BLAKE3 of the same bytes), so its recipe says nothing the cache needs and is not
written; `cached_recipe` of a cached file without a recipe is the file as one chunk (exact for a
single-chunk file, and still a correct, coarser, check for any other: the whole file must hash
to the blob id). A file up to UNSTAMPED bytes gets no verified stamp: hashing it again (about
5 µs at 4 KiB, 15 µs at 64 KiB) costs less than writing a stamp, and not much more than reading
one, so `check` simply hashes it every time. Caches written before (a recipe and a stamp for
every file) stay valid: their recipes are read as before, their stamps of small files are not
consulted, and `prune` and `drop` remove both.

Snapshots: TVM's `load_module` wants a `.so` name and ONNX finds `model.onnx.data` only beside
`model.onnx`, so `fetch` links each verified blob into a per-version directory under its own
name (`zoostore.ops.fetch` places the links). A snapshot file is the blob's inode, not a
second copy; `prune` removes every snapshot file that is not a link to a blob it keeps (links
to removed blobs, copies, leftovers of dropped damaged blobs), so its data is really freed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

from zoostore.storage.blobs import BlobStore, LocalChunk
from zoostore.core.atomic import atomic_write, blame, create_temp, naming, write_unnamed
from zoostore.core.digest import Digest, hash_file
from zoostore.core.errors import FormatError, IntegrityError, OfflineError, ZooError
from zoostore.core.names import check_model_name
from zoostore.core.offline import OFFLINE_ENV
from zoostore.core.progress import Progress
from zoostore.storage.cache_layout import FORMAT, FORMAT_FILE, read_format
from zoostore.storage.cache_prune import CachePruning
from zoostore.storage.local_index import LocalIndex, partial_chunks
from zoostore.storage.recipe import ChunkRef, Recipe

#: Files up to this size are fetched on the calling thread in one go (`Cache._get_small`): for
#: them the reader's thread-pool hops, look-ahead and partial-file bookkeeping cost more than
#: the bytes. Their chunks are still verified one by one, and the file as a whole.
SMALL_FILE = 1024 * 1024

#: Files up to this size get no verified stamp and are hashed by every `check` (see the module
#: docstring): on the 2-core bench machine hashing 64 KiB from the page cache takes 15 µs,
#: reading a stamp 5.5 µs and writing one a file creation (tens of µs, more under load).
UNSTAMPED = 64 * 1024

T = TypeVar("T")

#: What `Cache.check` found: verified, not cached, or damaged (and dropped).
CacheCheck = Literal["ok", "absent", "damaged"]

CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by zoostore.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


#: The pack of a recipe `cached_recipe` made up: none (all zeros), never read from a store.
NO_PACK = Digest("0" * 64)


def whole_file_recipe(blob: Digest, size: int) -> Recipe:
    """A recipe of one chunk, the whole file: its chunk id is the blob id, by definition."""
    return Recipe(blob, size, (ChunkRef(blob, size, NO_PACK, 0, 0),) if size else ())


def default_cache_dir() -> Path:
    env = os.environ.get("ZOOSTORE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "zoostore"
    return Path.home() / ".cache" / "zoostore"


class Cache(CachePruning):
    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self._lock = threading.Lock()
        self._ready = False
        self._dirs: set[Path] = set()   # directories this Cache made or found: no mkdir per file
        self._folders: dict[str, Path] = {}
        self._fanout: bool | None = None   # format 1's <aa>/ folders, known at the first path

    def _prepare(self) -> None:
        """Before the first file is written: the folders, and a clear error for a cache that
        cannot take files (a CI cache restored read-only serves what it holds, nothing more)."""
        with self._lock:
            if self._ready:
                return
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                if not self._fan_out() and not (self.root / FORMAT_FILE).exists():
                    atomic_write(self.root / FORMAT_FILE, f"{FORMAT}\n".encode(), fsync=False)
                (self.root / "blobs").mkdir(exist_ok=True)
                tag = self.root / "CACHEDIR.TAG"
                if not tag.exists():
                    atomic_write(tag, CACHEDIR_TAG.encode(), fsync=False)
                writable = os.access(self.root / "blobs", os.W_OK)
            except OSError as exc:
                writable, reason = False, f"{exc.strerror or exc}"
            else:
                reason = "not writable"
            if not writable:
                # ZooError (exit 1): ReadOnlyError's exit 8 means a read-only store
                raise ZooError(
                    f"the local cache {self.root} cannot take files ({reason}), and this needs files it does not "
                    f"hold yet: make it writable, or point $ZOOSTORE_CACHE at a writable folder (a cache restored "
                    f"read-only serves only the files it holds)")
            self._ready = True

    # One joinpath from a kept folder: a sync of thousands of small files builds several
    # paths per file, and `root / "blobs" / hex` costs twice as much.
    def blob_path(self, blob: Digest) -> Path:
        return self._at("blobs", blob)

    def recipe_path(self, blob: Digest) -> Path:
        return self._at("recipes", blob)

    def _at(self, name: str, blob: Digest) -> Path:
        """`blob`'s file in the folder `name`: <name>/<hex> (format 2), <name>/<aa>/<hex> in a
        cache older zoostore made (format 1, kept as it is)."""
        if self._fan_out():
            return self._folder(name).joinpath(blob.hex[:2], blob.hex)
        return self._folder(name).joinpath(blob.hex)

    def check_format(self) -> None:
        """Refuse a cache of a newer or unreadable format (FormatError, ZooError) before writing
        anything into it; the paths check it at first use anyway."""
        self._fan_out()

    def _fan_out(self) -> bool:
        """Whether this cache is format 1 (fan-out folders), read once (cache_layout.read_format)."""
        if self._fanout is None:
            self._fanout = read_format(self.root) == 1
        return self._fanout

    def _folder(self, name: str) -> Path:
        folder = self._folders.get(name)
        if folder is None:
            folder = self._folders[name] = self.root / name
        return folder

    def has(self, blob: Digest) -> bool:
        return self.blob_path(blob).is_file()

    def _write_atomic(self, path: Path, data: bytes) -> None:
        self._in_dir(path.parent, lambda: atomic_write(path, data, fsync=False))

    def _write_checked(self, path: Path, data: bytes) -> None:
        """Write a file whose reader detects a torn or raced write by itself, in place (no temp
        file and rename: a sync of many files of several chunks writes two per file): a recipe
        carries its checksum (`cached_recipe` falls back to the whole file as one chunk for a
        damaged one, which costs reuse, never wrong bytes) and a stamp must equal the file's
        stat exactly (a damaged one costs a hash). Never follows a symlink planted at the name.
        Overwritten, then cut if it was longer: truncating first freed the block of a stamp that
        sync writes again after its hard links (same length) only to allocate another; 62 of
        them took 4-8 ms of a first sync's tail, ~0.5 ms in place."""
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = self._in_dir(path.parent, lambda: os.open(path, flags, 0o644))
        try:
            with naming(path):
                os.write(fd, data)   # at offset 0: a fresh descriptor
                if os.fstat(fd).st_size > len(data):
                    os.ftruncate(fd, len(data))
        finally:
            os.close(fd)

    def _in_dir(self, directory: Path, make: Callable[[], T]) -> T:
        """`make()`, which creates a file in `directory` (a folder under the root, `blobs/` or a
        format-1 cache's `blobs/<aa>/`, which zoostore never removes), made once per Cache: a
        sync of thousands of small files otherwise spends a mkdir per file on it. If it went
        away since (the cache was deleted under a long-lived Cache), it is made again."""
        if directory not in self._dirs:
            directory.mkdir(parents=True, exist_ok=True)
            self._dirs.add(directory)
        try:
            return make()
        except FileNotFoundError:
            directory.mkdir(parents=True, exist_ok=True)
            return make()

    def cached_recipe(self, blob: Digest) -> Recipe | None:
        """The cached file's recipe: as the store gave it for a file of several chunks, else
        (no recipe kept, or a damaged one) the cached file as one chunk, whose id is the blob
        id. None when neither file is there. Local reads and chunk reuse only need chunk ids
        and offsets, and verify every chunk they use; a recipe made here names no pack (never
        a store read)."""
        try:
            return Recipe.decode(blob, self.recipe_path(blob).read_bytes())
        except (OSError, FormatError, IntegrityError):
            pass
        try:
            size = os.stat(self.blob_path(blob)).st_size
        except OSError:
            return None
        return whole_file_recipe(blob, size)

    def model_blobs(self, model: str) -> list[Digest]:
        try:
            lines = (self.root / "models" / model).read_text().split()
        except OSError:
            return []
        out = []
        for line in dict.fromkeys(lines):
            try:
                out.append(Digest.parse(line))
            except Exception:
                continue
        return out

    def _append_model(self, model: str, *blobs: Digest) -> None:
        path = self.root / "models" / model
        # One short O_APPEND write is atomic enough for a hint file; a torn line is skipped. A
        # cache that is full or read-only loses the hint (reuse), never the sync, nor its error.
        with contextlib.suppress(OSError), self._in_dir(path.parent, lambda: open(path, "a")) as f:
            f.write("".join(blob.hex + "\n" for blob in blobs))

    def local_index(self, *, batch: bool = False) -> LocalIndex:
        """A fresh index of the chunks of cached files, to pass to every `ensure` of one sync;
        `batch` appends to models/<model> once per model, at `LocalIndex.flush()`."""
        return LocalIndex(self, batch=batch)

    def ensure(self, blobs: BlobStore | None, blob: Digest, *, model: str | None = None,
               progress: Progress | None = None, what: str = "", verify: bool = False,
               index: LocalIndex | None = None) -> Path:
        """The cached file for `blob`, fetching it (verified) if absent. With `blobs=None`
        (offline) a missing file raises OfflineError. `verify` re-hashes a cached file first.
        `index` (from `local_index()`) is shared by the calls of one sync; without it each call
        reads the recipes of the model's cached files again."""
        if model and index is None:
            index = self.local_index()
        path = self.blob_path(blob)
        present = path.is_file()
        if present and verify and hash_file(path) != blob:
            # A hard-linked copy in some project was written to in place: the cached file is
            # no longer what its name says. Drop it and fetch again.
            path.unlink(missing_ok=True)
            present = False
        if present:
            if model and index is not None:
                index.note(model, blob)
            return path
        if blobs is None:
            raise OfflineError(f"{what or blob} is not in the cache {self.root} and offline mode (--offline or "
                               f"${OFFLINE_ENV}) forbids fetching it; run once online (without --offline, "
                               f"${OFFLINE_ENV} unset)")
        self._prepare()
        recipe = blobs.recipe(blob)
        if len(recipe.chunks) > 1:   # a single-chunk file is its own recipe (`cached_recipe`)
            self._write_checked(self.recipe_path(blob), recipe.encode())
        local: dict[Digest, LocalChunk] = {}
        if model and index is not None:
            # the file's chunks, and the bases of its delta frames, that cached files hold
            known = index.chunks(model)
            wanted = [ref.chunk for ref in recipe.chunks] + [ref.base.chunk for ref in recipe.chunks if ref.base]
            local = {chunk: known[chunk] for chunk in wanted if chunk in known}
        partial = self.partial_path(blob)
        local.update(partial_chunks(partial, recipe))  # what an interrupted read wrote (checked on use)
        if not local and recipe.size <= SMALL_FILE:
            self._get_small(blobs, recipe, path)
        else:
            # The bar names the file as the user knows it ("m@1.0.0 x86_64/w.bin"), not the cache
            # path (a blob id).
            blobs.get_file(blob, path, local=local or None, progress=progress, mode=0o444, partial=partial,
                           task=what or None)
        if recipe.size > UNSTAMPED:
            self.stamp(blob)   # verified as it was read; see `put_small`
        if model and index is not None:
            index.note(model, blob, recipe)
        return path

    def _get_small(self, blobs: BlobStore, recipe: Recipe, path: Path) -> None:
        """A small file on this thread: its chunks (usually one ranged read, decoded inline and
        each verified by `read_range`), the whole verified against the blob id, then a temp file
        renamed into place. Nothing is left behind on failure."""
        self._write_small(recipe, blobs.read_range(recipe.blob, 0, recipe.size), path)

    def put_small(self, recipe: Recipe, data: bytes | memoryview) -> Path:
        """A small file's bytes, read by the caller (a sync reading many small files in a few
        ranged reads), into the cache as `ensure` puts them: verified against the blob id,
        its recipe kept when it has several chunks, a temp file renamed into place. The
        caller notes it in its `LocalIndex`. Returns the cached path."""
        self._prepare()
        if len(recipe.chunks) > 1:
            self._write_checked(self.recipe_path(recipe.blob), recipe.encode())
        path = self.blob_path(recipe.blob)
        self._write_small(recipe, data, path)
        if recipe.size > UNSTAMPED:
            # Stamped on the fetching thread: a sync's hard link changes the file's ctime, and
            # the stamp `stamp(relinked=True)` then writes over this one costs no file creation
            # on sync's main thread after the last file (62 of them took 16 ms of a first sync).
            self.stamp(recipe.blob)
        return path

    def _write_small(self, recipe: Recipe, data: bytes | memoryview, path: Path) -> None:
        import blake3

        actual = blake3.blake3(data).hexdigest()
        if actual != recipe.blob.hex or len(data) != recipe.size:
            raise IntegrityError(
                f"assembled file for blob {recipe.blob} hashes to blake3:{actual}: expected {recipe.blob.hex}; "
                f"the recipe {recipe.blob.short} in the store is wrong. Nothing was written to {path}; run "
                f"'zoostore verify --repair' on the store", obj=str(recipe.blob), expected=recipe.blob.hex, actual=actual)
        # os-level calls over string paths: the Path and file objects cost more than the write
        folder = path.parent
        with naming(path):
            if self._in_dir(folder, lambda: write_unnamed(os.fspath(folder), os.fspath(path), data, 0o444)):
                return
        tmp, fd = self._in_dir(folder, lambda: create_temp(folder))
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fchmod(fd, 0o444)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                blame(exc, path)
            raise

    def partial_path(self, blob: Digest) -> Path:
        """Where an interrupted read of `blob` keeps the prefix it wrote (resumed from)."""
        return self._at("partial", blob)

    # -- snapshots: the version's files under their own names, hard links to blobs/ ----------

    @staticmethod
    def store_key(store_url: str) -> str:
        """The folder name of a store under manifests/ and snapshots/: BLAKE3 of its URL, 32 hex."""
        import blake3

        return blake3.blake3(store_url.encode("utf-8")).hexdigest()[:32]

    def snapshot_dir(self, store_url: str, model: str, version: str, arch: str) -> Path:
        """snapshots/<store key>/<model>/<version>/<arch>: where `fetch` links a version's
        files. `version` and `arch` come from a parsed manifest and a normalised arch, so none
        of the parts can leave the cache; the model name is checked here."""
        for part in (version, arch):
            if not part or "/" in part or "\\" in part or part in (".", ".."):
                raise ZooError(f"snapshot: invalid version or arch {part!r} (expected one path component)")
        return self.root / "snapshots" / self.store_key(store_url) / check_model_name(model) / version / arch

    # -- verification before use: a cached file is hashed again unless its stamp still holds --

    def stamp_path(self, blob: Digest) -> Path:
        return self._at("verified", blob)

    def stat_key(self, blob: Digest) -> str | None:
        """The cached file's "inode size mtime_ns ctime_ns" now (what a stamp records), or None
        when it is absent: sync notes it after fetching (what the stamp `ensure` wrote says) and
        stamps again after placing."""
        try:
            st = os.lstat(self.blob_path(blob))
        except OSError:
            return None
        return f"{st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns}"

    def _read_stamp(self, blob: Digest) -> str | None:
        try:
            return self.stamp_path(blob).read_text().strip()
        except OSError:
            return None

    @staticmethod
    def _stamped(key: str) -> bool:
        """Whether a file of this stat key carries a stamp: larger than UNSTAMPED."""
        return int(key.split(" ", 2)[1]) > UNSTAMPED

    def stamp_holds(self, blob: Digest) -> bool:
        """Whether the cached file is still exactly as zoostore verified it (its stamp matches
        its inode, size, mtime and ctime): a stat and a small read, no hashing. Always False
        for a file up to UNSTAMPED bytes, which is hashed instead."""
        key = self.stat_key(blob)
        return key is not None and self._stamped(key) and self._read_stamp(blob) == key

    def check(self, blob: Digest, *, recheck: bool = False) -> CacheCheck:
        """Whether the cached file for `blob` still hashes to it: "ok" (its verified stamp
        matches its stat, or it was hashed now and stamped), "absent", or "damaged", in which
        case it is dropped so that `ensure` fetches it again. `recheck` ignores the stamp. A
        file up to UNSTAMPED bytes is hashed every time (and never stamped)."""
        key = self.stat_key(blob)   # before hashing: a write during the hash changes ctime
        if key is None:
            return "absent"
        stamped = self._stamped(key)
        if stamped and not recheck and self._read_stamp(blob) == key:
            return "ok"
        try:
            actual = hash_file(self.blob_path(blob))
        except FileNotFoundError:
            return "absent"
        if actual == blob:
            if stamped:
                self._write_stamp(blob, key)
            return "ok"
        self.drop(blob)
        return "damaged"

    def stamp(self, blob: Digest, *, relinked: bool = False, since: str | None = None) -> None:
        """Record the cached file as verified as it is now. Only for a file zoostore verified
        itself a moment ago: one `ensure` just fetched, or (`relinked`) one `check` passed and
        sync then hard-linked, which changes ctime only; a `relinked` stamp is refreshed only
        while inode, size and mtime are still the stamped ones. `since` (with `relinked`) is
        the key the file had when it was verified (`stat_key` right after `ensure` fetched it),
        taking the place of a stamp that was never written: one stamp write per fetched file.
        Nothing for a file up to UNSTAMPED bytes."""
        key = self.stat_key(blob)
        if key is None or not self._stamped(key):
            return
        if relinked:
            old = since if since is not None else self._read_stamp(blob)
            if old is None or old.rsplit(" ", 1)[0] != key.rsplit(" ", 1)[0]:
                return
            if old == key:
                return
        self._write_stamp(blob, key)

    def _write_stamp(self, blob: Digest, key: str) -> None:
        try:
            self._write_checked(self.stamp_path(blob), key.encode() + b"\n")
        except OSError:
            pass  # a read-only cache: the file is simply hashed again next time

    def drop(self, blob: Digest) -> None:
        """Remove a cached file (and its recipe and stamp) that no longer hashes to its name."""
        for path in (self.blob_path(blob), self.recipe_path(blob), self.stamp_path(blob)):
            path.unlink(missing_ok=True)

    # -- manifests as last fetched: what lets `fetch` resolve a spec offline -----------------

    def _manifest_dir(self, store_url: str) -> Path:
        return self.root / "manifests" / self.store_key(store_url)

    def save_manifest(self, store_url: str, model: str, text: str) -> None:
        """Keep a copy of `model`'s manifest as just read from `store_url`; best effort."""
        if self.cached_manifest(store_url, model) == text:
            return
        d = self._manifest_dir(store_url)
        try:
            self._write_atomic(d / f"{check_model_name(model)}.toml", text.encode("utf-8"))
            if not (d / "store").is_file():
                self._write_atomic(d / "store", store_url.encode("utf-8") + b"\n")
        except OSError:
            pass  # a read-only cache: offline resolution is simply unavailable

    def cached_manifest(self, store_url: str, model: str) -> str | None:
        """The manifest text `save_manifest` kept for (store_url, model), else None."""
        try:
            return (self._manifest_dir(store_url) / f"{check_model_name(model)}.toml").read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

