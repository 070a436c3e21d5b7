"""The seed's handleIPCMessage: one place where every message to the manager is decided.

One method per message type, each taking that type's message class (so its payload is typed).
Before any of them runs, the sender is checked: the manager's types and notices are refused, so is
anything but help and news addressed to another agent (`agent_traffic_refusal`), and an agent the
sprint does not know must introduce itself with `agent_ready` first.  Help asked of the manager is
brokered (engine/assistance.py), state is pushed to subscribers (engine/state_push.py) and
sprint-level events are announced (engine/announcements.py).  A message that cannot be
accepted is refused through one path (`engine/refusal.py`): journaled as `message_rejected`, and
its sender, when the manager can reach it, told which field was wrong.  A bug in a handler is
refused the same way instead of stopping the sprint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from engine.announcements import Announcements
from engine.assistance import AssistanceDesk
from engine.attempts import Attempts
from engine.conflicts import FileGuard
from engine.events import (
    AgentRegistered,
    AgentSession,
    AgentStatus,
    CompletionRefused,
    TaskProgress,
    TaskStarted,
    UsageRecorded,
)
from engine.lock_records import Grant
from engine.lock_replies import conflict_reply, grant_reply
from engine.lockdesk import LockDesk
from engine.locks import LockError
from engine.mail import Mail
from engine.models import TaskState
from engine.plan import Plan
from engine.payloads import LockRef, Usage
from engine.protocol import (
    AgentBusyMessage,
    AgentErrorMessage,
    AgentLeaveMessage,
    AgentReadyMessage,
    HeartbeatMessage,
    IPCMessage,
    MANAGER_ID,
    ProvideAssistanceMessage,
    RequestAssistanceMessage,
    MessageType,
    ProtocolError,
    ResourceLockMessage,
    ResourceUnlockMessage,
    StateRequestMessage,
    StateUpdateMessage,
    TaskCompleteMessage,
    TaskClaimMessage,
    TaskFailedMessage,
    TaskUpdateMessage,
    reply_to,
    WELCOME,
    agent_traffic_refusal,
)
from engine.recorder import Recorder
from engine.recovery import ErrorRecoveryManager
from engine.refusal import refusal_of
from engine.replies import OneReply
from engine.resources import covers
from engine.scheduler import Placement, Scheduler
from engine.state_push import StatePush, state_sections
from engine.welcome import hello_refusal

log = logging.getLogger(__name__)

STATUS_REASON_CHARS = 200  # of an agent's own error, shown beside its status

#: What does not count as an agent acting again after it said it waits.
_NOT_ACTIVITY = frozenset({MessageType.HEARTBEAT, MessageType.AGENT_BUSY, MessageType.AGENT_ERROR})


class MessageHandlers:
    def __init__(self, recorder: Recorder, mail: Mail, desk: LockDesk, attempts: Attempts, files: FileGuard,
                 scheduler: Scheduler, heartbeats: ErrorRecoveryManager,
                 welcome: Callable[[str], dict[str, Any]], plan: Plan) -> None:
        self._plan = plan  # what a joining agent's AgentConfig is checked against
        self._state = recorder.state
        self._emit = recorder.emit
        self._wall_at = recorder.wall_at
        self._mail = mail
        self._replies = OneReply(mail.post)  # every request gets exactly one reply
        self._post = self._replies.post
        self._desk = desk
        self._attempts = attempts
        self._files = files
        self._scheduler = scheduler
        self._heartbeats = heartbeats
        self._welcome = welcome  # what a joining agent is told (its plan entry, timings, workspace)
        self.assistance = AssistanceDesk(self._state, self._post)
        self.state_push = StatePush(recorder, self._post)
        self.announcements = Announcements(recorder, self._post)
        self._handlers: dict[type[IPCMessage], Callable[[Any], None]] = {
            HeartbeatMessage: self._on_heartbeat,
            AgentReadyMessage: self._on_agent_ready,
            TaskUpdateMessage: self._on_task_update,
            TaskCompleteMessage: self._on_task_complete,
            TaskFailedMessage: self._on_task_failed,
            ResourceLockMessage: self._on_resource_lock,
            ResourceUnlockMessage: self._on_resource_unlock,
            StateRequestMessage: self._on_state_request,
            StateUpdateMessage: self._on_state_update,
            TaskClaimMessage: self._on_task_claim,
            AgentLeaveMessage: self._on_agent_leave,
            AgentBusyMessage: self._on_agent_busy,
            AgentErrorMessage: self._on_agent_error,
            RequestAssistanceMessage: self._on_request_assistance,
            ProvideAssistanceMessage: self._on_provide_assistance,
        }

    def decide(self, message: IPCMessage) -> None:
        self._heartbeats.saw(message.from_, handshake=message.type == MessageType.AGENT_READY)
        self._mail.received(message)
        self._replies.begin(message)
        try:
            self._check_sender(message)
            self._note_activity(message)
            handler = self._handlers.get(type(message))
            if handler is not None:
                handler(message)
        except ProtocolError as exc:
            self.refuse(message, exc.field, exc.reason)
        except Exception as exc:  # a bug must not stop the sprint; it is recorded and logged
            log.exception("internal error handling %s from %s", message.type, message.from_)
            self.refuse(message, "", f"internal error: {exc!r}")
        self._replies.end(message)

    def _check_sender(self, message: IPCMessage) -> None:
        refused = agent_traffic_refusal(message)
        if refused is not None:
            raise ProtocolError(*refused)
        if message.from_ not in self._state.agents and message.type != MessageType.AGENT_READY:
            raise ProtocolError("from", f"unknown agent {message.from_!r}; send agent_ready first")

    def _note_activity(self, message: IPCMessage) -> None:
        """An agent that was waiting (for a human) and acts again is working: it is ready again.
        One that reported an error of its own is ready again when it says so (agent_ready)."""
        agent = self._state.agents.get(message.from_)
        if agent is None:
            return
        if (agent.status == "waiting" and message.type not in _NOT_ACTIVITY) or (
                agent.status == "error" and message.type == MessageType.AGENT_READY):
            self._emit(AgentStatus(agent_id=agent.id, status="ready"))

    def refuse(self, message: IPCMessage, field: str, reason: str) -> None:
        """Record a refused message and tell its sender (if the sprint knows it) which field was wrong."""
        refusal = refusal_of(message, field, reason)
        self._emit(refusal.event())
        if message.from_ in self._state.agents:
            self._post(refusal.reply(message))
        else:
            self._replies.answered()  # an unknown sender cannot be reached

    # ------------------------------------------------------------ agents

    def _on_heartbeat(self, message: HeartbeatMessage) -> None:
        agent = self._state.agents[message.from_]
        if agent.status in ("unresponsive", "dead"):
            self._emit(AgentStatus(agent_id=agent.id, status="ready"))
        self._desk.renew(agent.id)

    def _on_agent_ready(self, message: AgentReadyMessage) -> None:
        """An agent joins (or a side channel of it opens): checked, registered, its session bound,
        and, when it asked for an answer, welcomed with what it needs to know."""
        payload = message.payload
        if payload.agent_id is not None and payload.agent_id != message.from_:
            raise ProtocolError("payload.agentId", f"{payload.agent_id!r} must equal the message's from ({message.from_!r})")
        contradiction = hello_refusal(self._plan, message.from_, payload)
        if contradiction is not None:
            raise ProtocolError(*contradiction)
        agent = self._state.agents.get(message.from_)
        self._check_session(message)
        # It was not live and now it is (a side channel, a hook call say, is not the agent joining).
        joined = (agent is None or agent.status in ("unresponsive", "dead")) and payload.channel == "agent"
        if agent is None:
            self._emit(AgentRegistered(agent={
                "id": message.from_,
                "kind": "external",
                "status": "ready",
                "capabilities": payload.capabilities,
                "specializations": payload.specializations,
                "maxConcurrentTasks": payload.max_concurrent_tasks or 1,
            }))
            self._scheduler.agent_joined(self._state.agents[message.from_])
        elif agent.status in ("unresponsive", "dead"):
            self._emit(AgentStatus(agent_id=agent.id, status="ready"))
        if joined:
            self.announcements.agent_joined(message.from_, self._state.agents[message.from_].capabilities)
        if payload.session is not None and self._state.agents[message.from_].session != payload.session:
            self._emit(AgentSession(agent_id=message.from_, session=payload.session))
        if message.requires_response:
            self._attempts.dispatch()  # work it can take now is in its welcome (a hook names its task)
            data = {"info": WELCOME, "data": self._welcome(message.from_)}
            self._post(reply_to(message, MessageType.BROADCAST_INFO, data, priority="critical"))

    def _check_session(self, message: AgentReadyMessage) -> None:
        """One Claude Code session per agent: another session may not be it while the first lives."""
        session = message.payload.session
        agent = self._state.agents.get(message.from_)
        if session is None or agent is None or agent.session in (None, session) or agent.status == "dead":
            return
        if agent.kind == "claude":  # the manager starts a new session per task: the newest is the agent
            return
        raise ProtocolError(
            "payload.session",
            f"agent {agent.id!r} is Claude Code session {agent.session} while that session lives; "
            "start this session as another agent of the plan, or end the other one first",
        )

    def _on_agent_leave(self, message: AgentLeaveMessage) -> None:
        """The agent leaves in good order: its locks go at once (no lock-delay), its work is requeued.
        One whose supervisor saw it die (`crashed`) is dead like one that stopped heartbeating."""
        payload = message.payload
        if payload.crashed:
            self._attempts.agent_died(message.from_, payload.reason or "crashed")
        else:
            self._attempts.agent_died(message.from_, f"left: {payload.reason or 'it left'}", orderly=True)

    def _on_agent_error(self, message: AgentErrorMessage) -> None:
        """The agent reports an error of its own: shown, and no new work until it says agent_ready.
        As the reply to a request for help forwarded to it, it only tells the asker it cannot help."""
        if self.assistance.answered(message):
            return
        agent = self._state.agents[message.from_]
        reason = message.payload.error[:STATUS_REASON_CHARS]
        if agent.status not in ("dead", "paused") and (agent.status != "error" or agent.status_reason != reason):
            self._emit(AgentStatus(agent_id=agent.id, status="error", reason=reason))

    def _on_request_assistance(self, message: RequestAssistanceMessage) -> None:
        """Asked of the manager, help is brokered (engine/assistance.py); between agents it is only recorded."""
        if message.to == MANAGER_ID:
            self.assistance.request(message)
            self._replies.answered()  # the helper's answer, or the broker's "nobody could help"

    def _on_provide_assistance(self, message: ProvideAssistanceMessage) -> None:
        if message.to == MANAGER_ID and not self.assistance.answered(message):
            raise ProtocolError("correlationId", f"no request for help {message.correlation_id!r} is open for "
                                                 f"{message.from_}: it was answered, or its time ran out")

    def _on_agent_busy(self, message: AgentBusyMessage) -> None:
        """The agent says it waits (for a human, say): shown, and no new work until it acts again."""
        agent = self._state.agents[message.from_]
        reason = message.payload.reason or "busy"
        if agent.status != "waiting" or agent.status_reason != reason:
            self._emit(AgentStatus(agent_id=agent.id, status="waiting", reason=reason))

    # ------------------------------------------------------------ tasks

    def _live_attempt(self, message: IPCMessage, task_id: str, attempt: int) -> TaskState | None:
        """The task if `attempt` is its live attempt and the sender works on it; else refuse."""
        task = self._state.tasks.get(task_id)
        if task is None:
            raise ProtocolError("payload.taskId", f"unknown task {task_id!r}")
        if attempt == task.attempt and task.in_flight and message.from_ in task.owners:
            return task
        reason = (
            f"stale attempt {attempt} of task {task_id} "
            f"(current attempt {task.attempt}, status {task.status}, owner {task.agent})"
        )
        self._refuse_completion(message, task_id, attempt, reason, "payload.attempt")
        return None

    def _refuse_completion(self, message: IPCMessage, task_id: str, attempt: int, reason: str, field: str) -> None:
        self._emit(CompletionRefused(task_id=task_id, attempt=attempt, agent_id=message.from_, reason=reason))
        self._post(reply_to(message, MessageType.AGENT_ERROR, {"error": reason, "field": field}))

    def _on_task_update(self, message: TaskUpdateMessage) -> None:
        payload = message.payload
        task = self._live_attempt(message, payload.task_id, payload.attempt)
        if task is None:
            return
        if task.status == "assigned":
            self._emit(TaskStarted(task_id=task.id, attempt=task.attempt))
        # An update that changes nothing (the usual "started, at 0%") is journaled as its message
        # only: a task_progress event would record the same state twice.
        moved = payload.progress is not None and payload.progress != task.progress
        if moved or payload.message is not None:
            self._emit(TaskProgress(task_id=task.id, attempt=task.attempt, progress=payload.progress,
                                    output=payload.message))

    def _record_usage(self, message: IPCMessage, task_id: str, attempt: int, usage: Usage | None) -> None:
        """What the attempt spent is recorded whatever becomes of its outcome (it was spent)."""
        if usage is not None and task_id in self._state.tasks:
            self._emit(UsageRecorded(agent_id=message.from_, task_id=task_id, attempt=attempt, cost_usd=usage.cost_usd,
                                     input_tokens=usage.input_tokens, output_tokens=usage.output_tokens))

    def _on_task_complete(self, message: TaskCompleteMessage) -> None:
        payload = message.payload
        self._record_usage(message, payload.task_id, payload.attempt, payload.usage)
        if self._completed_already(message, payload.task_id, payload.attempt):
            return
        task = self._live_attempt(message, payload.task_id, payload.attempt)
        if task is None:
            return
        stale = self._stale_fence(payload.locks)
        if stale:
            self._refuse_completion(message, task.id, task.attempt, stale, "payload.locks")
            self._attempts.fail(task, stale, retryable=True)
            return
        if task.coordination == "collaborative" and not self._attempts.collaborator_done(task, message.from_):
            return
        self._attempts.complete(task, message.from_)

    def _completed_already(self, message: IPCMessage, task_id: str, attempt: int) -> bool:
        """The same completion twice from its agent (a Claude Code run that called complete_task,
        then ended with its result): one completion, not a refusal to show the operator."""
        task = self._state.tasks.get(task_id)
        return task is not None and task.status == "completed" and task.attempt == attempt and message.from_ in task.owners

    def _on_task_claim(self, message: TaskClaimMessage) -> None:
        """An agent takes a ready task it can do (a Claude Code agent picking its own work)."""
        task_id, agent_id = message.payload.task_id, message.from_
        task = self._state.tasks.get(task_id)
        if task is None:
            raise ProtocolError("payload.taskId", f"unknown task {task_id!r}")
        if not (task.in_flight and agent_id in task.owners):  # claiming one's own task again: it is yours
            refusal = self._claim_refusal(task, agent_id)
            if refusal:
                raise ProtocolError("payload.taskId", refusal)
            self._scheduler.discard(task_id)
            self._attempts.start(Placement(task_id, (agent_id,)))
            task = self._state.tasks[task_id]
        data = {"taskId": task_id, "attempt": task.attempt, "status": task.status, "waitingFor": list(task.blocked_on)}
        self._post(reply_to(message, MessageType.BROADCAST_INFO, {"info": "task_claimed", "data": data}))

    def _claim_refusal(self, task: TaskState, agent_id: str) -> str | None:
        """Why `agent_id` may not take `task` now (None: it may)."""
        agent = self._state.agents[agent_id]
        if task.in_flight:
            return f"task {task.id} is {task.status} to {', '.join(task.owners)}; claim another task or message them"
        if task.status != "ready":
            return f"task {task.id} is {task.status}; only a ready task can be claimed"
        if task.coordination == "collaborative":
            return f"task {task.id} is collaborative: all of {', '.join(task.agents)} take part, as the manager places it"
        if agent_id not in self._scheduler.capable_agents(task.id):
            return f"{agent_id} cannot do task {task.id} (it needs {', '.join(task.requires) or 'another agent'})"
        if len(agent.current_tasks) >= agent.max_concurrent_tasks:
            return f"{agent_id} already has {len(agent.current_tasks)} of its {agent.max_concurrent_tasks} task(s): finish one first"
        return None

    def _stale_fence(self, refs: list[LockRef]) -> str | None:
        for ref in refs:
            if ref.lock_id is None:
                continue
            grant = self._desk.get(ref.lock_id)
            if grant is None or grant.token != ref.token:
                return f"lock {ref.lock_id} on {ref.resource_id} (token {ref.token}) is no longer held"
        return None

    def _on_task_failed(self, message: TaskFailedMessage) -> None:
        payload = message.payload
        self._record_usage(message, payload.task_id, payload.attempt, payload.usage)
        task = self._live_attempt(message, payload.task_id, payload.attempt)
        if task is not None:
            self._attempts.fail(task, payload.error, retryable=payload.retryable, exit_code=payload.exit_code)

    # ------------------------------------------------------------ locks

    def _on_resource_lock(self, message: ResourceLockMessage) -> None:
        payload = message.payload
        requests = [(payload.resource_id, payload.lock_type)] + [(r.resource_id, r.lock_type) for r in payload.also]
        try:
            outcome = self._desk.request(
                message.from_, requests, request_id=message.id, claim=None, task_id=payload.task_id,
                ttl=payload.ttl / 1000 if payload.ttl else None, wait_ms=payload.wait_ms,
                granted=lambda grants, waited: self._post(grant_reply(message, grants, self._wall_at)),
                refused=lambda reason, conflict: self._post(conflict_reply(message, reason, conflict)),
            )
        except LockError as exc:
            raise ProtocolError("payload.resourceId", str(exc)) from None
        if outcome.status == "granted":
            self._post(grant_reply(message, outcome.grants, self._wall_at))
        elif outcome.status == "refused":
            self._post(conflict_reply(message, outcome.reason, outcome.conflict))
        else:  # queued: granted or refused later, and that is the reply
            self._replies.answered()

    def _on_resource_unlock(self, message: ResourceUnlockMessage) -> None:
        payload = message.payload
        lock_id = payload.lock_id or self._desk.find(message.from_, payload.resource_id)
        if lock_id is None:
            raise ProtocolError("payload.resourceId", f"{message.from_} holds no lock on {payload.resource_id!r}")
        try:
            self._desk.release(message.from_, lock_id, reason="released", by=message.from_)
        except LockError as exc:
            raise ProtocolError("payload.lockId", str(exc)) from None
        if message.requires_response:
            reply = {"resourceId": payload.resource_id, "lockId": lock_id, "released": True}
            self._post(reply_to(message, MessageType.RESOURCE_UNLOCK, reply))

    # ------------------------------------------------------------ state

    def _on_state_request(self, message: StateRequestMessage) -> None:
        """The state now; with `subscribe`, pushed again after every change (engine/state_push.py)."""
        payload = message.payload
        version = self._state.version
        state = state_sections(self._state, payload.sections)
        self._post(reply_to(message, MessageType.STATE_SYNC, {"version": version, "state": state}))
        if payload.subscribe:
            self.state_push.subscribe(message.from_, payload.sections, version)
        elif payload.subscribe is False:
            self.state_push.unsubscribe(message.from_)

    def _on_state_update(self, message: StateUpdateMessage) -> None:
        """A holder reports a file's checksum; it must be fenced by a live write grant it holds.

        A report that names no lock is fenced with the sender's covering write lock (the seed's
        state_update has no lockId); from an agent that holds none it is refused, since the
        watcher would credit the change to whoever holds the path.  Asked for an answer, the
        sender gets one: the state version its report is part of (a refusal answers otherwise).
        """
        payload = message.payload
        try:
            path = self._desk.canonical(payload.path)
        except LockError as exc:
            raise ProtocolError("payload.path", str(exc)) from None
        lock_id, token = payload.lock_id, payload.token
        if lock_id is None:
            held = self._write_grant(message.from_, path)
            if held is None:
                raise ProtocolError("payload.lockId", f"missing, and {message.from_} holds no write lock on {path}: "
                                                      "take one before reporting the file")
            lock_id, token = held.lock_id, held.token
        else:
            grant = self._desk.get(lock_id)
            if grant is None or grant.token != token or grant.owner != message.from_:
                raise ProtocolError("payload.token", f"stale or foreign lock {lock_id} for {payload.path}")
            if grant.mode == "read" or not covers(grant.resource_id, path):
                raise ProtocolError("payload.lockId", f"lock {lock_id} does not let {message.from_} write {path}")
        self._files.on_report(message.from_, path, payload.checksum, lock_id, token)
        if message.requires_response:
            file = self._state.files.get(path)
            state = {"version": self._state.version, "files": {path: file.model_dump(mode="json")} if file else {}}
            self._post(reply_to(message, MessageType.STATE_SYNC, {"version": self._state.version, "state": state}))

    def _write_grant(self, agent_id: str, path: str) -> Grant | None:
        """The agent's live write or exclusive grant covering `path`, if it holds one."""
        return next((g for g in self._desk.grants_of(agent_id) if g.mode != "read" and covers(g.resource_id, path)), None)
