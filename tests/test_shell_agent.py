"""Shell agents run real commands in the workspace: output streams, exit status decides."""

from __future__ import annotations

import asyncio
import contextlib
import time
import os
from pathlib import Path

from conftest import run_sprint, write_plan
from engine.events import EventType
from engine.manager import SprintManager


def shell_plan(tasks: list[dict], **agent) -> dict:
    return {
        "sprint": "shell",
        "settings": {"heartbeat_interval": "100ms", "max_retries": 0},
        "agents": [{"id": "sh", "kind": "shell", **agent}],
        "tasks": tasks,
    }


async def test_exit_status_decides_and_output_streams(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        shell_plan(
            [
                {"id": "ok", "command": "echo hello; echo done > out.txt"},
                {"id": "bad", "command": "echo oops >&2; exit 3"},
                {"id": "after", "depends_on": ["bad"], "command": "true"},
            ]
        ),
    )
    run = await run_sprint(plan, tmp_path)
    tasks = run.result.state.tasks
    assert tasks["ok"].status == "completed"
    assert (run.workspace / "out.txt").read_text() == "done\n"
    assert tasks["bad"].status == "failed" and tasks["bad"].error == "exit status 3: oops"
    assert tasks["after"].status == "cancelled"
    outputs = [e.data["output"] for e in run.events if e.type == EventType.TASK_PROGRESS and e.data["output"]]
    assert "hello" in outputs and "oops" in outputs
    assert not run.result.succeeded


async def test_a_shell_attempt_reports_its_start_once_its_command_runs(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        shell_plan([{"id": "ok", "command": "echo hello"}, {"id": "none"}]),
    )
    run = await run_sprint(plan, tmp_path)
    updates = [
        e.data["message"]["payload"]
        for e in run.events
        if e.type == EventType.MESSAGE and e.data["message"]["type"] == "task_update"
    ]
    first = [u for u in updates if u["taskId"] == "ok"][0]
    assert first.get("progress") == 0.0 and "message" not in first  # the start, then the output
    assert any(u.get("message") == "hello" for u in updates)
    # A task with no command never ran: no start is reported for it, and it fails.
    assert not [u for u in updates if u["taskId"] == "none"]
    assert run.result.state.tasks["none"].status == "failed"


async def test_max_execution_time_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    plan = write_plan(
        tmp_path,
        shell_plan(
            [{"id": "hang", "command": f"sleep 30 & echo $! > {pidfile}; wait"}],
            max_execution_time="500ms",
        ),
    )
    run = await run_sprint(plan, tmp_path)
    task = run.result.state.tasks["hang"]
    assert task.status == "failed" and "max_execution_time" in task.error
    child = int(pidfile.read_text())
    await asyncio.sleep(0.1)
    assert not _alive(child), "the command's child survived the timeout"


async def test_cancel_kills_the_running_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    plan = write_plan(tmp_path, shell_plan([{"id": "long", "command": f"sleep 30 & echo $! > {pidfile}; wait"}]))
    manager = SprintManager(plan, workspace=tmp_path, speed=1.0)
    run = asyncio.create_task(manager.execute_sprint())
    while not pidfile.exists() or not pidfile.read_text().strip():
        await asyncio.sleep(0.02)
    child = int(pidfile.read_text())
    assert _alive(child)
    manager.op_cancel("long")
    result = await asyncio.wait_for(run, 10)
    assert result.state.tasks["long"].status == "cancelled"
    assert await _dies(child), "cancel left the command's child running"


async def _dies(pid: int) -> bool:
    """Whether `pid` is gone within 2.5 s."""
    for _ in range(50):
        if not _alive(pid):
            return True
        await asyncio.sleep(0.05)
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes: its parent shell was killed and it waits to be reaped.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_a_cancel_while_the_command_is_being_spawned_kills_its_children(tmp_path: Path) -> None:
    """asyncio forks the command, then connects its pipes over a few loop turns; a cancel that lands
    in between (the command already running) must still kill the whole process group.  asyncio's own
    clean-up kills only the shell, which left the command's children running."""
    from engine.agents.shell import ShellAgent
    from engine.payloads import TaskAssignPayload
    from engine.transports.inproc import InProcessTransport

    pidfile = tmp_path / "child.pid"
    command = f"sleep 30 & echo $! > {pidfile}; wait"
    plan = write_plan(tmp_path, shell_plan([{"id": "long", "command": command}]))
    agent = ShellAgent(plan.agents[0], InProcessTransport(), workspace=tmp_path, heartbeat_interval=0.1)
    execution = asyncio.create_task(agent.execute(TaskAssignPayload(task_id="long", attempt=1, command=command)))
    while not _child_running(str(pidfile)):  # a loop turn forks the shell; its pipes come later
        await asyncio.sleep(0)
    for _ in range(500):  # without yielding to the loop: the spawn cannot finish meanwhile
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.01)
    child = int(pidfile.read_text())
    execution.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(execution, 10)
    assert await _dies(child), "a cancel during the spawn left the command's child running"


def _child_running(fragment: str) -> bool:
    """Whether a child of this process has `fragment` in its command line (the command guard's
    watchdog is a child too)."""
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    for pid in children:
        try:
            if fragment.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except FileNotFoundError:
            continue
    return False
