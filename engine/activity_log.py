"""The seed's ActivityLog, derived from a journal: who did what, to which task and resource, how long
it took and whether it worked (`sprintdeck log`).

The journal records decisions (a lock granted, an attempt failed, an agent declared dead); an
activity log is what a person looking for "who held src/api.py, and for how long?" or "why did
packaging fail?" wants to read.  So the entries are folded from the typed events in one pass,
keeping just enough to pair the ends of things with their beginnings:

* a lock's release with its grant (the entry names the holder, its task, and the hold time),
* a task's completion, failure or requeue with its attempt's start (or assignment),
* a lock wait's grant or end with its queueing,
* an agent's death with its own `agent_leave` (then it left in good order and did not die).

Durations are milliseconds, like the seed's `ttl` and `responseTimeout`.  They are measured on the
manager's monotonic clock (`mono`) when both ends are of one manager process (one epoch: a
`sprint_recovered` starts the next), on the wall clock (`ts`) otherwise.

Reading is read-only and never recovers: a torn or corrupt record is an error naming the file and
line (`ActivityLogError`); `run --resume` is what repairs a journal.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.events import (
    AgentDead, AgentSession, AgentStatus, CompletionRefused, ConflictEscalated, ConflictResolved, Event,
    EventBody, EventDecodeError, FileChanged, FileDeleted, FileReported, FileUnreadable, LockGranted, LockQueued,
    LockRefused, LockReleased, MessageRecorded, MessageRejected, OperatorAction, SprintFinished, SprintPaused,
    SprintRecovered, SprintResumed, SprintStarted, TaskAssigned, TaskBlocked, TaskCancelled, TaskCompleted,
    TaskFailed, TaskProgress, TaskRequeued, TaskStarted, TaskUnblocked, UsageRecorded, WaiterRemoved,
)
from engine.journal import JournalError, iter_journal
from engine.journal_codec import TORN
from engine.protocol import MANAGER_ID

UNKNOWN_AGENT = "unknown"  # who sent a refused line the transport could not bind to an agent
#: Kinds that say nothing a reader of the activity looks for (renewals ride on every heartbeat).
QUIET_KINDS = frozenset({
    "lock_renewed", "task_ready", "task_priority", "task_reset", "state_digest", "files_scanned",
    "agent_registered",  # an agent that joins is logged from its agent_ready message
})
#: Why a lock ended, when it did not end the way its holder meant it to.
RELEASE_ERRORS = {"expired": "its lease expired", "operator": "force-released by the operator"}
RELEASE_DETAILS = {"task_end": "at the end of its task", "released": "", "": ""}


class ActivityLogError(ValueError):
    """A journal that cannot be read as an activity log; the message names the file (and line)."""


@dataclass(slots=True)
class ActivityLog:
    """One entry: the seed's ActivityLog (timestamp, agentId, action, resourceId, taskId, duration,
    success, error), plus `seq` (the journal event it comes from: `replay --at SEQ` shows it) and
    `detail` (what else the event says: the lock mode, the attempt)."""

    timestamp: str
    agent_id: str
    action: str
    success: bool = True
    resource_id: str | None = None
    task_id: str | None = None
    duration: float | None = None  # ms
    error: str | None = None
    seq: int = 0
    detail: str | None = None

    def wire(self) -> dict[str, Any]:
        """The seed's field names in the seed's order, then the additions; absent values left out."""
        fields: dict[str, Any] = {
            "timestamp": self.timestamp, "agentId": self.agent_id, "action": self.action,
            "resourceId": self.resource_id, "taskId": self.task_id, "duration": self.duration,
            "success": self.success, "error": self.error, "seq": self.seq, "detail": self.detail,
        }
        return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True, slots=True)
class _Clock:
    epoch: int
    mono: float
    ts: str

    def ms_since(self, start: _Clock) -> float:
        if self.epoch == start.epoch:
            seconds = self.mono - start.mono
        else:  # two manager processes: their monotonic clocks share no origin
            seconds = (datetime.fromisoformat(self.ts) - datetime.fromisoformat(start.ts)).total_seconds()
        return round(max(seconds, 0.0) * 1000, 3)


@dataclass(slots=True)
class _Attempt:
    number: int
    agents: list[str]
    since: _Clock


@dataclass(slots=True)
class _Hold:
    resource_id: str
    lock_type: str
    agent_id: str
    task_id: str | None
    token: int
    since: _Clock


@dataclass(slots=True)
class _Wait:
    agent_id: str
    task_id: str | None
    resources: list[str]
    since: _Clock


@dataclass
class ActivityDeriver:
    """Folds events into entries; `feed` each event in journal order, then read `entries`."""

    epoch: int = 1
    entries: list[ActivityLog] = field(default_factory=list)
    agents: set[str] = field(default_factory=set)  # every agent and task the journal names,
    tasks: set[str] = field(default_factory=set)  # so that a filter naming neither is caught
    _attempts: dict[str, _Attempt] = field(default_factory=dict)
    _holds: dict[str, _Hold] = field(default_factory=dict)
    _waits: dict[str, _Wait] = field(default_factory=dict)
    _leaving: set[str] = field(default_factory=set)  # sent agent_leave: their "death" is a departure
    _joins: dict[str, int] = field(default_factory=dict)  # agent_ready message id -> its entry
    _now: _Clock = _Clock(1, 0.0, "")
    _seq: int = 0

    def feed(self, event: Event) -> None:
        body = event.body
        if isinstance(body, SprintRecovered):
            self.epoch = body.epoch
        self._now, self._seq = _Clock(self.epoch, event.mono, event.ts), event.seq
        handler = _HANDLERS.get(type(body))
        if handler is not None:
            handler(self, body)
        elif body.KIND.value not in QUIET_KINDS:
            self._generic(body)

    def _add(self, agent_id: str, action: str, **values: Any) -> ActivityLog:
        entry = ActivityLog(self._now.ts, agent_id, action, seq=self._seq, **values)
        self.entries.append(entry)
        self.agents.add(agent_id)
        if entry.task_id is not None:
            self.tasks.add(entry.task_id)
        return entry

    def _since(self, start: _Clock) -> float:
        return self._now.ms_since(start)

    def _generic(self, body: EventBody) -> None:
        """A kind this module does not know yet still shows, under its own name."""
        agent = getattr(body, "agent_id", None) or MANAGER_ID
        resource = getattr(body, "resource_id", None) or getattr(body, "path", None)
        self._add(str(agent), body.KIND.value, task_id=getattr(body, "task_id", None),
                  resource_id=resource if isinstance(resource, str) else None)

    # ------------------------------------------------------------ the sprint and its agents

    def _sprint_started(self, body: SprintStarted) -> None:
        self.agents.update(str(agent.get("id")) for agent in body.agents)
        self.tasks.update(str(task.get("id")) for task in body.tasks)
        self._add(MANAGER_ID, "sprint_started", detail=f"sprint {body.sprint}, {len(body.tasks)} tasks")

    def _sprint_finished(self, body: SprintFinished) -> None:
        counts = f"{body.completed} completed, {body.failed} failed, {body.cancelled} cancelled"
        self._add(MANAGER_ID, "sprint_finished", success=not (body.failed or body.cancelled), detail=counts)

    def _sprint_paused(self, body: SprintPaused) -> None:
        self._add(MANAGER_ID, "sprint_paused")

    def _sprint_resumed(self, body: SprintResumed) -> None:
        self._add(MANAGER_ID, "sprint_resumed")

    def _sprint_recovered(self, body: SprintRecovered) -> None:
        self._add(MANAGER_ID, "sprint_recovered", detail=f"manager restarted (epoch {body.epoch})")

    def _agent_status(self, body: AgentStatus) -> None:
        lost = body.status in ("unresponsive", "dead")
        reason = body.reason if isinstance(body.reason, str) else None
        self._add(body.agent_id, f"agent_{body.status}", success=not lost, detail=reason)

    def _agent_session(self, body: AgentSession) -> None:
        self._add(body.agent_id, "agent_session", detail=f"session {body.session}" if body.session else "session ended")

    def _agent_dead(self, body: AgentDead) -> None:
        """One event, several ends: the agent's, its locks' and its attempts'."""
        left = body.agent_id in self._leaving
        self._leaving.discard(body.agent_id)
        why = None if left else f"{body.agent_id} died: {body.reason}"
        self._add(body.agent_id, "agent_left" if left else "agent_died", success=left,
                  error=None if left else body.reason or "declared dead", detail=body.reason if left else None)
        for lock_id in body.released_locks:
            self._end_hold(lock_id, success=left, error=why, detail=f"{body.agent_id} left" if left else None)
        for task_id in body.requeued_tasks:
            self._end_attempt(task_id, "task_requeued", success=False, error=why or f"{body.agent_id} left",
                              only=body.agent_id)
        for request_id in body.cancelled_requests:
            self._waits.pop(request_id, None)

    def _usage(self, body: UsageRecorded) -> None:
        spent = f"${body.cost_usd:.4f}, {body.input_tokens} tokens in, {body.output_tokens} out"
        self._add(body.agent_id, "usage_recorded", task_id=body.task_id, detail=f"attempt {body.attempt}: {spent}")

    # ------------------------------------------------------------ messages

    def _message(self, body: MessageRecorded) -> None:
        message = body.message
        kind, sender, payload = message.get("type"), str(message.get("from", "")), message.get("payload") or {}
        task = payload.get("taskId") if isinstance(payload.get("taskId"), str) else None
        if kind == "agent_ready" and sender != MANAGER_ID and payload.get("channel", "agent") == "agent":
            capabilities = ", ".join(str(c) for c in payload.get("capabilities") or [])
            self._add(sender, "agent_joined", detail=f"capabilities: {capabilities}" if capabilities else None)
            self._joins[str(message.get("id"))] = len(self.entries) - 1
        elif kind == "agent_leave" and not payload.get("crashed"):
            self._leaving.add(sender)
        elif kind in ("request_assistance", "provide_assistance"):
            action = "assistance_requested" if kind == "request_assistance" else "assistance_provided"
            self._add(sender, action, task_id=task, detail=f"to {message.get('to')}: {payload.get('topic', '')}")
        elif kind == "agent_error" and sender != MANAGER_ID:
            self._add(sender, "agent_error", success=False, error=str(payload.get("error", "")))
        elif kind == "resource_conflict" and sender == MANAGER_ID:
            holder = payload.get("holder")
            held = f"held by {holder} ({payload.get('holderMode')}) for {payload.get('holderTask') or 'no task'}"
            self._add(str(message.get("to")), "lock_denied", success=False, resource_id=payload.get("resourceId"),
                      error=payload.get("reason") or held, detail=f"{payload.get('lockType')} lock; {held}" if holder else None)

    def _message_rejected(self, body: MessageRejected) -> None:
        sender = body.from_ or (body.claimed_from if isinstance(body.claimed_from, str) else "") or UNKNOWN_AGENT
        why = f"{body.field}: {body.reason}" if body.field else body.reason
        joined = self._joins.pop(body.message_id or "", None)
        if joined is not None:  # the agent_ready it refused did not make anyone join
            self.entries[joined].success, self.entries[joined].error = False, why
        self._add(sender, "message_rejected", success=False, error=why,
                  detail="security event" if body.security is True else None)

    def _operator(self, body: OperatorAction) -> None:
        def text(value: object) -> str | None:
            return value if isinstance(value, str) else None

        self._add(body.by or "operator", f"operator_{body.action}", task_id=text(body.task_id),
                  resource_id=text(body.resource_id) or text(body.path), detail=text(body.note))

    # ------------------------------------------------------------ tasks

    def _task_assigned(self, body: TaskAssigned) -> None:
        self._attempts[body.task_id] = _Attempt(body.attempt, list(body.agents), self._now)
        for agent in body.agents:
            self._add(agent, "task_assigned", task_id=body.task_id, detail=f"attempt {body.attempt}")

    def _task_started(self, body: TaskStarted) -> None:
        attempt = self._attempts.get(body.task_id)
        if attempt is not None:
            attempt.since = self._now  # the duration of an attempt is its run, not its wait to start
        for agent in self._agents_of(body.task_id):
            self._add(agent, "task_started", task_id=body.task_id, detail=f"attempt {body.attempt}")

    def _task_progress(self, body: TaskProgress) -> None:
        if body.progress is None:  # a line of a command's output: the dashboard's, not the log's
            return
        said = f": {body.output}" if body.output else ""
        for agent in self._agents_of(body.task_id):
            self._add(agent, "task_progress", task_id=body.task_id, detail=f"{body.progress:.0%}{said}")

    def _task_completed(self, body: TaskCompleted) -> None:
        self._end_attempt(body.task_id, "task_completed", success=True, only=body.agent)

    def _task_failed(self, body: TaskFailed) -> None:
        then = f"retry in {body.retry_in:.2f}s" if body.will_retry and body.retry_in is not None else (
            "to be retried" if body.will_retry else "no retry")
        self._end_attempt(body.task_id, "task_failed", success=False, error=body.error,
                          detail=f"attempt {body.attempt}, {then}")

    def _task_requeued(self, body: TaskRequeued) -> None:
        self._end_attempt(body.task_id, "task_requeued", success=False, error=body.reason or "requeued")

    def _task_cancelled(self, body: TaskCancelled) -> None:
        agents = self._agents_of(body.task_id) or [body.by or MANAGER_ID]
        self._attempts.pop(body.task_id, None)
        for agent in agents:
            self._add(agent, "task_cancelled", success=False, task_id=body.task_id, error=body.reason or "cancelled",
                      detail=f"by {body.by}" if body.by else None)

    def _completion_refused(self, body: CompletionRefused) -> None:
        self._add(body.agent_id or UNKNOWN_AGENT, "completion_refused", success=False, task_id=body.task_id,
                  error=body.reason, detail=f"attempt {body.attempt}")

    def _task_blocked(self, body: TaskBlocked) -> None:
        for agent in self._agents_of(body.task_id) or [MANAGER_ID]:
            self._add(agent, "task_blocked", task_id=body.task_id, detail=f"waiting for {', '.join(body.paths)}")

    def _task_unblocked(self, body: TaskUnblocked) -> None:
        for agent in self._agents_of(body.task_id) or [MANAGER_ID]:
            self._add(agent, "task_unblocked", task_id=body.task_id, duration=round(body.waited * 1000, 3))

    def _agents_of(self, task_id: str) -> list[str]:
        attempt = self._attempts.get(task_id)
        return list(attempt.agents) if attempt is not None else []

    def _end_attempt(self, task_id: str, action: str, *, success: bool, error: str | None = None,
                     detail: str | None = None, only: str | None = None) -> None:
        """An attempt's end, with its duration, for each of its agents (or the one that ended it)."""
        attempt = self._attempts.pop(task_id, None)
        agents = [only] if only else (attempt.agents if attempt is not None else [MANAGER_ID])
        duration = self._since(attempt.since) if attempt is not None else None
        detail = detail or (f"attempt {attempt.number}" if attempt is not None else None)
        for agent in agents:
            self._add(agent, action, success=success, task_id=task_id, duration=duration, error=error, detail=detail)

    # ------------------------------------------------------------ locks

    def _lock_queued(self, body: LockQueued) -> None:
        resources = [item["resourceId"] for item in body.resources]
        self._waits[body.request_id] = _Wait(body.agent_id, body.task_id, resources, self._now)
        modes = ", ".join(f"{item['lockType']} {item['resourceId']}" for item in body.resources)
        self._add(body.agent_id, "lock_queued", task_id=body.task_id, resource_id=resources[0] if resources else None,
                  detail=f"waiting for {modes}")

    def _lock_granted(self, body: LockGranted) -> None:
        held = self._holds.get(body.lock_id)
        if held is not None and held.token == body.token:  # the same grant again (asked for twice)
            return
        self._holds[body.lock_id] = _Hold(body.resource_id, body.lock_type, body.agent_id, body.task_id, body.token,
                                          self._now)
        wait = self._waits.get(body.request_id or "")
        waited = ", after waiting in the queue" if wait is not None else ""
        self._add(body.agent_id, "lock_acquired", resource_id=body.resource_id, task_id=body.task_id,
                  duration=self._since(wait.since) if wait is not None else None,  # how long it waited
                  detail=f"{body.lock_type} lock {body.lock_id}, token {body.token}{waited}")

    def _lock_released(self, body: LockReleased) -> None:
        error = RELEASE_ERRORS.get(body.reason)
        self._end_hold(body.lock_id, success=error is None, error=error, by=body.by,
                       detail=RELEASE_DETAILS.get(body.reason, body.reason) or None)

    def _end_hold(self, lock_id: str, *, success: bool, error: str | None, by: str = "",
                  detail: str | None = None) -> None:
        hold = self._holds.pop(lock_id, None)
        if hold is None:
            self._add(by or UNKNOWN_AGENT, "lock_released", success=success, error=error, detail=f"lock {lock_id}")
            return
        said = [f"{hold.lock_type} lock {lock_id}"] + ([detail] if detail else [])
        if by and by != hold.agent_id:
            said.append(f"by {by}")
        self._add(hold.agent_id, "lock_released", success=success, resource_id=hold.resource_id, task_id=hold.task_id,
                  duration=self._since(hold.since), error=error, detail=", ".join(said))

    def _waiter_removed(self, body: WaiterRemoved) -> None:
        wait = self._waits.pop(body.request_id, None)
        if wait is not None:
            self._add(wait.agent_id, "lock_wait_ended", success=False, task_id=wait.task_id,
                      resource_id=wait.resources[0] if wait.resources else None, duration=self._since(wait.since),
                      error=body.reason or "no longer waiting")

    def _lock_refused(self, body: LockRefused) -> None:
        self._add(body.agent_id or UNKNOWN_AGENT, "lock_refused", success=False, resource_id=body.resource_id,
                  error=body.reason)

    # ------------------------------------------------------------ files

    def _file_changed(self, body: FileChanged) -> None:
        if body.status == "conflict" or body.conflict is not None:
            self._conflict(body.path, body.modified_by, body.conflict, body.change)
        else:
            self._add(body.modified_by or MANAGER_ID, "file_changed", resource_id=body.path, detail=body.change,
                      task_id=self._task_writing(body.modified_by, body.path))

    def _file_deleted(self, body: FileDeleted) -> None:
        if body.status == "conflict" or body.conflict is not None:
            self._conflict(body.path, body.modified_by, body.conflict, "deleted")
        else:
            self._add(body.modified_by or MANAGER_ID, "file_deleted", resource_id=body.path,
                      task_id=self._task_writing(body.modified_by, body.path))

    def _conflict(self, path: str, by: str | None, conflict: Any, change: str) -> None:
        why = str(conflict.get("detail") or conflict.get("reason")) if isinstance(conflict, dict) else "conflict"
        self._add(by or MANAGER_ID, "file_conflict", success=False, resource_id=path, error=why, detail=change)

    def _file_reported(self, body: FileReported) -> None:
        fence = f", lock {body.lock_id} token {body.token}" if body.lock_id else ", no lock"
        self._add(body.agent_id or UNKNOWN_AGENT, "file_reported", resource_id=body.path,
                  task_id=self._task_writing(body.agent_id, body.path), detail=f"checksum {body.checksum}{fence}")

    def _task_writing(self, agent_id: str | None, path: str) -> str | None:
        """The task of `agent_id`'s write or exclusive lock covering `path`: what the change was for."""
        for hold in self._holds.values():
            covers = path == hold.resource_id or path.startswith(hold.resource_id.rstrip("/") + "/")
            if hold.agent_id == agent_id and hold.lock_type != "read" and covers and hold.task_id:
                return hold.task_id
        return None

    def _file_unreadable(self, body: FileUnreadable) -> None:
        self._add(MANAGER_ID, "file_unreadable", success=False, resource_id=body.path, error=body.error or "unreadable")

    def _conflict_resolved(self, body: ConflictResolved) -> None:
        self._add(body.by, "conflict_resolved", success=body.status != "conflict", resource_id=body.path,
                  detail=body.resolution)

    def _conflict_escalated(self, body: ConflictEscalated) -> None:
        self._add(body.by, "conflict_escalated", resource_id=body.path, detail=body.note)


_HANDLERS: dict[type[EventBody], Callable[[ActivityDeriver, Any], None]] = {
    SprintStarted: ActivityDeriver._sprint_started, SprintFinished: ActivityDeriver._sprint_finished,
    SprintPaused: ActivityDeriver._sprint_paused, SprintResumed: ActivityDeriver._sprint_resumed,
    SprintRecovered: ActivityDeriver._sprint_recovered, AgentStatus: ActivityDeriver._agent_status,
    AgentSession: ActivityDeriver._agent_session, AgentDead: ActivityDeriver._agent_dead,
    UsageRecorded: ActivityDeriver._usage, MessageRecorded: ActivityDeriver._message,
    MessageRejected: ActivityDeriver._message_rejected, OperatorAction: ActivityDeriver._operator,
    TaskAssigned: ActivityDeriver._task_assigned, TaskStarted: ActivityDeriver._task_started,
    TaskProgress: ActivityDeriver._task_progress, TaskCompleted: ActivityDeriver._task_completed,
    TaskFailed: ActivityDeriver._task_failed, TaskRequeued: ActivityDeriver._task_requeued,
    TaskCancelled: ActivityDeriver._task_cancelled, CompletionRefused: ActivityDeriver._completion_refused,
    TaskBlocked: ActivityDeriver._task_blocked, TaskUnblocked: ActivityDeriver._task_unblocked,
    LockQueued: ActivityDeriver._lock_queued, LockGranted: ActivityDeriver._lock_granted,
    LockReleased: ActivityDeriver._lock_released, WaiterRemoved: ActivityDeriver._waiter_removed,
    LockRefused: ActivityDeriver._lock_refused, FileChanged: ActivityDeriver._file_changed,
    FileDeleted: ActivityDeriver._file_deleted, FileReported: ActivityDeriver._file_reported,
    FileUnreadable: ActivityDeriver._file_unreadable, ConflictResolved: ActivityDeriver._conflict_resolved,
    ConflictEscalated: ActivityDeriver._conflict_escalated,
}


# ---------------------------------------------------------------- reading a journal


def activity_log(events: Iterable[Event], *, epoch: int = 1) -> ActivityDeriver:
    """Every entry the events make, in journal order (the deriver also knows the agents and tasks)."""
    deriver = ActivityDeriver(epoch=epoch)
    for event in events:
        deriver.feed(event)
    return deriver


def read_activity_log(path: Path) -> ActivityDeriver:
    """The activity log of the journal at `path`, read only; `ActivityLogError` says what is wrong."""
    _check_is_journal_file(path)
    try:
        return activity_log(_events(path))
    except JournalError as exc:
        if exc.line == 1:
            raise ActivityLogError(f"{path}:1: not a sprintdeck journal ({exc.reason})") from None
        hint = (" (a torn last record, as a crash leaves; `sprintdeck run --resume` repairs it, "
                "log only reads)") if TORN in exc.reason else ""
        raise ActivityLogError(f"{exc}{hint}") from None
    except OSError as exc:
        raise ActivityLogError(f"{path}: cannot read the journal: {exc.strerror or exc}") from None


def _events(path: Path) -> Iterator[Event]:
    for record in iter_journal(path):
        try:
            yield Event.from_record(record)
        except (EventDecodeError, KeyError, TypeError) as exc:
            seq = record.get("seq")
            line = seq + 1 if isinstance(seq, int) else 0
            raise JournalError(path, line, seq, f"record seq {seq}: {exc}") from None


def _check_is_journal_file(path: Path) -> None:
    """A journal is a regular file: a FIFO would block the reader, a directory is a mistake."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ActivityLogError(f"{path}: no such journal") from None
    except OSError as exc:
        raise ActivityLogError(f"{path}: cannot read the journal: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise ActivityLogError(f"{path}: is a directory, not a journal (give the .jsonl file `run --record` wrote)")
    if not stat.S_ISREG(mode):
        raise ActivityLogError(f"{path}: is not a regular file (a FIFO or a device); a journal is a file")
