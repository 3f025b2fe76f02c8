"""Model manifests: every version of one model, its tags and its files per architecture.

    <store>/manifests/<model>.toml

    format = 1
    model = "yolo-v2-tiny"
    summary = "Camera obstacle detection, COCO"
    [meta]                                   # model-level (model.toml descriptor)
    [tags]                                   # bleedingedge = "1.3.0-dev.7"
    [versions."1.2.0"]
    published = 2026-11-22T10:00:00Z
    yanked = ""                              # non-empty = reason
    requires = { tvm = ">=0.27.0 <0.28.0" }
    meta = { dataset = "coco17" }
    [versions."1.2.0".files.any]
    "model.onnx" = { blob = "blake3:…", size = 21678 }
    [versions."1.2.0".files.x86_64]
    "deploy_lib.so" = { blob = "blake3:…", size = 92072 }

Values here are immutable; `with_*` methods return changed copies. Parsing validates every key
and names the file and key of the first problem.

Queries cost what they answer, not the history: the sorted versions, `latest`, the tags of each
version and the version of each precedence are computed once per Manifest value (it is frozen)
and then looked up, so listing N versions with their tags is O(N log N), not O(N²) (`ls` and
`catalog` of a 2,000-version model took 21 s when every row recomputed `latest`).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import field, replace
from functools import cached_property
from typing import Any

from zoostore.core import semver
from zoostore.core.digest import Digest
from zoostore.core.errors import FormatError, ImmutableError, NotFoundError, UsageError, ZooError
from zoostore.core.names import ANY, check_model_name, check_relpath, normalize_arch
from zoostore.core.records import dataclass
from zoostore.core.tomldoc import load_versioned

FORMAT = 1
#: Tag names that cannot be set because they mean something already.
RESERVED_TAGS = {"latest"}


def manifest_key(model: str) -> str:
    return f"manifests/{model}.toml"


#: The largest file a manifest may list (256 TiB, the largest a recipe can address).
MAX_FILE_SIZE = 2**48


@dataclass(frozen=True, slots=True)
class FileEntry:
    """A file of a published version: its blob id and size."""

    blob: Digest
    size: int


@dataclass(frozen=True)
class Release:
    """One published version of a model."""

    model: str
    version: str
    published: dt.datetime
    files: Mapping[str, Mapping[str, FileEntry]]  # arch -> path -> entry
    yanked: str = ""
    requires: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def archs(self) -> list[str]:
        return sorted(self.files)

    @property
    def size(self) -> int:
        return sum(e.size for files in self.files.values() for e in files.values())

    def files_for(self, arch: str) -> dict[str, FileEntry]:
        """The files a consumer on `arch` gets: architecture-independent ones plus `arch`'s."""
        out = dict(self.files.get(ANY, {}))
        if arch != ANY:
            out.update(self.files.get(arch, {}))
        return out

    def blobs(self) -> Iterator[tuple[str, str, FileEntry]]:
        for arch, files in sorted(self.files.items()):
            for path, entry in sorted(files.items()):
                yield arch, path, entry



def merge_meta(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """A version's metadata with a later publish's (another architecture of the version): keys
    of `new` win, and where both hold a table the tables are merged one level deep, so that
    per-architecture tables (`builds.<arch>`, `onnx.<path>`) add up instead of the last
    publish's replacing the others'."""
    out = dict(old)
    for key, value in new.items():
        before = out.get(key)
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            out[key] = {**before, **value}
        else:
            out[key] = value
    return out


def meta_conflicts(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys (`table.key` one level into tables) where `new` would change a value `old`
    holds: what publishing the same files again must not do (publish never rewrites metadata)."""
    out: dict[str, tuple[Any, Any]] = {}
    for key, value in new.items():
        if key not in old:
            continue
        before = old[key]
        if isinstance(before, Mapping) and isinstance(value, Mapping):
            out.update({f"{key}.{k}": (before[k], v) for k, v in value.items() if k in before and before[k] != v})
        elif before != value:
            out[key] = (before, value)
    return out

@dataclass(frozen=True)
class Manifest:
    """A model's manifest: every published version, its tags, summary and metadata, and what gc removed."""

    model: str
    versions: Mapping[str, Release] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    summary: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)
    format: int = FORMAT
    #: Tombstones: version gc removed -> the blobs it held. Its number is never reused for
    #: other bytes. Written as an optional `[removed."1.0.0"]` table, which format-1 readers
    #: ignore (parse reads only the keys it knows), so the format stays 1.
    removed: Mapping[str, frozenset[Digest]] = field(default_factory=dict)

    # ------------------------------------------------------------- queries
    # The cached properties below are derived from fields of a frozen value: computed on first
    # use, never stale (`replace` makes a new Manifest with an empty cache).
    @cached_property
    def _by_precedence(self) -> dict[object, str]:
        out: dict[object, str] = {}
        for v in self.versions:
            out.setdefault(semver.parse_version(v).key, v)
        return out

    @cached_property
    def _removed_by_precedence(self) -> dict[object, list[str]]:
        out: dict[object, list[str]] = {}
        for v in self.removed:
            out.setdefault(semver.parse_version(v).key, []).append(v)
        return out

    @cached_property
    def _sorted(self) -> tuple[str, ...]:
        return tuple(sorted(self.versions, key=semver.parse_version))

    @cached_property
    def _latest(self) -> str | None:
        for v in reversed(self._sorted):
            if not self.versions[v].yanked and not semver.parse_version(v).is_prerelease:
                return v
        return None

    @cached_property
    def _tags_by_version(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for t, v in self.tags.items():
            out.setdefault(v, []).append(t)
        if self._latest is not None:
            out.setdefault(self._latest, []).append("latest")
        return {v: sorted(ts) for v, ts in out.items()}

    def same_version(self, version: str) -> str | None:
        """The published version equal in precedence to `version` (build metadata and a
        `v`/`=` prefix ignored), or None. One precedence, one version, one content."""
        return self._by_precedence.get(semver.parse_version(version).key)

    def check_not_removed(self, version: str, blobs: set[Digest]) -> None:
        """ImmutableError when gc removed a version of equal precedence that held other bytes."""
        key = semver.parse_version(version).key
        for v in self._removed_by_precedence.get(key, ()):
            if not blobs <= self.removed[v]:
                raise ImmutableError(
                    f"{self.model}@{version}: version {v} was published before and removed by gc with "
                    f"other content; a version number is never reused for other bytes. "
                    f"Publish a new version instead (e.g. bump the patch number).")

    def sorted_versions(self) -> list[str]:
        return list(self._sorted)

    def previous_blobs(self, version: str, arch: str, paths: Iterable[str]) -> dict[str, Digest]:
        """Path -> its blob in the newest other version of `arch` (publish's delta bases)."""
        out: dict[str, Digest] = {}
        todo = set(paths)
        for v in reversed(self._sorted):
            files = self.versions[v].files.get(arch, {}) if v != version else {}
            for path in todo & files.keys():
                out[path] = files[path].blob
            todo -= out.keys()
        return out

    def latest(self) -> str | None:
        """Highest non-prerelease, non-yanked version."""
        return self._latest

    def tags_of(self, version: str) -> list[str]:
        """The tags pointing at `version`, `latest` included when it is the latest; sorted."""
        return list(self._tags_by_version.get(version, ()))

    # ------------------------------------------------------------- changes
    def with_release(self, release: Release) -> Manifest:
        """Add a version, or new architectures to an existing version. Identical content again
        is a no-op; different content for a published (version, arch) raises ImmutableError.
        A version equal in precedence to a published one is that one (its key is kept); one
        gc removed is refused with other bytes."""
        same = self.same_version(release.version)
        if same is not None and same != release.version:
            release = replace(release, version=same)
        self.check_not_removed(release.version, {e.blob for _, _, e in release.blobs()})
        existing = self.versions.get(release.version)
        if existing is None:
            return replace(self, versions={**self.versions, release.version: release})
        merged = dict(existing.files)
        for arch, files in release.files.items():
            old = existing.files.get(arch)
            if old is None:
                merged[arch] = files
                continue
            if dict(old) != dict(files):
                raise immutable_error(self.model, release.version, arch, old, files)
        requires = dict(existing.requires)
        requires.update(release.requires)
        updated = replace(existing, files=merged, requires=requires, meta=merge_meta(existing.meta, release.meta))
        return replace(self, versions={**self.versions, release.version: updated})

    def with_tag(self, tag: str, version: str | None) -> Manifest:
        check_tag(tag)
        tags = dict(self.tags)
        if version is None:
            tags.pop(tag, None)
        else:
            if version not in self.versions:
                raise NotFoundError(f"cannot tag {self.model}@{version} as {tag!r}: no such version; "
                                 f"versions: {', '.join(self.sorted_versions()) or 'none'}")
            tags[tag] = version
        return replace(self, tags=tags)

    def with_yank(self, version: str, reason: str) -> Manifest:
        if version not in self.versions:
            raise NotFoundError(f"{self.model} has no version {version}; versions: {', '.join(self.sorted_versions()) or 'none'}")
        return replace(self, versions={**self.versions, version: replace(self.versions[version], yanked=reason)})

    def without_versions(self, drop: set[str]) -> Manifest:
        return replace(self, versions={v: r for v, r in self.versions.items() if v not in drop},
                       tags={t: v for t, v in self.tags.items() if v not in drop})

    def drop_versions(self, drop: set[str]) -> Manifest:
        """Remove versions and remember each one's blobs as a tombstone (what gc must call)."""
        removed = dict(self.removed)
        for v in drop:
            if v in self.versions:
                blobs = {e.blob for _, _, e in self.versions[v].blobs()}
                removed[v] = frozenset(blobs | set(removed.get(v, frozenset())))
        return replace(self.without_versions(drop), removed=removed)

    # ------------------------------------------------------------- TOML
    def to_toml(self) -> str:
        doc: dict[str, Any] = {"format": self.format, "model": self.model}
        if self.summary:
            doc["summary"] = self.summary
        doc["meta"] = dict(self.meta)
        doc["tags"] = dict(sorted(self.tags.items()))
        versions: dict[str, Any] = {}
        for v in self.sorted_versions():
            r = self.versions[v]
            entry: dict[str, Any] = {"published": r.published, "yanked": r.yanked}
            if r.requires:
                entry["requires"] = dict(sorted(r.requires.items()))
            if r.meta:
                entry["meta"] = dict(r.meta)
            entry["files"] = {
                arch: {p: {"blob": str(e.blob), "size": e.size} for p, e in sorted(files.items())}
                for arch, files in sorted(r.files.items())
            }
            versions[v] = entry
        doc["versions"] = versions
        if self.removed:
            doc["removed"] = {v: {"blobs": sorted(str(b) for b in self.removed[v])}
                              for v in sorted(self.removed, key=semver.parse_version)}
        import tomli_w  # only when writing: a sync reads these and never writes them

        return f"# zoostore manifest of {self.model}: written by zoostore publish/tag/yank/gc\n" + tomli_w.dumps(doc)

    @classmethod
    def parse(cls, text: str, *, where: str) -> Manifest:
        doc, fmt = load_versioned(text, where=where, supported=FORMAT)
        model = _get(doc, "model", str, where)
        try:
            check_model_name(model)
        except UsageError as exc:
            raise FormatError(f"{where}: model: {exc}") from None
        tags = _get(doc, "tags", dict, where, default={})
        for t, v in tags.items():
            if not isinstance(v, str):
                raise FormatError(f"{where}: tags.{t}: expected a version string, got {v!r}")
        versions: dict[str, Release] = {}
        for v, body in _get(doc, "versions", dict, where, default={}).items():
            vwhere = f'versions."{v}"'
            try:
                semver.parse_version(v)
            except ZooError as exc:
                raise FormatError(f"{where}: {vwhere}: {exc}") from None
            if not isinstance(body, dict):
                raise FormatError(f"{where}: {vwhere}: expected a table")
            published = body.get("published")
            if isinstance(published, dt.datetime):
                if published.tzinfo is None:
                    published = published.replace(tzinfo=dt.timezone.utc)
            else:
                raise FormatError(f"{where}: {vwhere}.published: expected a date-time, got {published!r}")
            files: dict[str, dict[str, FileEntry]] = {}
            for arch, entries in _get(body, "files", dict, f"{where}: {vwhere}", default={}).items():
                try:
                    norm = normalize_arch(arch, allow_new=True)
                except UsageError as exc:
                    raise FormatError(f"{where}: {vwhere}.files.{arch}: {exc}") from None
                if norm in files:
                    raise FormatError(f"{where}: {vwhere}.files: two keys name the architecture {norm} "
                                      f"({arch!r} and another alias); merge them into one [files.{norm}] table")
                if not isinstance(entries, dict):
                    raise FormatError(f"{where}: {vwhere}.files.{arch}: expected a table of files")
                files[norm] = {}
                for path, e in entries.items():
                    fwhere = f'{where}: {vwhere}.files.{arch}."{path}"'
                    try:
                        check_relpath(path)
                    except ZooError as exc:
                        raise FormatError(f"{fwhere}: {exc}") from None
                    _check_file_entry(e, fwhere)
                    try:
                        files[norm][path] = FileEntry(Digest.parse(e["blob"]), e["size"])
                    except ZooError as exc:
                        raise FormatError(f"{fwhere}.blob: {exc}") from None
            versions[v] = Release(
                model=model, version=v, published=published, files=files,
                yanked=str(body.get("yanked", "")),
                requires={str(k): str(x) for k, x in _get(body, "requires", dict, f"{where}: {vwhere}", default={}).items()},
                meta=_get(body, "meta", dict, f"{where}: {vwhere}", default={}),
            )
        return cls(model=model, versions=versions, tags=tags,
                   summary=_get(doc, "summary", str, where, default=""),
                   meta=_get(doc, "meta", dict, where, default={}), format=fmt,
                   removed=_parse_removed(doc, where))


def _parse_removed(doc: Mapping[str, Any], where: str) -> dict[str, frozenset[Digest]]:
    out: dict[str, frozenset[Digest]] = {}
    for v, body in _get(doc, "removed", dict, where, default={}).items():
        rwhere = f'{where}: removed."{v}"'
        blobs = body.get("blobs") if isinstance(body, dict) else None
        if not isinstance(blobs, list) or not all(isinstance(b, str) for b in blobs):
            raise FormatError(f"{rwhere}: expected {{ blobs = [\"blake3:…\", …] }}, got {body!r}")
        try:
            semver.parse_version(v)
            out[v] = frozenset(Digest.parse(b) for b in blobs)
        except ZooError as exc:
            raise FormatError(f"{rwhere}: {exc}") from None
    return out


def _check_file_entry(e: Any, where: str) -> None:
    if not isinstance(e, dict) or not isinstance(e.get("blob"), str) or not isinstance(e.get("size"), int):
        raise FormatError(f"{where}: expected {{ blob = \"blake3:…\", size = N }}, got {e!r:.200}")
    if isinstance(e["size"], bool) or not 0 <= e["size"] <= MAX_FILE_SIZE:
        raise FormatError(f"{where}.size: expected a byte count from 0 to {MAX_FILE_SIZE}, got {e['size']!r}")


def _get(doc: Mapping[str, Any], key: str, kind: type, where: str, default: Any = None) -> Any:
    value = doc.get(key, default)
    if value is None or not isinstance(value, kind):
        raise FormatError(f"{where}: key {key!r}: expected {kind.__name__}, got {value!r}")
    return value


def check_tag(tag: str) -> str:
    if tag in RESERVED_TAGS:
        raise UsageError(f"tag {tag!r} is implicit (the highest non-prerelease, non-yanked version) and cannot be set")
    if not tag or not tag[0].isalpha() or not all(c.isalnum() or c in "-_." for c in tag):
        raise UsageError(f"invalid tag {tag!r}: expected a name starting with a letter, e.g. bleedingedge or stable")
    if semver.is_range(tag):
        raise UsageError(f"invalid tag {tag!r}: it reads as a version range; choose a name such as bleedingedge")
    return tag


#: How many differing files a refusal lists before "... and N more" (scipy's 47 drowned the
#: sentence that says what to do); the error's `differences` keeps them all.
LISTED = 10


def immutable_error(model: str, version: str, arch: str, old: Mapping[str, FileEntry],
                    new: Mapping[str, FileEntry], *, note: str = "") -> ImmutableError:
    """The refusal to change a published (version, arch): the first `LISTED` differing files in
    the message (then `note`), every one in its `differences`."""
    differences: list[dict[str, str | None]] = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path), new.get(path)
        if a != b:
            differences.append({"model": model, "version": version, "arch": arch, "path": path,
                                "published": str(a.blob) if a else None, "now": str(b.blob) if b else None})
    lines = [f"  {d['path']}: published {d['published'] or '(absent)'}, now {d['now'] or '(absent)'}"
             for d in differences[:LISTED]]
    if len(differences) > LISTED:
        lines.append(f"  ... and {len(differences) - LISTED} more (--json lists every one under error.differences)")
    files = f"{len(differences)} file{'' if len(differences) == 1 else 's'}"
    message = (f"{model}@{version} ({arch}) is already published with different content; published "
               f"versions are immutable. Differences ({files}):\n" + "\n".join(lines) +
               "\nPublish a new version instead (e.g. bump the patch number)." + note)
    return ImmutableError(message, differences=differences)


def now_utc() -> dt.datetime:
    """The publish time; `SOURCE_DATE_EPOCH` (reproducible-builds.org) overrides the clock so
    that a scripted zoo produces byte-identical manifests."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        return dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc)
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
