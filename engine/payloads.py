"""Message payloads: one model per message type, camelCase on the wire, unknown keys refused.

The seed gives the names where it has them (`resourceId`, `lockType`, the AgentConfig fields of
`agent_ready`); `engine/protocol.py` pins each payload to its message type.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from engine.vocabulary import PRIORITY_RANK as PRIORITY_RANK  # callers import them from here too
from engine.vocabulary import LockType as LockType
from engine.vocabulary import Priority as Priority


class WireModel(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown keys are an error, not a silent drop."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        serialize_by_alias=True,
    )


# ---------------------------------------------------------------- payloads


class LockRef(WireModel):
    """A lock as named in fenced mutations: which grant and which token."""

    resource_id: str
    lock_type: LockType = "write"
    lock_id: str | None = None
    token: int | None = None


class TaskAssignPayload(WireModel):
    task_id: str
    attempt: int = Field(ge=1)
    title: str = ""
    description: str | None = None
    command: str | None = None
    estimate: float | None = None  # seconds
    agents: list[str] = Field(default_factory=list)  # every agent of a collaborative task
    locks: list[LockRef] = Field(default_factory=list)  # grants taken for the task's duration
    max_execution_time: float | None = None  # seconds


class Usage(WireModel):
    """What an attempt spent on a language model (a Claude Code run's result says)."""

    cost_usd: float = Field(default=0.0, ge=0.0)
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)


class TaskCompletePayload(WireModel):
    task_id: str
    attempt: int = Field(ge=1)
    result: str | dict[str, Any] | None = None
    locks: list[LockRef] = Field(default_factory=list)  # fencing: the grants this completion relies on
    usage: Usage | None = None


class TaskFailedPayload(WireModel):
    task_id: str
    attempt: int = Field(ge=1)
    error: str
    retryable: bool = True
    usage: Usage | None = None
    exit_code: int | None = None  # how the attempt's command exited, when one ran (shell, claude)


class TaskClaimPayload(WireModel):
    """An agent asks for a ready task it can do (a Claude Code agent picks its own work)."""

    task_id: str


class TaskUpdatePayload(WireModel):
    task_id: str
    attempt: int = Field(ge=1)
    progress: float | None = Field(default=None, ge=0.0, le=1.0)
    message: str | None = None
    stream: Literal["stdout", "stderr"] | None = None


class TaskCancelPayload(WireModel):
    task_id: str
    attempt: int = Field(ge=1)
    reason: str = ""


class ResourceLockPayload(WireModel):
    """A lock request, and (with lockId/token/expiresAt filled) its grant."""

    resource_id: str
    lock_type: LockType
    ttl: int | None = Field(default=None, gt=0)  # ms
    wait_ms: int | None = Field(default=None, ge=0)
    task_id: str | None = None
    also: list[LockRef] = Field(default_factory=list)  # further paths granted all at once with resourceId
    lock_id: str | None = None
    token: int | None = None
    expires_at: datetime | None = None
    grants: list[LockRef] = Field(default_factory=list)  # on a multi-path grant: every path's lockId/token


class ResourceUnlockPayload(WireModel):
    resource_id: str
    lock_id: str | None = None
    released: bool | None = None  # on the reply


class ResourceConflictPayload(WireModel):
    resource_id: str
    lock_type: LockType
    holder: str | None = None
    holder_mode: LockType | None = None
    holder_task: str | None = None
    reason: str = ""


class StateUpdatePayload(WireModel):
    """A holder's report of a file's new content, fenced with its grant."""

    path: str
    checksum: str
    lock_id: str | None = None
    token: int | None = None
    attempt: int | None = None
    task_id: str | None = None


class StateRequestPayload(WireModel):
    #: "conflicts" alone asks for the files in conflict only (a hook's question after each tool call)
    sections: list[Literal["files", "tasks", "agents", "locks", "conflicts"]] = Field(default_factory=list)
    #: true: besides this answer, push a state_sync of these sections after every change of the
    #: state (at a bounded rate, engine/state_push.py); false: stop pushing
    subscribe: bool | None = None


class StateSyncPayload(WireModel):
    version: int
    state: dict[str, Any]


def _empty(value: object) -> bool:
    """Left out of the wire form while empty: messages written before the field existed stay
    byte for byte what they were (journals record them)."""
    return not value


class ResourceLimits(WireModel):
    """The seed's AgentConfig resourceLimits."""

    max_concurrent_tasks: int | None = Field(default=None, ge=1)
    max_memory_usage: int | None = Field(default=None, ge=0)  # bytes
    max_execution_time: float | None = Field(default=None, gt=0)  # seconds


class AgentReadyPayload(WireModel):
    """The seed's AgentConfig, from an agent joining; `token` binds a remote connection to it.

    `channel` says what the connection is for: `agent` (the agent itself: it receives the agent's
    messages, and a newer one replaces an older one), or `requests` (a short-lived side channel of
    the same agent, such as a Claude Code hook call: it receives only the replies to its own
    requests), or `watch` (a person's `sprintdeck watch`: a snapshot, then the events; engine/watchers.py).
    `session` names the Claude Code session the agent is, when it is one.
    """

    agent_id: str | None = None  # the seed's agentId: must equal the envelope's `from`
    capabilities: list[str] = Field(default_factory=list)
    specializations: list[str] = Field(default_factory=list)
    max_concurrent_tasks: int | None = Field(default=None, ge=1)
    resource_limits: ResourceLimits | None = None
    dependencies: list[str] = Field(default_factory=list, exclude_if=_empty)
    token: str | None = None
    session: str | None = Field(default=None, min_length=1, max_length=200)
    channel: Literal["agent", "requests", "watch"] = Field(default="agent", exclude_if=lambda value: value == "agent")


class AgentLeavePayload(WireModel):
    """An agent leaves in good order (its Claude Code session ended): its locks and work go back."""

    reason: str = ""
    crashed: bool = False  # it did not leave but died (its supervisor saw its process killed)


class AgentBusyPayload(WireModel):
    task_id: str | None = None
    reason: str = ""


class AgentErrorPayload(WireModel):
    error: str
    field: str | None = None
    ref_message_id: str | None = None


class RequestAssistancePayload(WireModel):
    """Help asked for.  Sent to the manager, it is brokered (engine/assistance.py) to the agent
    named by `agentId`, or else to one with `capability` (or the capabilities `taskId` requires)."""

    topic: str
    task_id: str | None = None
    details: str = ""
    agent_id: str | None = None  # the agent asked for by name
    capability: str | None = None  # what a helper must be able to do
    requester: str | None = None  # on the copy the manager forwards: who asked


class ProvideAssistancePayload(WireModel):
    """Help given; relayed by the manager, `agentId` names the helper and `helped` is false when
    nobody could help (no capable agent, or no answer in time)."""

    topic: str = ""
    task_id: str | None = None
    details: str = ""
    agent_id: str | None = None
    helped: bool | None = None


class BroadcastInfoPayload(WireModel):
    info: str
    data: dict[str, Any] = Field(default_factory=dict)


class HeartbeatPayload(WireModel):
    tasks: list[str] = Field(default_factory=list)
    load: int | None = Field(default=None, ge=0)
