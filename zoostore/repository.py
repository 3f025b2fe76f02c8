"""The repository: one store location (any fsspec URL or a local path) with its config, its
blobs and its manifests. Operations (zoostore.ops) work on a `Store`; nothing below imports it.

    <store>/zoostore.toml            format, chunking, pack size, codecs, gc grace (documents.store_config)
    <store>/packs/<aa>/<pack id>     chunk frames + footer                          (storage.pack)
    <store>/blobs/<aa>/<blob id>     recipe of one file                              (storage.recipe)
    <store>/manifests/<model>.toml   versions, tags, per-arch files of one model     (documents.manifest)

Manifest updates are compare-and-swap: read (bytes + token), apply a pure change function,
write only if the token is unchanged (S3 If-Match / If-None-Match; an exclusive lock file on
local disks), else re-read and re-apply. Two publishers never lose each other's versions.
"""

from __future__ import annotations

import os
from dataclasses import replace
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from zoostore.core.digest import Digest
from zoostore.core.errors import (
    ConflictError,
    LockTimeoutError,
    FormatError,
    NewerFormatError,
    NotFoundError,
    ObjectNotFoundError,
    ReadOnlyError,
    StoreExistsError,
    StoreNotFoundError,
    UsageError,
)
from zoostore.core.names import case_clashes, check_model_name, host_arch
from zoostore.core.progress import Progress
from zoostore.documents.manifest import Manifest, manifest_key
from zoostore.documents.store_config import CONFIG_KEY, StoreConfig
from zoostore.documents.store_index import INDEX_KEY, parse_index, render_index
from zoostore.storage.backends import Backend, open_backend
from zoostore.storage.blobs import BlobStore

if TYPE_CHECKING:
    from zoostore.documents.resolve import Resolved

#: CAS retries before giving up; with jittered backoff this rides out dozens of publishers.
CAS_ATTEMPTS = 200


def _jitter(low: float, high: float) -> float:
    """`random.uniform`, imported only when a CAS conflict needs it (not at start-up)."""
    import random

    return random.uniform(low, high)


class Store:
    """An opened store. Cheap to create; holds no connections until used."""

    def __init__(self, backend: Backend, config: StoreConfig) -> None:
        self.backend = backend
        self.config = config
        self.url = backend.url
        self.blobs = BlobStore(backend, config)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def close(self) -> None:
        """Release the reader threads and the backend's connections. The store stays usable:
        both are created again on demand."""
        self.blobs.close()
        self.backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def models(self) -> list[str]:
        """Model names: one listing of manifests/, or where the backend cannot list (HTTPS
        mirrors), the model index that publish keeps (documents/store_index.py)."""
        if not self.backend.capabilities.listing:
            return self._indexed_models()
        names = []
        for info in self.backend.list("manifests/"):
            name = info.key[len("manifests/"):]
            if name.endswith(".toml") and "/" not in name:
                names.append(name[: -len(".toml")])
        return sorted(names)

    def check_new_model(self, model: str) -> None:
        """UsageError if the store has a model whose name differs from `model`, a model it does
        not have yet, only in case: on case-insensitive file systems (macOS, Windows) their
        manifests, cache folders and consumers' model folders would be the same."""
        clash = case_clashes(model, self.models())
        if clash:
            raise UsageError(
                f"model {model!r} would be new in {self.url}, which has the model {clash[0]!r}: names that "
                f"differ only in case collide on case-insensitive file systems (macOS, Windows), in the "
                f"store and in consumers' folders. Publish as {clash[0]!r}, or choose another name")

    def _indexed_models(self) -> list[str]:
        try:
            data = self.backend.get(INDEX_KEY)
        except ObjectNotFoundError:
            raise NotFoundError(
                f"{self.url} cannot be listed and has no {INDEX_KEY}, the model index that publish keeps: "
                f"name a model directly, or ask the store's maintainer to run 'zoostore init' once on the "
                f"store's writable URL (s3:// or a directory), which writes it") from None
        return parse_index(data.decode("utf-8", "replace"), where=f"{self.url.rstrip('/')}/{INDEX_KEY}")

    def refresh_index(self, *, add: str | None = None) -> list[str]:
        """Keep `index.toml` current, with compare-and-swap: `add` one model (publish's first
        manifest of a model), or rewrite it from a listing (`init` over an existing store)."""
        for _ in range(CAS_ATTEMPTS):
            token: str | None = None
            have: list[str] = []
            try:
                current = self.backend.get_versioned(INDEX_KEY)
                token = current.token
                have = parse_index(current.data.decode("utf-8", "replace"), where=f"{self.url}/{INDEX_KEY}")
            except ObjectNotFoundError:
                pass
            except NewerFormatError:
                raise
            except FormatError:
                add = None  # a damaged index is rebuilt from a listing
            if add is not None and token is not None:
                want = sorted(set(have) | {add})
            else:
                want = sorted(set(self.models()) | ({add} if add else set()))
            if token is not None and want == have:
                return have
            try:
                if token is None:
                    if not self.backend.put_if_absent(INDEX_KEY, render_index(want)):
                        continue
                else:
                    self.backend.put_cas(INDEX_KEY, render_index(want), expected=token)
                return want
            except LockTimeoutError:
                raise
            except ConflictError:
                time.sleep(_jitter(0, 0.05))
        raise ConflictError(f"{INDEX_KEY}: gave up after {CAS_ATTEMPTS} concurrent-update conflicts; retry the command")

    def manifest(self, model: str) -> Manifest:
        check_model_name(model)
        try:
            data = self.backend.get(manifest_key(model))
        except ObjectNotFoundError:
            raise NotFoundError(self.unknown_model(model)) from None
        return Manifest.parse(data.decode("utf-8"), where=self._where(model))

    def pin_status(self, model: str, version: str) -> tuple[str, str] | None:
        """What is wrong with a pinned `model@version`: ("yanked", the reason), ("missing", the
        versions the store lists, newest first, or "" when the model is gone), or None. A
        manifest that has the version's table and whose every line that mentions `yanked` is the
        empty `yanked = ""` that zoostore writes for each version is not parsed: a sync that
        places files checks every pinned model, and parsing is most of that check's cost."""
        check_model_name(model)
        try:
            data = self.backend.get(manifest_key(model))
        except ObjectNotFoundError:
            return "missing", ""
        listed = f'[versions."{version}"]'.encode() in data
        if listed and all(line.strip() == b'yanked = ""' for line in data.splitlines() if b"yanked" in line):
            return None
        manifest = Manifest.parse(data.decode("utf-8"), where=self._where(model))
        release = manifest.versions.get(version)
        if release is None:
            return "missing", ", ".join(manifest.sorted_versions()[::-1])
        return ("yanked", release.yanked) if release.yanked else None

    def manifest_versioned(self, model: str) -> tuple[Manifest | None, str | None]:
        """The manifest (None if absent) and its compare-and-swap token: a writer that reads
        first hands both to `update_manifest(current=...)`, which then need not read again."""
        check_model_name(model)
        try:
            got = self.backend.get_versioned(manifest_key(model))
        except ObjectNotFoundError:
            return None, None
        return Manifest.parse(got.data.decode("utf-8"), where=self._where(model)), got.token

    def _where(self, model: str) -> str:
        return f"{self.url.rstrip('/')}/{manifest_key(model)}"

    def unknown_model(self, model: str) -> str:
        """"No model X in this store; models: ..." for errors about a missing model."""
        try:
            known = self.models()
            listing = ", ".join(known) if known else "none (publish one with 'zoostore publish')"
        except Exception:  # listing may be unsupported (HTTP)
            listing = "(this store cannot list models)"
        return f"no model {model!r} in {self.url}; models: {listing}"

    def resolve(self, model: str, spec: str = "latest", *, arch: str | None = None,
                runtime: Mapping[str, str] | None = None) -> Resolved:
        """The version `spec` picks for `arch` (default: this machine's), with its files."""
        from zoostore.documents.resolve import resolve  # not at import: publish never resolves

        return resolve(self.manifest(model), spec, arch=arch or host_arch(), runtime=runtime)

    def cas_warning(self) -> str | None:
        """Why concurrent manifest writers can lose updates here, or None where the backend's
        compare-and-swap is atomic (`Capabilities.atomic_cas`)."""
        if self.backend.capabilities.atomic_cas:
            return None
        return (f"{self.url}: this backend has no atomic compare-and-swap, so two writers updating "
                f"the same manifest at once can lose one's change; publish, tag, yank and gc here "
                f"from one writer at a time")

    def update_manifest(self, model: str, change: Callable[[Manifest | None], Manifest | None], *,
                        progress: Progress | None = None,
                        current: tuple[Manifest | None, str | None] | None = None) -> Manifest | None:
        """Apply `change` to the current manifest (None if absent) and store the result with
        compare-and-swap, retrying on conflicts. `change` must be pure: it may run many times.
        Returning the input unchanged writes nothing. Where the backend's compare-and-swap is
        not atomic, `progress` gets a note saying so (`cas_warning`). `current`, from
        `manifest_versioned`, is the first attempt's manifest and token (a stale one only costs
        a conflict and a re-read)."""
        check_model_name(model)
        if not self.backend.capabilities.writes:
            raise ReadOnlyError(f"{self.url} is read-only; publish to the store's s3:// or local URL instead")
        warning = self.cas_warning()
        if warning and progress is not None:
            progress.note(warning)
        key = manifest_key(model)
        last: ConflictError | None = None
        for attempt in range(CAS_ATTEMPTS):
            token: str | None
            old: Manifest | None
            if attempt == 0 and current is not None:
                old, token = current
            else:
                old, token = self.manifest_versioned(model)
            new = change(old)
            if new is None or new == old:
                if attempt == 0 and current is not None:
                    current = None  # a no-op on a copy read earlier proves nothing: read the stored one
                    continue
                return old
            if old is None:
                # Only a change that creates the manifest makes a new model (a tag of a missing
                # model fails in `change`, naming it; a no-op lists nothing).
                self.check_new_model(model)
            try:
                self.backend.put_cas(key, new.to_toml().encode(), expected=token)
                if old is None:
                    self.refresh_index(add=model)  # readers that cannot list learn the new model
                return new
            except LockTimeoutError:
                raise
            except ConflictError as e:
                last = e
                time.sleep(_jitter(0, min(0.5, 0.005 * 2 ** min(attempt, 7))))
        raise ConflictError(f"{key}: gave up after {CAS_ATTEMPTS} concurrent-update conflicts; retry the command "
                            f"(last: {last})")

    def referenced_blobs(self) -> dict[Digest, tuple[int, str]]:
        """Every blob any manifest lists -> (size, where it is listed)."""
        out: dict[Digest, tuple[int, str]] = {}
        for model in self.models():
            m = self.manifest(model)
            for v, release in m.versions.items():
                for arch, path, entry in release.blobs():
                    out.setdefault(entry.blob, (entry.size, f"{model}@{v} {arch}/{path}"))
        return out


def open_store(url: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None,
               default_options: dict[str, Any] | None = None) -> Store:
    """Open an existing store. Raises StoreNotFoundError when the location holds no
    `zoostore.toml`, NewerFormatError when a newer zoostore wrote it. `default_options` are
    a project's (zoo.toml), under the environment's, the command line's and `storage_options`."""
    backend = open_backend(os.fspath(url), storage_options=storage_options, default_options=default_options)
    try:
        text = backend.get(CONFIG_KEY).decode("utf-8")
    except ObjectNotFoundError:
        raise StoreNotFoundError(
            f"no zoostore store at {backend.url}: {CONFIG_KEY} is missing. Check the URL, or "
            f"create a store there with 'zoostore init {url}'"
        ) from None
    config = StoreConfig.from_toml(text, where=f"{backend.url.rstrip('/')}/{CONFIG_KEY}")
    return Store(backend, config)


def config_differences(existing: StoreConfig, wanted: StoreConfig) -> list[str]:
    """What differs between two store configs, one line per parameter ("grace: 24h in the store,
    1h asked")."""
    from zoostore.core.units import human_bytes
    from zoostore.documents.store_config import format_duration
    from zoostore.storage.codec import CODEC_NAMES

    def show(c: StoreConfig) -> dict[str, str]:
        return {
            "chunking": f"{c.chunking.min_size}/{c.chunking.avg_size}/{c.chunking.max_size} bytes (min/avg/max)",
            "pack target size": human_bytes(c.pack_target_size),
            "codecs": ", ".join(CODEC_NAMES.get(x, str(x)) for x in c.codecs),
            "zstd level": str(c.zstd_level),
            "delta frames": "on" if c.delta else "off",
            "gc grace": format_duration(c.grace_seconds),
        }
    have, want = show(existing), show(wanted)
    return [f"{k}: {have[k]} in the store, {want[k]} asked" for k in have if have[k] != want[k]]


def init_store(url: str | os.PathLike[str], *, config: StoreConfig | None = None,
               storage_options: dict[str, Any] | None = None, any_delta: bool = False) -> tuple[Store, bool]:
    """Create a store (write `zoostore.toml`, never replacing one). Returns (store, created). An
    existing store with the same parameters is fine (created=False); one with different ones is
    refused, naming each parameter that differs. With `any_delta`, an existing store may have
    delta frames on or off (`config.delta` is only the choice for a new store). Code chunking
    (`chunking.code`) is only the choice for a new store too: an existing store keeps its own."""
    config = config or StoreConfig()
    backend = open_backend(os.fspath(url), storage_options=storage_options)
    created = backend.put_if_absent(CONFIG_KEY, config.to_toml().encode())
    if not created:
        where = f"{backend.url.rstrip('/')}/{CONFIG_KEY}"
        existing = StoreConfig.from_toml(backend.get(CONFIG_KEY).decode("utf-8"), where=where)
        config = replace(config, chunking=replace(config.chunking, code=existing.chunking.code))
        diffs = config_differences(existing, replace(config, delta=existing.delta) if any_delta else config)
        if diffs:
            only_grace = all(d.startswith("gc grace") for d in diffs)
            hint = (f"The grace period may change: zoostore config {url} --grace DURATION" if only_grace else
                    "A store's chunking, packs and codecs never change: use the store as it is "
                    "(zoostore init without those options), or choose another location")
            raise StoreExistsError(f"{backend.url} already holds a zoostore store with other parameters: "
                                   f"{'; '.join(diffs)}. {hint}")
        config = existing
    store = Store(backend, config)
    store.refresh_index()  # a store made before the index existed gets one
    return store, created


def set_grace(store: Store, seconds: float) -> StoreConfig:
    """Change the store's gc grace period (compare-and-swap on zoostore.toml): publish and gc
    read it at the start of every run."""
    return _update_config(store, lambda c: replace(c, grace_seconds=seconds))


def enable_delta(store: Store) -> StoreConfig:
    """Turn delta frames and recipe edits on for an existing store: zoostore.toml becomes
    format 3 (a format-4 store stays 4), which zoostore versions without them refuse with
    "upgrade zoostore" (they could not read the frames or recipes). Existing packs and recipes stay as they are; new publishes
    may use deltas. One way: the store cannot go back to an older format."""
    from zoostore.documents.store_config import EDITS_FORMAT

    return _update_config(store, lambda c: replace(c, delta=True, format=max(c.format, EDITS_FORMAT)))


def _update_config(store: Store, change: Callable[[StoreConfig], StoreConfig]) -> StoreConfig:
    """The changeable store parameters (grace, delta frames), with compare-and-swap on
    zoostore.toml; chunking, packs and codecs never change."""
    for _ in range(CAS_ATTEMPTS):
        current = store.backend.get_versioned(CONFIG_KEY)
        where = f"{store.url.rstrip('/')}/{CONFIG_KEY}"
        config = StoreConfig.from_toml(current.data.decode("utf-8"), where=where)
        new = change(config)
        if new == config:
            return config
        try:
            store.backend.put_cas(CONFIG_KEY, new.to_toml().encode(), expected=current.token)
        except LockTimeoutError:
            raise
        except ConflictError:
            time.sleep(_jitter(0, 0.05))
            continue
        store.config = new
        return new
    raise ConflictError(f"{CONFIG_KEY}: gave up after {CAS_ATTEMPTS} concurrent-update conflicts; retry the command")
