"""Every IPC message of a sprint, kept compactly so a million of them fit in a small memory budget.

A sprint can journal a million messages; a million dicts (or pydantic objects) would cost gigabytes.
`MessageStore` keeps what a list view needs for every row in typed columns (`array` of ints: seq,
microsecond timestamp, interned type / sender / recipient / priority) and the rest of each message as
compact JSON bytes in one `bytearray` with an offsets column, the way a log viewer keeps line offsets
into a file.  A message is decoded only when a row is shown or opened.

Filtering reads the columns without decoding (`engine/message_filter.py`); a row's one-line
summary is computed when it is drawn (`engine/message_summary.py`).

Pure standard library: the engine never imports textual (the widget lives in `widgets/messages.py`).
"""

from __future__ import annotations

import json
import re
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.message_summary import MessageSummary, summarize

if TYPE_CHECKING:  # the Messages pane builds its (empty) store before the dashboard's first frame
    from engine.events import Event

PRIORITIES = ("critical", "high", "medium", "low")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# One encoder, compact: json.dumps(**kw) builds a new one per call.
_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
# The form pydantic writes a UTC datetime in; only that form is kept as a number (exact round trip).
_CANONICAL_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(?!000000)\d{6})?Z")

# Envelope keys kept in columns (and left out of the JSON bytes) when they round-trip exactly.
# One flag bit per key says whether it was taken out, so `message(i)` rebuilds the original dict.
_F_TYPE, _F_FROM, _F_TO, _F_PRIORITY, _F_TIMESTAMP, _F_REQUIRES = 1, 2, 4, 8, 16, 32
_F_REQUIRES_TRUE = 64
_WIRE_ORDER = (
    "id", "type", "from", "to", "timestamp", "payload", "priority",
    "requiresResponse", "responseTimeout", "correlationId",
)


class Interner:
    """Small-int ids for repeated strings (agent ids, message types) so a column holds 4 bytes."""

    def __init__(self, initial: tuple[str, ...] = ()) -> None:
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        self.longest = 0
        for name in initial:
            self.intern(name)

    def intern(self, name: str) -> int:
        found = self.ids.get(name)
        if found is None:
            found = self.ids[name] = len(self.names)
            self.names.append(name)
            self.longest = max(self.longest, len(name))
        return found

    def lookup(self, name: str) -> int | None:
        return self.ids.get(name)


class Columns(NamedTuple):
    """The store's columns themselves (not copies), for scanners that must not decode every row.

    Read only.  The store appends to them in place, so a scanner that keeps them sees new rows.
    """

    sender: array[int]  # ids into `agents`
    recipient: array[int]  # ids into `agents`
    type: array[int]  # ids into `types`
    priority: array[int]  # ids into `priorities`
    offsets: array[int]  # message i's JSON bytes are data[offsets[i]:offsets[i + 1]]
    data: bytearray
    agents: Interner
    types: Interner
    priorities: Interner


def _micros(timestamp: str) -> int | None:
    """Microseconds since the epoch of an ISO 8601 timestamp, or None when it is not one."""
    try:
        moment = datetime.fromisoformat(timestamp)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def iso_from_micros(micros: int) -> str:
    """The wire form of a timestamp (as pydantic writes a UTC datetime)."""
    return (_EPOCH + timedelta(microseconds=micros)).isoformat().replace("+00:00", "Z")


class MessageStore:
    """Append-only columns of every message of a sprint; rows are decoded only when asked for."""

    def __init__(self) -> None:
        self._seq = array("q")
        self._micros = array("q")
        self._flags = array("B")
        self._priority = array("I")
        self._type = array("I")
        self._from = array("I")
        self._to = array("I")
        self._offsets = array("Q", [0])  # message i's JSON is _data[_offsets[i]:_offsets[i + 1]]
        self._data = bytearray()
        self._priorities = Interner(PRIORITIES)
        self._types = Interner()
        self._agents = Interner()
        self._seq_sorted = True

    # ------------------------------------------------------------ appending

    def __len__(self) -> int:
        return len(self._seq)

    def append_events(self, events: Iterable[Event]) -> int:
        """Take the messages out of a batch of events (a live batch, a replay chunk); returns how many."""
        return sum(1 for event in events if self.append_event(event))

    def append_event(self, event: Event) -> bool:
        """Take the message out of a journaled `message` event; other events are ignored."""
        message = getattr(event.body, "message", None) if event.type == "message" else None
        if not isinstance(message, dict):
            return False
        self.append(event.seq, message)
        return True

    def append(self, seq: int, message: dict[str, Any]) -> int:
        """Store one wire message (as journaled) and return its index."""
        rest = dict(message)
        flags = 0
        flags |= self._take_name(rest, "type", self._types, self._type, _F_TYPE)
        flags |= self._take_name(rest, "from", self._agents, self._from, _F_FROM)
        flags |= self._take_name(rest, "to", self._agents, self._to, _F_TO)
        flags |= self._take_name(rest, "priority", self._priorities, self._priority, _F_PRIORITY)
        flags |= self._take_timestamp(rest)
        flags |= self._take_requires(rest)
        if self._seq and seq < self._seq[-1]:
            self._seq_sorted = False
        self._seq.append(seq)
        self._flags.append(flags)
        self._data += _encode(rest).encode()
        self._offsets.append(len(self._data))
        return len(self._seq) - 1

    @staticmethod
    def _take_name(rest: dict[str, Any], key: str, names: Interner, column: array[int], flag: int) -> int:
        value = rest.get(key)
        if isinstance(value, str):
            del rest[key]
            column.append(names.intern(value))
            return flag
        column.append(names.intern(""))
        return 0

    def _take_timestamp(self, rest: dict[str, Any]) -> int:
        value = rest.get("timestamp")
        micros = _micros(value) if isinstance(value, str) else None
        self._micros.append(micros or 0)
        if micros is not None and isinstance(value, str) and _CANONICAL_TS.fullmatch(value):
            del rest["timestamp"]
            return _F_TIMESTAMP
        return 0

    @staticmethod
    def _take_requires(rest: dict[str, Any]) -> int:
        value = rest.get("requiresResponse")
        if isinstance(value, bool):
            del rest["requiresResponse"]
            return _F_REQUIRES | (_F_REQUIRES_TRUE if value else 0)
        return 0

    # ------------------------------------------------------------ reading

    def seq(self, index: int) -> int:
        return self._seq[index]

    def time(self, index: int) -> float:
        """Seconds since the epoch (UTC); 0.0 when the message had no readable timestamp."""
        return self._micros[index] / 1_000_000

    def type_name(self, index: int) -> str:
        return self._types.names[self._type[index]]

    def sender(self, index: int) -> str:
        return self._agents.names[self._from[index]]

    def recipient(self, index: int) -> str:
        return self._agents.names[self._to[index]]

    def priority(self, index: int) -> str:
        return self._priorities.names[self._priority[index]]

    @property
    def agents(self) -> list[str]:
        """Every sender and recipient seen so far (the filter's choices)."""
        return [name for name in self._agents.names if name]

    @property
    def types(self) -> list[str]:
        return [name for name in self._types.names if name]

    @property
    def columns(self) -> Columns:
        """The columns a filter scans (see `engine/message_filter.py`)."""
        return Columns(self._from, self._to, self._type, self._priority, self._offsets, self._data,
                       self._agents, self._types, self._priorities)

    @property
    def longest_agent(self) -> int:
        """Width of the longest agent id seen, so a view can size its column once."""
        return self._agents.longest

    def raw(self, index: int) -> bytes:
        """The stored JSON bytes of a message (the envelope keys held in columns left out)."""
        return bytes(self._data[self._offsets[index] : self._offsets[index + 1]])

    def message(self, index: int) -> dict[str, Any]:
        """The whole message as it was journaled, keys in wire order."""
        rest: dict[str, Any] = json.loads(self.raw(index))
        flags = self._flags[index]
        taken: dict[str, Any] = {}
        if flags & _F_TYPE:
            taken["type"] = self.type_name(index)
        if flags & _F_FROM:
            taken["from"] = self.sender(index)
        if flags & _F_TO:
            taken["to"] = self.recipient(index)
        if flags & _F_TIMESTAMP:
            taken["timestamp"] = iso_from_micros(self._micros[index])
        if flags & _F_PRIORITY:
            taken["priority"] = self.priority(index)
        if flags & _F_REQUIRES:
            taken["requiresResponse"] = bool(flags & _F_REQUIRES_TRUE)
        return _in_wire_order(taken, rest)

    def payload(self, index: int) -> dict[str, Any]:
        payload = json.loads(self.raw(index)).get("payload")
        return payload if isinstance(payload, dict) else {}

    def summary(self, index: int) -> MessageSummary:
        """The row of message `index`; the summary line is computed from the payload now."""
        rest = json.loads(self.raw(index))
        payload = rest.get("payload")
        kind = self.type_name(index)
        text = summarize(kind, payload if isinstance(payload, dict) else {})
        if rest.get("correlationId"):
            text = "↩ " + text
        return MessageSummary(
            seq=self._seq[index],
            time=self.time(index),
            priority=self.priority(index),
            type=kind,
            sender=self.sender(index),
            recipient=self.recipient(index),
            summary_text=text,
        )

    def index_of_seq(self, seq: int) -> int | None:
        """The index of the message journaled as event `seq` (binary search: seqs only grow)."""
        if self._seq_sorted:
            at = bisect_left(self._seq, seq)
            return at if at < len(self._seq) and self._seq[at] == seq else None
        try:
            return self._seq.index(seq)
        except ValueError:
            return None

    def memory_bytes(self) -> int:
        """Bytes allocated for the columns and the JSON buffer, growth slack included."""
        columns = (self._seq, self._micros, self._flags, self._priority, self._type, self._from, self._to, self._offsets)
        return sys.getsizeof(self._data) + sum(sys.getsizeof(column) for column in columns)


def _in_wire_order(taken: dict[str, Any], rest: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {}
    for key in _WIRE_ORDER:
        if key in taken:
            message[key] = taken[key]
        elif key in rest:
            message[key] = rest.pop(key)
    message.update(rest)
    return message
