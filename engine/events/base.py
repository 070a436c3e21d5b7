"""The event machinery: the envelope, the body base class, and how bodies meet the journal.

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
from dataclasses import fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Final, TypeVar

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


def iso_from_ns(ns: int | None) -> str | None:
    """A file's modification time (ns since the epoch) as an event timestamp."""
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


class EventType(StrEnum):
    SPRINT_STARTED = "sprint_started"
    SPRINT_PAUSED = "sprint_paused"
    SPRINT_RESUMED = "sprint_resumed"
    SPRINT_FINISHED = "sprint_finished"
    SPRINT_RECOVERED = "sprint_recovered"  # a restarted manager continues on the journal: a new epoch
    AGENT_REGISTERED = "agent_registered"
    AGENT_STATUS = "agent_status"  # paused / resumed / unresponsive / recovered
    AGENT_DEAD = "agent_dead"
    AGENT_RESTARTED = "agent_restarted"  # a supervisor started a crashed agent again
    AGENT_SESSION = "agent_session"  # a Claude Code session now is (or no longer is) the agent
    USAGE_RECORDED = "usage_recorded"  # what an attempt spent on a language model
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

    @property
    def subject(self) -> str:
        """What the event is about, in a word (a task, a file, an agent, a lock), for a status line."""
        return ""

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


Json = dict[str, Any]
