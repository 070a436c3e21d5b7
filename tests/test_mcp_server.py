"""`sprintdeck mcp`, the MCP server a Claude Code session works through, against a real manager.

A real SprintManager serves the plan on a Unix socket (the `served` harness of
test_agent_sessions); the MCP server connects to it as the agent, exactly as it does under Claude
Code.  The tools are called through the official SDK's client: in memory against the server
object, and as a `sprintdeck mcp` subprocess over stdio, which is then closed or killed to see the
manager notice.  Assertions read what the operator sees (the manager's state, the journal) and
what the model reads (the tools' answers).  No assertion is on time; guards fail instead of hanging.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from app.mcp_agent import AgentLink
from app.mcp_identity import identity_from
from app.mcp_server import TOOL_NAMES, build_server
from conftest import ROOT
from test_agent_sessions import GUARD, Served, served, short_dir, until
from test_architecture import Rules, imports_of, module_files

__all__ = ["short_dir"]  # the fixture, used by name


def sprint(heartbeat: str = "1s", timeout: str = "60s") -> dict[str, Any]:
    """backend does `api` work, one task at a time; frontend does `ui` work once the API exists."""
    return {
        "sprint": "mcp",
        "settings": {"heartbeat_interval": heartbeat, "heartbeat_timeout": timeout, "lock_ttl": "60s"},
        "agents": [
            {"id": "backend", "kind": "external", "capabilities": ["api"], "max_concurrent_tasks": 1},
            {"id": "frontend", "kind": "external", "capabilities": ["ui"]},
        ],
        "tasks": [
            {"id": "api-routes", "title": "Add the API routes", "requires": ["api"], "resources": ["src/api.py"]},
            {"id": "ui-page", "title": "The page that calls them", "requires": ["ui"], "depends_on": ["api-routes"]},
            {"id": "api-docs", "requires": ["api"], "depends_on": ["api-routes"]},
        ],
    }


def environment(deck: Served, agent_id: str) -> dict[str, str]:
    return {"SPRINTDECK_AGENT_ID": agent_id, "SPRINTDECK_CONNECT": str(deck.address),
            "SPRINTDECK_TOKEN": f"token-{agent_id}"}


@dataclass
class Agent:
    """One MCP session: the SDK's client and the agent link behind the server."""

    client: Client
    link: AgentLink

    async def call(self, tool: str, **arguments: Any) -> str:
        """The answer of a call that must succeed."""
        result = await asyncio.wait_for(self.client.call_tool(tool, arguments), GUARD)
        text = "".join(getattr(block, "text", "") for block in result.content)
        assert not result.is_error, text
        return text

    async def refused(self, tool: str, **arguments: Any) -> str:
        """The error text of a call that must be refused."""
        result = await asyncio.wait_for(self.client.call_tool(tool, arguments), GUARD)
        text = "".join(getattr(block, "text", "") for block in result.content)
        assert result.is_error, text
        assert "Traceback" not in text
        return text

    async def json(self, tool: str, **arguments: Any) -> Any:
        return json.loads(await self.call(tool, **arguments))


@asynccontextmanager
async def session(environ: dict[str, str], *, connected: bool = True) -> AsyncIterator[Agent]:
    """An MCP server for the agent `environ` names, with an in-memory client connected to it."""
    link = AgentLink(identity_from(environ), give_up_after=GUARD)
    link.start()
    try:
        async with Client(build_server(link)) as client:
            if connected:
                await until(lambda: link.client is not None and link.client.connected, "the link connected")
            yield Agent(client, link)
    finally:
        await link.stop()


async def assigned(agent: Agent, task_id: str, attempt: int = 1) -> None:
    def known() -> bool:
        agent.link.catch_up()
        work = agent.link.assignments.get(task_id)
        return work is not None and work.attempt == attempt
    await until(known, f"{agent.link.agent_id} has {task_id} attempt {attempt}")


# ---------------------------------------------------------------- in memory, real manager


async def test_whoami_names_the_agent_its_assignment_its_locks_and_how_to_work(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck, session(environment(deck, "backend")) as backend:
        await assigned(backend, "api-routes")
        me = await backend.json("whoami")
        assert (me["agentId"], me["sprint"], me["capabilities"]) == ("backend", "mcp", ["api"])
        assert me["assignments"] == [{"taskId": "api-routes", "attempt": 1, "title": "Add the API routes", "status": "assigned"}]
        assert me["locks"] == [{"path": "src/api.py", "mode": "write", "task": "api-routes"}]
        assert me["workspace"] == str(short_dir / "ws")
        assert "acquire_lock" in me["howToWork"] and "complete_task" in me["howToWork"]


async def test_the_session_named_in_the_environment_is_bound_to_the_agent(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck, \
            session(environment(deck, "backend") | {"SPRINTDECK_SESSION": "S-one"}):
        await until(lambda: deck.agent("backend").session == "S-one", "backend bound to session S-one")


async def test_a_second_claude_code_session_as_the_same_agent_is_refused_and_the_first_keeps_working(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck, \
            session(environment(deck, "backend") | {"CLAUDE_CODE_SESSION_ID": "S-first"}) as first:
        await until(lambda: deck.agent("backend").session == "S-first", "backend bound to S-first")
        async with session(environment(deck, "backend") | {"CLAUDE_CODE_SESSION_ID": "S-second"},
                           connected=False) as second:
            await until(lambda: second.link.problem is not None, "the second session refused")
            answer = await second.refused("whoami")
            assert "S-first" in answer and "another agent of the plan" in answer and "token" not in answer
        assert first.link.client is not None and first.link.client.connected  # not taken over
        assert "backend" in await first.call("whoami")
        assert deck.agent("backend").session == "S-first"


async def test_list_tasks_shows_status_owner_dependencies_and_what_each_waits_for(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck, session(environment(deck, "frontend")) as frontend:
        await until(lambda: deck.task("api-routes").status == "ready", "api-routes ready")
        listing = await frontend.json("list_tasks")
        rows = {row["id"]: row for row in listing["tasks"]}
        assert rows["ui-page"]["status"] == "pending" and rows["ui-page"]["dependsOn"] == ["api-routes"]
        assert rows["ui-page"]["waitingFor"] == ["task api-routes (ready)"]
        assert "youCanClaim" not in rows["api-routes"]  # frontend cannot do api work
        assert listing["you"] == "frontend" and listing["counts"] == {"ready": 1, "pending": 2}


async def test_claiming_ones_own_task_is_an_answer_and_a_refused_claim_says_why(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck, session(environment(deck, "backend")) as backend, \
            session(environment(deck, "frontend")) as frontend:
        await assigned(backend, "api-routes")
        assert (await backend.call("claim_task", task_id="api-routes")).startswith("Task api-routes is yours (attempt 1")
        assert "only a ready task can be claimed" in await backend.refused("claim_task", task_id="api-docs")
        taken = await frontend.refused("claim_task", task_id="api-routes")
        assert "to backend" in taken and "claim another task or message them" in taken
        unknown = await frontend.refused("claim_task", task_id="nope")
        assert "unknown task 'nope'" in unknown and "list_tasks" in unknown


async def test_a_lock_is_granted_a_conflict_names_holder_and_task_and_a_waiter_gets_it_on_release(
    short_dir: Path,
) -> None:
    async with served(short_dir, sprint()) as deck, session(environment(deck, "backend")) as backend, \
            session(environment(deck, "frontend")) as frontend:
        await assigned(backend, "api-routes")
        granted = await backend.call("acquire_lock", paths=["src/shared.py"])
        assert granted.startswith("Granted: write lock on src/shared.py (token ") and "for task api-routes" in granted
        assert deck.holders("src/shared.py") == ["backend"]

        conflict = await frontend.refused("acquire_lock", paths=["src/shared.py"])
        assert conflict.endswith(
            "src/shared.py is locked for writing by backend for task api-routes; work on other files, "
            "call acquire_lock with wait_seconds to queue, or send_message to backend"
        )

        waiting = asyncio.create_task(frontend.call("acquire_lock", paths=["src/shared.py"], wait_seconds=GUARD))
        await until(lambda: any(w.agent_id == "frontend" for _, w in deck.manager.state.meta.waiters), "frontend queued")
        assert await backend.call("release_lock", paths=["src/shared.py"]) == "Released src/shared.py."
        assert (await asyncio.wait_for(waiting, GUARD)).startswith("Granted: write lock on src/shared.py")
        assert deck.holders("src/shared.py") == ["frontend"]
        assert "holds no lock on 'src/shared.py'" in await backend.refused("release_lock", paths=["src/shared.py"])


async def test_progress_and_a_fenced_completion_reach_the_manager_and_the_journal(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck, session(environment(deck, "backend")) as backend:
        await assigned(backend, "api-routes")
        assert await backend.call("report_progress", message="routes drafted", fraction=0.5) == \
            "Progress on api-routes recorded (50% done)."
        task = deck.task("api-routes")
        assert (task.status, task.progress, task.last_output) == ("running", 0.5, "routes drafted")

        await backend.call("acquire_lock", paths=["src/routes/extra.py"])
        done = await backend.call("complete_task", summary="added GET/POST /api/v1/items")
        assert done.startswith("Task api-routes is completed. It unblocked api-docs, ui-page.")
        assert "Released your locks on src/api.py, src/routes/extra.py." in done  # the task's and its own
        assert deck.task("api-routes").status == "completed"
        assert deck.holders("src/api.py") == deck.holders("src/routes/extra.py") == []
        assert [e["taskId"] for e in deck.events("task_completed")] == ["api-routes"]
        sent = [e["message"] for e in deck.events("message") if e["message"]["type"] == "task_complete"]
        assert sent[0]["payload"]["result"] == "added GET/POST /api/v1/items"
        assert sorted(ref["resourceId"] for ref in sent[0]["payload"]["locks"]) == ["src/api.py", "src/routes/extra.py"]
        assert all(ref["token"] and ref["lockId"] for ref in sent[0]["payload"]["locks"])  # the fencing


async def test_a_failed_task_is_retried_and_the_new_attempt_reaches_the_agent(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck, session(environment(deck, "backend")) as backend:
        await assigned(backend, "api-routes")
        answer = await backend.call("fail_task", error="the schema is not there yet")
        assert answer == ("Task api-routes attempt 1 is recorded as failed; the manager will retry it. "
                          "Released your locks on src/api.py.")
        assert deck.task("api-routes").failures == 1
        assert [e["error"] for e in deck.events("task_failed")] == ["the schema is not there yet"]
        await assigned(backend, "api-routes", attempt=2)
        assert (await backend.json("whoami"))["assignments"][0]["attempt"] == 2


async def test_a_completion_whose_lock_was_taken_away_is_refused_by_its_fencing(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck, session(environment(deck, "backend")) as backend:
        await assigned(backend, "api-routes")
        await backend.call("acquire_lock", paths=["src/shared.py"])
        (lock,) = [lock for lock in deck.manager.state.locks.values() if lock.resource_id == "src/shared.py"]
        deck.manager.op_force_release(lock.lock_id)  # the operator takes it away ("u" on the dashboard)
        refused = await backend.refused("complete_task", summary="done")
        assert "the manager refused to complete api-routes" in refused
        assert f"lock {lock.lock_id} on src/shared.py (token {lock.token}) is no longer held" in refused
        assert deck.task("api-routes").status != "completed" and deck.task("api-routes").failures == 1
        await assigned(backend, "api-routes", attempt=2)  # retried: the work is done again, under valid locks


async def test_work_the_operator_takes_back_and_gives_again_is_announced_in_the_inbox(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck, session(environment(deck, "backend")) as backend:
        await assigned(backend, "api-routes")
        deck.manager.op_reassign("api-routes", "backend")  # "r" on the dashboard: a fresh attempt
        await assigned(backend, "api-routes", attempt=2)
        notes = [(m["type"], m["text"]) for m in (await backend.json("read_inbox"))["messages"]]
        assert notes == [
            ("task_assign", "the manager assigned you task api-routes (attempt 1): Add the API routes"),
            ("task_cancel", "the manager took task api-routes back: operator; stop working on it"),
            ("task_assign", "the manager assigned you task api-routes (attempt 2): Add the API routes"),
        ]


async def test_a_message_reaches_another_agents_inbox_and_so_does_a_request_for_help(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck, session(environment(deck, "backend")) as backend, \
            session(environment(deck, "frontend")) as frontend:
        assert await backend.call("send_message", to="frontend", text="routes are at /api/v1") == "Sent to frontend."
        await until(lambda: _has_mail(frontend), "frontend got the message")
        inbox = (await frontend.json("read_inbox"))["messages"]
        assert [(m["from"], m["type"], m["text"]) for m in inbox] == [("backend", "message", "routes are at /api/v1")]
        assert (await frontend.json("read_inbox")) == {"messages": [], "note": "no new messages"}

        asked = await frontend.call("request_assistance", topic="item schema", details="which fields are required?")
        assert asked == "Asked every agent for help with 'item schema'. Answers arrive in read_inbox."
        await until(lambda: _has_mail(backend, "request_assistance"), "backend got the request")
        help_wanted = [m for m in (await backend.json("read_inbox"))["messages"] if m["type"] == "request_assistance"]
        assert help_wanted[0]["from"] == "frontend" and help_wanted[0]["text"] == "item schema: which fields are required?"

        nobody = await backend.refused("send_message", to="nobody", text="hello")
        assert "there is no agent 'nobody' in this sprint; the other agents are: frontend (or broadcast)" in nobody


def _has_mail(agent: Agent, kind: str = "message") -> bool:
    agent.link.catch_up()
    return any(note.kind == kind for note in agent.link.notes)


# ---------------------------------------------------------------- tool errors are sentences


async def test_unknown_tasks_and_paths_outside_the_workspace_are_sentences(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck, session(environment(deck, "backend")) as backend:
        await assigned(backend, "api-routes")
        unknown = await backend.refused("complete_task", summary="x", task_id="nope")
        assert "task nope is not assigned to you (your tasks: api-routes)" in unknown and "list_tasks" in unknown
        assert "leaves the workspace" in await backend.refused("acquire_lock", paths=["../outside.py"])
        outside = await backend.refused("acquire_lock", paths=["/etc/passwd"])
        assert "/etc/passwd is outside the workspace" in outside and "relative to the workspace root" in outside
        inside = await backend.call("acquire_lock", paths=[str(short_dir / "ws" / "src" / "b.py")])
        assert inside.startswith("Granted: write lock on src/b.py")  # Claude Code's absolute paths work
        assert "between 0 and 1" in await backend.refused("report_progress", message="x", fraction=2)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({}, "SPRINTDECK_AGENT_ID is not set"),
        ({"SPRINTDECK_AGENT_ID": "backend"}, "SPRINTDECK_CONNECT is not set"),
        ({"SPRINTDECK_AGENT_ID": "backend", "SPRINTDECK_CONNECT": "pigeon:coop"}, "SPRINTDECK_CONNECT is wrong"),
        ({"SPRINTDECK_AGENT_ID": "backend", "SPRINTDECK_CONNECT": "unix:/tmp/x.sock"}, "SPRINTDECK_TOKEN_FILE"),
        ({"SPRINTDECK_AGENT_ID": "backend", "SPRINTDECK_CONNECT": "unix:/tmp/x.sock",
          "SPRINTDECK_TOKEN_FILE": "/nonexistent/tokens.json"}, "does not exist"),
    ],
)
async def test_without_its_environment_every_tool_answers_with_what_is_missing(environ: dict[str, str], named: str) -> None:
    arguments = {"claim_task": {"task_id": "t"}, "acquire_lock": {"paths": ["a"]}, "release_lock": {"paths": ["a"]},
                 "report_progress": {"message": "m"}, "complete_task": {"summary": "s"}, "fail_task": {"error": "e"},
                 "send_message": {"to": "x", "text": "t"}, "request_assistance": {"topic": "t"}}
    async with session(environ, connected=False) as agent:
        assert sorted(tool.name for tool in (await agent.client.list_tools()).tools) == sorted(TOOL_NAMES)
        for name in TOOL_NAMES:
            assert named in await agent.refused(name, **arguments.get(name, {}))


async def test_a_refused_token_is_a_sentence(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck:
        environ = environment(deck, "backend") | {"SPRINTDECK_TOKEN": "wrong"}
        async with session(environ, connected=False) as agent:
            await until(lambda: agent.link.problem is not None, "the handshake refused")
            refused = await agent.refused("whoami")
            assert "refused agent 'backend'" in refused and "SPRINTDECK_TOKEN" in refused


# ---------------------------------------------------------------- `sprintdeck mcp` over stdio


@asynccontextmanager
async def stdio_session(environ: dict[str, str], log: Path) -> AsyncIterator[Agent]:
    """`sprintdeck mcp` as Claude Code starts it: a subprocess speaking MCP on its stdin/stdout."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "app.cli", "mcp"], cwd=ROOT,
                                   env=environ | {"PYTHONPATH": str(ROOT)})
    with log.open("w") as errlog:
        # mode="legacy": the initialize handshake, as Claude Code does it.
        async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:  # type: ignore[arg-type]
            yield Agent(client, AgentLink(identity_from({})))


async def ready(agent: Agent) -> dict[str, Any]:
    """whoami, once the subprocess has connected to the manager."""
    async with asyncio.timeout(GUARD):
        while (result := await agent.client.call_tool("whoami", {})).is_error:
            await asyncio.sleep(0.05)
    return dict(json.loads("".join(getattr(block, "text", "") for block in result.content)))


def mcp_children() -> list[int]:
    """This process's `sprintdeck mcp` children (the SDK does not hand out the pid)."""
    pids = []
    for children in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
        for pid in children.read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"app.cli" in cmdline and b"mcp" in cmdline:
                pids.append(int(pid))
    return pids


async def test_over_stdio_the_tools_answer_and_closing_stdin_leaves_the_sprint(short_dir: Path) -> None:
    log = short_dir / "mcp.log"
    async with served(short_dir, sprint()) as deck:
        async with stdio_session(environment(deck, "backend"), log) as backend:
            assert sorted(tool.name for tool in (await backend.client.list_tools()).tools) == sorted(TOOL_NAMES)
            assert (await ready(backend))["agentId"] == "backend"
            assert (await backend.call("acquire_lock", paths=["src/x.py"], mode="exclusive")).startswith("Granted")
            assert deck.holders("src/x.py") == ["backend"]
            assert await backend.call("release_lock", paths=["src/x.py"]) == "Released src/x.py."
            assert deck.holders("src/x.py") == []
        await until(lambda: deck.agent("backend").status == "dead", "backend left")
        assert deck.events("agent_dead")[-1]["reason"] == "left: Claude Code closed its MCP server"
        assert deck.task("api-routes").status in ("ready", "assigned") and deck.task("api-routes").agent_deaths == 1
    text = log.read_text()
    assert "connected to the sprint manager" in text and "Traceback" not in text


async def test_a_killed_mcp_server_stops_heartbeating_and_the_manager_requeues_its_task(short_dir: Path) -> None:
    async with served(short_dir, sprint(heartbeat="300ms", timeout="1s")) as deck:
        async with stdio_session(environment(deck, "backend"), short_dir / "mcp.log") as backend:
            while not (await ready(backend))["assignments"]:
                await asyncio.sleep(0.05)
            (pid,) = mcp_children()
            await until(lambda: len(heartbeats(deck, "backend")) >= 3, "backend heartbeating")
            assert heartbeats(deck, "backend")[-1]["payload"]["tasks"] == ["api-routes"]
            os.kill(pid, signal.SIGKILL)
            await until(lambda: deck.agent("backend").status == "dead", "backend declared dead")
        dead = deck.events("agent_dead")[-1]
        assert dead["agentId"] == "backend" and dead["requeuedTasks"] == ["api-routes"]
        assert not dead["reason"].startswith("left")  # no goodbye: the heartbeats stopped
        assert deck.task("api-routes").agent_deaths == 1 and deck.holders("src/api.py") == []


async def test_sigterm_leaves_the_sprint_in_good_order(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck:
        async with stdio_session(environment(deck, "backend"), short_dir / "mcp.log") as backend:
            await ready(backend)
            (pid,) = mcp_children()
            os.kill(pid, signal.SIGTERM)
            await until(lambda: deck.agent("backend").status == "dead", "backend left")
        assert deck.events("agent_dead")[-1]["reason"] == "left: Claude Code stopped its MCP server"


async def test_without_its_environment_the_server_still_starts_and_logs_one_line(short_dir: Path) -> None:
    log = short_dir / "mcp.log"
    async with stdio_session({}, log) as agent:
        assert len((await agent.client.list_tools()).tools) == len(TOOL_NAMES)
        assert "SPRINTDECK_AGENT_ID is not set" in await agent.refused("whoami")
    lines = log.read_text().splitlines()
    assert lines[0].startswith("sprintdeck mcp (no agent): SPRINTDECK_AGENT_ID is not set, so sprintdeck does not know")
    assert [line for line in lines if "SPRINTDECK_AGENT_ID" in line] == lines[:1]  # said once, not per call


def heartbeats(deck: Served, agent_id: str) -> list[dict[str, Any]]:
    return [e["message"] for e in deck.events("message")
            if e["message"]["type"] == "heartbeat" and e["message"]["from"] == agent_id]


# ---------------------------------------------------------------- the SDK stays at the edge


def test_only_the_mcp_server_module_imports_the_sdk() -> None:
    rules = Rules.of(ROOT / "pyproject.toml")
    importers = {name for name, path in module_files(ROOT, rules.packages).items()
                 if any(imported.split(".")[0] == "mcp" for imported in imports_of(name, path, path.name == "__init__.py"))}
    assert importers == {"app.mcp_server"}
    assert all("mcp" in rules.never_imports[package] for package in ("engine", "widgets", "themes"))
