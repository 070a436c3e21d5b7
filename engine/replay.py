"""A cursor over a recorded sprint: seek to any event or time without re-running any agent.

`ReplayCursor.open` checks every record's crc and seq once (no JSON parsing, and a block of lines
at a time rather than line by line, so a million-event journal opens in about 0.8 s) and keeps a
*sparse* seq -> byte-offset index: one offset every `INDEX_STRIDE` records.  Events are parsed only
when they are folded or asked for.

States are rebuilt by folding from a snapshot: the empty state at 0, and a deep copy of the state
at every multiple of `snapshot_every`.  Snapshots are taken whenever a fold passes such a seq, and
`build_snapshots()` takes them all in one linear pass (the dashboard runs it in a worker thread after
its first paint), after which any seek applies at most `snapshot_every` events.  Only one such pass
runs at a time: a second caller (a far seek the dashboard prepares in a worker) waits for the first
to pass the seq it needs, or carries on from where the first stopped, so no event is folded twice.
`seek_cost`, `state_at` and `place` let a caller do a long seek off its own thread.

As a fold passes a `state_digest` event, the digest of the folded state is checked against the one
the live manager recorded: a replay proves it shows what the engine had, or says where it does not.
Replay never reads the plan file: the first events carry the agents and tasks.
"""

from __future__ import annotations

import binascii
import bisect
import os
import sys
import threading
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, time
from itertools import accumulate, repeat
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from engine.events import Event, EventType
from engine.journal import JournalError, open_journal_file, read_header_line
from engine.journal_codec import (
    CRC_END,
    CRC_PREFIX,
    CRC_SUFFIX_LEN,
    SEQ_START,
    TORN,
    BadRecord,
    crc_problem,
    decode_record,
)
from engine.models import ProjectState
from engine.reducer import apply, state_digest

INDEX_STRIDE = 64  # records between two index entries: 8 bytes per 64 events, a short skip per read
BLOCK_BYTES = 1 << 18  # bytes read per block while opening: small enough to stay in cache, big enough to batch
_TAIL = itemgetter(slice(-CRC_SUFFIX_LEN, None))  # ,"crc":"xxxxxxxx"}  of a line without its newline
_BODY = itemgetter(slice(None, -CRC_SUFFIX_LEN))  # what the crc covers, but for the closing brace
_TAIL_TEMPLATE = CRC_PREFIX + b"________" + CRC_END
_CRC_ARRAY = next(code for code in "IL" if array(code).itemsize == 4)  # 32-bit unsigned, whatever the C ints
_GAP = "gap"  # `_first_bad`'s word for an intact record with the wrong seq
# Read buffer of the files events are read from.  Every refill is a system call that lets go of the
# GIL, and with two threads folding (the dashboard's and the snapshot builder) each one costs a wait
# of up to the interpreter's switch interval (5 ms) to get it back: 8 KiB buffers (27 records) made
# a key press wait up to a third of a second; 256 KiB ones make the refills 32 times rarer.
_READ_BUFFER = 1 << 18


class ReplayError(JournalError):
    """The replayed state does not match a digest the live manager recorded."""


@dataclass(frozen=True)
class TornTail:
    """A journal whose last line is cut short or corrupt (a crash mid-write): replay stops before it.

    Replay never writes to the journal it reads; `run --resume`/`serve --resume` repair it.
    """

    path: Path
    line: int
    kept_records: int
    torn_bytes: int
    reason: str

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: the last record is torn ({self.reason}); replaying the "
            f"{self.kept_records} records before it and leaving the file as it is "
            f"(`sprintdeck run PLAN --resume {self.path}` repairs it)"
        )


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
        self.index: array[int] = array("q")  # offset of record 1 + k * INDEX_STRIDE
        self.total = 0
        self.end = 0  # byte offset just past the last good record
        self.torn: tuple[int, str] | None = None  # (line, why) of a bad last line


def _crcs_intact(lines: list[bytes]) -> bool:
    """Whether every line (newline stripped) ends in `,"crc":"<crc of the rest + }>"}`, all at once.

    `crc_problem`'s test, batched: the crcs are computed by `map` (no Python-level loop
    per line), written as one run of lower-case hex, and laid into a template of the expected
    tails with strided slice assignments; then one comparison with the lines' actual tails.
    """
    crc32 = zlib.crc32
    crcs = array(_CRC_ARRAY, map(crc32, repeat(b"}"), map(crc32, map(_BODY, lines))))
    if sys.byteorder == "little":
        crcs.byteswap()  # hex digits are written most significant first
    digits = binascii.hexlify(crcs.tobytes())
    expected = bytearray(_TAIL_TEMPLATE * len(lines))
    width, start = len(_TAIL_TEMPLATE), len(CRC_PREFIX)
    for k in range(8):
        expected[start + k :: width] = digits[k::8]
    return b"".join(map(_TAIL, lines)) == expected


def _seqs_in_order(lines: list[bytes], first: int) -> bool:
    """Whether the lines start `{"seq":first,`, `{"seq":first+1,`, ... — checked a digit-count run at a time.

    Within a run every prefix (`SEQ_START % seq`) has the same length, so the lines' prefixes
    joined must equal one `bytes %` of a repeated template (formatting them one by one costs twice
    as much).
    """
    done, seq = 0, first
    while done < len(lines):
        run = min(len(lines) - done, 10 ** len(str(seq)) - seq)
        actual = b"".join(map(itemgetter(slice(0, len(SEQ_START % seq))), lines[done : done + run]))
        if actual != (SEQ_START * run) % tuple(range(seq, seq + run)):
            return False
        done, seq = done + run, seq + run
    return True


def _first_bad(lines: list[bytes], first: int) -> tuple[int, str | None]:
    """(index, why) of the first line that is not record `first + index`: the slow path that says why.

    `why` is `_GAP` for an intact record with the wrong seq, None when every line is good.
    """
    for number, line in enumerate(lines):
        why = crc_problem(line)
        if why is not None:
            return number, why
        if not line.startswith(SEQ_START % (first + number)):
            return number, _GAP
    return len(lines), None


def _index_lines(index: array[int], lines: list[bytes], first: int, offset: int) -> None:
    """Append the byte offsets of the records among `lines` that start an index stride."""
    lengths = list(accumulate(map(len, lines), initial=offset))  # the lines' newlines are not counted:
    for number in range(-(first - 1) % INDEX_STRIDE, len(lines), INDEX_STRIDE):
        index.append(lengths[number] + number)  # so line `number` starts `number` newlines further on


def _scan(path: Path, file: IO[bytes], block_bytes: int = BLOCK_BYTES) -> _Scan:
    """Check every record after the header; a bad line before the last is a `JournalError`.

    This is the whole cost of opening a journal, so it works on blocks of `block_bytes` bytes: split
    into lines (the partial line at a block's end is carried into the next), checked in bulk by
    `_crcs_intact` and `_seqs_in_order`, about half the cost of a per-line loop.  Only a block
    that fails goes line by line through `_first_bad`, to find the line and say why; a bad line
    is a torn tail only when nothing at all follows it.
    """
    scan = _Scan()
    offset, carry = file.tell(), b""
    pending: tuple[int, int, str] | None = None  # (line, offset, why) of a bad line, maybe the last
    while block := file.read(block_bytes):
        if pending is not None:  # a bad line with more after it: damage, not a torn write
            raise JournalError(path, pending[0], pending[0] - 1, f"record seq {pending[0] - 1}: {pending[2]}")
        lines = block.split(b"\n")
        lines[0] = carry + lines[0]
        consumed = len(carry) + len(block)
        carry = lines.pop()
        consumed -= len(carry)
        if lines:
            offset, pending = _scan_lines(path, scan, lines, offset, consumed)
    if carry:  # a last line without its newline
        if pending is not None:
            raise JournalError(path, pending[0], pending[0] - 1, f"record seq {pending[0] - 1}: {pending[2]}")
        pending = (scan.total + 2, offset, TORN)
    scan.end = pending[1] if pending else offset
    if pending is not None:
        scan.torn = (pending[0], pending[2])
    return scan


def _scan_lines(path: Path, scan: _Scan, lines: list[bytes], offset: int,
                size: int) -> tuple[int, tuple[int, int, str] | None]:
    """Check and index one block's complete lines (`size` bytes from `offset`).

    Returns the offset after the good lines and, when the block's very last line is bad, that line
    as pending (a torn tail if nothing follows it).  A bad line with another after it raises.
    """
    first = scan.total + 1
    good, why = len(lines), None
    if not (_crcs_intact(lines) and _seqs_in_order(lines, first)):
        good, why = _first_bad(lines, first)
    _index_lines(scan.index, lines if why is None else lines[:good], first, offset)
    scan.total += good
    if why is None:
        return offset + size, None
    offset += sum(map(len, lines[:good])) + good
    seq = first + good
    if why == _GAP:  # intact but misplaced: never torn
        raise JournalError(path, seq + 1, seq, f"expected seq {seq}, found another (a gap)")
    if good < len(lines) - 1:
        raise JournalError(path, seq + 1, seq, f"record seq {seq}: {why}")
    return offset, (seq + 1, offset, why)


class ReplayCursor:
    """The state of a recorded sprint at any seq, for the replay dashboard and `replay --headless`.

    `state` is shared with the cursor: callers must not mutate it (take a `model_copy` to keep one).
    `seek`, `step`, `event`, `events` and `place` belong to one thread (the dashboard's);
    `build_snapshots`, `state_at` and `seek_cost` are safe from any thread.
    """

    def __init__(self, path: Path, header: dict[str, Any], scan: _Scan, torn: TornTail | None,
                 snapshot_every: int) -> None:
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self.path = path
        self.header = header
        self.torn = torn  # a torn last line, left in the file and not replayed
        self.total = scan.total
        self.snapshot_every = snapshot_every
        self._index = scan.index
        self._file = open(path, "rb", buffering=_READ_BUFFER)
        self._lock = threading.Lock()  # snapshots may be built by a worker thread
        self._snapshots_changed = threading.Condition(self._lock)  # a snapshot kept, or a build ended
        self._building = False  # a `build_snapshots` pass is folding (at most one at a time)
        self._closed = threading.Event()  # stops any build in another thread
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
    def open(cls, path: Path, *, snapshot_every: int = 1000, block_bytes: int = BLOCK_BYTES) -> ReplayCursor:
        """Check and index a journal, read-only; a torn last record is left out and described in `torn`.

        A bad record before the last raises `JournalError` naming its line and seq.  The journal
        is checked `block_bytes` at a time (any size gives the same result; the default is fast).
        """
        path = Path(path)
        with open_journal_file(path) as file:
            header = read_header_line(path, file)
            scan = _scan(path, file, block_bytes)
            size = os.fstat(file.fileno()).st_size
        torn = None
        if scan.torn is not None:
            torn = TornTail(path, scan.torn[0], scan.total, size - scan.end, scan.torn[1])
        return cls(path, header, scan, torn, snapshot_every)

    def close(self) -> None:
        """Close the file; a `build_snapshots` running in another thread stops at its next snapshot."""
        self._closed.set()
        with self._snapshots_changed:
            self._snapshots_changed.notify_all()
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
                    record = decode_record(raw)
                except BadRecord as exc:  # the file changed under us since open
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

    def _fold(self, state: ProjectState, start: int, end: int, file: IO[bytes] | None = None,
              stop: Callable[[], bool] | None = None) -> ProjectState:
        """Apply events start..end to `state` (in place), verifying digests and taking snapshots.

        With `stop`, the fold ends early (state short of `end`) at the first snapshot seq after
        `stop()` says so, so a build in a worker thread ends soon after its App does.
        """
        if start > end:
            return state
        every = self.snapshot_every
        for record in self._records(start, end, file):
            event = Event.from_record(record)
            if event.type == EventType.STATE_DIGEST:
                self._verify(state, event)
            apply(state, event)
            if event.seq % every == 0:
                if event.seq not in self._snapshots:
                    self._keep_snapshot(event.seq, state)
                if stop is not None and stop():
                    break
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
        with self._snapshots_changed:
            if seq not in self._snapshots:
                self._snapshots[seq] = copy
                bisect.insort(self._snapshot_seqs, seq)
                self._snapshots_changed.notify_all()

    def _nearest_snapshot(self, seq: int) -> int:
        with self._lock:
            return self._snapshot_seqs[bisect.bisect_right(self._snapshot_seqs, seq) - 1]

    def _covered(self, seq: int) -> bool:
        """Whether a snapshot lies within `snapshot_every` events before `seq` (the lock is held)."""
        return seq - self._snapshot_seqs[bisect.bisect_right(self._snapshot_seqs, seq) - 1] < self.snapshot_every

    @property
    def snapshots_until(self) -> int:
        """The last seq with a snapshot: how far `build_snapshots` has come (for a progress line)."""
        with self._lock:
            return self._snapshot_seqs[-1]

    def build_snapshots(self, until: int | None = None, *, stop: threading.Event | None = None) -> None:
        """Take every missing snapshot up to `until` (default: the end) in one linear fold.

        Safe to run in a worker thread while the cursor seeks: it folds its own state and file.
        After it, a seek to `until` or before applies at most `snapshot_every` events.  One pass
        runs at a time: a caller that finds another pass running waits until that pass has
        covered `until` or has ended (then continues from its last snapshot), so concurrent
        callers share the work instead of folding the same events twice.  `stop` (or `close()`)
        ends the wait or the fold early, leaving the snapshots taken so far.
        """
        until = self.total if until is None else min(until, self.total)
        if not self._claim_build(until, stop):
            return
        try:
            start = self._nearest_snapshot(until)
            with self._lock:
                state = self._snapshots[start].model_copy(deep=True)
            with open(self.path, "rb", buffering=_READ_BUFFER) as file:
                self._fold(state, start + 1, until, file, stop=lambda: self._stopped(stop))
        finally:
            with self._snapshots_changed:
                self._building = False
                self._snapshots_changed.notify_all()

    def _stopped(self, stop: threading.Event | None) -> bool:
        return self._closed.is_set() or (stop is not None and stop.is_set())

    def _claim_build(self, until: int, stop: threading.Event | None) -> bool:
        """Become the one building pass, or return False when `until` is covered (or we must stop)."""
        with self._snapshots_changed:
            while True:
                if self._covered(until) or self._stopped(stop):
                    return False
                if not self._building:
                    self._building = True
                    return True
                self._snapshots_changed.wait(0.1)  # woken at every snapshot; the timeout is for `stop`

    # ------------------------------------------------------------ seeking

    def seek_cost(self, seq: int) -> int:
        """How many events `seek(seq)` would fold now (from a snapshot or from the current position)."""
        seq = max(0, min(self.total, seq))
        base, position = self._nearest_snapshot(seq), self.position
        return seq - position if base <= position <= seq else seq - base

    def state_at(self, seq: int) -> ProjectState:
        """A new state after event `seq`, folded from the nearest snapshot; the cursor does not move.

        For a seek prepared in another thread (its own file handle): `build_snapshots(seq)` first
        makes this cost at most `snapshot_every` events; then `place(seq, state)` shows it.
        """
        seq = max(0, min(self.total, seq))
        base = self._nearest_snapshot(seq)
        with self._lock:
            state = self._snapshots[base].model_copy(deep=True)
        with open(self.path, "rb", buffering=_READ_BUFFER) as file:
            return self._fold(state, base + 1, seq, file)

    def place(self, seq: int, state: ProjectState) -> ProjectState:
        """Move to `seq` with a state `state_at(seq)` built: the end of a seek done elsewhere."""
        if state.version != seq:
            raise ValueError(f"a state at version {state.version} cannot stand for seq {seq}")
        self.position, self.state = seq, state
        return state

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
