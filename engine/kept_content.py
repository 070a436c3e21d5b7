"""Kept content: what revert and a three-way merge work from, for every path under a lock.

While a path is under any lock, its content when the lock period began (`base`) and its last good
content (`good`) are kept in a `ContentStore`: small blobs in memory up to a budget, the rest
spilled to a directory beside the journal.

Keeping content costs no more reads than judging it: blobs are named by the same xxh3 checksum
the index computes, so content the index just read is stored under the checksum it already has
(`Observation.content_key`, and the bytes a settle re-hashed, collected by
`FileIndex.remembering`).  A file the settle did not need to read (its entry is clean: not racy,
stat unchanged) is kept by reference when the store holds its checksum, and the store keeps the
last few MiB of blobs whose last reference was dropped (`RECENT_BUDGET`), so a file released and
locked again unchanged is not read again.  Only the index's judgment "unchanged" lets such a blob
stand for the file: a racy entry is re-hashed by the settle first.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.file_index import FileIndex, checksum_bytes

MEMORY_BUDGET = 32 << 20  # bytes of kept content held in memory, all files together
SPILL_OVER = 256 << 10  # a single blob larger than this always goes to disk
RECENT_BUDGET = 4 << 20  # bytes of dropped in-memory blobs kept for a re-lock of unchanged files
KEEP_PER_GRANT = 64 << 20  # at most this much content is kept when one (directory) lock is granted
ABSENT = None  # kept content of a path that did not exist


class ContentStore:
    """Content-addressed blobs with reference counts: in memory up to a budget, spilled beyond it.

    A blob whose last reference goes is not freed at once when it was in memory: it waits in a
    small least-recently-dropped cache (`recent_budget` bytes, not counted in `memory_bytes`),
    from which `holds`/`ref` bring it back, so content the index says is unchanged need not be
    read again when its path is locked again.
    """

    def __init__(
        self,
        spill_dir: Path,
        *,
        memory_budget: int = MEMORY_BUDGET,
        spill_over: int = SPILL_OVER,
        recent_budget: int = RECENT_BUDGET,
    ) -> None:
        self.spill_dir = spill_dir
        self.memory_budget = memory_budget
        self.spill_over = spill_over
        self.recent_budget = recent_budget
        self._memory: dict[str, bytes] = {}
        self._spilled: set[str] = set()
        self._refs: dict[str, int] = {}
        self._recent: dict[str, bytes] = {}  # unreferenced, oldest drop first
        self.memory_bytes = 0
        self.recent_bytes = 0

    def put(self, data: bytes, key: str | None = None) -> str:
        """One more reference to `data`; its key.  A caller that already has `checksum_bytes(data)`
        (the index computed it reading the file) passes it as `key` so the bytes are not hashed twice."""
        if key is None:
            key = checksum_bytes(data)
        if key not in self._refs:
            self._unrecent(key)  # the same bytes, by their checksum: hold the ones given
            self._hold(key, data)
        self._refs[key] = self._refs.get(key, 0) + 1
        return key

    def holds(self, key: str) -> bool:
        """Whether `ref(key)` can take a reference without the content (held, or recently dropped)."""
        return key in self._refs or key in self._recent

    def ref(self, key: str) -> None:
        """One more holder of a stored (or recently dropped) blob."""
        if key not in self._refs:
            data = self._unrecent(key)
            if data is None:
                raise KeyError(key)
            self._hold(key, data)
        self._refs[key] = self._refs.get(key, 0) + 1

    def get(self, key: str) -> bytes:
        if key in self._memory:
            return self._memory[key]
        return (self.spill_dir / _blob_name(key)).read_bytes()

    def drop(self, key: str | None) -> None:
        if key is None or key not in self._refs:
            return
        self._refs[key] -= 1
        if self._refs[key]:
            return
        del self._refs[key]
        if key in self._memory:
            data = self._memory.pop(key)
            self.memory_bytes -= len(data)
            self._recently_dropped(key, data)
        elif key in self._spilled:
            self._spilled.discard(key)
            (self.spill_dir / _blob_name(key)).unlink(missing_ok=True)

    @property
    def spilled(self) -> int:
        return len(self._spilled)

    def close(self) -> None:
        self._recent.clear()
        self.recent_bytes = 0
        shutil.rmtree(self.spill_dir, ignore_errors=True)

    def _hold(self, key: str, data: bytes) -> None:
        """Place a blob that has no holder yet: in memory within the budget, else on disk."""
        self._refs[key] = 0
        if len(data) > self.spill_over or self.memory_bytes + len(data) > self.memory_budget:
            self.spill_dir.mkdir(parents=True, exist_ok=True)
            (self.spill_dir / _blob_name(key)).write_bytes(data)
            self._spilled.add(key)
        else:
            self._memory[key] = data
            self.memory_bytes += len(data)

    def _recently_dropped(self, key: str, data: bytes) -> None:
        """Keep an unreferenced blob for a while; the oldest go once the cache is over budget."""
        if len(data) > self.recent_budget:
            return
        self._recent[key] = data
        self.recent_bytes += len(data)
        while self.recent_bytes > self.recent_budget:
            self.recent_bytes -= len(self._recent.pop(next(iter(self._recent))))

    def _unrecent(self, key: str) -> bytes | None:
        data = self._recent.pop(key, None)
        if data is not None:
            self.recent_bytes -= len(data)
        return data


def _blob_name(key: str) -> str:
    return key.replace(":", "-")


@dataclass
class Kept:
    """Blob keys of a path's content when its lock period began and after its last good change."""

    base: str | None
    good: str | None


class KeptContent:
    """`Kept` per path, as references into one `ContentStore` (see the module docstring)."""

    def __init__(self, store: ContentStore, index: FileIndex, workspace: Path) -> None:
        self.store = store
        self._index = index
        self._workspace = workspace
        self.by_path: dict[str, Kept] = {}

    def __contains__(self, path: str) -> bool:
        return path in self.by_path

    def get(self, path: str) -> Kept | None:
        return self.by_path.get(path)

    def content(self, key: str) -> bytes:
        return self.store.get(key)

    def keep_bases(self, resource_id: str, fresh: dict[str, tuple[str, bytes]] | None = None,
                   budget: int | None = None) -> None:
        """Keep the content of every path under a lock as the base of its lock period, up to a
        budget (a lock on a huge directory must not copy the repository)."""
        for path in self.paths_under(resource_id):
            if budget is not None:
                entry = self._index.entries.get(path)
                budget -= entry.size if entry is not None and entry.size > 0 else 0
                if budget < 0:
                    break
            self.keep_base(path, fresh)

    def keep_base(self, path: str, fresh: dict[str, tuple[str, bytes]] | None = None) -> None:
        """Keep `path`'s content as the base (and good) of a lock period starting now.

        Called right after `path` was reconciled (a settle, a scan, our own write), so its index
        entry is the file as it is now; `fresh` holds what that reconcile read (`remembering`).
        """
        if path in self.by_path:
            return
        try:
            key = self._store_current(path, fresh or {})
        except OSError:
            return
        self.by_path[path] = Kept(key, key)
        if key is not None:
            self.store.ref(key)  # base and good each hold a reference

    def _store_current(self, path: str, fresh: dict[str, tuple[str, bytes]]) -> str | None:
        """A store reference to the content of a just-reconciled `path` (ABSENT when not a file),
        reading the file only when neither the reconcile nor the store already has its bytes."""
        entry = self._index.entries.get(path)
        if entry is None:
            return ABSENT
        checksum, data = fresh.get(path, ("", b""))
        if checksum and checksum == entry.checksum:
            return self.store.put(data, key=checksum)  # read and hashed by the settle a moment ago
        clean = self._index.clean_checksum(path)
        if clean is not None and self.store.holds(clean):
            self.store.ref(clean)  # unchanged by the index's own test, and its bytes are held
            return clean
        return self.store.put(self._index.read(path))

    def keep_good(self, path: str, content: bytes | None, key: str | None = None) -> None:
        """The holder's change is the new last good content.

        `key` is the checksum of `content` when the caller has it (the index hashed it reading it)."""
        kept = self.by_path.get(path)
        if kept is None:
            kept = self.by_path[path] = Kept(ABSENT, ABSENT)
        if content is None and path in self._index.entries:
            try:
                content, key = self._index.read(path), None
            except OSError:
                return
        self.store.drop(kept.good)
        kept.good = self.store.put(content, key) if content is not None else ABSENT

    def keep_nothing(self, path: str) -> None:
        """A path that did not exist before (created outside any lock): revert removes it."""
        if path not in self.by_path:
            self.by_path[path] = Kept(ABSENT, ABSENT)

    def forget(self, path: str) -> None:
        kept = self.by_path.pop(path, None)
        if kept is not None:
            self.store.drop(kept.base)
            self.store.drop(kept.good)

    def under(self, resource_ids: Iterable[str]) -> list[str]:
        """Kept paths on or below these ids (a string test per kept path; no lock look-ups)."""
        ids = set(resource_ids)
        prefixes = tuple(r + "/" for r in ids)
        return [p for p in self.by_path if p in ids or p.startswith(prefixes)]

    def paths_under(self, resource_id: str) -> list[str]:
        if resource_id in self._index.entries:
            return [resource_id]
        below = self._index.below(resource_id)
        is_dir = below or (self._workspace / resource_id).is_dir()
        return below if is_dir else [resource_id]

    def close(self) -> None:
        self.store.close()
