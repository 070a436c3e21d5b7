"""What a Claude Code agent needs of the manager, over a real socket: one session per agent, side
channels for its hook calls, claiming work, leaving in good order, what it spent, waiting for a human.

A real SprintManager serves a plan of external agents on a Unix socket; the agents are
SocketClients, as the hook and the MCP server are.  Each test reads what the operator would see:
the manager's state and the journal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from conftest import write_plan
from engine.journal import JournalWriter, read_journal
from engine.manager import SprintManager
from engine.protocol import MANAGER_ID, IPCMessage, make_message
from engine.resume import sprint_manager
from engine.transports.address import Address, bound_address, listen, parse_address
from engine.transports.client import HandshakeRefused, SocketClient
from engine.transports.socket import SocketTransport
from test_bus import drain
from test_socket_transport import short_dir  # noqa: F401 (a fixture: a short directory for sockets)

GUARD = 10.0


def plan_of(**agent_limits: Any) -> dict[str, Any]:
    """alpha and beta do `api` work one task at a time; gamma only `db`; heartbeats are not at issue."""
    return {
        "sprint": "sessions",
        "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "60s", "lock_ttl": "60s"},
        "agents": [
            {"id": "alpha", "kind": "external", "capabilities": ["api"], "max_concurrent_tasks": 1},
            {"id": "beta", "kind": "external", "capabilities": ["api"], "max_concurrent_tasks": 1},
            {"id": "gamma", "kind": "external", "capabilities": ["db"]},
        ],
        "tasks": [
            {"id": "t1", "requires": ["api"], "resources": ["src/a.py"]},
            {"id": "t2", "requires": ["api"], "resources": ["src/b.py"]},
        ],
    }


@dataclass
class Served:
    manager: SprintManager
    address: Address
    journal: Path
    clients: list[SocketClient] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def join(self, agent_id: str, *, session: str | None = None, channel: str = "agent") -> SocketClient:
        client = SocketClient(self.address, agent_id, token=lambda: f"token-{agent_id}", give_up_after=GUARD,
                              channel=channel, session=session)
        await asyncio.wait_for(client.connect(), GUARD)
        self.clients.append(client)
        self.readers.append(asyncio.create_task(client.run()))
        return client

    def events(self, kind: str) -> list[dict[str, Any]]:
        self.manager.journal.flush_sync()  # type: ignore[union-attr]
        _, records, _ = read_journal(self.journal)
        return [record["data"] for record in records if record["type"] == kind]

    def agent(self, agent_id: str) -> Any:
        return self.manager.state.agents[agent_id]

    def task(self, task_id: str) -> Any:
        return self.manager.state.tasks[task_id]

    def holders(self, path: str) -> list[str]:
        """Who holds a lock on `path`, as the Locks pane lists them."""
        return [lock.agent_id for lock in self.manager.state.locks.values() if lock.resource_id == path]


@asynccontextmanager
async def served(directory: Path, plan_dict: dict[str, Any]) -> AsyncIterator[Served]:
    """The plan's manager on a Unix socket, as `serve` builds it, until the block ends."""
    plan = write_plan(directory, plan_dict)
    address = parse_address(f"unix:{directory}/s/deck.sock", listening=True)
    listener, _ = listen(address)
    address = bound_address(address, listener)
    transport = SocketTransport(listener, address, tokens={a.id: f"token-{a.id}" for a in plan.agents})
    journal_path = directory / "journal.jsonl"
    journal = JournalWriter.create(journal_path, {"sprint": plan.sprint, "planDigest": plan.digest})
    workspace = directory / "ws"
    workspace.mkdir()
    manager = sprint_manager(plan, None, workspace=workspace, journal=journal, transport=transport)
    transport.on_refused = manager.refuse
    await transport.start()
    running = asyncio.create_task(manager.execute_sprint())
    deck = Served(manager, address, journal_path)
    try:
        yield deck
    finally:
        for client in deck.clients:
            await client.close()
        for reader in deck.readers:
            reader.cancel()
        await asyncio.gather(*deck.readers, return_exceptions=True)
        await manager.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await transport.close()
        journal.close()


async def until(condition: Any, what: str) -> None:
    try:
        async with asyncio.timeout(GUARD):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def ask(client: SocketClient, kind: str, payload: dict[str, Any]) -> IPCMessage:
    return await client.request(make_message(kind, client.agent_id, MANAGER_ID, payload), timeout=GUARD)


async def next_assignment(client: SocketClient, inbox: Any) -> IPCMessage:
    while (message := await asyncio.wait_for(inbox.get(), GUARD)).type != "task_assign":
        pass
    return message


# ---------------------------------------------------------------- sessions


async def test_a_session_is_bound_to_its_agent_and_a_second_live_session_is_refused(short_dir: Path) -> None:
    async with served(short_dir, plan_of()) as deck:
        welcome = (await deck.join("alpha", session="S-one")).welcome
        assert welcome["agentId"] == "alpha" and welcome["workspace"] == str(short_dir / "ws")
        await until(lambda: deck.agent("alpha").session == "S-one", "alpha bound to session S-one")
        assert deck.events("agent_session") == [{"agentId": "alpha", "session": "S-one"}]

        with pytest.raises(HandshakeRefused) as refused:
            await deck.join("alpha", session="S-two", channel="requests")
        assert "S-one" in str(refused.value) and "another agent" in str(refused.value)
        assert [r["field"] for r in deck.events("message_rejected")] == ["payload.session"]
        assert deck.agent("alpha").session == "S-one"

        await deck.join("alpha", session="S-one", channel="requests")  # the same session's hook: welcome


async def test_after_the_session_leaves_another_session_may_be_the_agent(short_dir: Path) -> None:
    async with served(short_dir, plan_of()) as deck:
        first = await deck.join("alpha", session="S-one")
        await first.send(make_message("agent_leave", "alpha", MANAGER_ID, {"reason": "session ended"}))
        await until(lambda: deck.agent("alpha").status == "dead", "alpha gone")
        assert deck.agent("alpha").session is None
        await deck.join("alpha", session="S-two")
        await until(lambda: deck.agent("alpha").session == "S-two", "alpha bound to S-two")


async def test_an_agent_id_in_the_payload_must_be_the_sender(short_dir: Path) -> None:
    async with served(short_dir, plan_of()) as deck:
        client = SocketClient(deck.address, "alpha", token=lambda: "token-alpha", give_up_after=GUARD)
        client._hello = {"agentId": "beta"}  # what a confused or hostile client announces
        with pytest.raises(HandshakeRefused, match="payload.agentId|must equal"):
            await asyncio.wait_for(client.connect(), GUARD)


# ---------------------------------------------------------------- side channels


async def test_a_side_channel_gets_its_replies_and_the_agent_keeps_its_assignments(short_dir: Path) -> None:
    async with served(short_dir, plan_of()) as deck:
        main = await deck.join("alpha", session="S")
        inbox = main.subscribe("alpha")
        assignment = await next_assignment(main, inbox)
        hook = await deck.join("alpha", session="S", channel="requests")
        request = make_message("resource_lock", "alpha", MANAGER_ID, {"resourceId": "docs/notes.md", "lockType": "write"})
        reply = await hook.request(request, timeout=GUARD)
        assert reply.type == "resource_lock" and reply.payload.token is not None
        assert deck.holders("docs/notes.md") == ["alpha"]
        await hook.close()  # the hook process ends: the agent is still there, with its lock and task
        await asyncio.sleep(0.2)
        assert deck.agent("alpha").status == "busy"
        assert deck.task(assignment.payload.task_id).status in ("assigned", "running")
        assert deck.holders("docs/notes.md") == ["alpha"]
        assert all(m.correlation_id != request.id for m in drain(inbox))  # the reply went to the hook only


# ---------------------------------------------------------------- claiming work


async def test_claiming_says_why_not_and_a_claim_of_ones_own_task_is_an_answer(short_dir: Path) -> None:
    async with served(short_dir, plan_of()) as deck:
        alpha = await deck.join("alpha")
        first = await next_assignment(alpha, alpha.subscribe("alpha"))
        mine, other = first.payload.task_id, ({"t1", "t2"} - {first.payload.task_id}).pop()

        answer = await ask(alpha, "task_claim", {"taskId": mine})
        assert answer.payload.info == "task_claimed"
        assert answer.payload.data["taskId"] == mine and answer.payload.data["attempt"] == 1

        refused = await ask(alpha, "task_claim", {"taskId": other})
        assert refused.type == "agent_error" and "1 of its 1 task" in refused.payload.error

        gamma = await deck.join("gamma")
        refused = await ask(gamma, "task_claim", {"taskId": other})
        assert refused.type == "agent_error" and "gamma cannot do task" in refused.payload.error and "api" in refused.payload.error

        refused = await ask(gamma, "task_claim", {"taskId": "t9"})
        assert refused.type == "agent_error" and refused.payload.field == "payload.taskId" and "t9" in refused.payload.error

        refused = await ask(gamma, "task_claim", {"taskId": mine})
        assert refused.type == "agent_error" and "to alpha" in refused.payload.error


async def test_an_agent_waiting_for_a_human_gets_no_work_but_may_claim_it(short_dir: Path) -> None:
    plan = plan_of()
    plan["agents"][1]["capabilities"] = ["api", "ui"]
    plan["tasks"][1].update(requires=["ui"], depends_on=["t1"])  # only beta can do t2, after t1
    async with served(short_dir, plan) as deck:
        alpha = await deck.join("alpha")
        assert (await next_assignment(alpha, alpha.subscribe("alpha"))).payload.task_id == "t1"
        beta = await deck.join("beta")
        await beta.send(make_message("agent_busy", "beta", MANAGER_ID, {"reason": "waiting for a human"}))
        await until(lambda: deck.agent("beta").status == "waiting", "beta waiting")
        await alpha.send(make_message("task_complete", "alpha", MANAGER_ID, {"taskId": "t1", "attempt": 1}))
        await until(lambda: deck.task("t2").status == "ready", "t2 ready")
        await asyncio.sleep(0.2)
        assert deck.task("t2").status == "ready"  # not placed on an agent that waits for a human
        answer = await ask(beta, "task_claim", {"taskId": "t2"})
        assert answer.payload.info == "task_claimed" and answer.payload.data["taskId"] == "t2"
        assert deck.task("t2").owners == ["beta"] and deck.task("t2").in_flight
        assert deck.agent("beta").status == "busy"  # acting again: no longer waiting


# ---------------------------------------------------------------- leaving, spending, waiting


async def test_leaving_lets_go_of_locks_at_once_and_the_work_moves_on(short_dir: Path) -> None:
    async with served(short_dir, plan_of()) as deck:
        alpha = await deck.join("alpha")
        taken = (await next_assignment(alpha, alpha.subscribe("alpha"))).payload.task_id
        path = deck.task(taken).resources[0].path
        await until(lambda: deck.holders(path) == ["alpha"], f"alpha holds {path}")
        beta = await deck.join("beta")
        beta_inbox = beta.subscribe("beta")
        other = (await next_assignment(beta, beta_inbox)).payload.task_id
        await alpha.send(make_message("agent_leave", "alpha", MANAGER_ID, {"reason": "session ended"}))
        await until(lambda: deck.agent("alpha").status == "dead", "alpha gone")
        dead = deck.events("agent_dead")[-1]
        assert dead["agentId"] == "alpha" and dead["reason"] == "left: session ended" and dead["requeuedTasks"] == [taken]
        assert deck.holders(path) == []  # and no lock-delay: it is not writing any more
        assert deck.task(taken).status == "ready" and deck.task(taken).agent_deaths == 1
        await beta.send(make_message("task_complete", "beta", MANAGER_ID, {"taskId": other, "attempt": 1}))
        again = await next_assignment(beta, beta_inbox)
        assert (again.payload.task_id, again.payload.attempt) == (taken, 2)


async def test_what_each_run_spent_is_kept_per_agent_and_for_the_sprint(short_dir: Path) -> None:
    async with served(short_dir, plan_of()) as deck:
        alpha = await deck.join("alpha")
        inbox = alpha.subscribe("alpha")
        first = await next_assignment(alpha, inbox)
        usage = {"costUsd": 0.0125, "inputTokens": 1200, "outputTokens": 340}
        await alpha.send(make_message("task_complete", "alpha", MANAGER_ID,
                                      {"taskId": first.payload.task_id, "attempt": 1, "usage": usage}))
        second = await next_assignment(alpha, inbox)
        late = {"costUsd": 0.5, "inputTokens": 10, "outputTokens": 1}
        await alpha.send(make_message("task_failed", "alpha", MANAGER_ID,  # a stale attempt: refused, but spent
                                      {"taskId": second.payload.task_id, "attempt": 7, "error": "x", "usage": late}))
        await until(lambda: deck.agent("alpha").metrics.input_tokens == 1210, "both runs' tokens")
        metrics = deck.agent("alpha").metrics
        assert (metrics.cost_usd, metrics.output_tokens) == (0.5125, 341)
        sprint = deck.manager.metrics()
        assert (sprint.cost_usd, sprint.input_tokens, sprint.output_tokens) == (0.5125, 1210, 341)
        assert [e["costUsd"] for e in deck.events("usage_recorded")] == [0.0125, 0.5]
        dumped = deck.manager.state.model_dump(mode="json", by_alias=True)["agents"]
        assert dumped["alpha"]["metrics"]["costUsd"] == 0.5125
        assert "costUsd" not in dumped["beta"]["metrics"]  # nothing spent: the seed's shape, unchanged


async def test_waiting_for_a_human_is_shown_until_the_agent_acts_again(short_dir: Path) -> None:
    async with served(short_dir, plan_of()) as deck:
        alpha = await deck.join("alpha")
        taken = await next_assignment(alpha, alpha.subscribe("alpha"))
        reason = "waiting for a human: Claude needs your permission to use Bash"
        await alpha.send(make_message("agent_busy", "alpha", MANAGER_ID, {"reason": reason}))
        await until(lambda: deck.agent("alpha").status == "waiting", "alpha waiting")
        assert deck.agent("alpha").status_reason == reason
        await alpha.send(make_message("heartbeat", "alpha", MANAGER_ID, {}))
        await asyncio.sleep(0.1)
        assert deck.agent("alpha").status == "waiting"  # a heartbeat is not the agent acting
        await alpha.send(make_message("task_update", "alpha", MANAGER_ID,
                                      {"taskId": taken.payload.task_id, "attempt": 1, "message": "going on"}))
        await until(lambda: deck.agent("alpha").status == "busy", "alpha working again")
        assert deck.agent("alpha").status_reason is None
        assert [e.get("reason") for e in deck.events("agent_status")][-2:] == [reason, None]


async def test_a_dead_agents_paths_are_free_after_lock_delay_not_after_its_lease(short_dir: Path) -> None:
    plan = plan_of()
    plan["settings"].update(lock_ttl="60s", lock_delay="200ms")
    async with served(short_dir, plan) as deck:
        alpha = await deck.join("alpha")
        taken = (await next_assignment(alpha, alpha.subscribe("alpha"))).payload.task_id
        path = deck.task(taken).resources[0].path
        beta = await deck.join("beta")
        beta_inbox = beta.subscribe("beta")
        other = (await next_assignment(beta, beta_inbox)).payload.task_id
        await beta.send(make_message("task_complete", "beta", MANAGER_ID, {"taskId": other, "attempt": 1}))
        await alpha.send(make_message("agent_leave", "alpha", MANAGER_ID,
                                      {"reason": "its process was killed", "crashed": True}))
        await until(lambda: deck.agent("alpha").status == "dead", "alpha dead")
        assert deck.events("agent_dead")[-1]["reason"] == "its process was killed"  # dead, not "left"
        again = await next_assignment(beta, beta_inbox)  # within the guard: lock-delay, not the 60 s lease
        assert (again.payload.task_id, again.payload.attempt) == (taken, 2)
        assert deck.holders(path) == ["beta"]
