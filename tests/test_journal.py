"""The journal: round trip, checksums, torn tails, seq gaps, group commit — on real files."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from engine import journal_sync
from engine.journal import (
    JournalError,
    JournalFailure,
    JournalWriter,
    encode_record,
    iter_journal,
    read_header,
    read_journal,
)

HEADER = {"sprint": "demo", "planDigest": "sha256:0123abcd"}


def event(seq: int) -> dict[str, Any]:
    return {
        "seq": seq,
        "type": "task_update" if seq % 2 else "lock_granted",
        "data": {"taskId": f"T{seq}", "note": "ünïcode ✓", "n": seq, "ok": True, "x": None},
        "ts": f"2030-01-01T00:00:{seq % 60:02d}.000000Z",
        "mono": 1000.0 + seq / 8,
    }


def write_journal(path: Path, count: int) -> None:
    writer = JournalWriter.create(path, HEADER)
    for seq in range(1, count + 1):
        writer.append(**event(seq))
    writer.close()


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# ---------------------------------------------------------------- round trip and format


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "deep" / "journal.jsonl"  # parent dirs are made
    write_journal(path, 50)
    header, records, recovery = read_journal(path)
    assert recovery is None
    assert [record["seq"] for record in records] == list(range(1, 51))
    for record in records:
        expected = event(record["seq"])
        assert {key: record[key] for key in ("seq", "ts", "mono", "type", "data")} == expected
    assert list(iter_journal(path)) == records
    assert read_header(path) == header


def test_header_fields(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    JournalWriter.create(path, {**HEADER, "workspace": "/tmp/ws"}).close()
    first = json.loads(lines(path)[0])
    assert list(first)[:6] == ["format", "version", "sprint", "planDigest", "startedAt", "epoch"]
    assert first["format"] == "sprintdeck-journal"
    assert first["version"] == 1
    assert first["sprint"] == "demo" and first["planDigest"] == "sha256:0123abcd"
    assert first["startedAt"].endswith("Z") and first["epoch"] == 1
    assert first["workspace"] == "/tmp/ws"


def test_header_always_has_sprint_and_plan_digest(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    JournalWriter.create(path, {"sprint": "demo", "epoch": 3, "format": "forged"}).close()
    header = read_header(path)
    assert header["planDigest"] is None and header["epoch"] == 3
    assert header["format"] == "sprintdeck-journal"


def test_record_line_format_and_crc_definition(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    write_journal(path, 3)
    record = json.loads(lines(path)[2])
    assert list(record) == ["seq", "ts", "mono", "type", "data", "crc"]
    crc = record.pop("crc")
    canonical = json.dumps(record, separators=(",", ":"), sort_keys=False)
    assert crc == f"{zlib.crc32(canonical.encode()):08x}"
    assert lines(path)[2] == (canonical[:-1] + f',"crc":"{crc}"}}\n').encode()


def test_record_bytes_are_json_dumps_bytes_for_every_kind_of_value() -> None:
    data = {
        "message": {"from": "agent-ü", "payload": {"progress": 0.1, "n": 2**70, "ok": True, "none": None}},
        "floats": [0.0, -1.5, 1e16, 1e-05, 123456789.123456789],
        "text": 'quote " backslash \\ tab \t newline \n bell \x07 emoji \U0001f600',
        "nested": [[], {}, [{"a": [1, {"b": "c"}]}]],
    }
    line = encode_record(7, "message", data, "2030-01-01T00:00:00Z", 4321.125)
    canonical = json.dumps(
        {"seq": 7, "ts": "2030-01-01T00:00:00Z", "mono": 4321.125, "type": "message", "data": data},
        separators=(",", ":"),
        allow_nan=False,
    )
    assert line == (canonical[:-1] + f',"crc":"{zlib.crc32(canonical.encode()):08x}"}}\n').encode()
    assert json.loads(line)["data"] == data


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    write_journal(path, 2)
    before = path.read_bytes()
    with pytest.raises(JournalError, match="refusing to overwrite"):
        JournalWriter.create(path, HEADER)
    assert path.read_bytes() == before
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    JournalWriter.create(empty, HEADER).close()  # an empty file holds nothing to lose
    assert read_journal(empty)[1] == []


def test_append_refuses_a_seq_out_of_order(tmp_path: Path) -> None:
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    writer.append(**event(1))
    with pytest.raises(JournalError) as caught:
        writer.append(**event(3))
    assert caught.value.seq == 3 and "does not follow 1" in str(caught.value)
    with pytest.raises(JournalError):
        writer.append(**event(1))
    writer.append(**event(2))
    assert writer.last_seq == 2
    writer.close()


def test_append_refuses_data_that_is_not_json(tmp_path: Path) -> None:
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    with pytest.raises(JournalError, match="not JSON"):
        writer.append(1, "bad", {"x": float("nan")}, "2030-01-01T00:00:00Z", 1.0)
    with pytest.raises(JournalError, match="not JSON"):
        writer.append(1, "bad", {"x": object()}, "2030-01-01T00:00:00Z", 1.0)
    writer.append(**event(1))  # the refused records did not take seq 1
    writer.close()
    assert len(read_journal(writer.path)[1]) == 1


def test_closed_writer_refuses_appends(tmp_path: Path) -> None:
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    writer.close()
    with pytest.raises(JournalError, match="closed"):
        writer.append(**event(1))


# ---------------------------------------------------------------- retract


def test_retract_takes_back_a_buffered_record_and_its_seq_is_appended_again(tmp_path: Path) -> None:
    """An event the state refused is taken back; the next event gets its seq, with no gap."""
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    for seq in (1, 2, 3):
        writer.append(**event(seq))
    writer.retract(3)
    assert writer.last_seq == 2
    with pytest.raises(JournalError, match="does not follow 2"):
        writer.append(**event(4))
    writer.append(3, "replacement", {"n": 3}, "2030-01-01T00:00:03.000000Z", 1003.0)
    writer.close()
    _, records, recovery = read_journal(writer.path)
    assert recovery is None and [r["seq"] for r in records] == [1, 2, 3]
    assert (records[2]["type"], records[2]["data"]) == ("replacement", {"n": 3})


def test_retract_refuses_anything_but_the_last_buffered_record(tmp_path: Path) -> None:
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    writer.append(**event(1))
    writer.append(**event(2))
    with pytest.raises(JournalError, match="the last appended is 2"):
        writer.retract(1)
    with pytest.raises(JournalError, match="the last appended is 2"):
        writer.retract(3)
    assert writer.flush_sync() == 2
    with pytest.raises(JournalError, match="already written") as caught:
        writer.retract(2)  # on disk: a reader may have seen it
    assert caught.value.seq == 2
    writer.close()
    assert [r["seq"] for r in read_journal(writer.path)[1]] == [1, 2]


async def test_retract_is_refused_once_a_flush_wrote_the_record(tmp_path: Path) -> None:
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    writer.append(**event(1))
    assert await writer.flush() == 1
    with pytest.raises(JournalError, match="already written"):
        writer.retract(1)
    writer.append(**event(2))
    writer.retract(2)
    assert await writer.flush() == 1  # nothing left to wait for: the flush does not hang on seq 2
    assert writer.fsync_count == 1
    writer.close()
    assert [r["seq"] for r in read_journal(writer.path)[1]] == [1]


async def test_a_flush_waiting_for_a_retracted_record_returns(tmp_path: Path) -> None:
    """A flush that began before the retract only waits for what is still appended."""
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    writer.append(**event(1))
    syncing = asyncio.create_task(writer.flush())
    await asyncio.sleep(0)  # seq 1 is written and its sync is with the sync thread
    writer.append(**event(2))
    flushing = asyncio.create_task(writer.flush())
    await asyncio.sleep(0)  # this flush waits for seq 2, still in the buffer behind the running sync
    writer.retract(2)
    assert await asyncio.wait_for(flushing, 5) == 1
    assert await syncing == 1
    writer.close()
    assert [r["seq"] for r in read_journal(writer.path)[1]] == [1]


# ---------------------------------------------------------------- corruption


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["seq", "type", "data", "crc"])
def test_flipped_byte_in_the_middle_is_an_error(tmp_path: Path, where: str) -> None:
    path = tmp_path / "j.jsonl"
    write_journal(path, 20)
    line_offsets = [0]
    for raw in lines(path):
        line_offsets.append(line_offsets[-1] + len(raw))
    target_line = 11  # file line 11 holds seq 10
    raw = lines(path)[target_line - 1]
    flip_byte(path, line_offsets[target_line - 1] + raw.index(f'"{where}"'.encode()) + len(where) + 4)
    before = path.read_bytes()
    for recover in (False, True):
        with pytest.raises(JournalError) as caught:
            read_journal(path, recover=recover)
        assert caught.value.line == 11 and caught.value.seq == 10
        assert str(caught.value).startswith(f"{path}:11: record seq 10:")
    with pytest.raises(JournalError):
        list(iter_journal(path))
    assert path.read_bytes() == before  # never cut in the middle
    assert not (tmp_path / "j.jsonl.broken").exists()


def test_seq_gap_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    write_journal(path, 10)
    kept = lines(path)
    path.write_bytes(b"".join(kept[:5] + kept[6:]))  # drop seq 5 (file line 6)
    with pytest.raises(JournalError, match="expected seq 5, found seq 6") as caught:
        read_journal(path, recover=True)
    assert caught.value.line == 6 and caught.value.seq == 5
    with pytest.raises(JournalError, match="a gap"):
        list(iter_journal(path))


def test_seq_gap_on_the_last_line_is_not_recovered(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    write_journal(path, 10)
    kept = lines(path)
    path.write_bytes(b"".join(kept[:9] + kept[10:]))  # drop seq 9: seq 10 follows seq 8
    with pytest.raises(JournalError, match="expected seq 9"):
        read_journal(path, recover=True)


@pytest.mark.parametrize(
    "header", [b"", b'{"format":"sprintdeck-journal"', b'{"format":"other","version":1}\n', b"[]\n"]
)
def test_bad_header_is_an_error(tmp_path: Path, header: bytes) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(header)
    with pytest.raises(JournalError) as caught:
        read_journal(path, recover=True)
    assert caught.value.line == 1


def test_wrong_version_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    write_journal(path, 1)
    text = path.read_text().replace('"version":1', '"version":2', 1)
    path.write_text(text)
    with pytest.raises(JournalError, match="version 2"):
        read_journal(path)


# ---------------------------------------------------------------- torn tail


def torn_offsets(path: Path) -> list[int]:
    """Cut points inside the last record: after 1 byte, in the middle, before the crc, before \\n."""
    last = lines(path)[-1]
    start = path.stat().st_size - len(last)
    return [start + 1, start + len(last) // 2, start + last.index(b'"crc"'), start + len(last) - 1]


@pytest.mark.parametrize("cut", range(4))
def test_torn_last_record_is_recovered(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "j.jsonl"
    write_journal(path, 30)
    whole = path.read_bytes()
    last_start = len(whole) - len(lines(path)[-1])
    offset = torn_offsets(path)[cut]
    path.write_bytes(whole[:offset])

    with pytest.raises(JournalError) as caught:
        read_journal(path)
    assert caught.value.line == 31 and caught.value.seq == 30
    assert "torn or corrupt last record" in str(caught.value)
    with pytest.raises(JournalError):
        list(iter_journal(path))
    assert path.read_bytes() == whole[:offset]  # recover=False changes nothing

    header, records, recovery = read_journal(path, recover=True)
    assert [record["seq"] for record in records] == list(range(1, 30))
    assert recovery is not None
    assert recovery.kept_records == 29
    assert recovery.cut_bytes == offset - last_start
    assert recovery.broken_copy == tmp_path / "j.jsonl.broken"
    assert recovery.broken_copy.read_bytes() == whole[:offset]
    assert path.read_bytes() == whole[:last_start]
    report = str(recovery)
    assert "\n" not in report and "kept 29 records" in report and str(recovery.broken_copy) in report
    # The recovered file is a clean journal again.
    assert read_journal(path) == (header, records, None)


def test_corrupt_complete_last_record_is_recovered(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    write_journal(path, 5)
    flip_byte(path, path.stat().st_size - 30)
    _, records, recovery = read_journal(path, recover=True)
    assert len(records) == 4 and recovery is not None and "crc mismatch" in recovery.reason


def test_second_recovery_keeps_the_first_copy(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    write_journal(path, 5)
    path.write_bytes(path.read_bytes()[:-5])
    first = read_journal(path, recover=True)[2]
    with open(path, "ab") as file:
        file.write(b'{"seq":5,"ts"')
    second = read_journal(path, recover=True)[2]
    assert first is not None and second is not None
    assert first.broken_copy != second.broken_copy
    assert first.broken_copy.exists() and second.broken_copy.exists()


def test_resume_continues_after_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    write_journal(path, 10)
    path.write_bytes(path.read_bytes()[:-7])
    writer, header, records, recovery = JournalWriter.resume(path)
    assert header["sprint"] == "demo" and len(records) == 9 and recovery is not None
    assert writer.last_seq == writer.durable_seq == 9
    writer.append(**event(10))
    writer.append(**event(11))
    writer.close()
    assert [record["seq"] for record in read_journal(path)[1]] == list(range(1, 12))


# ---------------------------------------------------------------- durability and group commit


async def test_group_commit_shares_fsyncs(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    writer = JournalWriter.create(path, HEADER)
    acknowledged: list[tuple[int, int]] = []

    async def append_and_wait(n: int) -> None:
        # Each caller yields a few times first, so the appends interleave with running fsyncs.
        for _ in range(n % 5):
            await asyncio.sleep(0)
        seq = writer.last_seq + 1
        writer.append(seq, "event", {"caller": n}, "2030-01-01T00:00:00Z", float(n))
        durable = await writer.flush()
        acknowledged.append((seq, durable))

    await asyncio.gather(*(append_and_wait(n) for n in range(1000)))
    assert len(acknowledged) == 1000
    assert all(durable >= seq for seq, durable in acknowledged)  # acknowledged only once durable
    assert writer.durable_seq == writer.last_seq == 1000
    assert 1 <= writer.fsync_count <= 50  # far fewer fsyncs than callers
    # Durable means on disk now, before close: read the file as another process would.
    assert len(read_journal(path)[1]) == 1000
    writer.close()


async def test_caller_arriving_during_an_fsync_waits_for_the_next(tmp_path: Path, monkeypatch: Any) -> None:
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    release = threading.Event()
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        release.wait(10)  # hold the sync "in flight" in the sync thread until the test says so
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    writer.append(**event(1))
    first = asyncio.create_task(writer.flush())
    await asyncio.sleep(0.01)
    writer.append(**event(2))
    second = asyncio.create_task(writer.flush())
    third = asyncio.create_task(writer.flush())
    await asyncio.sleep(0.01)
    assert writer.durable_seq == 0 and not first.done()
    release.set()
    assert await first >= 1
    assert await second == await third == 2
    assert writer.fsync_count == 2  # seq 1 alone, then seq 2 for both late callers
    writer.close()


async def test_flush_with_nothing_pending_does_not_fsync(tmp_path: Path) -> None:
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    assert await writer.flush() == 0
    assert writer.fsync_count == 0
    writer.append(**event(1))
    assert writer.durable_seq == 0  # buffered, not yet durable
    assert writer.flush_sync() == 1
    assert writer.flush_sync() == 1 and writer.fsync_count == 1
    writer.close()


async def test_failed_fsync_is_reported_and_sticks(tmp_path: Path, monkeypatch: Any) -> None:
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)

    def broken_fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken_fdatasync)
    writer.append(**event(1))
    with pytest.raises(JournalFailure, match="cannot sync the journal: input/output error") as failed:
        await writer.flush()
    assert failed.value.durable_seq == 0 and writer.durable_seq == 0
    monkeypatch.undo()
    writer.append(**event(2))
    with pytest.raises(JournalFailure, match="valid up to seq 0"):
        await writer.flush()  # the file's state is unknown: nothing more is acknowledged
    writer.close()
    assert read_journal(writer.path)[1] == []  # cut back to the last durable record: the header


async def test_syncs_run_on_the_loop_only_while_the_disk_is_fast(tmp_path: Path, monkeypatch: Any) -> None:
    """A fast sync saves the thread hand-offs; after a slow one the next goes to the sync thread
    again, so the loop (a dashboard, the other agents' requests) goes on while the disk works."""
    monkeypatch.setattr(journal_sync, "INLINE_BELOW", 0.02)
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    on_loop: list[bool] = []
    slow = [0.0]
    real_fdatasync = os.fdatasync

    def watched_fdatasync(fd: int) -> None:
        on_loop.append(threading.current_thread() is threading.main_thread())
        time.sleep(slow[0])
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", watched_fdatasync)
    for seq in (1, 2, 3):
        writer.append(**event(seq))
        assert await writer.flush() == seq
    assert on_loop == [False, True, True]  # the first goes to the thread; then the disk was fast
    slow[0] = 0.1
    writer.append(**event(4))
    assert await writer.flush() == 4  # on the loop (the last was fast), and slow
    writer.append(**event(5))
    flush = asyncio.create_task(writer.flush())
    turns = 0
    while not flush.done():
        await asyncio.sleep(0.005)
        turns += 1
    assert await flush == 5 and on_loop[3:] == [True, False]
    assert turns >= 5  # the loop went on during the slow sync in the thread
    writer.close()
    assert [record["seq"] for record in read_journal(writer.path)[1]] == [1, 2, 3, 4, 5]


async def test_a_sync_failing_on_the_loop_fails_the_flush_as_on_the_thread(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(journal_sync, "INLINE_BELOW", 0.02)
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    writer.append(**event(1))
    assert await writer.flush() == 1  # on the thread (the first); fast, so the next runs on the loop

    on_loop: list[bool] = []

    def broken_fdatasync(fd: int) -> None:
        on_loop.append(threading.current_thread() is threading.main_thread())
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken_fdatasync)
    writer.append(**event(2))
    with pytest.raises(JournalFailure, match="cannot sync the journal: input/output error") as failed:
        await writer.flush()
    assert on_loop == [True] and failed.value.durable_seq == 1 and writer.durable_seq == 1
    writer.close()
    assert [record["seq"] for record in read_journal(writer.path)[1]] == [1]  # cut back to the durable record


async def test_flush_now_makes_records_durable_in_the_callers_turn_while_the_disk_is_fast(
        tmp_path: Path, monkeypatch: Any) -> None:
    """What lets the manager answer a lock in the turn it decided it (engine/mail.py)."""
    monkeypatch.setattr(journal_sync, "INLINE_BELOW", 0.02)
    writer = JournalWriter.create(tmp_path / "j.jsonl", HEADER)
    writer.append(**event(1))
    assert writer.flush_now() is False and writer.durable_seq == 0  # no sync timed yet: as if slow
    assert await writer.flush() == 1  # the first goes to the thread, and is fast
    writer.append(**event(2))
    assert writer.flush_now() is True and writer.durable_seq == 2  # no await: this turn
    slow = asyncio.create_task(_slow_flush(writer, monkeypatch, event(3)))
    await asyncio.sleep(0)
    writer.append(**event(4))
    assert writer.flush_now() is False and writer.durable_seq == 2  # a sync is running: wait for it
    await slow
    assert await writer.flush() == 4
    writer.close()
    assert [record["seq"] for record in read_journal(writer.path)[1]] == [1, 2, 3, 4]


async def _slow_flush(writer: JournalWriter, monkeypatch: Any, record: dict[str, Any]) -> None:
    """A flush whose sync takes 0.1 s (on the thread: the loop goes on meanwhile)."""
    real_fdatasync = os.fdatasync

    def slow_fdatasync(fd: int) -> None:
        time.sleep(0.1)
        real_fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", slow_fdatasync)
    monkeypatch.setattr(journal_sync, "INLINE_BELOW", 0.0)  # to the thread
    writer.append(**record)
    await writer.flush()
    monkeypatch.setattr(os, "fdatasync", real_fdatasync)
    monkeypatch.setattr(journal_sync, "INLINE_BELOW", 0.02)
