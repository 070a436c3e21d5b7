"""Opening a journal: the block-wise scan gives the same index, count and verdicts as a per-line check.

`ReplayCursor.open` checks lines in bulk, a block of `block_bytes` bytes at a time, and
carries a partial line from one block into the next.  Small block sizes put block edges everywhere
(inside a record, right after a newline, inside the crc), so each case runs with several.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from conftest import SAMPLES
from engine.journal import JournalError, JournalWriter, encode_record, read_journal
from engine.replay import BLOCK_BYTES, INDEX_STRIDE, ReplayCursor

SAMPLE_JOURNAL = SAMPLES / "webrtc/recorded.jsonl"
CHUNKS = [1, 37, 300, 4096, 1 << 18]
LARGER_CHUNKS = CHUNKS[1:]  # a byte per read is slow on big or many files; 37 has the same edges


@pytest.fixture(params=CHUNKS, ids=lambda size: f"chunk{size}")
def chunk(request) -> int:
    return request.param


def reference_index(journal: Path) -> tuple[list[int], int]:
    """Offsets of records 1, 1 + INDEX_STRIDE, ... and the record count, found one line at a time."""
    offsets, total = [], 0
    with open(journal, "rb") as file:
        offset = len(file.readline())
        for raw in file:
            total += 1
            if (total - 1) % INDEX_STRIDE == 0:
                offsets.append(offset)
            offset += len(raw)
    return offsets, total


def synthetic_journal(path: Path, count: int) -> Path:
    """`count` small records (enough to cross 999 -> 1000 and 9999 -> 10000), written by the writer."""
    writer = JournalWriter.create(path, {"sprint": "s", "planDigest": "d", "startedAt": "2026-01-01T00:00:00Z"})
    for seq in range(1, count + 1):
        writer.append(seq, "sprint_paused", {"n": "x" * (seq % 7)}, f"2026-01-01T00:00:{seq % 60:02d}.000000Z", seq)
    writer.close()
    return path


def _every_event_found(cursor: ReplayCursor, total: int) -> bool:
    """Every record is found through the index, each at its own seq (a wrong index offset reads another)."""
    return all(cursor.event(seq).seq == seq for seq in range(1, total + 1))


def open_error_line(journal: Path, chunk: int) -> int | None:
    """The line `ReplayCursor.open` names in its error, None when it opens."""
    try:
        ReplayCursor.open(journal, block_bytes=chunk).close()
    except JournalError as error:
        return error.line
    return None


@pytest.mark.parametrize("count", [1, 63, 64, 65, 1_100])
def test_index_and_count_match_a_line_by_line_scan(count: int, chunk: int, tmp_path: Path) -> None:
    journal = synthetic_journal(tmp_path / "j.jsonl", count)
    offsets, total = reference_index(journal)
    with ReplayCursor.open(journal, block_bytes=chunk) as cursor:
        assert cursor.total == total == count
        assert _every_event_found(cursor, total)
        assert cursor.torn is None
        for seq in {1, count // 2 + 1, count}:
            assert cursor.event(seq).seq == seq


@pytest.mark.parametrize("chunk", LARGER_CHUNKS, indirect=True, ids=lambda size: f"chunk{size}")
def test_seqs_across_9999_to_10000_index_the_same(chunk: int, tmp_path: Path) -> None:
    journal = synthetic_journal(tmp_path / "j.jsonl", 10_050)
    offsets, total = reference_index(journal)
    with ReplayCursor.open(journal, block_bytes=chunk) as cursor:
        assert cursor.total == total and _every_event_found(cursor, total)
        assert cursor.event(10_000).seq == 10_000


def test_the_sample_indexes_the_same_with_any_block_size(chunk: int) -> None:
    offsets, total = reference_index(SAMPLE_JOURNAL)
    with ReplayCursor.open(SAMPLE_JOURNAL, block_bytes=chunk) as cursor:  # nothing to cut: opening does not write
        assert cursor.total == total and _every_event_found(cursor, total)


@pytest.mark.parametrize("chunk", LARGER_CHUNKS, indirect=True, ids=lambda size: f"chunk{size}")
def test_a_flipped_byte_on_any_line_is_named_like_read_journal_names_it(chunk: int, tmp_path: Path) -> None:
    lines = SAMPLE_JOURNAL.read_bytes().splitlines(keepends=True)
    for line_no in range(2, len(lines)):  # every record but the last (a bad last one is a torn tail)
        damaged = bytearray(lines[line_no - 1])
        damaged[(line_no * 7) % (len(damaged) - 1)] ^= 0x01  # somewhere different on every line
        journal = tmp_path / f"j{line_no}.jsonl"
        journal.write_bytes(b"".join(lines[: line_no - 1]) + bytes(damaged) + b"".join(lines[line_no:]))
        with pytest.raises(JournalError) as expected:
            read_journal(journal)
        assert open_error_line(journal, chunk) == expected.value.line == line_no, line_no
        assert not journal.with_name(journal.name + ".broken").exists()


def test_a_torn_tail_at_every_byte_is_left_out_with_any_block_size(chunk: int, tmp_path: Path) -> None:
    whole = SAMPLE_JOURNAL.read_bytes()
    last_start = whole.rindex(b"\n", 0, len(whole) - 1) + 1
    offsets, total = reference_index(SAMPLE_JOURNAL)
    for cut in range(last_start + 1, len(whole), 1 if chunk != 1 else 29):
        journal = tmp_path / f"cut{cut}.jsonl"
        journal.write_bytes(whole[:cut])
        with ReplayCursor.open(journal, block_bytes=chunk) as cursor:
            assert cursor.torn is not None and cursor.torn.torn_bytes == cut - last_start
            assert cursor.total == total - 1
            assert _every_event_found(cursor, total - 1)
        assert journal.read_bytes() == whole[:cut]  # read-only


def test_a_bad_line_followed_by_a_partial_one_is_damage_not_a_torn_tail(chunk: int, tmp_path: Path) -> None:
    lines = SAMPLE_JOURNAL.read_bytes().splitlines(keepends=True)
    damaged = bytearray(lines[-2])
    damaged[10] ^= 0x01
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b"".join(lines[:-2]) + bytes(damaged) + lines[-1][:20])
    assert open_error_line(journal, chunk) == len(lines) - 1
    assert not journal.with_name("j.jsonl.broken").exists()


@pytest.mark.parametrize("where", ["middle", "last"])
def test_an_intact_record_with_the_wrong_seq_is_a_gap_even_at_the_end(where: str, chunk: int,
                                                                       tmp_path: Path) -> None:
    lines = SAMPLE_JOURNAL.read_bytes().splitlines(keepends=True)
    drop = 100 if where == "middle" else len(lines) - 2  # the record whose line goes missing
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b"".join(lines[:drop] + lines[drop + 1 :]))
    with pytest.raises(JournalError, match="a gap") as caught:
        ReplayCursor.open(journal, block_bytes=chunk)
    assert caught.value.line == drop + 1


def test_an_upper_case_crc_is_not_the_writers_and_is_refused(tmp_path: Path) -> None:
    """The writer writes lower-case hex; the bulk check must be exactly as strict as the per-line one."""
    lines = [encode_record(seq, "sprint_paused", {}, "2026-01-01T00:00:00.000000Z", 0.0) for seq in (1, 2, 3)]
    body = lines[1][: -len(b',"crc":"00000000"}\n')] + b"}"
    crc = b"%08X" % zlib.crc32(body)
    assert crc != crc.lower(), "pick records whose crc has a letter in it"
    lines[1] = lines[1][:-11] + crc + b'"}\n'
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b'{"format":"sprintdeck-journal","version":1,"sprint":"s","planDigest":"d",'
                        b'"startedAt":"2026-01-01T00:00:00Z","epoch":1}\n' + b"".join(lines))
    assert open_error_line(journal, BLOCK_BYTES) == 3
