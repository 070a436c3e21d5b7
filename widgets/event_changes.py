"""The rows a batch of engine events touched (`Changes`), by each event's kind.

Apart from `widgets/changes.py` because it imports the event classes: the dashboard imports this
with its first batch of events, after its first frame.
"""

from __future__ import annotations

from collections.abc import Iterable

from engine.events import (
    AgentDead,
    AgentRegistered,
    AgentStatus,
    CompletionRefused,
    Event,
    EventBody,
    FileEvent,
    FileReported,
    LockEvent,
    LockGranted,
    LockQueued,
    LockRefused,
    LockRenewed,
    OperatorAction,
    SprintStarted,
    TaskAssigned,
    TaskEvent,
)
from widgets.changes import Changes

_BY_AGENT = (AgentStatus, AgentDead, CompletionRefused, LockGranted, LockQueued, LockRenewed, LockRefused, FileReported)


def collect(events: Iterable[Event]) -> Changes:
    changes = Changes()
    for event in events:
        _note(changes, event.body)
    return changes


def _note(changes: Changes, body: EventBody) -> None:
    """The rows one event touches, by its kind (a kind that names a task, an agent, a file...)."""
    if isinstance(body, SprintStarted):
        changes.everything = True
    if isinstance(body, TaskEvent):
        changes.tasks.add(body.task_id)
    if isinstance(body, TaskAssigned):
        changes.agents.update(body.agents)
    if isinstance(body, _BY_AGENT):
        changes.agents.add(body.agent_id)
    if isinstance(body, AgentRegistered):
        changes.agents.add(str(body.agent.get("id", "")))
    if isinstance(body, (LockGranted, LockQueued)) and body.task_id is not None:
        changes.tasks.add(body.task_id)
    if isinstance(body, AgentDead):
        changes.tasks.update(body.requeued_tasks)
    if isinstance(body, (LockEvent, AgentDead)):
        changes.locks = True
    if isinstance(body, FileEvent):
        changes.files.add(body.path)
    if isinstance(body, OperatorAction):
        _note_operator(changes, body)


def _note_operator(changes: Changes, body: OperatorAction) -> None:
    if isinstance(body.task_id, str):
        changes.tasks.add(body.task_id)
    if isinstance(body.agent_id, str):
        changes.agents.add(body.agent_id)
    if isinstance(body.path, str):
        changes.files.add(body.path)
