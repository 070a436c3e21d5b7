"""The agent in its own process: after a connection comes back it agrees with the manager.

What either side may have lost while the connection was down - an assignment journaled but never
written, a completion written but never journaled, an attempt moved to another agent - is
settled from the manager's state after the handshake.  The first test plays the manager by hand
over a real socket, so that every case happens for certain; the second shows one of them with the
real `serve` and `agent` processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

from conftest import write_plan
from engine.agents.remote import serve_agent
from engine.models import TaskState
from engine.protocol import MANAGER_ID, IPCMessage, make_message, parse_message, reply_to
from engine.transports.client import SocketClient
from test_serve import GUARD, agent, listening_on, run_dir, serve  # noqa: F401 (run_dir is a fixture)
from test_socket_transport import TOKENS, Bus, drain_into, make_address, short_dir, start_bus, until  # noqa: F401


def assign(task_id: str, attempt: int, command: str) -> IPCMessage:
    return make_message(
        "task_assign", MANAGER_ID, "agent-a", {"taskId": task_id, "attempt": attempt, "command": command}
    )


def task(task_id: str, status: str, attempt: int, agent_id: str, command: str = "true") -> dict[str, Any]:
    return TaskState(id=task_id, status=status, attempt=attempt, agent=agent_id, command=command).model_dump(mode="json")


async def next_of(bus: Bus, kind: str, seen: list[IPCMessage], **payload: Any) -> IPCMessage:
    """The first message of `kind` (with these payload values) the manager's inbox has received."""

    def match(message: IPCMessage) -> bool:
        return message.type == kind and all(getattr(message.payload, k) == v for k, v in payload.items())

    await until(lambda: any(match(m) for m in drain_into(bus.manager, seen)), kind)
    return next(m for m in seen if match(m))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_after_a_reconnect_the_agent_resends_adopts_and_stops(short_dir: Path) -> None:
    workspace = short_dir / "ws"
    workspace.mkdir()
    address = make_address("unix", short_dir)
    first = await start_bus(address, manager=True)
    client = SocketClient(address, "agent-a", token=lambda: TOKENS["agent-a"], give_up_after=GUARD)
    serving = asyncio.create_task(serve_agent(client, simulate=False, workspace=workspace))
    try:
        seen: list[IPCMessage] = []
        request = await next_of(first, "state_request", seen)
        await first.transport.send(reply_to(request, "state_sync", {"version": 1, "state": {"tasks": {}, "locks": {}}}))
        await first.transport.send(assign("t1", 1, "echo one >> one.txt"))
        await next_of(first, "task_complete", seen, task_id="t1")
        await first.transport.send(assign("t3", 1, "sleep 30 & echo $! > t3.pid; wait"))
        await until(lambda: (workspace / "t3.pid").exists() and (workspace / "t3.pid").read_text().strip() != "", "t3 runs")
        sleeper = int((workspace / "t3.pid").read_text())

        await first.transport.close()  # the server dies: t1's completion never reached its journal
        second = await start_bus(address, manager=True)
        seen = []
        request = await next_of(second, "state_request", seen)
        state = {
            "tasks": {
                "t1": task("t1", "running", 1, "agent-a"),  # completed here, not there
                "t2": task("t2", "assigned", 1, "agent-a", "echo two >> two.txt"),  # assigned, never delivered
                "t3": task("t3", "assigned", 2, "agent-b"),  # given to someone else meanwhile
            },
            "locks": {},
        }
        await second.transport.send(reply_to(request, "state_sync", {"version": 9, "state": state}))
        resent = await next_of(second, "task_complete", seen, task_id="t1")
        assert resent.payload.attempt == 1
        await next_of(second, "task_complete", seen, task_id="t2")
        assert (workspace / "two.txt").read_text() == "two\n"
        await until(lambda: not alive(sleeper), "t3's command to be killed")
        # The assignment the server kept arrives after all: it is the same attempt, run once.
        await second.transport.send(assign("t2", 1, "echo two >> two.txt"))
        await second.transport.finish()
        agent_ = await asyncio.wait_for(serving, GUARD)
    finally:
        serving.cancel()
        await client.close()
    assert (workspace / "two.txt").read_text() == "two\n" and (workspace / "one.txt").read_text() == "one\n"
    assert not any(m.type in ("task_complete", "task_failed") and m.payload.task_id == "t3" for m in seen)
    assert agent_ is not None and agent_.finished_tasks == ["t1", "t2"]


def test_an_assignment_lost_with_its_connection_is_taken_up_by_the_agent(run_dir: Path) -> None:
    """serve assigns to a connection that vanishes; the agent that connects next runs the task once."""
    write_plan(run_dir, {
        "sprint": "lost",
        "settings": {"heartbeat_interval": "100ms", "heartbeat_timeout": "20s"},
        "agents": [{"id": "solo", "kind": "external"}],
        "tasks": [{"id": "only", "command": "echo ran >> ran.txt", "resources": ["ran.txt"]}],
    })
    journal, workspace = run_dir / "run.jsonl", run_dir / "ws"
    server = serve(run_dir / "plan.yaml", f"unix:{run_dir}/s/d.sock", run_dir, "--record", str(journal),
                   "--workspace", str(workspace))
    solo = None
    try:
        address = listening_on(server)
        token = (run_dir / "run.tokens/solo.token").read_text().strip()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(GUARD)
            sock.connect(address.removeprefix("unix:"))
            lines = sock.makefile("rb")
            sock.sendall(make_message("agent_ready", "solo", MANAGER_ID, {"token": token}).wire().encode() + b"\n")
            while (message := parse_message(lines.readline())).type != "task_assign":
                pass
        assert message.payload.task_id == "only"  # and then the connection is gone, unanswered
        solo = agent(address, "solo", run_dir / "run.tokens", run_dir)
        out = server.finish()
        done = solo.finish()
    finally:
        server.kill()
        if solo is not None:
            solo.kill()
    assert out.returncode == 0, out.stderr
    assert done.returncode == 0 and "taking up only attempt 1" in done.stderr, done.stderr
    only = json.loads(out.stdout)["state"]["tasks"]["only"]
    assert (only["status"], only["attempt"], only["agent"]) == ("completed", 1, "solo")
    assert (workspace / "ran.txt").read_text() == "ran\n"
