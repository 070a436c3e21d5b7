"""Each file's history as the journal tells it: who changed it, under which lock, for which task,
and its conflicts and their resolutions.

`FileState` keeps only a file's latest change; the file view (Enter on a file) and the task view's
"files it changed" need every change.  `FileHistory` is fed the same events as the message store
(live batches, a replay's chunks) and keeps its own table of held locks, so a change is credited
to the lock (and task) its author held on that path when the change was journaled.  A replay feeds
it the whole recording in advance: readers pass `upto` (the state's version) to see the history at
the cursor.

Pure standard library and engine: no textual.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from engine.events import (
    AgentDead,
    ConflictEscalated,
    ConflictResolved,
    Event,
    FileChanged,
    FileDeleted,
    FileReported,
    FileUnreadable,
    LockGranted,
    LockReleased,
)
from engine.events import ConflictRecord
from engine.resources import overlaps


@dataclass(frozen=True, slots=True)
class HeldLock:
    lock_id: str
    resource_id: str
    agent_id: str
    lock_type: str
    task_id: str | None


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One thing that happened to a file, in words a table can show."""

    seq: int
    ts: str  # the event's ISO time
    path: str
    what: str  # created, modified, deleted, renamed, reported, conflict, accept, revert, merge, escalated, unreadable
    agent: str | None = None  # who changed, reported, resolved or escalated it (a conflict's author is unknown)
    lock_id: str | None = None  # the lock it was changed under
    task_id: str | None = None  # the task that lock was taken for
    detail: str = ""  # a conflict's reason and holders, a note, an error
    involved: tuple[str, ...] = ()  # a conflict: the tasks whose locks it overlapped


class FileHistory:
    """Every file event of a sprint by path and by task, in journal order."""

    def __init__(self) -> None:
        self._locks: dict[str, HeldLock] = {}
        self._by_path: dict[str, list[FileEntry]] = {}
        self._by_task: dict[str, list[FileEntry]] = {}

    def append_events(self, events: Iterable[Event]) -> int:
        """Take in a batch of events (any kinds, in seq order); returns how many file entries it added."""
        added = 0
        for event in events:
            entry = self._entry(event)
            if entry is not None:
                self._by_path.setdefault(entry.path, []).append(entry)
                for task_id in dict.fromkeys((entry.task_id, *entry.involved)):
                    if task_id is not None:
                        self._by_task.setdefault(task_id, []).append(entry)
                added += 1
        return added

    def of_path(self, path: str, upto: int | None = None) -> list[FileEntry]:
        return _upto(self._by_path.get(path, []), upto)

    def of_task(self, task_id: str, upto: int | None = None) -> list[FileEntry]:
        """The changes made under locks taken for `task_id` (its files), and conflicts naming it."""
        return _upto(self._by_task.get(task_id, []), upto)

    # ------------------------------------------------------------ folding

    def _entry(self, event: Event) -> FileEntry | None:
        body = event.body
        if isinstance(body, LockGranted):
            self._locks[body.lock_id] = HeldLock(body.lock_id, body.resource_id, body.agent_id, body.lock_type,
                                                 body.task_id)
        elif isinstance(body, LockReleased):
            self._locks.pop(body.lock_id, None)
        elif isinstance(body, AgentDead):
            for lock_id in body.released_locks:
                self._locks.pop(lock_id, None)
        elif isinstance(body, FileChanged | FileDeleted):
            what = body.change if isinstance(body, FileChanged) else "deleted"
            if body.conflict is not None:
                return self._conflict(event, body.path, what, body.conflict)
            lock = self._lock_of(body.modified_by, body.path)
            return FileEntry(event.seq, event.ts, body.path, what, body.modified_by,
                             lock.lock_id if lock else None, lock.task_id if lock else None,
                             f"from {body.renamed_from}" if isinstance(body, FileChanged) and body.renamed_from else "")
        elif isinstance(body, FileReported):
            lock = self._locks.get(body.lock_id or "")
            return FileEntry(event.seq, event.ts, body.path, "reported", body.agent_id, body.lock_id,
                             lock.task_id if lock else None, f"checksum {body.checksum[:8]}")
        elif isinstance(body, ConflictResolved):
            detail = "" if body.status != "conflict" else "markers left: still in conflict"
            return FileEntry(event.seq, event.ts, body.path, body.resolution, body.by, detail=detail)
        elif isinstance(body, ConflictEscalated):
            return FileEntry(event.seq, event.ts, body.path, "escalated", body.by, detail=body.note or "")
        elif isinstance(body, FileUnreadable):
            return FileEntry(event.seq, event.ts, body.path, "unreadable", detail=body.error or "")
        return None

    def _conflict(self, event: Event, path: str, change: str, conflict: ConflictRecord) -> FileEntry:
        """A change nobody was entitled to make: who made it is not known, so the holders it overlapped
        are named, with their locks and tasks (and each of those tasks lists it)."""
        holders = conflict.get("holders") or []
        named = [f"{h['agentId']} ({h['lockType']} lock {h['lockId']}"
                 + (f", task {h['taskId']})" if h.get("taskId") else ")") for h in holders]
        reason = conflict.get("reason") or "conflict"
        detail = f"{reason}: {conflict.get('detail', '')}" + (f"; held by {', '.join(named)}" if named else "")
        involved = tuple(task for h in holders if (task := h.get("taskId")))
        return FileEntry(event.seq, event.ts, path, f"conflict ({change})", detail=detail, involved=involved)

    def _lock_of(self, agent_id: str | None, path: str) -> HeldLock | None:
        """The lock `agent_id` held on `path` (or a folder over it); a write lock before a read lock."""
        if agent_id is None:
            return None
        held = [lock for lock in self._locks.values() if lock.agent_id == agent_id and overlaps(lock.resource_id, path)]
        held.sort(key=lambda lock: lock.lock_type == "read")
        return held[0] if held else None


def _upto(entries: list[FileEntry], upto: int | None) -> list[FileEntry]:
    return entries if upto is None else [entry for entry in entries if entry.seq <= upto]
