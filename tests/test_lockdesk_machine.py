"""Hypothesis state machine for the lock desk: desk, state and journal agree after every step.

Random traffic drives a real LockDesk over a real recorder and a real journal on disk: requests
for an agent's own locks and for task attempts (granted, queued or refused), releases, operator
force-releases, attempts ending, lease renewals, expiry and lock-delays (a fake clock), agent
deaths, grants that fail half-way (the file guard or the journal refusing once), and a restart of
the manager that rebuilds the desk from the journal.  After every step:

* the desk's grants are exactly `ProjectState.locks` (id, holder, path, mode, token, task, lease),
* the journal, read back from disk and folded, gives that same state (locks, waiters, version),
* the desk's queue is exactly the waiters the state lists, in the same order,
* no two holders of overlapping paths hold incompatible modes, and tokens only grow,
* every request was answered at most once.

`SPRINTDECK_DESK_EXAMPLES=10000 .venv/bin/pytest tests/test_lockdesk_machine.py` runs the long
version (BENCHMARKS.md reports one such run); the default keeps the suite quick.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.events import AgentDead, Event, SprintRecovered, SprintStarted, WaiterRemoved
from engine.journal import JournalWriter, read_journal
from engine.lock_records import Grant, compatible
from engine.lockdesk import LockDesk
from engine.locks import LockManager
from engine.recorder import Recorder
from engine.reducer import fold
from engine.resources import overlaps

AGENTS = ["a", "b", "c"]
TASKS = ["t1", "t2", "t3"]
PATHS = ["src", "src/x", "src/y", "docs", "db:x"]
MODES = ["read", "write", "exclusive"]
TTL, LOCK_DELAY = 10.0, 1.0
EXAMPLES = int(os.environ.get("SPRINTDECK_DESK_EXAMPLES", "150"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def mono(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_790_000_000.0 + self.now


class Hooks:
    """The file guard's side of hand-overs, with no files; it can be told to fail the next grant."""

    def __init__(self) -> None:
        self.fail_next = False

    def before_grants(self, grants: Any) -> None:
        if self.fail_next:
            self.fail_next = False
            raise OSError("the file guard failed")

    def before_release(self, grants: Any) -> None:
        pass

    def after_release(self) -> None:
        pass

    def forget_grants(self, grants: Any) -> None:
        pass

    def leases_expired(self, grants: Any) -> None:
        pass


class FaultyJournal(JournalWriter):
    """A journal that can refuse the next `lock_granted` record once (a full disk, say)."""

    fail_next_grant = False

    def append(self, seq: int, type: str, data: dict[str, Any], ts: str, mono: float) -> None:
        if self.fail_next_grant and type == "lock_granted":
            self.fail_next_grant = False
            raise OSError("the journal failed")
        super().append(seq, type, data, ts, mono)


def started() -> SprintStarted:
    agents = [{"id": a, "kind": "external", "status": "ready", "capabilities": [], "specializations": [],
               "maxConcurrentTasks": 3} for a in AGENTS]
    tasks = [{"id": t, "title": t, "agents": [], "requires": [], "dependencies": []} for t in TASKS]
    return SprintStarted(sprint="machine", plan_digest=None, seed=0, agents=agents, tasks=tasks)


class DeskMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="desk-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
        self.path = self.directory / "journal.jsonl"
        self.clock = Clock()
        self.hooks = Hooks()
        self.journal = FaultyJournal.create(self.path, {"sprint": "machine"})
        self._build(self.journal)
        self.recorder.emit(started())
        self.answers: dict[str, int] = {}  # request id -> replies so far
        self.attempt_of: dict[str, str] = {}  # task -> the agent running its live attempt
        self.requests = 0
        self.tokens: dict[str, int] = {}  # every lock id granted so far -> its token

    def teardown(self) -> None:
        self.journal.close()
        for path in self.directory.iterdir():
            path.unlink()
        self.directory.rmdir()

    def _build(self, journal: FaultyJournal) -> None:
        self.recorder = Recorder(journal, clock=self.clock.mono, wall=self.clock.wall)
        self.locks = LockManager(self.clock.mono, default_ttl=TTL, lock_delay=LOCK_DELAY)
        self.desk = LockDesk(self.locks, self.hooks, self.recorder, undefer=lambda: None)

    def _answer(self, request_id: str) -> Any:
        def answered(*outcome: Any) -> None:
            if outcome:
                event("a queued request " + ("granted" if isinstance(outcome[0], list) else "refused"))
            self.answers[request_id] = self.answers.get(request_id, 0) + 1

        return answered

    # ------------------------------------------------------------ traffic

    @rule(owner=st.sampled_from(AGENTS), paths=st.lists(st.sampled_from(PATHS), min_size=1, max_size=2),
          mode=st.sampled_from(MODES), wait=st.booleans(), task=st.sampled_from([None, *TASKS]))
    def request(self, owner: str, paths: list[str], mode: str, wait: bool, task: str | None) -> None:
        if task is not None and task in self.attempt_of:
            task = None  # one live attempt per task
        self.requests += 1
        request_id = f"q{self.requests}"
        answered = self._answer(request_id)
        outcome = self.desk.request(owner, [(p, mode) for p in paths], request_id=request_id, claim=task, task_id=task,
                                    wait=wait, granted=answered, refused=answered)  # type: ignore[arg-type]
        event(f"request {outcome.status}" + (" (a grant that failed)" if "could not grant" in outcome.reason else ""))
        if outcome.status != "queued":
            answered()
        if task is not None and outcome.status != "refused":
            self.attempt_of[task] = owner

    @precondition(lambda self: self.locks.grants())
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        grant = data.draw(st.sampled_from(self.locks.grants()))
        self.desk.release(grant.owner, grant.lock_id, reason="released", by=grant.owner)

    @precondition(lambda self: self.locks.grants())
    @rule(data=st.data())
    def force_release(self, data: st.DataObject) -> None:
        grant = data.draw(st.sampled_from(self.locks.grants()))
        self.desk.release(grant.owner, grant.lock_id, reason="operator", by="operator", operator=True)

    @precondition(lambda self: self.attempt_of)
    @rule(data=st.data())
    def end_attempt(self, data: st.DataObject) -> None:
        task = data.draw(st.sampled_from(sorted(self.attempt_of)))
        del self.attempt_of[task]
        self.desk.end_attempt(task)

    @rule(owner=st.sampled_from(AGENTS))
    def renew(self, owner: str) -> None:
        self.desk.renew(owner)

    @rule(seconds=st.sampled_from([0.5, 1.5, 6.0, 11.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds
        self.desk.expire()

    @rule(owner=st.sampled_from(AGENTS))
    def agent_dies(self, owner: str) -> None:
        tasks = [task for task, agent in self.attempt_of.items() if agent == owner]
        for task in tasks:
            del self.attempt_of[task]

        def record(released: list[str], cancelled: list[str]) -> None:
            self.recorder.emit(AgentDead(agent_id=owner, reason="no heartbeat", released_locks=released,
                                         requeued_tasks=tasks, cancelled_requests=cancelled))

        self.desk.end_agent(owner, tasks, record)

    @rule(where=st.sampled_from(["file guard", "journal"]))
    def next_grant_fails(self, where: str) -> None:
        if where == "file guard":
            self.hooks.fail_next = True
        else:
            self.journal.fail_next_grant = True

    @rule()
    def manager_restarts(self) -> None:
        """A new desk from the journal alone; queues die with the old one (their waiters removed)."""
        self.hooks.fail_next = False
        self.journal.close()
        journal, _, records, _ = FaultyJournal.resume(self.path)
        assert isinstance(journal, FaultyJournal)
        self.journal = journal
        events = [Event.from_record(record) for record in records]
        self._build(journal)
        self.recorder.replay(events)
        self.desk.restore(events)
        state = self.recorder.state
        leases = {g.lock_id: self.recorder.wall_at(g.expires_at) for g in self.locks.grants()}
        self.recorder.emit(SprintRecovered(epoch=state.meta.journal_epoch + 1, previous_version=state.version, leases=leases))
        for request_id in dict.fromkeys(waiter.request_id for _, waiter in state.meta.waiters):
            self.recorder.emit(WaiterRemoved(request_id=request_id, reason="manager_restart"))
            self.answers[request_id] = self.answers.get(request_id, 0) + 1  # the agent asks again
        live = {g.task_id for g in self.locks.grants() if g.task_id in self.attempt_of}
        self.attempt_of = {t: a for t, a in self.attempt_of.items() if t in live}
        self.desk.adopt(live)  # type: ignore[arg-type]

    # ------------------------------------------------------------ what must hold

    @invariant()
    def desk_and_state_agree(self) -> None:
        state = self.recorder.state
        held = {g.lock_id: g for g in self.locks.grants()}
        assert set(held) == set(state.locks)
        for lock_id, lock in state.locks.items():
            grant = held[lock_id]
            assert (grant.owner, grant.resource_id, grant.mode, grant.token, grant.task_id) == (
                lock.agent_id, lock.resource_id, lock.lock_type, lock.token, lock.task_id)
            lease = datetime.fromisoformat(self.recorder.wall_at(grant.expires_at))
            assert abs(lease - lock.expires_at) <= timedelta(microseconds=2)
        queued = [(w.request_id, w.resource_id, w.mode) for w in self.locks.waiters()]
        assert queued == [(w.request_id, path, w.lock_type) for path, w in state.meta.waiters]

    @invariant()
    def the_journal_folds_to_the_state(self) -> None:
        self.journal.flush_sync()
        _, records, _ = read_journal(self.path)
        folded = fold(Event.from_record(record) for record in records)
        state = self.recorder.state
        assert folded.version == state.version
        assert folded.model_dump(mode="json")["locks"] == state.model_dump(mode="json")["locks"]
        assert folded.meta.waiters == state.meta.waiters

    @invariant()
    def holders_are_compatible_and_tokens_grow(self) -> None:
        grants: list[Grant] = self.locks.grants()
        for i, first in enumerate(grants):
            for second in grants[i + 1:]:
                if first.owner != second.owner and overlaps(first.resource_id, second.resource_id):
                    assert compatible(first.mode, second.mode), (first, second)
        for grant in grants:
            if grant.lock_id not in self.tokens:  # granted since the last step: above every earlier token
                assert grant.token > max(self.tokens.values(), default=0), grant
                self.tokens[grant.lock_id] = grant.token

    @invariant()
    def each_request_is_answered_at_most_once(self) -> None:
        assert all(count <= 1 for count in self.answers.values()), self.answers


DeskMachine.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=40, deadline=None)
TestDeskMachine = DeskMachine.TestCase
