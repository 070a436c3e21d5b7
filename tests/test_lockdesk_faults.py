"""A failure between a lock decision and its commit leaves no grant anywhere.

Between deciding a grant and committing it, the lock desk has the file guard settle and keep the
paths, then records `lock_granted` (the reducer folds it, the journal appends it).  Each of those
steps is made to raise once, for a request granted at once, for one woken from the queue and for a
task's attempt, with one path and with several (the failure on the second grant: the first was
already recorded).  Afterwards no grant exists in the desk, in `ProjectState.locks` or in the
journal's fold; the refusal is journaled and the requester told; and the path can be locked again.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

import engine.reducer
from engine.events import Event, LockGranted
from engine.journal import JournalWriter, read_journal
from engine.manager import SprintManager
from engine.plan import load_plan
from engine.protocol import MANAGER_ID, IPCMessage, MessageType, make_message
from engine.reducer import fold
from engine.transports.inproc import InProcessTransport

PLAN = {
    "sprint": "faults",
    "workspace": "ws",
    "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "30s"},
    "agents": [
        {"id": "alpha", "kind": "external", "capabilities": ["code"]},
        {"id": "beta", "kind": "external", "capabilities": ["docs"]},
    ],
    "tasks": [{"id": "edit", "agent": "beta", "resources": ["src/a.py", "src/b.py"], "depends_on": ["gate"]},
              {"id": "gate", "agent": "alpha"}],
}


class Fault:
    """Make one step raise once, the `nth` time it handles a lock grant."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, manager: SprintManager, step: str, nth: int) -> None:
        self.left = nth
        self.fired = False
        if step == "file guard":
            original = manager.files.before_grants
            monkeypatch.setattr(manager.files, "before_grants", self._wrap(original, lambda *a: True))
        elif step == "emit":
            original = engine.reducer._HANDLERS[LockGranted]
            monkeypatch.setitem(engine.reducer._HANDLERS, LockGranted, self._wrap(original, lambda *a: True))
        else:
            journal = manager.journal
            assert journal is not None
            monkeypatch.setattr(journal, "append", self._wrap(journal.append, lambda seq, kind, *a: kind == "lock_granted"))

    def _wrap(self, original, counts):
        def faulty(*args):
            if not self.fired and counts(*args):
                self.left -= 1
                if self.left == 0:
                    self.fired = True
                    raise OSError("injected fault")
            return original(*args)

        return faulty


class Rig:
    def __init__(self, root: Path) -> None:
        (root / "plan.yaml").write_text(yaml.safe_dump(PLAN))
        for name in ("a.py", "b.py"):
            (root / "ws" / "src").mkdir(parents=True, exist_ok=True)
            (root / "ws" / "src" / name).write_text(name)
        plan = load_plan(root / "plan.yaml")
        self.journal_path = root / "journal.jsonl"
        self.journal = JournalWriter.create(self.journal_path, {"sprint": plan.sprint, "planDigest": plan.digest})
        self.transport = InProcessTransport()
        self.inboxes = {name: self.transport.subscribe(name) for name in ("alpha", "beta")}
        self.manager = SprintManager(plan, workspace=root / "ws", transport=self.transport, journal=self.journal)
        self.sent = 0

    async def start(self) -> None:
        await self.manager.start()
        for name in self.inboxes:
            await self.send(name, MessageType.AGENT_READY, {})
        await self.settle()

    async def send(self, sender: str, kind: MessageType, payload: dict, **envelope) -> IPCMessage:
        self.sent += 1
        message = make_message(kind, sender, MANAGER_ID, payload, id=f"m{self.sent}", **envelope)
        await self.transport.send(message)
        return message

    async def settle(self) -> None:
        for _ in range(50):
            await asyncio.sleep(0.01)
            if self.journal.durable_seq == self.journal.last_seq and not len(self.manager.mail.inbox):
                await asyncio.sleep(0.02)
                if self.journal.durable_seq == self.journal.last_seq:
                    return

    def next_work(self, agent: str) -> IPCMessage | None:
        """The next message for `agent` that is not the manager's news (a broadcast_info)."""
        inbox = self.inboxes[agent]
        while (message := inbox.get_nowait()) is not None and message.type == MessageType.BROADCAST_INFO:
            pass
        return message

    def replies(self, agent: str, request: IPCMessage) -> list[IPCMessage]:
        found, inbox = [], self.inboxes[agent]
        while (message := inbox.get_nowait()) is not None:
            if message.correlation_id == request.id:
                found.append(message)
        return found

    def journaled(self) -> list[Event]:
        self.journal.flush_sync()
        return [Event.from_record(r) for r in read_journal(self.journal_path)[1]]

    def assert_no_lock_on(self, paths: list[str]) -> None:
        """Nothing held on `paths` in the desk, the state or the journal's fold, and all three agree."""
        desk = {(g.lock_id, g.owner, g.resource_id, g.token) for g in self.manager.locks.grants()}
        state = {(l.lock_id, l.agent_id, l.resource_id, l.token) for l in self.manager.state.locks.values()}
        folded = fold(self.journaled()).locks
        journal = {(l.lock_id, l.agent_id, l.resource_id, l.token) for l in folded.values()}
        assert desk == state == journal
        assert not [lock for lock in desk if lock[2] in paths]


STEPS = ["file guard", "emit", "journal append"]
PATHS = ["src/a.py", "src/b.py"]


@pytest.mark.parametrize("paths", [PATHS[:1], PATHS], ids=["one path", "two paths"])
@pytest.mark.parametrize("step", STEPS)
async def test_a_request_granted_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, paths: list[str]) -> None:
    rig = Rig(tmp_path)
    await rig.start()
    fault = Fault(monkeypatch, rig.manager, step, nth=1 if step == "file guard" else len(paths))
    also = [{"resourceId": p, "lockType": "write"} for p in paths[1:]]
    request = await rig.send("alpha", MessageType.RESOURCE_LOCK, {"resourceId": paths[0], "lockType": "write", "also": also},
                             requires_response=True)
    await rig.settle()
    assert fault.fired
    (reply,) = rig.replies("alpha", request)
    assert reply.type == MessageType.RESOURCE_CONFLICT and "could not grant the lock: injected fault" in reply.payload.reason
    refused = [e.body for e in rig.journaled() if e.type == "lock_refused"]
    assert refused and refused[-1].agent_id == "alpha" and "injected fault" in refused[-1].reason
    rig.assert_no_lock_on(paths)
    again = await rig.send("alpha", MessageType.RESOURCE_LOCK, {"resourceId": paths[0], "lockType": "write", "also": also},
                           requires_response=True)
    await rig.settle()
    (granted,) = rig.replies("alpha", again)
    assert granted.type == MessageType.RESOURCE_LOCK and {g.resource_id for g in granted.payload.grants} == set(paths)
    await rig.manager.stop()


@pytest.mark.parametrize("step", STEPS)
async def test_a_request_woken_from_the_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    rig = Rig(tmp_path)
    await rig.start()
    held = await rig.send("alpha", MessageType.RESOURCE_LOCK, {"resourceId": "src/a.py", "lockType": "exclusive"},
                          requires_response=True)
    await rig.settle()
    (grant,) = rig.replies("alpha", held)
    waiting = await rig.send("beta", MessageType.RESOURCE_LOCK, {"resourceId": "src/a.py", "lockType": "read", "waitMs": 60_000},
                             requires_response=True)
    await rig.settle()
    fault = Fault(monkeypatch, rig.manager, step, nth=1)
    await rig.send("alpha", MessageType.RESOURCE_UNLOCK, {"resourceId": "src/a.py", "lockId": grant.payload.lock_id})
    await rig.settle()
    assert fault.fired
    (reply,) = rig.replies("beta", waiting)
    assert reply.type == MessageType.RESOURCE_CONFLICT and "injected fault" in reply.payload.reason
    assert [e.body.agent_id for e in rig.journaled() if e.type == "lock_refused"] == ["beta"]
    rig.assert_no_lock_on(["src/a.py"])
    assert not rig.manager.state.meta.waiters and not rig.manager.locks.grants()


@pytest.mark.parametrize("step", STEPS)
async def test_a_tasks_attempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """The attempt's two locks fail on the second: the task goes back to ready, nobody told to start."""
    rig = Rig(tmp_path)
    await rig.start()
    gate = rig.next_work("alpha")
    assert gate is not None and gate.payload.task_id == "gate"
    fault = Fault(monkeypatch, rig.manager, step, nth=1 if step == "file guard" else 2)
    await rig.send("alpha", MessageType.TASK_COMPLETE, {"taskId": "gate", "attempt": 1})
    await rig.settle()
    assert fault.fired
    events = rig.journaled()
    requeued = [e.body for e in events if e.type == "task_requeued"]
    assert [(b.task_id, b.reason) for b in requeued] == [("edit", "lock_refused")]
    assert [e.body.agent_id for e in events if e.type == "lock_refused"] == ["beta"]
    assert rig.next_work("beta") is None  # no assignment without its locks
    assert rig.manager.state.tasks["edit"].status == "ready"
    rig.assert_no_lock_on(PATHS)
    released = [e.body.reason for e in events if e.type == "lock_released"]
    assert released == (["grant_failed"] if step != "file guard" else [])  # the first grant, recorded, taken back
    assert json.loads(json.dumps(rig.manager.state.model_dump(mode="json"))) == fold(events).model_dump(mode="json")
    await rig.manager.stop()
