"""Publishing a model version: files in, manifest entry out.

Order matters for readers and for gc: blobs (packs, then recipes) are stored first, the
manifest entry last, with compare-and-swap. A crash in between leaves only unreferenced
objects, which gc sweeps after the grace period; it never leaves a manifest naming a missing
blob.

Re-publishing identical content for a (version, arch) succeeds and uploads nothing (CI
retries); different content is refused before anything is uploaded (and again at the CAS, in
case a concurrent publisher won).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zoostore.core import semver
from zoostore.storage.blobs import PutResult
from zoostore.core.digest import hash_file
from zoostore.core.errors import ConflictError, ImmutableError, InvalidPathError, ReadOnlyError, UsageError
from zoostore.documents.manifest import FileEntry, Manifest, Release, check_tag, immutable_message, now_utc
from zoostore.core.names import check_model_name, check_relpath, normalize_arch
from zoostore.core.progress import NullProgress, Progress
from zoostore.repository import Store

DESCRIPTOR = "model.toml"
BUILD_RECORD = "build.toml"
#: Dedup source: the chunks of this many most recent versions of the same model.
DEDUP_VERSIONS = 8


@dataclass
class PublishResult:
    model: str
    version: str
    arch: str
    files: dict[str, FileEntry]
    uploaded: list[PutResult] = field(default_factory=list)
    unchanged: bool = False  # identical content was already published
    warnings: list[str] = field(default_factory=list)

    @property
    def new_stored_bytes(self) -> int:
        return sum(r.new_stored_bytes for r in self.uploaded)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.files.values())


def collect_files(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Path]:
    """Relative path in the version -> local file. A file publishes under its name; a
    directory publishes its files under their paths relative to it (hidden files skipped)."""
    out: dict[str, Path] = {}

    def add(rel: str, path: Path) -> None:
        check_relpath(rel, where=str(path))
        if rel in out and out[rel].resolve() != path.resolve():
            raise UsageError(f"two files would publish as {rel!r}: {out[rel]} and {path}; publish them separately or rename one")
        out[rel] = path

    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.startswith("."):
                        continue
                    full = Path(root) / name
                    add(full.relative_to(p).as_posix(), full)
        elif p.is_file():
            add(p.name, p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    if not out:
        raise UsageError(f"nothing to publish in {', '.join(map(str, paths))}: no files found")
    return out


def _descriptor_meta(files: Mapping[str, Path]) -> tuple[dict[str, Any], str]:
    path = files.get(DESCRIPTOR)
    if path is None:
        return {}, ""
    from zoostore.documents.descriptor import ModelDescriptor

    desc = ModelDescriptor.load(path)
    return desc.to_meta(), getattr(desc, "summary", "") or ""


def _build_record(paths: Sequence[str | os.PathLike[str]]) -> tuple[dict[str, str], dict[str, Any]]:
    for p in map(Path, paths):
        if p.is_dir() and (p / BUILD_RECORD).is_file():
            from zoostore.integrations.tvm_build import read_build_record

            record = read_build_record(p)
            return dict(record.requires), dict(record.meta)
    return {}, {}


def publish(
    zoo: Store,
    model: str,
    version: str,
    paths: Sequence[str | os.PathLike[str]],
    *,
    arch: str = "any",
    tags: Sequence[str] = (),
    meta: Mapping[str, Any] | None = None,
    requires: Mapping[str, str] | None = None,
    summary: str | None = None,
    check: bool = True,
    progress: Progress | None = None,
    on_check: Callable[[Any], None] | None = None,
) -> PublishResult:
    """Publish files as `model@version` for `arch`; see the module docstring."""
    progress = progress or NullProgress()
    started = time.monotonic()
    check_model_name(model)
    semver.parse_version(version)
    arch = normalize_arch(arch)
    for t in tags:
        check_tag(t)
    if not zoo.backend.capabilities.writes:
        raise ReadOnlyError(f"{zoo.url} is read-only; publish to the store's s3:// or local URL instead")
    warnings: list[str] = []
    hint = semver.date_prerelease_hint(version)
    if hint:
        warnings.append(hint)
        progress.note(hint)

    files = collect_files(paths)
    model_meta, desc_summary = _descriptor_meta(files)
    build_requires, build_meta = _build_record(paths)
    all_requires = {**build_requires, **(requires or {})}
    for key, rng in all_requires.items():
        if not semver.is_range(rng):
            raise UsageError(f"--requires {key}={rng!r}: not a version range; expected e.g. {key}='>=0.27.0 <0.28.0'")
    version_meta = {**build_meta, **(meta or {})}

    if check:
        onnx_files = [p for rel, p in files.items() if rel.endswith(".onnx")]
        if onnx_files:
            from zoostore.core.errors import CheckFailedError
            from zoostore.integrations.onnx_check import check_model

            for path in onnx_files:
                report = check_model(path)
                if on_check:
                    on_check(report)
                if not report.ok:
                    raise CheckFailedError(
                        f"{model}@{version}: {path} failed the ONNX check: {'; '.join(report.problems)}. "
                        f"Fix the model, or publish with --no-check to skip the check"
                    )

    # Hash first: decide identical / conflicting before uploading anything.
    hashed = {rel: FileEntry(hash_file(p), p.stat().st_size) for rel, p in files.items()}
    try:
        current: Manifest | None = zoo.manifest(model)
    except FileNotFoundError:
        current = None
    if current is not None and version in current.versions:
        existing = current.versions[version].files.get(arch)
        if existing is not None:
            if dict(existing) != hashed:
                raise ImmutableError(immutable_message(model, version, arch, existing, hashed))
            result = PublishResult(model, version, arch, hashed, unchanged=True, warnings=warnings)
            if tags:
                _apply_tags(zoo, model, version, tags)
            return result

    known: dict[Any, Any] = {}
    if current is not None:
        recent = current.sorted_versions()[-DEDUP_VERSIONS:]
        blobs = {e.blob for v in recent for _, _, e in current.versions[v].blobs()}
        known = zoo.blobs.known_chunks(blobs)
    uploaded = zoo.blobs.put_files([files[rel] for rel in sorted(files)], known=known, progress=progress)
    for r in uploaded:  # the file must not have changed between hashing and chunking
        rel = next(k for k in files if files[k] == r.path)
        if r.blob != hashed[rel].blob:
            raise UsageError(f"{r.path} changed while it was being published; publish again")

    release = Release(model=model, version=version, published=now_utc(), files={arch: hashed},
                      requires=all_requires, meta=version_meta)

    def change(m: Manifest | None) -> Manifest:
        if m is None:
            m = Manifest(model=model)
        m = m.with_release(release)
        if summary is not None or (desc_summary and not m.summary):
            m = replace(m, summary=summary if summary is not None else desc_summary)
        if model_meta:
            m = replace(m, meta={**m.meta, **model_meta})
        for t in tags:
            m = m.with_tag(t, version)
        return m

    # gc's safety rule assumes a publish commits within half the grace period of its first
    # reuse decision (docs/gc.md); past that, objects it reused may already be collected.
    elapsed = time.monotonic() - started
    if elapsed > zoo.config.grace_seconds / 2:
        raise ConflictError(
            f"{model}@{version}: publishing took {elapsed:.0f} s, more than half the store's gc grace "
            f"period ({zoo.config.grace_seconds:.0f} s), so objects it reused may have been garbage-"
            f"collected meanwhile; nothing was published. Run the publish again (it re-uploads what is missing)"
        )
    zoo.update_manifest(model, change)
    return PublishResult(model, version, arch, hashed, uploaded=uploaded, warnings=warnings)


def _apply_tags(zoo: Store, model: str, version: str, tags: Sequence[str]) -> None:
    def change(m: Manifest | None) -> Manifest | None:
        if m is None:
            return None
        for t in tags:
            m = m.with_tag(t, version)
        return m

    zoo.update_manifest(model, change)


__all__ = ["InvalidPathError", "PublishResult", "collect_files", "publish"]
