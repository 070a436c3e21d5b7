"""The sprint's and the agents' events."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.events.base import ABSENT, Absent, EventBody, EventType, Json, event_kind


# ---------------------------------------------------------------- the sprint


@event_kind(EventType.SPRINT_STARTED)
@dataclass(slots=True, kw_only=True)
class SprintStarted(EventBody):
    """The plan as the sprint runs it, so a journal replays without the plan file."""

    sprint: str
    plan_digest: str | None = None
    seed: int = 0
    agents: list[Json]
    tasks: list[Json]
    epoch: int | Absent = ABSENT  # only in journals of an older shape
    files: list[Json] | Absent = ABSENT


@event_kind(EventType.SPRINT_PAUSED)
@dataclass(slots=True, kw_only=True)
class SprintPaused(EventBody):
    pass


@event_kind(EventType.SPRINT_RESUMED)
@dataclass(slots=True, kw_only=True)
class SprintResumed(EventBody):
    pass


@event_kind(EventType.SPRINT_FINISHED)
@dataclass(slots=True, kw_only=True)
class SprintFinished(EventBody):
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


@event_kind(EventType.SPRINT_RECOVERED)
@dataclass(slots=True, kw_only=True)
class SprintRecovered(EventBody):
    """A restarted manager: a new epoch, every recovered lease renewed (lock id -> new expiry)."""

    epoch: int
    previous_version: int = 0
    leases: dict[str, str] = field(default_factory=dict)


@event_kind(EventType.STATE_DIGEST)
@dataclass(slots=True, kw_only=True)
class StateDigest(EventBody):
    """sha256 of the state at version `of`, so a replay can prove it folds the same state."""

    digest: str = ""
    of: int | None = None


# ---------------------------------------------------------------- agents


@event_kind(EventType.AGENT_REGISTERED)
@dataclass(slots=True, kw_only=True)
class AgentRegistered(EventBody):
    agent: Json  # an AgentState in its JSON shape


@event_kind(EventType.AGENT_STATUS)
@dataclass(slots=True, kw_only=True)
class AgentStatus(EventBody):
    agent_id: str
    status: str
    reason: str | Absent = ABSENT  # why (waiting for a human, ...); absent when there is nothing to say

    @property
    def subject(self) -> str:
        return self.agent_id


@event_kind(EventType.AGENT_DEAD)
@dataclass(slots=True, kw_only=True)
class AgentDead(EventBody):
    """Death in one event: its locks go (with lock-delay), its waits end, its tasks are ready again."""

    agent_id: str
    reason: str = ""
    released_locks: list[str] = field(default_factory=list)
    requeued_tasks: list[str] = field(default_factory=list)
    cancelled_requests: list[str] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return self.agent_id


@event_kind(EventType.AGENT_RESTARTED)
@dataclass(slots=True, kw_only=True)
class AgentRestarted(EventBody):
    """A crashed agent started again by its supervisor (`serve --spawn`, or the embedded agents'),
    after `delay` seconds of back-off; `restart` counts them, up to `settings.max_agent_restarts`."""

    agent_id: str
    restart: int = 1
    reason: str = ""  # how the previous run ended
    delay: float = 0.0
    pid: int | Absent = ABSENT  # the new process, when it is one

    @property
    def subject(self) -> str:
        return self.agent_id


@event_kind(EventType.AGENT_SESSION)
@dataclass(slots=True, kw_only=True)
class AgentSession(EventBody):
    """The Claude Code session that is the agent from now on (None: its session ended)."""

    agent_id: str
    session: str | None = None

    @property
    def subject(self) -> str:
        return self.agent_id


@event_kind(EventType.USAGE_RECORDED)
@dataclass(slots=True, kw_only=True)
class UsageRecorded(EventBody):
    """An attempt's language-model spend, as its agent reported it (recorded even if refused)."""

    agent_id: str
    task_id: str
    attempt: int = 0
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def subject(self) -> str:
        return self.agent_id
