"""Replay that navigates by what matters (issue 15): n / N, :marks, :follow, scrubber marks, :fork.

The journals are recorded by real `sprintdeck run --headless` processes (the flaky sample fails and
retries; the conflict sample leaves a file in conflict); deaths and operator actions come from a
sprint run in process with a real manager and journal, where an agent is killed and the operator
raises a priority.  Tests assert what the screen says as well as where the cursor went.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from app.replay_dashboard import ReplayApp
from conftest import ROOT, SAMPLES, run_sprint, simple_plan, write_plan
from engine.events import EventType
from engine.journal import read_journal
from engine.manager import SprintManager
from engine.replay import ReplayCursor
from engine.replay_marks import find_marks, task_events
from test_dashboard import help_text, palette_titles

SPRINTDECK = [sys.executable, "-m", "app.cli"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
RECORDED_FLAKY = SAMPLES / "flaky" / "recorded.jsonl"  # a real headless run, kept for the snapshots


def record(plan: str, journal: Path) -> Path:
    out = subprocess.run([*SPRINTDECK, "run", str(SAMPLES / plan), "--headless", "--record", str(journal),
                          "--speed", "50"],  # in a scratch copy of the sample's workspace
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in out.stderr, out.stderr
    return journal


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record("flaky/plan.yaml", tmp_path_factory.mktemp("flaky") / "flaky.jsonl")


@pytest.fixture(scope="module")
def conflicted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record("conflict/plan.yaml", tmp_path_factory.mktemp("conflict") / "conflict.jsonl")


def records_of(journal: Path, kind: str) -> list[dict]:
    return [r for r in read_journal(journal)[1] if r["type"] == kind]


def app_for(journal: Path, tmp_path: Path, at: int | None = None) -> ReplayApp:
    return ReplayApp(ReplayCursor.open(journal), at=at, config_file=tmp_path / "config.json")


def screen_lines(app: ReplayApp) -> list[str]:
    """The transport bar's three lines as drawn: the bar with its marks, the status, the event."""
    return app.scrubber.render().plain.split("\n")


def watch_notes(app: ReplayApp) -> list[str]:
    notes: list[str] = []
    notify = app.notify
    app.notify = lambda message, **kw: (notes.append(str(message)), notify(message, **kw))[1]  # type: ignore[method-assign]
    return notes


async def test_n_and_N_go_to_each_failure_and_say_where_and_when_there_is_none(flaky: Path, tmp_path: Path) -> None:
    failures = records_of(flaky, "task_failed")
    assert len(failures) >= 2, "the flaky sample should fail at least twice"
    app = app_for(flaky, tmp_path)
    notes = watch_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        for failure in failures:
            await pilot.press("n")
            assert app.cursor.position == failure["seq"]
            data = failure["data"]
            assert app.source.state.tasks[data["taskId"]].status in ("failed", "retrying", "ready", "pending")
            said = f"event {failure['seq']} · task_failed {data['taskId']}"
            assert screen_lines(app)[2].startswith(said) and data["error"] in screen_lines(app)[2]
            assert notes[-1].startswith(said)
        last = failures[-1]["seq"]
        await pilot.press("n")
        assert app.cursor.position == last
        assert screen_lines(app)[2] == (f"no failure, conflict, death or operator action after event {last}")
        await pilot.press("N")
        assert app.cursor.position == failures[-2]["seq"]
        await pilot.press("home", "N")
        assert app.cursor.position == 0 and "before event 0" in screen_lines(app)[2]


async def test_marks_filter_chooses_what_n_jumps_to_and_the_bar_says_it(conflicted: Path, tmp_path: Path) -> None:
    (conflict,) = [r for r in records_of(conflicted, "file_changed") if r["data"]["status"] == "conflict"]
    app = app_for(conflicted, tmp_path)
    notes = watch_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        assert "n: all marks (1)" in screen_lines(app)[1]
        await pilot.press("colon", *"marks failures", "enter")
        assert "n: failures (0)" in screen_lines(app)[1]
        await pilot.press("n")
        assert app.cursor.position == 0 and screen_lines(app)[2] == "no failure after event 0"
        await pilot.press("colon", *"marks conflicts,deaths", "enter")
        assert "n: conflicts, deaths (1)" in screen_lines(app)[1]
        await pilot.press("n")
        assert app.cursor.position == conflict["seq"]
        assert screen_lines(app)[2].startswith(f"event {conflict['seq']} · file_changed {conflict['data']['path']}")
        assert app.source.state.files[conflict["data"]["path"]].status == "conflict"
        await pilot.press("colon", *"marks crashes", "enter")
        assert "unknown mark kind 'crashes': :marks takes failures, conflicts, deaths, operator or all" in notes[-1]
        assert "n: conflicts, deaths (1)" in screen_lines(app)[1]  # unchanged
        await pilot.press("colon", *"marks", "enter")
        assert "n: all marks (1)" in screen_lines(app)[1]


async def test_follow_moves_between_one_tasks_events(flaky: Path, tmp_path: Path) -> None:
    task = records_of(flaky, "task_failed")[0]["data"]["taskId"]
    seqs = [r["seq"] for r in read_journal(flaky)[1]
            if r["data"].get("taskId") == task
            or (r["type"] == "message" and (r["data"]["message"].get("payload") or {}).get("taskId") == task)]
    app = app_for(flaky, tmp_path)
    notes = watch_notes(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        await pilot.press("colon", *f"follow {task}", "enter")
        await pilot.pause()  # the screen redrawn before it is read
        assert f"following {task}: {len(seqs)} events" in notes[-1]
        assert f"n: following {task} 0/{len(seqs)}" in screen_lines(app)[1]
        assert screen_lines(app)[0].count("•") + screen_lines(app)[0].count("✗") >= 2  # its events on the bar
        for seq in seqs[:4]:
            await pilot.press("n")
            await pilot.pause()
            assert app.cursor.position == seq
        assert f"n: following {task} 4/{len(seqs)}" in screen_lines(app)[1]
        await pilot.press("N")
        await pilot.pause()
        assert app.cursor.position == seqs[2]
        await pilot.press("end", "n")
        await pilot.pause()
        assert screen_lines(app)[2] == f"no event of {task} after event {app.cursor.total}"
        await pilot.press("colon", *"follow", "enter")
        await pilot.pause()
        assert notes[-1].startswith(f"stopped following {task}") and "n: all marks" in screen_lines(app)[1]
        await pilot.press("colon", *"follow nosuchtask", "enter")
        await pilot.pause()
        assert notes[-1] == "no event of a task 'nosuchtask' in this recording"
        # `:follow` alone follows the task selected in Tasks
        await pilot.press("1")
        await pilot.pause()
        selected = app.tasks.selected_key()
        await pilot.press("colon", *"follow", "enter")
        await pilot.pause()
        assert app.following == selected and f"following {selected}:" in notes[-1]


async def test_the_scrubber_marks_failures_and_conflicts_with_their_glyphs_and_help_names_them(
        flaky: Path, conflicted: Path, tmp_path: Path) -> None:
    app = app_for(flaky, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        bar = screen_lines(app)[0]
        width = app.scrubber.content_region.width
        total = app.cursor.total
        cells = {min(width - 1, r["seq"] * width // total) for r in records_of(flaky, "task_failed")}
        assert {i for i, c in enumerate(bar) if c == "✗"} == cells
        spans = [s for s in app.scrubber.render().spans if s.start in cells]
        assert spans and all("red" in str(s.style) for s in spans)  # a colour AND a glyph
        await pilot.press("question_mark")
        text = help_text(app)
        assert "✗ failure, ! conflict, † agent death, ◆ operator action" in text
        for line in ("n the next failure, conflict, death or operator action", "N the previous one, as n but backwards",
                     ":marks failures,conflicts", ":follow TASK", ":fork"):
            assert line in text, line
    app = app_for(conflicted, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        assert screen_lines(app)[0].count("!") == 1


async def test_fork_shows_the_command_for_the_cursor_and_that_command_forks(flaky: Path, tmp_path: Path) -> None:
    at = records_of(flaky, "task_failed")[0]["seq"] - 1
    app = app_for(flaky, tmp_path, at=at)
    notes = watch_notes(app)
    async with app.run_test(size=(200, 40)) as pilot:
        await pilot.pause(0.1)
        await pilot.press("colon", *"fork", "enter")
        command = app.fork_command
        assert command is not None
        fork = flaky.with_name(f"flaky.fork-{at}.jsonl")
        expected = (f"sprintdeck run {SAMPLES / 'flaky/plan.yaml'} --resume {flaky} --at {at} --record {fork}")
        assert command == expected
        assert notes[-1] == f"fork here: {command}"
        shown = screen_lines(app)[2]  # as much as fits; the notice and the clipboard have it whole
        assert shown.startswith("fork here: sprintdeck run ") and command.startswith(shown[len("fork here: "):-1])
        await pilot.press("right_square_bracket")
        assert "fork here" not in screen_lines(app)[2]  # said for the event it was asked at
        await pilot.press("home", "colon", *"fork", "enter")
        assert notes[-1] == "the cursor is before the first event: step forward to fork"
    words = shlex.split(command)
    out = subprocess.run([*SPRINTDECK, *words[1:], "--headless", "--workspace", str(tmp_path / "ws")],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert read_journal(fork)[0]["parent"]["seq"] == at


async def test_the_footer_fits_the_transport_keys_at_80_columns(flaky: Path, tmp_path: Path) -> None:
    app = app_for(flaky, tmp_path, at=20)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        await pilot.press("1")  # Tasks focused: its own key (⏎ Details) takes room too
        await pilot.pause(0.1)
        footer = app.screen.query_one(Footer)
        labels = list(footer.query("FooterLabel"))
        assert [str(label.content) for label in labels] == ["Step", "Speed", "Mark"]
        assert all(0 < label.region.right <= 80 for label in labels), [label.region for label in labels]
        keys = {key.render().plain.strip(): key.region for key in footer.query(FooterKey)}
        for wanted in ("space Play", "[", "]", "<", ">", "n", "N", "? Help", ": Command", "q Quit"):
            found = [text for text in keys if text.replace("\xa0", " ").startswith(wanted)]
            assert found, (wanted, list(keys))
            region = keys[found[0]]
            assert region.width > 0 and region.right <= 80, (wanted, region)
        palette = [r for t, r in keys.items() if "palette" in t]
        rightmost = max([region.right for text, region in keys.items() if "palette" not in text]
                        + [label.region.right for label in labels])
        assert not palette or rightmost <= palette[0].x, "the palette key covers a transport key"
        assert "Mark" in " ".join(str(label.content) for label in footer.query("FooterLabel"))


async def test_palette_lists_the_navigation_commands(flaky: Path, tmp_path: Path) -> None:
    app = app_for(flaky, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        titles = await palette_titles(pilot, app)
        assert {"Next mark", "Previous mark", "Marks…", "Follow the selected task", "Fork here"} <= set(titles)
        await pilot.press(*"next mark", "enter")
        await pilot.pause(0.1)
        assert app.cursor.position == records_of(flaky, "task_failed")[0]["seq"]


async def test_deaths_and_operator_actions_are_marks(tmp_path: Path) -> None:
    """A real manager and journal: an agent is killed mid-task and the operator raises a priority."""
    plan = write_plan(tmp_path, simple_plan(
        settings={"heartbeat_interval": "50ms", "heartbeat_timeout": "300ms", "lock_delay": "100ms"},
        agents=[{"id": "one", "capabilities": ["api"]}, {"id": "two", "capabilities": ["api"]}],
        tasks=[{"id": "long", "requires": ["api"], "estimate": "3s", "resources": ["server/routes.ts"]},
               {"id": "later", "requires": ["api"], "depends_on": ["long"]}]))
    killed: list[str] = []

    def setup(manager: SprintManager) -> None:
        def on_event(event) -> None:
            if event.type == EventType.TASK_STARTED and not killed:
                victim = manager.state.tasks["long"].agent
                killed.append(victim)
                manager.op_set_priority("later", "high")
                agent = next(a for a in manager.agents if a.id == victim)
                asyncio.get_running_loop().create_task(agent.crash())

        manager.subscribe(on_event)

    run = await run_sprint(plan, tmp_path, speed=2.0, setup=setup)
    marks = find_marks(run.journal, len(run.events))
    operator, death = (next(m for m in marks if m.kind == kind) for kind in ("operator", "deaths"))
    assert operator.seq < death.seq
    assert operator.text.startswith("operator_action later") and "priority" in operator.text
    assert death.text.startswith(f"agent_dead {killed[0]}")
    assert operator.seq in [m.seq for m in task_events(run.journal, len(run.events), "later")]
    app = app_for(run.journal, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        bar = screen_lines(app)[0]
        assert "◆" in bar and "†" in bar
        await pilot.press("colon", *"marks deaths", "enter", "n")
        assert app.cursor.position == death.seq
        assert app.source.state.agents[killed[0]].status == "dead"
        assert screen_lines(app)[2].startswith(f"event {death.seq} · agent_dead {killed[0]}")


def test_the_replay_at_a_failure(snap_compare, tmp_path) -> None:
    assert snap_compare(failure_app(tmp_path), terminal_size=(120, 40))


def test_the_replay_at_a_failure_at_80x24(snap_compare, tmp_path) -> None:
    assert snap_compare(failure_app(tmp_path), terminal_size=(80, 24))


def failure_app(tmp_path: Path) -> ReplayApp:
    """The committed flaky recording at its first failure (the replay clock is the recording's)."""
    first = next(json.loads(line)["seq"] for line in RECORDED_FLAKY.read_text().splitlines()[1:]
                 if json.loads(line)["type"] == "task_failed")
    app = ReplayApp(ReplayCursor.open(RECORDED_FLAKY), at=first, config_file=tmp_path / "config.json")
    app.source.journal = "sample_sprints/flaky/recorded.jsonl"  # the same on every checkout
    return app


async def test_a_large_recordings_marks_are_found_after_first_paint(flaky: Path, tmp_path: Path, monkeypatch) -> None:
    import app.replay_navigation as navigation
    monkeypatch.setattr(navigation, "MARKS_AT_ONCE_BYTES", 0)  # as if the journal were large
    failures = records_of(flaky, "task_failed")
    app = app_for(flaky, tmp_path)
    assert app.finding_marks and app.marks == []  # nothing found before first paint
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(50):
            await pilot.pause(0.05)
            if not app.finding_marks:
                break
        assert f"n: all marks ({len(failures)})" in screen_lines(app)[1]
        assert screen_lines(app)[0].count("✗") >= 1
        await pilot.press("n")
        assert app.cursor.position == failures[0]["seq"]
        task = failures[0]["data"]["taskId"]
        await pilot.press("colon", *f"follow {task}", "enter")
        for _ in range(50):
            await pilot.pause(0.05)
            if app.following == task:
                break
        assert f"n: following {task} " in screen_lines(app)[1]
        await pilot.press("n")
        assert app.cursor.position > failures[0]["seq"] and screen_lines(app)[2].startswith(f"event {app.cursor.position} · ")
