"""State models: the seed's ProjectState and its parts, camelCase in JSON.

These are the record of the sprint, not the decision logic: only the reducer changes them
(`engine/reducer.py`), and every field is derived from journaled events, so a replayed state
serialises byte for byte like the live one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from engine.vocabulary import AgentKind as AgentKind  # callers import it from here too
from engine.vocabulary import LockType, Priority

TaskStatus = Literal[
    "pending", "ready", "blocked", "assigned", "running", "retrying", "completed", "failed", "cancelled"
]
TERMINAL_TASK_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
#: An attempt is under way: placed on its agents, maybe waiting for its locks, maybe started.
IN_FLIGHT_TASK_STATUSES: frozenset[str] = frozenset({"assigned", "running", "blocked"})
AgentStatus = Literal["ready", "busy", "unresponsive", "dead", "paused", "waiting", "error"]
FileStatus = Literal["clean", "modified", "conflict"]


class StateModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown keys refused.

    Empty list and dict defaults are `default_factory`s: pydantic deep-copies a literal `[]`
    default for every instance, which made each lock grant and each task's state cost a
    microsecond more per such field.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
    )

    def __setattr__(self, name: str, value: object) -> None:
        """Set a field straight in the instance dict; anything else goes through pydantic (and fails).

        Only the reducer writes state, with values of the field's type, and it sets some fifty
        fields per task: pydantic's own assignment (a handler look-up and fields-set bookkeeping
        nobody here reads) cost twice this, about 5 µs per task of a sprint.
        """
        fields = self.__dict__
        if name in fields:
            fields[name] = value
        else:
            super().__setattr__(name, value)


ConflictReason = Literal["no_lock", "read_lock_only", "checksum_mismatch", "several_writers", "superseded_holder"]
FileChange = Literal["created", "modified", "deleted", "renamed"]


class LockHolder(StateModel):
    """Who held what on a path at the moment a change was judged (a conflict names them)."""

    agent_id: str
    lock_type: LockType
    resource_id: str
    lock_id: str
    token: int
    task_id: str | None = None


class FileConflict(StateModel):
    """Why a change was not one anybody was entitled to make, and what can undo it."""

    reason: ConflictReason
    detail: str
    change: FileChange = "modified"
    holders: list[LockHolder] = Field(default_factory=list)
    seq: int = 0  # the event that raised it
    detected_at: datetime | None = None
    can_revert: bool = False  # last good content kept (revert restores it)
    can_merge: bool = False  # a base is known (three-way merge possible)
    escalated: bool = False
    escalated_by: str | None = None
    note: str | None = None
    merge_attempts: int = 0


class FileState(StateModel):
    path: str
    last_modified: datetime | None = None
    modified_by: str | None = None
    checksum: str = ""
    status: FileStatus = "clean"
    size: int | None = None
    mtime: datetime | None = None  # the file system's modification time
    deleted: bool = False  # gone from disk, kept because the deletion is a conflict
    renamed_from: str | None = None
    reported_checksum: str | None = None  # what the lock holder last reported (state_update)
    reported_by: str | None = None
    error: str | None = None  # why the file cannot be read (the watcher goes on)
    conflict: FileConflict | None = None
    resolution: str | None = None  # last resolution: accept, revert, merge (with resolved_by)
    resolved_by: str | None = None


class TaskResource(StateModel):
    path: str
    mode: LockType = "write"


AttemptOutcome = Literal["running", "completed", "failed", "requeued", "agent_died", "cancelled"]


@dataclass(slots=True)
class AttemptRecord:
    """One attempt of a task and how it ended, kept after the task moves on to the next one.

    A retry resets the task's live fields (`error`, `started_at`...); the operator asking "why did
    this fail the first time" reads it here.  Folded from the journal like every other field.  A
    slotted dataclass, not a model: it is never on the wire, and a sprint keeps one per attempt
    (a model instance cost ~600 bytes each, a tenth of a task's whole footprint).
    """

    number: int
    agents: list[str] = field(default_factory=list)
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: AttemptOutcome = "running"
    error: str | None = None  # the failure, cancellation or requeue reason, in words
    exit_code: int | None = None  # a shell or claude agent's command: how its process exited
    released_locks: list[str] = field(default_factory=list)  # paths of the task's locks let go of (in order)

    def as_json(self) -> dict[str, object]:
        """The attempt in the state's JSON shape (camelCase keys, ISO times), for a view's raw JSON."""
        return {to_camel(name): value.isoformat() if isinstance(value, datetime) else value
                for name in self.__slots__ if (value := getattr(self, name)) is not None}


class TaskState(StateModel):
    id: str
    title: str = ""
    status: TaskStatus = "pending"
    agent: str | None = None  # current (or last) owner
    agents: list[str] = Field(default_factory=list)  # collaborative tasks: every agent taking part
    pinned_agent: str | None = None
    requires: list[str] = Field(default_factory=list)
    coordination: Literal["sequential", "parallel", "collaborative"] = "parallel"
    attempt: int = 0
    dependencies: list[str] = Field(default_factory=list)
    priority: Priority = "medium"
    estimate: float = 0.0  # seconds
    resources: list[TaskResource] = Field(default_factory=list)
    command: str | None = None
    max_retries: int = 2
    failures: int = 0  # attempts that failed (not counting agent deaths)
    agent_deaths: int = 0  # attempts lost to a dead agent
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    progress: float = 0.0
    last_output: str | None = None
    blocked_on: list[str] = Field(default_factory=list)  # paths whose locks the task waits for
    # Every attempt so far, oldest first.  Left out of the wire shape (and so of state digests):
    # journals recorded before it existed must fold to the digests they recorded.
    attempts: list[AttemptRecord] = Field(default_factory=list, exclude=True)

    @property
    def owners(self) -> list[str]:
        """Who works on the task's current (or last) attempt: every agent of a collaborative
        task, else its one agent (none before its first assignment)."""
        if self.coordination == "collaborative":
            return list(self.agents)
        return [self.agent] if self.agent else []

    @property
    def in_flight(self) -> bool:
        return self.status in IN_FLIGHT_TASK_STATUSES


def _unset(value: object) -> bool:
    """A field added after journals were first written is left out of the JSON while unset, so
    states folded from those journals serialise (and digest) exactly as they always did."""
    return value is None or value == 0


class AgentMetrics(StateModel):
    tasks_completed: int = 0
    tasks_in_progress: int = 0
    tasks_failed: int = 0
    average_task_duration: float = 0.0  # seconds
    resource_lock_wait_time: float = 0.0  # seconds, summed
    messages_sent: int = 0
    messages_received: int = 0
    busy_time: float = 0.0  # seconds spent with at least one task
    cost_usd: float = Field(default=0.0, exclude_if=_unset)  # language-model spend (Claude Code runs)
    input_tokens: int = Field(default=0, exclude_if=_unset)
    output_tokens: int = Field(default=0, exclude_if=_unset)


class AgentState(StateModel):
    id: str
    kind: AgentKind = "simulated"
    status: AgentStatus = "ready"
    capabilities: list[str] = Field(default_factory=list)
    specializations: list[str] = Field(default_factory=list)
    max_concurrent_tasks: int = 1
    current_tasks: list[str] = Field(default_factory=list)
    last_heartbeat: datetime | None = None
    busy_since: datetime | None = None
    metrics: AgentMetrics = Field(default_factory=AgentMetrics)
    session: str | None = Field(default=None, exclude_if=_unset)  # the Claude Code session it is
    status_reason: str | None = Field(default=None, exclude_if=_unset)  # why it waits (for a human...)


class LockWaiter(StateModel):
    request_id: str
    agent_id: str
    lock_type: LockType
    since: datetime | None = None
    task_id: str | None = None


class ResourceLock(StateModel):
    resource_id: str
    lock_type: LockType
    agent_id: str
    timestamp: datetime
    ttl: int  # ms
    lock_id: str
    token: int
    expires_at: datetime
    task_id: str | None = None
    waiters: list[LockWaiter] = Field(default_factory=list)


class SprintMeta(StateModel):
    """What the reducer tracks beyond the seed's five keys; kept out of the JSON shape."""

    sprint: str = ""
    journal_epoch: int = 1
    started_at: datetime | None = None
    finished_at: datetime | None = None
    paused: bool = False
    waiters: list[tuple[str, LockWaiter]] = Field(default_factory=list)  # (resourceId, waiter) in queue order
    contention: dict[str, int] = Field(default_factory=dict)  # resourceId -> waits and refusals
    messages: int = 0
    rejected_messages: int = 0
    replies: int = 0
    reply_latency_total: float = 0.0  # ms


class ProjectState(StateModel):
    """The seed's ProjectState: exactly version, files, tasks, agents, locks on the wire."""

    version: int = 0
    files: dict[str, FileState] = Field(default_factory=dict)
    tasks: dict[str, TaskState] = Field(default_factory=dict)
    agents: dict[str, AgentState] = Field(default_factory=dict)
    locks: dict[str, ResourceLock] = Field(default_factory=dict)  # keyed by lockId: several readers may share a path
    meta: SprintMeta = Field(default_factory=SprintMeta, exclude=True)


class ResourceLimits(StateModel):
    max_concurrent_tasks: int = 1
    max_memory_usage: int | None = None  # bytes
    max_execution_time: float | None = None  # seconds


class AgentConfig(StateModel):
    """The seed's AgentConfig, built from a plan's agent entry."""

    agent_id: str
    kind: AgentKind = "simulated"
    capabilities: list[str] = Field(default_factory=list)
    resource_limits: ResourceLimits = Field(default_factory=ResourceLimits)
    specializations: list[str] = Field(default_factory=list)
    dependencies: list[str] = Field(default_factory=list)
    failure_rate: float = 0.0


class SprintMetrics(StateModel):
    total_tasks: int = 0
    completed_tasks: int = 0
    failed_tasks: int = 0
    cancelled_tasks: int = 0
    agent_utilization: dict[str, float] = Field(default_factory=dict)
    resource_contention: dict[str, int] = Field(default_factory=dict)
    communication_latency: float = 0.0  # ms, mean request -> reply
    elapsed: float = 0.0  # seconds of sprint time
    retries: int = 0
    agent_deaths: int = 0
    messages: int = 0
    cost_usd: float = 0.0  # language-model spend of every agent together
    input_tokens: int = 0
    output_tokens: int = 0
    # Files still in `conflict` when the metrics were taken: at the end, part of the outcome.
    unresolved_conflicts: list[str] = Field(default_factory=list)


class ActivityLog(StateModel):
    timestamp: datetime
    agent_id: str
    action: str
    resource_id: str | None = None
    task_id: str | None = None
    duration: float | None = None
    success: bool = True
    error: str | None = None
