"""`zoostore.fetch`: one file of one model version, as a local path (cached, verified)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zoostore.core.errors import UsageError
from zoostore.core.progress import Progress


def fetch(model: str, spec: str = "latest", path: str = "", *, arch: str | None = None,
          store: str | None = None, cache: str | os.PathLike[str] | None = None,
          progress: Progress | None = None, storage_options: dict[str, Any] | None = None) -> Path:
    """The local path of one file of a model version: cached, verified, read-only (like
    `hf_hub_download`). `model` may be `MODEL@SPEC` (then `spec` must be left at its default);
    `spec` is a version, range or tag; `arch` defaults to this machine's. The store is found by
    `zoostore.documents.project.find_store`: `store`, else $ZOOSTORE_STORE, else zoo.toml (with
    its `[store_options]`); `storage_options` go to the store's backend over those."""
    from zoostore.core.names import host_arch
    from zoostore.core.spec import LATEST, ModelSpec
    from zoostore.documents.project import find_store
    from zoostore.documents.resolve import find_file
    from zoostore.repository import open_store
    from zoostore.storage.cache import Cache

    parsed = ModelSpec.parse(model)
    if parsed.explicit and spec != LATEST:
        raise UsageError(f"fetch({model!r}, {spec!r}): the spec is given twice; pass either "
                         f"{model!r} or ({parsed.model!r}, {spec!r})")
    if parsed.explicit:
        spec = parsed.spec
    url, defaults = find_store(store)
    zoo = open_store(url, storage_options=storage_options, default_options=defaults)
    resolved = zoo.resolve(parsed.model, spec, arch=arch or host_arch())
    if not path:
        raise UsageError(f"fetch needs a file path; {parsed.model}@{resolved.version} ({resolved.arch}) has: "
                         f"{', '.join(sorted(resolved.files))}")
    entry = find_file(resolved, path)
    return Cache(cache).ensure(zoo.blobs, entry.blob, model=parsed.model, progress=progress,
                               what=f"{parsed.model}@{resolved.version} {resolved.arch}/{path}")
