"""What gc learnt of a store's recipes, kept on this machine so that the next gc reads only the
recipes that are new: `{cache}/gc/<sha256 of the store URL>.json`.

    {"format": 1, "code": "<zoostore version>", "store": url,
     "recipes": {"blobs/aa/<hex>": [size, mtime, ["packs/bb/<hex>", ...]]}}

An entry is used only while the listing still shows the recipe with the same size and mtime
(a recipe is written once; gc's repack rewrites it, which changes both), and the whole file only
when the zoostore version that wrote it is this one (what a recipe references could change
between versions). Anything unreadable is ignored: the cache only ever saves requests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from zoostore.core.atomic import atomic_write
from zoostore.core.version import __version__
from zoostore.storage.backends.base import ObjectInfo

FORMAT = 1


def _code() -> str:
    """This zoostore's version and a digest of the code that says what a recipe references
    (recipe decoding, gc's survey): any change to either invalidates every cache file."""
    from zoostore.storage import recipe

    h = hashlib.sha256()
    for source in (Path(recipe.__file__ or ""), Path(__file__).with_name("survey.py")):
        try:
            h.update(source.read_bytes())
        except OSError:
            h.update(str(source).encode())
    return f"{__version__}+{h.hexdigest()[:16]}"


def cache_file(root: Path, url: str) -> Path:
    return root / "gc" / (hashlib.sha256(url.encode("utf-8", "surrogateescape")).hexdigest()[:32] + ".json")


def load(path: Path, url: str, listing: Mapping[str, ObjectInfo]) -> dict[str, tuple[str, ...]]:
    """Recipe key -> the packs it names, for the recipes the listing shows unchanged."""
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT or doc.get("code") != _code() or doc.get("store") != url:
            return {}
        out = {}
        for key, (size, mtime, packs) in doc["recipes"].items():
            info = listing.get(key)
            if info is not None and info.size == size and info.mtime == mtime:
                out[key] = tuple(str(p) for p in packs)
        return out
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def save(path: Path, url: str, listing: Mapping[str, ObjectInfo], packs_of: Iterable[tuple[str, tuple[str, ...]]]) -> None:
    recipes: dict[str, Any] = {}
    for key, packs in packs_of:
        info = listing.get(key)
        if info is not None and info.mtime is not None:
            recipes[key] = [info.size, info.mtime, list(packs)]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps({"format": FORMAT, "code": _code(), "store": url,
                                       "recipes": recipes}, separators=(",", ":")).encode(), fsync=False)
    except OSError:
        pass  # a cache that cannot be written costs the next gc some requests, nothing else
