"""The dashboard driven by keys over a live engine: every operation, and every refusal.

Each test presses keys in a real Textual app whose engine runs real simulated agents, then asserts
on the engine's state and on the operator action recorded in the journal.
"""

from __future__ import annotations

import asyncio
import html
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from textual.command import CommandList
from textual.containers import VerticalScroll
from textual.widgets import Static

from app.dashboard import SprintDeckApp, parse_filter
from app.screens.confirm import ConfirmScreen
from app.screens.help import HelpScreen
from app.screens.reassign import ReassignScreen
from app.source import LiveSource
from app.screens.conflict import ConflictScreen
from conftest import SAMPLES, write_plan
from test_operator import wobbly_plan
from engine.plan import load_plan
from engine.workspace import scratch_copy
from widgets.files import FilesPane
from engine.journal import JournalWriter, read_journal
from engine.manager import SprintManager
from widgets.agents import AgentsPane
from widgets.locks import LocksPane
from widgets.messages import MessagesPane
from widgets.tasks import TasksPane

FROZEN = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def ops_plan(**agent_overrides) -> dict:
    return {
        "sprint": "dash",
        "settings": {"heartbeat_interval": "200ms", "max_retries": 0},
        "agents": [
            {"id": "one", "capabilities": ["api"], **agent_overrides},
            {"id": "two", "capabilities": ["api"]},
            {"id": "ui", "capabilities": ["ui"]},
        ],
        "tasks": [
            {"id": "long", "requires": ["api"], "estimate": "120s", "resources": ["server/routes.ts"]},
            {"id": "quick", "requires": ["ui"], "estimate": "10ms"},
            {"id": "after", "requires": ["api"], "depends_on": ["long"], "estimate": "1s"},
        ],
    }


class Harness:
    def __init__(self, tmp_path: Path, plan: dict | Path, *, speed: float = 1.0) -> None:
        self.plan = load_plan(plan) if isinstance(plan, Path) else write_plan(tmp_path, plan)
        self.journal_path = tmp_path / "journal.jsonl"
        self.journal = JournalWriter.create(self.journal_path, {"sprint": "dash"})
        workspace = scratch_copy(self.plan, tmp_path / "workspace")
        self.manager = SprintManager(self.plan, workspace=workspace, journal=self.journal, speed=speed)
        self.app = SprintDeckApp(
            LiveSource(self.manager, journal=str(self.journal_path)),
            config_file=tmp_path / "config.json",
        )
        self.shown: list[str] = []  # every notification, including toasts Textual already dropped
        notify = self.app.notify
        self.app.notify = lambda message, **kw: (self.shown.append(str(message)), notify(message, **kw))[1]

    def operator_actions(self) -> list[dict]:
        self.journal.flush_sync()
        _, records, _ = read_journal(self.journal_path)
        return [r["data"] for r in records if r["type"] == "operator_action"]

    def notes(self) -> list[str]:
        return list(self.shown)


async def wait_for(pilot, condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not reached"
        await pilot.pause(0.02)


async def select_task(pilot, app: SprintDeckApp, task_id: str) -> None:
    await pilot.press("1")
    table = app.query_one(TasksPane)
    await pilot.press("g")
    for _ in range(table.row_count):
        if table.selected_key() == task_id:
            return
        await pilot.press("j")
    raise AssertionError(f"{task_id} not in the Tasks pane")


async def running(pilot, h: Harness, task_id: str = "long") -> None:
    await wait_for(pilot, lambda: task_id in h.manager.state.tasks and h.manager.state.tasks[task_id].status == "running")
    await pilot.pause(0.1)


async def test_reassign_modal_lists_capable_agents_and_moves_the_task(tmp_path: Path) -> None:
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(120, 40)) as pilot:
        await running(pilot, h)
        before = h.manager.state.tasks["long"].agent
        await select_task(pilot, h.app, "long")
        await pilot.press("r")
        assert isinstance(h.app.screen, ReassignScreen)
        offered = [c.agent_id for c in h.app.screen.candidates]
        target = "two" if before == "one" else "one"
        assert offered == [target]  # ui lacks the api capability; the owner is not offered its own task
        await pilot.press("enter")
        await wait_for(pilot, lambda: h.manager.state.tasks["long"].attempt == 2)
        task = h.manager.state.tasks["long"]
        assert task.agent == target
        (lock,) = h.manager.state.locks.values()
        assert lock.agent_id == target
        assert h.operator_actions() == [{"action": "reassign", "by": "operator", "taskId": "long", "agentId": target}]
        await pilot.pause(0.1)
        assert target in str(h.app.query_one(TasksPane).get_row("long"))


async def test_refusals_explain_and_change_nothing(tmp_path: Path) -> None:
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(120, 40)) as pilot:
        await running(pilot, h)
        await wait_for(pilot, lambda: h.manager.state.tasks["quick"].status == "completed")
        before = h.manager.state.tasks["quick"].model_dump_json()
        await select_task(pilot, h.app, "quick")
        await pilot.press("r")
        assert not isinstance(h.app.screen, ReassignScreen)
        await pilot.press("R")
        await pilot.press("x")
        assert not isinstance(h.app.screen, ConfirmScreen)
        notes = h.notes()
        assert any("quick is completed; only unfinished tasks can be reassigned" in n for n in notes)
        assert any("only failed or cancelled tasks can be retried" in n for n in notes)
        assert any("already completed" in n for n in notes)
        assert h.operator_actions() == []
        assert h.manager.state.tasks["quick"].model_dump_json() == before


async def test_cancel_asks_first_and_cascades(tmp_path: Path) -> None:
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(120, 40)) as pilot:
        await running(pilot, h)
        await select_task(pilot, h.app, "long")
        await pilot.press("x")
        assert isinstance(h.app.screen, ConfirmScreen)
        await pilot.press("n")
        assert h.manager.state.tasks["long"].status == "running"
        await pilot.press("x")
        await pilot.press("y")
        await wait_for(pilot, lambda: h.manager.state.tasks["long"].status == "cancelled")
        assert h.manager.state.tasks["after"].status == "cancelled"
        assert [a["action"] for a in h.operator_actions()] == ["cancel"]


async def test_retry_a_failed_task_while_the_sprint_runs(tmp_path: Path) -> None:
    plan = {
        "sprint": "retry",
        "settings": {"heartbeat_interval": "200ms", "max_retries": 0},
        "agents": [{"id": "one", "capabilities": ["flaky"], "failure_rate": 1.0}, {"id": "two"}],
        "tasks": [{"id": "flaky", "requires": ["flaky"], "estimate": "50ms"}, {"id": "long", "agent": "two", "estimate": "120s"}],
    }
    h = Harness(tmp_path, plan)
    async with h.app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: "flaky" in h.manager.state.tasks and h.manager.state.tasks["flaky"].status == "failed")
        await select_task(pilot, h.app, "flaky")
        await pilot.press("R")
        await wait_for(pilot, lambda: h.manager.state.tasks["flaky"].attempt == 2)
        assert [a["action"] for a in h.operator_actions()] == ["retry"]
        await wait_for(pilot, lambda: h.manager.state.tasks["flaky"].status == "failed")
        assert h.manager.state.tasks["flaky"].failures == 2


async def test_dashboard_stays_open_on_the_final_state(tmp_path: Path) -> None:
    plan = {"sprint": "short", "agents": [{"id": "one"}], "tasks": [{"id": "t", "estimate": "50ms"}]}
    h = Harness(tmp_path, plan)
    async with h.app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: h.manager.finished)
        await pilot.pause(0.2)
        assert " short · finished · 1/1 done · " in h.app.query_one("#header").render().plain
        assert any("Sprint finished" in n for n in h.notes())
        assert h.app.is_running
        await select_task(pilot, h.app, "t")
        await pilot.press("R")
        assert any("the sprint has finished" in n for n in h.notes())
        await pilot.press("q")  # finished: no question asked
        await pilot.pause(0.2)
    assert not h.app.is_running


def header(app: SprintDeckApp) -> str:
    return app.query_one("#header").render().plain


async def test_header_says_running_paused_and_running_again(tmp_path: Path) -> None:
    """`live` said nothing about a paused sprint: the header names the phase, and `p` changes it."""
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(120, 40)) as pilot:
        await running(pilot, h)
        assert " dash · running · ⏱ " in header(h.app)
        h.app.query_one(TasksPane).focus()
        await pilot.press("p")
        assert h.manager.state.meta.paused
        await wait_for(pilot, lambda: " dash · paused · ⏱ " in header(h.app))
        assert "live" not in header(h.app)
        await pilot.press("p")
        assert not h.manager.state.meta.paused
        await wait_for(pilot, lambda: " dash · running · ⏱ " in header(h.app))


async def test_header_of_a_finished_sprint_gives_its_outcome(tmp_path: Path) -> None:
    plan = {
        "sprint": "mixed",
        "settings": {"max_retries": 0},
        "agents": [{"id": "good"}, {"id": "bad", "capabilities": ["doomed"], "failure_rate": 1.0}],
        "tasks": [{"id": "ok", "agent": "good", "estimate": "50ms"},
                  {"id": "fails", "requires": ["doomed"], "estimate": "50ms"}],
    }
    h = Harness(tmp_path, plan)
    async with h.app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: h.manager.finished)
        await wait_for(pilot, lambda: " mixed · finished · 1/2 done · 1 failed · ⏱ " in header(h.app))
        assert "running" not in header(h.app) and "live" not in header(h.app)
        assert any(n == "Sprint finished: 1/2 done · 1 failed" for n in h.notes()), h.notes()


async def test_header_of_a_sprint_that_ends_in_conflict_says_so(tmp_path: Path) -> None:
    """Every task completed, one file left in conflict: the header and the notice say it, not `3/3 done` alone."""
    h = Harness(tmp_path, SAMPLES / "conflict/plan.yaml", speed=20.0)
    async with h.app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: h.manager.finished)
        await wait_for(pilot, lambda: "finished · 3/3 done · 1 file left in conflict · ⏱ " in header(h.app))
        assert any(n == "Sprint finished: 3/3 done · 1 file left in conflict: src/config.py" for n in h.notes()), h.notes()


async def test_pause_agent_sprint_and_priority_keys(tmp_path: Path) -> None:
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(120, 40)) as pilot:
        await running(pilot, h)
        await pilot.press("2")
        agents = h.app.query_one(AgentsPane)
        assert h.app.focused is agents
        await pilot.press("g", "j", "j")
        assert agents.selected_key() == "ui"
        await pilot.press("p")
        assert h.manager.state.agents["ui"].status == "paused"
        await pilot.press("p")
        assert h.manager.state.agents["ui"].status == "ready"
        await select_task(pilot, h.app, "after")
        await pilot.press("p")
        assert h.manager.state.meta.paused
        await pilot.press("p")
        assert not h.manager.state.meta.paused
        await pilot.press("plus")
        assert h.manager.state.tasks["after"].priority == "high"
        await pilot.press("plus", "plus")
        assert h.manager.state.tasks["after"].priority == "critical"
        assert any("already critical" in n for n in h.notes())
        await pilot.press("minus")
        assert h.manager.state.tasks["after"].priority == "high"
        assert [a["action"] for a in h.operator_actions()] == [
            "pause_agent", "resume_agent", "pause_sprint", "resume_sprint", "priority", "priority", "priority",
        ]


async def ask_to_force_release(pilot, h: Harness) -> tuple[LocksPane, str]:
    """Select the one lock in Locks and press `u`: the confirmation is on screen."""
    await pilot.press("4")
    locks = h.app.query_one(LocksPane)
    await wait_for(pilot, lambda: locks.row_count == 1)
    lock_id = locks.selected_key()
    await pilot.press("u")
    assert isinstance(h.app.screen, ConfirmScreen)
    return locks, lock_id


async def test_force_release_selected_lock_after_confirmation(tmp_path: Path) -> None:
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(120, 40)) as pilot:
        await running(pilot, h)
        locks, lock_id = await ask_to_force_release(pilot, h)
        await pilot.press("y")
        await wait_for(pilot, lambda: lock_id not in h.manager.state.locks)
        (action,) = h.operator_actions()
        assert action["action"] == "force_release" and action["lockId"] == lock_id
        await wait_for(pilot, lambda: locks.row_count == 0)
        await pilot.press("u")
        assert any("nothing to release" in n for n in h.notes())


async def test_help_command_line_theme_and_filter(tmp_path: Path) -> None:
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(120, 40)) as pilot:
        await running(pilot, h)
        await pilot.press("question_mark")
        assert isinstance(h.app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("colon", *"pause ui", "enter")
        assert h.manager.state.agents["ui"].status == "paused"
        await pilot.press("colon", *"reassign long ui", "enter")
        assert any("lacks the capabilities" in n for n in h.notes())
        await pilot.press("colon", *"theme light", "enter")
        assert h.app.theme == "sprintdeck-light"
        assert '"theme": "sprintdeck-light"' in (tmp_path / "config.json").read_text()
        await pilot.press("colon", *"bogus", "enter")
        assert any("unknown command 'bogus'" in n for n in h.notes())
        await pilot.press("slash", *"type:heartbeat", "enter")
        pane = h.app.query_one(MessagesPane)
        assert pane.filter is not None and pane.filter.type == "heartbeat"
        await pilot.press("q")
        assert isinstance(h.app.screen, ConfirmScreen)
        await pilot.press("n")
        assert not h.manager.finished


async def test_quit_while_running_stops_the_engine_and_keeps_the_journal(tmp_path: Path) -> None:
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(120, 40)) as pilot:
        await running(pilot, h)
        await pilot.press("q", "y")
        await pilot.pause(0.3)
    _, records, _ = read_journal(h.journal_path)
    assert records and records[-1]["seq"] == h.manager.state.version


def reading_order(app: SprintDeckApp) -> list[str]:
    """The panes' ids as the eye reads the screen: top row first, left to right."""
    panes = app.query_one("#panes").children
    return [p.id for p in sorted(panes, key=lambda p: (p.region.y, p.region.x))]


def help_text(app: SprintDeckApp) -> str:
    """What the help screen says, as plain text, one row a line with single spaces."""
    console = Console(width=110, record=True, file=io.StringIO())
    for static in app.screen.query(Static):
        console.print(static.content)
    return "\n".join(" ".join(line.split()) for line in console.export_text().splitlines())


async def test_number_keys_follow_reading_order_and_z_maximises_every_pane(tmp_path: Path) -> None:
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(200, 60)) as pilot:
        await running(pilot, h)
        for size in [(80, 24), (200, 60), (80, 24), (120, 40)]:
            await pilot.resize_terminal(*size)
            await pilot.pause(0.1)
        order = reading_order(h.app)
        assert order == ["tasks", "agents", "messages", "locks", "files", "metrics"]
        for key, pane in zip("123456", order):
            await pilot.press(key)
            assert h.app.focused.id == pane
            await pilot.press("z")
            assert h.app.screen.maximized is h.app.query_one(f"#{pane}"), f"z on {pane}"
            await pilot.pause(0.05)
            assert h.app.screen.maximized.region.width == 120  # it fills the screen
            await pilot.press("z")
            assert h.app.screen.maximized is None
        await pilot.press("6", "z", "1")  # a number while maximised shows that pane maximised
        assert h.app.screen.maximized is h.app.query_one(TasksPane) and h.app.focused.id == "tasks"
        await pilot.press("z", "question_mark")
        # A title names its pane first (Messages adds that heartbeats are hidden).
        titles = ", ".join(h.app.query_one(f"#{pane}").border_title.split(" · ")[0] for pane in order)
        assert "1–6 Tasks, Agents, Messages, Locks, Files, Metrics" in help_text(h.app)
        assert titles == "Tasks, Agents, Messages, Locks, Files, Metrics"
        assert not any("cannot be maximised" in n for n in h.notes())


async def test_help_scrolls_with_the_list_keys(tmp_path: Path) -> None:
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(80, 24)) as pilot:
        await running(pilot, h)
        await pilot.press("question_mark")
        box = h.app.screen.query_one("#help-dialog", VerticalScroll)
        await pilot.pause(0.1)
        bottom = box.max_scroll_y
        assert bottom > 5  # the help is taller than the screen at 80×24
        await pilot.press("j", "j", "j")
        assert box.scroll_offset.y == 3
        await pilot.press("k")
        assert box.scroll_offset.y == 2
        await pilot.press("G")
        assert box.scroll_offset.y == bottom
        await pilot.press("g")
        assert box.scroll_offset.y == 0
        await pilot.press("ctrl+d")
        assert box.scroll_offset.y > 3
        assert isinstance(h.app.screen, HelpScreen)
        assert "reassign to another capable agent" in help_text(h.app)  # live: the operator keys


async def palette_titles(pilot, app: SprintDeckApp) -> list[str]:
    """Open the command palette and read the commands it lists (before anything is typed)."""
    await pilot.press("ctrl+p")
    await pilot.pause(0.3)
    return [str(option.prompt).split("\n")[0] for option in app.screen.query_one(CommandList).options]


async def test_palette_lists_each_command_once_and_quit_asks_first(tmp_path: Path) -> None:
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(120, 40)) as pilot:
        await running(pilot, h)
        titles = await palette_titles(pilot, h.app)
        assert len(titles) == len(set(titles)), titles
        assert "Maximize" not in titles and "Maximise or restore pane" in titles
        assert {"Keys", "Quit", "Reassign task", "Force-release lock"} <= set(titles)
        await pilot.press(*"quit", "enter")
        await pilot.pause(0.1)
        assert isinstance(h.app.screen, ConfirmScreen)  # ours, which asks; not Textual's, which just exits
        await pilot.press("n")
        assert not h.manager.finished


def test_filter_syntax() -> None:
    spec = parse_filter("agent:backend type:task_assign priority:high routes")
    assert (spec.agent, spec.type, spec.priority, spec.text) == ("backend", "task_assign", "high", "routes")
    assert parse_filter("   ") is None
    with pytest.raises(ValueError, match="priority must be one of"):
        parse_filter("priority:urgent")


async def test_ten_thousand_tasks_update_by_key_without_rebuilding(tmp_path: Path) -> None:
    from app.source import RecordedSource
    from engine.events import Event

    def event(source, kind, **data):
        return Event.decode(source.state.version + 1, "2026-11-24T12:00:00Z", kind, data)

    source = RecordedSource([])
    source.push(event(source, "sprint_started", sprint="big", agents=[{"id": "a"}],
                      tasks=[{"id": f"t{i}", "dependencies": [f"t{i - 1}"] if i % 100 else []} for i in range(10_000)]))
    app = SprintDeckApp(source, clock=lambda: FROZEN, config_file=tmp_path / "c.json")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        tasks = app.query_one(TasksPane)
        assert tasks.row_count == 10_000
        rebuilds = []
        original = tasks._rebuild
        tasks._rebuild = lambda state: (rebuilds.append(1), original(state))
        for i in range(50):
            source.push(event(source, "task_ready", taskId=f"t{i * 100}"))
        await pilot.pause(0.2)
        assert rebuilds == []
        assert "ready" in str(tasks.get_row("t4900")[0])
        assert "pending" in str(tasks.get_row("t4901")[0])


async def conflicted(pilot, h: Harness) -> str:
    await wait_for(pilot, lambda: any(f.status == "conflict" for f in h.manager.state.files.values()), timeout=30)
    await pilot.pause(0.2)
    await pilot.press("5", "g")
    path = h.app.query_one(FilesPane).selected_key()
    assert h.manager.state.files[path].status == "conflict"  # conflicts are listed first
    return path


async def test_escalate_shows_the_diff_then_accept_resolves(tmp_path: Path) -> None:
    h = Harness(tmp_path, SAMPLES / "conflict" / "plan.yaml", speed=20.0)
    async with h.app.run_test(size=(120, 40)) as pilot:
        path = await conflicted(pilot, h)
        await pilot.press("e")
        assert isinstance(h.app.screen, ConflictScreen)
        assert h.app.screen.path == path and "+" in h.app.screen.diff
        await pilot.press("a")
        await wait_for(pilot, lambda: h.manager.state.files[path].status != "conflict")
        assert h.manager.state.files[path].resolution == "accept"
        actions = [(a["action"], a.get("path")) for a in h.operator_actions()]
        assert ("escalate_file", path) in actions or any(a[0].startswith("escalate") for a in actions)
        assert any(a[0].startswith("accept") for a in actions)


async def test_revert_from_the_files_pane_restores_the_last_good_content(tmp_path: Path) -> None:
    h = Harness(tmp_path, SAMPLES / "conflict" / "plan.yaml", speed=20.0)
    async with h.app.run_test(size=(120, 40)) as pilot:
        path = await conflicted(pilot, h)
        await pilot.press("v")
        await wait_for(pilot, lambda: h.manager.state.files[path].status != "conflict")
        assert h.manager.state.files[path].resolution == "revert"
        await pilot.press("v")  # nothing to resolve any more: explained, nothing changes
        assert any("conflict" in n.lower() for n in h.notes()[-1:])


def screen_text(app: SprintDeckApp) -> str:
    """What the terminal shows, modal dialogs and toasts included (run_test(notifications=True)):
    the text of a screenshot without borders, lines joined, so a wrapped sentence reads whole."""
    svg = app.export_screenshot()
    body = svg[svg.index("</style>"):]
    text = html.unescape(re.sub(r"<[^>]+>", "", body)).replace("\xa0", " ")
    return " ".join(re.sub(r"[│▌▎▊█]", " ", text).split())


def capacity_plan() -> dict:
    """The operator tests' plan: two long api tasks on two of three api agents (one sits idle), and a
    task only pyd can do; no retries, so a refused move is never hidden by one."""
    return wobbly_plan() | {"sprint": "dash", "settings": {"heartbeat_interval": "200ms", "max_retries": 0}}


async def all_running(pilot, h: Harness) -> None:
    await wait_for(pilot, lambda: len(h.manager.state.tasks) == 3
                   and all(t.status == "running" for t in h.manager.state.tasks.values()))
    await pilot.pause(0.1)


async def test_reassign_a_task_only_its_agent_can_do_says_which_capabilities_nobody_else_has(tmp_path: Path) -> None:
    h = Harness(tmp_path, capacity_plan())
    async with h.app.run_test(size=(120, 40), notifications=True) as pilot:
        await all_running(pilot, h)
        await select_task(pilot, h.app, "migrate")
        await pilot.press("r")
        assert not isinstance(h.app.screen, ReassignScreen)  # no chooser with nothing to choose
        await pilot.pause(0.1)
        assert "no other agent has python, db" in screen_text(h.app)
        assert any(n.startswith("no other agent has python, db") for n in h.notes())
        assert h.manager.state.tasks["migrate"].agent == "pyd" and h.operator_actions() == []


async def test_reassign_chooser_greys_out_a_full_agent_with_why_and_never_overfills(tmp_path: Path) -> None:
    h = Harness(tmp_path, capacity_plan())
    async with h.app.run_test(size=(120, 40), notifications=True) as pilot:
        await all_running(pilot, h)
        state = h.manager.state
        full = state.tasks["other"].agent
        idle = next(a for a in ("wobbly", "shaky", "steady") if not state.agents[a].current_tasks)
        await select_task(pilot, h.app, "long")
        await pilot.press("r")
        assert isinstance(h.app.screen, ReassignScreen)
        shown = screen_text(h.app)
        assert re.search(rf"{full} +busy +load 1/1 +\[api\] +— full: 1 of 1 tasks running \(max_concurrent_tasks 1\)", shown)
        assert re.search(rf"{idle} +ready +load 0/1 +\[api\] +{'pyd' if idle != 'pyd' else ''}", shown)
        options = h.app.screen.query_one("#reassign-options")
        assert [o.id for o in options.options if not o.disabled] == [idle]
        # The full agent cannot be chosen: enter picks the idle one.
        await pilot.press("enter")
        await wait_for(pilot, lambda: state.tasks["long"].agent == idle)
        # Typed as a command, the engine refuses the full agent and says why; nothing changes.
        await pilot.press("colon", *f"reassign long {full}", "enter")
        await pilot.pause(0.1)
        refusal = f"{full} is full: 1 of 1 tasks running (max_concurrent_tasks 1)"
        assert refusal in h.notes()
        assert refusal in screen_text(h.app)
        assert state.tasks["long"].agent == idle
        assert all(len(a.current_tasks) <= a.max_concurrent_tasks for a in state.agents.values())
        assert h.operator_actions() == [{"action": "reassign", "by": "operator", "taskId": "long", "agentId": idle}]


async def test_force_release_warns_what_happens_to_the_holder_enter_confirms_escape_cancels(tmp_path: Path) -> None:
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(120, 40), notifications=True) as pilot:
        await running(pilot, h)
        holder = h.manager.state.tasks["long"].agent
        _, lock_id = await ask_to_force_release(pilot, h)
        shown = screen_text(h.app)
        assert f"held by {holder}?" in shown
        assert f"{holder}'s task long will fail when it reports" in shown
        assert "server/routes.ts may go into conflict" in shown
        await pilot.press("escape")
        assert not isinstance(h.app.screen, ConfirmScreen)
        assert lock_id in h.manager.state.locks and h.operator_actions() == []
        await pilot.press("u")
        assert isinstance(h.app.screen, ConfirmScreen)
        await pilot.press("enter")
        await wait_for(pilot, lambda: lock_id not in h.manager.state.locks)
        (action,) = h.operator_actions()
        assert action["action"] == "force_release" and action["holder"] == holder


async def test_the_footer_shows_every_key_of_the_tasks_pane_and_quit_at_120_columns(tmp_path: Path) -> None:
    """The Tasks pane has the most keys; at 120 columns they and the app's all fit, q Quit last."""
    h = Harness(tmp_path, ops_plan())
    async with h.app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        assert isinstance(h.app.focused, TasksPane)
        text = screen_text(h.app)  # the screenshot's text runs the footer's keys together
        footer = text[text.index("r Reassign"):text.index("^p palette")].rstrip("▏ ")
        keys = ["R Retry", "x Cancel", "+", "-", "Priority", "⏎ Details", "v DAG", "? Help", ": Command", "/ Filter",
                "p Pause", "z Maximise", "q Quit"]
        assert [k for k in keys if k in footer] == keys, footer
        assert footer.endswith("q Quit"), footer  # whole, last, not cut
