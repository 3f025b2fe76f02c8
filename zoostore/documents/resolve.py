"""Choosing a version: tags, ranges, `latest`, yanking and runtime requirements.

A spec is `latest` (or empty), a tag name (`bleedingedge`), an exact version or a node-semver
range (`zoostore.core.spec.ModelSpec` parses `MODEL@SPEC`). Two questions, one answer each:
`select` gives the one release a consumer gets (lock, fetch, `zoo://`); `select_versions` gives
every version a spec names (`zoostore ls MODEL@SPEC`), where `latest` names the single version it
resolves to, never every version. Ranges never pick yanked versions; an exact version or a tag may (with a warning), the
way cargo keeps yanked versions usable for lockfiles that already pin them.

Runtime requirements: a version may say `requires = { tvm = ">=0.27.0 <0.28.0" }`. A consumer
that declares `[runtime] tvm = "0.27.1"` only gets versions whose requirement its runtime
satisfies; a requirement on a key the consumer does not declare is a warning, not an exclusion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import field

from zoostore.core import semver
from zoostore.core.errors import NotFoundError, ResolutionError, UsageError
from zoostore.core.records import dataclass
from zoostore.documents.manifest import FileEntry, Manifest, Release
from zoostore.core.names import ANY
from zoostore.core.spec import LATEST


@dataclass(frozen=True)
class Resolved:
    """A model version chosen for one architecture, with the files that arch gets."""

    model: str
    spec: str
    version: str
    arch: str
    release: Release
    files: Mapping[str, FileEntry]
    warnings: tuple[str, ...] = field(default=())


def runtime_problems(release: Release, runtime: Mapping[str, str] | None) -> tuple[list[str], list[str]]:
    """(exclusions, warnings) of a release against a consumer's runtime."""
    if runtime is None:
        return [], []
    excluded, warnings = [], []
    for key, rng in sorted(release.requires.items()):
        have = runtime.get(key)
        if have is None:
            warnings.append(f"{release.model}@{release.version} requires {key} {rng}, which this project "
                            f"does not declare; add it under [runtime] in zoo.toml to have it checked")
            continue
        try:
            ok = semver.satisfies(have, rng)
        except UsageError:
            ok = False
        if not ok:
            excluded.append(f"{release.version} requires {key} {rng} (you have {have})")
    return excluded, warnings


def select(manifest: Manifest, spec: str, *, runtime: Mapping[str, str] | None = None,
           arch: str | Sequence[str] | None = None) -> tuple[Release, list[str]]:
    """The release a spec picks, and warnings. Raises ResolutionError naming what was excluded
    and why, or listing the versions and tags that exist."""
    spec = _spec_text(manifest, spec)
    model = manifest.model
    warnings: list[str] = []
    wanted = [] if arch is None else [arch] if isinstance(arch, str) else list(arch)
    wanted = [a for a in wanted if a != ANY]

    def check(release: Release) -> list[str]:
        excluded, warns = runtime_problems(release, runtime)
        warnings.extend(warns)
        for a in wanted:
            if a not in release.files and ANY not in release.files:
                excluded.append(f"{release.version} has no files for {a} (it has {', '.join(release.archs)})")
        return excluded

    direct = manifest.tags.get(spec, spec if spec in manifest.versions else None)
    if direct is not None:
        return _select_direct(manifest, spec, direct, check, warnings), warnings

    if spec == LATEST:
        rng = "*"
    elif semver.is_range(spec):
        rng = spec
    else:
        raise ResolutionError(f"{model} has no tag or version {spec!r}, and it is not a version range (such as "
                              f"^1.2, ~1.2.3, 1.x or >=1.2 <2); {_listing(manifest)}")

    excluded: dict[str, list[str]] = {}
    candidates: list[str] = []
    for v, release in manifest.versions.items():
        if not semver.satisfies(v, rng):
            continue
        problems = [f"{v} is yanked ({release.yanked})"] if release.yanked else check(release)
        if problems:
            excluded[v] = problems
            continue
        candidates.append(v)
    best = semver.max_satisfying(candidates, rng)
    if best is None:
        why = f"; excluded: {'; '.join(sorted(p for ps in excluded.values() for p in ps))}" if excluded else ""
        raise ResolutionError(f"no version of {model} matches {spec!r}{why}. {_listing(manifest)}")
    return manifest.versions[best], warnings + _skipped_newer(model, spec, best, excluded)


def _listing(manifest: Manifest) -> str:
    """"tags: …; versions: …" for an error message (built only when one is raised: it costs
    O(N log N) in the number of versions)."""
    available = ", ".join(manifest.sorted_versions()) or "none"
    # `latest` resolves like a tag, and `ls` lists it as one: say so here too (not "tags: none").
    latest = {"latest": manifest.latest()} if manifest.latest() else {}
    tags = ", ".join(f"{t}={v}" for t, v in sorted({**manifest.tags, **latest}.items())) or "none"
    return f"tags: {tags}; versions: {available}"


def _skipped_newer(model: str, spec: str, best: str, excluded: Mapping[str, list[str]]) -> list[str]:
    """Why each version newer than `best` that `spec` matches was not chosen."""
    return [f"{model}: newer {v} matching {spec!r} skipped, using {best}: {'; '.join(excluded[v])}"
            for v in sorted(excluded, key=semver.parse_version)
            if semver.parse_version(v) > semver.parse_version(best)]


def _select_direct(manifest: Manifest, spec: str, version: str, check: Callable[[Release], list[str]],
                   warnings: list[str]) -> Release:
    """The release a tag or an exact version names, if it suits the runtime and archs."""
    release = manifest.versions.get(version)
    if release is None:
        raise ResolutionError(f"{manifest.model}: tag {spec!r} points to {version}, which is not in the manifest")
    problems = check(release)
    if problems:
        raise ResolutionError(f"{manifest.model}@{spec}: {'; '.join(problems)}")
    if release.yanked:
        warnings.append(f"{manifest.model}@{release.version} is yanked: {release.yanked}")
    return release


def select_versions(manifest: Manifest, spec: str) -> list[str]:
    """Every version `spec` names, oldest first: a tag or an exact version names one, `latest`
    the one `Manifest.latest()` picks (none when every release is yanked or a prerelease), a
    range every version it satisfies (yanked ones included: this answers "what exists", not
    "what would a consumer get"). Anything else is a ResolutionError listing tags and versions."""
    spec = _spec_text(manifest, spec)
    if spec in manifest.tags:
        return [manifest.tags[spec]]
    if spec in manifest.versions:
        return [spec]
    if spec == LATEST:
        latest = manifest.latest()
        return [latest] if latest else []
    if not semver.is_range(spec):
        raise ResolutionError(f"{manifest.model} has no tag or version {spec!r}, and it is not a version range; "
                              f"{_listing(manifest)}")
    return [v for v in manifest.sorted_versions() if semver.satisfies(v, spec)]


def _spec_text(manifest: Manifest, spec: object) -> str:
    """The spec as text; a version equal in precedence to a published one (`v1.2.0` for
    `1.2.0+20220504`) names that one. Non-text is a UsageError, never an AttributeError."""
    if spec is None:
        return LATEST
    if not isinstance(spec, str):
        raise UsageError(f"{manifest.model}: invalid version, tag or range {spec!r}: expected a string "
                         f"such as 1.2.0, ^1.2 or bleedingedge, got {type(spec).__name__}")
    text = spec.strip() or LATEST
    if text not in manifest.versions and text not in manifest.tags:
        try:
            same = manifest.same_version(text)
        except UsageError:
            same = None
        if same is not None:
            return same
    return text


def resolve(manifest: Manifest, spec: str, *, arch: str, runtime: Mapping[str, str] | None = None) -> Resolved:
    release, warnings = select(manifest, spec, runtime=runtime, arch=arch)
    return Resolved(manifest.model, spec, release.version, arch, release, release.files_for(arch), tuple(warnings))


def find_file(resolved: Resolved, path: str) -> FileEntry:
    entry = resolved.files.get(path)
    if entry is None:
        listing = ", ".join(sorted(resolved.files)) or "none"
        what = f"{resolved.model}@{resolved.version} ({resolved.arch}) has no file {path!r}"
        archs = resolved.release.archs
        # a typo such as x64, or an arch the version was not built for; a version of `any` files
        # only gives every arch all of them, so there the name is wrong, not the arch
        if resolved.arch not in archs and any(a != ANY for a in archs):
            what += (f"; it has no files for {resolved.arch}, only architecture-independent ones (its "
                     f"architectures: {', '.join(archs) or 'none'}): check the arch")
        raise NotFoundError(f"{what}; files: {listing}")
    return entry
