"""The main screen answers "blocked on what, failed why" without a key (issue 15).

A live sprint of real shell agents (sample_sprints/blocked) drives the dashboard: the Tasks pane's
why column, the Agents pane's blocked mark, the Locks pane's waiters.  The recorded run of the same
sprint drives the layout tests (tabs at 80x24, columns that give way, heartbeats hidden), so what
they draw does not depend on timing.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from textual.geometry import Region
from textual.widget import Widget

from app.dashboard import PANE_IDS, SprintDeckApp
from app.screens.confirm import ConfirmScreen
from app.source import RecordedSource
from conftest import SAMPLES
from engine.events import Event
from engine.journal import read_journal
from test_dashboard import Harness, wait_for
from widgets.agents import AgentsPane
from widgets.locks import LocksPane
from widgets.tasks import TasksPane

PLAN = SAMPLES / "blocked" / "plan.yaml"
RECORDED = SAMPLES / "blocked" / "recorded.jsonl"


def drawn(widget: Widget) -> str:
    """What `widget` draws, line by line."""
    return "\n".join(strip.text for strip in widget.render_lines(Region(0, 0, *widget.region.size)))


def inside(widget: Widget) -> str:
    """What `widget` draws inside its border (the title and subtitle left out)."""
    return "\n".join(drawn(widget).splitlines()[1:-1])


def recorded_app(tmp_path: Path, until: str = "task_blocked") -> SprintDeckApp:
    """The recorded blocked sprint at its first `until` event: migrate blocked, npm_test failed."""
    _, records, _ = read_journal(RECORDED)
    events = [Event.from_record(r) for r in records]
    cut = next(i for i, e in enumerate(events) if e.type == until)
    events = events[: cut + 1]
    frozen = datetime.fromisoformat(events[-1].ts)
    source = RecordedSource.from_events(events, journal=str(RECORDED.relative_to(SAMPLES.parent)))
    return SprintDeckApp(source, clock=lambda: frozen, config_file=tmp_path / "config.json")


async def test_a_live_sprint_shows_who_holds_the_lock_and_why_a_task_failed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SPRINTDECK_HOLD_SECONDS", "60")
    h = Harness(tmp_path, PLAN)
    state = h.manager.state
    async with h.app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "migrate" in state.tasks and state.tasks["migrate"].status == "blocked"
                       and state.tasks["npm_test"].status == "failed", timeout=20)
        await pilot.pause(0.3)
        tasks, agents, locks = h.app.query_one(TasksPane), h.app.query_one(AgentsPane), h.app.query_one(LocksPane)
        assert str(tasks.get_cell("migrate", "why")) == "lock server/db ← update_schema"
        assert str(tasks.get_cell("npm_test", "why")) == "#1 failed: exit 1: npm test: 3 failing"
        screen = [" ".join(line.split()) for line in drawn(tasks).splitlines()]  # one space between columns
        assert "│⊘ blocked migrate lock server/db ← update_schema │" in screen
        assert "│✖ failed npm_test #1 failed: exit 1: npm test: 3 failing │" in screen
        assert str(agents.get_cell("migrator", "status")) == "⊘ blocked"  # not "busy": it does nothing
        assert str(agents.get_cell("migrator", "task")) == "migrate ← update_schema (server/db)"
        assert str(agents.get_cell("dba", "status")) == "▶ busy"
        [lock] = list(state.locks.values())
        assert str(locks.get_cell(lock.lock_id, "waiters")) == "migrate (migrator, write)"
        locks_drawn = " ".join(drawn(locks).split())
        assert "server/db dba update_schema migrate (mi" in locks_drawn  # holder and task before decoration
        # ctrl+q asks, like q, while the sprint runs; "n" keeps it running.
        await pilot.press("ctrl+q")
        assert isinstance(h.app.screen, ConfirmScreen)
        await pilot.press("n")
        assert not isinstance(h.app.screen, ConfirmScreen) and h.app.is_running
        await pilot.press("q", "y")  # stop the sprint: its slow command goes with it
        await wait_for(pilot, lambda: not h.app.is_running, timeout=15)


async def test_at_80x24_one_pane_at_a_time_with_tabs(tmp_path: Path) -> None:
    app = recorded_app(tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        shown = [pane for pane in PANE_IDS if app.query_one(f"#{pane}").display]
        assert shown == ["tasks"] and app.query_one("#tasks").region.height == 24 - 3  # header, tabs, footer
        assert "[1 Tasks]" in app.pane_tabs.text.plain and " 2 Agents " in app.pane_tabs.text.plain
        assert "lock server/db ← update_schema" in drawn(app.tasks)
        await pilot.press("2")
        assert app.focused is app.agents and [p for p in PANE_IDS if app.query_one(f"#{p}").display] == ["agents"]
        assert "[2 Agents]" in app.pane_tabs.text.plain and "[1 Tasks]" not in app.pane_tabs.text.plain
        await pilot.press("tab")
        assert app.focused is app.messages and "[3 Messages]" in app.pane_tabs.text.plain
        await pilot.press("shift+tab", "shift+tab")
        assert app.focused is app.tasks and "[1 Tasks]" in app.pane_tabs.text.plain
        await pilot.press("4", "z")  # maximising the one pane shown still works
        assert app.screen.maximized is app.locks
        await pilot.press("z")
        for size in [(100, 30), (120, 40)]:  # wider: every pane again, no tab bar
            await pilot.resize_terminal(*size)
            await pilot.pause(0.1)
            assert all(app.query_one(f"#{pane}").display for pane in PANE_IDS) and not app.pane_tabs.display
            assert all(app.query_one(f"#{pane}").region.height > 3 for pane in PANE_IDS)
        await pilot.resize_terminal(99, 30)
        await pilot.pause(0.1)
        assert [p for p in PANE_IDS if app.query_one(f"#{p}").display] == ["locks"]  # the focused pane's tab


async def test_panes_give_up_decorative_columns_before_key_ones(tmp_path: Path) -> None:
    app = recorded_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        for pane, keys in [(app.tasks, {"status", "task", "why"}), (app.locks, {"path", "holder", "task", "waiters"}),
                           (app.agents, {"status", "agent", "task"})]:
            everything = [key for key, _ in pane.COLUMNS]
            assert pane.shown_columns(400) == everything
            for width in range(20, 200, 3):
                shown = pane.shown_columns(width)
                dropped = [key for key in everything if key not in shown]
                assert keys <= set(shown), (pane.id, width)
                assert sorted(dropped) == sorted(pane.DROP_ORDER[: len(dropped)]), (pane.id, width)  # in that order
        assert app.tasks.shown_columns(60) == ["status", "task", "why"]


async def test_heartbeats_are_hidden_until_the_filter_shows_them(tmp_path: Path) -> None:
    app = recorded_app(tmp_path, until="sprint_finished")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        beats = len([r for r in read_journal(RECORDED)[1]
                     if r["type"] == "message" and r["data"]["message"]["type"] == "heartbeat"])
        assert beats > 0
        messages = app.messages
        total = len(app.store)
        assert messages.row_count == total - beats and "heartbeat" not in inside(messages)
        assert messages.border_title == "Messages · heartbeats hidden (/heartbeats:on)"
        await pilot.press("slash", *"heartbeats:on", "enter")
        assert messages.row_count == total and messages.border_title == "Messages"
        await pilot.press("3", "G")
        assert "heartbeat" in inside(messages)
        await pilot.press("slash", "ctrl+u", *"heartbeats:maybe", "enter")
        assert messages.row_count == total  # refused with a reason, the filter unchanged
        notes = [str(n.message) for n in app._notifications]
        assert any("heartbeats:maybe: say heartbeats:on or heartbeats:off" in n for n in notes)


async def test_the_reassign_title_keeps_the_space_before_the_current_owner(tmp_path: Path) -> None:
    """Noticed in a PNG of the snapshot ("implement_api(now:"): the screen itself has the space;
    the PNG converter drew a run that starts with a space after a bold one without it."""
    from app.screens.reassign import Candidate, ReassignScreen

    app = recorded_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        app.push_screen(ReassignScreen("implement_api", "backend", [Candidate("frontend", "ready", 0, 1, ("ui",))]))
        await pilot.pause(0.1)
        title = app.screen.query_one("#reassign-title")
        assert "Reassign implement_api (now: backend) to:" in drawn(title)


async def test_a_column_narrows_again_when_its_widest_cell_goes(tmp_path: Path) -> None:
    """A long reason once shown must not keep Owner off screen after the task has moved on."""
    app = recorded_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
        tasks = app.tasks
        failed = tasks.get_row("npm_test")
        assert "owner" not in tasks.shown_columns(70)  # "#1 failed: exit 1: npm test: 3 failing" is wide
        tasks.upsert("npm_test", [*failed[:2], "—", *failed[3:]])  # as if it had been retried and passed
        assert "owner" in tasks.shown_columns(70)  # the widest cell gone, the column narrowed
        tasks.upsert("npm_test", failed)
        assert "owner" not in tasks.shown_columns(70)
