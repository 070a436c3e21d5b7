"""The journal's bytes are a contract: a scripted sprint must journal exactly the recorded lines.

One deterministic session drives a real manager (real journal, real file watcher, real reducer)
through every kind of event it records: grants, queues, refusals, expiry, renewal, death, retries,
cancellation, operator actions, conflicts and their resolutions, rejections, digests, and a crash
and resume on the same journal.  The manager's clocks are fake, agents are scripted through the
in-process transport, and the session waits for each step's effects before taking the next, so
the journal is the same on every run.  It is compared, line by line, with
`tests/golden/journal_format.jsonl`, recorded before the engine was restructured.

Only what is random or machine-specific by design is normalised before comparing: message ids
(64 random bits per process), message timestamps (taken from the wall clock when a message is
built), file modification times, and the order of a scan's files (the file system's listing
order).  Every key, its order and every other value must match.

Regenerate the golden file only for a deliberate change of the journal format:
`SPRINTDECK_WRITE_GOLDEN=1 .venv/bin/pytest tests/test_journal_format.py`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from engine import journal_sync
from engine.journal import JournalWriter, read_journal
from engine.manager import SprintManager
from engine.plan import load_plan
from engine.protocol import MANAGER_ID, IPCMessage, MessageType, make_message
from engine.resume import resume_manager
from engine.transports.inproc import InProcessTransport
from engine.file_index import checksum_bytes
from engine.refusal import Refusal

GOLDEN = Path(__file__).parent / "golden" / "journal_format.jsonl"

PLAN = {
    "sprint": "golden",
    "workspace": "ws",
    "settings": {
        "heartbeat_interval": "1s",
        "heartbeat_timeout": "5s",
        "lock_ttl": "30s",
        "lock_delay": "500ms",
        "max_retries": 1,
    },
    "agents": [
        {"id": "alpha", "kind": "external", "capabilities": ["code"], "max_concurrent_tasks": 2},
        {"id": "beta", "kind": "external", "capabilities": ["code", "docs"], "max_concurrent_tasks": 2},
    ],
    "tasks": [
        {"id": "write_x", "agent": "alpha", "resources": ["src/x.py"], "priority": "high"},
        {"id": "read_x", "agent": "beta", "resources": [{"path": "src/x.py", "mode": "read"}]},
        {"id": "after_x", "agent": "alpha", "depends_on": ["write_x"], "resources": ["src/y.py"]},
        {"id": "pair", "agents": ["alpha", "beta"], "shared_resources": ["docs/pair.md"], "depends_on": ["after_x"]},
        {"id": "flaky", "agent": "beta", "depends_on": ["read_x"], "estimate": 0},
        {"id": "doomed", "agent": "beta", "depends_on": ["flaky"]},
        {"id": "spare", "requires": ["code"], "depends_on": ["pair"], "resources": ["src/z.py"]},
        {"id": "loose", "requires": ["code"], "depends_on": ["write_x"], "priority": "low"},
    ],
}


class Clocks:
    """The manager's monotonic and wall clocks, moved only by the script."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = 1_790_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


class Agent:
    """A scripted external agent on the in-process transport."""

    def __init__(self, agent_id: str, transport: InProcessTransport) -> None:
        self.id = agent_id
        self.transport = transport
        self.inbox = transport.subscribe(agent_id)
        self.count = 0

    async def send(self, kind: str, payload: dict[str, Any], **envelope: Any) -> IPCMessage:
        self.count += 1
        message = make_message(kind, self.id, MANAGER_ID, payload, id=f"{self.id}-{self.count}", **envelope)
        await self.transport.send(message)
        return message

    def received(self) -> list[IPCMessage]:
        messages = []
        while (message := self.inbox.get_nowait()) is not None:
            messages.append(message)
        return messages

    def take(self, kind: str, **payload: Any) -> IPCMessage:
        """The first waiting message of `kind` whose payload has these values (others stay)."""
        kept, found = [], None
        for message in self.received():
            if found is None and message.type == kind and all(getattr(message.payload, k, None) == v for k, v in payload.items()):
                found = message
            else:
                kept.append(message)
        for message in kept:
            self.inbox.put(message)
        assert found is not None, f"{self.id} got no {kind} {payload}; it has {[m.type for m in kept]}"
        return found


class Session:
    def __init__(self, manager: SprintManager, journal: JournalWriter, clocks: Clocks) -> None:
        self.manager = manager
        self.journal = journal
        self.clocks = clocks

    async def quiet(self) -> None:
        """Wait until nothing changes for a while and every event is durable."""
        stable, last = 0, -1
        for _ in range(1000):
            await asyncio.sleep(0.02)
            version = self.manager.state.version
            if version == last and self.journal.durable_seq == self.journal.last_seq:
                stable += 1
                if stable >= 4:
                    return
            else:
                stable, last = 0, version
        raise AssertionError("the manager never went quiet")

    async def until(self, condition, what: str) -> None:
        for _ in range(500):
            if condition():
                await self.quiet()
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}: {[(a.id, a.status, a.last_heartbeat) for a in self.manager.state.agents.values()]}")


def _write(workspace: Path, relative: str, text: str) -> None:
    target = workspace / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


async def _first_run(root: Path, clocks: Clocks) -> Path:
    """Everything but the restart: returns the journal, left as a crash would leave it."""
    plan_path = root / "plan.yaml"
    plan_path.write_text(yaml.safe_dump(PLAN, sort_keys=False))
    workspace = root / "ws"
    for relative, text in {"src/x.py": "x = 1\n", "src/m.py": "one\ntwo\nthree\n", "src/y.py": "y = 1\n", "docs/readme.md": "# readme\n"}.items():
        _write(workspace, relative, text)
    plan = load_plan(plan_path)
    journal_path = root / "journal.jsonl"
    journal = JournalWriter.create(journal_path, {"sprint": plan.sprint, "planDigest": plan.digest, "startedAt": "2026-09-21T00:00:00Z"})
    transport = InProcessTransport()
    alpha, beta = Agent("alpha", transport), Agent("beta", transport)
    manager = SprintManager(
        plan, workspace=workspace, transport=transport, journal=journal,
        clock=lambda: clocks.mono, wall=lambda: clocks.wall, seed=3, speed=1e6,
    )
    s = Session(manager, journal, clocks)
    await manager.start()
    await s.until(lambda: manager.state.files, "the first scan")

    # Agents join; a stranger is registered; manager-only types and unknown senders are refused.
    await alpha.send(MessageType.AGENT_READY, {"capabilities": ["code"], "maxConcurrentTasks": 2})
    await beta.send(MessageType.AGENT_READY, {"capabilities": ["code", "docs"]})
    await s.quiet()
    ghost = Agent("ghost", transport)
    await ghost.send(MessageType.HEARTBEAT, {})
    await ghost.send(MessageType.AGENT_READY, {"capabilities": ["misc"], "specializations": ["none"]})
    await alpha.send(MessageType.TASK_ASSIGN, {"taskId": "write_x", "attempt": 1})
    await s.quiet()

    # write_x (alpha, write on src/x.py) and read_x (beta, read on src/x.py) run side by side.
    write_x = alpha.take(MessageType.TASK_ASSIGN, task_id="write_x")
    read_x = beta.take(MessageType.TASK_ASSIGN, task_id="read_x")
    x_lock = write_x.payload.locks[0]
    await alpha.send(MessageType.TASK_UPDATE, {"taskId": "write_x", "attempt": 1, "progress": 0.0})
    await alpha.send(MessageType.TASK_UPDATE, {"taskId": "write_x", "attempt": 1, "progress": 0.5, "message": "half"})
    await alpha.send(MessageType.HEARTBEAT, {"tasks": ["write_x"], "load": 1})
    new_x = "x = 2\n"
    await alpha.send(
        MessageType.STATE_UPDATE,
        {"path": "src/x.py", "checksum": checksum_bytes(new_x.encode()), "lockId": x_lock.lock_id, "token": x_lock.token},
        requires_response=True,
    )
    await s.quiet()
    _write(workspace, "src/x.py", new_x)
    await s.until(lambda: manager.state.files["src/x.py"].modified_by == "alpha", "alpha's edit")
    _write(workspace, "src/x.py", "x = 3  # unreported\n")  # differs from alpha's report: a conflict after the grace
    await s.until(lambda: manager.state.files["src/x.py"].checksum == checksum_bytes(b"x = 3  # unreported\n"), "the unreported edit")

    # src/m.py: alpha writes under its lock; beta only reads it.  Once alpha lets go, edits are
    # conflicts: a merge with markers leaves one, a revert resolves it, a clean merge too.
    await alpha.send(MessageType.RESOURCE_LOCK, {"resourceId": "src/m.py", "lockType": "write"}, requires_response=True)
    await beta.send(MessageType.RESOURCE_LOCK, {"resourceId": "src/m.py", "lockType": "read"}, requires_response=True)
    await s.quiet()
    _, m_read = alpha.take(MessageType.RESOURCE_LOCK), beta.take(MessageType.RESOURCE_LOCK)
    await beta.send(MessageType.RESOURCE_LOCK, {"resourceId": "src/m.py", "lockType": "exclusive", "waitMs": 50}, requires_response=True)
    await s.until(lambda: any(m.type == MessageType.RESOURCE_CONFLICT for m in beta.received()), "the waitMs refusal")
    _write(workspace, "src/m.py", "one\ntwo\nthree by alpha\n")
    await s.until(lambda: manager.state.files["src/m.py"].modified_by == "alpha", "alpha's edit of m")
    await alpha.send(MessageType.RESOURCE_UNLOCK, {"resourceId": "src/m.py"})
    await s.quiet()
    _write(workspace, "src/m.py", "one\ntwo\nthree by nobody\n")
    await s.until(lambda: manager.state.files["src/m.py"].status == "conflict", "the read-lock conflict")
    assert not manager.op_merge_file("src/m.py").clean
    manager.op_revert_file("src/m.py")
    await s.quiet()
    _write(workspace, "src/m.py", "one by nobody\ntwo\nthree by alpha\n")
    await s.until(lambda: manager.state.files["src/m.py"].status == "conflict", "another conflict")
    assert manager.op_merge_file("src/m.py").clean
    await beta.send(MessageType.RESOURCE_UNLOCK, {"resourceId": "src/m.py", "lockId": m_read.payload.lock_id})
    await s.quiet()

    # An explicit lock: granted, then beta's no-wait request refused, then queued with waitMs.
    await alpha.send(MessageType.RESOURCE_LOCK, {"resourceId": "db:schema", "lockType": "exclusive", "ttl": 400}, requires_response=True)
    await s.quiet()
    db_grant = alpha.take(MessageType.RESOURCE_LOCK)
    await beta.send(MessageType.RESOURCE_LOCK, {"resourceId": "db:schema", "lockType": "read"}, requires_response=True)
    await beta.send(MessageType.RESOURCE_LOCK, {"resourceId": "db:schema", "lockType": "write", "waitMs": 60_000}, requires_response=True)
    await beta.send(MessageType.RESOURCE_LOCK, {"resourceId": "../etc/passwd", "lockType": "read"}, requires_response=True)
    await s.quiet()
    # The lease runs out (nobody heartbeats for it): expiry, then the lock-delay, then beta is woken.
    clocks.advance(0.45)
    await s.until(lambda: db_grant.payload.lock_id not in manager.state.locks, "the lease to expire")
    clocks.advance(0.6)
    await s.until(lambda: any(l.agent_id == "beta" for l in manager.state.locks.values() if l.resource_id == "db:schema"), "beta's grant")
    beta_db = beta.take(MessageType.RESOURCE_LOCK, lock_type="write")
    await beta.send(MessageType.RESOURCE_UNLOCK, {"resourceId": "db:schema", "lockId": beta_db.payload.lock_id}, requires_response=True)
    await s.quiet()

    # A change nobody may make, a deletion, an unreadable path and the operator's resolutions.
    _write(workspace, "docs/readme.md", "# edited without a lock\n")
    await s.until(lambda: manager.state.files["docs/readme.md"].status == "conflict", "the no-lock conflict")
    manager.op_escalate_file("docs/readme.md", note="who did this?")
    manager.op_accept_file("docs/readme.md")
    os.mkfifo(workspace / "docs" / "pipe")
    await s.until(lambda: "docs/pipe" in manager.state.files, "the pipe")
    # beta holds src/y.py, which after_x will need: after_x is blocked until beta lets go.
    await beta.send(MessageType.RESOURCE_LOCK, {"resourceId": "src/y.py", "lockType": "write"}, requires_response=True)
    await s.quiet()
    y_lock = beta.take(MessageType.RESOURCE_LOCK)

    # write_x completes and lets go of src/x.py; an edit under beta's read lock alone is a conflict:
    # a merge with markers leaves it, a revert resolves it.  A refused line from a socket is journaled.
    await alpha.send(MessageType.TASK_COMPLETE, {"taskId": "write_x", "attempt": 1, "locks": [x_lock.model_dump(by_alias=True)]})
    await s.quiet()
    await s.quiet()
    manager.refuse(Refusal(field="payload.token", reason="wrong token for agent 'alpha'", transport="tcp:127.0.0.1:5",
                           claimed="alpha", message_id="x-1", security=True))
    manager.refuse(Refusal(field="from", reason="bound to beta", transport="unix", claimed="alpha", bound="beta",
                           message_id="x-2", security=True))
    manager.refuse(Refusal(field="", reason="not JSON", transport="unix"))
    await beta.send(MessageType.TASK_COMPLETE, {"taskId": "read_x", "attempt": 7})
    await beta.send(MessageType.TASK_COMPLETE, {"taskId": "read_x", "attempt": 1, "result": "read it"})
    await s.quiet()
    assert manager.state.tasks["after_x"].status == "blocked"
    await beta.send(MessageType.RESOURCE_UNLOCK, {"resourceId": "src/y.py", "lockId": y_lock.payload.lock_id})
    await s.quiet()
    after_x = alpha.take(MessageType.TASK_ASSIGN, task_id="after_x")
    loose = manager.state.tasks["loose"]
    manager.op_reassign("loose", "beta" if loose.agent == "alpha" else "alpha")
    flaky = beta.take(MessageType.TASK_ASSIGN, task_id="flaky")

    # Operator: priority, pause and resume the sprint and an agent, force-release after_x's lock.
    manager.op_set_priority("doomed", "critical")
    manager.op_pause_sprint(True)
    manager.op_pause_sprint(False)
    manager.op_pause_agent("beta", True)
    manager.op_pause_agent("beta", False)
    manager.op_force_release(after_x.payload.locks[0].lock_id)
    await s.quiet()
    await alpha.send(MessageType.TASK_COMPLETE, {"taskId": "after_x", "attempt": 1, "locks": [after_x.payload.locks[0].model_dump(by_alias=True)]})
    await s.quiet()
    after_x_again = alpha.take(MessageType.TASK_ASSIGN, task_id="after_x")
    assert after_x_again.payload.attempt == 2
    (workspace / "src" / "y.py").unlink()  # alpha holds it: its deletion
    await s.until(lambda: "src/y.py" not in manager.state.files, "the deletion")

    # flaky fails and is retried; its second attempt fails for good and doomed is cancelled.
    await beta.send(MessageType.TASK_FAILED, {"taskId": "flaky", "attempt": 1, "error": "exit status 1: boom"})
    await s.until(lambda: manager.state.tasks["flaky"].attempt == 2, "the retry")
    beta.take(MessageType.TASK_ASSIGN, task_id="flaky")
    await beta.send(MessageType.TASK_FAILED, {"taskId": "flaky", "attempt": 2, "error": "exit status 2", "retryable": True})
    await s.quiet()
    assert manager.state.tasks["doomed"].status == "cancelled"
    manager.op_retry("flaky")
    await s.quiet()
    beta.take(MessageType.TASK_ASSIGN, task_id="flaky")

    # after_x completes (pair now waits for beta); alpha takes db:schema, beta holds docs and queues.
    await alpha.send(MessageType.TASK_COMPLETE, {"taskId": "after_x", "attempt": 2, "locks": [r.model_dump(by_alias=True) for r in after_x_again.payload.locks]})
    await alpha.send(MessageType.RESOURCE_LOCK, {"resourceId": "db:schema", "lockType": "exclusive"}, requires_response=True)
    await s.quiet()
    await beta.send(MessageType.RESOURCE_LOCK, {"resourceId": "docs", "lockType": "read"}, requires_response=True)
    await beta.send(MessageType.RESOURCE_LOCK, {"resourceId": "db:schema", "lockType": "write", "waitMs": 60_000}, requires_response=True)
    await alpha.send(MessageType.HEARTBEAT, {"tasks": [], "load": 0})
    await beta.send(MessageType.HEARTBEAT, {"tasks": ["flaky"], "load": 1})
    await s.quiet()

    # Silence: both look unresponsive; alpha answers; beta dies (locks, wait and flaky handed back).
    clocks.advance(3.0)
    await s.until(lambda: {a.status for a in manager.state.agents.values() if a.id != "ghost"} == {"unresponsive"}, "both unresponsive")
    await alpha.send(MessageType.HEARTBEAT, {"tasks": [], "load": 0})
    await s.quiet()
    clocks.advance(3.0)
    await s.until(lambda: manager.state.agents["beta"].status == "dead", "beta's death")
    await alpha.send(MessageType.HEARTBEAT, {"tasks": [], "load": 0})
    await s.quiet()

    # beta comes back; many heartbeats pass the first state_digest.
    await beta.send(MessageType.AGENT_READY, {"capabilities": ["code", "docs"]})
    for _ in range(260):
        await alpha.send(MessageType.HEARTBEAT, {"tasks": [], "load": 0})
    await s.quiet()
    assert manager.state.version > 500
    manager.op_cancel("spare")
    await s.quiet()
    await manager.stop()  # no sprint_finished: the crash
    journal.close()
    return journal_path


async def _complete_live_attempts(manager: SprintManager, agents: dict[str, Agent]) -> None:
    """Each agent completes the attempts the manager's state says it runs (assignments of the
    crashed manager were delivered before the crash; the new one sends only new ones)."""
    for task in list(manager.state.tasks.values()):
        if task.status not in ("assigned", "running"):
            continue
        locks = [
            {"resourceId": l.resource_id, "lockType": l.lock_type, "lockId": l.lock_id, "token": l.token}
            for l in manager.state.locks.values()
            if l.task_id == task.id
        ]
        for owner in (task.agents if task.coordination == "collaborative" else [task.agent]):
            await agents[owner].send(MessageType.TASK_COMPLETE, {"taskId": task.id, "attempt": task.attempt, "locks": locks})


async def _resumed(root: Path, clocks: Clocks) -> None:
    """A new manager continues the journal; its agents' attempts survive, the rest restart."""
    plan = load_plan(root / "plan.yaml")
    journal, header, records, _ = JournalWriter.resume(root / "journal.jsonl")
    transport = InProcessTransport()
    agents = {name: Agent(name, transport) for name in ("alpha", "beta")}
    clocks.advance(30.0)
    manager = resume_manager(
        plan, records, workspace=root / "ws", transport=transport, journal=journal,
        clock=lambda: clocks.mono, wall=lambda: clocks.wall, seed=3, speed=1e6,
    )
    s = Session(manager, journal, clocks)
    await manager.start()
    await s.quiet()
    for spec in PLAN["agents"]:  # each says what the plan says of it (a contradiction is refused)
        await agents[spec["id"]].send(MessageType.AGENT_READY, {"capabilities": spec["capabilities"]})
    await s.quiet()
    await agents["alpha"].send(MessageType.RESOURCE_UNLOCK, {"resourceId": "db:schema"})
    await s.quiet()
    for _ in range(6):
        await _complete_live_attempts(manager, agents)
        await s.quiet()
        if manager.finished:
            break
    assert manager.finished
    await manager.stop()
    journal.close()


_ID = re.compile(r"[0-9a-f]{32}")
_TIMESTAMP = re.compile(r'"timestamp":"[^"]*"')
_MTIME = re.compile(r'"mtime":"[^"]*"')


def normalised(journal: Path) -> list[str]:
    """The journal's records as JSON lines, minus what is random or machine-specific (module doc)."""
    _, records, _ = read_journal(journal)
    ids: dict[str, str] = {}
    lines = []
    for record in records:
        del record["crc"]  # checked by read_journal; derived from the rest
        if record["type"] == "files_scanned":
            record["data"]["files"].sort(key=lambda f: f["path"])
        text = json.dumps(record, separators=(",", ":"))
        text = _ID.sub(lambda m: ids.setdefault(m.group(), f"id{len(ids) + 1:04d}"), text)
        text = _TIMESTAMP.sub('"timestamp":"T"', text)
        text = _MTIME.sub('"mtime":"M"', text)
        lines.append(text)
    return lines


async def test_a_scripted_sprint_journals_exactly_the_recorded_bytes(tmp_path: Path, monkeypatch: Any) -> None:
    # Every sync after the first is made in the caller's turn, however long the disk takes: a reply
    # then goes out (and is journaled) in the turn it was decided, never a turn later, so the
    # records' order does not depend on this machine's fsync times (engine/journal_sync.py).
    monkeypatch.setattr(journal_sync, "INLINE_BELOW", float("inf"))
    clocks = Clocks()
    journal = await _first_run(tmp_path, clocks)
    await _resumed(tmp_path, clocks)
    lines = normalised(journal)
    if os.environ.get("SPRINTDECK_WRITE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text("\n".join(lines) + "\n")
    expected = GOLDEN.read_text().splitlines()
    for number, (got, want) in enumerate(zip(lines, expected), start=1):
        assert got == want, f"record {number} differs:\n got  {got}\nwant {want}"
    assert len(lines) == len(expected)
    kinds = {json.loads(line)["type"] for line in lines}
    assert len(kinds) >= 36, sorted(kinds)
