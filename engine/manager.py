"""SprintManager: the single authority and the single writer of ProjectState.

Agents ask; the manager decides, writes each decision to the journal as an event, folds it into
the state with the reducer, and only then answers (replies wait in an outbox until the journal has
made the events durable).  Everything runs on one asyncio loop, so nothing here needs a lock.

Operators (the dashboard, the command line) use the `op_*` methods: each records an
`operator_action` event and then goes through the same paths agents' messages take.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.conflicts import FileGuard, ResolutionError
from engine.dag import build_dag
from engine.events import Event, EventType, decode_body, iso_utc
from engine.journal import JournalWriter
from engine.locks import MODE_RANK, AcquireResult, Grant, LockError, LockManager, normalise_resource
from engine.merge import MergeResult
from engine.metrics import sprint_metrics
from engine.models import TERMINAL_TASK_STATUSES, ProjectState, SprintMetrics, TaskState
from engine.plan import Plan, TaskSpec
from engine.protocol import (
    BROADCAST,
    MANAGER_ID,
    IPCMessage,
    LockRef,
    MessageType,
    ProtocolError,
    make_message,
    reply_to,
)
from engine.reducer import apply, state_digest
from engine.resources import covers
from engine.recovery import ErrorRecoveryManager
from engine.scheduler import Placement, Scheduler
from engine.transports.base import Transport, TransportError
from engine.transports.inproc import InProcessTransport

log = logging.getLogger(__name__)

OPERATOR_ID = "operator"
DIGEST_EVERY = 500  # state_digest at every seq that is a multiple of this, at least (docs/journal.md)
DIGEST_EVENTS_PER_TASK = 10  # ... and at most one per 10 events per task, since a digest is O(state)
SPRINT_GC_THRESHOLD = 10_000  # young-generation threshold while a sprint runs (see collector_tuned_for_sprint)
INBOX_BATCH = 256  # messages decided before placement runs and the loop gets a turn
RETRY_BASE = 1.0  # seconds of sprint time before the first retry
RETRY_CAP = 30.0
MANAGER_ONLY_TYPES = frozenset(
    {MessageType.TASK_ASSIGN, MessageType.TASK_CANCEL, MessageType.RESOURCE_CONFLICT, MessageType.STATE_SYNC}
)


class OperatorError(ValueError):
    """An operator action that cannot apply; the message says why, and nothing changed."""


@dataclass
class SprintResult:
    state: ProjectState
    metrics: SprintMetrics

    @property
    def succeeded(self) -> bool:
        return self.metrics.completed_tasks == self.metrics.total_tasks


@dataclass
class _PendingLock:
    """A queued lock request: for a task's resources, or for an agent's resource_lock message."""

    owner: str
    since: float
    task_id: str | None = None
    attempt: int | None = None
    message: IPCMessage | None = None
    timer: asyncio.TimerHandle | None = None
    paths: list[str] = field(default_factory=list)


def _lock_requests(spec: TaskSpec) -> list[tuple[str, str]]:
    """The (path, mode) pairs each attempt of the task locks: a path named twice gets the stronger mode."""
    wanted = [(r.path, r.mode) for r in spec.resources] + [(p, "write") for p in spec.shared_resources]
    merged: dict[str, str] = {}
    for path, mode in wanted:
        if path not in merged or MODE_RANK[mode] > MODE_RANK[merged[path]]:
            merged[path] = mode
    return list(merged.items())


@contextmanager
def collector_paused() -> Iterator[None]:
    """Build a sprint's long-lived structures without the cyclic garbage collector.

    Creating tens of thousands of objects that all survive (the DAG, ranks, every task's state)
    triggers full collections that walk them and free nothing: half of a 10,000-task sprint's
    start-up went there.  Reference counting still frees everything as usual meanwhile.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def collector_tuned_for_sprint() -> tuple[int, int, int]:
    """Make the cyclic collector cheap for a running sprint; returns the thresholds to restore.

    Two costs, measured on a 10,000-task sprint (benchmarks/BENCHMARKS.md): full collections
    walking the plan, the DAG and every task's state, which live as long as the sprint and are
    never garbage (18 µs per task), and young collections every 700 net allocations, most of
    which the next few messages would have freed anyway (12 µs per task).  `gc.freeze` moves the
    long-lived objects to the permanent generation, and a young threshold of SPRINT_GC_THRESHOLD
    lets short-lived ones die by reference counting first.  Cycles are still collected; `stop`
    unfreezes and restores the thresholds.
    """
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(previous[0], SPRINT_GC_THRESHOLD), *previous[1:])
    return previous


class SprintManager:
    def __init__(
        self,
        plan: Plan,
        *,
        workspace: Path,
        transport: Transport | None = None,
        journal: JournalWriter | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        seed: int = 0,
        speed: float = 1.0,
    ) -> None:
        self.plan = plan
        self.workspace = workspace
        self.transport = transport or InProcessTransport()
        self.journal = journal
        self.clock = clock
        self.wall = wall
        self.seed = seed
        self.speed = speed
        self.state = ProjectState()
        self.locks = LockManager(clock, default_ttl=plan.settings.lock_ttl, lock_delay=plan.settings.lock_delay)
        with collector_paused():
            self.graph = build_dag(plan)
            self.scheduler = Scheduler(plan, self.graph)
        self.recovery = ErrorRecoveryManager(self)
        self.files = FileGuard(self)  # watcher, attribution, conflicts (started by `start`)
        self.agents: list[Any] = []  # in-process agent runners started by execute_sprint
        self._listeners: list[Callable[[Event], None]] = []
        self._outbox: list[IPCMessage] = []
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._task_grants: dict[str, list[str]] = {}  # task -> lock ids held for its attempt
        self._task_request: dict[str, str] = {}  # task -> its queued lock request id
        self._pending: dict[str, _PendingLock] = {}  # request id -> queued request
        self._collab_done: dict[str, set[str]] = {}
        self._requests_seen: dict[str, float] = {}  # request message id -> arrival (for latency)
        self._last_seen: dict[str, float] = {}
        self._open_tasks: set[str] = set()
        self._explicit_locks: set[str] = set()  # grants an agent asked for itself (resource_lock)
        self._agent_specs = {spec.id: spec for spec in plan.agents}
        self._task_specs = {spec.id: spec for spec in plan.tasks}  # plan.task() goes through pydantic's private-attribute lookup
        self._locks_of = {spec.id: _lock_requests(spec) for spec in plan.tasks}  # the plan never changes
        self._lease_timer: asyncio.TimerHandle | None = None
        self._gc_thresholds: tuple[int, int, int] | None = None  # to restore at stop
        self._tasks: list[asyncio.Task[Any]] = []
        self.transport.tap(self._record_message)
        self._inbox = self.transport.subscribe(MANAGER_ID)

    # ================================================================ events

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` with every event after it is applied (the dashboard's feed)."""
        self._listeners.append(listener)

    def emit(self, kind: EventType, **data: Any) -> Event:
        """Apply an event and journal it: the only way this manager changes state.

        The reducer runs first so that an event it rejects is never written; nothing is
        acknowledged until the journal has flushed (see `_deliver_outbox`).
        """
        state = self.state
        seq = state.version + 1
        if kind is not EventType.STATE_DIGEST and (
            kind is EventType.SPRINT_FINISHED
            or seq % max(DIGEST_EVERY, DIGEST_EVENTS_PER_TASK * len(state.tasks)) == 0
        ):
            # A digest costs O(state); spacing them by the sprint's size keeps the cost per event flat.
            self._emit_digest()
            seq = state.version + 1
        event = Event(seq, iso_utc(self.wall()), decode_body(kind.value, data), self.clock(), data)
        apply(state, event)
        if self.journal is not None:
            self.journal.append(seq, event.type, data, event.ts, event.mono)
        task_id = data.get("taskId")
        if task_id is not None and task_id in state.tasks:
            self._track_open(task_id)
        for listener in self._listeners:
            listener(event)
        self._wake.set()
        return event

    def _emit_digest(self) -> None:
        """Journal a digest of the state as it stands, so a replay can prove it folds the same state."""
        self.emit(EventType.STATE_DIGEST, digest=state_digest(self.state), of=self.state.version)

    def _wall_at(self, mono: float) -> str:
        return iso_utc(self.wall() + (mono - self.clock()))

    # ================================================================ messages

    def post(self, message: IPCMessage) -> None:
        """Send once the events that led to it are durable (the flusher does the sending)."""
        self._outbox.append(message)
        self._wake.set()

    def _record_message(self, message: IPCMessage) -> None:
        data: dict[str, Any] = {"message": message.wire_dict()}
        if message.correlation_id in self._requests_seen:
            arrived = self._requests_seen.pop(message.correlation_id)
            data["latencyMs"] = round((self.clock() - arrived) * 1000, 3)
        self.emit(EventType.MESSAGE, **data)

    async def _flusher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._deliver_outbox()

    async def _deliver_outbox(self) -> None:
        """Make the journal durable first: no agent hears of a decision the journal could lose."""
        outbox, self._outbox = self._outbox, []  # taken first: a message posted mid-flush waits for the next one
        if self.journal is not None:
            await self.journal.flush()
        for message in outbox:
            try:
                await self.transport.send(message)
            except (TransportError, ProtocolError) as exc:
                log.warning("could not deliver %s to %s: %s", message.type, message.to, exc)

    async def _serve_inbox(self) -> None:
        """Decide every message already waiting, then place work once for the whole batch.

        Placement looks at every agent; once per batch instead of once per message is what keeps
        a busy sprint's cost per task flat.  A batch is bounded so timers and the flusher still run.
        """
        while True:
            message: IPCMessage | None = await self._inbox.get()
            decided = 0
            while message is not None:
                self._decide(message)
                decided += 1
                message = self._inbox.get_nowait() if decided < INBOX_BATCH else None
            self._dispatch()

    async def handle_ipc_message(self, message: IPCMessage) -> None:
        """The seed's handleIPCMessage: one place where every agent request is decided."""
        self._decide(message)
        self._dispatch()

    def _decide(self, message: IPCMessage) -> None:
        sender = message.from_
        self._last_seen[sender] = self.clock()
        if message.requires_response:
            self._requests_seen[message.id] = self.clock()
        try:
            self._check_sender(message)
            handler = self._HANDLERS.get(message.type)
            if handler is not None:
                handler(self, message)
        except ProtocolError as exc:
            self.reject(message, exc.field, exc.reason)
        except Exception as exc:  # a bug must not stop the sprint; it is recorded and logged
            log.exception("internal error handling %s from %s", message.type, sender)
            self.reject(message, "", f"internal error: {exc!r}")

    handleIPCMessage = handle_ipc_message

    def _check_sender(self, message: IPCMessage) -> None:
        if message.type in MANAGER_ONLY_TYPES:
            raise ProtocolError("type", f"{message.type} is sent by the sprint manager only")
        if message.from_ not in self.state.agents and message.type != MessageType.AGENT_READY:
            raise ProtocolError("from", f"unknown agent {message.from_!r}; send agent_ready first")

    def reject(self, message: IPCMessage | None, field_name: str, reason: str, sender: str | None = None) -> None:
        """Record a refused message and tell its sender which field was wrong."""
        sender = sender or (message.from_ if message else "")
        self.emit(
            EventType.MESSAGE_REJECTED,
            **{"from": sender, "messageId": message.id if message else None, "field": field_name, "reason": reason},
        )
        if sender and sender in self.state.agents:
            payload = {"error": reason, "field": field_name or None, "refMessageId": message.id if message else None}
            if message is not None:
                self.post(reply_to(message, MessageType.AGENT_ERROR, payload))
            else:
                self.post(make_message(MessageType.AGENT_ERROR, MANAGER_ID, sender, payload))

    # ---------------------------------------------------------------- agents' messages

    def _on_heartbeat(self, message: IPCMessage) -> None:
        agent = self.state.agents[message.from_]
        if agent.status in ("unresponsive", "dead"):
            self.emit(EventType.AGENT_STATUS, agentId=agent.id, status="ready")
        renewed = self.locks.renew(agent.id)
        if renewed:
            self.emit(
                EventType.LOCK_RENEWED,
                agentId=agent.id,
                expiresAt={grant.lock_id: self._wall_at(grant.expires_at) for grant in renewed},
            )
            self._arm_lease_timer()

    def _on_agent_ready(self, message: IPCMessage) -> None:
        payload = message.payload
        agent = self.state.agents.get(message.from_)
        if agent is None:
            self.emit(
                EventType.AGENT_REGISTERED,
                agent={
                    "id": message.from_,
                    "kind": "external",
                    "status": "ready",
                    "capabilities": payload.capabilities,
                    "specializations": payload.specializations,
                    "maxConcurrentTasks": payload.max_concurrent_tasks or 1,
                },
            )
            self.scheduler.agent_joined(self.state.agents[message.from_])
        elif agent.status in ("unresponsive", "dead"):
            self.emit(EventType.AGENT_STATUS, agentId=agent.id, status="ready")

    def _current_attempt(self, message: IPCMessage, task_id: str, attempt: int) -> TaskState | None:
        """The task if `attempt` is its live attempt and the sender works on it; else refuse."""
        task = self.state.tasks.get(task_id)
        if task is None:
            raise ProtocolError("payload.taskId", f"unknown task {task_id!r}")
        live = task.status in ("assigned", "running", "blocked")
        owners = task.agents if task.coordination == "collaborative" else [task.agent]
        if attempt != task.attempt or not live or message.from_ not in owners:
            reason = (
                f"stale attempt {attempt} of task {task_id} "
                f"(current attempt {task.attempt}, status {task.status}, owner {task.agent})"
            )
            self.emit(
                EventType.COMPLETION_REFUSED,
                taskId=task_id,
                attempt=attempt,
                agentId=message.from_,
                reason=reason,
            )
            self.post(reply_to(message, MessageType.AGENT_ERROR, {"error": reason, "field": "payload.attempt"}))
            return None
        return task

    def _on_task_update(self, message: IPCMessage) -> None:
        payload = message.payload
        task = self._current_attempt(message, payload.task_id, payload.attempt)
        if task is None:
            return
        if task.status == "assigned":
            self.emit(EventType.TASK_STARTED, taskId=task.id, attempt=task.attempt)
        # An update that changes nothing (the usual "started, at 0%") is journaled as its message
        # only: a task_progress event would record the same state twice.
        moved = payload.progress is not None and payload.progress != task.progress
        if moved or payload.message is not None:
            self.emit(
                EventType.TASK_PROGRESS,
                taskId=task.id,
                attempt=task.attempt,
                progress=payload.progress,
                output=payload.message,
            )

    def _on_task_complete(self, message: IPCMessage) -> None:
        payload = message.payload
        task = self._current_attempt(message, payload.task_id, payload.attempt)
        if task is None:
            return
        stale = self._stale_fence(payload.locks, task.id)
        if stale:
            self.emit(EventType.COMPLETION_REFUSED, taskId=task.id, attempt=task.attempt, agentId=message.from_, reason=stale)
            self.post(reply_to(message, MessageType.AGENT_ERROR, {"error": stale, "field": "payload.locks"}))
            self._fail_attempt(task, stale, retryable=True)
            return
        if task.coordination == "collaborative":
            done = self._collab_done.setdefault(task.id, set())
            done.add(message.from_)
            if not set(task.agents) <= done:
                return
        # An attempt that reported no start goes from assigned straight to completed (as it goes
        # to failed): the completion's own time is its start, and a task_started at that same
        # instant would only be one more event to journal and fold.
        self.emit(EventType.TASK_COMPLETED, taskId=task.id, attempt=task.attempt, agent=message.from_)
        self._end_attempt(task.id)
        for child in self.scheduler.dependency_done(task.id):
            self._make_ready(child)
        self._check_finished()

    def _stale_fence(self, refs: list[LockRef], task_id: str) -> str | None:
        for ref in refs:
            if ref.lock_id is None:
                continue
            grant = self.locks.get(ref.lock_id)
            if grant is None or grant.token != ref.token:
                return f"lock {ref.lock_id} on {ref.resource_id} (token {ref.token}) is no longer held"
        return None

    def _on_task_failed(self, message: IPCMessage) -> None:
        payload = message.payload
        task = self._current_attempt(message, payload.task_id, payload.attempt)
        if task is not None:
            self._fail_attempt(task, payload.error, retryable=payload.retryable)

    def _on_resource_lock(self, message: IPCMessage) -> None:
        payload = message.payload
        requests = [(payload.resource_id, payload.lock_type)] + [(r.resource_id, r.lock_type) for r in payload.also]
        ttl = payload.ttl / 1000 if payload.ttl else None
        wait = bool(payload.wait_ms)
        try:
            result = self.locks.acquire(
                message.from_, requests, ttl=ttl, wait=wait, request_id=message.id, task_id=payload.task_id
            )
        except LockError as exc:
            raise ProtocolError("payload.resourceId", str(exc)) from None
        if result.status == "granted":
            self._record_grants(result.grants)
            self._explicit_locks.update(g.lock_id for g in result.grants)
            self.post(self._grant_reply(message, result.grants))
        elif result.status == "queued":
            self._record_queued(result, message.from_, requests, payload.task_id)
            pending = _PendingLock(owner=message.from_, since=self.clock(), message=message)
            pending.timer = asyncio.get_running_loop().call_later(
                payload.wait_ms / 1000, self._lock_wait_expired, message.id
            )
            self._pending[message.id] = pending
        else:
            self._refuse_lock(message, result)

    def _grant_reply(self, request: IPCMessage, grants: list[Grant]) -> IPCMessage:
        first = grants[0]
        return reply_to(
            request,
            MessageType.RESOURCE_LOCK,
            {
                "resourceId": first.resource_id,
                "lockType": first.mode,
                "ttl": int(first.ttl * 1000),
                "lockId": first.lock_id,
                "token": first.token,
                "expiresAt": self._wall_at(first.expires_at),
                "grants": [
                    {"resourceId": g.resource_id, "lockType": g.mode, "lockId": g.lock_id, "token": g.token}
                    for g in grants
                ],
            },
        )

    def _refuse_lock(self, message: IPCMessage, result: AcquireResult, reason: str | None = None) -> None:
        conflict = result.conflict
        payload = message.payload
        self.emit(
            EventType.LOCK_REFUSED,
            resourceId=conflict.resource_id if conflict else payload.resource_id,
            agentId=message.from_,
            reason=reason or (conflict.reason if conflict else "refused"),
        )
        self.post(
            reply_to(
                message,
                MessageType.RESOURCE_CONFLICT,
                {
                    "resourceId": conflict.resource_id if conflict else payload.resource_id,
                    "lockType": payload.lock_type,
                    "holder": conflict.holder if conflict else None,
                    "holderMode": conflict.holder_mode if conflict else None,
                    "holderTask": conflict.holder_task if conflict else None,
                    "reason": reason or (conflict.reason if conflict else "refused"),
                },
            )
        )

    def _lock_wait_expired(self, request_id: str) -> None:
        pending = self._pending.pop(request_id, None)
        if pending is None or pending.message is None:
            return
        woken = self.locks.cancel(request_id)
        self.emit(EventType.WAITER_REMOVED, requestId=request_id, reason="waitMs elapsed")
        message = pending.message
        self._refuse_lock(
            message,
            AcquireResult(status="refused", grants=[], conflict=None, request_id=request_id),
            reason=f"not granted within waitMs={message.payload.wait_ms}",
        )
        self._handle_woken(woken)
        self._dispatch()

    def _on_resource_unlock(self, message: IPCMessage) -> None:
        payload = message.payload
        lock_id = payload.lock_id or self._find_lock(message.from_, payload.resource_id)
        if lock_id is None:
            raise ProtocolError("payload.resourceId", f"{message.from_} holds no lock on {payload.resource_id!r}")
        grant = self.locks.get(lock_id)
        if grant is not None and grant.owner == message.from_:
            self.files.before_release([grant])
        try:
            woken = self.locks.release(message.from_, lock_id)
        except LockError as exc:
            raise ProtocolError("payload.lockId", str(exc)) from None
        self.emit(EventType.LOCK_RELEASED, lockId=lock_id, reason="released", by=message.from_)
        self._forget_task_grant(lock_id)
        if message.requires_response:
            self.post(
                reply_to(
                    message,
                    MessageType.RESOURCE_UNLOCK,
                    {"resourceId": payload.resource_id, "lockId": lock_id, "released": True},
                )
            )
        self._handle_woken(woken)

    def _find_lock(self, owner: str, resource_id: str) -> str | None:
        for grant in self.locks.grants_of(owner):
            if grant.resource_id == resource_id:
                return grant.lock_id
        return None

    def _on_state_request(self, message: IPCMessage) -> None:
        state = self.state.model_dump(mode="json")
        sections = message.payload.sections
        if sections:
            state = {key: value for key, value in state.items() if key in sections or key == "version"}
        self.post(reply_to(message, MessageType.STATE_SYNC, {"version": self.state.version, "state": state}))

    def _on_state_update(self, message: IPCMessage) -> None:
        """A holder reports a file's checksum; it must be fenced by a live grant it holds."""
        payload = message.payload
        try:
            path = normalise_resource(payload.path)
        except LockError as exc:
            raise ProtocolError("payload.path", str(exc)) from None
        if payload.lock_id is not None:
            grant = self.locks.get(payload.lock_id)
            if grant is None or grant.token != payload.token or grant.owner != message.from_:
                raise ProtocolError("payload.token", f"stale or foreign lock {payload.lock_id} for {payload.path}")
            if grant.mode == "read" or not covers(grant.resource_id, path):
                raise ProtocolError("payload.lockId", f"lock {payload.lock_id} does not let {message.from_} write {path}")
        self.files.on_report(message.from_, path, payload.checksum, payload.lock_id, payload.token)

    _HANDLERS: dict[str, Callable[[SprintManager, IPCMessage], None]] = {
        MessageType.HEARTBEAT: _on_heartbeat,
        MessageType.AGENT_READY: _on_agent_ready,
        MessageType.TASK_UPDATE: _on_task_update,
        MessageType.TASK_COMPLETE: _on_task_complete,
        MessageType.TASK_FAILED: _on_task_failed,
        MessageType.RESOURCE_LOCK: _on_resource_lock,
        MessageType.RESOURCE_UNLOCK: _on_resource_unlock,
        MessageType.STATE_REQUEST: _on_state_request,
        MessageType.STATE_UPDATE: _on_state_update,
    }

    # ================================================================ locks

    def _record_grants(self, grants: list[Grant]) -> None:
        self.files.before_grants(grants)
        for grant in grants:
            self.emit(
                EventType.LOCK_GRANTED,
                lockId=grant.lock_id,
                resourceId=grant.resource_id,
                lockType=grant.mode,
                agentId=grant.owner,
                taskId=grant.task_id,
                token=grant.token,
                ttl=int(round(grant.ttl * 1000)),
                expiresAt=self._wall_at(grant.expires_at),
                requestId=grant.request_id,
            )
        self._arm_lease_timer()

    def _record_queued(self, result: AcquireResult, owner: str, requests: list[tuple[str, str]], task_id: str | None) -> None:
        self.emit(
            EventType.LOCK_QUEUED,
            requestId=result.request_id,
            agentId=owner,
            taskId=task_id,
            resources=[
                {"resourceId": w.resource_id, "lockType": w.mode}
                for w in self.locks.waiters()
                if w.request_id == result.request_id
            ],
        )

    def _handle_woken(self, woken: list[Grant]) -> None:
        """Grants made to queued requests: finish the task's start or answer the agent."""
        self.files.after_release()  # every release path ends here
        by_request: dict[str | None, list[Grant]] = {}
        for grant in woken:
            by_request.setdefault(grant.request_id, []).append(grant)
        for request_id, grants in by_request.items():
            self._record_grants(grants)
            pending = self._pending.pop(request_id, None) if request_id else None
            if pending is None:
                continue
            waited = round(self.clock() - pending.since, 6)
            if pending.message is not None:
                if pending.timer:
                    pending.timer.cancel()
                self._explicit_locks.update(g.lock_id for g in grants)
                self.post(self._grant_reply(pending.message, grants))
            elif pending.task_id is not None:
                self._task_request.pop(pending.task_id, None)
                self._task_grants.setdefault(pending.task_id, []).extend(g.lock_id for g in grants)
                self.emit(EventType.TASK_UNBLOCKED, taskId=pending.task_id, waited=waited)
                self._send_assignment(self.state.tasks[pending.task_id])
        self.scheduler.undefer_all(self.state)

    def _arm_lease_timer(self) -> None:
        deadline = self.locks.next_deadline()
        if self._lease_timer is not None:
            self._lease_timer.cancel()
            self._lease_timer = None
        if deadline is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = max(0.0, deadline - self.clock()) + 0.001
        self._lease_timer = loop.call_later(delay, self._on_lease_timer)

    def _on_lease_timer(self) -> None:
        self._lease_timer = None
        now = self.clock()
        self.files.before_release([g for g in self.locks.grants() if g.expires_at <= now])
        expired, woken = self.locks.tick()
        for grant in expired:
            self.emit(EventType.LOCK_RELEASED, lockId=grant.lock_id, reason="expired", by=MANAGER_ID)
            self._forget_task_grant(grant.lock_id)
        self._handle_woken(woken)
        self._arm_lease_timer()
        self._dispatch()

    def _forget_task_grant(self, lock_id: str) -> None:
        """A lock ended outside a task's own end (unlock, expiry, operator): nobody uses it now."""
        self._explicit_locks.discard(lock_id)
        for lock_ids in self._task_grants.values():
            if lock_id in lock_ids:
                lock_ids.remove(lock_id)
                return

    # ================================================================ tasks

    def _make_ready(self, task_id: str) -> None:
        task = self.state.tasks[task_id]
        if task.status in TERMINAL_TASK_STATUSES:
            return
        self.emit(EventType.TASK_READY, taskId=task_id)
        self.scheduler.push(task)

    def _dispatch(self) -> None:
        """Place ready tasks on free agents; called after every change, never on a timer."""
        if self._finished.is_set():
            return
        for placement in self.scheduler.place(self.state):
            self._start_attempt(placement)

    def _task_spec(self, task_id: str) -> TaskSpec:
        return self._task_specs[task_id]

    def _start_attempt(self, placement: Placement) -> None:
        task = self.state.tasks[placement.task_id]
        attempt = task.attempt + 1
        self._collab_done.pop(task.id, None)
        self.emit(EventType.TASK_ASSIGNED, taskId=task.id, attempt=attempt, agents=list(placement.agents))
        requests = self._locks_of[task.id]
        if not requests:
            self._task_grants[task.id] = []
            self._send_assignment(task)
            return
        owner = placement.agents[0]
        request_id = f"{task.id}#{attempt}"
        result = self.locks.acquire(owner, requests, wait=True, request_id=request_id, task_id=task.id)
        if result.status == "granted":
            self._record_grants(result.grants)
            self._task_grants[task.id] = [g.lock_id for g in result.grants]
            self._send_assignment(task)
        elif result.status == "queued":
            self._task_grants[task.id] = [g.lock_id for g in result.grants]  # re-asked, already held
            self._record_queued(result, owner, requests, task.id)
            self._pending[request_id] = _PendingLock(owner=owner, since=self.clock(), task_id=task.id, attempt=attempt)
            self._task_request[task.id] = request_id
            self.emit(EventType.TASK_BLOCKED, taskId=task.id, paths=[p for p, _ in requests])
        else:
            reason = result.conflict.reason if result.conflict else "refused"
            self.emit(EventType.LOCK_REFUSED, resourceId=requests[0][0], agentId=owner, reason=reason)
            self.emit(EventType.TASK_REQUEUED, taskId=task.id, attempt=attempt, reason="lock_refused")
            self.scheduler.defer(task.id)

    def _send_assignment(self, task: TaskState) -> None:
        spec = self._task_spec(task.id)
        locks = [self.locks.get(lock_id) for lock_id in self._task_grants.get(task.id, [])]
        refs = [
            {"resourceId": g.resource_id, "lockType": g.mode, "lockId": g.lock_id, "token": g.token}
            for g in locks
            if g is not None
        ]
        recipients = task.agents if task.coordination == "collaborative" else [task.agent]
        for agent_id in recipients:
            agent_spec = self._agent_specs.get(agent_id)
            self.post(
                make_message(
                    MessageType.TASK_ASSIGN,
                    MANAGER_ID,
                    agent_id,
                    {
                        "taskId": task.id,
                        "attempt": task.attempt,
                        "title": task.title,
                        "command": spec.command,
                        "estimate": spec.estimate,
                        "agents": list(recipients),
                        "locks": refs,
                        "maxExecutionTime": agent_spec.max_execution_time if agent_spec else None,
                    },
                    priority=task.priority,
                )
            )

    def _end_attempt(self, task_id: str) -> None:
        """Give back everything the task's current attempt holds or waits for."""
        woken: list[Grant] = []
        request_id = self._task_request.pop(task_id, None)
        grants = self._task_grants.pop(task_id, [])
        self._collab_done.pop(task_id, None)
        if request_id is None and not grants:
            return  # nothing held or asked for: nothing to wake, no kept content to drop
        if request_id is not None:
            self._pending.pop(request_id, None)
            woken += self.locks.cancel(request_id)
            self.emit(EventType.WAITER_REMOVED, requestId=request_id, reason="attempt ended")
        for lock_id in grants:
            grant = self.locks.get(lock_id)
            if grant is None or self._still_used(lock_id):
                continue
            self.files.before_release([grant])
            woken += self.locks.release(grant.owner, lock_id)
            self.emit(EventType.LOCK_RELEASED, lockId=lock_id, reason="task_end", by=grant.owner)
        self._handle_woken(woken)

    def _still_used(self, lock_id: str) -> bool:
        """A re-asked (reentrant) grant is shared: it stays while another task or the agent uses it."""
        return lock_id in self._explicit_locks or any(lock_id in ids for ids in self._task_grants.values())

    def _fail_attempt(self, task: TaskState, error: str, *, retryable: bool) -> None:
        will_retry = retryable and task.failures < task.max_retries
        delay = self._backoff(task) if will_retry else None
        self.emit(
            EventType.TASK_FAILED,
            taskId=task.id,
            attempt=task.attempt,
            error=error,
            willRetry=will_retry,
            retryIn=delay,
        )
        self._end_attempt(task.id)
        if will_retry:
            asyncio.get_running_loop().call_later(delay, self._retry_due, task.id, task.attempt)
        else:
            self._cancel_dependents(task.id, f"dependency {task.id} failed")
            self._check_finished()

    def _backoff(self, task: TaskState) -> float:
        """Capped exponential backoff with equal jitter, deterministic for the seed."""
        rng = random.Random(f"{self.seed}:{task.id}:{task.failures}")
        ceiling = min(RETRY_CAP, RETRY_BASE * 2**task.failures)
        return round(ceiling * (0.5 + 0.5 * rng.random()) / self.speed, 4)

    def _retry_due(self, task_id: str, attempt: int) -> None:
        task = self.state.tasks[task_id]
        if task.status == "retrying" and task.attempt == attempt and not self._finished.is_set():
            self._make_ready(task_id)
            self._dispatch()

    def _cancel_dependents(self, task_id: str, reason: str) -> None:
        for child in self.scheduler.descendants(task_id):
            if self.state.tasks[child].status not in TERMINAL_TASK_STATUSES:
                self._cancel_task(child, reason, by=MANAGER_ID)

    def _cancel_task(self, task_id: str, reason: str, *, by: str) -> None:
        task = self.state.tasks[task_id]
        self._stop_attempt(task, reason, self._attempt_agents(task))
        self.scheduler.discard(task_id)
        self.emit(EventType.TASK_CANCELLED, taskId=task_id, reason=reason, by=by)
        self._end_attempt(task_id)

    def _stop_attempt(self, task: TaskState, reason: str, agents: list[str]) -> None:
        """Tell the agents working on the task's live attempt to stop (a shell agent kills its command)."""
        for agent_id in agents:
            self.post(
                make_message(
                    MessageType.TASK_CANCEL,
                    MANAGER_ID,
                    agent_id,
                    {"taskId": task.id, "attempt": task.attempt, "reason": reason},
                    priority="high",
                )
            )

    def _attempt_agents(self, task: TaskState) -> list[str]:
        if task.status not in ("assigned", "running", "blocked"):
            return []
        return list(task.agents) if task.coordination == "collaborative" else [task.agent]

    def _requeue(self, task: TaskState, reason: str) -> None:
        """Take a live attempt away (operator reassignment); the next attempt gets attempt+1."""
        self._stop_attempt(task, reason, self._attempt_agents(task))
        self._end_attempt(task.id)
        self.emit(EventType.TASK_REQUEUED, taskId=task.id, attempt=task.attempt, reason=reason)

    def _track_open(self, task_id: str) -> None:
        """Keep the set of unfinished tasks current, so the end check is O(1) per event."""
        if self.state.tasks[task_id].status in TERMINAL_TASK_STATUSES:
            self._open_tasks.discard(task_id)
        else:
            self._open_tasks.add(task_id)

    def _check_finished(self) -> None:
        if self._finished.is_set():
            return
        if not self._open_tasks:
            metrics = sprint_metrics(self.state)
            self.emit(
                EventType.SPRINT_FINISHED,
                completed=metrics.completed_tasks,
                failed=metrics.failed_tasks,
                cancelled=metrics.cancelled_tasks,
            )
            self._finished.set()

    # ================================================================ agent failure

    def agent_failed(self, agent_id: str, reason: str) -> None:
        """One atomic event: locks released (with lock-delay), tasks requeued as new attempts."""
        agent = self.state.agents[agent_id]
        if agent.status == "dead":
            return
        requeued = list(agent.current_tasks)
        woken: list[Grant] = []
        cancelled_requests: list[str] = []
        for task_id in requeued:
            task = self.state.tasks[task_id]
            others = [a for a in self._attempt_agents(task) if a != agent_id]
            self._stop_attempt(task, f"{agent_id} died", others)
            request_id = self._task_request.pop(task_id, None)
            if request_id is not None:
                self._pending.pop(request_id, None)
                woken += self.locks.cancel(request_id)
                cancelled_requests.append(request_id)
            self._task_grants.pop(task_id, None)
            self._collab_done.pop(task_id, None)
        self.files.before_release(self.locks.grants_of(agent_id))
        released, woken_by_release = self.locks.release_owner(agent_id, delay=True)
        woken += woken_by_release
        for request_id, pending in list(self._pending.items()):
            if pending.owner == agent_id and pending.message is not None:
                if pending.timer:
                    pending.timer.cancel()
                del self._pending[request_id]
                woken += self.locks.cancel(request_id)
                cancelled_requests.append(request_id)
        self.emit(
            EventType.AGENT_DEAD,
            agentId=agent_id,
            reason=reason,
            releasedLocks=[grant.lock_id for grant in released],
            requeuedTasks=requeued,
            cancelledRequests=cancelled_requests,
        )
        for task_id in requeued:
            self.scheduler.push(self.state.tasks[task_id])
        self._handle_woken(woken)
        self._arm_lease_timer()
        self._dispatch()

    def mark_unresponsive(self, agent_id: str) -> None:
        self.emit(EventType.AGENT_STATUS, agentId=agent_id, status="unresponsive")

    def last_seen(self, agent_id: str) -> float | None:
        return self._last_seen.get(agent_id)

    # ================================================================ operators

    def _operator(self, action: str, **detail: Any) -> None:
        self.emit(EventType.OPERATOR_ACTION, action=action, by=OPERATOR_ID, **detail)

    def _live_task(self, task_id: str) -> TaskState:
        task = self.state.tasks.get(task_id)
        if task is None:
            raise OperatorError(f"unknown task {task_id!r}")
        return task

    def check_reassign(self, task_id: str) -> list[str]:
        """The agents able to take `task_id`, or OperatorError saying why it cannot move at all."""
        task = self._live_task(task_id)
        if task.status in TERMINAL_TASK_STATUSES:
            raise OperatorError(f"task {task_id} is {task.status}; only unfinished tasks can be reassigned")
        if task.coordination == "collaborative":
            raise OperatorError(f"task {task_id} is collaborative: all of {', '.join(task.agents)} take part")
        if task.status == "pending":
            raise OperatorError(f"task {task_id} still waits for its dependencies")
        return self.scheduler.capable_agents(task_id)

    def op_reassign(self, task_id: str, agent_id: str) -> None:
        task = self._live_task(task_id)
        self.check_reassign(task_id)
        agent = self.state.agents.get(agent_id)
        if agent is None:
            raise OperatorError(f"unknown agent {agent_id!r}")
        if agent_id not in self.scheduler.capable_agents(task_id):
            raise OperatorError(f"agent {agent_id} lacks the capabilities task {task_id} requires")
        if agent.status in ("dead", "paused", "unresponsive"):
            raise OperatorError(f"agent {agent_id} is {agent.status}")
        self._operator("reassign", taskId=task_id, agentId=agent_id)
        if task.status in ("assigned", "running", "blocked"):
            self._requeue(task, "operator")
        elif task.status == "retrying":
            self.emit(EventType.TASK_READY, taskId=task_id)
        self.scheduler.discard(task_id)
        self._start_attempt(Placement(task_id, (agent_id,)))
        self._dispatch()

    def op_retry(self, task_id: str) -> None:
        """Run a failed or cancelled task again; dependents cancelled because of it come back too."""
        task = self._live_task(task_id)
        if self.finished:
            raise OperatorError("the sprint has finished; tasks can be retried while it runs")
        if task.status not in ("failed", "cancelled"):
            raise OperatorError(f"task {task_id} is {task.status}; only failed or cancelled tasks can be retried")
        dead_ends = [d for d in task.dependencies if self.state.tasks[d].status in ("failed", "cancelled")]
        if dead_ends:
            raise OperatorError(f"task {task_id} depends on {', '.join(dead_ends)}, which did not complete; retry that first")
        self._operator("retry", taskId=task_id)
        reopened = [task_id] + [
            child
            for child in self.scheduler.descendants(task_id)
            if self.state.tasks[child].status == "cancelled"
            and (self.state.tasks[child].error or "").startswith("dependency ")
        ]
        for reopened_id in reopened:
            self.emit(EventType.TASK_RESET, taskId=reopened_id)
        if all(self.state.tasks[d].status == "completed" for d in task.dependencies):
            self._make_ready(task_id)
        self._dispatch()

    def op_cancel(self, task_id: str) -> None:
        task = self._live_task(task_id)
        if task.status in TERMINAL_TASK_STATUSES:
            raise OperatorError(f"task {task_id} is already {task.status}")
        self._operator("cancel", taskId=task_id)
        self._cancel_task(task_id, "cancelled by the operator", by=OPERATOR_ID)
        self._cancel_dependents(task_id, f"dependency {task_id} was cancelled")
        self._check_finished()
        self._dispatch()

    def op_pause_agent(self, agent_id: str, paused: bool = True) -> None:
        agent = self.state.agents.get(agent_id)
        if agent is None:
            raise OperatorError(f"unknown agent {agent_id!r}")
        if agent.status == "dead":
            raise OperatorError(f"agent {agent_id} is dead")
        if paused == (agent.status == "paused"):
            raise OperatorError(f"agent {agent_id} is already {'paused' if paused else 'running'}")
        self._operator("pause_agent" if paused else "resume_agent", agentId=agent_id)
        self.emit(EventType.AGENT_STATUS, agentId=agent_id, status="paused" if paused else "ready")
        self._dispatch()

    def op_pause_sprint(self, paused: bool = True) -> None:
        if paused == self.state.meta.paused:
            raise OperatorError(f"the sprint is already {'paused' if paused else 'running'}")
        self._operator("pause_sprint" if paused else "resume_sprint")
        self.emit(EventType.SPRINT_PAUSED if paused else EventType.SPRINT_RESUMED)
        self._dispatch()

    def op_set_priority(self, task_id: str, priority: str) -> None:
        task = self._live_task(task_id)
        if task.status in TERMINAL_TASK_STATUSES:
            raise OperatorError(f"task {task_id} is already {task.status}")
        self._operator("priority", taskId=task_id, priority=priority)
        self.emit(EventType.TASK_PRIORITY, taskId=task_id, priority=priority)
        if task.status == "ready":
            self.scheduler.push(task)
        self._dispatch()

    def op_force_release(self, lock_id: str) -> None:
        grant = self.locks.get(lock_id)
        if grant is None:
            raise OperatorError(f"no lock {lock_id!r} is held")
        self._operator("force_release", lockId=lock_id, resourceId=grant.resource_id, holder=grant.owner)
        self.files.before_release([grant])
        woken = self.locks.release(grant.owner, lock_id, operator=True)
        self.emit(EventType.LOCK_RELEASED, lockId=lock_id, reason="operator", by=OPERATOR_ID)
        self._forget_task_grant(lock_id)
        self._handle_woken(woken)
        self._dispatch()

    # ---------------------------------------------------------------- file conflicts

    def op_accept_file(self, path: str, by: str = OPERATOR_ID) -> None:
        """Resolve a conflict by accepting the content on disk: it becomes the new base."""
        self._resolve(path, "accept", by)

    def op_revert_file(self, path: str, by: str = OPERATOR_ID) -> None:
        """Resolve a conflict by restoring the last good content (removing a file nobody was entitled to create)."""
        self._resolve(path, "revert", by)

    def op_merge_file(self, path: str, by: str = OPERATOR_ID) -> MergeResult:
        """Three-way merge (base, last good, current); a merge with conflict markers leaves the conflict."""
        return self._resolve(path, "merge", by)

    def op_escalate_file(self, path: str, note: str | None = None, by: str = OPERATOR_ID) -> None:
        """Record that the conflict is left to the operator; `conflict_diff` gives what a modal shows."""
        self._resolve(path, "escalate", by, note=note)

    def op_resolve_file(self, path: str, how: str, by: str = OPERATOR_ID) -> MergeResult | None:
        """One entry point for the dashboard: `how` is accept, revert, merge or escalate."""
        if how not in ("accept", "revert", "merge", "escalate"):
            raise OperatorError(f"unknown resolution {how!r}; use accept, revert, merge or escalate")
        return self._resolve(path, how, by)

    def conflict_diff(self, path: str) -> str:
        """A unified diff from the last good content of `path` to what is on disk now."""
        return self.files.diff(path)

    def _resolve(self, path: str, how: str, by: str, **detail: Any) -> Any:
        try:
            self.files.check(path, how)
        except ResolutionError as exc:
            raise OperatorError(str(exc)) from None
        self.emit(EventType.OPERATOR_ACTION, action=f"{how}_file", by=by, path=path, **detail)
        if how == "escalate":
            return self.files.escalate(path, by, detail.get("note"))
        return getattr(self.files, how)(path, by)

    # ================================================================ running

    def start_event(self) -> None:
        """Record the plan as the first event, so a journal replays without the plan file."""
        agents = [
            {
                "id": spec.id,
                "kind": spec.kind,
                "status": "unresponsive" if spec.kind == "external" else "ready",
                "capabilities": spec.capabilities,
                "specializations": spec.specializations,
                "maxConcurrentTasks": spec.max_concurrent_tasks,
            }
            for spec in self.plan.agents
        ]
        tasks = [
            {
                "id": spec.id,
                "title": spec.title,
                "pinnedAgent": spec.agent,
                "agents": list(spec.agents),
                "requires": list(spec.requires),
                "coordination": spec.coordination,
                "dependencies": list(spec.depends_on),
                "priority": spec.priority,
                "estimate": spec.estimate,
                "resources": [{"path": r.path, "mode": r.mode} for r in spec.resources]
                + [{"path": p, "mode": "write"} for p in spec.shared_resources],
                "command": spec.command,
                "maxRetries": spec.max_retries,
            }
            for spec in self.plan.tasks
        ]
        self.emit(
            EventType.SPRINT_STARTED,
            sprint=self.plan.sprint,
            planDigest=self.plan.digest,
            seed=self.seed,
            agents=agents,
            tasks=tasks,
        )
        self._open_tasks = {t.id for t in self.state.tasks.values() if t.status not in TERMINAL_TASK_STATUSES}

    async def start(self) -> None:
        """Start serving messages and dispatching; `execute_sprint` waits for the end."""
        loop = asyncio.get_running_loop()
        now = self.clock()
        for spec in self.plan.agents:
            self._last_seen.setdefault(spec.id, now)
        self._tasks = [
            loop.create_task(self._flusher(), name="sprintdeck-flusher"),
            loop.create_task(self._serve_inbox(), name="sprintdeck-inbox"),
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
            for task_id in self.scheduler.initially_ready():
                self._make_ready(task_id)
        self._arm_lease_timer()  # recovered leases expire too
        self._check_finished()
        self._dispatch()

    async def execute_sprint(self, *, keep_watching: bool = False) -> SprintResult:
        """The seed's executeSprint: start local agents, run every task, return the outcome.

        With `keep_watching` (the dashboard) only the agents stop at the end: the manager keeps
        watching files and taking operator actions (conflict resolution) until `stop()`.
        """
        from engine.agents import start_local_agents

        self.agents = start_local_agents(self)
        await self.start()
        await self._finished.wait()
        if keep_watching:
            await self._stop_agents()
        else:
            await self.stop()
        return SprintResult(self.state, sprint_metrics(self.state))

    executeSprint = execute_sprint

    async def wait_finished(self) -> None:
        await self._finished.wait()

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    async def _stop_agents(self) -> None:
        """The work is over: stop the agents, and the heartbeat monitor that would call them dead."""
        for task in [t for t in self._tasks if t.get_name() == "sprintdeck-recovery"]:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._tasks.remove(task)
        await self._deliver_outbox()
        agents, self.agents = self.agents, []
        for agent in agents:
            await agent.stop()

    async def stop(self) -> None:
        """Deliver what is left, stop agents and the manager's loops, make the journal durable."""
        await self.files.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._stop_agents()
        if self._lease_timer is not None:
            self._lease_timer.cancel()
        if self.journal is not None:
            self.journal.flush_sync()
        if self._gc_thresholds is not None:
            gc.unfreeze()
            gc.set_threshold(*self._gc_thresholds)
            self._gc_thresholds = None

    def metrics(self) -> SprintMetrics:
        return sprint_metrics(self.state, datetime.fromtimestamp(self.wall(), UTC))

    def broadcast_info(self, info: str, **data: Any) -> None:
        self.post(make_message(MessageType.BROADCAST_INFO, MANAGER_ID, BROADCAST, {"info": info, "data": data}))
