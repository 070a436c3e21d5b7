"""The reducer: `apply(state, event) -> state`, the one place ProjectState changes.

It reads nothing but its arguments: no clock, no randomness, no I/O, so folding a journal gives
the state the live manager had, byte for byte.  For speed it updates `state` in place and returns
it (a sprint of 10,000 tasks cannot afford a deep copy per event); callers that need an older
state keep a copy (`state.model_copy(deep=True)`).

The sprint's, agents' and tasks' handlers are here; locks (`engine/reducer_locks.py`) and files,
messages and operators (`engine/reducer_files.py`) have modules of their own.  Every handler is
registered under its event's body class, so a kind without a handler is an error, never ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from engine import reducer_files, reducer_locks
from engine.events import (
    Absent,
    AgentDead,
    AgentRegistered,
    AgentRestarted,
    AgentSession,
    AgentStatus,
    CompletionRefused,
    Event,
    SprintFinished,
    SprintPaused,
    SprintRecovered,
    SprintResumed,
    SprintStarted,
    StateDigest,
    TaskAssigned,
    TaskBlocked,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskPriority,
    TaskProgress,
    TaskReady,
    TaskRequeued,
    TaskReset,
    TaskStarted,
    TaskUnblocked,
    UsageRecorded,
)
from engine.model_memory import share_fields_sets
from engine.models import AgentState, AttemptRecord, FileState, ProjectState, TaskState
from engine.reducer_attempts import completed_exit_code, end_attempt, live_attempt
from engine.state_json import (
    state_digest as state_digest,  # callers import it from here too
)

Handler = Callable[[ProjectState, Any, Event], None]
_AGENT_LIST = TypeAdapter(list[AgentState])
_TASK_LIST = TypeAdapter(list[TaskState])
TASKS_AT_ONCE = 1000
_FILE_LIST = TypeAdapter(list[FileState])


def apply(state: ProjectState, event: Event) -> ProjectState:
    """Fold one event into the state; `event.seq` must be the next version."""
    if event.seq != state.version + 1:
        raise ValueError(f"event seq {event.seq} does not follow state version {state.version}")
    handler = _HANDLERS.get(type(event.body))
    if handler is None:
        raise ValueError(f"event {event.seq}: no reducer for {event.type!r}")
    handler(state, event.body, event)
    state.version = event.seq
    return state


def fold(events: Iterable[Event], state: ProjectState | None = None) -> ProjectState:
    state = state if state is not None else ProjectState()
    for event in events:
        apply(state, event)
    return state


def _seconds_between(start: datetime | None, end: datetime) -> float:
    return (end - start).total_seconds() if start else 0.0


def _participants(task: TaskState) -> list[str]:
    """The agents an attempt's bookkeeping touches: every listed agent, else the owner.

    (For a task that lists `agents` without being collaborative this is every listed agent; the
    journals of every sprint so far were folded with this rule, so it stays.)
    """
    return task.agents or ([task.agent] if task.agent else [])


# ---------------------------------------------------------------- sprint


def _sprint_started(state: ProjectState, body: SprintStarted, event: Event) -> None:
    meta = state.meta
    meta.sprint = body.sprint
    meta.started_at = event.time
    meta.journal_epoch = 1 if isinstance(body.epoch, Absent) else body.epoch
    # One validation call per list: per-item model_validate calls dominated a 10,000-task start.
    for agent in _AGENT_LIST.validate_python(body.agents):
        state.agents[agent.id] = agent
    # A slice at a time: each new model has a set of its given fields (0.7 KB) until
    # share_fields_sets swaps it for a shared one, and 100,000 of them at once were the largest
    # part of a large sprint's peak memory.
    for start in range(0, len(body.tasks), TASKS_AT_ONCE):
        tasks = _TASK_LIST.validate_python(body.tasks[start:start + TASKS_AT_ONCE])
        share_fields_sets(tasks)  # a state model never adds to it
        for task in tasks:
            state.tasks[task.id] = task
    for file in _FILE_LIST.validate_python(body.files if isinstance(body.files, list) else []):
        state.files[file.path] = file


def _sprint_paused(state: ProjectState, body: SprintPaused, event: Event) -> None:
    state.meta.paused = True


def _sprint_resumed(state: ProjectState, body: SprintResumed, event: Event) -> None:
    state.meta.paused = False


def _sprint_recovered(state: ProjectState, body: SprintRecovered, event: Event) -> None:
    """A manager restarted on the journal: a new epoch, and every recovered lease renewed.

    The new expiries are decided live (resume time + a full TTL) and carried in the event, so a
    replay shows the leases the restarted manager actually granted.
    """
    state.meta.journal_epoch = body.epoch
    for lock_id, expires_at in body.leases.items():
        if lock_id in state.locks:
            state.locks[lock_id].expires_at = datetime.fromisoformat(expires_at)


def _sprint_finished(state: ProjectState, body: SprintFinished, event: Event) -> None:
    now = event.time
    state.meta.finished_at = now
    for agent in state.agents.values():
        _close_busy_period(agent, now)


def _state_digest(state: ProjectState, body: StateDigest, event: Event) -> None:
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


def _agent_registered(state: ProjectState, body: AgentRegistered, event: Event) -> None:
    agent = AgentState.model_validate(body.agent)
    previous = state.agents.get(agent.id)
    if previous is not None:
        agent.metrics = previous.metrics
    state.agents[agent.id] = agent


def _agent_status(state: ProjectState, body: AgentStatus, event: Event) -> None:
    agent = state.agents[body.agent_id]
    agent.status = "busy" if body.status == "ready" and agent.current_tasks else body.status  # type: ignore[assignment]
    agent.status_reason = body.reason if isinstance(body.reason, str) else None


def _nothing_to_fold(state: ProjectState, body: object, event: Event) -> None:
    """An event the journal keeps for people (a restart): the state follows from the events around it."""


def _agent_session(state: ProjectState, body: AgentSession, event: Event) -> None:
    state.agents[body.agent_id].session = body.session


def _usage_recorded(state: ProjectState, body: UsageRecorded, event: Event) -> None:
    metrics = state.agents[body.agent_id].metrics
    metrics.cost_usd = round(metrics.cost_usd + body.cost_usd, 6)
    metrics.input_tokens += body.input_tokens
    metrics.output_tokens += body.output_tokens


def _agent_dead(state: ProjectState, body: AgentDead, event: Event) -> None:
    """Death is one atomic change: its locks go, its waits end, its tasks are ready again."""
    now = event.time
    reducer_locks.end_locks_of_dead_agent(state, body.released_locks, body.cancelled_requests)
    for task_id in body.requeued_tasks:
        task = state.tasks[task_id]
        _drop_from_agents(state, task, now)
        task.status = "ready"
        task.blocked_on = []
        task.agent_deaths += 1
        end_attempt(task, now, "agent_died", f"{body.agent_id} died" + (f": {body.reason}" if body.reason else ""))
    agent = state.agents[body.agent_id]
    agent.status = "dead"
    agent.session = None
    agent.status_reason = None
    agent.current_tasks = []
    _close_busy_period(agent, now)
    agent.metrics.tasks_in_progress = 0


# ---------------------------------------------------------------- tasks


def _drop_from_agents(state: ProjectState, task: TaskState, now: datetime) -> None:
    for agent_id in _participants(task):
        agent = state.agents.get(agent_id)
        if agent is not None and task.id in agent.current_tasks:
            agent.current_tasks.remove(task.id)
            _refresh_agent_status(agent, now)


def _task_ready(state: ProjectState, body: TaskReady, event: Event) -> None:
    state.tasks[body.task_id].status = "ready"


def _task_assigned(state: ProjectState, body: TaskAssigned, event: Event) -> None:
    task = state.tasks[body.task_id]
    now = event.time
    agents = body.agents
    task.status = "assigned"
    task.attempt = body.attempt
    task.agent = agents[0]
    if task.coordination == "collaborative":
        task.agents = list(agents)
    task.started_at = None
    task.completed_at = None
    task.progress = 0.0
    task.error = None
    task.attempts.append(AttemptRecord(number=body.attempt, agents=list(agents), assigned_at=now))
    for agent_id in agents:
        agent = state.agents[agent_id]
        agent.current_tasks.append(task.id)
        _refresh_agent_status(agent, now)


def _task_blocked(state: ProjectState, body: TaskBlocked, event: Event) -> None:
    task = state.tasks[body.task_id]
    task.status = "blocked"
    task.blocked_on = list(body.paths)


def _task_unblocked(state: ProjectState, body: TaskUnblocked, event: Event) -> None:
    task = state.tasks[body.task_id]
    task.status = "assigned"
    task.blocked_on = []
    waited = float(body.waited)
    for agent_id in _participants(task):
        if agent_id in state.agents:
            state.agents[agent_id].metrics.resource_lock_wait_time += waited


def _task_started(state: ProjectState, body: TaskStarted, event: Event) -> None:
    task = state.tasks[body.task_id]
    task.status = "running"
    task.started_at = event.time
    attempt = live_attempt(task)
    if attempt is not None:
        attempt.started_at = event.time


def _task_progress(state: ProjectState, body: TaskProgress, event: Event) -> None:
    task = state.tasks[body.task_id]
    if body.progress is not None:
        task.progress = body.progress
    if body.output is not None:
        task.last_output = body.output


def _finish_attempt(state: ProjectState, task: TaskState, now: datetime) -> None:
    _drop_from_agents(state, task, now)
    task.completed_at = now
    task.blocked_on = []


def _task_completed(state: ProjectState, body: TaskCompleted, event: Event) -> None:
    task = state.tasks[body.task_id]
    now = event.time
    started = task.started_at or now
    _finish_attempt(state, task, now)
    task.status = "completed"
    end_attempt(task, now, "completed", exit_code=completed_exit_code(state, task))
    task.progress = 1.0
    task.started_at = started
    duration = _seconds_between(started, now)
    for agent_id in _participants(task):
        metrics = state.agents[agent_id].metrics
        done = metrics.tasks_completed
        metrics.average_task_duration = (metrics.average_task_duration * done + duration) / (done + 1)
        metrics.tasks_completed = done + 1


def _task_failed(state: ProjectState, body: TaskFailed, event: Event) -> None:
    task = state.tasks[body.task_id]
    _finish_attempt(state, task, event.time)
    task.failures += 1
    task.error = body.error
    end_attempt(task, event.time, "failed", body.error, None if isinstance(body.exit_code, Absent) else body.exit_code)
    task.status = "retrying" if body.will_retry else "failed"
    for agent_id in _participants(task):
        if agent_id in state.agents:
            state.agents[agent_id].metrics.tasks_failed += 1


def _task_requeued(state: ProjectState, body: TaskRequeued, event: Event) -> None:
    """A running attempt taken away (operator reassignment, a restart): not a task failure."""
    task = state.tasks[body.task_id]
    _finish_attempt(state, task, event.time)
    task.completed_at = None
    task.status = "ready"
    died = body.reason == "agent_dead"
    end_attempt(task, event.time, "agent_died" if died else "requeued", body.reason)
    if died:
        task.agent_deaths += 1


def _task_cancelled(state: ProjectState, body: TaskCancelled, event: Event) -> None:
    task = state.tasks[body.task_id]
    _finish_attempt(state, task, event.time)
    task.status = "cancelled"
    task.error = body.reason
    end_attempt(task, event.time, "cancelled", body.reason)


def _task_reset(state: ProjectState, body: TaskReset, event: Event) -> None:
    task = state.tasks[body.task_id]
    task.status = "pending"
    task.error = None
    task.completed_at = None
    task.progress = 0.0


def _task_priority(state: ProjectState, body: TaskPriority, event: Event) -> None:
    state.tasks[body.task_id].priority = body.priority  # type: ignore[assignment]


def _completion_refused(state: ProjectState, body: CompletionRefused, event: Event) -> None:
    """Recorded so replay shows the refusal; the task itself does not change."""


_HANDLERS: dict[type, Handler] = {
    SprintStarted: _sprint_started,
    SprintPaused: _sprint_paused,
    SprintResumed: _sprint_resumed,
    SprintRecovered: _sprint_recovered,
    SprintFinished: _sprint_finished,
    StateDigest: _state_digest,
    AgentRegistered: _agent_registered,
    AgentStatus: _agent_status,
    AgentSession: _agent_session,
    UsageRecorded: _usage_recorded,
    AgentDead: _agent_dead,
    AgentRestarted: _nothing_to_fold,
    TaskReady: _task_ready,
    TaskAssigned: _task_assigned,
    TaskBlocked: _task_blocked,
    TaskUnblocked: _task_unblocked,
    TaskStarted: _task_started,
    TaskProgress: _task_progress,
    TaskCompleted: _task_completed,
    TaskFailed: _task_failed,
    TaskRequeued: _task_requeued,
    TaskCancelled: _task_cancelled,
    TaskReset: _task_reset,
    TaskPriority: _task_priority,
    CompletionRefused: _completion_refused,
    **reducer_locks.HANDLERS,
    **reducer_files.HANDLERS,
}
