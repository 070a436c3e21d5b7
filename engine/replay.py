"""A cursor over a recorded sprint: seek to any event or time without re-running any agent.

`ReplayCursor.open` checks every record's crc and seq once (no JSON parsing, so a million-event
journal opens in about a second) and keeps a *sparse* seq -> byte-offset index: one offset every
`INDEX_STRIDE` records.  Events are parsed only when they are folded or asked for.

States are rebuilt by folding from a snapshot: the empty state at 0, and a deep copy of the state
at every multiple of `snapshot_every`.  Snapshots are taken whenever a fold passes such a seq, and
`build_snapshots()` takes them all in one linear pass (the dashboard runs it in a worker thread after
its first paint), after which any seek applies at most `snapshot_every` events.

As a fold passes a `state_digest` event, the digest of the folded state is checked against the one
the live manager recorded: a replay proves it shows what the engine had, or says where it does not.
Replay never reads the plan file: the first events carry the agents and tasks.
"""

from __future__ import annotations

import bisect
import json
import threading
import zlib
from array import array
from collections.abc import Iterator
from datetime import datetime, time
from pathlib import Path
from typing import IO, Any

from engine.events import Event, EventType
from engine.journal import (
    _CRC_PREFIX,
    _CRC_SUFFIX_LEN,
    JournalError,
    Recovery,
    _cut_tail,
    _decode_header,
    _decode_record,
)
from engine.models import ProjectState
from engine.reducer import apply, state_digest

INDEX_STRIDE = 64  # records between two index entries: 8 bytes per 64 events, a short skip per read


class ReplayError(JournalError):
    """The replayed state does not match a digest the live manager recorded."""


def parse_time_of_day(text: str, start: datetime) -> datetime:
    """"HH:MM" or "HH:MM:SS" on the sprint's first day, in `start`'s time zone (`:seek 12:30`)."""
    try:
        clock = time.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a time of day (HH:MM or HH:MM:SS): {text!r}") from None
    return start.replace(hour=clock.hour, minute=clock.minute, second=clock.second, microsecond=clock.microsecond)


def _parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts)


class _Scan:
    """The result of checking every line once: index, count, and a torn tail if there is one."""

    def __init__(self) -> None:
        self.index = array("q")  # offset of record 1 + k * INDEX_STRIDE
        self.total = 0
        self.end = 0  # byte offset just past the last good record
        self.torn: tuple[int, str] | None = None  # (line, why) of a bad last line


def _check_line(raw: bytes, seq: int) -> str | None:
    """Why `raw` is not the complete, intact record `seq`; None when it is.

    Cheap on purpose (no JSON parsing): the crc covers every byte the writer produced, so a line
    whose crc matches and that starts with the right seq is the record that was written.
    """
    if not raw.endswith(b"\n"):
        return "torn: no end of line"
    if len(raw) <= _CRC_SUFFIX_LEN or raw[-_CRC_SUFFIX_LEN - 1 : -11] != _CRC_PREFIX or raw[-3:] != b'"}\n':
        return "no crc at the end of the record"
    if b"%08x" % zlib.crc32(raw[: -_CRC_SUFFIX_LEN - 1] + b"}") != raw[-11:-3]:
        return f"crc mismatch (stored {raw[-11:-3].decode(errors='replace')})"
    return None


def _scan(path: Path, file: IO[bytes]) -> _Scan:
    """Check every record after the header; a bad line before the last is a `JournalError`.

    The loop is the whole cost of opening a journal (about 1.5 µs a record), so the common case is
    one inlined expression and only a failing line goes through `_check_line` to say why.
    """
    scan = _Scan()
    crc32, suffix, index, stride = zlib.crc32, _CRC_SUFFIX_LEN + 1, scan.index, INDEX_STRIDE
    offset = file.tell()
    pending: tuple[int, int, str] | None = None
    seq = 0
    for raw in file:
        seq += 1
        if pending is not None:  # a bad line with another after it: damage, not a torn write
            raise JournalError(path, pending[0], pending[0] - 1, f"record seq {pending[0] - 1}: {pending[2]}")
        intact = (
            raw[-suffix:-11] == _CRC_PREFIX
            and raw[-3:] == b'"}\n'
            and b"%08x" % crc32(b"}", crc32(raw[:-suffix])) == raw[-11:-3]
        )
        why = None if intact else _check_line(raw, seq)
        if why is None and not raw.startswith(b'{"seq":%d,' % seq):  # intact but misplaced: never torn
            raise JournalError(path, seq + 1, seq, f"expected seq {seq}, found another (a gap)")
        if why is not None:
            pending = (seq + 1, offset, why)
        else:
            if (seq - 1) % stride == 0:
                index.append(offset)
            scan.total = seq
        offset += len(raw)
    scan.end = pending[1] if pending else offset
    if pending is not None:
        scan.torn = (pending[0], pending[2])
    return scan


class ReplayCursor:
    """The state of a recorded sprint at any seq, for the replay dashboard and `replay --headless`.

    `state` is shared with the cursor: callers must not mutate it (take a `model_copy` to keep one).
    """

    def __init__(self, path: Path, header: dict[str, Any], scan: _Scan, recovery: Recovery | None,
                 snapshot_every: int) -> None:
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self.path = path
        self.header = header
        self.recovery = recovery
        self.total = scan.total
        self.snapshot_every = snapshot_every
        self._index = scan.index
        self._file = open(path, "rb")
        self._lock = threading.Lock()  # snapshots may be built by a worker thread
        self._snapshots: dict[int, ProjectState] = {0: ProjectState()}
        self._snapshot_seqs: list[int] = [0]
        self._verified: set[int] = set()
        self.position = 0
        self.state = ProjectState()
        first = self.event(1) if self.total else None
        self.start_time = _parse_ts(first.ts) if first else _parse_ts(header["startedAt"].replace("Z", "+00:00"))
        self.end_time = self.time_of(self.total) if self.total else self.start_time

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, path: Path, *, snapshot_every: int = 1000) -> ReplayCursor:
        """Check and index a journal; a torn last record is cut (a `.broken` copy kept) and reported.

        A bad record before the last raises `JournalError` naming its line and seq.
        """
        path = Path(path)
        with open(path, "rb") as file:
            header = _decode_header(path, file.readline())
            scan = _scan(path, file)
            size = file.tell()
        recovery = None
        if scan.torn is not None:
            line, why = scan.torn
            broken = _cut_tail(path, scan.end)
            recovery = Recovery(path, scan.total, size - scan.end, broken, why)
        return cls(path, header, scan, recovery, snapshot_every)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ReplayCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ reading events

    def _records(self, start: int, end: int, file: IO[bytes] | None = None) -> Iterator[dict[str, Any]]:
        """Records start..end (inclusive), read from the nearest index entry at or before start."""
        file = file or self._file
        slot = (start - 1) // INDEX_STRIDE
        file.seek(self._index[slot])
        seq = slot * INDEX_STRIDE + 1
        while seq <= end:
            raw = file.readline()
            if seq >= start:
                try:
                    record = _decode_record(raw)
                except Exception as exc:  # the file changed under us since open
                    raise JournalError(self.path, seq + 1, seq, f"record seq {seq}: {exc}") from None
                yield record
            seq += 1

    def _check_seq(self, seq: int) -> None:
        if not 1 <= seq <= self.total:
            raise IndexError(f"seq {seq} is outside 1..{self.total}")

    def event(self, seq: int) -> Event:
        """Event `seq` (1..total), read through the index."""
        self._check_seq(seq)
        return Event.from_record(next(self._records(seq, seq)))

    def events(self, start: int, end: int) -> list[Event]:
        """Events start..end inclusive, clamped to 1..total."""
        start, end = max(1, start), min(self.total, end)
        if start > end:
            return []
        return [Event.from_record(record) for record in self._records(start, end)]

    def time_of(self, seq: int) -> datetime:
        """The wall time of event `seq`; 0 means the first event's time."""
        return self.start_time if seq == 0 else _parse_ts(self.event(seq).ts)

    # ------------------------------------------------------------ folding

    def _fold(self, state: ProjectState, start: int, end: int, file: IO[bytes] | None = None) -> ProjectState:
        """Apply events start..end to `state` (in place), verifying digests and taking snapshots."""
        if start > end:
            return state
        for record in self._records(start, end, file):
            event = Event.from_record(record)
            if event.type == EventType.STATE_DIGEST:
                self._verify(state, event)
            apply(state, event)
            if event.seq % self.snapshot_every == 0 and event.seq not in self._snapshots:
                self._keep_snapshot(event.seq, state)
        return state

    def _verify(self, state: ProjectState, event: Event) -> None:
        if event.seq in self._verified:
            return
        recorded, of = event.data.get("digest"), event.data.get("of")
        if of != state.version:
            raise ReplayError(self.path, event.seq + 1, event.seq,
                              f"state_digest seq {event.seq} is of version {of}, the fold is at {state.version}")
        actual = state_digest(state)
        if actual != recorded:
            raise ReplayError(self.path, event.seq + 1, event.seq,
                              f"state_digest seq {event.seq}: replayed state at version {of} has digest "
                              f"{actual[:12]}…, the recording says {str(recorded)[:12]}…")
        self._verified.add(event.seq)

    def _keep_snapshot(self, seq: int, state: ProjectState) -> None:
        copy = state.model_copy(deep=True)
        with self._lock:
            if seq not in self._snapshots:
                self._snapshots[seq] = copy
                bisect.insort(self._snapshot_seqs, seq)

    def _nearest_snapshot(self, seq: int) -> int:
        with self._lock:
            return self._snapshot_seqs[bisect.bisect_right(self._snapshot_seqs, seq) - 1]

    def build_snapshots(self, until: int | None = None) -> None:
        """Take every missing snapshot up to `until` (default: the end) in one linear fold.

        Safe to run in a worker thread while the cursor seeks: it folds its own state and file.
        After it, a seek applies at most `snapshot_every` events.
        """
        until = self.total if until is None else min(until, self.total)
        start = self._nearest_snapshot(until)
        if until - start < self.snapshot_every:
            return
        with self._lock:
            state = self._snapshots[start].model_copy(deep=True)
        with open(self.path, "rb") as file:
            self._fold(state, start + 1, until, file)

    # ------------------------------------------------------------ seeking

    def seek(self, seq: int) -> ProjectState:
        """The state after event `seq` (clamped to 0..total), from the closest starting point."""
        seq = max(0, min(self.total, seq))
        if seq == self.position:
            return self.state
        base = self._nearest_snapshot(seq)
        if base <= self.position < seq:  # going forwards from here is no longer than from the snapshot
            self._fold(self.state, self.position + 1, seq)
        else:
            with self._lock:
                state = self._snapshots[base].model_copy(deep=True)
            self.state = self._fold(state, base + 1, seq)
        self.position = seq
        return self.state

    def step(self, n: int) -> ProjectState:
        return self.seek(self.position + n)

    def seq_at_time(self, when: datetime) -> int:
        """The last seq whose ts is <= `when` (0 when `when` is before the first event)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=self.start_time.tzinfo)
        low, high = 0, self.total  # invariant: time_of(low) <= when (or low == 0), time_of(high + 1) > when
        while low < high:
            middle = (low + high + 1) // 2
            if self.time_of(middle) <= when:
                low = middle
            else:
                high = middle - 1
        return low

    def seek_time(self, when: datetime | str) -> ProjectState:
        """Seek to the last event at or before `when` (a datetime, or "HH:MM[:SS]" on the first day)."""
        if isinstance(when, str):
            when = parse_time_of_day(when, self.start_time)
        return self.seek(self.seq_at_time(when))
