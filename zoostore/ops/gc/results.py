"""What a gc plan drops and what its execution did: plain values shared by plan, repack
and the CLI."""

from __future__ import annotations

from dataclasses import field
from zoostore.core.records import dataclass
from zoostore.core.units import human_bytes


# ---------------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class DroppedVersion:
    """A version gc dropped (no retention rule keeps it) and the bytes its files list."""

    model: str
    version: str
    size: int  # bytes of the files it lists (shared content may stay)

    def __str__(self) -> str:
        return f"{self.model}@{self.version}"


@dataclass(frozen=True, slots=True)
class RepackItem:
    """A pack gc repacks: its key, size and the bytes in it still referenced."""

    pack: str  # key
    size: int
    live_bytes: int

    @property
    def live_fraction(self) -> float:
        return self.live_bytes / self.size if self.size else 0.0


@dataclass(slots=True)
class GcResult:
    """What a gc run did: versions dropped, recipes and packs deleted, packs repacked and rewritten."""

    dropped: list[DroppedVersion] = field(default_factory=list)
    recipes_deleted: int = 0
    recipe_bytes: int = 0
    packs_deleted: int = 0
    pack_bytes: int = 0
    packs_repacked: int = 0
    packs_written: int = 0
    bytes_written: int = 0
    recipes_rewritten: int = 0
    kept_changed: int = 0  # objects the plan listed that execute kept (used or refreshed meanwhile)
    leftovers_deleted: int = 0  # temp files, broken locks, probes of killed writers (ops.gc.leftovers)
    leftover_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = []
        if self.dropped:
            lines.append(f"dropped {len(self.dropped)} version(s): {', '.join(map(str, self.dropped))}")
        lines.append(f"deleted {self.recipes_deleted} recipe(s) ({human_bytes(self.recipe_bytes)}) and "
                     f"{self.packs_deleted} pack(s) ({human_bytes(self.pack_bytes)})")
        if self.packs_repacked:
            lines.append(f"repacked {self.packs_repacked} pack(s) into {self.packs_written} "
                         f"({human_bytes(self.bytes_written)}), rewrote {self.recipes_rewritten} recipe(s); "
                         f"the old packs go in a run after the grace period")
        if self.leftovers_deleted:
            lines.append(f"deleted {self.leftovers_deleted} leftover(s) of killed writers "
                         f"({human_bytes(self.leftover_bytes)})")
        if self.kept_changed:
            lines.append(f"kept {self.kept_changed} object(s) the plan listed: they were used or "
                         f"refreshed since it was made")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)

    __str__ = summary
