"""`zoostore.fetch`: one file of one model version, as a local path (cached, verified)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from zoostore.core.errors import UsageError
from zoostore.core.progress import Progress

if TYPE_CHECKING:
    from zoostore.core.digest import Digest
    from zoostore.storage.blobs import BlobStore
    from zoostore.storage.cache import Cache


def fetch(model: str, spec: str = "latest", path: str = "", *, arch: str | None = None,
          store: str | None = None, cache: str | os.PathLike[str] | None = None,
          progress: Progress | None = None) -> Path:
    """The local path of one file of a model version: cached, verified, read-only (like
    `hf_hub_download`). `model` may be `MODEL@SPEC` (then `spec` must be left at its default);
    `spec` is a version, range or tag; `arch` defaults to this machine's. The store is found by
    `zoostore.documents.project.find_store_url`: `store`, else $ZOOSTORE_STORE, else zoo.toml."""
    from zoostore.core.names import host_arch
    from zoostore.core.spec import LATEST, ModelSpec
    from zoostore.documents.project import find_store_url
    from zoostore.documents.resolve import find_file
    from zoostore.repository import open_store
    from zoostore.storage.cache import Cache

    parsed = ModelSpec.parse(model)
    if parsed.explicit and spec != LATEST:
        raise UsageError(f"fetch({model!r}, {spec!r}): the spec is given twice; pass either "
                         f"{model!r} or ({parsed.model!r}, {spec!r})")
    if parsed.explicit:
        spec = parsed.spec
    zoo = open_store(find_store_url(store))
    resolved = zoo.resolve(parsed.model, spec, arch=arch or host_arch())
    if not path:
        raise UsageError(f"fetch needs a file path; {parsed.model}@{resolved.version} ({resolved.arch}) has: "
                         f"{', '.join(sorted(resolved.files))}")
    entry = find_file(resolved, path)
    what = f"{parsed.model}@{resolved.version} {resolved.arch}/{path}"
    return _cached_verified(Cache(cache), zoo.blobs, entry.blob, model=parsed.model, what=what, progress=progress)


def _cached_verified(cache: Cache, blobs: BlobStore | None, blob: Digest, *, model: str, what: str,
                     progress: Progress | None) -> Path:
    """The cached file for `blob`, checked before it is returned (`Cache.check`: hashed unless
    its verified stamp holds); a damaged one is dropped, fetched again, and warned about."""
    found = cache.check(blob)
    if found == "damaged":
        msg = (f"the cached file for {what} ({cache.blob_path(blob)}) no longer hashes to {blob}: "
               f"dropped it and fetching it again")
        if progress is not None:
            progress.note(msg)
        else:
            warnings.warn(msg, UserWarning, stacklevel=3)
    path = cache.ensure(blobs, blob, model=model, progress=progress, what=what)
    if found != "ok":
        cache.stamp(blob)   # ensure() verified it as it fetched it
    return path
