"""Names inside a zoo: model names, architecture names and file paths inside a version.

A file path in a manifest ends up joined under a consumer's destination directory, so a
hostile manifest could write anywhere with `../../.bashrc`, `/etc/x`, `C:\\x` or `\\\\host\\share`.
Every path is therefore checked when published and again when read (Hugging Face Hub's
path validator does the same for the same reason).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

from zoostore.core.errors import InvalidPathError, UsageError

_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DRIVE = re.compile(r"^[A-Za-z]:")

ANY = "any"
#: The architectures zoostore knows (uname -m names), plus `any` for architecture-independent
#: files. Another name is refused unless explicitly accepted (`publish --new-arch`), so that a
#: typo or an ambiguous name (`x86`, `arm`) never becomes an arch no consumer asks for.
KNOWN_ARCHS = ("x86_64", "aarch64", "armv7l", "armv6l", "riscv64", "ppc64le", "s390x", "i686",
               "loongarch64", "mips64el", ANY)
#: Aliases seen in the wild (Debian, Docker/Go, Apple, uname, Windows) -> the names manifests use.
ARCH_ALIASES = {
    **{a: a for a in KNOWN_ARCHS},
    "amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64",
    "arm64": "aarch64", "armv8": "aarch64", "armv8l": "aarch64",
    "armhf": "armv7l", "armv7": "armv7l", "armv7hl": "armv7l",
    "armv6": "armv6l",
    "riscv64gc": "riscv64",
    "ppc64el": "ppc64le", "powerpc64le": "ppc64le",
    "i386": "i686", "i486": "i686", "i586": "i686", "386": "i686",
    "loong64": "loongarch64",
    "mips64le": "mips64el",
    "noarch": ANY, "all": ANY,
}
_ARCH = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")


def check_model_name(name: str) -> str:
    if not _MODEL.fullmatch(name) or name.endswith(".toml"):
        raise UsageError(
            f"invalid model name {name!r}: expected letters, digits, '.', '_' and '-', starting "
            f"with a letter or digit, at most 128 characters (e.g. yolo-v2-tiny)"
        )
    return name


def case_clashes(name: str, names: Iterable[str]) -> list[str]:
    """The `names` that differ from `name` only in case (sorted): on case-insensitive file
    systems (macOS, Windows) a model's manifest, cache folder and consumers' folder would be
    theirs."""
    folded = name.casefold()
    return sorted({n for n in names if n != name and n.casefold() == folded})


#: How a publisher names a new architecture deliberately (the default `new_hint`).
NEW_ARCH_HINT = "to publish for a new architecture deliberately, add --new-arch"


def normalize_arch(name: str, *, allow_new: bool = False, new_hint: str = NEW_ARCH_HINT) -> str:
    """`amd64` -> `x86_64`, `arm64` -> `aarch64`, `armhf` -> `armv7l`, `noarch` -> `any`.
    A name outside `KNOWN_ARCHS` is refused, listing them and ending with `new_hint` (how the
    caller's user names a new one), unless `allow_new` (a deliberate new arch, `publish
    --new-arch`; manifests that hold one), when it is kept lower-cased if it looks like one."""
    if not isinstance(name, str):
        raise UsageError(f"invalid architecture {name!r}: expected a string such as x86_64")
    key = name.strip().lower()
    if key in ARCH_ALIASES:
        return ARCH_ALIASES[key]
    known = ", ".join(KNOWN_ARCHS)
    if not _ARCH.fullmatch(key):
        raise UsageError(
            f"invalid architecture {name!r}: expected one of {known} "
            f"(aliases such as amd64, arm64, armhf and noarch are accepted)"
        )
    if not allow_new:
        raise UsageError(
            f"unknown architecture {name!r}: expected one of {known} (aliases such as amd64, "
            f"arm64, armhf and noarch are accepted); {new_hint}"
        )
    return key


def host_arch() -> str:
    """This machine's arch; an unusual one (uname) is kept rather than refused."""
    if hasattr(os, "uname"):
        # What platform.machine() returns on POSIX, without importing platform (~1.5 ms of
        # start-up on every command that resolves an arch).
        machine = os.uname().machine
    else:
        import platform

        machine = platform.machine()
    return normalize_arch(machine or "x86_64", allow_new=True)


def check_relpath(path: str, *, where: str = "") -> str:
    """A relative POSIX path that stays inside its version, returned unchanged; else
    InvalidPathError naming `where`."""
    prefix = f"{where}: " if where else ""
    problem = None
    if not path:
        problem = "is empty"
    elif "\\" in path:
        problem = "contains a backslash (paths are POSIX, '/'-separated)"
    elif path.startswith("/"):
        problem = "is absolute"
    elif _DRIVE.match(path):
        problem = "starts with a drive letter"
    elif "\x00" in path:
        problem = "contains a NUL byte"
    else:
        parts = path.split("/")
        if any(p == ".." for p in parts):
            problem = "leaves the version ('..')"
        elif any(p in ("", ".") for p in parts):
            problem = "has an empty or '.' component"
    if problem:
        raise InvalidPathError(
            f"{prefix}path {path!r} {problem}: file paths inside a version must be relative "
            f"POSIX paths such as 'model.onnx' or 'x86_64/deploy_lib.so'"
        )
    return path
