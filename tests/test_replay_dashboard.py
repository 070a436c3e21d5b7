"""The replay dashboard over the recorded webrtc sprint: transport keys move through time."""

from __future__ import annotations

from pathlib import Path

from app.replay_dashboard import ReplayApp
from conftest import SAMPLES
from engine.reducer import fold
from engine.replay import ReplayCursor
from widgets.messages import MessagesPane
from widgets.scrubber import Scrubber, bar

RECORDED = SAMPLES / "webrtc" / "recorded.jsonl"
START_AT = 60


def replay_app(tmp_path: Path, at: int = START_AT) -> ReplayApp:
    return ReplayApp(ReplayCursor.open(RECORDED), at=at, config_file=tmp_path / "config.json")


def linear(seq: int) -> str:
    cursor = ReplayCursor.open(RECORDED)
    return fold(cursor.events(1, seq)).model_dump_json() if seq else "{}"


async def test_transport_keys_step_and_jump(tmp_path: Path) -> None:
    app = replay_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        assert app.cursor.position == START_AT
        await pilot.press("right_square_bracket")
        assert app.cursor.position == START_AT + 1
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert app.cursor.position == START_AT - 1
        await pilot.press("right_curly_bracket")
        assert app.cursor.position == START_AT + 99
        assert app.source.state.model_dump_json() == linear(START_AT + 99)
        await pilot.press("end")
        assert app.cursor.position == app.cursor.total
        await pilot.pause(0.1)
        assert "sprint finished" in app.header.render().plain
        await pilot.press("home")
        assert app.cursor.position == 0 and app.source.state.tasks == {}
        await pilot.press("greater_than_sign", "greater_than_sign")
        assert app.scrubber.transport.speed == "×5 real time"
        await pilot.press("colon", *"seek 100", "enter")
        assert app.cursor.position == 100


async def test_play_advances_and_operations_are_refused(tmp_path: Path) -> None:
    app = replay_app(tmp_path, at=10)
    notes: list[str] = []
    notify = app.notify
    app.notify = lambda message, **kw: (notes.append(str(message)), notify(message, **kw))[1]
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("space")
        await pilot.pause(0.5)
        await pilot.press("space")
        position = app.cursor.position
        assert position > 10 and not app.playing
        await pilot.pause(0.2)
        assert app.cursor.position == position  # paused: nothing moves
        await pilot.press("2", "x")
        assert any("operations are disabled" in n for n in notes)


async def test_messages_pane_highlights_the_current_event(tmp_path: Path) -> None:
    app = replay_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        pane = app.query_one(MessagesPane)
        highlighted = app.store.seq(pane.highlighted_index)
        assert highlighted <= START_AT
        later = [app.store.seq(i) for i in range(len(app.store)) if app.store.seq(i) > highlighted]
        assert not later or later[0] > START_AT


async def test_clicking_the_scrubber_seeks(tmp_path: Path) -> None:
    app = replay_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        scrubber = app.query_one(Scrubber)
        await pilot.click(Scrubber, offset=(1 + scrubber.content_region.width // 2, 0))
        assert abs(app.cursor.position - app.cursor.total // 2) <= app.cursor.total // 50 + 2


def test_eighth_block_bar() -> None:
    assert bar(0.0, 4) == "    "
    assert bar(1.0, 4) == "████"
    assert bar(0.5, 4) == "██  "
    assert bar(1 / 32, 4) == "▏   "


def test_replay_paused_at_a_fixed_event(snap_compare, tmp_path) -> None:
    assert snap_compare(replay_app(tmp_path), terminal_size=(120, 40))


def test_replay_after_step_keys(snap_compare, tmp_path) -> None:
    assert snap_compare(replay_app(tmp_path), press=["right_square_bracket", "right_curly_bracket"],
                        terminal_size=(120, 40))


def test_replay_at_the_end(snap_compare, tmp_path) -> None:
    assert snap_compare(replay_app(tmp_path), press=["end"], terminal_size=(80, 24))
