"""`zoo://` path grammar: `MODEL[@SPEC][/ARCH[/PATH]]`, parsed once into a ZooPath.

The `MODEL@SPEC` head is parsed by `zoostore.core.spec.ModelSpec`, as everywhere else; what the
spec selects is `zoostore.documents.resolve`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zoostore.core.errors import NotFoundError, ReadOnlyError
from zoostore.core.names import ANY, check_relpath, normalize_arch
from zoostore.core.records import dataclass
from zoostore.core.spec import ModelSpec
from zoostore.documents.manifest import FileEntry, Manifest, Release

#: How many file names an error message lists before it says "and N more".
LISTED = 40


@dataclass(frozen=True, slots=True)
class ZooPath:
    """A parsed `zoo://` path. `spec` is None for `MODEL` alone (the versions directory),
    `arch` None above the arch level, `rel` "" at the arch root."""

    text: str
    model: str | None = None
    spec: str | None = None
    arch: str | None = None
    rel: str = ""

    @classmethod
    def parse(cls, path: str) -> ZooPath:
        text = path.strip("/")
        if not text:
            return cls(text)
        head, _, rest = text.partition("/")
        ms = ModelSpec.parse(head)
        if not rest:
            return cls(text, ms.model, ms.spec if ms.explicit else None)
        arch, _, rel = rest.partition("/")
        if rel:
            check_relpath(rel, where=f"zoo://{text}")
        # allow_new: a store may hold an arch published with --new-arch; one the version lacks
        # is a NotFoundError naming the version's archs.
        return cls(text, ms.model, ms.spec, normalize_arch(arch, allow_new=True), rel)


def listing(names: list[str]) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:LISTED])
    return shown if len(names) <= LISTED else f"{shown} and {len(names) - LISTED} more"


def missing_file(zp: ZooPath, release: Release, files: Mapping[str, FileEntry]) -> NotFoundError:
    """No file or directory `zp.rel` in what the arch gets. When the version has no files of
    its own for the arch (a typo such as `x64`, or an arch it was not built for), only its `any`
    files were looked at: the message says so, with the archs it has."""
    what = f"zoo://{zp.text}: {release.model}@{release.version} ({zp.arch}) has no file or directory {zp.rel!r}"
    if zp.arch not in release.archs and any(a != ANY for a in release.archs):   # `any` only: the name is wrong
        what += (f"; it has no files for {zp.arch}, only architecture-independent ones (its architectures: "
                 f"{listing(release.archs)}): check the arch")
    return NotFoundError(f"{what}; files: {listing(sorted(files))}")


def read_only_error(what: str, path: Any, store: str) -> ReadOnlyError:
    return ReadOnlyError(
        f"zoo:// is read-only: cannot {what} {path!r}. Files enter a zoo only by publishing a "
        f"version: zoostore publish {store} MODEL VERSION PATH... (see 'zoostore publish --help')"
    )


# What `info` and `ls` say about a version directory, a file and a directory below an arch.


def version_info(name: str, release: Release, manifest: Manifest) -> dict[str, Any]:
    return {
        "name": name, "size": 0, "type": "directory", "model": release.model,
        "version": release.version, "published": release.published.isoformat(),
        "yanked": release.yanked, "tags": manifest.tags_of(release.version),
        "requires": dict(release.requires), "archs": release.archs,
    }


def file_info(name: str, zp: ZooPath, release: Release, path: str, entry: FileEntry) -> dict[str, Any]:
    return {
        "name": name, "size": entry.size, "type": "file", "blob": str(entry.blob),
        "model": release.model, "version": release.version, "arch": zp.arch, "path": path,
        "published": release.published.isoformat(),
    }


def dir_info(name: str, zp: ZooPath, release: Release) -> dict[str, Any]:
    return {"name": name, "size": 0, "type": "directory", "model": release.model,
            "version": release.version, "arch": zp.arch}
