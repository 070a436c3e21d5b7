"""Sprint plans: the models of a checked plan, and `load_plan`, which says exactly where one is wrong.

Plans are written by people and by other tools, so loading never stops at the first mistake and
never ends in a traceback: every mistake becomes a `Problem` carrying the file, the line and the
task or agent id, and `load_plan` raises them all together in one `PlanError`.

Loading takes three steps.  `engine.marked_yaml` reads the file into values that remember their
lines.  The pydantic models here check the shape of each part (settings, agent, task, resource);
their errors are reworded for a plan author at the end of this module.  `engine.plan_checks` then
checks what spans parts (duplicate ids, unknown references, cycles, who can do a task) on every
part it could read, so one broken task does not hide the problems of the others.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from engine.collector import collector_paused
from engine.identifiers import MAX_ID_LENGTH, shown
from engine.marked_yaml import MarkedDict, UnreadableDocument, read_document
from engine.model_memory import share_fields_sets
from engine.plan_checks import (
    AgentLinks,
    Entry,
    TaskLinks,
    CapabilityIndex,
    check_resource_links,
    check_timings,
    check_workspace,
    cross_check,
)
from engine.plan_problems import PlanError as PlanError  # callers import both from here
from engine.plan_problems import Problem as Problem
from engine.plan_problems import Report, suggest
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
    show,
)
from engine.vocabulary import AgentKind, LockType, Priority

Coordination = Literal["sequential", "parallel", "collaborative"]

AGENT_ID_PATTERN = re.compile(r"[a-z0-9_-]+")


# ---------------------------------------------------------------- the plan's parts


def _resource_entries(value: Any) -> Any:
    """A bare string in `resources` is a write lock on that path."""
    value = one_or_many(value)
    if isinstance(value, list):
        return [{"path": item, "mode": "write"} if isinstance(item, str) else item for item in value]
    return value


def _unset(value: object) -> bool:
    return value is None or value == []


class SpecModel(BaseModel):
    """A part of a plan as written: unknown keys are mistakes, and `"3"` is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Settings(SpecModel):
    """Sprint-wide timings and limits; durations in seconds."""

    lock_ttl: Duration = 30.0
    heartbeat_interval: Duration = 1.0
    heartbeat_timeout: Duration = 5.0
    lock_delay: Duration = 1.0
    max_retries: int = Field(default=2, ge=0, le=100)
    rogue_edits: int = Field(default=0, ge=0, le=1000)  # simulated agents' unlocked edits, to exercise conflicts
    # A closed connection marks its agent disconnected at once, and dead after this grace unless it
    # is back: a killed process's work moves on well before its heartbeats would have timed out.
    disconnect_grace: Duration = 0.5
    max_task_deaths: int = Field(default=3, ge=1, le=100)  # agents dying under one task before it fails
    max_agent_restarts: int = Field(default=5, ge=0, le=100)  # restarts of one crashed agent (serve --spawn, embedded)

    @field_validator("disconnect_grace")
    @classmethod
    def _disconnect_grace(cls, value: float, info: ValidationInfo) -> float:
        timeout = info.data.get("heartbeat_timeout", 5.0)
        if not 0 < value <= timeout:
            raise ValueError(f"should be more than 0 and at most heartbeat_timeout ({timeout:g}s), got {value:g}s")
        return value


class AgentSpec(SpecModel):
    """An agent as declared; the engine's AgentState/AgentConfig are built from it."""

    id: str
    kind: AgentKind = "simulated"
    capabilities: Names = []
    specializations: Names = []
    max_concurrent_tasks: int = Field(default=1, ge=1, le=100)
    max_execution_time: TimeLimit | None = None  # seconds
    max_memory_usage: SizeLimit | None = None  # bytes
    failure_rate: float = Field(default=0.0, ge=0.0, le=1.0)  # simulated agents only
    # The seed's AgentConfig.dependencies: agents that must be ready before this one gets work.
    dependencies: Names = Field(default=[], exclude_if=_unset)
    # Claude Code agents (left out of the plan's JSON when unset, so older journals read the same):
    role: str | None = Field(default=None, min_length=1, exclude_if=_unset)  # standing instructions
    model: str | None = Field(default=None, min_length=1, exclude_if=_unset)  # kind: claude only, as below
    allowed_tools: Names = Field(default=[], exclude_if=_unset)
    max_turns: int | None = Field(default=None, ge=1, le=10000, exclude_if=_unset)

    @field_validator("id")
    @classmethod
    def _id_pattern(cls, value: str) -> str:
        if len(value) > MAX_ID_LENGTH:
            raise ValueError(f"agent id {shown(value)} is too long (at most {MAX_ID_LENGTH} characters)")
        if not AGENT_ID_PATTERN.fullmatch(value):
            raise ValueError(f"agent id {shown(value)} must match [a-z0-9_-]+")
        return value

    @model_validator(mode="after")
    def _claude_options(self) -> AgentSpec:
        """What only `claude -p` reads is a mistake elsewhere; a Claude agent without a role has none."""
        claude_only = [name for name in ("model", "allowed_tools", "max_turns") if getattr(self, name)]
        if self.kind != "claude" and claude_only:
            raise ValueError(f"{', '.join(claude_only)}: only for kind: claude (this agent is {self.kind})")
        if self.kind == "claude" and not self.role:
            raise ValueError("role: a claude agent needs a role, its standing instructions "
                             "(e.g. 'You are the backend specialist: ...')")
        return self


class ResourceSpec(SpecModel):
    """A lock held for the task's whole run: a workspace path (a directory covers all below) or `name:thing`."""

    path: ResourcePath
    mode: LockType = "write"


class TaskSpec(SpecModel):
    """A task as declared; who may take it is `Plan.capable_agents`."""

    id: Id = Field(min_length=1)
    title: Title = ""  # default: the id
    description: Text | None = Field(default=None, exclude_if=_unset)  # what a Claude Code agent is told to do
    agent: str | None = None
    requires: Names = []
    agents: Names = []
    coordination: Coordination = "parallel"  # default: see _defaults
    depends_on: Names = []
    resources: Annotated[list[ResourceSpec], BeforeValidator(_resource_entries)] = []
    shared_resources: Annotated[list[ResourcePath], BeforeValidator(one_or_many)] = []
    priority: Priority = "medium"
    estimate: Duration = 1.0  # seconds
    command: Text | None = None
    max_retries: int = Field(default=2, ge=0, le=100)  # default: settings.max_retries (set by the plan)

    @model_validator(mode="after")
    def _defaults(self) -> TaskSpec:
        """Defaults that depend on other keys of the same task."""
        if not self.title:
            self.title = self.id
        if "coordination" not in self.model_fields_set:
            if self.agents:
                self.coordination = "collaborative"
            elif self.depends_on:
                self.coordination = "sequential"
        return self


class _Header(SpecModel):
    """The top-level scalars, validated apart so that broken agents or tasks do not hide them."""

    sprint: SprintName
    description: Text = ""
    workspace: str | None = None


class Plan(BaseModel):
    """A checked sprint plan; `source`/`digest` tie a journal to the exact file it ran."""

    sprint: str
    description: str = ""
    workspace: Path | None = None  # absolute
    settings: Settings = Field(default_factory=Settings)
    agents: list[AgentSpec]
    tasks: list[TaskSpec] = []
    source: Path
    digest: str  # sha256 hex of the file's bytes
    task_lines: dict[str, int] = {}
    agent_lines: dict[str, int] = {}

    _agents_by_id: dict[str, AgentSpec] = PrivateAttr(default_factory=dict)
    _tasks_by_id: dict[str, TaskSpec] = PrivateAttr(default_factory=dict)
    _capabilities: CapabilityIndex = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
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


# ---------------------------------------------------------------- loading


TOP_KEYS = ("sprint", "description", "workspace", "settings", "agents", "tasks")

Spec = TypeVar("Spec", bound=SpecModel)
Links = TypeVar("Links", bound=BaseModel)


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Load and check a plan; raise `PlanError` listing every problem found.

    Problems name the file exactly as given in `path`, so messages match what the user typed.
    The cyclic collector is paused meanwhile: every object a plan's reading makes survives it, and
    full collections walking them all again and again took 60% of a 50,000-task plan's load.
    """
    with collector_paused():
        return _load_plan(path)


def _load_plan(path: str | os.PathLike[str]) -> Plan:
    source = Path(path)
    report = Report(os.fspath(path))
    try:
        root, digest, duplicates = read_document(source)
    except UnreadableDocument as exc:
        raise PlanError([Problem(report.file, exc.line, exc.message)]) from None
    report.root = root
    for line, message in duplicates:
        report.add(line, message)
    if not _check_top(root, report):
        raise PlanError(sorted(report.problems, key=lambda problem: problem.line))

    header_keys = {key: root[key] for key in ("sprint", "description", "workspace") if key in root}
    header = _validate(report, _Header, header_keys, (), None)
    raw_settings = root.get("settings")
    settings = _validate(report, Settings, {} if raw_settings is None else raw_settings, ("settings",), "settings")
    timings = settings or _quietly(Settings, _timings_of(raw_settings))  # a bad max_retries hides no livelock
    if timings is not None:
        check_timings(report, timings)
    agents = _validate_items(root, "agents", AgentSpec, AgentLinks, report)
    tasks = _validate_items(root, "tasks", TaskSpec, TaskLinks, report)
    cross_check(report, agents, tasks)
    workspace = check_workspace(report, source, root.get("workspace"))
    if workspace is not None:
        check_resource_links(report, workspace, tasks)
    _check_agent_dependencies(report, agents)

    if report.problems:
        raise PlanError(sorted(report.problems, key=lambda problem: problem.line))
    assert header is not None and settings is not None  # no problem, so every part validated
    return _plan(source, digest, header, settings, agents, tasks)


def _plan(
    source: Path,
    digest: str,
    header: _Header,
    settings: Settings,
    agents: Sequence[Entry[AgentSpec, object]],
    tasks: Sequence[Entry[TaskSpec, object]],
) -> Plan:
    """The checked plan, from parts that all validated; tasks take the sprint's retry limit by default."""
    agent_specs = [entry.spec for entry in agents if entry.spec is not None]
    task_specs = [entry.spec for entry in tasks if entry.spec is not None]
    for task in task_specs:
        if "max_retries" not in task.model_fields_set:
            task.max_retries = settings.max_retries
    plan = Plan(
        sprint=header.sprint,
        description=header.description,
        workspace=(source.parent / header.workspace).resolve() if header.workspace else None,
        settings=settings,
        agents=agent_specs,
        tasks=task_specs,
        source=source.resolve(),
        digest=digest,
        task_lines={entry.raw["id"]: entry.raw.line for entry in tasks},
        agent_lines={entry.raw["id"]: entry.raw.line for entry in agents},
    )
    share_fields_sets(plan.tasks)  # 0.7 KB per task otherwise
    return plan


def _check_agent_dependencies(report: Report, agents: Sequence[Entry[AgentSpec, object]]) -> None:
    """Each agent's `dependencies` name other agents of the plan, and never lead back to it."""
    depends = {entry.spec.id: entry for entry in agents if entry.spec is not None}
    for agent_id, entry in depends.items():
        assert entry.spec is not None
        for index, other in enumerate(entry.spec.dependencies):
            if other == agent_id:
                report.at(("agents", entry.index, "dependencies", index), "dependencies: an agent cannot depend on itself", f"agent '{agent_id}'")
            elif other not in depends:
                report.at(("agents", entry.index, "dependencies", index),
                          f"dependencies: unknown agent '{other}'{suggest(other, list(depends))}", f"agent '{agent_id}'")
    for agent_id, entry in depends.items():
        cycle = _dependency_cycle(agent_id, depends)
        if cycle and cycle[0] == min(cycle):  # reported once, at the cycle's first agent
            report.at(("agents", entry.index, "dependencies"),
                      f"dependencies: agents depend on each other in a cycle ({' -> '.join(cycle + [cycle[0]])})",
                      f"agent '{agent_id}'")


def _dependency_cycle(start: str, depends: dict[str, Entry[AgentSpec, object]]) -> list[str]:
    """The agents on a dependency cycle through `start` (empty if there is none)."""
    path: list[str] = [start]
    seen: set[str] = set()

    def walk(agent_id: str) -> bool:
        entry = depends.get(agent_id)
        for other in entry.spec.dependencies if entry is not None and entry.spec is not None else []:
            if other == start and len(path) > 1:
                return True
            if other in seen or other not in depends or other == agent_id:
                continue
            seen.add(other)
            path.append(other)
            if walk(other):
                return True
            path.pop()
        return False

    return path if walk(start) else []


def _check_top(root: Any, report: Report) -> bool:
    """Whether the document is a mapping worth looking into; unknown top-level keys recorded."""
    if root is None or (isinstance(root, str) and not root.strip()):
        report.add(1, "the plan is empty (expected a mapping with sprint, agents and tasks)")
        return False
    if not isinstance(root, MarkedDict):
        line = getattr(root, "line", 1)
        report.add(line, f"a plan must be a mapping with sprint, agents and tasks, got {show(root)}")
        return False
    for key in root:
        if key not in TOP_KEYS:
            report.at((key,), f"unknown key '{key}'{suggest(key, TOP_KEYS)}")
    if "agents" not in root:
        report.add(root.line, "missing required key 'agents'")
    return True


def _validate_items(
    root: MarkedDict, key: str, model: type[Spec], links: type[Links], report: Report
) -> list[Entry[Spec, Spec | Links]]:
    """One `Entry` per item of the `agents` or `tasks` list, each item's problems recorded."""
    items = root.get(key)
    if items is None:
        items = []
    if not isinstance(items, list):
        report.at((key,), f"{key}: should be a list, got {show(items)}")
        return []
    if key == "agents" and not items and key in root:
        report.at((key,), "agents: at least one agent is required")
    entries: list[Entry[Spec, Spec | Links]] = []
    for index, item in enumerate(items):
        spec = _validate(report, model, item, (key, index), _who(key[:-1], item, index))
        entries.append(Entry(index, item, spec, spec or _quietly(links, item)))
    return entries


def _timings_of(raw_settings: Any) -> dict[str, Any]:
    keys = ("heartbeat_interval", "heartbeat_timeout", "lock_ttl")
    return {key: raw_settings[key] for key in keys if key in raw_settings} if isinstance(raw_settings, dict) else {}


def _quietly(model: type[Links], value: Any) -> Links | None:
    """What the cross checks need of an item whose full spec failed, or None if even that is unreadable."""
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


def _who(kind: str, item: Any, index: int) -> str:
    """`task 'x'` when the item has a usable id, else `task #3` (1-based, as people count)."""
    item_id = item.get("id") if isinstance(item, dict) else None
    return f"{kind} {shown(item_id)}" if isinstance(item_id, str) and item_id else f"{kind} #{index + 1}"


# ---------------------------------------------------------------- pydantic's errors in an author's words


def _validate(report: Report, model: type[Spec], value: Any, loc: tuple[Any, ...], who: str | None) -> Spec | None:
    """`model` validated from `value`, or None after recording each of its errors."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        for error in exc.errors():
            report.at(*_error_at(model, error, loc), who)
        return None


def _error_at(model: type[SpecModel], error: ErrorDetails, loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str]:
    """(where in the document, message) for one of pydantic's errors about `model` at `loc`."""
    where = tuple(error["loc"])
    kind = error["type"]
    if kind == "missing":
        return loc + where[:-1], f"missing required key '{where[-1]}'"
    if kind in ("extra_forbidden", "invalid_key"):
        return loc + where, f"unknown key '{where[-1]}'{suggest(where[-1], _keys_at(model, where))}"
    return loc + where, _field_message(where, error)


def _keys_at(model: type[SpecModel], where: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping that holds `where[-1]` (resources nest one model)."""
    if "resources" in where[:-1]:
        return list(ResourceSpec.model_fields)
    return list(model.model_fields)


def _field_name(where: Sequence[Any]) -> str:
    """A path inside one part as an author writes it: `resources[0].mode`."""
    name = ""
    for part in where:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


_EXPECTED = {
    "model_type": "should be a mapping",
    "dict_type": "should be a mapping",
    "list_type": "should be a list",
    "string_type": "should be a string",
    "int_type": "should be an integer",
    "float_type": "should be a number",
    "bool_type": "should be true or false",
    "string_too_short": "should not be empty",
}


def _field_message(where: Sequence[Any], error: ErrorDetails) -> str:
    """`field: reason` in the words of a plan author rather than pydantic's."""
    kind = error["type"]
    if kind in ("value_error", "assertion_error"):
        reason = str(error["ctx"]["error"])
    else:
        reason = _EXPECTED.get(kind) or error["msg"].replace("Input should be", "should be")
        reason = f"{reason}, got {show(error['input'])}"
    field = _field_name(where)
    return f"{field}: {reason}" if field else reason
