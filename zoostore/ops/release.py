"""Publishing a release: several models' versions in one pass (`zoostore publish-release`).

    plan every model     (zoostore.ops.publish.plan_publish: names, checks, hashes; refusals
                          such as ImmutableError come here, before anything is uploaded)
    upload once          the new files of every plan through one blob writer: shared packs, one
                          final pack and one batch of recipes, encoders busy across model ends
    commit each model    in the order given, each its own compare-and-swap on its manifest
                          (gc's "commit within half the grace period", docs/gc.md, counts from
                          the upload's start: the writer makes every reuse decision)

A release is not atomic across models: each model's manifest is its own document. When a commit
fails (a concurrent publisher of different content, a gc that deleted what the upload reused),
the models committed before it stay published, the error names them, and publishing the release
again uploads nothing for them (identical content is a no-op) and carries on with the rest.

Against publishing each model alone, this saves each model's interpreter start (one command),
its writer's drain at the model's end and its final pack and recipe flush (docs/publishing.md).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from zoostore.core.digest import Digest
from zoostore.core.errors import UsageError, ZooError
from zoostore.core.names import case_clashes
from zoostore.core.progress import NullProgress, Progress
from zoostore.ops.publish import PublishPlan, PublishResult
from zoostore.storage.recipe import ChunkRef
from zoostore.storage.writer import Hashed


def check_release(plans: Sequence[PublishPlan]) -> None:
    """One store, each model once, no new model spelled like another but for case: UsageError
    otherwise (two plans of one model would race for its manifest; publish each architecture of
    a model as its own release)."""
    if not plans:
        raise UsageError("publish-release: no models given; expected at least one model directory")
    seen: dict[str, PublishPlan] = {}
    for plan in plans:
        if plan.store.url != plans[0].store.url:
            raise UsageError(f"publish-release: {plan.model} is planned against {plan.store.url}, the "
                             f"others against {plans[0].store.url}; a release goes to one store")
        first = seen.setdefault(plan.model, plan)
        if first is not plan:
            raise UsageError(f"publish-release: model {plan.model!r} is given twice ({_where(first)} and "
                             f"{_where(plan)}); give each model once, or name one with MODEL=DIR")
    # Each plan checked its name against the store's models; new ones are checked against each
    # other here, before anything is uploaded (the commits would refuse the second spelling only
    # after committing the first).
    for plan in plans:
        others = case_clashes(plan.model, seen)
        if others and plan.base is not None and plan.base[0] is None:
            raise UsageError(f"publish-release: the new model {plan.model!r} and {others[0]!r} differ only in case: "
                             f"they collide on case-insensitive file systems (macOS, Windows); choose one name")


def _where(plan: PublishPlan) -> str:
    paths = sorted({str(p.parent) for p in plan.files.values()})
    return paths[0] if paths else "no files"


def execute_release(plans: Sequence[PublishPlan], progress: Progress | None = None, *,
                    published: list[PublishResult] | None = None) -> list[PublishResult]:
    """Upload every plan's new files through one writer, then commit each plan in order (see
    the module docstring). Unchanged plans upload nothing and only set their tags. Each result
    is also appended to `published` as its commit succeeds: after a failure it holds the
    models committed before it."""
    check_release(plans)
    progress = progress or NullProgress()
    todo = [p for p in plans if not p.unchanged]
    if todo:
        # gc's rule (docs/gc.md) counts from a publish's first reuse decision, and a release
        # makes them all in the shared upload: a plan only lists candidates, the writer stats
        # and freshens each object it reuses. Planning the other models must not count against
        # the first one: a release whose planning alone took half the grace period could then
        # never commit, however often it was run again.
        started = time.monotonic()
        for plan in todo:
            plan.started = max(plan.started, started)
        _upload(todo, progress)
    results: list[PublishResult] = [] if published is None else published
    for plan in plans:
        try:
            results.append(plan.execute(progress) if plan.unchanged else plan.commit())
        except ZooError as exc:
            if not results:
                raise
            done = ", ".join(f"{r.model}@{r.version}" for r in results)
            exc.args = (f"{exc}\n(published before this failed: {done}; publishing the release again "
                        f"uploads nothing for those and carries on with the rest)", *exc.args[1:])
            raise
    return results


def _upload(plans: Sequence[PublishPlan], progress: Progress) -> None:
    """One writer for every plan's files; each plan gets its own slice of the results."""
    files: list[Path] = []
    hashed: list[Hashed | None] = []
    previous: list[Digest | None] = []
    known: dict[Digest, ChunkRef] = {}
    sizes: list[int] = []
    for plan in plans:
        f, h, b = plan.upload_inputs()
        files += f
        hashed += h
        previous += b
        sizes.append(len(f))
        known.update(plan.known)  # any model's stored chunk is reusable (freshened like any reuse)
    uploaded = plans[0].store.blobs.put_files(files, known=known, progress=progress, hashed=hashed,
                                              previous=previous)
    start = 0
    for plan, n in zip(plans, sizes, strict=True):
        plan.uploaded_as(uploaded[start:start + n])
        start += n


__all__ = ["check_release", "execute_release"]
