"""Chunk-list edits: a file's chunk list written as runs of its base's list plus new items.
Recipe format 3 and pack footer format 2 use them (docs/format.md).

    list = base[s0 : s0+c0] + new[0 : n0] + base[s1 : s1+c1] + new[n0 : n0+n1] + …
    run k = (start s_k, copy c_k, new n_k),   s_0 >= 0,   s_k+1 >= s_k + c_k,   s_k + c_k <= len(base)

Copies move forward through the base and never overlap, so a list resolves to at most
len(base) + len(new) items: a hostile list cannot make a reader allocate more than the two
lists it already holds.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Sequence
from typing import TypeVar

from zoostore.core.errors import IntegrityError
from zoostore.core.records import dataclass

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

#: A copy that jumps ahead of the expected place in the base must match this many items in a
#: row: one shared chunk (a page of zeros) far ahead would otherwise skip the rest of the base,
#: which copies can never move back to.
MIN_JUMP = 2


@dataclass(frozen=True, slots=True)
class Run:
    """Copy `copy` base items from `start` on, then take the next `new` new items."""

    start: int
    copy: int
    new: int


def diff(base: Sequence[K], items: Sequence[K]) -> tuple[list[Run], list[int]]:
    """`items` as edits of `base`: the runs, and the indices into `items` of the new items.
    Greedy and forward only (content-defined chunks resynchronise right after a change, so
    an edited file is long copies with a few new chunks between them)."""
    where: dict[K, list[int]] = {}
    for i, key in enumerate(base):
        where.setdefault(key, []).append(i)
    runs: list[list[int]] = []  # [start, copy, new]
    new: list[int] = []
    cursor = 0  # the first base item a copy may still use
    for j, key in enumerate(items):
        if runs and runs[-1][2] == 0 and runs[-1][1] and cursor < len(base) and base[cursor] == key:
            runs[-1][1] += 1
            cursor += 1
            continue
        hits = where.get(key, ())
        k = bisect.bisect_left(hits, cursor)
        if k < len(hits) and (hits[k] == cursor or _matches(base, hits[k], items, j) >= min(MIN_JUMP, len(items) - j)):
            runs.append([hits[k], 1, 0])
            cursor = hits[k] + 1
            continue
        if not runs:
            runs.append([0, 0, 0])
        runs[-1][2] += 1
        new.append(j)
    return [Run(*r) for r in runs], new


def _matches(base: Sequence[K], at: int, items: Sequence[K], j: int) -> int:
    n = 0
    while n < MIN_JUMP and at + n < len(base) and j + n < len(items) and base[at + n] == items[j + n]:
        n += 1
    return n


def check_runs(runs: Sequence[Run], base_len: int, new_len: int, *, where: str) -> None:
    """IntegrityError unless `runs` copy forward within a base of `base_len` items and use
    exactly `new_len` new items."""
    end = 0
    used = 0
    for i, r in enumerate(runs):
        if r.start < end or r.start + r.copy > base_len:
            raise IntegrityError(
                f"{where}: run #{i} copies base items {r.start}-{r.start + r.copy}, expected within "
                f"{end}-{base_len} (forward through a base of {base_len} items): the list does not fit "
                f"its base; it is damaged or hostile", obj=where)
        end = r.start + r.copy
        used += r.new
    if used != new_len:
        raise IntegrityError(f"{where}: runs take {used} new items, the list holds {new_len}: it is damaged "
                             f"or hostile", obj=where)


def apply(base: Sequence[T], runs: Sequence[Run], new: Sequence[T], *, where: str) -> list[T]:
    """The list `runs` describe (IntegrityError when they do not fit `base` and `new`)."""
    check_runs(runs, len(base), len(new), where=where)
    out: list[T] = []
    taken = 0
    for r in runs:
        out.extend(base[r.start : r.start + r.copy])
        out.extend(new[taken : taken + r.new])
        taken += r.new
    return out


__all__ = ["MIN_JUMP", "Run", "apply", "check_runs", "diff"]
