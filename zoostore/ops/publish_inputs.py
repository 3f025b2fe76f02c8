"""What a publish reads from local disk, checked before anything is hashed or uploaded: the
files (names valid UTF-8 and within file-system limits, symbolic links kept inside the published
directory, no Git LFS pointers), the descriptor (`model.toml` or Autoware's `definition.yaml`),
a `build.toml`, and the machine each binary was built for."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoostore.core import machine, semver
from zoostore.core.errors import InvalidPathError, UsageError
from zoostore.core.names import KNOWN_ARCHS, check_relpath, normalize_arch
from zoostore.documents.folder_files import BUILD_TOML as RECORD_FILE
from zoostore.documents.folder_files import DEFINITION_YAML
from zoostore.documents.folder_files import MODEL_TOML as DESCRIPTOR_FILE
from zoostore.documents.model_folder import LfsPointerError, is_lfs_pointer, lfs_pointer_message, load_descriptor

if TYPE_CHECKING:
    from zoostore.documents.build_record import BuildRecord


#: Longest file name component and whole path inside a version, in UTF-8 bytes: what common
#: file systems store (ext4, XFS, APFS, NTFS all cap a name at 255), so every consumer can sync it.
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024


def collect_files(paths: Sequence[str | os.PathLike[str]], *, follow_symlinks: bool = False,
                  skipped: list[str] | None = None) -> dict[str, Path]:
    """Relative path in the version -> local file. A file publishes under its name; a
    directory publishes its files under their paths relative to it, hidden ones (a name
    starting with '.': .DS_Store, .git/, .gitattributes) skipped and appended to `skipped`
    (a directory with a trailing '/', not descended), for the CLI to say so (`hidden_note`).
    Every name is checked before anything is read: valid UTF-8, within the length limits, and
    a symbolic link must stay inside the published directory unless `follow_symlinks`."""
    out: dict[str, Path] = {}
    hidden: list[tuple[str, Path]] = []  # (path shown, local path)

    def add(rel: str, path: Path, root: Path | None) -> None:
        check_name(rel, path)
        if path.is_symlink():
            check_link(path, root, follow_symlinks)
        check_regular(path)
        check_relpath(rel, where=str(path))
        if rel in out and out[rel].resolve() != path.resolve():
            raise UsageError(f"two files would publish as {rel!r}: {out[rel]} and {path}; publish them separately or rename one")
        out[rel] = path

    for p in map(Path, paths):
        if p.is_dir():
            for root, dirs, files in os.walk(p, followlinks=follow_symlinks):
                here = Path(root)
                for d in [d for d in dirs if not d.startswith(".") and (here / d).is_symlink()]:
                    check_link(here / d, p, follow_symlinks)  # not descended unless following links
                hidden += sorted(((here / d).relative_to(p).as_posix() + "/", here / d) for d in dirs if d.startswith("."))
                hidden += sorted(((here / f).relative_to(p).as_posix(), here / f) for f in files if f.startswith("."))
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith("."):
                        full = here / name
                        add(full.relative_to(p).as_posix(), full, p)
        elif p.is_file():
            add(p.name, p, None)
        elif p.exists():
            check_regular(p)
        else:
            raise UsageError(f"{p}: no such file or directory")
    # A hidden file also named as a PATH of its own is published, not skipped.
    published = {f.resolve() for f in out.values()}
    shown = [name for name, local in hidden if local.resolve() not in published]
    if skipped is not None:
        skipped += shown
    if not out:
        also = f" ({hidden_note(shown)})" if shown else ""
        raise UsageError(f"nothing to publish in {', '.join(map(str, paths))}: no files found{also}")
    return out


PUBLISH_REGULAR_FIX = ("a model version holds regular files only; move it out of the folder (or name the "
                       "files to publish as PATHs)")


def check_regular(path: Path, fix: str = PUBLISH_REGULAR_FIX) -> None:
    """UsageError unless `path` (its target, for a link) is a regular file: reading a named pipe
    waits for a writer forever, a socket cannot be read, and a device is no model file. `fix`
    ends the message (what the user should do)."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError:
        return   # vanished or unreadable: the read that follows says so with the OS's words
    if stat.S_ISREG(mode):
        return
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
    raise UsageError(f"{path} is {kind}, not a regular file: {fix}")


def hidden_note(skipped: Sequence[str]) -> str:
    """What `collect_files` skipped, in one line: `skipped 2 hidden files and 1 hidden directory
    (.DS_Store, .gitattributes, .git/): ...`, naming the first five."""
    dirs = sum(s.endswith("/") for s in skipped)
    files = len(skipped) - dirs
    counts = " and ".join(f"{n} hidden {one if n == 1 else many}"
                          for n, one, many in ((files, "file", "files"), (dirs, "directory", "directories")) if n)
    names = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
    return (f"skipped {counts} ({names}): a directory's files and subdirectories whose names start with '.' "
            f"are not published; name such a file as a PATH of its own to publish it (under its bare name, "
            f"at the top of the version)")


def check_name(rel: str, path: Path) -> None:
    """A path a manifest can hold and every consumer can create, refused before any upload."""
    try:
        encoded = rel.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPathError(
            f"{os.fsencode(path)!r}: the file name is not valid UTF-8 (manifests are UTF-8 TOML, and "
            f"consumers on other systems could not create it); rename the file") from None
    longest = max(len(part.encode("utf-8")) for part in rel.split("/"))
    if longest > MAX_NAME_BYTES or len(encoded) > MAX_PATH_BYTES:
        raise InvalidPathError(
            f"{path}: the name is too long to publish ({longest} bytes in one component, {len(encoded)} in "
            f"all; the limits are {MAX_NAME_BYTES} and {MAX_PATH_BYTES} bytes of UTF-8, what file systems "
            f"allow); rename it")


def check_link(path: Path, root: Path | None, follow: bool) -> None:
    """A symbolic link is published as the file it points to only while that stays inside the
    published directory (or with `follow`): a link to ~/.aws/credentials is never uploaded."""
    target = path.resolve()
    if not target.exists():
        raise UsageError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; fix or remove it")
    if follow:
        return
    inside = root is not None and target.is_relative_to(root.resolve())
    if not inside:
        raise UsageError(
            f"{path} is a symbolic link to {target}, outside the published directory: zoostore does not "
            f"follow links out of it (a credentials file next to a model would be published). Copy the "
            f"file in, or publish with --follow-symlinks if that is what you mean")


def descriptor_meta(files: Mapping[str, Path]) -> tuple[dict[str, Any], str]:
    """The published folder's descriptor (`model.toml`, or Autoware's `definition.yaml`) as
    metadata, and its summary. It describes the version (network, nodes, licences, the
    preprocessing module): the version keeps it, and the model-level summary shows the latest."""
    names = [n for n in (DESCRIPTOR_FILE, DEFINITION_YAML) if n in files]
    if len(names) > 1:
        raise UsageError(f"the published files hold both {DESCRIPTOR_FILE} and {DEFINITION_YAML}: a model "
                         f"folder has one descriptor; remove one")
    if not names:
        return {}, ""
    desc = load_descriptor(files[names[0]])
    return desc.to_meta(), desc.summary


def refuse_lfs_pointers(files: Mapping[str, Path]) -> None:
    """Git LFS pointers are never published: the files they stand for were not pulled."""
    pointers = [files[rel] for rel in sorted(files) if is_lfs_pointer(files[rel])]
    if pointers:
        raise LfsPointerError(
            lfs_pointer_message(pointers[0]) + (f" ({len(pointers)} pointer files in all: "
                                                 f"{', '.join(str(p) for p in pointers[:5])}"
                                                 f"{', ...' if len(pointers) > 5 else ''})" if len(pointers) > 1 else ""),
            path=pointers[0])


def _read_build_record(folder: Path) -> BuildRecord:
    """Its parser is imported only when a published folder holds a build.toml (json, tomllib
    and the descriptor's types: ~5 ms of every publish's start-up otherwise)."""
    from zoostore.documents.build_record import read_build_record

    return read_build_record(folder)


#: The version metadata table holding each architecture's build record: `builds.<arch>`.
BUILDS_META = "builds"


def build_record(paths: Sequence[str | os.PathLike[str]]) -> tuple[dict[str, str], dict[str, Any]]:
    """A build.toml's requires, and its metadata as `{builds: {<arch>: ...}}`: each
    architecture's build (its compiler, target, test data) is its own, so publishing the
    aarch64 build of a version after the x86_64 one adds to it instead of replacing it."""
    for p in map(Path, paths):
        if p.is_dir() and (p / RECORD_FILE).is_file():
            record = _read_build_record(p)
            arch = normalize_arch(record.arch, allow_new=True)
            return dict(record.requires), {BUILDS_META: {arch: dict(record.meta)}}
    return {}, {}


def check_machines(files: Mapping[str, Path], arch: str, paths: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse publishing as `arch` what says it is for another: a build.toml's `arch`, or the
    machine in the header of an ELF, Mach-O or PE file (only its first bytes are read)."""
    for p in map(Path, paths):
        if p.is_dir() and (p / RECORD_FILE).is_file():
            built = normalize_arch(_read_build_record(p).arch, allow_new=True)
            if built != arch:
                raise UsageError(
                    f"{p / RECORD_FILE} says arch = {built!r}, but --arch is {arch!r}: these files "
                    f"were built for {built}. Publish them with --arch {built}, or publish the "
                    f"build output directory of {arch}.")
    for rel in sorted(files):
        with open(files[rel], "rb") as f:
            head = f.read(machine.HEADER_BYTES)
        found = machine.machines(head)
        if found is None or arch in found:
            continue
        if arch not in KNOWN_ARCHS and all(m.startswith("unknown:") for m in found):
            continue  # a deliberately new arch (--new-arch) whose machine number we do not know
        theirs = " or ".join(sorted(found))
        fix = (f"publish it with --arch {sorted(found)[0]}" if not theirs.startswith("unknown:")
               else "publish it for its own architecture (--new-arch for one zoostore does not know)")
        raise UsageError(
            f"{rel} ({files[rel]}) is {_article(machine.describe(head))} binary for {theirs}, but --arch is "
            f"{arch!r}: a consumer on {arch} could not load it. {fix[0].upper()}{fix[1:]}, or leave it "
            f"out of this publish.")


def _article(word: str) -> str:
    """`an ELF`, `a PE`, `a Mach-O`: the article as the name is read aloud (ELF starts with a vowel sound)."""
    return f"an {word}" if word[0] in "AEIOU" else f"a {word}"


#: A runtime's name in --requires and [runtime] (tvm, onnxruntime, apache-tvm-ffi).
_REQUIRE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def requires_meta(paths: Sequence[str | os.PathLike[str]], requires: Mapping[str, str] | None,
                  meta: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, Any]]:
    """The version's requires and meta: a build.toml's, overridden by the explicit ones."""
    build_requires, build_meta = build_record(paths)
    all_requires = {**build_requires, **(requires or {})}
    for key, rng in all_requires.items():
        if not _REQUIRE_KEY.fullmatch(key):
            op = re.search(r"[<>=!~^]+$", key)
            hint = (f"; the range goes after the '=': --requires {key[:op.start()]}='{op.group()}={rng}'"
                    if op and _REQUIRE_KEY.fullmatch(key[:op.start()]) else "")
            raise UsageError(f"--requires {key}={rng}: {key!r} is not a runtime name; expected letters, digits, "
                             f"'.', '_' or '-' (e.g. tvm, onnxruntime){hint}")
        if not semver.is_range(rng):
            raise UsageError(f"--requires {key}={rng!r}: not a version range; expected e.g. {key}='>=0.27.0 <0.28.0'")
    return all_requires, {**build_meta, **(meta or {})}
