"""Enter on a task, an agent or a file opens a page in words and tables (issue 15): what happened
to it and why, read from a real sprint's state and journal; `j` shows the raw JSON, Escape closes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from app.dashboard import SprintDeckApp
from app.replay_dashboard import ReplayApp
from app.screens.agent_details import AgentDetailsScreen
from app.screens.file_view import FileViewScreen
from app.screens.task_view import TaskViewScreen
from conftest import SAMPLES
from app.source import RecordedSource
from engine.events import Event
from engine.journal import read_journal
from engine.replay import ReplayCursor
from test_dashboard import Harness, conflicted, select_task, wait_for
from test_dashboard import screen_text as shown_text
from widgets.agents import AgentsPane


def screen_text(app) -> str:
    """What the terminal shows with every space taken out: a table's cells are separate pieces of
    the screenshot, so `#1 sh` may come out as `#1sh`; phrases are compared the same way (`has`)."""
    return "".join(shown_text(app).split())


def squeeze(phrase: str) -> str:
    return "".join(phrase.split())


def has(text: str, *phrases: str) -> bool:
    return all(squeeze(phrase) in text for phrase in phrases)


def retry_plan() -> dict:
    # Attempt 1 holds src/app.py, writes it and fails with exit 1; attempt 2 succeeds; `after` needs it.
    return {
        "sprint": "views",
        "settings": {"heartbeat_interval": "100ms", "max_retries": 1},
        "agents": [{"id": "sh", "kind": "shell", "capabilities": ["code"]}],
        "tasks": [
            {"id": "build", "resources": ["src/app.py"], "requires": ["code"],
             "command": "mkdir -p src && echo built >> src/app.py && sleep 0.5 && "
                        "{ test -f marker || { touch marker; echo 'npm test: 2 failing' >&2; exit 1; }; }"},
            {"id": "after", "depends_on": ["build"], "requires": ["code"], "command": "echo shipped"},
        ],
    }


def blocking_plan() -> dict:
    # `hold` keeps src/db.py for a while; `wait` needs the same path and is blocked behind it.
    return {
        "sprint": "views",
        "settings": {"heartbeat_interval": "100ms", "max_retries": 0},
        "agents": [{"id": "first", "kind": "shell", "capabilities": ["a"]},
                   {"id": "second", "kind": "shell", "capabilities": ["b"]}],
        "tasks": [
            {"id": "hold", "requires": ["a"], "resources": ["src/db.py"], "command": "echo holding; sleep 30"},
            {"id": "wait", "requires": ["b"], "resources": ["src/db.py"], "command": "true", "priority": "low"},
            {"id": "first_step", "requires": ["b"], "command": "true"},
            {"id": "report", "requires": ["b"], "depends_on": ["first_step", "hold", "wait"], "command": "true"},
        ],
    }


async def test_a_task_that_failed_then_completed_shows_both_attempts_and_the_first_error(tmp_path: Path) -> None:
    h = Harness(tmp_path, retry_plan())
    async with h.app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: h.manager.finished, timeout=30)
        await pilot.pause(0.2)
        await select_task(pilot, h.app, "build")
        await pilot.press("enter")
        assert isinstance(h.app.screen, TaskViewScreen) and h.app.screen.task_id == "build"
        await pilot.pause(0.1)
        text = screen_text(h.app)
        assert has(text, "Task build") and has(text, "Status: completed — completed by sh")
        # both attempts, in order, with the first one's error and exit code
        first = text.index(squeeze("#1 sh"))
        second = text.index(squeeze("#2 sh"))
        assert first < second
        assert has(text[first:second], "failed exit status 1: npm test: 2 failing 1 src/app.py")
        assert has(text[second:], "completed 0 src/app.py")
        assert has(text, "Locks none held or waited for")
        # the file it wrote, credited to the lock it held (the watcher's changes, from the journal)
        (change, *_) = [e for e in h.app.file_history.of_task("build") if e.what in ("created", "modified")]
        assert change.path == "src/app.py" and change.agent == "sh" and change.lock_id
        assert has(text, f"src/app.py {change.what} sh {change.lock_id}")
        assert has(text, "needed by: after (completed)") and has(text, "depends on: —")
        assert has(text, "task_failed") and has(text, "task_assign")  # its messages

        await pilot.press("j")  # the raw record, attempts included
        await pilot.pause(0.1)
        raw = screen_text(h.app)
        assert has(raw, '"id": "build"', '"status": "completed"') and not has(raw, "Attempts #")
        await pilot.press("end")  # the page scrolls; the attempts come last
        await pilot.pause(0.1)
        assert has(screen_text(h.app), '"attempts"', '"exitCode": 1', '"releasedLocks": [ "src/app.py" ]')
        await pilot.press("j", "escape")
        assert not isinstance(h.app.screen, TaskViewScreen)


async def test_a_blocked_tasks_view_names_the_lock_holder_and_its_task(tmp_path: Path) -> None:
    h = Harness(tmp_path, blocking_plan())
    async with h.app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: h.manager.state.tasks["wait"].status == "blocked", timeout=20)
        await pilot.pause(0.2)
        await select_task(pilot, h.app, "wait")
        await pilot.press("enter")
        await pilot.pause(0.1)
        text = screen_text(h.app)
        assert has(text, "Status: blocked — waiting for lock src/db.py held by first's task hold (write lock)")
        assert has(text, "src/db.py write waiting first's task hold (write lock)")  # the Locks table

        await pilot.press("escape")  # the holder's own view: it holds the lock
        await select_task(pilot, h.app, "hold")
        await pilot.press("enter")
        await pilot.pause(0.1)
        text = screen_text(h.app)
        (lock,) = [lock for lock in h.manager.state.locks.values() if lock.task_id == "hold"]
        assert has(text, f"src/db.py write held {lock.lock_id} token {lock.token}")
        assert has(text, "#1 first") and has(text, "running")
        assert has(text, "needed by: report (pending)")
        await pilot.press("escape")

        await wait_for(pilot, lambda: h.manager.state.tasks["first_step"].status == "completed")
        await select_task(pilot, h.app, "report")  # waiting for its dependencies, named with their status
        await pilot.press("enter")
        await pilot.pause(0.1)
        text = screen_text(h.app)
        assert has(text, "Status: pending — deps: 1 of 3 done — waiting for hold, wait")
        assert has(text, "depends on: first_step (completed), hold (running), wait (blocked)")
        await pilot.press("escape")


async def test_an_agents_view_lists_its_tasks_and_its_commands_last_output(tmp_path: Path) -> None:
    h = Harness(tmp_path, retry_plan())
    async with h.app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: h.manager.finished, timeout=30)
        await pilot.pause(0.2)
        await pilot.press("2")
        pane = h.app.query_one(AgentsPane)
        assert pane.selected_key() == "sh"
        await pilot.press("enter")
        assert isinstance(h.app.screen, AgentDetailsScreen)
        await pilot.pause(0.1)
        text = screen_text(h.app)
        assert has(text, "Agent sh") and has(text, "Kind: shell") and has(text, "Last heartbeat:")
        # past attempts, latest first: after #1, build #2, build #1 with its error
        assert text.index(squeeze("after #1")) < text.index(squeeze("build #2")) < text.index(squeeze("build #1"))
        assert has(text, "exit status 1: npm test: 2 failing")
        assert has(text, "after shipped") and has(text, "build npm test: 2 failing")  # last output lines, by task
        await pilot.press("escape")


async def test_the_file_view_names_the_conflicting_change_and_its_resolution(tmp_path: Path) -> None:
    h = Harness(tmp_path, SAMPLES / "conflict" / "plan.yaml", speed=20.0)
    async with h.app.run_test(size=(140, 40)) as pilot:
        path = await conflicted(pilot, h)
        conflict = h.manager.state.files[path].conflict
        assert conflict is not None
        await pilot.press("enter")
        assert isinstance(h.app.screen, FileViewScreen) and h.app.screen.path == path
        await pilot.pause(0.1)
        text = screen_text(h.app)
        assert has(text, f"File {path}") and has(text, "Status: conflict")
        assert has(text, f"Conflict: {conflict.reason}")
        holder = conflict.holders[0]
        # the history row: the change, its reason, and the holders it overlapped with their locks and tasks
        assert has(text, f"conflict (modified) — — — {conflict.reason}: {conflict.detail}; held by")
        assert has(text, f"{holder.agent_id} ({holder.lock_type} lock {holder.lock_id}, task {holder.task_id})")
        assert any(e.what == "conflict (modified)" for e in h.app.file_history.of_task(holder.task_id))
        await pilot.press("escape", "a")  # accept, then the history shows who resolved it
        await wait_for(pilot, lambda: h.manager.state.files[path].status != "conflict")
        await pilot.pause(0.2)
        await pilot.press("5")
        pane = h.app.files
        pane.move_cursor(row=pane.keys().index(path))
        await pilot.press("enter")
        await pilot.pause(0.1)
        text = screen_text(h.app)
        assert has(text, "accept operator", "Last resolution: accept by operator")


async def test_the_views_open_in_the_replay_dashboard_at_the_cursor(tmp_path: Path) -> None:
    h = Harness(tmp_path, retry_plan())
    async with h.app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: h.manager.finished, timeout=30)
        await pilot.press("q")
    h.journal.close()
    cursor = ReplayCursor.open(h.journal_path)
    failed = next(e.seq for e in cursor.events(1, cursor.total) if e.type == "task_failed")
    app = ReplayApp(cursor, at=failed)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: app.cursor.position == failed and app._filled >= cursor.total)
        await select_task(pilot, app, "build")
        await pilot.press("enter")
        assert isinstance(app.screen, TaskViewScreen)
        await pilot.pause(0.1)
        text = screen_text(app)
        assert has(text, "#1 sh") and not has(text, "#2 sh")  # the state at the cursor: one attempt so far
        assert has(text, "Status: retrying — #1 failed: exit status 1: npm test: 2 failing (exit 1) — will retry")


RECORDED_FLAKY = Path(__file__).parent / "recordings" / "flaky.jsonl"  # sample_sprints/flaky, seed 7


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_task_view_snapshot(snap_compare, tmp_path: Path, size: tuple[int, int]) -> None:
    """The task view over a recorded sprint (frozen clock), just after `docs` completed at its
    third attempt: two failures above its completion, mid-sprint."""
    _, records, _ = read_journal(RECORDED_FLAKY)
    events = [Event.from_record(r) for r in records]
    done = next(i for i, e in enumerate(events) if e.type == "task_completed" and e.data["taskId"] == "docs")
    events = events[: done + 1]
    frozen = datetime.fromisoformat(events[-1].ts)
    source = RecordedSource.from_events(events, journal="tests/recordings/flaky.jsonl")
    app = SprintDeckApp(source, clock=lambda: frozen, config_file=tmp_path / "config.json")

    async def open_view(pilot) -> None:
        await pilot.pause()
        app.tasks.move_cursor(row=app.tasks.keys().index("docs"))
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(app, run_before=open_view, terminal_size=size)
