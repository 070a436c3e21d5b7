"""`run`'s dashboard draws the plan first and builds the engine after that frame (issue 16).

The first frame (the plan's tasks, each pending, under a `starting` header) needs neither the
manager nor pydantic's models; `app.source.StartingSource` builds the engine when the App asks
for it, just after that frame.  What the first frame imports is checked in a fresh interpreter by
tests/test_startup_imports.py; these tests drive the App itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.dashboard import SprintDeckApp
from app.source import LiveSource, StartingSource
from conftest import SAMPLES
from engine.journal import JournalWriter, read_journal
from engine.manager import SprintManager
from engine.plan import load_plan
from engine.workspace import scratch_copy

ROOT = Path(__file__).resolve().parent.parent


async def test_the_plan_is_on_screen_before_the_engine_and_the_engine_then_runs_the_sprint(tmp_path: Path) -> None:
    plan = load_plan(SAMPLES / "webrtc/plan.yaml")
    journal_path = tmp_path / "journal.jsonl"
    journal = JournalWriter.create(journal_path, {"sprint": plan.sprint})
    shown_first: dict[str, Any] = {}

    def start() -> LiveSource:
        # Called by the App once its first frame is drawn: what that frame holds.
        shown_first["rows"] = {key: str(app.tasks.get_row(key)) for key in app.tasks.keys()}
        shown_first["header"] = app.header.text.plain
        manager = SprintManager(plan, workspace=scratch_copy(plan, tmp_path / "ws"), journal=journal, speed=100)
        return LiveSource(manager, journal=str(journal_path))

    source = StartingSource(plan, start, journal=str(journal_path))
    app = SprintDeckApp(source, config_file=tmp_path / "config.json")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.1)
        assert list(shown_first["rows"]) == [task.id for task in plan.tasks]
        assert all("pending" in row for row in shown_first["rows"].values())
        assert "webrtc-signaling · starting" in shown_first["header"]
        assert isinstance(app.source, LiveSource)  # the App follows the engine now
        for _ in range(200):
            if app.source.finished:
                break
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        assert app.source.finished
        assert "finished · 10/10 done" in app.header.text.plain
        assert all("done" in str(app.tasks.get_row(task.id)) for task in plan.tasks)
        await app.source.stop()
    journal.close()
    _, records, _ = read_journal(journal_path)
    assert records[0]["type"] == "sprint_started" and records[-1]["type"] == "sprint_finished"


async def test_an_engine_that_cannot_be_built_ends_the_dashboard_and_is_raised_again(tmp_path: Path) -> None:
    plan = load_plan(SAMPLES / "webrtc/plan.yaml")
    problem = OSError("workspace /gone: no such directory")

    def start() -> LiveSource:
        raise problem

    source = StartingSource(plan, start, journal=str(tmp_path / "journal.jsonl"))
    app = SprintDeckApp(source, config_file=tmp_path / "config.json")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.2)
    assert app.return_code == 1
    with pytest.raises(OSError) as raised:
        source.started()  # `run` calls this after the App: the same error as before the change
    assert raised.value is problem


def test_a_bad_workspace_is_refused_before_the_dashboard_starts(tmp_path: Path) -> None:
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    out = subprocess.run([sys.executable, "-m", "app.cli", "run", str(SAMPLES / "webrtc/plan.yaml"),
                          "--workspace", str(not_a_directory), "--record", str(tmp_path / "j.jsonl")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert f"sprintdeck: workspace {not_a_directory}" in out.stderr
    assert "Traceback" not in out.stderr
