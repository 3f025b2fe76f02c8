"""Publishing a model version: files in, manifest entry out. Plan, then execute.

`plan_publish` decides and changes nothing: it collects and hashes the files, runs the
caller's checker, reads the manifest and says which files are new blobs and which the store
holds, whether the (version, arch) entry is already published identically (a no-op, CI
retries) or differently (ImmutableError naming the differing hashes, before any upload).
`PublishPlan.execute` acts in two steps, `upload` then `commit`:

    upload   new blobs through the blob writer: packs, then recipes (reused old objects are
             freshened: the publisher's half of the gc handshake, docs/gc.md)
    commit   the final check, then the manifest entry and tags, with compare-and-swap
             (re-checked for a concurrent publisher of different content)

The final check confirms that every recipe the version names, and every pack those recipes
name, exists just before the manifest is written: the objects this publish uploaded, not only
those it reused. A gc run with a grace period shorter than the publish (unsafe, and warned)
can delete a publish's new packs before any manifest names them; the check sees that, deletes
the recipes that name a missing pack (no reader can use them), uploads the affected files
again without dedup, checks again, and fails with ConflictError if objects are still missing.
A listed version is never unreadable because of that race.

A crash between the two leaves only unreferenced objects, which gc sweeps after the grace
period; it never leaves a manifest naming a missing blob.

Cost against the model's history: hashing, chunking and uploading depend only on the files
published. The manifest is one TOML document per model (format 1), so reading and rewriting it
is linear in its versions; a publish does each once when no other writer intervenes (the plan's
read and CAS token seed the commit's compare-and-swap, `Store.update_manifest(current=...)`),
and every lookup in it is a dictionary lookup (zoostore.documents.manifest).

Checks of the files (the ONNX checker) are a parameter: this layer imports no integration.
`zoostore.publish` and `zoostore publish` pass the ONNX check by default.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from zoostore.core import semver
from zoostore.core.digest import Digest, hash_file
from zoostore.core.errors import BlobNotFoundError, ConflictError, ImmutableError, InvalidPathError, NotFoundError, ReadOnlyError, UsageError
from zoostore.core.names import ANY, check_model_name, normalize_arch
from zoostore.core.progress import NullProgress, Progress
from zoostore.core.records import dataclass
from zoostore.core.units import human_bytes
from zoostore.documents.manifest import FileEntry, Manifest, Release, check_tag, immutable_error, meta_conflicts, now_utc
from zoostore.ops.publish_inputs import (check_machines, collect_files, descriptor_meta, refuse_lfs_pointers,
                                      requires_meta)
from zoostore.repository import Store
from zoostore.storage.writer import PutResult
from zoostore.storage.pack import pack_key
from zoostore.storage.recipe import ChunkRef, blob_key
from zoostore.storage.writer import FileStamp, Hashed

if TYPE_CHECKING:
    from zoostore.ops.prehash import Prehash

#: Dedup source: the chunks of this many most recent versions of the same model.
DEDUP_VERSIONS = 8

#: Checks the files about to be published (all of them; it picks what it understands) and
#: raises a ZooError (CheckFailedError) to refuse them. Its return value is ignored.
Checker = Callable[[Sequence[Path]], object]


@dataclass
class PublishResult:
    """What a publish did: the version's files, what was uploaded, and whether it was already there."""

    model: str
    version: str
    arch: str
    files: dict[str, FileEntry]
    uploaded: list[PutResult] = field(default_factory=list)
    unchanged: bool = False  # identical content was already published
    warnings: list[str] = field(default_factory=list)
    skipped_hidden: tuple[str, ...] = ()  # as PublishPlan's

    @property
    def new_stored_bytes(self) -> int:
        return sum(r.new_stored_bytes for r in self.uploaded)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.files.values())


@dataclass
class PublishPlan:
    """What a publish will do; `str(plan)` says it, `execute` does it (see the module docstring)."""

    store: Store
    model: str
    version: str
    arch: str
    files: dict[str, Path]  # path in the version -> local file
    entries: dict[str, FileEntry]  # path in the version -> blob and size, hashed at plan time
    present: frozenset[Digest]  # blobs the store held at plan time
    release: Release  # the entry to add (its `published` time is set again at commit)
    tags: tuple[str, ...] = ()
    summary: str | None = None  # explicit summary (replaces the model's)
    desc_summary: str = ""  # from model.toml (only fills an empty summary)
    model_meta: dict[str, Any] = field(default_factory=dict)
    unchanged: bool = False  # (version, arch) already published with these bytes
    known: dict[Digest, ChunkRef] = field(default_factory=dict, repr=False)  # dedup index
    #: path -> the blob of that path in the newest other version (delta bases; delta stores only)
    previous: dict[str, Digest] = field(default_factory=dict, repr=False)
    warnings: list[str] = field(default_factory=list)
    #: Hidden files and directories (`dir/` ones) of the published directories, not published.
    skipped_hidden: tuple[str, ...] = ()
    started: float = field(default_factory=time.monotonic)  # the first reuse decision
    uploaded: list[PutResult] | None = None  # set by `upload`
    stamps: dict[str, FileStamp] = field(default_factory=dict, repr=False)  # stat before hashing
    #: The manifest as the plan read it and its CAS token: the commit's first compare-and-swap
    #: starts from it, so an uncontended publish parses the manifest once (module docstring).
    base: tuple[Manifest | None, str | None] | None = field(default=None, repr=False)

    @property
    def new_files(self) -> list[str]:
        """Paths whose blob the store does not hold: these get chunked and uploaded."""
        return sorted(p for p, e in self.entries.items() if e.blob not in self.present)

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries.values())

    def __str__(self) -> str:
        head = f"publish {self.model}@{self.version} ({self.arch}) to {self.store.url}"
        lines = [head]
        new = set(self.new_files)
        for path, entry in sorted(self.entries.items()):
            state = "new" if path in new else "in store"
            lines.append(f"  {state:8}  {entry.blob}  {human_bytes(entry.size):>10}  {path}")
        if self.unchanged:
            lines.append(f"already published with identical content: nothing to upload"
                         f"{', only tags to set' if self.tags else ''}")
        else:
            new_bytes = sum(self.entries[p].size for p in new)
            lines.append(f"{len(self.entries)} file(s), {human_bytes(self.size)}; {len(new)} new "
                         f"blob(s), {human_bytes(new_bytes)} to chunk (only chunks the store lacks are uploaded)")
        if self.tags:
            lines.append(f"tags: {', '.join(f'{t} -> {self.version}' for t in self.tags)}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def execute(self, progress: Progress | None = None) -> PublishResult:
        """Upload, then commit. An unchanged plan uploads nothing and only sets its tags."""
        if self.unchanged:
            if self.tags:
                self.store.update_manifest(self.model, self._tag_change, current=self.base)
            self.store.refresh_index(add=self.model)   # see commit()
            return self._result()
        self.upload(progress)
        return self.commit()

    def upload(self, progress: Progress | None = None) -> list[PutResult]:
        """Store the files' blobs (packs, then recipes). Raises ConflictError when gc deleted an
        object this publish reused; nothing is committed then, and publishing again re-uploads."""
        files, hashed, previous = self.upload_inputs()
        uploaded = self.store.blobs.put_files(files, known=self.known, progress=progress or NullProgress(),
                                              hashed=hashed, previous=previous)
        self.uploaded_as(uploaded)
        return uploaded

    def upload_inputs(self) -> tuple[list[Path], list[Hashed | None], list[Digest | None]]:
        """What `upload` hands the blob writer, in path order: the local files, their hashes
        from the plan (a file is hashed once; one that changed since is refused) and the blobs
        of their previous versions (delta bases)."""
        ordered = sorted(self.files)
        hashed = [Hashed(self.entries[p].blob, self.stamps[p]) if p in self.stamps else None for p in ordered]
        return [self.files[p] for p in ordered], hashed, [self.previous.get(p) for p in ordered]

    def uploaded_as(self, uploaded: list[PutResult]) -> None:
        """Take the writer's results for `upload_inputs()` (checked: nothing changed since the plan)."""
        self._check_unchanged(sorted(self.files), uploaded)
        self.uploaded = uploaded

    def _check_unchanged(self, paths: list[str], uploaded: list[PutResult]) -> None:
        for path, r in zip(paths, uploaded, strict=True):  # the file must not change after hashing
            if r.blob != self.entries[path].blob:
                raise UsageError(f"{r.path} changed while it was being published (hashed "
                                 f"{self.entries[path].blob}, stored {r.blob}); publish again")

    def commit(self) -> PublishResult:
        """Add the entry and the tags to the manifest with compare-and-swap."""
        if self.uploaded is None:
            raise UsageError(f"{self.model}@{self.version}: commit before upload; call execute()")
        # gc's safety rule assumes a publish commits within half the grace period of its first
        # reuse decision (docs/gc.md); past that, objects it reused may already be collected.
        elapsed = time.monotonic() - self.started
        grace = self.store.config.grace_seconds
        if elapsed > grace / 2:
            raise ConflictError(
                f"{self.model}@{self.version}: publishing took {elapsed:.0f} s, more than half the store's gc "
                f"grace period ({grace:.0f} s), so objects it reused may have been garbage-collected "
                f"meanwhile; nothing was published. Run the publish again (it re-uploads what is missing)"
            )
        self._confirm_stored()
        release = replace(self.release, published=now_utc())
        self.store.update_manifest(self.model, lambda m: self._change(m, release), current=self.base)
        # One read when the index lists the model already; it heals an index that a first publish
        # left without it (its index update failed after the manifest was written: a lock held
        # past lock_wait), which readers that cannot list (HTTPS mirrors) rely on.
        self.store.refresh_index(add=self.model)
        return self._result()

    def _missing(self) -> dict[Digest, list[str]]:
        """Blob -> the keys of its recipe or packs that the store does not hold now (existence
        is asked of the store; a cached recipe is re-read before a pack is called missing)."""
        backend, blobs = self.store.backend, self.store.blobs
        packs_seen: dict[str, bool] = {}

        def gone_packs(blob: Digest) -> list[str]:
            try:
                recipe = blobs.recipe(blob)
                keys = [pack_key(p) for p in recipe.packs]
                if recipe.against is not None:  # stored as edits: read with its base recipe
                    keys.append(blob_key(recipe.against))
            except BlobNotFoundError:
                return [blob_key(blob)]
            for k in keys:
                if k not in packs_seen:
                    packs_seen[k] = backend.exists(k)
            return [k for k in keys if not packs_seen[k]]

        missing: dict[Digest, list[str]] = {}
        for blob in sorted({e.blob for e in self.entries.values()}, key=str):
            if not backend.exists(blob_key(blob)):
                missing[blob] = [blob_key(blob)]
                continue
            gone = gone_packs(blob)
            if gone:
                blobs.forget(blob)  # gc --repack may have rewritten it: ask the store's copy
                gone = gone_packs(blob)
            if gone:
                missing[blob] = gone
        return missing

    def _confirm_stored(self) -> None:
        """The final check (module docstring): repair once by uploading again, else fail."""
        missing = self._missing()
        if not missing:
            return
        backend, blobs = self.store.backend, self.store.blobs
        # A recipe naming a missing pack is useless to every reader; deleting it lets the
        # upload below write a correct one (recipes are put-if-absent).
        backend.delete([blob_key(b) for b, keys in missing.items() if blob_key(b) not in keys])
        blobs.forget(None)
        self.known = {}  # the dedup index may name the deleted packs
        paths = sorted(p for p, e in self.entries.items() if e.blob in missing)
        again = blobs.put_files([self.files[p] for p in paths], known={})
        self._check_unchanged(paths, again)
        self.uploaded = list(self.uploaded or []) + again
        still = self._missing()
        if still:
            blob, keys = next(iter(still.items()))
            raise ConflictError(
                f"{self.model}@{self.version}: {keys[0]} (needed by blob {blob}) was deleted from "
                f"{self.store.url} while this publish ran, and again after it was uploaded anew; "
                f"nothing was published. A 'zoostore gc' with a grace period shorter than a "
                f"publish is running: let it finish or give it a longer --grace, then publish again"
            )

    def _change(self, m: Manifest | None, release: Release) -> Manifest:
        m = (m or Manifest(model=self.model)).with_release(release)
        if self.summary is not None or (self.desc_summary and not m.summary):
            m = replace(m, summary=self.summary if self.summary is not None else self.desc_summary)
        if self.model_meta:
            m = replace(m, meta={**m.meta, **self.model_meta})
        return self._with_tags(m)

    def _tag_change(self, m: Manifest | None) -> Manifest | None:
        return None if m is None else self._with_tags(m)

    def _with_tags(self, m: Manifest) -> Manifest:
        for t in self.tags:
            m = m.with_tag(t, self.version)
        return m

    def _result(self) -> PublishResult:
        return PublishResult(self.model, self.version, self.arch, dict(self.entries),
                             uploaded=list(self.uploaded or []), unchanged=self.unchanged,
                             warnings=list(self.warnings), skipped_hidden=self.skipped_hidden)


def _check_request(store: Store, model: str, version: str, arch: str, tags: Sequence[str],
                   new_arch: bool = False) -> str:
    """Validate the names; the normalised arch (an unknown one only with `new_arch`)."""
    check_model_name(model)
    semver.parse_version(version)
    for t in tags:
        check_tag(t)
    if not store.backend.capabilities.writes:
        raise ReadOnlyError(f"{store.url} is read-only; publish to the store's s3:// or local URL instead")
    return normalize_arch(arch, allow_new=new_arch)


def _canonical_version(current: Manifest | None, model: str, version: str) -> str:
    """The version's key: the published one of equal precedence if any (the first publish's
    build metadata, e.g. Autoware's `+20220504`, stays in the key), else the canonical text
    (no `v`/`=` prefix). Equal precedence is one version: different bytes are refused later."""
    canonical = str(semver.parse_version(version))
    same = current.same_version(canonical) if current is not None else None
    return same if same is not None else canonical


def _is_published(current: Manifest | None, release: Release, arch: str, requested: str) -> bool:
    """True when (version, arch) holds exactly these files; ImmutableError when it holds others."""
    existing = current.versions.get(release.version) if current is not None else None
    published = existing.files.get(arch) if existing is not None else None
    if published is None:
        return False
    new = release.files[arch]
    if dict(published) != dict(new):
        same = (f"\n({requested} and {release.version} are equal in precedence, so they are one version; "
                "build metadata and a v/= prefix do not make a new one.)") if requested != release.version else ""
        raise immutable_error(release.model, release.version, arch, published, new, note=same)
    changed = meta_conflicts(existing.meta, release.meta)  # type: ignore[union-attr]
    if changed:
        keys = " ".join(f"{k}={new!r}" for k, (_, new) in sorted(changed.items()))
        raise ImmutableError(
            f"{release.model}@{release.version} ({arch}) is already published with these files but "
            f"other metadata ({', '.join(f'{k}: {old!r} -> {new!r}' for k, (old, new) in sorted(changed.items()))}); "
            f"publish never rewrites metadata. To change it, run: zoostore meta STORE "
            f"{release.model} {release.version} {keys}")
    return True


def edit_meta(store: Store, model: str, version: str, changes: Mapping[str, Any]) -> Release:
    """Set (or, with value None, remove) keys of one version's metadata; its files stay."""
    if not changes:
        raise UsageError("zoostore meta: nothing to change; expected KEY=VALUE pairs, e.g. dataset=coco17")

    def change(m: Manifest | None) -> Manifest:
        if m is None:
            raise NotFoundError(f"no model {model!r} in {store.url}; publish it first")
        key = m.same_version(version)
        if key is None:
            raise NotFoundError(f"{model} has no version {version}; versions: {', '.join(m.sorted_versions()) or 'none'}")
        r = m.versions[key]
        meta = {k: v for k, v in {**r.meta, **changes}.items() if v is not None}
        return replace(m, versions={**m.versions, key: replace(r, meta=meta)})

    updated = store.update_manifest(model, change)
    assert updated is not None
    return updated.versions[updated.same_version(version) or version]


def _hash_files(files: Mapping[str, Path], stamps: Mapping[str, FileStamp], progress: Progress,
                task: str, prehash: Prehash | None = None) -> dict[str, FileEntry]:
    """Each file's blob id, with a progress bar over their bytes (a large release hashes for a
    while); taken from `prehash` where it hashed the file as its stamp still says."""
    progress.start(task, sum(s.size for s in stamps.values()))
    try:
        entries = {}
        for rel, path in files.items():
            s = stamps[rel]
            found = prehash.take(path, (s.size, s.mtime_ns, s.inode)) if prehash is not None else None
            entries[rel] = FileEntry(found or hash_file(path), s.size)
            progress.advance(task, s.size)
        return entries
    finally:
        progress.done(task)


def _dedup_index(store: Store, current: Manifest | None) -> dict[Digest, ChunkRef]:
    """Chunks of the model's recent versions: new files reuse them instead of uploading."""
    if current is None:
        return {}
    recent = current.sorted_versions()[-DEDUP_VERSIONS:]
    blobs = {e.blob for v in recent for _, _, e in current.versions[v].blobs()}
    return store.blobs.known_chunks(blobs)


def plan_publish(
    store: Store,
    model: str,
    version: str,
    paths: Sequence[str | os.PathLike[str]],
    *,
    arch: str = "any",
    tags: Sequence[str] = (),
    meta: Mapping[str, Any] | None = None,
    requires: Mapping[str, str] | None = None,
    summary: str | None = None,
    check: Checker | None = None,
    progress: Progress | None = None,
    new_arch: bool = False,
    follow_symlinks: bool = False,
    prehash: Prehash | None = None,
) -> PublishPlan:
    """Decide what publishing `paths` as `model@version` for `arch` does; change nothing.
    `check` (e.g. the ONNX check) sees every local file before anything is hashed; a mapping
    it returns is merged into the version's metadata, under the explicit `meta`. `prehash`
    (zoostore.ops.prehash) may hold the files' hashes already."""
    progress = progress or NullProgress()
    started = time.monotonic()
    arch = _check_request(store, model, version, arch, tags, new_arch)
    warnings = [w for w in (semver.date_prerelease_hint(version), store.cas_warning()) if w]
    base = store.manifest_versioned(model)
    current = base[0]
    if current is None:
        store.check_new_model(model)  # again at the commit, which a concurrent publisher may precede
    requested, version = version, _canonical_version(current, model, version)
    hidden: list[str] = []
    files = collect_files(paths, follow_symlinks=follow_symlinks, skipped=hidden)
    refuse_lfs_pointers(files)
    check_machines(files, arch, paths)
    model_meta, desc_summary = descriptor_meta(files)
    all_requires, version_meta = requires_meta(paths, requires, meta)
    version_meta = {**model_meta, **version_meta}  # the descriptor describes this version too
    if check is not None:
        found = check([files[rel] for rel in sorted(files)])
        if isinstance(found, Mapping):  # what the check learnt (ONNX metadata); explicit --meta wins
            version_meta = {**found, **version_meta}
    stamps = {rel: FileStamp.of(p) for rel, p in files.items()}  # before hashing (upload checks them)
    entries = _hash_files(files, stamps, progress, f"hash {model}", prehash)
    release = Release(model=model, version=version, published=now_utc(), files={arch: entries},
                      requires=all_requires, meta=version_meta)
    if current is not None:
        current.check_not_removed(version, {e.blob for e in entries.values()})
    unchanged = _is_published(current, release, arch, requested)
    if not unchanged:
        warnings += _shadowed(current, model, version, arch, entries)
    blobs = {e.blob for e in entries.values()}
    present = blobs if unchanged else {b for b in blobs if store.blobs.has_blob(b)}
    known = {} if unchanged or present == blobs else _dedup_index(store, current)
    previous = current.previous_blobs(version, arch, entries) if store.config.delta and current and known else {}
    for w in warnings:
        progress.note(w)
    return PublishPlan(store, model, version, arch, files, entries, frozenset(present), release,
                       tags=tuple(tags), summary=summary, desc_summary=desc_summary,
                       model_meta=model_meta, unchanged=unchanged, known=known, previous=previous,
                       warnings=warnings, skipped_hidden=tuple(hidden), started=started, stamps=stamps, base=base)


def _shadowed(current: Manifest | None, model: str, version: str, arch: str,
              entries: Mapping[str, FileEntry]) -> list[str]:
    """Warnings for paths this version also holds under `any` (publishing an arch) or under an
    arch (publishing `any`) with other bytes: a consumer on that arch gets the arch's file.
    They name the model: publish-release plans several, and a terminal says a text once."""
    published = current.versions.get(version) if current is not None else None
    if published is None:
        return []
    pairs = ([(arch, published.files.get(ANY, {}))] if arch != ANY else
             [(a, files) for a, files in sorted(published.files.items()) if a != ANY])
    out = []
    for target, other in pairs:
        differ = sorted(p for p in entries if p in other and other[p].blob != entries[p].blob)
        if differ:
            shown = ", ".join(differ[:5]) + (f" and {len(differ) - 5} more" if len(differ) > 5 else "")
            out.append(f"{model}@{version} already has {shown} under "
                       f"{'any' if arch != ANY else target} with other bytes: consumers on {target} "
                       f"get the {target} file{'s' if len(differ) > 1 else ''} (an architecture's file replaces "
                       f"the 'any' file of the same path)")
    return out


def publish(
    store: Store,
    model: str,
    version: str,
    paths: Sequence[str | os.PathLike[str]],
    *,
    check: Checker | Literal[False] | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> PublishResult:
    """`plan_publish(...).execute(progress)`, with `plan_publish`'s keyword options (arch, tags,
    meta, requires, summary, new_arch, follow_symlinks). `check=None` (or False, the spelling of
    callers written when this was a boolean) runs no check; `zoostore.publish` runs the ONNX check."""
    if check is True:  # type: ignore[comparison-overlap]  # a caller from before the checker callback
        raise UsageError("publish(check=True): this layer has no default check; pass a checker, or "
                         "call zoostore.publish, which runs the ONNX check by default")
    plan = plan_publish(store, model, version, paths, check=check or None, progress=progress, **options)
    return plan.execute(progress)


__all__ = ["Checker", "InvalidPathError", "PublishPlan", "PublishResult", "collect_files", "edit_meta", "plan_publish", "publish"]
