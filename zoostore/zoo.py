"""The model-level view of a store: manifests, versions, tags (filled in by the manifest layer)."""

from __future__ import annotations

from zoostore.store import Store


class Zoo(Store):
    pass
