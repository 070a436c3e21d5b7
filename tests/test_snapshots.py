"""SVG snapshots of the dashboard at fixed sizes, over a recorded sprint with a frozen clock.

The recorded journal makes the state deterministic (a live run's timing is not); the clock is the
time of the last shown event, so elapsed times and TTLs print the same on every run.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from app.dashboard import SprintDeckApp
from app.screens.reassign import Candidate, ReassignScreen
from app.source import RecordedSource
from conftest import SAMPLES
from engine.events import Event
from engine.journal import read_journal

RECORDED = SAMPLES / "webrtc" / "recorded.jsonl"
SIZES = [(120, 40), (80, 24)]


def recorded_events(completed: int | None = 5) -> list[Event]:
    """The recorded webrtc sprint up to its `completed`-th task completion (None: to the end)."""
    _, records, _ = read_journal(RECORDED)
    events = [Event.from_record(r) for r in records]
    if completed is None:
        return events
    seen = 0
    for index, event in enumerate(events):
        seen += event.type == "task_completed"
        if seen == completed:
            return events[: index + 1]
    raise AssertionError("the recording has fewer completions")


def recorded_app(tmp_path: Path, *, theme: str = "sprintdeck-dark", completed: int | None = 5) -> SprintDeckApp:
    events = recorded_events(completed)
    frozen = datetime.fromisoformat(events[-1].ts)
    source = RecordedSource.from_events(events, journal="sample_sprints/webrtc/recorded.jsonl")
    return SprintDeckApp(source, theme_name=theme, clock=lambda: frozen, config_file=tmp_path / "config.json")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen_mid_sprint(snap_compare, tmp_path, size) -> None:
    assert snap_compare(recorded_app(tmp_path), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(snap_compare, tmp_path, size) -> None:
    assert snap_compare(recorded_app(tmp_path), press=["question_mark"], terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_reassign_modal(snap_compare, tmp_path, size) -> None:
    candidates = [
        # The owner (backend) is not offered its own task; an agent that cannot take it says why.
        Candidate("frontend", "ready", 0, 1, ("ui", "websocket")),
        Candidate("testing", "busy", 1, 1, ("tests", "websocket"), "full: 1 of 1 tasks running (max_concurrent_tasks 1)"),
        Candidate("docs", "paused", 0, 1, ("websocket",), "paused"),
    ]

    async def open_modal(pilot) -> None:
        pilot.app.push_screen(ReassignScreen("implement_api", "backend", candidates))

    assert snap_compare(recorded_app(tmp_path), run_before=open_modal, terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_filter_active(snap_compare, tmp_path, size) -> None:
    async def filter_messages(pilot) -> None:
        pilot.app.apply_filter("type:task_assign")
        await pilot.press("3")

    assert snap_compare(recorded_app(tmp_path), run_before=filter_messages, terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_message_details(snap_compare, tmp_path, size) -> None:
    assert snap_compare(recorded_app(tmp_path), press=["3", "g", "enter"], terminal_size=size)


@pytest.mark.parametrize("theme", ["sprintdeck-light", "sprintdeck-contrast"])
def test_themes(snap_compare, tmp_path, theme) -> None:
    assert snap_compare(recorded_app(tmp_path, theme=theme), terminal_size=(120, 40))


def test_finished_sprint(snap_compare, tmp_path) -> None:
    assert snap_compare(recorded_app(tmp_path, completed=None), terminal_size=(120, 40))


CLAUDE_RECORDED = SAMPLES / "claude" / "recorded.jsonl"


def claude_app(tmp_path: Path) -> SprintDeckApp:
    """The recorded sample Claude Code sprint as its third task starts, with the frontend agent
    waiting for a human (a permission prompt): sessions, spend and the wait on screen."""
    _, records, _ = read_journal(CLAUDE_RECORDED)
    events = [Event.from_record(r) for r in records]
    cut = next(i for i, e in enumerate(events) if e.type == "task_started" and e.data["taskId"] == "page")
    events = events[: cut + 1]
    waiting = Event.decode(events[-1].seq + 1, events[-1].ts, "agent_status",
                           {"agentId": "frontend", "status": "waiting",
                            "reason": "waiting for a human: Claude needs your permission to use Bash"})
    source = RecordedSource.from_events([*events, waiting], journal=str(CLAUDE_RECORDED.relative_to(SAMPLES.parent)))
    frozen = datetime.fromisoformat(events[-1].ts)
    return SprintDeckApp(source, clock=lambda: frozen, config_file=tmp_path / "config.json")


def test_claude_agents_with_sessions_spend_and_a_wait(snap_compare, tmp_path) -> None:
    assert snap_compare(claude_app(tmp_path), terminal_size=(160, 40))


BLOCKED_RECORDED = SAMPLES / "blocked" / "recorded.jsonl"


def blocked_app(tmp_path: Path) -> SprintDeckApp:
    """The recorded blocked sprint as `migrate` blocks: it waits for update_schema's lock on
    server/db, and npm_test has failed for good (the Tasks pane says both in its why column)."""
    _, records, _ = read_journal(BLOCKED_RECORDED)
    events = [Event.from_record(r) for r in records]
    cut = next(i for i, e in enumerate(events) if e.type == "task_blocked")
    events = events[: cut + 1]
    frozen = datetime.fromisoformat(events[-1].ts)
    source = RecordedSource.from_events(events, journal=str(BLOCKED_RECORDED.relative_to(SAMPLES.parent)))
    return SprintDeckApp(source, clock=lambda: frozen, config_file=tmp_path / "config.json")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen_blocked_and_failed(snap_compare, tmp_path, size) -> None:
    assert snap_compare(blocked_app(tmp_path), terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_task_graph_mid_sprint(snap_compare, tmp_path, size) -> None:
    """`v` then `z`: the webrtc DAG mid-sprint, the selection on unit_tests (its three
    dependencies marked ↑), with done, running (webrtc_implementation) and blocked
    (integrate_api) nodes in view."""
    assert snap_compare(recorded_app(tmp_path), press=["v", "z", "right", "j"], terminal_size=size)
