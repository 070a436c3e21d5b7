"""Filtering the message log: which messages a `Filter` shows, kept current as messages arrive.

A `Matcher` compiles a filter against one store's columns: names become the small ints the columns
hold, text becomes bytes searched in the store's JSON buffer, so a million rows are filtered without
decoding one.  `FilteredView` maps the visible rows to store indices.  A new filter scans the
columns once; after that it only looks at the messages appended since its last update, so keeping
a filtered view current costs O(new messages), not O(store).
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from engine.message_store import Columns, Interner, MessageStore


HEARTBEAT = "heartbeat"


@dataclass(frozen=True, slots=True)
class Filter:
    """What the message log shows; every field left `None` matches everything.

    `agent` matches the sender or the recipient; `type` and `priority` match exactly; `text` is a
    substring of the message's JSON or of its type/sender/recipient, case-insensitive unless it
    contains an upper-case letter (smart case, as in editors).  `heartbeats=False` leaves heartbeats
    out (a filter on `type` heartbeat still shows them: it names them); `None` is the viewer's
    default, which the Messages pane sets to hidden (one agent's beat every half second buries the
    messages an operator reads).
    """

    agent: str | None = None
    type: str | None = None
    priority: str | None = None
    text: str | None = None
    heartbeats: bool | None = None

    @property
    def is_empty(self) -> bool:
        return not (self.agent or self.type or self.priority or self.text) and self.heartbeats is not False

    @property
    def hides_heartbeats(self) -> bool:
        return self.heartbeats is False and self.type != HEARTBEAT

    def describe(self) -> str:
        """A short human line such as `agent=backend type=task_assign`."""
        parts = [f"{name}={value}" for name, value in self._fields() if value]
        if self.heartbeats is not None:
            parts.append(f"heartbeats={'on' if self.heartbeats else 'off'}")
        return " ".join(parts)

    def _fields(self) -> list[tuple[str, str | None]]:
        return [("agent", self.agent), ("type", self.type), ("priority", self.priority), ("text", self.text)]


class Matcher:
    """A filter compiled against one store: names resolved to column ids, text to bytes."""

    _UNSEEN = -1  # a name the store has not seen yet: matches nothing until it appears
    CHUNK = 4 * 1024 * 1024  # bytes lower-cased at a time by the case-insensitive scan

    def __init__(self, store: MessageStore, filter: Filter) -> None:
        self.columns: Columns = store.columns  # shared, not copied: they grow as the store does
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
    def _id(names: Interner, value: str | None) -> int | None:
        if not value:
            return None
        found = names.lookup(value)
        return Matcher._UNSEEN if found is None else found

    def scan(self, start: int, stop: int) -> list[int]:
        """Matching indices in [start, stop): columns first, then the text over the byte buffer."""
        c, f = self.columns, self.filter
        candidates: range | list[int] = range(start, stop)
        agent = self._id(c.agents, f.agent)
        if agent is not None:
            frm, to = c.sender, c.recipient
            candidates = [i for i in candidates if frm[i] == agent or to[i] == agent]
        kind = self._id(c.types, f.type)
        if kind is not None:
            types = c.type
            candidates = [i for i in candidates if types[i] == kind]
        if f.hides_heartbeats:
            beat = c.types.lookup(HEARTBEAT)
            if beat is not None:
                types = c.type
                candidates = [i for i in candidates if types[i] != beat]
        priority = self._id(c.priorities, f.priority)
        if priority is not None:
            priorities = c.priority
            candidates = [i for i in candidates if priorities[i] == priority]
        if f.text and candidates:
            names = self._matching_names()
            if len(candidates) * 8 < stop - start:  # few left: look at their bytes only
                return [i for i in candidates if self._name_hit(i, names) or self._bytes_hit(i)]
            hits = self._text_hits(start, stop) | self._name_hits(candidates, names)
            return sorted(hits) if isinstance(candidates, range) else [i for i in candidates if i in hits]
        return list(candidates)

    def _bytes_hit(self, index: int) -> bool:
        c = self.columns
        begin, end = c.offsets[index], c.offsets[index + 1]
        if self.regex is not None:
            return self.regex.search(c.data, begin, end) is not None
        chunk = c.data[begin:end]
        return self.needle_bytes in (chunk if self.case_sensitive else chunk.lower())

    def _text_hits(self, start: int, stop: int) -> set[int]:
        """Indices whose JSON bytes match, found by scanning the buffer a few MiB at a time
        (bytes.find runs at memory speed; a slice per message would not)."""
        hits: set[int] = set()
        c = self.columns
        offsets = c.offsets
        low, high = offsets[start], offsets[stop]
        overlap = max(0, len(self.needle_bytes) - 1)
        for chunk_start in range(low, high, self.CHUNK):
            chunk_end = min(high, chunk_start + self.CHUNK + overlap)
            for position, end in self._find_all(c.data[chunk_start:chunk_end]):
                begin = chunk_start + position
                index = bisect_right(offsets, begin) - 1
                if chunk_start + end <= offsets[index + 1]:  # not straddling two messages
                    hits.add(index)
        return hits

    def _find_all(self, chunk: bytearray) -> Iterator[tuple[int, int]]:
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
        c = self.columns

        def ids(names: Interner) -> set[int]:
            return {i for i, name in enumerate(names.names) if self.needle in self.fold(name)}

        return ids(c.agents), ids(c.types), ids(c.priorities)

    def _name_hits(self, candidates: range | list[int], names: tuple[set[int], set[int], set[int]]) -> set[int]:
        """Candidates whose sender, recipient, type or priority contains the text."""
        if not any(names):
            return set()
        return {i for i in candidates if self._name_hit(i, names)}

    def _name_hit(self, index: int, names: tuple[set[int], set[int], set[int]]) -> bool:
        c = self.columns
        agents, types, priorities = names
        return (
            c.sender[index] in agents
            or c.recipient[index] in agents
            or c.type[index] in types
            or c.priority[index] in priorities
        )


class FilteredView:
    """The rows a filter shows, as store indices, kept current by `update()` in O(new messages).

    `limit` hides every store index from it on: a replay holds the whole recording in the store
    but shows only the messages up to its cursor.
    """

    def __init__(self, store: MessageStore, filter: Filter | None = None, limit: int | None = None) -> None:
        self.store = store
        self.limit = limit
        self.filter = filter or Filter()
        self._matcher = None if self.filter.is_empty else Matcher(store, self.filter)
        self._rows = array("Q")
        self._scanned = 0
        self.update()

    def update(self) -> int:
        """Take in the messages appended since the last call; returns how many rows were added."""
        total, before = len(self.store), len(self)
        start, self._scanned = self._scanned, total
        if self._matcher is not None:
            self._rows.extend(self._matcher.scan(start, total))
        return len(self) - before

    def set_limit(self, limit: int | None) -> int:
        """Show store indices below `limit` only (None: all); returns the change in rows shown."""
        before = len(self)
        self.limit = limit
        return len(self) - before

    def __len__(self) -> int:
        if self._matcher is None:
            return self._scanned if self.limit is None else min(self._scanned, self.limit)
        return len(self._rows) if self.limit is None else bisect_left(self._rows, self.limit)

    def __getitem__(self, row: int) -> int:
        """The store index shown on `row` (negative rows count from the end)."""
        shown = len(self)
        if row < 0:
            row += shown
        if not 0 <= row < shown:
            raise IndexError(row)
        return row if self._matcher is None else self._rows[row]

    def row_of(self, index: int) -> int | None:
        """The row showing store index `index`, or None when the filter (or the limit) hides it."""
        if self._matcher is None:
            return index if 0 <= index < len(self) else None
        at = bisect_left(self._rows, index)
        return at if at < len(self) and self._rows[at] == index else None

    def nearest_row(self, index: int) -> int:
        """The row of the last shown message at or before store index `index` (0 when none)."""
        if self._matcher is None:
            return max(0, min(index, len(self) - 1))
        return max(0, min(bisect_right(self._rows, index), len(self)) - 1)
