"""Every IPC message of a sprint, kept compactly so a million of them fit in a small memory budget.

A sprint can journal a million messages; a million dicts (or pydantic objects) would cost gigabytes.
`MessageStore` keeps what a list view needs for every row in typed columns (`array` of ints: seq,
microsecond timestamp, interned type / sender / recipient / priority) and the rest of each message as
compact JSON bytes in one `bytearray` with an offsets column, the way a log viewer keeps line offsets
into a file.  A message is decoded only when a row is shown or opened.

`FilteredView` maps the visible rows of a filter to store indices.  A new filter scans the columns
once; after that it only looks at the messages appended since its last update, so keeping a filtered
view current costs O(new messages), not O(store).

Pure standard library: the engine never imports textual (the widget lives in `widgets/messages.py`).
"""

from __future__ import annotations

import json
import re
import sys
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from collections.abc import Callable, Iterable
from typing import Any

from engine.events import Event, EventType

PRIORITIES = ("critical", "high", "medium", "low")
SUMMARY_MAX = 160

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COMPACT = {"separators": (",", ":"), "ensure_ascii": False}
_encode = json.JSONEncoder(**_COMPACT).encode  # one encoder: json.dumps(**kw) builds one per call
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


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One row of the message log: enough to draw a line, decoded on demand."""

    seq: int
    time: float  # seconds since the epoch, UTC
    priority: str
    type: str
    sender: str
    recipient: str
    summary_text: str


@dataclass(frozen=True, slots=True)
class Filter:
    """What the message log shows; every field left `None` matches everything.

    `agent` matches the sender or the recipient; `type` and `priority` match exactly; `text` is a
    substring of the message's JSON or of its type/sender/recipient, case-insensitive unless it
    contains an upper-case letter (smart case, as in editors).
    """

    agent: str | None = None
    type: str | None = None
    priority: str | None = None
    text: str | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.agent or self.type or self.priority or self.text)

    def describe(self) -> str:
        """A short human line such as `agent=backend type=task_assign`."""
        parts = [f"{name}={value}" for name, value in self._fields() if value]
        return " ".join(parts)

    def _fields(self) -> list[tuple[str, str | None]]:
        return [("agent", self.agent), ("type", self.type), ("priority", self.priority), ("text", self.text)]


class _Interner:
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


def _iso(micros: int) -> str:
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
        self._priorities = _Interner(PRIORITIES)
        self._types = _Interner()
        self._agents = _Interner()
        self._seq_sorted = True

    # ------------------------------------------------------------ appending

    def __len__(self) -> int:
        return len(self._seq)

    def append_events(self, events: Iterable[Event]) -> int:
        """Take the messages out of a batch of events (a live batch, a replay chunk); returns how many."""
        return sum(1 for event in events if self.append_event(event))

    def append_event(self, event: Event) -> bool:
        """Take the message out of a journaled `message` event; other events are ignored."""
        if event.type != EventType.MESSAGE.value:
            return False
        message = event.data.get("message")
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
    def _take_name(rest: dict[str, Any], key: str, names: _Interner, column: array, flag: int) -> int:
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
        if micros is not None and _CANONICAL_TS.fullmatch(value):
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
            taken["timestamp"] = _iso(self._micros[index])
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


# ---------------------------------------------------------------- summaries


def _task(payload: dict[str, Any]) -> str:
    task = payload.get("taskId") or "?"
    attempt = payload.get("attempt")
    return f"{task} #{attempt}" if attempt is not None else str(task)


def _join(values: Any) -> str:
    return ", ".join(str(value) for value in values) if isinstance(values, list) else ""


def _lock(payload: dict[str, Any]) -> str:
    text = f"{payload.get('resourceId', '?')} {payload.get('lockType', '')}".rstrip()
    also = payload.get("also")
    if isinstance(also, list) and also:
        text += f" +{len(also)} more"
    if payload.get("lockId"):
        text += f" granted token {payload.get('token')}"
    elif payload.get("waitMs") is not None:
        text += f" wait {payload['waitMs']}ms"
    return text


def _conflict(payload: dict[str, Any]) -> str:
    text = f"{payload.get('resourceId', '?')} {payload.get('lockType', '')}".rstrip()
    holder = payload.get("holder")
    if holder:
        held = ", ".join(str(part) for part in (payload.get("holderMode"), payload.get("holderTask")) if part)
        text += f" held by {holder}" + (f" ({held})" if held else "")
    reason = payload.get("reason")
    return f"{text}: {reason}" if reason else text


def _update(payload: dict[str, Any]) -> str:
    text = _task(payload)
    progress = payload.get("progress")
    if isinstance(progress, (int, float)):
        text += f" {progress:.0%}"
    if payload.get("message"):
        stream = payload.get("stream")
        text += f" {stream}: " if stream else " "
        text += str(payload["message"])
    return text


def _failed(payload: dict[str, Any]) -> str:
    final = "" if payload.get("retryable", True) else " (final)"
    return f"{_task(payload)}{final}: {payload.get('error', '')}"


def _complete(payload: dict[str, Any]) -> str:
    result = payload.get("result")
    return f"{_task(payload)} done" + (f": {result}" if isinstance(result, str) and result else "")


def _with_task(payload: dict[str, Any], head: str) -> str:
    task = payload.get("taskId")
    return f"{head} [{task}]" if task else head


_SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "task_assign": lambda p: _task(p) + (f" with {_join(p['agents'])}" if len(p.get("agents") or []) > 1 else ""),
    "task_complete": _complete,
    "task_failed": _failed,
    "task_update": _update,
    "task_cancel": lambda p: _task(p) + (f": {p['reason']}" if p.get("reason") else ""),
    "resource_lock": _lock,
    "resource_unlock": lambda p: f"{p.get('resourceId', '?')}" + (" released" if p.get("released") else ""),
    "resource_conflict": _conflict,
    "state_update": lambda p: f"{p.get('path', '?')} {str(p.get('checksum', ''))[:8]}".rstrip(),
    "state_request": lambda p: _join(p.get("sections")) or "all",
    "state_sync": lambda p: f"version {p.get('version')}",
    "agent_ready": lambda p: _join(p.get("capabilities")) or "ready",
    "agent_busy": lambda p: " ".join(str(x) for x in (p.get("taskId"), p.get("reason")) if x) or "busy",
    "agent_error": lambda p: (f"{p['field']}: " if p.get("field") else "") + str(p.get("error", "")),
    "request_assistance": lambda p: _with_task(p, str(p.get("topic", ""))),
    "provide_assistance": lambda p: _with_task(p, str(p.get("topic", "") or p.get("details", ""))),
    "broadcast_info": lambda p: str(p.get("info", "")),
    "heartbeat": lambda p: " ".join(
        part for part in (f"load {p['load']}" if p.get("load") is not None else "", _join(p.get("tasks"))) if part
    ) or "alive",
}


def summarize(kind: str, payload: dict[str, Any]) -> str:
    """A short one-line description of a payload, e.g. `implement_api #2` for a task_assign."""
    describe = _SUMMARIES.get(kind)
    try:
        text = describe(payload) if describe else json.dumps(payload, **_COMPACT)
    except (KeyError, TypeError, ValueError):
        text = json.dumps(payload, **_COMPACT, default=str)
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


# ---------------------------------------------------------------- filtering


class _Matcher:
    """A filter compiled against one store: names resolved to column ids, text to bytes."""

    _UNSEEN = -1  # a name the store has not seen yet: matches nothing until it appears
    _CHUNK = 4 * 1024 * 1024  # bytes lower-cased at a time by the case-insensitive scan

    def __init__(self, store: MessageStore, filter: Filter) -> None:
        self.store = store
        self.filter = filter
        text = filter.text or ""
        self.case_sensitive = any(ch.isupper() for ch in text)  # smart case
        self.needle = text if self.case_sensitive else text.lower()
        self.needle_bytes = self.needle.encode()
        # bytes.lower() folds ASCII only; other text falls back to a case-insensitive regex.
        self.regex = None if self.case_sensitive or text.isascii() else re.compile(re.escape(text.encode()), re.I)

    def fold(self, name: str) -> str:
        return name if self.case_sensitive else name.lower()

    @staticmethod
    def _id(names: _Interner, value: str | None) -> int | None:
        if not value:
            return None
        found = names.lookup(value)
        return _Matcher._UNSEEN if found is None else found

    def scan(self, start: int, stop: int) -> list[int]:
        """Matching indices in [start, stop): columns first, then the text over the byte buffer."""
        store, f = self.store, self.filter
        candidates: range | list[int] = range(start, stop)
        agent = self._id(store._agents, f.agent)
        if agent is not None:
            frm, to = store._from, store._to
            candidates = [i for i in candidates if frm[i] == agent or to[i] == agent]
        kind = self._id(store._types, f.type)
        if kind is not None:
            types = store._type
            candidates = [i for i in candidates if types[i] == kind]
        priority = self._id(store._priorities, f.priority)
        if priority is not None:
            priorities = store._priority
            candidates = [i for i in candidates if priorities[i] == priority]
        if f.text and candidates:
            names = self._matching_names()
            if len(candidates) * 8 < stop - start:  # few left: look at their bytes only
                return [i for i in candidates if self._name_hit(i, names) or self._bytes_hit(i)]
            hits = self._text_hits(start, stop) | self._name_hits(candidates, names)
            return sorted(hits) if isinstance(candidates, range) else [i for i in candidates if i in hits]
        return list(candidates)

    def _bytes_hit(self, index: int) -> bool:
        store = self.store
        begin, end = store._offsets[index], store._offsets[index + 1]
        if self.regex is not None:
            return self.regex.search(store._data, begin, end) is not None
        chunk = store._data[begin:end]
        return self.needle_bytes in (chunk if self.case_sensitive else chunk.lower())

    def _text_hits(self, start: int, stop: int) -> set[int]:
        """Indices whose JSON bytes match, found by scanning the buffer a few MiB at a time
        (bytes.find runs at memory speed; a slice per message would not)."""
        store, hits = self.store, set()
        offsets = store._offsets
        low, high = offsets[start], offsets[stop]
        overlap = max(0, len(self.needle_bytes) - 1)
        for chunk_start in range(low, high, self._CHUNK):
            chunk_end = min(high, chunk_start + self._CHUNK + overlap)
            for position, end in self._find_all(store._data[chunk_start:chunk_end]):
                begin = chunk_start + position
                index = bisect_right(offsets, begin) - 1
                if chunk_start + end <= offsets[index + 1]:  # not straddling two messages
                    hits.add(index)
        return hits

    def _find_all(self, chunk: bytearray):
        """(start, end) of every match in `chunk`."""
        if self.regex is not None:
            yield from (match.span() for match in self.regex.finditer(chunk))
            return
        haystack = chunk if self.case_sensitive else chunk.lower()
        needle, size = self.needle_bytes, len(self.needle_bytes)
        position = haystack.find(needle)
        while position != -1:
            yield position, position + size
            position = haystack.find(needle, position + 1)

    def _matching_names(self) -> tuple[set[int], set[int], set[int]]:
        """Agent, type and priority ids whose name contains the text (they live in columns)."""
        store = self.store

        def ids(names: _Interner) -> set[int]:
            return {i for i, name in enumerate(names.names) if self.needle in self.fold(name)}

        return ids(store._agents), ids(store._types), ids(store._priorities)

    def _name_hits(self, candidates: range | list[int], names: tuple[set[int], set[int], set[int]]) -> set[int]:
        """Candidates whose sender, recipient, type or priority contains the text."""
        if not any(names):
            return set()
        return {i for i in candidates if self._name_hit(i, names)}

    def _name_hit(self, index: int, names: tuple[set[int], set[int], set[int]]) -> bool:
        store = self.store
        agents, types, priorities = names
        return (
            store._from[index] in agents
            or store._to[index] in agents
            or store._type[index] in types
            or store._priority[index] in priorities
        )


class FilteredView:
    """The rows a filter shows, as store indices, kept current by `update()` in O(new messages)."""

    def __init__(self, store: MessageStore, filter: Filter | None = None) -> None:
        self.store = store
        self.filter = filter or Filter()
        self._matcher = None if self.filter.is_empty else _Matcher(store, self.filter)
        self._rows = array("Q")
        self._scanned = 0
        self.update()

    def update(self) -> int:
        """Take in the messages appended since the last call; returns how many rows were added."""
        total = len(self.store)
        start, self._scanned = self._scanned, total
        if self._matcher is None:
            return total - start
        before = len(self._rows)
        self._rows.extend(self._matcher.scan(start, total))
        return len(self._rows) - before

    def __len__(self) -> int:
        return self._scanned if self._matcher is None else len(self._rows)

    def __getitem__(self, row: int) -> int:
        """The store index shown on `row` (negative rows count from the end)."""
        if self._matcher is None:
            if row < 0:
                row += self._scanned
            if not 0 <= row < self._scanned:
                raise IndexError(row)
            return row
        return self._rows[row]

    def row_of(self, index: int) -> int | None:
        """The row showing store index `index`, or None when the filter hides it."""
        if self._matcher is None:
            return index if 0 <= index < self._scanned else None
        at = bisect_left(self._rows, index)
        return at if at < len(self._rows) and self._rows[at] == index else None

    def nearest_row(self, index: int) -> int:
        """The row of the last shown message at or before store index `index` (0 when none)."""
        if self._matcher is None:
            return max(0, min(index, self._scanned - 1))
        return max(0, bisect_right(self._rows, index) - 1)
