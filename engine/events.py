"""Events: the only way state changes.

The manager decides, writes an `Event` to the journal, and then folds it into `ProjectState` with
the reducer.  An event carries everything the reducer needs (timestamps included), so folding the
journal again gives the same state without re-running any agent or reading any clock.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, NamedTuple

_second_cache: tuple[int, str] = (-1, "")


def iso_utc(epoch: float) -> str:
    """`2026-11-24T04:30:05.123456Z` for a Unix time.

    Every event carries one, so the date part is formatted once per second and reused;
    `datetime.isoformat` per event cost more than the rest of a small event's bookkeeping.
    """
    global _second_cache
    second = int(epoch)
    micro = int((epoch - second) * 1_000_000)
    if _second_cache[0] != second:
        _second_cache = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{_second_cache[1]}.{micro:06d}Z"


class EventType(StrEnum):
    SPRINT_STARTED = "sprint_started"
    SPRINT_PAUSED = "sprint_paused"
    SPRINT_RESUMED = "sprint_resumed"
    SPRINT_FINISHED = "sprint_finished"
    SPRINT_RECOVERED = "sprint_recovered"  # a restarted manager continues on the journal: a new epoch
    AGENT_REGISTERED = "agent_registered"
    AGENT_STATUS = "agent_status"  # paused / resumed / unresponsive / recovered
    AGENT_DEAD = "agent_dead"
    TASK_READY = "task_ready"
    TASK_ASSIGNED = "task_assigned"
    TASK_BLOCKED = "task_blocked"
    TASK_UNBLOCKED = "task_unblocked"
    TASK_STARTED = "task_started"
    TASK_PROGRESS = "task_progress"
    TASK_COMPLETED = "task_completed"
    TASK_FAILED = "task_failed"
    TASK_REQUEUED = "task_requeued"
    TASK_CANCELLED = "task_cancelled"
    TASK_PRIORITY = "task_priority"
    TASK_RESET = "task_reset"  # an operator's retry: back to pending, to run as a new attempt
    COMPLETION_REFUSED = "completion_refused"
    LOCK_GRANTED = "lock_granted"
    LOCK_QUEUED = "lock_queued"
    LOCK_RELEASED = "lock_released"
    LOCK_RENEWED = "lock_renewed"
    LOCK_REFUSED = "lock_refused"
    WAITER_REMOVED = "waiter_removed"
    MESSAGE = "message"
    MESSAGE_REJECTED = "message_rejected"
    OPERATOR_ACTION = "operator_action"
    FILES_SCANNED = "files_scanned"  # the watcher's initial scan: every file's state
    FILE_CHANGED = "file_changed"  # created / modified / renamed, judged: modified by a holder or conflict
    FILE_DELETED = "file_deleted"
    FILE_UNREADABLE = "file_unreadable"
    FILE_REPORTED = "file_reported"  # a holder's fenced state_update checksum
    CONFLICT_RESOLVED = "conflict_resolved"  # accept / revert / merge, naming who
    CONFLICT_ESCALATED = "conflict_escalated"
    STATE_DIGEST = "state_digest"  # sha256 of the state so far, so a replay can prove it matches


class Event(NamedTuple):
    """One journaled change. `seq` equals the state version after the event is applied.

    A named tuple rather than a frozen dataclass: every message, lock and task step makes one,
    and a frozen dataclass pays an `object.__setattr__` per field to be built.
    """

    seq: int
    ts: str  # ISO 8601 UTC wall time, decided live by the manager
    type: str
    data: dict[str, Any]
    mono: float = 0.0  # the manager's monotonic clock at the time (journal only)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Event:
        return cls(record["seq"], record["ts"], record["type"], record.get("data", {}), record.get("mono", 0.0))
