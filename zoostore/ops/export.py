"""`zoostore export`: a plain mirror of a store for tools that speak only HTTP.

    DEST/index.json                                   every exported file: sha256, size, blob
    DEST/{model}/{version}/SHA256SUMS                 `sha256sum -c` format, paths `{arch}/{path}`
    DEST/{model}/{version}/{arch}/{path}              the file's bytes

DEST is a local directory or any fsspec URL (s3://bucket/mirror, ...), so curl, wget and CMake's
`file(DOWNLOAD <url> <file> EXPECTED_HASH SHA256=<sha256>)` work against a bucket or a static
server. Every file is assembled from verified chunks and its BLAKE3 checked against the blob id
before it is moved into place (a temporary name first, so a reader never sees a partial file);
SHA256SUMS and index.json also go through a temporary name, so a full disk never truncates them.

Incremental: a file is skipped when the previous index.json recorded it with the same blob, its
version's SHA256SUMS lists the same SHA-256, and the file at DEST has the recorded size; or when
no index vouches for it but the file at DEST hashes to its blob (a run that stopped early). Files of
versions that left the store stay at DEST (a mirror never deletes); index.json lists only what the
store holds now. index.json is written last.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

import blake3

from zoostore.core.atomic import blame
from zoostore.core.errors import FormatError, IntegrityError
from zoostore.core.progress import NullProgress, Progress
from zoostore.core.records import dataclass
from zoostore.documents.manifest import FileEntry
from zoostore.repository import Store

INDEX = "index.json"
SUMS = "SHA256SUMS"
INDEX_FORMAT = 1


@dataclass
class ExportReport:
    """What `export` wrote: the mirror's files, how many it skipped as already there, and the bytes."""

    dest: str
    written: list[str] = field(default_factory=list)  # "{model}/{version}/{arch}/{path}"
    skipped: int = 0
    bytes_written: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"dest": self.dest, "written": self.written, "skipped": self.skipped,
                "bytes_written": self.bytes_written}


def _read_text(fs: Any, path: str) -> str | None:
    try:
        with fs.open(path, "rb") as f:
            return bytes(f.read()).decode("utf-8")
    except FileNotFoundError:
        return None


def parse_sums(text: str) -> dict[str, str]:
    """`sha256  path` lines (the `sha256sum` format; a `*` before the path marks binary mode)."""
    sums = {}
    for line in text.splitlines():
        if line.strip():
            digest, _, path = line.partition("  ")
            sums[path.lstrip("*")] = digest
    return sums


def _previous_index(fs: Any, root: str) -> dict[str, Any]:
    text = _read_text(fs, f"{root}/{INDEX}")
    if text is None:
        return {}
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise FormatError(f"{root}/{INDEX} is not JSON ({e}); remove it to export everything again") from None
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise FormatError(f"{root}/{INDEX}: expected an export index of format {INDEX_FORMAT}, got "
                          f"{doc.get('format') if isinstance(doc, dict) else type(doc).__name__}; "
                          "remove it to export everything again")
    return doc


def _temp(path: str) -> str:
    """A short temp name beside `path`: the target's own name may be up to 255 bytes (publish
    and sync take such names), so appending to it would exceed the file system's limit."""
    head, _, _ = path.rpartition("/")
    name = f".zoostore-export-{os.getpid()}-{os.urandom(4).hex()}.tmp"
    return f"{head}/{name}" if head else name


def _failed(fs: Any, tmp: str, path: str, exc: BaseException) -> None:
    """After a failed write of `path`: its temp file goes (a cleanup that fails too, on a
    full or vanished disk, must not hide why), and an OSError names `path` (a full disk's
    write names no file)."""
    with contextlib.suppress(Exception):
        if fs.exists(tmp):
            fs.rm(tmp)
    if isinstance(exc, OSError):
        blame(exc, path)


def _write_small(fs: Any, path: str, data: bytes) -> None:
    """Write SHA256SUMS or index.json through a temp name: a full disk leaves the old file (or
    none), never a truncated one that `sha256sum -c` or a client would read."""
    tmp = _temp(path)
    try:
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, path)
    except BaseException as exc:
        _failed(fs, tmp, path, exc)
        raise


def _write_file(zoo: Store, fs: Any, path: str, entry: FileEntry, progress: Progress) -> str:
    """Write one blob to `path` through a temporary name; the file's SHA-256."""
    recipe = zoo.blobs.recipe(entry.blob)
    tmp = _temp(path)
    sha, b3 = hashlib.sha256(), blake3.blake3()
    progress.start(f"export {path}", recipe.size)
    try:
        with fs.open(tmp, "wb") as out:
            for chunk in zoo.blobs.iter_chunks(recipe):
                out.write(chunk)
                sha.update(chunk)
                b3.update(chunk)
                progress.advance(f"export {path}", len(chunk))
        if b3.hexdigest() != entry.blob.hex:
            raise IntegrityError(f"export of {path}: the assembled file hashes to blake3:{b3.hexdigest()}, "
                                 f"expected {entry.blob}; nothing was written. Run 'zoostore verify --repair'",
                                 obj=str(entry.blob), expected=entry.blob.hex, actual=b3.hexdigest())
        fs.mv(tmp, path)
    except BaseException as exc:
        _failed(fs, tmp, path, exc)
        raise
    finally:
        progress.done(f"export {path}")
    return sha.hexdigest()


def _already_there(fs: Any, path: str, entry: FileEntry) -> str | None:
    """The SHA-256 of the file at `path` if it holds the blob already though no index.json says
    so (an export stopped before writing it: a full disk, Ctrl-C), else None. The next run
    keeps such a file instead of writing it again, which needs room for a second copy."""
    try:
        if fs.size(path) != entry.size:
            return None
        sha, b3 = hashlib.sha256(), blake3.blake3()
        with fs.open(path, "rb") as f:
            while block := f.read(1 << 20):
                sha.update(block)
                b3.update(block)
    except OSError:
        return None
    return sha.hexdigest() if b3.hexdigest() == entry.blob.hex else None


def _export_version(zoo: Store, fs: Any, root: str, model: str, version: str,
                    files: Mapping[str, Mapping[str, FileEntry]], before: Mapping[str, Any],
                    report: ExportReport, progress: Progress) -> dict[str, Any]:
    vdir = f"{root}/{model}/{version}"
    old_sums = parse_sums(_read_text(fs, f"{vdir}/{SUMS}") or "")
    out: dict[str, Any] = {}
    sums: dict[str, str] = {}
    for arch in sorted(files):
        for path in sorted(files[arch]):
            entry = files[arch][path]
            rel = f"{arch}/{path}"
            target = f"{vdir}/{rel}"
            prev = before.get(arch, {}).get(path, {})
            sha = prev.get("sha256")
            if (prev.get("blob") == str(entry.blob) and sha and old_sums.get(rel) == sha
                    and fs.exists(target) and fs.size(target) == entry.size):
                report.skipped += 1
            elif (sha := _already_there(fs, target, entry)) is not None:
                report.skipped += 1
            else:
                fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                sha = _write_file(zoo, fs, target, entry, progress)
                report.written.append(f"{model}/{version}/{rel}")
                report.bytes_written += entry.size
            sums[rel] = sha
            out.setdefault(arch, {})[path] = {"sha256": sha, "size": entry.size, "blob": str(entry.blob)}
    if sums != old_sums:
        _write_small(fs, f"{vdir}/{SUMS}", "".join(f"{sums[p]}  {p}\n" for p in sorted(sums)).encode("utf-8"))
    return out


def export_store(zoo: Store, dest: str | os.PathLike[str], *, models: Sequence[str] | None = None,
                 storage_options: Mapping[str, Any] | None = None,
                 progress: Progress | None = None) -> ExportReport:
    """Export `models` (default: all) of `zoo` to `dest`, a directory or fsspec URL."""
    from fsspec.core import url_to_fs

    progress = progress or NullProgress()
    fs, root = url_to_fs(os.fspath(dest), **dict(storage_options or {}))
    root = root.rstrip("/") or "/"
    fs.makedirs(root, exist_ok=True)
    previous = _previous_index(fs, root).get("models", {})
    report = ExportReport(dest=os.fspath(dest))
    index: dict[str, Any] = {m: v for m, v in previous.items() if models and m not in models}
    for model in sorted(models or zoo.models()):
        manifest = zoo.manifest(model)
        versions: dict[str, Any] = {}
        for version, release in sorted(manifest.versions.items()):
            before = previous.get(model, {}).get("versions", {}).get(version, {}).get("files", {})
            files = _export_version(zoo, fs, root, model, version, release.files, before, report, progress)
            versions[version] = {"yanked": release.yanked, "files": files}
        index[model] = {"tags": dict(manifest.tags), "versions": versions}
    doc = {"format": INDEX_FORMAT, "store": zoo.url, "models": dict(sorted(index.items()))}
    _write_small(fs, f"{root}/{INDEX}", (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return report
