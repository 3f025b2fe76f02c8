"""Inspecting and pruning the local cache (`zoostore cache info|verify|prune`): cached files not
kept, their recipes and stamps, prefixes of interrupted reads, temp files of killed processes,
and snapshot files that are no longer hard links to a kept blob (see `zoostore.storage.cache`).
`verify` re-hashes every cached file, as a CI job may after restoring a shared cache.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from zoostore.core.atomic import TEMP_PREFIX, stale_temp
from zoostore.core.digest import Digest
from zoostore.core.errors import ZooError
from zoostore.core.progress import NullProgress, Progress
from zoostore.core.records import dataclass
from zoostore.storage.cache_layout import FORMAT, files, read_format


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """The cache's size: its folder, cached files and bytes, and leftover temp files of killed processes."""

    root: Path
    blobs: int
    bytes: int
    stale_temps: int = 0       # temp files of killed processes (`prune` removes them)
    stale_temp_bytes: int = 0
    format: int = FORMAT       # the cache's layout (zoostore.storage.cache_layout)


@dataclass(frozen=True, slots=True)
class CacheVerification:
    """What `cache verify` hashed and the damaged files it dropped."""

    root: Path
    files: int                 # cached files hashed
    bytes: int
    damaged: tuple[Digest, ...] = ()   # dropped: the next sync or fetch gets them again


class CachePruning:
    """The inspecting and pruning half of `Cache` (a mixin): it walks the layout `Cache` defines."""

    root: Path

    def check(self, blob: Digest, *, recheck: bool = False) -> str:
        raise NotImplementedError

    def recipe_path(self, blob: Digest) -> Path:
        raise NotImplementedError

    def stamp_path(self, blob: Digest) -> Path:
        raise NotImplementedError

    def info(self) -> CacheInfo:
        count = total = 0
        for _, _, st in self._entries():   # a file another process removes meanwhile is skipped
            count += 1
            total += st.st_size
        temps = self.stale_temps()
        return CacheInfo(self.root, count, total, len(temps), sum(size for _, size in temps), read_format(self.root))

    def verify(self, *, progress: Progress | None = None) -> CacheVerification:
        """Hash every cached file (stamps ignored) and drop each one that no longer hashes to its
        name, with its recipe and stamp, as `Cache.check` does before any use; the others are
        stamped as verified now. Safe beside running syncs and prunes: a file removed meanwhile
        is skipped, one written meanwhile was verified by its writer."""
        progress = progress or NullProgress()
        entries = list(self._entries())
        progress.start("verify cache", sum(st.st_size for _, _, st in entries))
        files = total = 0
        damaged = []
        for blob, _, st in entries:
            found = self.check(blob, recheck=True)
            if found != "absent":
                files, total = files + 1, total + st.st_size
            if found == "damaged":
                damaged.append(blob)
            progress.advance("verify cache", st.st_size)
        progress.done("verify cache")
        return CacheVerification(self.root, files, total, tuple(damaged))

    def stale_temps(self, *, now: float | None = None) -> list[tuple[Path, int]]:
        """(path, size) of every temp file in the cache that no running zoostore will finish
        (core.atomic.stale_temp): what a killed fetch or sync left, anywhere under the root."""
        out = []
        for directory, _, files in os.walk(self.root):
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    path = Path(directory) / name
                    try:
                        st = path.lstat()
                    except FileNotFoundError:
                        continue
                    if stale_temp(name, st.st_mtime, now=now):
                        out.append((path, st.st_size))
        return out

    def prune(self, keep: set[Digest], *, older_than: float | None = None, dry_run: bool = False,
              now: float | None = None) -> tuple[int, int]:
        """Delete cached files not in `keep` (and, with `older_than`, only those last used more
        than that many seconds ago); returns (files, bytes) removed, or that would be with
        `dry_run`. Temp files that no running zoostore will finish go too. Hard links in
        project destinations keep their data alive."""
        removed = freed = 0
        now = time.time() if now is None else now
        for path, size in self.stale_temps(now=now):
            removed, freed = removed + 1, freed + size
            if not dry_run:
                path.unlink(missing_ok=True)
        for d, f, st in self._entries():
            if d in keep or (older_than is not None and now - max(st.st_atime, st.st_mtime) < older_than):
                continue
            removed, freed = removed + 1, freed + st.st_size
            if not dry_run:
                f.unlink(missing_ok=True)
                self.recipe_path(d).unlink(missing_ok=True)
                self.stamp_path(d).unlink(missing_ok=True)
        n, size = self._prune_partials(keep, older_than=older_than, dry_run=dry_run, now=now)
        if not dry_run:
            self.prune_snapshots(now=now)
        return removed + n, freed + size

    def _prune_partials(self, keep: set[Digest], *, older_than: float | None, dry_run: bool,
                        now: float) -> tuple[int, int]:
        """Prefixes kept by interrupted reads (`partial/`) go by the same rules as files."""
        removed = freed = 0
        for f in sorted(files(self.root / "partial")):
            try:
                st, d = f.stat(), Digest.parse("blake3:" + f.name)
            except (OSError, ZooError):
                continue
            if d in keep or (older_than is not None and now - st.st_mtime < older_than):
                continue
            removed, freed = removed + 1, freed + st.st_size
            if not dry_run:
                f.unlink(missing_ok=True)
        return removed, freed

    def _entries(self) -> Iterator[tuple[Digest, Path, os.stat_result]]:
        """(blob id, path, stat) of every cached file under blobs/ (temp files are not)."""
        for f in files(self.root / "blobs"):
            if f.name.startswith("."):
                continue
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            try:
                yield Digest.parse("blake3:" + f.name), f, st
            except ZooError:
                continue

    def prune_snapshots(self, *, now: float | None = None) -> int:
        """Remove snapshot files that are not hard links to a present cached blob (their blob
        was pruned or dropped, or linking failed and they are copies), stale temp files, then
        the directories left empty. Returns the number of files removed. A copy is removed
        too: the next `fetch` makes it again from the blob, verified."""
        base = self.root / "snapshots"
        if not base.is_dir():
            return 0
        blobs = {(st.st_dev, st.st_ino) for d, _, st in self._entries() if d is not None}
        removed = 0
        for folder, dirs, names in os.walk(base, topdown=False):
            for name in names:
                f = Path(folder) / name
                try:
                    st = f.lstat()
                except OSError:
                    continue
                # Another fetch's temp link stays until it is stale; anything else not linked
                # to a kept blob goes.
                busy = name.startswith(TEMP_PREFIX) and not stale_temp(name, st.st_mtime, now=now)
                if (st.st_dev, st.st_ino) not in blobs and not busy:
                    f.unlink(missing_ok=True)
                    removed += 1
            for name in dirs:
                try:
                    (Path(folder) / name).rmdir()   # only when empty
                except OSError:
                    pass
        return removed
