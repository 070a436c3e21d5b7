"""The reducer: `apply(state, event) -> state`, the one place ProjectState changes.

It reads nothing but its arguments: no clock, no randomness, no I/O, so folding a journal gives
the state the live manager had, byte for byte.  For speed it updates `state` in place and returns
it (a sprint of 10,000 tasks cannot afford a deep copy per event); callers that need an older
state keep a copy (`state.model_copy(deep=True)`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from engine.events import Event, EventType
from engine.models import (
    AgentState,
    FileConflict,
    FileState,
    LockWaiter,
    ProjectState,
    ResourceLock,
    TaskState,
)
from engine.protocol import MessageType
from engine.resources import overlaps

Handler = Callable[[ProjectState, Event], None]
_AGENT_LIST = TypeAdapter(list[AgentState])
_TASK_LIST = TypeAdapter(list[TaskState])
_FILE_LIST = TypeAdapter(list[FileState])
_HANDLERS: dict[str, Handler] = {}


def handles(kind: EventType) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _HANDLERS[kind.value] = fn
        return fn

    return register


def apply(state: ProjectState, event: Event) -> ProjectState:
    """Fold one event into the state; unknown event types are an error, never ignored."""
    if event.seq != state.version + 1:
        raise ValueError(f"event seq {event.seq} does not follow state version {state.version}")
    handler = _HANDLERS.get(event.type)
    if handler is None:
        raise ValueError(f"event {event.seq}: unknown event type {event.type!r}")
    handler(state, event)
    state.version = event.seq
    return state


def fold(events: Iterable[Event], state: ProjectState | None = None) -> ProjectState:
    state = state if state is not None else ProjectState()
    for event in events:
        apply(state, event)
    return state


def state_digest(state: ProjectState) -> str:
    """sha256 hex of the state's wire-shape JSON (`state.model_dump_json()`).

    The manager journals it every so often (a `state_digest` event, computed before that event is
    applied) so that a replay can prove, not assume, that its fold matches the live state.
    """
    # pydantic's own serialiser: 8x faster than json.dumps(sort_keys=True) on 10,000 tasks, and
    # just as canonical here, because a replay folds the same events in the same order.
    return hashlib.sha256(state.model_dump_json().encode()).hexdigest()


def _time(event: Event) -> datetime:
    return datetime.fromisoformat(event.ts)


def _seconds_between(start: datetime | None, end: datetime) -> float:
    return (end - start).total_seconds() if start else 0.0


# ---------------------------------------------------------------- sprint


@handles(EventType.SPRINT_STARTED)
def _sprint_started(state: ProjectState, event: Event) -> None:
    meta = state.meta
    meta.sprint = event.data["sprint"]
    meta.started_at = _time(event)
    meta.journal_epoch = event.data.get("epoch", 1)
    # One validation call per list: per-item model_validate calls dominated a 10,000-task start.
    for agent in _AGENT_LIST.validate_python(event.data["agents"]):
        state.agents[agent.id] = agent
    for task in _TASK_LIST.validate_python(event.data["tasks"]):
        state.tasks[task.id] = task
    for file in _FILE_LIST.validate_python(event.data.get("files", [])):
        state.files[file.path] = file


@handles(EventType.SPRINT_PAUSED)
def _sprint_paused(state: ProjectState, event: Event) -> None:
    state.meta.paused = True


@handles(EventType.SPRINT_RESUMED)
def _sprint_resumed(state: ProjectState, event: Event) -> None:
    state.meta.paused = False


@handles(EventType.SPRINT_RECOVERED)
def _sprint_recovered(state: ProjectState, event: Event) -> None:
    """A manager restarted on the journal: a new epoch, and every recovered lease renewed.

    The new expiries are decided live (resume time + a full TTL) and carried in the event, so a
    replay shows the leases the restarted manager actually granted.
    """
    state.meta.journal_epoch = event.data["epoch"]
    for lock_id, expires_at in event.data.get("leases", {}).items():
        if lock_id in state.locks:
            state.locks[lock_id].expires_at = datetime.fromisoformat(expires_at)


@handles(EventType.SPRINT_FINISHED)
def _sprint_finished(state: ProjectState, event: Event) -> None:
    now = _time(event)
    state.meta.finished_at = now
    for agent in state.agents.values():
        _close_busy_period(agent, now)


@handles(EventType.STATE_DIGEST)
def _state_digest(state: ProjectState, event: Event) -> None:
    """A checkpoint for replays to verify against; it changes nothing but the version."""


# ---------------------------------------------------------------- agents


def _refresh_agent_status(agent: AgentState, now: datetime) -> None:
    """ready/busy follow the task count; paused, unresponsive and dead are sticky."""
    if agent.current_tasks and agent.busy_since is None:
        agent.busy_since = now
    if not agent.current_tasks:
        _close_busy_period(agent, now)
    agent.metrics.tasks_in_progress = len(agent.current_tasks)
    if agent.status in ("ready", "busy"):
        agent.status = "busy" if agent.current_tasks else "ready"


def _close_busy_period(agent: AgentState, now: datetime) -> None:
    if agent.busy_since is not None:
        agent.metrics.busy_time += _seconds_between(agent.busy_since, now)
        agent.busy_since = None


@handles(EventType.AGENT_REGISTERED)
def _agent_registered(state: ProjectState, event: Event) -> None:
    agent = AgentState.model_validate(event.data["agent"])
    previous = state.agents.get(agent.id)
    if previous is not None:
        agent.metrics = previous.metrics
    state.agents[agent.id] = agent


@handles(EventType.AGENT_STATUS)
def _agent_status(state: ProjectState, event: Event) -> None:
    agent = state.agents[event.data["agentId"]]
    status = event.data["status"]
    agent.status = "busy" if status == "ready" and agent.current_tasks else status


@handles(EventType.AGENT_DEAD)
def _agent_dead(state: ProjectState, event: Event) -> None:
    """Death is one atomic change: its locks go, its waits end, its tasks are ready again."""
    data = event.data
    now = _time(event)
    for lock_id in data.get("releasedLocks", []):
        state.locks.pop(lock_id, None)
    touched: list[str] = []
    for request_id in data.get("cancelledRequests", []):
        touched += _remove_waiters(state, request_id)
    _refresh_waiters(state, touched)
    for task_id in data.get("requeuedTasks", []):
        task = state.tasks[task_id]
        _drop_from_agents(state, task, now)
        task.status = "ready"
        task.blocked_on = []
        task.agent_deaths += 1
    agent = state.agents[data["agentId"]]
    agent.status = "dead"
    agent.current_tasks = []
    _close_busy_period(agent, now)
    agent.metrics.tasks_in_progress = 0


# ---------------------------------------------------------------- tasks


def _task(state: ProjectState, event: Event) -> TaskState:
    return state.tasks[event.data["taskId"]]


def _drop_from_agents(state: ProjectState, task: TaskState, now: datetime) -> None:
    for agent_id in task.agents or ([task.agent] if task.agent else []):
        agent = state.agents.get(agent_id)
        if agent is not None and task.id in agent.current_tasks:
            agent.current_tasks.remove(task.id)
            _refresh_agent_status(agent, now)


@handles(EventType.TASK_READY)
def _task_ready(state: ProjectState, event: Event) -> None:
    _task(state, event).status = "ready"


@handles(EventType.TASK_ASSIGNED)
def _task_assigned(state: ProjectState, event: Event) -> None:
    task = _task(state, event)
    now = _time(event)
    agents = event.data["agents"]
    task.status = "assigned"
    task.attempt = event.data["attempt"]
    task.agent = agents[0]
    if task.coordination == "collaborative":
        task.agents = list(agents)
    task.started_at = None
    task.completed_at = None
    task.progress = 0.0
    task.error = None
    for agent_id in agents:
        agent = state.agents[agent_id]
        agent.current_tasks.append(task.id)
        _refresh_agent_status(agent, now)


@handles(EventType.TASK_BLOCKED)
def _task_blocked(state: ProjectState, event: Event) -> None:
    task = _task(state, event)
    task.status = "blocked"
    task.blocked_on = list(event.data["paths"])


@handles(EventType.TASK_UNBLOCKED)
def _task_unblocked(state: ProjectState, event: Event) -> None:
    task = _task(state, event)
    task.status = "assigned"
    task.blocked_on = []
    waited = float(event.data.get("waited", 0.0))
    for agent_id in task.agents or [task.agent]:
        if agent_id in state.agents:
            state.agents[agent_id].metrics.resource_lock_wait_time += waited


@handles(EventType.TASK_STARTED)
def _task_started(state: ProjectState, event: Event) -> None:
    task = _task(state, event)
    task.status = "running"
    task.started_at = _time(event)


@handles(EventType.TASK_PROGRESS)
def _task_progress(state: ProjectState, event: Event) -> None:
    task = _task(state, event)
    if event.data.get("progress") is not None:
        task.progress = event.data["progress"]
    if event.data.get("output") is not None:
        task.last_output = event.data["output"]


def _finish_attempt(state: ProjectState, task: TaskState, now: datetime) -> None:
    _drop_from_agents(state, task, now)
    task.completed_at = now
    task.blocked_on = []


@handles(EventType.TASK_COMPLETED)
def _task_completed(state: ProjectState, event: Event) -> None:
    task = _task(state, event)
    now = _time(event)
    started = task.started_at or now
    _finish_attempt(state, task, now)
    task.status = "completed"
    task.progress = 1.0
    task.started_at = started
    duration = _seconds_between(started, now)
    for agent_id in task.agents or [task.agent]:
        metrics = state.agents[agent_id].metrics
        done = metrics.tasks_completed
        metrics.average_task_duration = (metrics.average_task_duration * done + duration) / (done + 1)
        metrics.tasks_completed = done + 1


@handles(EventType.TASK_FAILED)
def _task_failed(state: ProjectState, event: Event) -> None:
    task = _task(state, event)
    now = _time(event)
    _finish_attempt(state, task, now)
    task.failures += 1
    task.error = event.data["error"]
    task.status = "retrying" if event.data.get("willRetry") else "failed"
    for agent_id in task.agents or ([task.agent] if task.agent else []):
        if agent_id in state.agents:
            state.agents[agent_id].metrics.tasks_failed += 1


@handles(EventType.TASK_REQUEUED)
def _task_requeued(state: ProjectState, event: Event) -> None:
    """A running attempt taken away (dead agent, operator reassignment): not a task failure."""
    task = _task(state, event)
    now = _time(event)
    _finish_attempt(state, task, now)
    task.completed_at = None
    task.status = "ready"
    if event.data.get("reason") == "agent_dead":
        task.agent_deaths += 1


@handles(EventType.TASK_CANCELLED)
def _task_cancelled(state: ProjectState, event: Event) -> None:
    task = _task(state, event)
    now = _time(event)
    _finish_attempt(state, task, now)
    task.status = "cancelled"
    task.error = event.data.get("reason")


@handles(EventType.TASK_RESET)
def _task_reset(state: ProjectState, event: Event) -> None:
    task = _task(state, event)
    task.status = "pending"
    task.error = None
    task.completed_at = None
    task.progress = 0.0


@handles(EventType.TASK_PRIORITY)
def _task_priority(state: ProjectState, event: Event) -> None:
    _task(state, event).priority = event.data["priority"]


@handles(EventType.COMPLETION_REFUSED)
def _completion_refused(state: ProjectState, event: Event) -> None:
    """Recorded so replay shows the refusal; the task itself does not change."""


# ---------------------------------------------------------------- locks


def _refresh_waiters(state: ProjectState, paths: Iterable[str]) -> None:
    """Each lock lists, in queue order, the requests waiting on a path it overlaps.

    Only locks overlapping a path whose queue changed are rebuilt; with no such path (the usual
    uncontended grant) no lock is looked at.
    """
    touched = set(paths)
    if not touched:
        return
    for lock in state.locks.values():
        if any(overlaps(lock.resource_id, path) for path in touched):
            lock.waiters = _waiters_on(state, lock.resource_id)


def _waiters_on(state: ProjectState, resource_id: str) -> list[LockWaiter]:
    """Copies, in queue order, of the waiters on paths overlapping `resource_id` (one per lock)."""
    return [w.model_copy() for path, w in state.meta.waiters if overlaps(resource_id, path)]


def _remove_waiters(state: ProjectState, request_id: str | None) -> list[str]:
    if request_id is None:
        return []
    gone = [path for path, w in state.meta.waiters if w.request_id == request_id]
    if gone:
        state.meta.waiters = [(p, w) for p, w in state.meta.waiters if w.request_id != request_id]
    return gone


@handles(EventType.LOCK_GRANTED)
def _lock_granted(state: ProjectState, event: Event) -> None:
    data: dict[str, Any] = event.data
    lock = ResourceLock(
        resource_id=data["resourceId"],
        lock_type=data["lockType"],
        agent_id=data["agentId"],
        timestamp=_time(event),
        ttl=data["ttl"],
        lock_id=data["lockId"],
        token=data["token"],
        expires_at=datetime.fromisoformat(data["expiresAt"]),
        task_id=data.get("taskId"),
    )
    state.locks[lock.lock_id] = lock
    # The granted request leaves the queue (locks that listed it are rebuilt); the new lock lists
    # whoever still waits on its path.  No other lock's list changes.
    _refresh_waiters(state, _remove_waiters(state, data.get("requestId")))
    if state.meta.waiters:
        lock.waiters = _waiters_on(state, lock.resource_id)


@handles(EventType.LOCK_QUEUED)
def _lock_queued(state: ProjectState, event: Event) -> None:
    data = event.data
    since = _time(event)
    for item in data["resources"]:
        waiter = LockWaiter(
            request_id=data["requestId"],
            agent_id=data["agentId"],
            lock_type=item["lockType"],
            since=since,
            task_id=data.get("taskId"),
        )
        state.meta.waiters.append((item["resourceId"], waiter))
    for item in data["resources"]:
        path = item["resourceId"]
        state.meta.contention[path] = state.meta.contention.get(path, 0) + 1
    _refresh_waiters(state, [item["resourceId"] for item in data["resources"]])


@handles(EventType.WAITER_REMOVED)
def _waiter_removed(state: ProjectState, event: Event) -> None:
    _refresh_waiters(state, _remove_waiters(state, event.data["requestId"]))


@handles(EventType.LOCK_REFUSED)
def _lock_refused(state: ProjectState, event: Event) -> None:
    path = event.data["resourceId"]
    state.meta.contention[path] = state.meta.contention.get(path, 0) + 1


@handles(EventType.LOCK_RELEASED)
def _lock_released(state: ProjectState, event: Event) -> None:
    lock = state.locks.pop(event.data["lockId"], None)
    if lock is None:
        raise ValueError(f"event {event.seq}: release of unknown lock {event.data['lockId']}")


@handles(EventType.LOCK_RENEWED)
def _lock_renewed(state: ProjectState, event: Event) -> None:
    for lock_id, expires_at in event.data["expiresAt"].items():
        if lock_id in state.locks:
            state.locks[lock_id].expires_at = datetime.fromisoformat(expires_at)


# ---------------------------------------------------------------- messages, files, operators


@handles(EventType.MESSAGE)
def _message(state: ProjectState, event: Event) -> None:
    """Every IPC message is recorded; the state keeps counters and heartbeat times from them."""
    message = event.data["message"]
    sender, recipient = message["from"], message["to"]
    state.meta.messages += 1
    if sender in state.agents:
        state.agents[sender].metrics.messages_sent += 1
        if message["type"] == MessageType.HEARTBEAT:
            state.agents[sender].last_heartbeat = _time(event)
    if recipient == "broadcast":
        for agent_id, agent in state.agents.items():
            if agent_id != sender:
                agent.metrics.messages_received += 1
    elif recipient in state.agents:
        state.agents[recipient].metrics.messages_received += 1
    latency = event.data.get("latencyMs")
    if latency is not None:
        state.meta.replies += 1
        state.meta.reply_latency_total += float(latency)


@handles(EventType.MESSAGE_REJECTED)
def _message_rejected(state: ProjectState, event: Event) -> None:
    state.meta.rejected_messages += 1


@handles(EventType.OPERATOR_ACTION)
def _operator_action(state: ProjectState, event: Event) -> None:
    """The operator's intent is recorded; its effects follow as their own events."""


# ---------------------------------------------------------------- files and conflicts


def _conflict(event: Event, raw: dict[str, Any] | None) -> FileConflict | None:
    if raw is None:
        return None
    conflict = FileConflict.model_validate(raw)
    conflict.seq = event.seq
    conflict.detected_at = _time(event)
    return conflict


def _mtime(data: dict[str, Any]) -> datetime | None:
    return datetime.fromisoformat(data["mtime"]) if data.get("mtime") else None


@handles(EventType.FILES_SCANNED)
def _files_scanned(state: ProjectState, event: Event) -> None:
    for raw in event.data["files"]:
        mtime = _mtime(raw)
        file = FileState(
            path=raw["path"], checksum=raw["checksum"], size=raw["size"], mtime=mtime, last_modified=mtime
        )
        _keep_conflict(state.files.get(raw["path"]), file)
        state.files[raw["path"]] = file
    for raw in event.data.get("unreadable", []):
        state.files[raw["path"]] = FileState(path=raw["path"], error=raw["error"])


def _keep_conflict(previous: FileState | None, file: FileState) -> None:
    """A rescan after a manager restart does not resolve a conflict (it stays until resolved).

    The content kept for revert and merge lived in the old process, so only escalation or
    acceptance remain possible.
    """
    if previous is None or previous.conflict is None:
        return
    file.conflict = previous.conflict.model_copy(update={"can_revert": False, "can_merge": False})
    file.status = "conflict"
    file.modified_by = previous.modified_by


@handles(EventType.FILE_CHANGED)
def _file_changed(state: ProjectState, event: Event) -> None:
    """A created, modified or renamed file, as judged live: modified by its holder, or a conflict."""
    data = event.data
    path = data["path"]
    previous = state.files.get(path)
    source = data.get("renamedFrom")
    if source is not None:
        _drop_rename_source(state, event, source)
    conflict = _conflict(event, data.get("conflict"))
    if conflict is None and previous is not None and previous.conflict is not None:
        conflict = previous.conflict  # a conflict stays until it is resolved
    state.files[path] = FileState(
        path=path,
        last_modified=_time(event),
        modified_by=data.get("modifiedBy"),
        checksum=data["checksum"],
        status="conflict" if conflict is not None else data.get("status", "modified"),
        size=data.get("size"),
        mtime=_mtime(data),
        renamed_from=source,
        reported_checksum=previous.reported_checksum if previous else None,
        reported_by=previous.reported_by if previous else None,
        conflict=conflict,
    )


def _drop_rename_source(state: ProjectState, event: Event, source: str) -> None:
    """The old name goes, unless taking it away was itself a conflict (then it stays, deleted)."""
    conflict = _conflict(event, event.data.get("sourceConflict"))
    old = state.files.get(source)
    if conflict is None and (old is None or old.conflict is None):
        state.files.pop(source, None)
        return
    _mark_deleted(state, event, source, conflict or old.conflict)


def _mark_deleted(state: ProjectState, event: Event, path: str, conflict: FileConflict | None) -> None:
    old = state.files.get(path) or FileState(path=path)
    old.deleted = True
    old.status = "conflict"
    old.conflict = conflict
    old.last_modified = _time(event)
    old.modified_by = event.data.get("modifiedBy")
    old.size = None
    state.files[path] = old


@handles(EventType.FILE_DELETED)
def _file_deleted(state: ProjectState, event: Event) -> None:
    data = event.data
    conflict = _conflict(event, data.get("conflict"))
    old = state.files.get(data["path"])
    if conflict is None and (old is None or old.conflict is None):
        state.files.pop(data["path"], None)
        return
    _mark_deleted(state, event, data["path"], conflict or old.conflict)


@handles(EventType.FILE_UNREADABLE)
def _file_unreadable(state: ProjectState, event: Event) -> None:
    path = event.data["path"]
    file = state.files.get(path) or FileState(path=path)
    file.error = event.data["error"]
    state.files[path] = file


@handles(EventType.FILE_REPORTED)
def _file_reported(state: ProjectState, event: Event) -> None:
    file = state.files.get(event.data["path"])
    if file is not None:
        file.reported_checksum = event.data["checksum"]
        file.reported_by = event.data["agentId"]


@handles(EventType.CONFLICT_RESOLVED)
def _conflict_resolved(state: ProjectState, event: Event) -> None:
    """Accept, revert or merge: the content on disk becomes the new base, unless the merge failed."""
    data = event.data
    path = data["path"]
    file = state.files.get(path) or FileState(path=path)
    file.resolution = data["resolution"]
    file.resolved_by = data["by"]
    if data["status"] == "conflict":  # a merge that left conflict markers
        if file.conflict is not None:
            file.conflict.merge_attempts += 1
        return
    if data.get("deleted"):
        state.files.pop(path, None)
        return
    file.status = "clean"
    file.conflict = None
    file.deleted = False
    file.error = None
    file.checksum = data["checksum"]
    file.size = data.get("size")
    file.mtime = _mtime(data)
    file.last_modified = _time(event)
    file.modified_by = data["by"]
    state.files[path] = file


@handles(EventType.CONFLICT_ESCALATED)
def _conflict_escalated(state: ProjectState, event: Event) -> None:
    file = state.files[event.data["path"]]
    if file.conflict is not None:
        file.conflict.escalated = True
        file.conflict.escalated_by = event.data["by"]
        file.conflict.note = event.data.get("note")
