"""Sprint plans: load a YAML (or JSON) plan, check it, and say exactly where it is wrong.

Plans are written by people and by other tools, so loading never stops at the first mistake and
never ends in a traceback: every mistake becomes a `Problem` carrying the file, the line and the
task or agent id, and `load_plan` raises them all together in one `PlanError`.  Line numbers come
from PyYAML's node marks, which a SafeLoader subclass keeps on every mapping and list it builds.

The shape of each part (settings, agent, task, resource) is checked by pydantic models; what spans
parts (duplicate ids, unknown dependencies, cycles, who can do a task) is checked afterwards on the
parts that passed, so one broken task does not hide the problems of the others.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import networkx as nx
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from engine.marked_yaml import MarkedDict, UnreadableDocument, line_at, read_document
from engine.models import AgentConfig, AgentKind, ResourceLimits
from engine.plan_values import Duration, Names, ResourcePath, Size, Text, one_or_many, show
from engine.protocol import LockType, Priority

Coordination = Literal["sequential", "parallel", "collaborative"]

AGENT_ID_PATTERN = re.compile(r"[a-z0-9_-]+")


# ---------------------------------------------------------------- the plan's parts


def _resource_entries(value: Any) -> Any:
    """A bare string in `resources` is a write lock on that path."""
    value = one_or_many(value)
    if isinstance(value, list):
        return [{"path": item, "mode": "write"} if isinstance(item, str) else item for item in value]
    return value


class SpecModel(BaseModel):
    """A part of a plan as written: unknown keys are mistakes, and `"3"` is not a number."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Settings(SpecModel):
    """Sprint-wide timings and limits; durations in seconds."""

    lock_ttl: Duration = 30.0
    heartbeat_interval: Duration = 1.0
    heartbeat_timeout: Duration = 5.0
    lock_delay: Duration = 1.0
    max_retries: int = Field(2, ge=0)
    rogue_edits: int = Field(0, ge=0)  # simulated agents' unlocked edits, to exercise conflicts


class AgentSpec(SpecModel):
    """An agent as declared; the engine's AgentState/AgentConfig are built from it."""

    id: str
    kind: AgentKind = "simulated"
    capabilities: Names = []
    specializations: Names = []
    max_concurrent_tasks: int = Field(1, ge=1)
    max_execution_time: Duration | None = None  # seconds
    max_memory_usage: Size | None = None  # bytes
    failure_rate: float = Field(0.0, ge=0.0, le=1.0)  # simulated agents only

    @field_validator("id")
    @classmethod
    def _id_pattern(cls, value: str) -> str:
        if not AGENT_ID_PATTERN.fullmatch(value):
            raise ValueError(f"agent id {value!r} must match [a-z0-9_-]+")
        return value

    def to_config(self) -> AgentConfig:
        """The seed's AgentConfig, the shape the engine's state records use."""
        limits = ResourceLimits(
            max_concurrent_tasks=self.max_concurrent_tasks,
            max_memory_usage=self.max_memory_usage,
            max_execution_time=self.max_execution_time,
        )
        return AgentConfig(
            agent_id=self.id,
            kind=self.kind,
            capabilities=self.capabilities,
            resource_limits=limits,
            specializations=self.specializations,
            failure_rate=self.failure_rate,
        )


class ResourceSpec(SpecModel):
    """A lock held for the task's whole run: a workspace path (a directory covers all below) or `name:thing`."""

    path: ResourcePath
    mode: LockType = "write"


class TaskSpec(SpecModel):
    """A task as declared; who may take it is `Plan.capable_agents`."""

    id: str = Field(min_length=1)
    title: Text = ""  # default: the id
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
    max_retries: int = Field(2, ge=0)  # default: settings.max_retries (set by the plan)

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

    sprint: Text
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

    def model_post_init(self, context: Any) -> None:
        self._agents_by_id = {agent.id: agent for agent in self.agents}
        self._tasks_by_id = {task.id: task for task in self.tasks}

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
        return _agents_with(self.agents, spec.requires)


def _agents_with(agents: Sequence[AgentSpec], requires: Sequence[str]) -> list[str]:
    needed = set(requires)
    return [agent.id for agent in agents if needed.issubset(agent.capabilities)]


# ---------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PlanError(Exception):
    """Every problem found in one plan, so the author can fix them in one pass."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


# ---------------------------------------------------------------- loading


TOP_KEYS = ("sprint", "description", "workspace", "settings", "agents", "tasks")


class _Report:
    """Collects problems for one file; `who` names the agent/task a message is about."""

    def __init__(self, file: str, root: Any = None) -> None:
        self.file = file
        self.root = root
        self.problems: list[Problem] = []

    def add(self, line: int, message: str, who: str | None = None) -> None:
        self.problems.append(Problem(self.file, line, f"{who}: {message}" if who else message))

    def at(self, loc: Sequence[Any], message: str, who: str | None = None) -> None:
        self.add(line_at(self.root, loc), message, who)

    def validate(self, model: type[SpecModel], value: Any, loc: tuple[Any, ...], who: str | None) -> Any:
        """`model` validated from `value`, or None after recording each of its errors."""
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            for error in exc.errors():
                self._pydantic_error(model, error, loc, who)
            return None

    def _pydantic_error(self, model: type[SpecModel], error: Any, loc: tuple[Any, ...], who: str | None) -> None:
        where = tuple(error["loc"])
        kind = error["type"]
        if kind == "missing":
            self.at(loc + where[:-1], f"missing required key '{where[-1]}'", who)
        elif kind in ("extra_forbidden", "invalid_key"):
            self.at(loc + where, f"unknown key '{where[-1]}'{_suggest(where[-1], _keys_at(model, where))}", who)
        else:
            self.at(loc + where, _field_message(where, error), who)


def _keys_at(model: type[BaseModel], where: tuple[Any, ...]) -> list[str]:
    """The keys allowed in the mapping that holds `where[-1]` (resources nest one model)."""
    if "resources" in where[:-1]:
        return list(ResourceSpec.model_fields)
    return list(model.model_fields)


def _suggest(word: Any, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _field_name(where: Sequence[Any]) -> str:
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


def _field_message(where: Sequence[Any], error: Any) -> str:
    """`field: reason` in the words of a plan author rather than pydantic's."""
    kind = error["type"]
    if kind in ("value_error", "assertion_error"):
        reason = str(error["ctx"]["error"])
    else:
        reason = _EXPECTED.get(kind) or error["msg"].replace("Input should be", "should be")
        reason = f"{reason}, got {show(error['input'])}"
    field = _field_name(where)
    return f"{field}: {reason}" if field else reason


def _who(kind: str, item: Any, index: int) -> str:
    """`task 'x'` when the item has a usable id, else `task #3` (1-based, as people count)."""
    item_id = item.get("id") if isinstance(item, dict) else None
    return f"{kind} '{item_id}'" if isinstance(item_id, str) and item_id else f"{kind} #{index + 1}"


class _AgentLinks(BaseModel):
    """What other parts of a plan refer to in an agent, read even when the rest of it is broken."""

    model_config = ConfigDict(extra="ignore", strict=True)
    id: str
    capabilities: Names = []


class _TaskLinks(BaseModel):
    """What the cross-checks need of a task, read even when the rest of it is broken."""

    model_config = ConfigDict(extra="ignore", strict=True)
    id: str
    agent: str | None = None
    agents: Names = []
    requires: Names = []
    depends_on: Names = []


@dataclass
class _Entry:
    """One item of the `agents` or `tasks` list: its full spec if valid, its links if readable."""

    index: int
    raw: Any
    spec: Any = None
    links: Any = None


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Load and check a plan; raise `PlanError` listing every problem found.

    Problems name the file exactly as given in `path`, so messages match what the user typed.
    """
    source = Path(path)
    report = _Report(os.fspath(path))
    try:
        root, digest = read_document(source)
    except UnreadableDocument as exc:
        raise PlanError([Problem(report.file, exc.line, exc.message)]) from None
    report.root = root
    if not _check_top(root, report):
        raise PlanError(report.problems)

    header_keys = {key: root[key] for key in ("sprint", "description", "workspace") if key in root}
    header = report.validate(_Header, header_keys, (), None)
    raw_settings = root.get("settings")
    settings = report.validate(Settings, {} if raw_settings is None else raw_settings, ("settings",), "settings")
    agents = _validate_items(root, "agents", AgentSpec, _AgentLinks, report)
    tasks = _validate_items(root, "tasks", TaskSpec, _TaskLinks, report)
    _CrossCheck(report, agents, tasks).run()

    if report.problems:
        raise PlanError(sorted(report.problems, key=lambda problem: problem.line))
    for entry in tasks:
        if "max_retries" not in entry.spec.model_fields_set:
            entry.spec.max_retries = settings.max_retries
    return Plan(
        sprint=header.sprint,
        description=header.description,
        workspace=(source.parent / header.workspace).resolve() if header.workspace else None,
        settings=settings,
        agents=[entry.spec for entry in agents],
        tasks=[entry.spec for entry in tasks],
        source=source.resolve(),
        digest=digest,
        task_lines={entry.spec.id: entry.raw.line for entry in tasks},
        agent_lines={entry.spec.id: entry.raw.line for entry in agents},
    )


def _check_top(root: Any, report: _Report) -> bool:
    """Whether the document is a mapping worth looking into; unknown top-level keys recorded."""
    if root is None or (isinstance(root, str) and not root.strip()):
        report.add(1, "the plan is empty (expected a mapping with sprint, agents and tasks)")
        return False
    if not isinstance(root, dict):
        line = getattr(root, "line", 1)
        report.add(line, f"a plan must be a mapping with sprint, agents and tasks, got {show(root)}")
        return False
    for key in root:
        if key not in TOP_KEYS:
            report.at((key,), f"unknown key '{key}'{_suggest(key, TOP_KEYS)}")
    if "agents" not in root:
        report.add(root.line, "missing required key 'agents'")
    return True


def _validate_items(
    root: MarkedDict, key: str, model: type[SpecModel], links: type[BaseModel], report: _Report
) -> list[_Entry]:
    """One `_Entry` per item of the `agents` or `tasks` list, each item's problems recorded."""
    items = root.get(key)
    if items is None:
        items = []
    if not isinstance(items, list):
        report.at((key,), f"{key}: should be a list, got {show(items)}")
        return []
    if key == "agents" and not items and key in root:
        report.at((key,), "agents: at least one agent is required")
    entries = []
    for index, item in enumerate(items):
        entry = _Entry(index, item)
        entry.spec = report.validate(model, item, (key, index), _who(key[:-1], item, index))
        entry.links = entry.spec or _quietly(links, item)
        entries.append(entry)
    return entries


def _quietly(model: type[BaseModel], value: Any) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError:
        return None


class _CrossCheck:
    """Checks that span several parts of the plan, on every entry whose links could be read."""

    def __init__(self, report: _Report, agents: list[_Entry], tasks: list[_Entry]) -> None:
        self.report = report
        self.agent_ids = self._unique_ids("agent", "agents", agents)
        self.task_ids = self._unique_ids("task", "tasks", tasks)
        # An agent whose capabilities could not be read makes "nobody can do this" a guess.
        self.agents_known = all(entry.links is not None for entry in agents)
        self.agents = [entry.links for entry in _first_of_each(agents)]
        self.tasks = _first_of_each(tasks)

    def run(self) -> None:
        for entry in self.tasks:
            who = f"task '{entry.links.id}'"
            self._check_agents(entry, who)
            self._check_capabilities(entry, who)
            self._check_dependencies(entry, who)
        self._check_cycles()

    def _unique_ids(self, kind: str, key: str, entries: list[_Entry]) -> dict[str, int]:
        """id -> line of its first definition; each later duplicate is a problem."""
        seen: dict[str, int] = {}
        for entry in entries:
            item_id = entry.raw.get("id") if isinstance(entry.raw, dict) else None
            if not isinstance(item_id, str):
                continue
            line = line_at(self.report.root, (key, entry.index, "id"))
            if item_id in seen:
                self.report.add(line, f"duplicate {kind} id '{item_id}' (first defined on line {seen[item_id]})")
            else:
                seen[item_id] = line
        return seen

    def _check_agents(self, entry: _Entry, who: str) -> None:
        task, known = entry.links, list(self.agent_ids)
        if task.agent is not None and task.agent not in self.agent_ids:
            message = f"agent '{task.agent}' is not defined{_suggest(task.agent, known)}"
            self.report.at(("tasks", entry.index, "agent"), message, who)
        for position, name in enumerate(task.agents):
            if name not in self.agent_ids:
                message = f"agents: unknown agent '{name}'{_suggest(name, known)}"
                self.report.at(("tasks", entry.index, "agents", position), message, who)

    def _check_capabilities(self, entry: _Entry, who: str) -> None:
        task = entry.links
        if task.agent or task.agents or not task.requires or not self.agents_known:
            return
        if _agents_with(self.agents, task.requires):
            return
        held = {capability for agent in self.agents for capability in agent.capabilities}
        missing = [repr(capability) for capability in task.requires if capability not in held]
        why = f"no agent has {', '.join(missing)}" if missing else "no single agent has all of them"
        message = f"no agent can perform it: requires [{', '.join(task.requires)}]; {why}"
        self.report.at(("tasks", entry.index, "requires"), message, who)

    def _check_dependencies(self, entry: _Entry, who: str) -> None:
        for position, dep in enumerate(entry.links.depends_on):
            if dep not in self.task_ids:
                message = f"depends on unknown task '{dep}'{_suggest(dep, list(self.task_ids))}"
                self.report.at(("tasks", entry.index, "depends_on", position), message, who)

    def _check_cycles(self) -> None:
        from engine.dag import find_cycles  # engine.dag imports this module

        graph = nx.DiGraph()
        graph.add_nodes_from(entry.links.id for entry in self.tasks)
        for entry in self.tasks:
            graph.add_edges_from((dep, entry.links.id) for dep in entry.links.depends_on if dep in graph)
        by_id = {entry.links.id: entry for entry in self.tasks}
        for cycle in find_cycles(graph):
            # Edges run dependency -> dependent; people read `a -> b` as "a depends on b".
            chain = list(reversed(cycle))
            entry = by_id[chain[0]]
            position = entry.links.depends_on.index(chain[1])
            message = f"dependency cycle: {' -> '.join(chain)} (each task depends on the next)"
            self.report.at(("tasks", entry.index, "depends_on", position), message, f"task '{chain[0]}'")


def _first_of_each(entries: list[_Entry]) -> list[_Entry]:
    """The entries whose links could be read, dropping any whose id appeared before."""
    kept: list[_Entry] = []
    seen: set[str] = set()
    for entry in entries:
        if entry.links is not None and entry.links.id not in seen:
            seen.add(entry.links.id)
            kept.append(entry)
    return kept
