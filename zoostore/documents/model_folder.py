"""A model folder as maintainers keep it: which descriptor it holds, where its network is, and
whether that network is still a Git LFS pointer.

    models/yolo-tiny/1.2.0/             zoostore's own layout
        model.toml                      network = "model.onnx"
        model.onnx
    point_pillars_rpn/onnx_fp32_kitti/  Autoware ModelZoo's layout
        definition.yaml                 network.filename: ./model_files/rpn.onnx
        model_files/rpn.onnx

A folder holds one descriptor, `model.toml` or `definition.yaml`; both is ambiguous and
refused. `check`, `build` and `publish` all come through here.

Autoware keeps its networks in Git LFS: a clone without `git lfs pull` holds 130-byte text
pointers (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md: the first line is
`version https://git-lfs.github.com/spec/v1`) where the networks should be. onnx reads one
as "Wire format was corrupt", and publish would store it as a model; `is_lfs_pointer` and
`refuse_lfs_pointer` catch it first.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from zoostore.core.errors import DescriptorError, UsageError
from zoostore.documents.folder_files import DEFINITION_YAML, MODEL_TOML

if TYPE_CHECKING:
    from zoostore.documents.descriptor import ModelDescriptor

#: The descriptor file names a model folder may hold, in the order they are looked for.
DESCRIPTOR_FILES = (MODEL_TOML, DEFINITION_YAML)
#: The folder Autoware keeps networks in, below the definition.yaml.
MODEL_FILES = "model_files"

LFS_SPEC_LINE = b"version https://git-lfs.github.com/spec/v1"
#: The spec caps pointer files at 1024 bytes; reading that much is enough to parse one.
_LFS_MAX = 1024


class LfsPointerError(UsageError):
    """A file is a Git LFS pointer, not the content it points to: run `git lfs pull`."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


def is_lfs_pointer(path: Path | str) -> bool:
    """Whether `path` is a file that starts with the Git LFS spec line."""
    if not os.path.isfile(path):  # opening a named pipe would wait for a writer
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(len(LFS_SPEC_LINE))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    return head == LFS_SPEC_LINE


def lfs_pointer_message(path: Path | str) -> str:
    """What is wrong and what to do, with the pointer's oid and size when it has them."""
    p = Path(path)
    fields: dict[str, str] = {}
    with open(p, "rb") as f:
        for line in f.read(_LFS_MAX).decode("utf-8", "replace").splitlines()[1:]:
            key, _, value = line.partition(" ")
            fields[key] = value.strip()
    about = ""
    if fields.get("oid") or fields.get("size"):
        about = f" for {fields.get('oid', '?')}, {fields.get('size', '?')} bytes"
    return (
        f"{p} is a Git LFS pointer{about}, not the file itself: the repository was cloned "
        f"without its LFS content. Run 'git lfs pull' (or 'git lfs pull --include={p.name}') "
        f"in the repository, then try again"
    )


def refuse_lfs_pointer(path: Path | str) -> None:
    """Raise `LfsPointerError` if `path` is a Git LFS pointer."""
    if is_lfs_pointer(path):
        raise LfsPointerError(lfs_pointer_message(path), path=Path(path))


def find_descriptor(directory: Path | str) -> Path | None:
    """The descriptor file of a model folder, or None; both kinds at once is a DescriptorError."""
    d = Path(directory)
    found = [d / name for name in DESCRIPTOR_FILES if (d / name).is_file()]
    if len(found) > 1:
        raise DescriptorError.whole(
            d, f"holds both {MODEL_TOML} and {DEFINITION_YAML}; a model folder has one descriptor: remove one of them"
        )
    return found[0] if found else None


def load_descriptor(path: Path | str) -> ModelDescriptor:
    """The descriptor of a model folder (`model.toml` or `definition.yaml`), or of the
    descriptor file named. Raises DescriptorError naming the file and key on bad content, and when
    the folder holds none."""
    p = Path(path)
    if p.is_dir():
        found = find_descriptor(p)
        if found is None:
            raise DescriptorError.whole(
                p, f"no {MODEL_TOML} or {DEFINITION_YAML}: a model folder needs one describing "
                f"its network (see docs/pipeline.md, docs/autoware.md)"
            )
        p = found
    # The parsers are imported here: publish imports this module for every publish, and most
    # published folders (build outputs, libraries) hold no descriptor.
    if p.suffix in (".yaml", ".yml"):
        from zoostore.documents import definition_yaml

        return definition_yaml.load(p)
    from zoostore.documents.descriptor import ModelDescriptor

    return ModelDescriptor.load(p)


def descriptor_for_network(network: Path | str) -> ModelDescriptor | None:
    """The descriptor that names `network`: one in its own folder (`model.toml` style), or in
    the folder above when it sits in `model_files/` (Autoware). None when no descriptor there
    names this very file."""
    net = Path(network)
    folders = [net.parent]
    if net.parent.name == MODEL_FILES:
        folders.append(net.parent.parent)
    for folder in folders:
        found = find_descriptor(folder)
        if found is None:
            continue
        desc = load_descriptor(found)
        if _same_file(desc.network_path, net):
            return desc
    return None


def network_of(directory: Path | str) -> tuple[Path, ModelDescriptor] | None:
    """The network a model folder's descriptor names and the descriptor, or None without a
    descriptor. Raises UsageError when the file is missing, and LfsPointerError when it is a
    Git LFS pointer."""
    d = Path(directory)
    if find_descriptor(d) is None:
        return None
    desc = load_descriptor(d)
    key = "network.filename" if desc.file_name == DEFINITION_YAML else "network"
    if not desc.network_path.is_file():
        what = "is not a regular file" if desc.network_path.exists() else "does not exist"
        raise UsageError(f"{desc.path}: {key}: {desc.network!r} {what} in {d}")
    refuse_lfs_pointer(desc.network_path)
    return desc.network_path, desc


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
