"""The local cache's layout (zoostore.storage.cache), by its format number in FORMAT_FILE.

Format 2: one folder per kind, `blobs/<hex>`, `recipes/<hex>`, `verified/<hex>`,
`partial/<hex>`. Format 1 (every cache made before FORMAT_FILE existed, which has none): the
same under 256 fan-out folders per kind, `blobs/<aa>/<hex>`. A cache keeps the format it was
made with; both are read and written, and walked (`files`) either way.

Why flat: a first sync created the fan-out folders one by one, ~170 of them for the 71 files
of the benchmark zoo's first release (each an inode, and a mkdir costs more than a file:
ext4 places new directories in other block groups); large flat folders are no problem for
ext4 (hashed directories), XFS, APFS or NTFS (docs/design-decisions.md, "Flat cache folders").
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from zoostore.core.errors import FormatError, ZooError

FORMAT = 2
FORMAT_FILE = "cache-format"


def read_format(root: Path) -> int:
    """The format of the cache at `root`: its FORMAT_FILE's number; without one, 1 if blobs/
    exists (a cache older zoostore made), else FORMAT (no cache yet: `Cache._prepare` writes
    the file before the first blob). A newer format is refused: upgrade zoostore."""
    path = root / FORMAT_FILE
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return 1 if (root / "blobs").is_dir() else FORMAT
    except OSError as exc:
        raise ZooError(f"cannot read the cache's format file {path}: {exc.strerror or exc}; it is only a cache: "
                       f"delete the folder {root} (or point $ZOOSTORE_CACHE at another one) and sync again") from None
    if not text.isdigit() or not 1 <= int(text) <= 999:
        raise FormatError(f"{path}: expected the cache's format number (1 or {FORMAT}), got {text[:40]!r}; "
                          f"it is only a cache: delete the folder {root} and sync again")
    if int(text) > FORMAT:
        raise FormatError(f"the cache {root} has format {int(text)}, newer than this zoostore reads ({FORMAT}): "
                          f"upgrade zoostore, or point $ZOOSTORE_CACHE at another folder")
    return int(text)


def files(folder: Path) -> Iterator[Path]:
    """Every file in `folder` of either format: its own files, and those in its two-character
    fan-out folders (format 1; a format-1 writer may also have run beside a format-2 cache)."""
    for entry in _listing(folder):
        if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False):
            yield from (Path(sub.path) for sub in _listing(entry.path) if not sub.is_dir(follow_symlinks=False))
        elif not entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)


def _listing(folder: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    """The entries of `folder` (none if it is gone or not a folder), read at once and closed."""
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []
