"""The append-only journal file: one checksummed JSON line per event, fsynced in groups (DESIGN §8).

What a line holds, and how it is checked, is `engine/journal_codec.py`; this module owns the file:
the single writer that appends to it, the readers that validate it whole, and recovery.

A record is complete once its newline is on disk.  A torn or corrupt *last* record is what a crash
mid-write leaves: `read_journal(recover=True)` keeps a `.broken` copy, cuts it off and reports it.
Anything wrong *before* the last record is damage a crash cannot cause, so it is always an error.

Durability is group commit: `append` only buffers; `flush` writes the buffer and has the journal's
own sync thread (`engine/journal_sync.py`) run one `fdatasync` for every caller waiting at that
moment, so under load one sync acknowledges many events.  A write or sync that fails (a full disk)
is a `JournalFailure`: the file is cut back to its last durable record and nothing more is
acknowledged, so the sprint stops with a journal that `--resume` continues.

Reading never writes: `read_journal` without `recover` (and the replay cursor) stop at a torn tail
and say so; only `recover=True`, which `run --resume`/`serve --resume` use, repairs the file.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from engine.journal_codec import (
    BadHeader,
    BadRecord,
    decode_header,
    decode_record,
    encode_header,
    encode_record,
)
from engine.journal_errors import JournalError, JournalFailure, Recovery
from engine.journal_sync import SyncThread
from engine.os_errors import describe, regular_file_problem

__all__ = [
    "JournalError",
    "JournalFailure",
    "JournalWriter",
    "Recovery",
    "cut_torn_tail",
    "encode_record",
    "iter_journal",
    "open_journal_file",
    "read_header",
    "read_header_line",
    "read_journal",
]


# ---------------------------------------------------------------- writing


class JournalWriter:
    """Appends records to one journal file; the single writer of that file.

    `append` is synchronous and cheap (it only buffers), so the manager can append an event and
    then `await flush()` before acknowledging it: durable before acknowledgement, one fsync shared
    by every event appended meanwhile.  Until a flush writes it, the last record can be taken
    back with `retract`.

    The first failed write or sync ends the writer's useful life: the file is cut back to the
    last durable record, every flush raises that `JournalFailure` from then on, and appends are
    buffered only to be dropped (the sprint is being stopped; its events must not fail on the way).
    """

    def __init__(self, path: Path, file: IO[bytes], last_seq: int) -> None:
        self.path = path
        self._file = file  # unbuffered: every byte written is handed to the OS at once
        self._fd = file.fileno()
        self._buffer: list[bytes] = []
        self._last_seq = last_seq  # appended (maybe only buffered)
        self._written_seq = last_seq  # handed to the OS
        self._durable_seq = last_seq  # fsynced
        self._written_bytes = self._durable_bytes = os.fstat(self._fd).st_size
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (seq, flush waiting for it)
        self._syncing = False  # a sync is with the sync thread
        self._sync_thread = SyncThread(f"sprintdeck-journal-sync:{path.name}")
        self._failure: JournalFailure | None = None
        self._closed = False
        self.fsync_count = 0

    @classmethod
    def create(cls, path: Path, header: dict[str, Any]) -> JournalWriter:
        """Start a new journal with its header line; refuses to overwrite a non-empty file.

        `header` gives `sprint`, `planDigest` and any further keys (`encode_header` says which
        default).  A path that is not a regular file (a directory, a FIFO, a device) is refused
        with `JournalError`; a header that cannot be written is a `JournalFailure`.
        """
        path = Path(path)
        line = encode_header(header)
        problem = regular_file_problem(path, must_exist=False)
        if problem is not None:
            raise JournalError(path, 0, None, problem)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size > 0:
                raise JournalError(path, 1, None, "journal already exists; refusing to overwrite it")
            file = open(path, "ab", buffering=0)
        except OSError as exc:
            raise JournalError(path, 0, None, describe(exc, path)) from None
        try:
            _write_all(file.fileno(), line)
            os.fsync(file.fileno())
            _fsync_directory(path.parent)
        except OSError as exc:  # the file was empty or absent: what is left of it is nobody's
            file.close()
            path.unlink(missing_ok=True)
            raise JournalFailure(path, 0, exc, "write the journal header", started=False) from None
        return cls(path, file, last_seq=0)

    @classmethod
    def resume(
        cls, path: Path
    ) -> tuple[JournalWriter, dict[str, Any], list[dict[str, Any]], Recovery | None]:
        """Reopen an existing journal to go on appending after a restart.

        The journal is read with `recover=True` (a torn tail is cut and reported); the writer
        continues at the last record's seq + 1.
        """
        path = Path(path)
        header, records, recovery = read_journal(path, recover=True)
        last_seq = records[-1]["seq"] if records else 0
        try:
            file = open(path, "ab", buffering=0)
        except OSError as exc:
            raise JournalError(path, 0, None, describe(exc, path)) from None
        return cls(path, file, last_seq), header, records, recovery

    @property
    def last_seq(self) -> int:
        """The seq of the last appended record (durable or not)."""
        return self._last_seq

    @property
    def durable_seq(self) -> int:
        """Every record up to this seq is fsynced."""
        return self._durable_seq

    @property
    def failure(self) -> JournalFailure | None:
        """Why the journal can no longer be written, once a write or sync has failed."""
        return self._failure

    def append(self, seq: int, type: str, data: dict[str, Any], ts: str, mono: float) -> None:
        """Buffer one record; `seq` must be `last_seq + 1`.  Durable only after a flush."""
        self._check_open()
        if seq != self._last_seq + 1:
            raise JournalError(
                self.path, self._last_seq + 2, seq, f"seq {seq} does not follow {self._last_seq}"
            )
        try:
            line = encode_record(seq, type, data, ts, mono)
        except (TypeError, ValueError) as exc:
            raise JournalError(self.path, seq + 1, seq, f"record seq {seq} is not JSON: {exc}") from None
        self._buffer.append(line)
        self._last_seq = seq

    def retract(self, seq: int) -> None:
        """Take back the last appended record, `seq`, while it is still only in this writer's buffer.

        The recorder appends an event before folding it into the state, so the state never shows
        what the journal lacks; when the fold refuses the event, the recorder takes it back here,
        so the journal never holds what the state lacks.  Once a record is handed to the OS a
        reader may have seen it, and taking it back would rewrite history: `JournalError` then, as
        for a seq that is not the last appended.  The next append reuses `seq`.
        """
        if seq != self._last_seq:
            raise JournalError(
                self.path, seq + 1, seq, f"cannot retract seq {seq}: the last appended is {self._last_seq}"
            )
        if seq <= self._written_seq:
            raise JournalError(self.path, seq + 1, seq, f"cannot retract seq {seq}: already written to the file")
        self._buffer.pop()
        self._last_seq = seq - 1

    async def flush(self) -> int:
        """Make every record appended so far durable; returns the durable seq.

        Group commit: the buffer is written on the loop thread and synced by the sync thread; a
        caller that arrives while a sync runs waits for it and, if its own records were not in
        it, for the next one, which every caller waiting by then shares.  Raises `JournalFailure`.
        """
        self._check_failure()
        target = self._last_seq
        if self._durable_seq >= target:
            return self._durable_seq
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append((target, waiter))
        if not self._syncing:
            self._start_sync(loop)
        await waiter
        return self._durable_seq

    def flush_now(self) -> bool:
        """`flush` without leaving the caller's turn, when that is cheap; True once every record
        appended is durable, False (nothing done: await `flush`) while a sync runs or the disk
        is slow (`SyncThread.quick`).  Saves a reply the two loop turns of waking its flush
        (issue 14).  Raises `JournalFailure`."""
        self._check_failure()
        if self._durable_seq >= self._last_seq:
            return True
        if self._syncing or not self._sync_thread.quick:
            return False
        try:
            covered = self._write_buffer()
        except OSError as exc:
            raise self._fail(exc, "write the journal") from None
        self.fsync_count += 1
        if (error := self._sync_thread.sync_here(self._fd)) is not None:
            raise self._fail(error, "sync the journal") from None
        self._now_durable(covered, self._written_bytes)
        return True

    def flush_sync(self) -> int:
        """`flush` for code without an event loop at hand (shutdown, tests); blocks on fsync."""
        self._check_failure()
        if self._durable_seq < self._last_seq:
            try:
                covered = self._write_buffer()
                self.fsync_count += 1
                os.fsync(self._fd)
            except OSError as exc:
                raise self._fail(exc, "sync the journal") from None
            self._now_durable(covered, self._written_bytes)
        return self._durable_seq

    def close(self) -> None:
        """Flush what is buffered and close the file; appends after this raise.

        After a failure nothing more is written: the file stays cut back to its last durable record.
        """
        if self._closed:
            return
        try:
            if self._failure is None:
                self.flush_sync()
        finally:
            self._closed = True
            self._sync_thread.stop()  # before the fd goes: a sync in flight must not hit another file
            self._file.close()

    def _start_sync(self, loop: asyncio.AbstractEventLoop) -> None:
        """Write the buffer now and hand the sync of everything written to the sync thread."""
        try:
            covered = self._write_buffer()
        except OSError as exc:
            self._fail(exc, "write the journal")
            return
        size = self._written_bytes
        self._syncing = True
        self.fsync_count += 1
        self._sync_thread.submit(self._fd, loop, lambda error: self._synced(loop, covered, size, error))

    def _synced(self, loop: asyncio.AbstractEventLoop, covered: int, size: int, error: OSError | None) -> None:
        """On the loop: a sync ended; wake the flushes it covered and start the next one if any wait."""
        self._syncing = False
        if self._closed:
            return
        if error is not None:
            self._fail(error, "sync the journal")
            return
        self._now_durable(covered, size)
        if self._waiters:
            self._start_sync(loop)

    def _now_durable(self, covered: int, size: int) -> None:
        self._durable_seq = max(self._durable_seq, covered)
        self._durable_bytes = max(self._durable_bytes, size)
        waiting = []
        for target, waiter in self._waiters:
            if waiter.done():  # its caller was cancelled
                continue
            if min(target, self._last_seq) <= self._durable_seq:  # a retract may lower the target
                waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        self._waiters = waiting

    def _write_buffer(self) -> int:
        """Hand the buffered lines to the OS (in seq order, on the loop thread); returns their last seq."""
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer = []
            _write_all(self._fd, data)
            self._written_seq = self._last_seq
            self._written_bytes += len(data)
        return self._written_seq

    def _fail(self, error: OSError, doing: str) -> JournalFailure:
        """The first failure sticks: cut the file back to its durable records and fail every flush."""
        if self._failure is None:
            self._failure = JournalFailure(self.path, self._durable_seq, error, doing)
            try:  # a torn or unsynced tail would only be cut again by --resume; cutting needs no space
                os.ftruncate(self._fd, self._durable_bytes)
                os.fsync(self._fd)
            except OSError:
                pass  # --resume cuts what is left of a torn tail
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            if not waiter.done():
                waiter.set_exception(self._failure)
        return self._failure

    def _check_open(self) -> None:
        if self._closed:
            raise JournalError(self.path, self._last_seq + 2, None, "journal is closed")

    def _check_failure(self) -> None:
        # After a failed write or fsync the file's durable content is unknown (the kernel may have
        # dropped the dirty pages), so the writer refuses to acknowledge anything more.
        if self._failure is not None:
            raise self._failure


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte (a write that fills the disk may write part and then fail)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable (a crash could otherwise lose the whole file)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- reading


class _SeqGap(BadRecord):
    """A valid record with the wrong seq: a crash cannot cause it, so it is never recovered."""


def open_journal_file(path: Path) -> IO[bytes]:
    """Open a journal for reading: a regular file, or `JournalError` saying in words why not.

    Checked before opening, since opening a FIFO blocks until a writer comes.
    """
    problem = regular_file_problem(path, must_exist=True)
    if problem is not None:
        raise JournalError(path, 0, None, problem)
    try:
        return open(path, "rb")
    except OSError as exc:
        raise JournalError(path, 0, None, describe(exc, path)) from None


def read_header_line(path: Path, file: IO[bytes]) -> dict[str, Any]:
    """The header of the journal open in `file` at its start, validated; the file is left at line 2."""
    try:
        return decode_header(file.readline())
    except BadHeader as bad:
        raise JournalError(path, 1, None, str(bad)) from None


def _records(file: IO[bytes]) -> Iterator[tuple[int, int, dict[str, Any] | BadRecord]]:
    """(file line, byte offset, record or why it is bad) for each line after the header.

    The consumer decides what a bad record means: that depends on whether another line follows.
    The expected seq advances past a bad line too, so the lines after it are judged on their own.
    """
    offset = file.tell()
    for line_no, raw in enumerate(file, start=2):
        seq = line_no - 1
        try:
            record = decode_record(raw)
        except BadRecord as bad:
            yield line_no, offset, bad
        else:
            if record["seq"] == seq:
                yield line_no, offset, record
            else:
                yield line_no, offset, _SeqGap(f"expected seq {seq}, found seq {record['seq']!r} (a gap)")
        offset += len(raw)


def _bad(path: Path, line_no: int, why: BadRecord, what: str = "record") -> JournalError:
    seq = line_no - 1
    reason = str(why) if isinstance(why, _SeqGap) else f"{what} seq {seq}: {why}"
    return JournalError(path, line_no, seq, reason)


def iter_journal(path: Path) -> Iterator[dict[str, Any]]:
    """Every record of a journal, streamed, validated as `read_journal` does but never recovering.

    The header is checked first (a file that is not a journal fails before any record); the
    header itself is not yielded (`read_header` gives it).  Any bad record, the last one
    included, raises `JournalError`.
    """
    path = Path(path)
    with open_journal_file(path) as file:
        read_header_line(path, file)
        for line_no, _, record in _records(file):
            if isinstance(record, BadRecord):
                raise _bad(path, line_no, record)
            yield record


def read_header(path: Path) -> dict[str, Any]:
    """The header of a journal (line 1), validated."""
    path = Path(path)
    with open_journal_file(path) as file:
        return read_header_line(path, file)


def read_journal(
    path: Path, *, recover: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]], Recovery | None]:
    """The header and every record of a journal.

    A bad record before the last raises `JournalError` naming its line and seq.  A bad last record
    (a torn write) raises too unless `recover`: then the file is copied to `<path>.broken`, cut back
    to the last good record, and the cut is described by the returned `Recovery`.
    """
    path = Path(path)
    records: list[dict[str, Any]] = []
    torn: tuple[int, int, BadRecord] | None = None
    with open_journal_file(path) as file:
        header = read_header_line(path, file)
        for line_no, offset, record in _records(file):
            if torn is not None:  # a bad record with a line after it: damage, not a torn write
                raise _bad(path, torn[0], torn[2])
            if isinstance(record, _SeqGap):
                raise _bad(path, line_no, record)
            if isinstance(record, BadRecord):
                torn = (line_no, offset, record)
            else:
                records.append(record)
    if torn is None:
        return header, records, None
    line_no, offset, why = torn
    if not recover:
        raise _bad(path, line_no, why, "torn or corrupt last record,")
    return header, records, cut_torn_tail(path, offset, len(records), str(why))


def cut_torn_tail(path: Path, keep_bytes: int, kept_records: int, reason: str) -> Recovery:
    """Recover from a torn last record: copy the journal aside, then cut it back to `keep_bytes`.

    The copy (`<path>.broken`, or `.broken.N` beside earlier ones) is the evidence of what the
    crash left; the returned `Recovery` says what was cut, and why (`reason`).
    """
    broken = path.with_name(path.name + ".broken")
    counter = 1
    while broken.exists():  # never overwrite the evidence of an earlier recovery
        broken = path.with_name(f"{path.name}.broken.{counter}")
        counter += 1
    try:
        shutil.copyfile(path, broken)
        with open(broken, "rb") as copy:
            os.fsync(copy.fileno())
    except OSError as exc:  # no room for the copy (a full disk): the journal is left as it is
        broken.unlink(missing_ok=True)
        raise JournalFailure(path, kept_records, exc, f"keep a copy of the torn tail in {broken.name}") from None
    try:
        with open(path, "r+b") as file:
            size = os.fstat(file.fileno()).st_size
            file.truncate(keep_bytes)
            os.fsync(file.fileno())
        _fsync_directory(path.parent)
    except OSError as exc:
        raise JournalFailure(path, kept_records, exc, "cut the torn tail") from None
    return Recovery(path, kept_records, size - keep_bytes, broken, reason)
