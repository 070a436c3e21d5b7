"""A change made while a path's lock changed hands is judged against the fencing data.

When a holder goes silent, its lease runs out (or it is declared dead) and the path passes to
another agent, but the silent holder's commands may still be writing.  A change then is not
credited to the new holder: it is a conflict naming the superseded lock (its agent, token, task),
until the old holder is heard from again (it kills its superseded commands before it speaks).
A real manager, a real watcher and real files; the serve/agent processes' version of this is in
tests/test_agent_lifecycle.py.
"""

from __future__ import annotations

from pathlib import Path

from test_watch_support import Engine
from engine.events import EventType
from engine.protocol import MANAGER_ID, MessageType, make_message


async def test_a_change_after_a_lease_ran_out_is_a_conflict_naming_the_silent_holder_until_it_speaks(
    tmp_path: Path,
) -> None:
    async with Engine(tmp_path, {"f.txt": "base\n"}) as engine:
        manager = engine.manager
        for agent in ("alice", "bob"):
            await manager.handle_ipc_message(make_message(MessageType.AGENT_READY, agent, MANAGER_ID, {}))
        short = {"resourceId": "f.txt", "lockType": "write", "ttl": 200}
        await manager.handle_ipc_message(make_message(MessageType.RESOURCE_LOCK, "alice", MANAGER_ID, short))
        [old] = manager.locks.grants_of("alice")
        await engine.until(lambda: not manager.locks.grants_of("alice"), what="alice's lease to run out")
        wait = {"resourceId": "f.txt", "lockType": "write", "waitMs": 5000}
        await manager.handle_ipc_message(make_message(MessageType.RESOURCE_LOCK, "bob", MANAGER_ID, wait))
        await engine.until(lambda: manager.locks.grants_of("bob"), what="bob's grant after the lock-delay")

        engine.write("f.txt", "written by alice's leftover command\n")
        await engine.until(lambda: engine.file("f.txt").status == "conflict", what="the conflict")
        conflict = engine.file("f.txt").conflict
        assert conflict.reason == "superseded_holder"
        assert conflict.holders[0].agent_id == "alice" and conflict.holders[0].token == old.token
        assert f"alice's write lock (token {old.token})" in conflict.detail and "bob holds it now" in conflict.detail
        assert engine.file("f.txt").modified_by is None

        manager.op_accept_file("f.txt")
        await manager.handle_ipc_message(make_message(MessageType.HEARTBEAT, "alice", MANAGER_ID, {}))
        engine.write("f.txt", "written by bob\n")
        await engine.until(lambda: engine.file("f.txt").modified_by == "bob", what="bob's change credited")
        assert engine.file("f.txt").status == "modified"
        assert [e.data["conflict"]["reason"] for e in engine.of(EventType.FILE_CHANGED) if e.data.get("conflict")] == [
            "superseded_holder"]
