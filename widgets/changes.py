"""Which rows a batch of engine events touched, so panes update those rows and nothing else."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.events import Event, EventType


@dataclass
class Changes:
    tasks: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    files: set[str] = field(default_factory=set)
    locks: bool = False
    everything: bool = False

    def __bool__(self) -> bool:
        return bool(self.tasks or self.agents or self.files or self.locks or self.everything)


_LOCK_EVENTS = {
    EventType.LOCK_GRANTED, EventType.LOCK_QUEUED, EventType.LOCK_RELEASED, EventType.LOCK_RENEWED,
    EventType.WAITER_REMOVED, EventType.AGENT_DEAD,
}


def collect(events: Iterable[Event]) -> Changes:
    changes = Changes()
    for event in events:
        data = event.data
        if event.type == EventType.SPRINT_STARTED:
            changes.everything = True
        if "taskId" in data:
            changes.tasks.add(data["taskId"])
        changes.tasks.update(data.get("requeuedTasks", ()))
        if "agentId" in data:
            changes.agents.add(data["agentId"])
        if event.type == EventType.TASK_ASSIGNED:
            changes.agents.update(data["agents"])
        if "path" in data:
            changes.files.add(data["path"])
        if event.type in _LOCK_EVENTS:
            changes.locks = True
    return changes
