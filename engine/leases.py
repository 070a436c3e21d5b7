"""The lock manager's clock-driven state: when each lease runs out, and which paths are held back.

Deadlines sit in a heap with lazy deletion (a renewed or released lease leaves a stale entry that
is skipped), so finding the next expiry costs O(log n) however many leases are held.  A hold-back
(the lock-delay) keeps a path from everyone for a moment after its holder vanished without
releasing it: a dead agent may still be writing.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from engine.lock_records import Grant, HoldBack
from engine.path_index import PathIndex


class Leases:
    def __init__(self) -> None:
        self._deadlines: list[tuple[float, int, str]] = []  # (expires_at, token, lock id)
        self._held_back: PathIndex[str, HoldBack] = PathIndex()
        self.holding: dict[str, HoldBack] = {}  # ended lock id -> its hold-back (read it, never write)

    def track(self, grant: Grant, grants: Mapping[str, Grant]) -> None:
        """Note a new or renewed grant's deadline (`grants`: every live grant, to compact the heap)."""
        heapq.heappush(self._deadlines, (grant.expires_at, grant.token, grant.lock_id))
        if len(self._deadlines) > 2 * len(grants) + 64:
            self._deadlines = [(g.expires_at, g.token, g.lock_id) for g in grants.values()]
            heapq.heapify(self._deadlines)

    def expired(self, now: float, grants: Mapping[str, Grant]) -> list[Grant]:
        """Live grants whose lease ran out by `now` (never earlier), earliest first."""
        if not self._deadlines or self._deadlines[0][0] > now:  # the head may be stale: then look at all
            return []
        return sorted((g for g in grants.values() if g.expires_at <= now), key=_deadline)

    def next_deadline(self, grants: Mapping[str, Grant]) -> float | None:
        """The earliest live lease expiry or hold-back end, or None."""
        while self._deadlines and _is_stale(self._deadlines[0], grants):
            heapq.heappop(self._deadlines)
        times = [delay.until for delay in self.holding.values()]
        if self._deadlines:
            times.append(self._deadlines[0][0])
        return min(times, default=None)

    def hold_back(self, ended: Grant, until: float) -> None:
        delay = HoldBack(ended.resource_id, until, ended)
        self._held_back.put(ended.resource_id, ended.lock_id, delay)
        self.holding[ended.lock_id] = delay

    def holding_back(self, path: str) -> list[HoldBack]:
        """Hold-backs on paths overlapping `path` (callers on a hot path test `holding` first)."""
        return self._held_back.overlapping(path) if self.holding else []

    def ended(self, now: float) -> list[HoldBack]:
        return [delay for delay in self.holding.values() if delay.until <= now]

    def end(self, delay: HoldBack) -> None:
        if self.holding.pop(delay.ended.lock_id, None) is not None:
            self._held_back.pop(delay.path, delay.ended.lock_id)


def _deadline(grant: Grant) -> tuple[float, int]:
    return grant.expires_at, grant.token


def _is_stale(entry: tuple[float, int, str], grants: Mapping[str, Grant]) -> bool:
    grant = grants.get(entry[2])
    return grant is None or grant.expires_at != entry[0]
