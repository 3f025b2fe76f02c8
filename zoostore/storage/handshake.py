"""The publisher's half of the publish/gc handshake (docs/gc.md).

gc deletes only objects older than the grace period G, and sends each delete within the settle
time S of the stat that showed the object old. A publisher that reuses an existing recipe or
pack older than G/2 first freshens it (a new modification time); if it freshened anything, it
checks S later, before any recipe or manifest can name the object, that it still exists. A
delete that raced the freshen is seen then, and the publish fails ("publish again") instead of
publishing a version that cannot be read.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from zoostore.core.digest import Digest
from zoostore.core.errors import BlobNotFoundError, ConflictError, FormatError, IntegrityError, ObjectNotFoundError
from zoostore.storage.backends.base import Backend
from zoostore.storage.pack import pack_key
from zoostore.storage.recipe import Recipe, blob_key


class Handshake:
    """One publish's freshen-and-settle bookkeeping. Not thread-safe: the writer's main
    thread uses it."""

    def __init__(self, backend: Backend, *, grace: float, settle: float,
                 recipe: Callable[[Digest], Recipe], forget: Callable[[Digest | None], None]) -> None:
        self.backend = backend
        self.grace = grace
        self.settle_seconds = settle
        self._recipe = recipe
        self._forget = forget
        self.checked: dict[str, bool] = {}  # reused object key -> it existed when checked
        self.freshened: dict[str, float] = {}  # key -> monotonic time its freshen returned
        #: Blobs whose stored recipe names a pack that is missing (a damaged store): not reused;
        #: the writer stores the file anew and overwrites the recipe (`freshen_blob`).
        self.damaged: set[Digest] = set()
        #: Packs a chunk was to be reused from but that were missing (`reusable`).
        self.lost: set[str] = set()
        self._cutoff: float | None = None

    def cutoff(self) -> float:
        """Objects modified before this (store clock) are freshened when reused."""
        if self._cutoff is None:
            self._cutoff = self.backend.now() - self.grace / 2
        return self._cutoff

    def freshen_if_old(self, key: str) -> bool:
        """Freshen a reused object older than grace/2; False if it is gone."""
        alive = self.checked.get(key)
        if alive is not None:
            return alive
        if not self.backend.capabilities.writes:
            return True
        try:
            if self.backend.stat(key).mtime < self.cutoff():
                self.backend.freshen(key)
                self.freshened[key] = time.monotonic()
            alive = True
        except ObjectNotFoundError:
            alive = False
        self.checked[key] = alive
        return alive

    def reusable(self, key: str) -> bool:
        """Freshen a pack to reuse a frame from; False if it is missing. Such a pack is a damaged
        store, or a gc deleted it a moment ago: either way the writer stores the chunk anew
        instead of failing, and since nothing of this publish names the pack, it is no reason to
        fail at the settle check either (as for `_damaged`)."""
        if key in self.lost:
            return False
        if self.freshen_if_old(key):
            return True
        self.checked.pop(key, None)
        self.lost.add(key)
        return False

    def freshen_blob(self, blob: Digest) -> bool:
        """Freshen an existing blob's recipe and packs; False if the recipe is gone (gc deleted
        it since `has_blob` said yes, or an in-memory copy outlived it) or names a missing pack
        (`_damaged`): chunk the file again."""
        key = blob_key(blob)
        try:
            if self.freshen_if_old(key):
                recipe = self._recipe(blob)
                missing = [k for k in map(pack_key, recipe.packs) if not self.freshen_if_old(k)]
                if missing:
                    return self._damaged(blob, missing)
                if recipe.against is not None:  # stored as edits: its base recipe is read with it
                    self.freshen_if_old(blob_key(recipe.against))
                return True
        except BlobNotFoundError:
            pass
        except (FormatError, IntegrityError):
            return True  # damaged, not gone: verify --repair's business
        self.checked.pop(key, None)
        self._forget(blob)
        return False

    def _damaged(self, blob: Digest, missing: list[str]) -> bool:
        """The recipe of `blob` names packs that were missing when this publish looked (not
        gone since it decided to reuse them): the store is damaged there, or a gc deleted
        them a moment ago. Either way the file is not reused but stored anew, and its recipe
        overwritten, so a republish repairs it; nothing of this publish names those packs, so
        they are no reason to fail at the settle check."""
        for k in missing:
            self.checked.pop(k, None)
        self.damaged.add(blob)
        self._forget(blob)
        return False

    def gone(self, key: str) -> ConflictError:
        """The error for a reused object that gc deleted under this publish."""
        self._forget(None)  # cached recipes may name what gc deleted: re-read on retry
        return ConflictError(
            f"{key} was deleted from {self.backend.url} (by a concurrent 'zoostore gc') while this "
            f"publish was reusing it; nothing was published. Publish again: the retry uploads the "
            f"data anew. If the retry fails the same way while no gc runs, the store is damaged "
            f"(a recipe names a pack that is missing): 'zoostore verify' names what is missing"
        )

    def settle(self) -> None:
        """Wait until the settle time has passed since the last freshen, then check that every
        reused object still exists; raise `gone` for the first that does not."""
        missing = [k for k, alive in self.checked.items() if not alive]
        if self.freshened:
            wait = max(self.freshened.values()) + self.settle_seconds - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            missing += [k for k in self.freshened if not self.backend.exists(k)]
        if missing:
            raise self.gone(missing[0])
