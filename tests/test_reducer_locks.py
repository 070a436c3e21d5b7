"""The reducer's view of locks: which requests each held lock lists as waiting on it.

The rule (engine/reducer.py): each lock lists, in queue order, the queued requests on a path it
overlaps (the same path, a directory above, or a path below).  The reducer rebuilds only the lists a
change can affect, so these tests walk through grants, queueing and hand-overs and check every
lock's list after each step.
"""

from __future__ import annotations

from typing import Any

from engine.events import Event, EventType
from engine.models import ProjectState
from engine.reducer import apply

TS = "2026-11-24T06:00:00.000000Z"


class Fold:
    def __init__(self) -> None:
        self.state = ProjectState()
        self.add(EventType.SPRINT_STARTED, sprint="locks", agents=[{"id": a} for a in "wxyzq"], tasks=[])

    def add(self, kind: EventType, **data: Any) -> None:
        apply(self.state, Event.decode(self.state.version + 1, TS, kind.value, data))

    def grant(self, lock_id: str, agent: str, path: str, mode: str, request: str | None = None) -> None:
        self.add(
            EventType.LOCK_GRANTED,
            lockId=lock_id,
            resourceId=path,
            lockType=mode,
            agentId=agent,
            taskId=None,
            token=len(self.state.locks) + 1,
            ttl=30_000,
            expiresAt=TS,
            requestId=request,
        )

    def queue(self, request: str, agent: str, path: str, mode: str) -> None:
        self.add(
            EventType.LOCK_QUEUED,
            requestId=request,
            agentId=agent,
            taskId=None,
            resources=[{"resourceId": path, "lockType": mode}],
        )

    def waiting(self) -> dict[str, list[str]]:
        return {lock_id: [w.request_id for w in lock.waiters] for lock_id, lock in self.state.locks.items()}


def test_each_lock_lists_the_queued_requests_on_paths_it_overlaps() -> None:
    fold = Fold()
    fold.grant("L1", "x", "src", "read")
    fold.grant("L2", "q", "docs", "read")
    fold.queue("r1", "y", "src/a.py", "write")
    fold.queue("r2", "z", "src/b.py", "write")
    assert fold.waiting() == {"L1": ["r1", "r2"], "L2": []}

    # r1 is granted while the directory lock is still held: it leaves L1's list, and the new
    # lock lists only what waits on its own path (r2 is on another file).
    fold.grant("L3", "y", "src/a.py", "write", request="r1")
    assert fold.waiting() == {"L1": ["r2"], "L2": [], "L3": []}

    fold.queue("r4", "w", "src/a.py", "read")
    assert fold.waiting() == {"L1": ["r2", "r4"], "L2": [], "L3": ["r4"]}

    # An unrelated grant while others wait changes no list but its own.
    fold.grant("L4", "q", "docs/guide.md", "read")
    assert fold.waiting() == {"L1": ["r2", "r4"], "L2": [], "L3": ["r4"], "L4": []}

    # A lock granted on a path others queue for lists them at once.
    fold.grant("L5", "x", "src/b.py", "read")
    assert fold.waiting()["L5"] == ["r2"]


def test_a_cancelled_wait_leaves_every_list_and_the_queue() -> None:
    fold = Fold()
    fold.grant("L1", "x", "src", "write")
    fold.queue("r1", "y", "src/a.py", "write")
    fold.queue("r2", "z", "src", "read")
    assert fold.waiting() == {"L1": ["r1", "r2"]}
    fold.add(EventType.WAITER_REMOVED, requestId="r1", reason="waitMs elapsed")
    assert fold.waiting() == {"L1": ["r2"]}
    fold.add(EventType.LOCK_RELEASED, lockId="L1", reason="released", by="x")
    fold.grant("L2", "z", "src", "read", request="r2")
    assert fold.waiting() == {"L2": []}
    assert fold.state.meta.waiters == []
