"""`MODEL@SPEC`: a model name and the version spec that picks among its versions.

    yolo-v2-tiny                 the model; spec "latest" (the highest release, not yanked)
    yolo-v2-tiny@^1.2            a node-semver range
    yolo-v2-tiny@1.2.0           an exact version
    yolo-v2-tiny@bleedingedge    a tag

This is the one parser of the notation: `zoostore ls`, `gc --keep`, `zoo://` paths and
`zoostore.fetch` all use it. What a spec selects from a manifest is decided in one place too:
`zoostore.documents.resolve.select_versions` (every version it names) and `select` (the one
version a consumer gets).
"""

from __future__ import annotations


from zoostore.core.errors import UsageError
from zoostore.core.names import check_model_name
from zoostore.core.records import dataclass

LATEST = "latest"


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A parsed `MODEL[@SPEC]`. `explicit` says whether an `@SPEC` was written, for callers
    where a bare model name means something else than `@latest` (`gc --keep MODEL` keeps every
    version; `zoo://MODEL` lists the versions)."""

    model: str
    spec: str = LATEST
    explicit: bool = False

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """`"yolo@^1.2"` -> `ModelSpec("yolo", "^1.2", explicit=True)`; `"yolo"` ->
        `ModelSpec("yolo", "latest")`. Surrounding blanks are ignored. Raises UsageError for an
        invalid model name or an empty spec after '@'."""
        model, at, spec = text.strip().partition("@")
        model, spec = model.strip(), spec.strip()
        check_model_name(model)
        if at and not spec:
            raise UsageError(f"{text.strip()!r}: empty range after '@'; expected MODEL@SPEC (a range, version or tag) such as "
                             f"{model}@^1.2, {model}@1.2.0, {model}@bleedingedge or {model}@latest")
        return cls(model, spec if at else LATEST, bool(at))

    def __str__(self) -> str:
        return f"{self.model}@{self.spec}"
