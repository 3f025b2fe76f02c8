"""Names inside a zoo: model names, architecture names and file paths inside a version.

A file path in a manifest ends up joined under a consumer's destination directory, so a
hostile manifest could write anywhere with `../../.bashrc`, `/etc/x`, `C:\\x` or `\\\\host\\share`.
Every path is therefore checked when published and again when read (Hugging Face Hub's
path validator does the same for the same reason).
"""

from __future__ import annotations

import platform
import re

from zoostore.core.errors import InvalidPathError, UsageError

_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DRIVE = re.compile(r"^[A-Za-z]:")

ANY = "any"
#: Aliases seen in the wild (Debian, Docker/Go, Apple, uname) -> the names manifests use.
ARCH_ALIASES = {
    "x86_64": "x86_64", "amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64",
    "aarch64": "aarch64", "arm64": "aarch64", "armv8": "aarch64",
    "any": ANY, "noarch": ANY, "all": ANY,
}
_ARCH = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")


def check_model_name(name: str) -> str:
    if not _MODEL.fullmatch(name) or name.endswith(".toml"):
        raise UsageError(
            f"invalid model name {name!r}: expected letters, digits, '.', '_' and '-', starting "
            f"with a letter or digit, at most 128 characters (e.g. yolo-v2-tiny)"
        )
    return name


def normalize_arch(name: str) -> str:
    """`amd64` -> `x86_64`, `arm64` -> `aarch64`, `noarch` -> `any`; other names are kept
    (lower-cased) if they look like an architecture."""
    key = name.strip().lower()
    if key in ARCH_ALIASES:
        return ARCH_ALIASES[key]
    if not _ARCH.fullmatch(key):
        raise UsageError(
            f"invalid architecture {name!r}: expected a name such as x86_64, aarch64 or any "
            f"(aliases amd64, arm64 and noarch are accepted)"
        )
    return key


def host_arch() -> str:
    return normalize_arch(platform.machine() or "x86_64")


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
