"""`:seek` reads elapsed time as the scrubber shows it, and replay plays at the recorded pace.

The sample recording lasts under five seconds, so these tests replay a copy stretched sixty-fold
(every timestamp, with the state digests recomputed): a real journal of about four and a half
minutes, where `2:30` is in the middle and `1:02:30` is past the end.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import SAMPLES
from textual.widgets._toast import Toast

from app.replay_dashboard import ReplayApp
from engine.events import Event, EventType
from engine.journal import JournalWriter, read_journal
from engine.models import ProjectState
from engine.reducer import apply, state_digest
from engine.replay import ReplayCursor
from engine.replay_seek import ACCEPTED, SeekSyntaxError, format_elapsed, parse_seek

RECORDED = SAMPLES / "webrtc" / "recorded.jsonl"
STRETCH = 60


def _stretched_ts(ts: str, start: datetime) -> str:
    moment = datetime.fromisoformat(ts)
    return (start + (moment - start) * STRETCH).isoformat().replace("+00:00", "Z")


@pytest.fixture
def slow_journal(tmp_path: Path) -> Path:
    """The sample recording with every gap between events sixty times longer."""
    header, records = read_journal(RECORDED)[:2]
    start = datetime.fromisoformat(records[0]["ts"])
    path = tmp_path / "slow.jsonl"
    writer = JournalWriter.create(path, header)
    state = ProjectState()
    for record in records:
        record = dict(record, ts=_stretched_ts(record["ts"], start))
        if record["type"] == EventType.STATE_DIGEST:
            record["data"] = dict(record["data"], digest=state_digest(state))
        writer.append(record["seq"], record["type"], record["data"], record["ts"], record["mono"])
        apply(state, Event.from_record(record))
    writer.flush_sync()
    writer.close()
    return path


def toasts(app: ReplayApp) -> list[str]:
    """The notifications on screen, as the user reads them."""
    return [str(toast.render()) for toast in app.screen.query(Toast)]


def scrubber_line(app: ReplayApp) -> str:
    return app.scrubber.render().plain.splitlines()[1]


async def seek(pilot, text: str) -> None:
    await pilot.press("colon", *f"seek {text}", "enter")
    await pilot.pause(0.05)


def seq_at_elapsed(cursor: ReplayCursor, seconds: float) -> int:
    return cursor.seq_at_time(cursor.start_time + timedelta(seconds=seconds))


# ---------------------------------------------------------------- reading what was typed


@pytest.mark.parametrize(("typed", "kind", "value"), [
    ("2:30", "elapsed", 150), ("02:30", "elapsed", 150), ("1:02:30", "elapsed", 3750),
    ("90s", "elapsed", 90), ("2m30s", "elapsed", 150), ("1h", "elapsed", 3600), ("2:30.5", "elapsed", 150.5),
    ("+30s", "relative", 30), ("-10s", "relative", -10), ("-1:00", "relative", -60),
    ("120", "event", 120),
])
def test_seek_values_that_are_read(typed: str, kind: str, value: float) -> None:
    request = parse_seek(typed)
    assert (request.kind, request.value) == (kind, value)


@pytest.mark.parametrize("typed", ["banana", "12:30pm", "2:75", "1:60:00", "+30", "", "3x"])
def test_unreadable_seek_values_name_what_was_typed_and_what_is_accepted(typed: str) -> None:
    with pytest.raises(SeekSyntaxError) as caught:
        parse_seek(typed)
    assert repr(typed) in str(caught.value) and ACCEPTED in str(caught.value)


def test_elapsed_time_is_shown_as_seek_reads_it() -> None:
    assert format_elapsed(150) == "02:30.0"
    assert format_elapsed(3750) == "1:02:30"
    assert parse_seek("1:02:30").value == 3750


# ---------------------------------------------------------------- the dashboard


async def test_seek_by_elapsed_time_lands_where_the_scrubber_says(slow_journal: Path, tmp_path: Path) -> None:
    cursor = ReplayCursor.open(slow_journal)
    expected = seq_at_elapsed(cursor, 150)
    assert 0 < expected < cursor.total  # 2:30 is inside the stretched recording
    app = ReplayApp(cursor, config_file=tmp_path / "config.json")
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.pause(0.1)
        for typed in ("2:30", "02:30", "150s", "2m30s"):
            await seek(pilot, "0")
            await seek(pilot, typed)
            assert app.cursor.position == expected, typed
            line = scrubber_line(app)
            assert line.startswith(f"{expected}/{cursor.total} events · 02:") and toasts(app) == []
        here = (cursor.time_of(expected) - cursor.start_time).total_seconds()
        await seek(pilot, "+30s")
        assert app.cursor.position == seq_at_elapsed(cursor, here + 30) > expected
        after = (cursor.time_of(app.cursor.position) - cursor.start_time).total_seconds()
        await seek(pilot, "-10s")
        assert app.cursor.position == seq_at_elapsed(cursor, after - 10)
        await seek(pilot, "42")
        assert app.cursor.position == 42  # a bare number is still an event
    cursor.close()


async def test_seeks_outside_the_recording_say_where_they_went(slow_journal: Path, tmp_path: Path) -> None:
    cursor = ReplayCursor.open(slow_journal)
    total = cursor.total
    app = ReplayApp(cursor, at=10, config_file=tmp_path / "config.json")
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.pause(0.1)
        await seek(pilot, "99999")
        assert app.cursor.position == total
        assert any(f"#99999 is past the end: went to the last event #{total}" in t for t in toasts(app))
        app.clear_notifications()
        await seek(pilot, "1:02:30")
        assert app.cursor.position == total
        assert any("1:02:30 is past the end of the recording (04:" in t and f"last event #{total}" in t
                   for t in toasts(app))
        app.clear_notifications()
        await seek(pilot, "10")
        await seek(pilot, "-10m")
        assert app.cursor.position == 0
        assert any("-10m from 00:" in t and "is before the start: went to the start" in t for t in toasts(app))
        app.clear_notifications()
        await seek(pilot, "30")
        await seek(pilot, "banana")
        assert app.cursor.position == 30  # nothing moved
        assert any("cannot read 'banana'" in t and "2:30" in t and "+30s" in t for t in toasts(app))
    cursor.close()


async def test_play_follows_the_recorded_pace(slow_journal: Path, tmp_path: Path) -> None:
    cursor = ReplayCursor.open(slow_journal)
    app = ReplayApp(cursor, config_file=tmp_path / "config.json")
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await pilot.pause(0.1)
        assert "×1 real time" in scrubber_line(app)  # the default: the recorded pace
        await pilot.press("greater_than_sign", "greater_than_sign", "greater_than_sign")
        assert "×10 real time" in scrubber_line(app)
        await pilot.press("space")
        await pilot.pause(0.8)
        await pilot.press("space")
        clock = app._play_clock
        assert clock is not None and 0 < clock
        # The cursor is at the last event recorded at or before the replay clock, which the
        # scrubber shows running between events: time in the recording, not a count of events.
        assert app.cursor.position == seq_at_elapsed(cursor, clock)
        assert f" · {format_elapsed(clock)} · ×10 real time · ‖ paused" in scrubber_line(app)
        recorded_per_event = (cursor.end_time - cursor.start_time).total_seconds() / cursor.total
        assert clock > 2 * recorded_per_event  # ten recorded seconds a second, not ten events
        await pilot.press("t")
        assert "10 ev/s" in scrubber_line(app)
        await pilot.press("greater_than_sign")
        assert "20 ev/s" in scrubber_line(app)
        await pilot.press("t")
        assert "×10 real time" in scrubber_line(app)  # each mode keeps its own setting
    cursor.close()
