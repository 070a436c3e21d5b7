"""The parts of a checked plan (settings, agents, tasks, their resources) and how each is read.

Each part is a named tuple next to its `Part`: the readers of its keys (engine/plan_schema.py) and
the checks that span its keys.  A tuple because a plan is read once and then only read from: a
100,000-task plan keeps 100,000 `TaskSpec`s for the whole sprint, each a few hundred bytes lighter
than a model, and `validate` starts without importing a model library (or `dataclasses`).  The
empty lists the parts default to are shared: nothing changes a plan's lists after reading.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args

from engine.identifiers import MAX_ID_LENGTH, shown
from engine.plan_checks import CapabilityIndex
from engine.plan_schema import Invalid, Issue, Part, chain, choice, integer, list_of, mapping, non_empty, number, optional, string
from engine.plan_values import (
    Duration,
    Id,
    Names,
    ResourcePath,
    SizeLimit,
    SprintName,
    Text,
    TimeLimit,
    Title,
    one_or_many,
)
from engine.vocabulary import AgentKind, LockType, Priority

Coordination = Literal["sequential", "parallel", "collaborative"]

AGENT_ID_PATTERN = re.compile(r"[a-z0-9_-]+")


# ---------------------------------------------------------------- settings


class Settings(NamedTuple):
    """Sprint-wide timings and limits; durations in seconds."""

    lock_ttl: float = 30.0
    heartbeat_interval: float = 1.0
    heartbeat_timeout: float = 5.0
    lock_delay: float = 1.0
    max_retries: int = 2
    rogue_edits: int = 0  # simulated agents' unlocked edits, to exercise conflicts
    # A closed connection marks its agent disconnected at once, and dead after this grace unless it
    # is back: a killed process's work moves on well before its heartbeats would have timed out.
    disconnect_grace: float = 0.5
    max_task_deaths: int = 3  # agents dying under one task before it fails
    max_agent_restarts: int = 5  # restarts of one crashed agent (serve --spawn, embedded)


def _disconnect_grace(settings: Settings, written: Any) -> None:
    if "disconnect_grace" in written and not 0 < settings.disconnect_grace <= settings.heartbeat_timeout:
        raise Invalid([Issue(("disconnect_grace",), "value", "should be more than 0 and at most heartbeat_timeout "
                             f"({settings.heartbeat_timeout:g}s), got {settings.disconnect_grace:g}s")])


SETTINGS = Part(Settings, {
    "lock_ttl": Duration,
    "heartbeat_interval": Duration,
    "heartbeat_timeout": Duration,
    "lock_delay": Duration,
    "max_retries": integer(0, 100),
    "rogue_edits": integer(0, 1000),
    "disconnect_grace": Duration,
    "max_task_deaths": integer(1, 100),
    "max_agent_restarts": integer(0, 100),
}, finish=_disconnect_grace)


# ---------------------------------------------------------------- agents


class AgentSpec(NamedTuple):
    """An agent as declared; the engine's AgentState/AgentConfig are built from it."""

    id: str
    kind: AgentKind = "simulated"
    capabilities: list[str] = []
    specializations: list[str] = []
    max_concurrent_tasks: int = 1
    max_execution_time: float | None = None  # seconds
    max_memory_usage: int | None = None  # bytes
    failure_rate: float = 0.0  # simulated agents only
    # The seed's AgentConfig.dependencies: agents that must be ready before this one gets work.
    dependencies: list[str] = []
    # Claude Code agents (left out of the agent's JSON when unset, so older clients read the same):
    role: str | None = None  # standing instructions
    model: str | None = None  # kind: claude only, as below
    allowed_tools: list[str] = []
    max_turns: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The agent as the welcome describes it to its process; unset Claude keys left out."""
        data = self._asdict()
        for name in _LEFT_OUT_WHEN_UNSET:
            if data[name] in (None, []):
                del data[name]
        return data


_LEFT_OUT_WHEN_UNSET = ("dependencies", "role", "model", "allowed_tools", "max_turns")


def _agent_id(value: str) -> str:
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"agent id {shown(value)} is too long (at most {MAX_ID_LENGTH} characters)")
    if not AGENT_ID_PATTERN.fullmatch(value):
        raise ValueError(f"agent id {shown(value)} must match [a-z0-9_-]+")
    return value


def _claude_options(agent: AgentSpec, written: Any) -> None:
    """What only `claude -p` reads is a mistake elsewhere; a Claude agent without a role has none."""
    claude_only = [name for name in ("model", "allowed_tools", "max_turns") if getattr(agent, name)]
    if agent.kind != "claude" and claude_only:
        raise ValueError(f"{', '.join(claude_only)}: only for kind: claude (this agent is {agent.kind})")
    if agent.kind == "claude" and not agent.role:
        raise ValueError("role: a claude agent needs a role, its standing instructions "
                         "(e.g. 'You are the backend specialist: ...')")


AGENT = Part(AgentSpec, {
    "id": chain(string, _agent_id),
    "kind": choice(get_args(AgentKind)),
    "capabilities": Names,
    "specializations": Names,
    "max_concurrent_tasks": integer(1, 100),
    "max_execution_time": optional(TimeLimit),
    "max_memory_usage": optional(SizeLimit),
    "failure_rate": number(0.0, 1.0),
    "dependencies": Names,
    "role": optional(non_empty),
    "model": optional(non_empty),
    "allowed_tools": Names,
    "max_turns": optional(integer(1, 10000)),
}, required=frozenset({"id"}), finish=_claude_options)


def read_agent_spec(raw: Any) -> AgentSpec:
    """An agent from its JSON (the server's welcome); ValueError naming what is wrong."""
    agent, issues = AGENT.read(raw)
    if issues:
        raise ValueError("; ".join(f"{'.'.join(map(str, issue.where)) or 'agent'}: {issue.reason}" for issue in issues))
    assert isinstance(agent, AgentSpec)
    return agent


# ---------------------------------------------------------------- tasks


class ResourceSpec(NamedTuple):
    """A lock held for the task's whole run: a workspace path (a directory covers all below) or `name:thing`."""

    path: str
    mode: LockType = "write"


RESOURCE = Part(ResourceSpec, {"path": ResourcePath, "mode": choice(get_args(LockType))},
                required=frozenset({"path"}))


def _resource_entries(value: Any) -> Any:
    """A bare string in `resources` is a write lock on that path."""
    value = one_or_many(value)
    if isinstance(value, list):
        return [{"path": item, "mode": "write"} if isinstance(item, str) else item for item in value]
    return value


class TaskSpec(NamedTuple):
    """A task as declared; who may take it is `Plan.capable_agents`."""

    id: str
    title: str = ""  # default: the id
    description: str | None = None  # what a Claude Code agent is told to do
    agent: str | None = None
    requires: list[str] = []
    agents: list[str] = []
    coordination: Coordination = "parallel"  # default: see _task_defaults
    depends_on: list[str] = []
    resources: list[ResourceSpec] = []
    shared_resources: list[str] = []
    priority: Priority = "medium"
    estimate: float = 1.0  # seconds
    command: str | None = None
    max_retries: int = 2  # default: settings.max_retries (set by the plan)


def _task_defaults(values: dict[str, Any], written: Any) -> None:
    """A task's title is its id unless it has one; the coordination a task has when it does not
    say: several agents work together, a task with dependencies follows them, anything else runs
    beside the rest."""
    if not values.get("title"):
        values["title"] = values["id"]
    if "coordination" not in written:
        if values.get("agents"):
            values["coordination"] = "collaborative"
        elif values.get("depends_on"):
            values["coordination"] = "sequential"


TASK = Part(TaskSpec, {
    "id": Id,
    "title": Title,
    "description": optional(Text),
    "agent": optional(string),
    "requires": Names,
    "agents": Names,
    "coordination": choice(get_args(Coordination)),
    "depends_on": Names,
    "resources": chain(_resource_entries, list_of(mapping(RESOURCE))),
    "shared_resources": chain(one_or_many, list_of(ResourcePath)),
    "priority": choice(get_args(Priority)),
    "estimate": Duration,
    "command": optional(Text),
    "max_retries": integer(0, 100),
}, required=frozenset({"id"}), prepare=_task_defaults)


# ---------------------------------------------------------------- what other parts refer to


class AgentLinks(NamedTuple):
    """An agent's `AgentRefs`, read even when the rest of it is broken."""

    id: str
    capabilities: list[str] = []


class TaskLinks(NamedTuple):
    """A task's `TaskRefs`, read even when the rest of it is broken."""

    id: str
    agent: str | None = None
    agents: list[str] = []
    requires: list[str] = []
    depends_on: list[str] = []


AGENT_LINKS = Part(AgentLinks, {"id": string, "capabilities": Names}, required=frozenset({"id"}))
TASK_LINKS = Part(TaskLinks, {"id": string, "agent": optional(string), "agents": Names, "requires": Names,
                              "depends_on": Names}, required=frozenset({"id"}))


# ---------------------------------------------------------------- the plan


class Header(NamedTuple):
    """The top-level scalars, read apart so that broken agents or tasks do not hide them."""

    sprint: str
    description: str = ""
    workspace: str | None = None


HEADER = Part(Header, {"sprint": SprintName, "description": Text, "workspace": optional(string)},
              required=frozenset({"sprint"}))


class Plan:
    """A checked sprint plan; `source`/`digest` tie a journal to the exact file it ran."""

    __slots__ = ("sprint", "description", "workspace", "settings", "agents", "tasks", "source", "digest",
                 "task_lines", "agent_lines", "_agents_by_id", "_tasks_by_id", "_capabilities")

    def __init__(self, *, sprint: str, agents: list[AgentSpec], source: Path, digest: str, description: str = "",
                 workspace: Path | None = None, settings: Settings | None = None, tasks: list[TaskSpec] | None = None,
                 task_lines: dict[str, int] | None = None, agent_lines: dict[str, int] | None = None) -> None:
        self.sprint = sprint
        self.description = description
        self.workspace = workspace  # absolute
        self.settings = settings or Settings()
        self.agents = agents
        self.tasks = tasks or []
        self.source = source
        self.digest = digest  # sha256 hex of the file's bytes
        self.task_lines = task_lines or {}
        self.agent_lines = agent_lines or {}
        self._agents_by_id = {agent.id: agent for agent in self.agents}
        self._tasks_by_id = {task.id: task for task in self.tasks}
        self._capabilities = CapabilityIndex(self.agents)

    def agent(self, agent_id: str) -> AgentSpec:
        """The agent with this id (KeyError if there is none)."""
        return self._agents_by_id[agent_id]

    def task(self, task_id: str) -> TaskSpec:
        """The task with this id (KeyError if there is none)."""
        return self._tasks_by_id[task_id]

    def line_of(self, item_id: str) -> int:
        """The plan line where a task (or, failing that, an agent) is defined; 1 if unknown."""
        return self.task_lines.get(item_id) or self.agent_lines.get(item_id) or 1

    def capable_agents(self, task: TaskSpec | str) -> list[str]:
        """Ids of the agents that may take `task`, in plan order.

        A pinned agent wins; a collaborative task's listed agents all take part; otherwise every
        agent holding all the required capabilities (any agent when nothing is required).
        """
        spec = self.task(task) if isinstance(task, str) else task
        if spec.agent:
            return [spec.agent]
        if spec.agents:
            return list(spec.agents)
        return self._capabilities.agents_with(spec.requires)
