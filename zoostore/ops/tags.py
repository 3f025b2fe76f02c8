"""Tags and yanks: the manifest changes that move pointers or withdraw a version, never bytes.

A tag (`bleedingedge`, `stable`) is a mutable pointer to a version; `latest` is implicit and
cannot be set. A yanked version stays downloadable for lockfiles that pin it (with a warning)
but no range or `latest` picks it. Every change is one compare-and-swap manifest update.
"""

from __future__ import annotations

from collections.abc import Callable

from zoostore.core.errors import NotFoundError, UsageError
from zoostore.core.progress import Progress
from zoostore.documents.manifest import Manifest
from zoostore.repository import Store

_Change = Callable[[Manifest], Manifest]


def _update(store: Store, model: str, progress: Progress | None, what: str,
            change: _Change) -> Manifest:
    def apply(m: Manifest | None) -> Manifest:
        if m is None:
            raise NotFoundError(f"cannot {what}: {store.unknown_model(model)}")
        return change(m)

    result = store.update_manifest(model, apply, progress=progress)
    assert result is not None  # `apply` never returns None
    return result


def tag(store: Store, model: str, name: str, version: str, *, progress: Progress | None = None) -> Manifest:
    """Point tag `name` at `model@version` (which must exist). Returns the new manifest."""
    return _update(store, model, progress, f"tag {model}@{version} as {name!r}",
                   lambda m: m.with_tag(name, version))


def untag(store: Store, model: str, name: str, *, progress: Progress | None = None) -> Manifest:
    """Delete tag `name` of `model`; deleting a tag that is not set changes nothing."""
    return _update(store, model, progress, f"delete tag {name!r}", lambda m: m.with_tag(name, None))


def yank(store: Store, model: str, version: str, reason: str, *,
         progress: Progress | None = None) -> Manifest:
    """Withdraw `model@version`: ranges and `latest` skip it; `reason` is shown to everyone who
    pinned it, so it is required."""
    reason = reason.strip()
    if not reason:
        raise UsageError(f"yanking {model}@{version} needs a reason (it is shown to everyone who "
                         f"pinned this version); give --reason TEXT")
    return _update(store, model, progress, f"yank {model}@{version}", lambda m: m.with_yank(version, reason))


def unyank(store: Store, model: str, version: str, *, progress: Progress | None = None) -> Manifest:
    """Undo `yank`: the version is a candidate for ranges and `latest` again."""
    return _update(store, model, progress, f"un-yank {model}@{version}", lambda m: m.with_yank(version, ""))


__all__ = ["tag", "untag", "yank", "unyank"]
