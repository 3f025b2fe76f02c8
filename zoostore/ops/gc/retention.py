"""gc retention: which versions stay. Rules (`--keep MODEL@SPEC`), lockfile pins
(`--keep-lock`) and tags; a model no rule or lock names keeps every version."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoostore.core import semver
from zoostore.core.digest import Digest
from zoostore.core.errors import UsageError
from zoostore.core.records import dataclass
from zoostore.documents.lockfile import Lock
from zoostore.documents.manifest import Manifest
from zoostore.core.spec import ModelSpec


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")

# ---------------------------------------------------------------------------------- retention


@dataclass(frozen=True, slots=True)
class KeepRule:
    """`--keep MODEL@RANGE`: which versions of one model stay. `spec` None keeps every version."""

    model: str
    spec: str | None = None

    @classmethod
    def parse(cls, text: str) -> KeepRule:
        try:
            parsed = ModelSpec.parse(text)
        except UsageError as exc:
            raise UsageError(f"--keep {text!r}: {exc}; expected MODEL@RANGE, e.g. yolo-v2-tiny@^1.2, "
                             f"or MODEL alone for every version") from None
        return cls(parsed.model, parsed.spec if parsed.explicit else None)

    def matches(self, manifest: Manifest) -> set[str]:
        """The versions of `manifest` this rule keeps; a range that matches none, or an unknown
        tag, is a usage error (gc would otherwise drop every untagged version of the model)."""
        if self.spec is None:
            return set(manifest.versions)
        if self.spec == "latest" or self.spec in manifest.tags:
            target = manifest.latest() if self.spec == "latest" else manifest.tags[self.spec]
            return {target} if target else set()
        listed = ", ".join(manifest.sorted_versions()) or "none"
        if not semver.is_range(self.spec):
            tags = ", ".join(sorted(manifest.tags)) or "none"
            raise UsageError(f"--keep {self}: {self.spec!r} is neither a version range nor a tag of "
                             f"{self.model} (tags: {tags}; versions: {listed})")
        found = {v for v in manifest.versions if semver.satisfies(v, self.spec)}
        if not found:
            raise UsageError(
                f"--keep {self} matches no version of {self.model} (versions: {listed}); gc would "
                f"drop every untagged version of it. Check the range (prereleases match only ranges "
                f"that name one), or keep the model whole with --keep {self.model}"
            )
        return found

    def __str__(self) -> str:
        return self.model if self.spec is None else f"{self.model}@{self.spec}"


def pinned_versions(lock_text: str, *, where: str = "zoo.lock") -> dict[str, set[str]]:
    """Model -> the version a `zoo.lock` pins (as a set, so several lockfiles merge)."""
    lock = Lock.loads(lock_text, where=where)
    return {name: {m.version} for name, m in lock.models.items()}


def pinned_blobs(lock_text: str, *, where: str = "zoo.lock") -> set[Digest]:
    """Every blob id a `zoo.lock` names (what `cache prune --keep-lock` keeps)."""
    lock = Lock.loads(lock_text, where=where)
    return {f.blob for m in lock.models.values() for f in m.files}


def read_lock(location: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None) -> str:
    """A lockfile's text from a local path or any fsspec URL."""
    text = os.fspath(location)
    try:
        if _SCHEME.match(text):
            import fsspec

            with fsspec.open(text, "rb", **dict(storage_options or {})) as f:
                data: bytes = f.read()
            return data.decode("utf-8")
        return Path(text).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read lockfile {text}: {exc}") from exc


def _always_retained(m: Manifest) -> set[str]:
    out = {v for v in m.tags.values() if v in m.versions}
    latest = m.latest()
    if latest:
        out.add(latest)
    return out
