"""What a lock answer promises about the journal (docs/journal.md, "Durability and latency").

A grant is answered only once it is durable; a release is answered without waiting for its own
sync, which is safe because whatever the release lets another agent do is journaled after it and
waits for a sync that covers both.  Checked on a real manager with a real journal file and its
sync thread, from the moment each answer reaches the agent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from conftest import write_plan
from engine.events import Event, EventType
from engine.journal import JournalWriter, read_journal
from engine.manager import SprintManager
from engine.protocol import MANAGER_ID, MessageType, make_message

PLAN = {
    "sprint": "lock-durability",
    "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "60s", "lock_ttl": "60s"},
    "agents": [{"id": "a", "kind": "external"}, {"id": "b", "kind": "external"}],
    "tasks": [{"id": "keep-a", "agent": "a"}, {"id": "keep-b", "agent": "b"}],  # never completed
}


async def test_a_grant_is_durable_when_answered_and_so_is_the_release_it_followed(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, PLAN)
    journal = JournalWriter.create(tmp_path / "j.jsonl", {"sprint": plan.sprint, "planDigest": plan.digest})
    workspace = tmp_path / "ws"
    workspace.mkdir()
    manager = SprintManager(plan, workspace=workspace, journal=journal)
    seq_of: dict[tuple[str, str], int] = {}  # (event type, lock id) -> seq

    def note(event: Event) -> None:
        if event.type in (EventType.LOCK_GRANTED, EventType.LOCK_RELEASED):
            seq_of[(event.type.value, event.data["lockId"])] = event.seq

    manager.subscribe(note)
    transport = manager.transport
    for agent_id in ("a", "b"):
        transport.subscribe(agent_id)
    sprint = asyncio.create_task(manager.execute_sprint())
    await asyncio.sleep(0.05)

    def lock(agent: str, path: str) -> asyncio.Task:
        payload = {"resourceId": path, "lockType": "write", "waitMs": 10_000}  # queue behind a holder
        return asyncio.create_task(transport.request(
            make_message(MessageType.RESOURCE_LOCK, agent, MANAGER_ID, payload), timeout=10))

    async def unlock(agent: str, path: str, lock_id: str) -> None:
        await transport.request(make_message(MessageType.RESOURCE_UNLOCK, agent, MANAGER_ID,
                                             {"resourceId": path, "lockId": lock_id}), timeout=10)

    handed_over = 0
    for round_no in range(40):
        path = f"src/f{round_no % 5}.py"
        granted_a = await lock("a", path)
        a_id = granted_a.payload.lock_id
        assert journal.durable_seq >= seq_of[("lock_granted", a_id)]  # durable before the answer
        waiting_b = lock("b", path)
        await asyncio.sleep(0.002)  # b's request is queued behind a's lock
        await unlock("a", path, a_id)
        granted_b = await waiting_b
        b_id = granted_b.payload.lock_id
        # b hears of its grant only once a's release, journaled before it, is on disk too.
        assert journal.durable_seq >= seq_of[("lock_granted", b_id)] > seq_of[("lock_released", a_id)]
        assert granted_b.payload.token > granted_a.payload.token
        handed_over += 1
        await unlock("b", path, b_id)

    assert handed_over == 40
    sprint.cancel()
    await manager.stop()
    journal.close()
    _, records, _ = read_journal(journal.path)
    released = [r for r in records if r["type"] == "lock_released"]
    assert len(released) == 80  # every release answered early is in the journal after all
