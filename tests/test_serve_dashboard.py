"""`sprintdeck serve` with the dashboard: an external agent nobody has started yet.

The lines `serve` prints at start are hidden behind the dashboard, so the Agents pane says the
agent is waiting to connect (not unresponsive), and Enter on it shows the command that starts it;
a real `sprintdeck agent` started with exactly that command joins and does the work.
"""

from __future__ import annotations

import asyncio
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.cli import build_parser
from app.commands import serve
from app.dashboard import SprintDeckApp
from app.screens.agent_details import AgentDetailsScreen
from conftest import ROOT, write_plan
from engine.models import AgentState
from widgets.agents import COLUMNS, AgentsPane
from widgets.status import shown_agent_status

GUARD = 30.0  # seconds before a wait is a failure rather than a hang


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """Short paths: a Unix socket path may not exceed 107 bytes, and pytest's tmp_path can."""
    directory = Path(tempfile.mkdtemp(prefix="sd-dash-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def served_app(run_dir: Path, *extra: str) -> tuple[SprintDeckApp, serve.Served]:
    write_plan(run_dir, {
        "sprint": "served-dashboard",
        "settings": {"heartbeat_interval": "100ms", "heartbeat_timeout": "20s"},
        "agents": [{"id": "builder", "kind": "external", "capabilities": ["build"]}],
        "tasks": [{"id": "compile", "requires": ["build"], "command": "sleep 1; echo built > built.txt",
                   "resources": ["built.txt"]}],
    })
    args = build_parser().parse_args(["serve", str(run_dir / "plan.yaml"), "--listen", f"unix:{run_dir}/s.sock",
                                      "--record", str(run_dir / "run.jsonl"), *extra])
    served = serve.prepare(args)
    return SprintDeckApp(serve.served_source(served), config_file=run_dir / "config.json"), served


def agent_row(app: SprintDeckApp, agent_id: str) -> dict[str, str]:
    pane = app.query_one(AgentsPane)
    return dict(zip([key for key, _ in COLUMNS], map(str, pane.get_row(agent_id)), strict=True))


async def wait_for(pilot, condition, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GUARD
    while not condition():
        assert loop.time() < deadline, f"no {what} after {GUARD:g} s"
        await pilot.pause(0.05)


async def test_an_unstarted_agent_waits_to_connect_and_its_details_say_how_to_start_it(run_dir: Path) -> None:
    app, served = served_app(run_dir)
    agent: subprocess.Popen[bytes] | None = None
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_for(pilot, lambda: "builder" in app.query_one(AgentsPane).keys(), "builder row")
            row = agent_row(app, "builder")
            assert row["status"] == "◌ waiting to connect" and "unresponsive" not in row["status"]

            await pilot.press("2", "enter")
            assert isinstance(app.screen, AgentDetailsScreen)
            facts = str(app.screen.query_one("#agent-facts").render())
            assert "Status: waiting to connect" in facts and "Last heartbeat: never" in facts
            start = str(app.screen.query_one("#agent-start").render())
            assert start.startswith("Start it in a shell with:\n")
            command_line = start.splitlines()[-1]
            assert command_line == serve.join_command(served, "builder")  # what headless serve prints
            command = shlex.split(command_line)
            program = Path(sys.executable).parent / "sprintdeck"  # the virtual environment's, by absolute path
            assert command[:2] == [str(program), "agent"] and program.is_absolute()
            token_file = served.tokens_at.file_for("builder")
            assert command[2:] == ["--connect", f"unix:{run_dir}/s.sock", "--id", "builder",
                                   "--token-file", str(token_file)]
            assert token_file.is_file()
            await pilot.press("escape")

            # The user pastes it into a shell (PYTHONPATH only makes it run this checkout's code).
            with (run_dir / "agent.err").open("wb") as err:
                agent = subprocess.Popen(command, cwd="/", env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                                         stdout=subprocess.DEVNULL, stderr=err)
            seen: set[str] = set()

            def joined() -> bool:
                seen.add(agent_row(app, "builder")["status"])
                return bool(seen & {"● ready", "▶ busy"})

            await wait_for(pilot, joined, "builder ready or busy in the Agents pane")
            await wait_for(pilot, lambda: app.source.finished, "the end of the sprint")
            assert app.source.state.tasks["compile"].status == "completed"
            assert (served.workspace / "built.txt").read_text() == "built\n"
            assert agent.wait(timeout=GUARD) == 0, (run_dir / "agent.err").read_text()
            await pilot.press("q")
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        served.journal.close()
        served.listener.close()


async def test_with_spawn_the_details_say_serve_starts_the_agent(run_dir: Path) -> None:
    app, served = served_app(run_dir, "--spawn")
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await wait_for(pilot, lambda: "builder" in app.query_one(AgentsPane).keys(), "builder row")
            await pilot.press("2", "enter")
            assert isinstance(app.screen, AgentDetailsScreen)
            start = str(app.screen.query_one("#agent-start").render())
            assert start.startswith("serve --spawn starts this agent itself") and "--connect" not in start
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.source.finished, "the end of the sprint")
            assert app.source.state.tasks["compile"].status == "completed"
            await pilot.press("q")
    finally:
        served.journal.close()
        served.listener.close()


def test_only_an_agent_that_never_joined_is_waiting_to_connect() -> None:
    """A connection that dropped (reason `disconnected`) or heartbeats that stopped is unresponsive."""
    never = AgentState(id="a", kind="external", status="unresponsive")
    dropped = AgentState(id="a", kind="external", status="unresponsive", status_reason="disconnected")
    silent = AgentState(id="a", kind="external", status="unresponsive", last_heartbeat=datetime.now(UTC))
    embedded = AgentState(id="a", kind="shell", status="unresponsive")
    assert [shown_agent_status(agent) for agent in (never, dropped, silent, embedded)] == \
        ["connecting", "unresponsive", "unresponsive", "unresponsive"]
