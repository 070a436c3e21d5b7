"""The values the client library (engine/agents/client.py) hands an agent and takes back.

`Task` (an assignment), `TaskResult` (the seed's, what `execute_task` returns), `Lock` (the
answer to a lock request: true when granted, the seed's boolean), the assistance asked and given,
and the errors the library raises.  Import them from `engine.agents.client`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.payloads import LockType, TaskAssignPayload
from engine.protocol import IPCMessage


class AgentRequestError(RuntimeError):
    """The manager refused a request as malformed (`agent_error`); the message names the field."""


class LockRefused(RuntimeError):
    """`lock()` could not have the lock; `.lock` says who holds it and why."""

    def __init__(self, lock: Lock) -> None:
        held = f" (held by {lock.holder}: {lock.holder_mode}, task {lock.holder_task or 'none'})" if lock.holder else ""
        super().__init__(f"no {lock.lock_type} lock on {lock.resource_id}: {lock.reason}{held}")
        self.lock = lock


class TaskFailed(Exception):
    """Raise from `execute_task` to fail the attempt with this message; `retryable=False` says a
    new attempt cannot do better (the manager then gives up on the task)."""

    def __init__(self, error: str, *, retryable: bool = True) -> None:
        super().__init__(error)
        self.retryable = retryable


@dataclass(frozen=True)
class Lock:
    """The answer to a lock request: true when granted (the seed's boolean), with the fencing data
    (`lock_id`, `token`) a file report needs, or who stands in the way when refused."""

    resource_id: str
    lock_type: LockType
    granted: bool
    lock_id: str | None = None
    token: int | None = None
    expires_at: str | None = None
    holder: str | None = None
    holder_mode: str | None = None
    holder_task: str | None = None
    reason: str = ""

    def __bool__(self) -> bool:
        return self.granted


@dataclass(frozen=True)
class Task:
    """One assignment: the plan's task as this attempt of it, with the locks the manager took for it."""

    id: str
    attempt: int
    title: str = ""
    description: str | None = None
    command: str | None = None
    estimate: float | None = None  # seconds
    agents: tuple[str, ...] = ()  # every agent of a collaborative task
    locks: tuple[Lock, ...] = ()  # held for the task's whole attempt (its plan `resources`)
    max_execution_time: float | None = None  # seconds; past it the attempt fails

    @classmethod
    def of(cls, assign: TaskAssignPayload) -> Task:
        locks = tuple(Lock(ref.resource_id, ref.lock_type, True, ref.lock_id, ref.token) for ref in assign.locks)
        return cls(assign.task_id, assign.attempt, assign.title, assign.description, assign.command, assign.estimate,
                   tuple(assign.agents), locks, assign.max_execution_time)

    def lock(self, resource_id: str) -> Lock | None:
        """The task's own lock on `resource_id` (taken by the manager before the assignment)."""
        return next((held for held in self.locks if held.resource_id == resource_id), None)


@dataclass(frozen=True)
class TaskResult:
    """The seed's TaskResult: what `execute_task` returns."""

    success: bool = True
    result: str | dict[str, Any] | None = None
    error: str = ""
    retryable: bool = True


@dataclass(frozen=True)
class AssistanceRequest:
    """Another agent (or the manager on its behalf) asks this one for help."""

    requester: str
    topic: str
    details: str = ""
    task_id: str | None = None
    message: IPCMessage | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Assistance:
    """The answer to `request_assistance`: `answered` False when nobody helped (then `details` says why)."""

    answered: bool
    helper: str | None
    topic: str
    details: str = ""
