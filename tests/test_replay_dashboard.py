"""The replay dashboard over the recorded webrtc sprint: transport keys move through time."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from app.replay_dashboard import ReplayApp
from conftest import SAMPLES
from test_dashboard import help_text, palette_titles
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
        await pilot.press("1", "x")
        assert any("operations are disabled" in n for n in notes)


async def test_help_and_footer_list_the_replay_keys_not_the_operator_keys(tmp_path: Path) -> None:
    app = replay_app(tmp_path)
    notes: list[str] = []
    notify = app.notify
    app.notify = lambda message, **kw: (notes.append(str(message)), notify(message, **kw))[1]
    async with app.run_test(size=(160, 40)) as pilot:
        for key, pane in zip("123456", ["tasks", "agents", "messages", "locks", "files", "metrics"]):
            await pilot.press(key)
            assert app.focused.id == pane
            await pilot.pause(0.05)
            footer = footer_text(app)
            assert "space Play" in footer and "n N Mark" in footer and "[ ] Step" in footer and "< > Speed" in footer, footer
            for operation in ("Reassign", "Retry", "Cancel", "Priority", "Pause", "Force-release", "Accept",
                              "Revert", "Merge", "Escalate"):
                assert operation not in footer, f"{operation} in the {pane} footer: {footer}"
        await pilot.press("4", "u", "1", "R", "p")  # an operator key still says why nothing happens
        assert sum("operations are disabled" in n for n in notes) == 3
        await pilot.press("question_mark")
        text = help_text(app)
        for line in ("space play / pause the recording", "[ one event back", "} 100 events forward",
                     "end the end: the final state", "> play faster", ":seek N go to event N"):
            assert line in text, line
        for live in ("reassign", "retry", "force-release", "pause / resume", "three-way merge", ":cancel"):
            assert live not in text, live
        await pilot.press("G")
        assert app.screen.query_one("#help-dialog").scroll_offset.y == app.screen.query_one("#help-dialog").max_scroll_y


def footer_text(app: ReplayApp) -> str:
    """What the footer says: each key with its description, and each group's label."""
    parts = app.screen.query_one(Footer).query("FooterKey, FooterLabel")
    return " ".join(p.render().plain if isinstance(p, FooterKey) else str(p.content) for p in parts)


async def test_palette_offers_the_replay_commands_not_the_operations(tmp_path: Path) -> None:
    app = replay_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        titles = await palette_titles(pilot, app)
        assert len(titles) == len(set(titles)), titles
        assert {"Play / pause replay", "Step forward", "Step back", "Seek…", "Play faster", "Go to the end"} <= set(titles)
        assert not {"Reassign task", "Retry task", "Force-release lock", "Maximize"} & set(titles)
        await pilot.press(*"step forward 100", "enter")
        await pilot.pause(0.1)
        assert app.cursor.position == START_AT + 100
        await pilot.press("ctrl+p", *"seek", "enter")
        await pilot.pause(0.3)
        assert app.command_line.display and app.command_line.value == "seek "
        await pilot.press(*"42")
        assert app.command_line.value == "seek 42"
        await pilot.press("enter")
        assert app.cursor.position == 42


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


def test_replay_task_graph(snap_compare, tmp_path) -> None:
    """The graph view in the replay dashboard, at the same paused event as the table snapshot."""
    assert snap_compare(replay_app(tmp_path), press=["v", "z"], terminal_size=(120, 40))
