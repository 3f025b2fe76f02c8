"""`zoostore.fetch`: one file of one model version, as a local path (cached, verified)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoostore.core.errors import UsageError
from zoostore.core.progress import Progress

if TYPE_CHECKING:
    from zoostore.core.digest import Digest
    from zoostore.documents.manifest import Manifest
    from zoostore.storage.blobs import BlobStore
    from zoostore.storage.cache import Cache


#: Set to 1 (or true, yes, on) to make `fetch`, `sync` and `zoo://` work from the cache alone,
#: like `--offline` (huggingface_hub's HF_HUB_OFFLINE).
OFFLINE_ENV = "ZOOSTORE_OFFLINE"


def offline_requested(offline: bool | None = None) -> bool:
    """`offline` when given, else $ZOOSTORE_OFFLINE (1/true/yes/on; 0/false/no/off or unset)."""
    if offline is not None:
        return offline
    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise UsageError(f"${OFFLINE_ENV}={value!r}: expected 1, true, yes or on (offline), or 0, false, no, off")


def fetch(model: str, spec: str = "latest", path: str = "", *, arch: str | None = None,
          store: str | None = None, cache: str | os.PathLike[str] | None = None, offline: bool | None = None,
          progress: Progress | None = None, storage_options: dict[str, Any] | None = None) -> Path:
    """The local path of one file of a model version: cached, verified, read-only (like
    `hf_hub_download`). `model` may be `MODEL@SPEC` (then `spec` must be left at its default);
    `spec` is a version, range or tag; `arch` defaults to this machine's. The store is found by
    `zoostore.documents.project.find_store`: `store`, else $ZOOSTORE_STORE, else zoo.toml (with
    its `[store_options]`); `storage_options` go to the store's backend over those.
    `offline` (default: $ZOOSTORE_OFFLINE) never contacts the store: the spec is resolved
    against the manifest as the last online fetch of this model read it, and the file must be
    cached; else OfflineError names what is missing."""
    from zoostore.core.names import host_arch
    from zoostore.core.spec import LATEST, ModelSpec
    from zoostore.documents.project import find_store
    from zoostore.documents.resolve import find_file, resolve
    from zoostore.storage.cache import Cache

    parsed = ModelSpec.parse(model)
    if parsed.explicit and spec != LATEST:
        raise UsageError(f"fetch({model!r}, {spec!r}): the spec is given twice; pass either "
                         f"{model!r} or ({parsed.model!r}, {spec!r})")
    if parsed.explicit:
        spec = parsed.spec
    (url, defaults), files = find_store(store), Cache(cache)
    manifest, blobs = _manifest(files, url, parsed.model, spec, offline=offline_requested(offline),
                                storage_options=storage_options, default_options=defaults)
    resolved = resolve(manifest, spec, arch=arch or host_arch())
    if not path:
        raise UsageError(f"fetch needs a file path; {parsed.model}@{resolved.version} ({resolved.arch}) has: "
                         f"{', '.join(sorted(resolved.files))}")
    entry = find_file(resolved, path)
    what = f"{parsed.model}@{resolved.version} {resolved.arch}/{path}"
    return _cached_verified(files, blobs, entry.blob, model=parsed.model, what=what, progress=progress)


def _manifest(cache: Cache, url: str, model: str, spec: str, *, offline: bool,
              storage_options: dict[str, Any] | None = None,
              default_options: dict[str, Any] | None = None) -> tuple[Manifest, BlobStore | None]:
    """The model's manifest and the store's blobs: read from the store (and its copy kept in
    the cache), or offline the cached copy and no blobs."""
    from zoostore.core.errors import OfflineError
    from zoostore.documents.manifest import Manifest
    from zoostore.repository import open_store

    if offline:
        text = cache.cached_manifest(url, model)
        if text is None:
            raise OfflineError(f"offline (--offline or ${OFFLINE_ENV}): cannot resolve {model}@{spec}: the cache "
                               f"{cache.root} holds no manifest of {model} from {url} (no online fetch of it on this "
                               f"machine yet). Fetch it once online, or unset ${OFFLINE_ENV}")
        return Manifest.parse(text, where=f"{url.rstrip('/')}/manifests/{model}.toml (cached copy)"), None
    zoo = open_store(url, storage_options=storage_options, default_options=default_options)
    manifest = zoo.manifest(model)
    cache.save_manifest(url, model, manifest.to_toml())
    return manifest, zoo.blobs


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
