"""Where sync puts each locked file: zoo.lock's entries mapped to paths under dest by
zoo.toml's layout (default `{model}/{arch}/{path}`), each checked to stay inside dest, and
no two files at one path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from zoostore.core.errors import ConfigError, InvalidPathError, UsageError
from zoostore.core.records import dataclass
from zoostore.documents.project import DEFAULT_LAYOUT, Layout
from zoostore.ops.place import check_dest_relpath

if TYPE_CHECKING:
    from zoostore.documents.lockfile import Lock, LockedFile


@dataclass(frozen=True, slots=True)
class Wanted:
    """One file the lock puts at `{dest}/{layout}` (default `{dest}/{model}/{arch}/{path}`)."""

    model: str
    version: str
    file: LockedFile

    @property
    def what(self) -> str:
        return f"{self.model}@{self.version} {self.file.arch}/{self.file.path}"


def desired_paths(lock: Lock, archs: Iterable[str] | None,
                  layout: Layout | None = None) -> tuple[dict[str, Wanted], list[str]]:
    """Every file the lock places (only `archs`, when given), by path relative to dest as
    zoo.toml's `layout` maps it (default `{model}/{arch}/{path}`); and the entries whose path
    would not stay inside dest, which the caller ignores and reports. Two different files mapped to one path, or
    a file where another needs a directory, is a ConfigError naming both (`_check_layout`)."""
    layout = layout or Layout()
    wanted_archs = None
    if archs:
        from zoostore.core.names import normalize_arch

        locked = {f.arch for m in lock.models.values() for f in m.files}
        hint = 'an architecture a store publishes with --new-arch is named in new_archs = ["NAME"] in zoo.toml'
        wanted_archs = {normalize_arch(a, allow_new=a.strip().lower() in locked, new_hint=hint) for a in archs}
        missing = wanted_archs - locked
        if missing:
            raise UsageError(f"--arch {', '.join(sorted(missing))}: zoo.lock has no files for it; add it to archs in zoo.toml and lock")
    desired: dict[str, Wanted] = {}
    bad = []
    default = layout.template == DEFAULT_LAYOUT   # formatted here: the same string, a regex pass less per file
    for name, m in sorted(lock.models.items()):
        for f in m.files:
            if wanted_archs is not None and f.arch not in wanted_archs:
                continue
            rel = f"{name}/{f.arch}/{f.path}" if default else layout.apply(model=name, arch=f.arch, path=f.path)
            try:
                if "/" in f.arch:
                    raise InvalidPathError(f"arch {f.arch!r} contains '/'")
                check_dest_relpath(rel)
            except InvalidPathError as exc:
                bad.append(f"zoo.lock entry {rel!r} ({exc})")
                continue
            wanted = Wanted(name, m.version, f)
            other = desired.setdefault(rel, wanted)
            if other.file.blob != f.blob:
                raise _collision(layout, rel, other, wanted)
    _check_layout(layout, desired)
    return desired, bad


def _collision(layout: Layout, rel: str, first: Wanted, second: Wanted, *, prefix: bool = False) -> ConfigError:
    """Two files the layout puts at one path (or, `prefix`, the first where the second needs a
    directory). The same bytes at one path are no collision: an `any` file locked for two
    archs is placed once under a layout without {arch}."""
    where = f"{rel!r} is a file that {second.what} needs as a directory" if prefix else f"one path, {rel!r}"
    if first.model != second.model and "{model}" not in layout.template:
        hint = "put {model} in it (the default is '{model}/{arch}/{path}')"
    elif first.file.arch != second.file.arch and not layout.has_arch:
        hint = "put {arch} in it (the default is '{model}/{arch}/{path}'), or sync one arch (archs in zoo.toml, or --arch)"
    else:
        hint = "change it, or the files' paths (the default, '{model}/{arch}/{path}', separates models and archs)"
    return ConfigError(f"zoo.toml's layout {str(layout)!r} maps {first.what} and {second.what} to {where}; {hint}")


def _check_layout(layout: Layout, desired: Mapping[str, Wanted]) -> None:
    """No wanted path may be the parent folder of another (a file where a directory is needed)."""
    if layout.template == DEFAULT_LAYOUT:
        return   # per model and arch folders: as before layouts existed (and no cost on the no-op path)
    for rel, w in desired.items():
        parts = rel.split("/")
        for i in range(1, len(parts)):
            parent = desired.get("/".join(parts[:i]))
            if parent is not None:
                raise _collision(layout, "/".join(parts[:i]), parent, w, prefix=True)
