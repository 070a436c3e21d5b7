"""Events: the only way state changes, one typed class per kind.

The manager decides, the recorder journals an `Event` and folds it into `ProjectState` with the
reducer.  An event carries everything the reducer needs (timestamps included), so folding the
journal again gives the same state without re-running any agent or reading any clock.

Each kind's data is a slotted dataclass (`EventBody`): built once where the decision is made, read
by attribute in the reducer and the views, and written to the journal as a JSON object whose keys
are the fields' camelCase names, in field order.  Those keys and their order *are* the journal
format (docs/journal.md; tests/test_journal_format.py holds it to recorded bytes), so a field is
never renamed or reordered.  A field whose value is `ABSENT` is left out of the record, which is
how a key that only some events of a kind carry stays out of the others (`None` is written as
null).  Reading a record back (`Event.from_record`) takes the keys the class knows, and a key a
journal lacks gets the field's default: journals written by other tools need only the keys the
reducer reads (the fields without a default).  Fields are keyword-only, so a required one may
follow an optional one and the journal's key order stays the class's field order.

Slotted dataclasses rather than pydantic models: every message, lock and task step makes one, and
a slotted dataclass is built in a fifth of a microsecond; the envelope is a slotted class too.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Final, TypedDict, TypeVar

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


class Absent(enum.Enum):
    """The type of `ABSENT`: a key left out of the record (distinct from null)."""

    ABSENT = "absent"


ABSENT: Final = Absent.ABSENT


class EventDecodeError(ValueError):
    """A journal record whose data does not fit its kind (a missing key, an unknown kind)."""


def _camel(name: str) -> str:
    head, *rest = name.rstrip("_").split("_")
    return head + "".join(part.title() for part in rest)


class EventBody:
    """What an event says; one slotted dataclass per kind (see the module docstring)."""

    __slots__ = ()
    KIND: ClassVar[EventType]
    KEYS: ClassVar[tuple[tuple[str, str], ...]]  # (attribute, journal key), in journal order

    def wire(self) -> dict[str, Any]:
        """The record's `data` object: every field under its key, `ABSENT` ones left out."""
        data: dict[str, Any] = {}
        for attribute, key in self.KEYS:
            value = getattr(self, attribute)
            if value is not ABSENT:
                data[key] = value
        return data


B = TypeVar("B", bound=EventBody)
_BODIES: dict[str, type[EventBody]] = {}


def event_kind(kind: EventType) -> Callable[[type[B]], type[B]]:
    """Register a body class for `kind`; its keys are its fields' camelCase names, in order."""

    def register(cls: type[B]) -> type[B]:
        cls.KIND = kind
        cls.KEYS = tuple((f.name, _camel(f.name)) for f in fields(cls))  # type: ignore[arg-type]
        _BODIES[kind.value] = cls
        return cls

    return register


def decode_body(kind: str, data: Mapping[str, Any]) -> EventBody:
    """The typed body of a journal record; `EventDecodeError` names what does not fit."""
    cls = _BODIES.get(kind)
    if cls is None:
        raise EventDecodeError(f"unknown event type {kind!r}")
    try:
        return cls(**{attribute: data[key] for attribute, key in cls.KEYS if key in data})
    except TypeError as exc:
        missing = [key for attribute, key in cls.KEYS if key not in data]
        raise EventDecodeError(f"{kind} event lacks {', '.join(missing) or 'a key'}: {exc}") from None


class Event:
    """One journaled change: `seq` (the state version after it), when, and what (`body`).

    `data` is the body as the journal records it; a live event computes it once (the journal
    writes it), an event read back keeps the record's own object.
    """

    __slots__ = ("seq", "ts", "body", "mono", "_data")

    def __init__(self, seq: int, ts: str, body: EventBody, mono: float = 0.0,
                 data: dict[str, Any] | None = None) -> None:
        self.seq = seq
        self.ts = ts  # ISO 8601 UTC wall time, decided live by the manager
        self.body = body
        self.mono = mono  # the manager's monotonic clock at the time (journal only)
        self._data = data

    @property
    def type(self) -> EventType:
        return self.body.KIND

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self.body.wire()
        return self._data

    @property
    def time(self) -> datetime:
        return datetime.fromisoformat(self.ts)

    def __repr__(self) -> str:
        return f"Event({self.seq}, {self.ts!r}, {self.body!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.seq, self.ts, self.mono, self.body) == (other.seq, other.ts, other.mono, other.body)

    __hash__ = None  # type: ignore[assignment]  # equal by value, and mutable (its data is cached)

    @classmethod
    def decode(cls, seq: int, ts: str, kind: str, data: dict[str, Any], mono: float = 0.0) -> Event:
        """The event a journal record with these fields stands for."""
        return cls(seq, ts, decode_body(kind, data), mono, data)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Event:
        return cls.decode(record["seq"], record["ts"], record["type"], record.get("data", {}), record.get("mono", 0.0))


# ---------------------------------------------------------------- nested records (plain JSON objects)


class LockItem(TypedDict):
    resourceId: str
    lockType: str


class ScannedFile(TypedDict):
    path: str
    checksum: str
    size: int | None
    mtime: str | None


class UnreadableFile(TypedDict):
    path: str
    error: str | None


class HolderRecord(TypedDict):
    agentId: str
    lockType: str
    resourceId: str
    lockId: str
    token: int
    taskId: str | None


class ConflictRecord(TypedDict):
    reason: str | None
    detail: str
    change: str
    holders: list[HolderRecord]
    canRevert: bool
    canMerge: bool


Json = dict[str, Any]


# ---------------------------------------------------------------- the sprint


@event_kind(EventType.SPRINT_STARTED)
@dataclass(slots=True, kw_only=True)
class SprintStarted(EventBody):
    """The plan as the sprint runs it, so a journal replays without the plan file."""

    sprint: str
    plan_digest: str | None = None
    seed: int = 0
    agents: list[Json]
    tasks: list[Json]
    epoch: int | Absent = ABSENT  # only in journals of an older shape
    files: list[Json] | Absent = ABSENT


@event_kind(EventType.SPRINT_PAUSED)
@dataclass(slots=True, kw_only=True)
class SprintPaused(EventBody):
    pass


@event_kind(EventType.SPRINT_RESUMED)
@dataclass(slots=True, kw_only=True)
class SprintResumed(EventBody):
    pass


@event_kind(EventType.SPRINT_FINISHED)
@dataclass(slots=True, kw_only=True)
class SprintFinished(EventBody):
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


@event_kind(EventType.SPRINT_RECOVERED)
@dataclass(slots=True, kw_only=True)
class SprintRecovered(EventBody):
    """A restarted manager: a new epoch, every recovered lease renewed (lock id -> new expiry)."""

    epoch: int
    previous_version: int = 0
    leases: dict[str, str] = field(default_factory=dict)


@event_kind(EventType.STATE_DIGEST)
@dataclass(slots=True, kw_only=True)
class StateDigest(EventBody):
    """sha256 of the state at version `of`, so a replay can prove it folds the same state."""

    digest: str = ""
    of: int | None = None


# ---------------------------------------------------------------- agents


@event_kind(EventType.AGENT_REGISTERED)
@dataclass(slots=True, kw_only=True)
class AgentRegistered(EventBody):
    agent: Json  # an AgentState in its JSON shape


@event_kind(EventType.AGENT_STATUS)
@dataclass(slots=True, kw_only=True)
class AgentStatus(EventBody):
    agent_id: str
    status: str


@event_kind(EventType.AGENT_DEAD)
@dataclass(slots=True, kw_only=True)
class AgentDead(EventBody):
    """Death in one event: its locks go (with lock-delay), its waits end, its tasks are ready again."""

    agent_id: str
    reason: str = ""
    released_locks: list[str] = field(default_factory=list)
    requeued_tasks: list[str] = field(default_factory=list)
    cancelled_requests: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- tasks


@dataclass(slots=True, kw_only=True)
class TaskEvent(EventBody):
    """An event about one task (the views redraw that task's row)."""

    task_id: str


@event_kind(EventType.TASK_READY)
@dataclass(slots=True, kw_only=True)
class TaskReady(TaskEvent):
    pass


@event_kind(EventType.TASK_ASSIGNED)
@dataclass(slots=True, kw_only=True)
class TaskAssigned(TaskEvent):
    attempt: int
    agents: list[str]


@event_kind(EventType.TASK_BLOCKED)
@dataclass(slots=True, kw_only=True)
class TaskBlocked(TaskEvent):
    paths: list[str]


@event_kind(EventType.TASK_UNBLOCKED)
@dataclass(slots=True, kw_only=True)
class TaskUnblocked(TaskEvent):
    waited: float = 0.0  # seconds


@event_kind(EventType.TASK_STARTED)
@dataclass(slots=True, kw_only=True)
class TaskStarted(TaskEvent):
    attempt: int = 0


@event_kind(EventType.TASK_PROGRESS)
@dataclass(slots=True, kw_only=True)
class TaskProgress(TaskEvent):
    attempt: int = 0
    progress: float | None = None
    output: str | None = None


@event_kind(EventType.TASK_COMPLETED)
@dataclass(slots=True, kw_only=True)
class TaskCompleted(TaskEvent):
    attempt: int = 0
    agent: str | None = None


@event_kind(EventType.TASK_FAILED)
@dataclass(slots=True, kw_only=True)
class TaskFailed(TaskEvent):
    attempt: int = 0
    error: str
    will_retry: bool = False
    retry_in: float | None = None  # seconds of sprint time before the next attempt


@event_kind(EventType.TASK_REQUEUED)
@dataclass(slots=True, kw_only=True)
class TaskRequeued(TaskEvent):
    """A live attempt taken away (operator, refused locks, a manager restart): not a failure."""

    attempt: int = 0
    reason: str | None = None


@event_kind(EventType.TASK_CANCELLED)
@dataclass(slots=True, kw_only=True)
class TaskCancelled(TaskEvent):
    reason: str | None = None
    by: str | None = None


@event_kind(EventType.TASK_PRIORITY)
@dataclass(slots=True, kw_only=True)
class TaskPriority(TaskEvent):
    priority: str


@event_kind(EventType.TASK_RESET)
@dataclass(slots=True, kw_only=True)
class TaskReset(TaskEvent):
    pass


@event_kind(EventType.COMPLETION_REFUSED)
@dataclass(slots=True, kw_only=True)
class CompletionRefused(TaskEvent):
    """A completion (or an update) from a superseded attempt or a stale lock: recorded, not applied."""

    attempt: int = 0
    agent_id: str = ""
    reason: str = ""


# ---------------------------------------------------------------- locks


@dataclass(slots=True, kw_only=True)
class LockEvent(EventBody):
    """An event that changes who holds or waits for a lock (the Locks pane redraws)."""


@event_kind(EventType.LOCK_GRANTED)
@dataclass(slots=True, kw_only=True)
class LockGranted(LockEvent):
    lock_id: str
    resource_id: str
    lock_type: str
    agent_id: str
    task_id: str | None = None
    token: int
    ttl: int  # ms
    expires_at: str
    request_id: str | None = None


@event_kind(EventType.LOCK_QUEUED)
@dataclass(slots=True, kw_only=True)
class LockQueued(LockEvent):
    request_id: str
    agent_id: str
    task_id: str | None = None
    resources: list[LockItem]


@event_kind(EventType.LOCK_RELEASED)
@dataclass(slots=True, kw_only=True)
class LockReleased(LockEvent):
    lock_id: str
    reason: str = ""
    by: str = ""


@event_kind(EventType.LOCK_RENEWED)
@dataclass(slots=True, kw_only=True)
class LockRenewed(LockEvent):
    agent_id: str = ""
    expires_at: dict[str, str]  # lock id -> new expiry


@event_kind(EventType.WAITER_REMOVED)
@dataclass(slots=True, kw_only=True)
class WaiterRemoved(LockEvent):
    request_id: str
    reason: str = ""


@event_kind(EventType.LOCK_REFUSED)
@dataclass(slots=True, kw_only=True)
class LockRefused(EventBody):
    resource_id: str
    agent_id: str = ""
    reason: str = ""


# ---------------------------------------------------------------- messages and operators


@event_kind(EventType.MESSAGE)
@dataclass(slots=True, kw_only=True)
class MessageRecorded(EventBody):
    """Every IPC message as it travelled; `latency_ms` on a reply, measured from its request."""

    message: Json
    latency_ms: float | Absent = ABSENT


@event_kind(EventType.MESSAGE_REJECTED)
@dataclass(slots=True, kw_only=True)
class MessageRejected(EventBody):
    """A refused message or line; the transport's refusals also say where it came from."""

    from_: str = ""
    message_id: str | None = None
    field: str = ""
    reason: str = ""
    transport: str | Absent = ABSENT
    security: bool | Absent = ABSENT
    claimed_from: str | Absent = ABSENT


@event_kind(EventType.OPERATOR_ACTION)
@dataclass(slots=True, kw_only=True)
class OperatorAction(EventBody):
    """The operator's intent (its effects follow as their own events); only the keys it names."""

    action: str = ""
    by: str = ""
    task_id: str | Absent = ABSENT
    agent_id: str | Absent = ABSENT
    priority: str | Absent = ABSENT
    lock_id: str | Absent = ABSENT
    resource_id: str | Absent = ABSENT
    holder: str | Absent = ABSENT
    path: str | Absent = ABSENT
    note: str | None | Absent = ABSENT


# ---------------------------------------------------------------- files


@dataclass(slots=True, kw_only=True)
class FileEvent(EventBody):
    """An event about one file (the Files pane redraws its row)."""

    path: str


@event_kind(EventType.FILES_SCANNED)
@dataclass(slots=True, kw_only=True)
class FilesScanned(EventBody):
    files: list[ScannedFile]
    unreadable: list[UnreadableFile] = field(default_factory=list)


@event_kind(EventType.FILE_CHANGED)
@dataclass(slots=True, kw_only=True)
class FileChanged(FileEvent):
    """A created, modified or renamed file, judged live: modified by its holder, or a conflict."""

    checksum: str
    size: int | None = None
    mtime: str | None = None
    change: str = "modified"
    renamed_from: str | None = None
    status: str = "modified"
    modified_by: str | None = None
    conflict: ConflictRecord | None = None
    source_conflict: ConflictRecord | None = None


@event_kind(EventType.FILE_DELETED)
@dataclass(slots=True, kw_only=True)
class FileDeleted(FileEvent):
    status: str = "deleted"
    modified_by: str | None = None
    conflict: ConflictRecord | None = None


@event_kind(EventType.FILE_UNREADABLE)
@dataclass(slots=True, kw_only=True)
class FileUnreadable(FileEvent):
    error: str | None


@event_kind(EventType.FILE_REPORTED)
@dataclass(slots=True, kw_only=True)
class FileReported(FileEvent):
    checksum: str = ""
    agent_id: str = ""
    lock_id: str | None = None
    token: int | None = None


@event_kind(EventType.CONFLICT_RESOLVED)
@dataclass(slots=True, kw_only=True)
class ConflictResolved(FileEvent):
    """Accept, revert or merge; a merge that left markers keeps the conflict (`status`)."""

    resolution: str
    by: str
    status: str
    conflicts: int | Absent = ABSENT  # a merge with markers: how many regions
    deleted: bool | Absent = ABSENT  # a resolved file: its content now
    checksum: str | None | Absent = ABSENT
    size: int | None | Absent = ABSENT
    mtime: str | None | Absent = ABSENT
    tool: str | Absent = ABSENT  # a merge: which merger ran


@event_kind(EventType.CONFLICT_ESCALATED)
@dataclass(slots=True, kw_only=True)
class ConflictEscalated(FileEvent):
    by: str
    note: str | None = None
