"""SprintManager: the single authority over a sprint, and the small facade the app and tests use.

Agents ask; the manager decides, records each decision as an event, and only then answers.
Everything runs on one asyncio loop, so nothing here needs a lock.  The work is done by parts,
each the one owner of its kind of state, each handed what it needs and not the whole manager:

* `Recorder` (recorder.py): the state, the journal and the listeners; `emit` is how state changes.
* `Mail` (mail.py): the inbox, the outbox and the flusher (nothing sent before it is durable).
* `MessageHandlers` (handlers.py): one method per message type; one refusal path.
* `LockDesk` (lockdesk.py): every lock request, grant, wait and release, with the file guard's hooks.
* `FileGuard` (conflicts.py): the watcher, attribution of changes, conflicts and resolutions.
* `Attempts` (attempts.py): placing work, retries, cancellation, agent death, the end.
* `ErrorRecoveryManager` (recovery.py): heartbeats; an agent that goes silent dies.
* `Operators` (operators.py): the operator's actions, recorded and carried out.

Here they are wired together, started and stopped; the seed's names (`executeSprint`,
`handleIPCMessage`) and the `op_*` actions delegate to them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.agents import start_local_agents
from engine.agents.base import LocalAgent
from engine.attempts import Attempts
from engine.collector import collector_paused, collector_restored, collector_tuned_for_sprint
from engine.conflicts import FileGuard
from engine.events import Event, SprintStarted
from engine.handlers import MessageHandlers
from engine.journal import JournalFailure, JournalWriter
from engine.lockdesk import LockDesk
from engine.locks import LockManager
from engine.mail import Mail
from engine.merge import MergeResult
from engine.metrics import sprint_metrics, sprint_succeeded
from engine.models import ProjectState, SprintMetrics
from engine.operators import OPERATOR_ID, Operators, ReassignTarget
from engine.plan import Plan, TaskSpec
from engine.protocol import BROADCAST, MANAGER_ID, IPCMessage, MessageType, make_message
from engine.recorder import Recorder
from engine.recovery import ErrorRecoveryManager
from engine.refusal import Refusal
from engine.resources import resource_ids_in
from engine.scheduler import Scheduler
from engine.supervisor import LocalSupervisor, Restarts
from engine.transports.base import Transport
from engine.transports.inproc import InProcessTransport
from engine.welcome import welcome


@dataclass(repr=False)
class SprintResult:
    state: ProjectState
    metrics: SprintMetrics

    @property
    def succeeded(self) -> bool:
        return sprint_succeeded(self.metrics)

    def __repr__(self) -> str:
        """A line, not the whole state: asyncio formats the finished main task's result (into the
        message of a ValueError nobody sees) when `asyncio.run` puts back the SIGINT handler, and
        the state's full repr took 0.6 s at 10,000 tasks, twice, after the sprint had ended."""
        m = self.metrics
        return f"SprintResult({m.completed_tasks}/{m.total_tasks} completed, {m.failed_tasks} failed)"


class SprintManager:
    def __init__(self, plan: Plan, *, workspace: Path, transport: Transport | None = None,
                 journal: JournalWriter | None = None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, seed: int = 0, speed: float = 1.0) -> None:
        self.plan = plan
        self.workspace = workspace
        self.transport = transport or InProcessTransport()
        self.journal = journal
        self.seed = seed
        self.speed = speed
        self.recorder = Recorder(journal, clock=clock, wall=wall)
        with collector_paused():
            self.scheduler = Scheduler(plan)
        settings = plan.settings
        lock_manager = LockManager(clock, default_ttl=settings.lock_ttl, lock_delay=settings.lock_delay)
        self.files = FileGuard(workspace, self.recorder, lock_manager.covering, journal.path if journal else None)
        self.locks = LockDesk(lock_manager, self.files, self.recorder,
                              undefer=lambda: self.scheduler.undefer_all(self.state),
                              canonical=resource_ids_in(workspace))
        self.mail = Mail(self.transport, self.recorder)
        self.attempts = Attempts(plan, self.recorder, self.mail.post, self.locks, self.scheduler, seed=seed, speed=speed,
                                 contested=self.files.contested)
        self.locks.after_timer = self.attempts.dispatch
        self.recovery = ErrorRecoveryManager(settings, self.recorder, self.mail.post, self.attempts.agent_died,
                                             heard_from=self.files.contested.settle)
        self.restarts = Restarts(self.recorder.emit, settings.max_agent_restarts, lambda: self.finished)
        self.supervisor = LocalSupervisor(self.restarts, self.attempts.agent_died)
        self.handlers = MessageHandlers(self.recorder, self.mail, self.locks, self.attempts, self.files,
                                        self.scheduler, self.recovery, self.welcome, plan)
        self.operators = Operators(self.recorder, self.attempts, self.locks, self.files, self.scheduler)
        self.agents: list[LocalAgent] = []  # in-process agent runners started by execute_sprint
        self._loops: list[asyncio.Task[Any]] = []
        self._gc_thresholds: tuple[int, int, int] | None = None  # to restore at stop

    @property
    def state(self) -> ProjectState:
        return self.recorder.state

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` with every event after it is applied (the dashboard's feed)."""
        self.recorder.subscribe(listener)

    # ------------------------------------------------------------ messages

    async def handle_ipc_message(self, message: IPCMessage) -> None:
        """The seed's handleIPCMessage: decide one message, then place work."""
        self.handlers.decide(message)
        self.attempts.dispatch()

    handleIPCMessage = handle_ipc_message

    def refuse(self, refusal: Refusal) -> None:
        """Journal a transport's refusal (it has answered the peer itself)."""
        self.recorder.emit(refusal.event())

    def welcome(self, agent_id: str) -> dict[str, Any]:
        """What a joining agent is told (engine/welcome.py)."""
        return welcome(self.plan, self.state, agent_id, workspace=self.workspace, seed=self.seed, speed=self.speed)

    def broadcast_info(self, info: str, **data: Any) -> None:
        self.mail.post(make_message(MessageType.BROADCAST_INFO, MANAGER_ID, BROADCAST, {"info": info, "data": data}))

    # ------------------------------------------------------------ the sprint's life

    def start_event(self) -> None:
        """Record the plan as the first event, so a journal replays without the plan file."""
        self.recorder.emit(sprint_started(self.plan, self.seed))
        self.attempts.track_all()

    async def start(self) -> None:
        """Start serving messages and dispatching; `execute_sprint` waits for the end."""
        loop = asyncio.get_running_loop()
        self.recovery.expect(spec.id for spec in self.plan.agents)
        self._loops = [
            loop.create_task(self.mail.flusher(), name="sprintdeck-flusher"),
            loop.create_task(self.mail.serve(self.handlers.decide, self.attempts.dispatch), name="sprintdeck-inbox"),
            loop.create_task(self.recovery.run(), name="sprintdeck-recovery"),
        ]
        fresh = self.state.version == 0  # a resumed manager (engine/resume.py) has its state already
        with collector_paused():
            if fresh:
                self.start_event()
            # Frozen before the collector is back on: otherwise its first young collection walks
            # every task state the start event just built (14 ms for 10,000 tasks), to free nothing.
            self._gc_thresholds = collector_tuned_for_sprint()
        await self.files.start()
        if fresh:
            self.handlers.announcements.sprint_started(self.plan)  # after the scan: one order in every journal
            for task_id in self.scheduler.initially_ready():
                self.attempts.make_ready(task_id)
        self.locks.start()  # recovered leases expire too
        self.attempts.check_finished()
        self.attempts.dispatch()

    async def execute_sprint(self, *, keep_watching: bool = False) -> SprintResult:
        """The seed's executeSprint: start local agents, run every task, return the outcome.

        Raises `JournalFailure`, after stopping everything, when the journal cannot be written.

        With `keep_watching` (the dashboard) only the agents stop at the end: the manager keeps
        watching files and taking operator actions (conflict resolution) until `stop()`.
        """
        self.agents = start_local_agents(self.plan, self.transport, self.workspace, seed=self.seed, speed=self.speed)
        self.supervisor.watch(self.agents)
        await self.start()
        try:
            await self.mail.until(self.attempts.finished)
        except JournalFailure:  # nothing more can be acknowledged: the sprint stops here
            await self.stop()
            raise
        if keep_watching:
            await self._stop_agents()
        else:
            await self.stop()
        return SprintResult(self.state, sprint_metrics(self.state))

    executeSprint = execute_sprint

    async def wait_finished(self) -> None:
        await self.attempts.finished.wait()

    @property
    def finished(self) -> bool:
        return self.attempts.finished.is_set()

    async def _stop_agents(self) -> None:
        """The work is over: stop the agents, and the heartbeat monitor that would call them dead."""
        for task in [t for t in self._loops if t.get_name() == "sprintdeck-recovery"]:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._loops.remove(task)
        self.recovery.stop()
        await self.supervisor.stop()
        await self.mail.deliver()
        agents, self.agents = self.agents, []
        for agent in agents:
            await agent.stop()

    async def stop(self) -> None:
        """Deliver what is left, stop agents and the manager's loops, make the journal durable."""
        await self.files.stop()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        self._loops = []
        await self.mail.deliver_rest()  # replies already decided (a cancelled flusher put them back)
        await self._stop_agents()
        self.locks.stop()
        if self.journal is not None and self.journal.failure is None:
            self.journal.flush_sync()
        if self._gc_thresholds is not None:
            collector_restored(self._gc_thresholds)
            self._gc_thresholds = None

    def metrics(self) -> SprintMetrics:
        return sprint_metrics(self.state, datetime.fromtimestamp(self.recorder.wall(), UTC))

    # ------------------------------------------------------------ the operator's actions (engine/operators.py)

    def check_reassign(self, task_id: str) -> list[ReassignTarget]:
        return self.operators.check_reassign(task_id)

    def op_reassign(self, task_id: str, agent_id: str) -> None:
        self.operators.reassign(task_id, agent_id)

    def op_retry(self, task_id: str) -> None:
        self.operators.retry(task_id, finished=self.finished)

    def op_cancel(self, task_id: str) -> None:
        self.operators.cancel(task_id)

    def op_pause_agent(self, agent_id: str, paused: bool = True) -> None:
        self.operators.pause_agent(agent_id, paused)

    def op_pause_sprint(self, paused: bool = True) -> None:
        self.operators.pause_sprint(paused)

    def op_set_priority(self, task_id: str, priority: str) -> None:
        self.operators.set_priority(task_id, priority)

    def force_release_consequences(self, lock_id: str) -> str:
        """What a force-release of `lock_id` does to its holder, for the operator to confirm first."""
        return self.operators.force_release_consequences(lock_id)

    def op_force_release(self, lock_id: str) -> None:
        self.operators.force_release(lock_id)

    def op_resolve_file(self, path: str, how: str, by: str = OPERATOR_ID) -> MergeResult | None:
        """One entry point for the dashboard: `how` is accept, revert, merge or escalate."""
        return self.operators.resolve_file(path, how, by)

    def op_accept_file(self, path: str, by: str = OPERATOR_ID) -> None:
        """Resolve a conflict by accepting the content on disk: it becomes the new base."""
        self.operators.resolve_file(path, "accept", by)

    def op_revert_file(self, path: str, by: str = OPERATOR_ID) -> None:
        """Resolve a conflict by restoring the last good content (removing a file nobody was entitled to create)."""
        self.operators.resolve_file(path, "revert", by)

    def op_merge_file(self, path: str, by: str = OPERATOR_ID) -> MergeResult:
        """Three-way merge (base, last good, current); a merge with conflict markers leaves the conflict."""
        result = self.operators.resolve_file(path, "merge", by)
        assert result is not None
        return result

    def op_escalate_file(self, path: str, note: str | None = None, by: str = OPERATOR_ID) -> None:
        """Record that the conflict is left to the operator; `conflict_diff` gives what a modal shows."""
        self.operators.resolve_file(path, "escalate", by, note=note)

    def conflict_diff(self, path: str) -> str:
        """A unified diff from the last good content of `path` to what is on disk now."""
        return self.files.diff(path)


def sprint_started(plan: Plan, seed: int) -> SprintStarted:
    """The plan as the first event records it, so a journal replays without the plan file."""
    agents = [
        {
            "id": spec.id,
            "kind": spec.kind,
            "status": "unresponsive" if spec.kind == "external" else "ready",
            "capabilities": spec.capabilities,
            "specializations": spec.specializations,
            "maxConcurrentTasks": spec.max_concurrent_tasks,
        }
        for spec in plan.agents
    ]
    # The plan's own lists, not copies: a record is only read, a plan's lists never change, and
    # four new lists per task were a tenth of a 100,000-task sprint's peak memory.
    tasks = [
        {
            "id": spec.id,
            "title": spec.title,
            "pinnedAgent": spec.agent,
            "agents": spec.agents,
            "requires": spec.requires,
            "coordination": spec.coordination,
            "dependencies": spec.depends_on,
            "priority": spec.priority,
            "estimate": spec.estimate,
            "resources": _lock_entries(spec) if spec.resources or spec.shared_resources else NO_RESOURCES,
            "command": spec.command,
            "maxRetries": spec.max_retries,
        }
        for spec in plan.tasks
    ]
    return SprintStarted(sprint=plan.sprint, plan_digest=plan.digest, seed=seed, agents=agents, tasks=tasks)


NO_RESOURCES: list[dict[str, str]] = []  # shared by every task without locks (records are only read)


def _lock_entries(spec: TaskSpec) -> list[dict[str, str]]:
    return ([{"path": r.path, "mode": r.mode} for r in spec.resources]
            + [{"path": p, "mode": "write"} for p in spec.shared_resources])
