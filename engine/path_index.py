"""Entries keyed by resource id, found by overlap: what covers a path and what lies below it.

The lock manager keeps its holders, waiters and lock-delays in these, so "what overlaps `p`"
is a few dictionary look-ups along `p`'s ancestors and one set of descendants, never a scan over
every lock.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from engine.resources import ancestors

K = TypeVar("K")
V = TypeVar("V")


class PathIndex(Generic[K, V]):
    """Entries per resource id, plus for every directory the ids below it that have entries."""

    def __init__(self) -> None:
        self._at: dict[str, dict[K, V]] = {}
        self._below: dict[str, set[str]] = {}

    def at(self, path: str) -> dict[K, V] | None:
        return self._at.get(path)

    def put(self, path: str, key: K, value: V) -> None:
        bucket = self._at.get(path)
        if bucket is None:
            bucket = self._at[path] = {}
            for ancestor in ancestors(path):
                below = self._below.get(ancestor)
                if below is None:
                    below = self._below[ancestor] = set()
                below.add(path)
        bucket[key] = value

    def pop(self, path: str, key: K) -> None:
        bucket = self._at[path]
        del bucket[key]
        if bucket:
            return
        del self._at[path]
        for ancestor in ancestors(path):
            below = self._below[ancestor]
            below.discard(path)
            if not below:
                del self._below[ancestor]

    def covering(self, path: str) -> list[V]:
        """Entries on `path` and on the directories above it (not those below)."""
        at = self._at
        if not at:
            return []
        found = list(at[path].values()) if path in at else []
        for ancestor in ancestors(path):
            bucket = at.get(ancestor)
            if bucket:
                found.extend(bucket.values())
        return found

    def overlapping(self, path: str) -> list[V]:
        """Entries on `path`, on the directories above it and on the paths below it."""
        at = self._at
        found: list[V] = []
        if not at:
            return found
        bucket = at.get(path)
        if bucket:
            found.extend(bucket.values())
        for ancestor in ancestors(path):
            bucket = at.get(ancestor)
            if bucket:
                found.extend(bucket.values())
        for below in self._below.get(path, ()):
            found.extend(at[below].values())
        return found
