"""Replay shows one moment: every pane is the state at the cursor, Messages and Metrics included.

The replay keeps the whole recording's messages in the store (filled after first paint), so the
Messages pane showed every message of the sprint while the other panes showed event 0; Metrics drew
full bars for an empty state, and Agents kept rows from later in the sprint after going back.
"""

from __future__ import annotations

from pathlib import Path

from conftest import SAMPLES
from textual.geometry import Region
from textual.widget import Widget

from app.replay_dashboard import ReplayApp
from engine.events import EventType
from engine.journal import read_journal
from engine.replay import ReplayCursor
from widgets.messages import CURSOR_MARK, _clock

RECORDED = SAMPLES / "webrtc" / "recorded.jsonl"


def message_seqs_until(seq: int, *, heartbeats: bool = False) -> list[int]:
    """The seqs of the recording's messages journaled at or before `seq`, read from the file;
    heartbeats left out unless asked for (the Messages pane hides them until a filter shows them)."""
    return [r["seq"] for r in read_journal(RECORDED)[1] if r["type"] == EventType.MESSAGE and r["seq"] <= seq
            and (heartbeats or r["data"]["message"]["type"] != "heartbeat")]


def screen_text(widget: Widget) -> str:
    """What `widget` draws, line by line (a container: what its children draw)."""
    if widget.children:
        return "\n".join(screen_text(child) for child in widget.children)
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, *widget.region.size)))


async def settle_messages(pilot, app: ReplayApp) -> None:
    for _ in range(100):  # the store is filled a chunk per tick after first paint
        if app._filled >= app.cursor.total:
            break
        await pilot.pause(0.02)
    await pilot.pause(0.1)


async def test_every_pane_is_empty_before_the_first_event(tmp_path: Path) -> None:
    app = ReplayApp(ReplayCursor.open(RECORDED), at=200, config_file=tmp_path / "config.json")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle_messages(pilot, app)
        assert app.agents.row_count > 0 and app.messages.row_count == len(message_seqs_until(200))
        await pilot.press("home")
        await pilot.pause(0.1)
        assert app.cursor.position == 0
        assert app.messages.row_count == 0 and app.messages.border_subtitle.startswith("0 of 0 ·")
        # no message time on screen (inside the border: the title says how to show heartbeats)
        assert ":" not in "\n".join(screen_text(app.messages).splitlines()[1:-1])
        assert app.agents.row_count == 0 and app.metrics.agent_table.row_count == 0
        metrics = screen_text(app.metrics)
        assert "0/0   0%" in metrics and "█" not in metrics  # no full bars for an empty sprint
        assert "messages 0 " in metrics


async def test_messages_follow_the_cursor_both_ways(tmp_path: Path) -> None:
    app = ReplayApp(ReplayCursor.open(RECORDED), at=60, config_file=tmp_path / "config.json")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle_messages(pilot, app)
        for keys, seq in [((), 60), (("right_curly_bracket",), 160), (("left_curly_bracket",), 60),
                          (("end",), app.cursor.total), (("home", "right_square_bracket"), 1)]:
            await pilot.press(*keys)
            await pilot.pause(0.05)
            assert app.cursor.position == seq
            wanted = message_seqs_until(seq)
            pane = app.messages
            shown = [app.store.seq(pane._view[row]) for row in range(pane.row_count)]
            assert shown == wanted, seq
            assert pane.border_subtitle.startswith(f"{len(wanted)} of {len(message_seqs_until(seq, heartbeats=True))} ·")
            assert f"messages {len(message_seqs_until(seq, heartbeats=True))} " in screen_text(app.metrics)  # the same moment
            if wanted:  # the newest message at the cursor is marked and on screen
                assert app.store.seq(pane.highlighted_index) == wanted[-1]
                assert f"{CURSOR_MARK} {_clock(app.store.time(pane.highlighted_index))}" in screen_text(pane)


async def test_a_filter_shows_only_matching_messages_up_to_the_cursor(tmp_path: Path) -> None:
    heartbeats = {r["seq"] for r in read_journal(RECORDED)[1]
                  if r["type"] == EventType.MESSAGE and r["data"]["message"]["type"] == "heartbeat"}
    app = ReplayApp(ReplayCursor.open(RECORDED), at=60, config_file=tmp_path / "config.json")
    async with app.run_test(size=(120, 40)) as pilot:
        await settle_messages(pilot, app)
        await pilot.press("slash", *"type:heartbeat", "enter")
        for keys, seq in [((), 60), (("right_curly_bracket",), 160), (("home",), 0), (("end",), app.cursor.total)]:
            await pilot.press(*keys)
            await pilot.pause(0.05)
            pane = app.messages
            shown = [app.store.seq(pane._view[row]) for row in range(pane.row_count)]
            wanted = sorted(s for s in heartbeats if s <= seq)
            assert shown == wanted, seq
            # "N of M": M counts the messages up to the cursor, not the whole recording
            assert pane.border_subtitle.startswith(f"{len(wanted)} of {len(message_seqs_until(seq, heartbeats=True))} ·")
            rows_on_screen = screen_text(pane).splitlines()[1:-1]  # inside the border
            assert sum("heartbeat" in row for row in rows_on_screen) == min(len(wanted), pane.size.height)
