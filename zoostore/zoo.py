"""The model-level view of a store: manifests, versions, tags, resolution.

Manifest updates are compare-and-swap: read (bytes + token), apply a pure change function,
write only if the token is unchanged (S3 If-Match / If-None-Match; an exclusive lock file on
local disks), else re-read and re-apply. Two publishers never lose each other's versions.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping

from zoostore.digest import Digest
from zoostore.errors import ConflictError, NotFoundError, ObjectNotFoundError, ReadOnlyError
from zoostore.manifest import Manifest, manifest_key
from zoostore.paths import check_model_name, host_arch
from zoostore.resolve import Resolved, resolve
from zoostore.store import Store

#: CAS retries before giving up; with jittered backoff this rides out dozens of publishers.
CAS_ATTEMPTS = 200


class Zoo(Store):
    def models(self) -> list[str]:
        """Model names (one listing of manifests/)."""
        names = []
        for info in self.backend.list("manifests/"):
            name = info.key[len("manifests/"):]
            if name.endswith(".toml") and "/" not in name:
                names.append(name[: -len(".toml")])
        return sorted(names)

    def manifest(self, model: str) -> Manifest:
        check_model_name(model)
        try:
            data = self.backend.get(manifest_key(model))
        except ObjectNotFoundError:
            raise NotFoundError(self._unknown_model(model)) from None
        return Manifest.parse(data.decode("utf-8"), where=self._where(model))

    def _where(self, model: str) -> str:
        return f"{self.url.rstrip('/')}/{manifest_key(model)}"

    def _unknown_model(self, model: str) -> str:
        try:
            known = self.models()
            listing = ", ".join(known) if known else "none (publish one with 'zoostore publish')"
        except Exception:  # listing may be unsupported (HTTP)
            listing = "(this store cannot list models)"
        return f"no model {model!r} in {self.url}; models: {listing}"

    def resolve(self, model: str, spec: str = "latest", *, arch: str | None = None,
                runtime: Mapping[str, str] | None = None) -> Resolved:
        """The version `spec` picks for `arch` (default: this machine's), with its files."""
        return resolve(self.manifest(model), spec, arch=arch or host_arch(), runtime=runtime)

    def update_manifest(self, model: str, change: Callable[[Manifest | None], Manifest | None]) -> Manifest | None:
        """Apply `change` to the current manifest (None if absent) and store the result with
        compare-and-swap, retrying on conflicts. `change` must be pure: it may run many times.
        Returning the input unchanged writes nothing."""
        check_model_name(model)
        if not self.backend.capabilities.writes:
            raise ReadOnlyError(f"{self.url} is read-only; publish to the store's s3:// or local URL instead")
        key = manifest_key(model)
        for attempt in range(CAS_ATTEMPTS):
            try:
                current = self.backend.get_versioned(key)
                token: str | None = current.token
                old: Manifest | None = Manifest.parse(current.data.decode("utf-8"), where=self._where(model))
            except ObjectNotFoundError:
                token, old = None, None
            new = change(old)
            if new is None or new == old:
                return old
            try:
                self.backend.put_cas(key, new.to_toml().encode(), expected=token)
                return new
            except ConflictError:
                time.sleep(random.uniform(0, min(0.5, 0.005 * 2 ** min(attempt, 7))))
        raise ConflictError(f"{key}: gave up after {CAS_ATTEMPTS} concurrent-update conflicts; retry the command")

    def delete_manifest(self, model: str) -> None:
        self.backend.delete([manifest_key(model)])

    def referenced_blobs(self) -> dict[Digest, tuple[int, str]]:
        """Every blob any manifest lists -> (size, where it is listed)."""
        out: dict[Digest, tuple[int, str]] = {}
        for model in self.models():
            m = self.manifest(model)
            for v, release in m.versions.items():
                for arch, path, entry in release.blobs():
                    out.setdefault(entry.blob, (entry.size, f"{model}@{v} {arch}/{path}"))
        return out
