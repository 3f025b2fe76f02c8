"""The model index: the store's model names, for readers that cannot list (HTTPS mirrors).

    index.toml
        # zoostore model index: written by publish, read where listing is impossible
        format = 1
        models = ["mlp", "yolo-v2-tiny"]

Publish adds a model the first time it writes its manifest, through the same compare-and-swap
as manifests (`Store.update_manifest`); `zoostore init` over an existing store rewrites it from
a listing (for stores made before the index existed). Readers that can list (local, S3) ignore
it: the listing is the truth, the index a copy for those that cannot.
"""

from __future__ import annotations

from collections.abc import Iterable

from zoostore.core.errors import FormatError
from zoostore.core.names import check_model_name
from zoostore.core.tomldoc import load_versioned

INDEX_KEY = "index.toml"
FORMAT = 1
_HEADER = "# zoostore model index: written by publish, read where listing is impossible (HTTPS mirrors)\n"


def parse_index(text: str, *, where: str) -> list[str]:
    doc, _ = load_versioned(text, where=where, supported=FORMAT)
    models = doc.get("models")
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise FormatError(f"{where}: key 'models' must be a list of model names, got {models!r}")
    for name in models:
        try:
            check_model_name(name)
        except Exception as exc:
            raise FormatError(f"{where}: models: {exc}") from None
    return sorted(set(models))


def render_index(models: Iterable[str]) -> bytes:
    import tomli_w  # only when writing: a sync reads these and never writes them

    return (_HEADER + tomli_w.dumps({"format": FORMAT, "models": sorted(set(models))})).encode("utf-8")
