"""Events about one task's attempts."""

from __future__ import annotations

from dataclasses import dataclass

from engine.events.base import ABSENT, Absent, EventBody, EventType, event_kind


# ---------------------------------------------------------------- tasks


@dataclass(slots=True, kw_only=True)
class TaskEvent(EventBody):
    """An event about one task (the views redraw that task's row)."""

    task_id: str

    @property
    def subject(self) -> str:
        return self.task_id


@event_kind(EventType.TASK_READY)
@dataclass(slots=True, kw_only=True)
class TaskReady(TaskEvent):
    pass


@event_kind(EventType.TASK_ASSIGNED)
@dataclass(slots=True, kw_only=True)
class TaskAssigned(TaskEvent):
    attempt: int
    agents: list[str]


@event_kind(EventType.TASK_BLOCKED)
@dataclass(slots=True, kw_only=True)
class TaskBlocked(TaskEvent):
    paths: list[str]


@event_kind(EventType.TASK_UNBLOCKED)
@dataclass(slots=True, kw_only=True)
class TaskUnblocked(TaskEvent):
    waited: float = 0.0  # seconds


@event_kind(EventType.TASK_STARTED)
@dataclass(slots=True, kw_only=True)
class TaskStarted(TaskEvent):
    attempt: int = 0


@event_kind(EventType.TASK_PROGRESS)
@dataclass(slots=True, kw_only=True)
class TaskProgress(TaskEvent):
    attempt: int = 0
    progress: float | None = None
    output: str | None = None


@event_kind(EventType.TASK_COMPLETED)
@dataclass(slots=True, kw_only=True)
class TaskCompleted(TaskEvent):
    attempt: int = 0
    agent: str | None = None


@event_kind(EventType.TASK_FAILED)
@dataclass(slots=True, kw_only=True)
class TaskFailed(TaskEvent):
    attempt: int = 0
    error: str
    will_retry: bool = False
    retry_in: float | None = None  # seconds of sprint time before the next attempt
    # How the agent's command exited (shell, claude): left out when nothing ran or no agent said,
    # so journals of simulated agents (and those recorded before it existed) keep their shape.
    exit_code: int | None | Absent = ABSENT


@event_kind(EventType.TASK_REQUEUED)
@dataclass(slots=True, kw_only=True)
class TaskRequeued(TaskEvent):
    """A live attempt taken away (operator, refused locks, a manager restart): not a failure."""

    attempt: int = 0
    reason: str | None = None


@event_kind(EventType.TASK_CANCELLED)
@dataclass(slots=True, kw_only=True)
class TaskCancelled(TaskEvent):
    reason: str | None = None
    by: str | None = None


@event_kind(EventType.TASK_PRIORITY)
@dataclass(slots=True, kw_only=True)
class TaskPriority(TaskEvent):
    priority: str


@event_kind(EventType.TASK_RESET)
@dataclass(slots=True, kw_only=True)
class TaskReset(TaskEvent):
    pass


@event_kind(EventType.COMPLETION_REFUSED)
@dataclass(slots=True, kw_only=True)
class CompletionRefused(TaskEvent):
    """A completion (or an update) from a superseded attempt or a stale lock: recorded, not applied."""

    attempt: int = 0
    agent_id: str = ""
    reason: str = ""
