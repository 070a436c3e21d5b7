"""Sprint plans: the models of a checked plan, and `load_plan`, which says exactly where one is wrong.

Plans are written by people and by other tools, so loading never stops at the first mistake and
never ends in a traceback: every mistake becomes a `Problem` carrying the file, the line and the
task or agent id, and `load_plan` raises them all together in one `PlanError`.

Loading takes three steps.  `engine.marked_yaml` reads the file into values that remember their
lines.  `engine.plan_specs` reads each part (settings, agent, task, resource) by its rules;
their issues are worded for a plan author at the end of this module.  `engine.plan_checks` then
checks what spans parts (duplicate ids, unknown references, cycles, who can do a task) on every
part it could read, so one broken task does not hide the problems of the others.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.collector import collector_paused
from engine.identifiers import shown
from engine.marked_yaml import MarkedDict, UnreadableDocument, read_document
from engine.plan_checks import (
    Entry,
    check_resource_links,
    check_timings,
    check_workspace,
    cross_check,
)
from engine.plan_problems import PlanError as PlanError  # callers import these from here
from engine.plan_problems import Problem as Problem
from engine.plan_problems import Report, suggest
from engine.plan_schema import Issue, Part, show
from engine.plan_specs import AGENT, AGENT_LINKS, HEADER, SETTINGS, TASK, TASK_LINKS, Header
from engine.plan_specs import AgentSpec as AgentSpec
from engine.plan_specs import Plan as Plan
from engine.plan_specs import ResourceSpec as ResourceSpec
from engine.plan_specs import Settings as Settings
from engine.plan_specs import TaskSpec as TaskSpec

# ---------------------------------------------------------------- loading


TOP_KEYS = ("sprint", "description", "workspace", "settings", "agents", "tasks")



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
    header = _read(report, HEADER, header_keys, (), None)
    raw_settings = root.get("settings")
    settings = _read(report, SETTINGS, {} if raw_settings is None else raw_settings, ("settings",), "settings")
    timings = settings or SETTINGS.read_quietly(_timings_of(raw_settings))  # a bad max_retries hides no livelock
    if timings is not None:
        check_timings(report, timings)
    agents = _read_items(root, "agents", AGENT, AGENT_LINKS, report)
    tasks = _read_items(root, "tasks", TASK, TASK_LINKS, report)
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
    header: Header,
    settings: Settings,
    agents: Sequence[Entry[Any, object]],
    tasks: Sequence[Entry[Any, object]],
) -> Plan:
    """The checked plan, from parts that all validated; tasks take the sprint's retry limit by default."""
    agent_specs: list[AgentSpec] = [entry.spec for entry in agents if entry.spec is not None]
    task_specs: list[TaskSpec] = []
    for entry in tasks:
        if entry.spec is not None:
            # Left out, a task takes the sprint's limit (a new tuple only when that is not the default).
            written = "max_retries" in entry.raw or entry.spec.max_retries == settings.max_retries
            task_specs.append(entry.spec if written else entry.spec._replace(max_retries=settings.max_retries))
    return Plan(
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


def _check_agent_dependencies(report: Report, agents: Sequence[Entry[AgentSpec, object]]) -> None:
    """Each agent's `dependencies` name other agents of the plan, and never lead back to it."""
    depends = {entry.spec.id: entry for entry in agents if entry.spec is not None}
    for agent_id, entry in depends.items():
        assert entry.spec is not None
        for index, other in enumerate(entry.spec.dependencies):
            if other == agent_id:
                report.at(("agents", entry.position, "dependencies", index), "dependencies: an agent cannot depend on itself", f"agent '{agent_id}'")
            elif other not in depends:
                report.at(("agents", entry.position, "dependencies", index),
                          f"dependencies: unknown agent '{other}'{suggest(other, list(depends))}", f"agent '{agent_id}'")
    for agent_id, entry in depends.items():
        cycle = _dependency_cycle(agent_id, depends)
        if cycle and cycle[0] == min(cycle):  # reported once, at the cycle's first agent
            report.at(("agents", entry.position, "dependencies"),
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


def _read_items(root: MarkedDict, key: str, part: Part, links: Part, report: Report) -> list[Entry[Any, Any]]:
    """One `Entry` per item of the `agents` or `tasks` list, each item's problems recorded."""
    items = root.get(key)
    if items is None:
        items = []
    if not isinstance(items, list):
        report.at((key,), f"{key}: should be a list, got {show(items)}")
        return []
    if key == "agents" and not items and key in root:
        report.at((key,), "agents: at least one agent is required")
    entries: list[Entry[Any, Any]] = []
    for index, item in enumerate(items):
        spec = _read(report, part, item, (key, index), _who(key[:-1], item, index))
        entries.append(Entry(index, item, spec, spec or links.read_quietly(item)))
    return entries


def _timings_of(raw_settings: Any) -> dict[str, Any]:
    keys = ("heartbeat_interval", "heartbeat_timeout", "lock_ttl")
    return {key: raw_settings[key] for key in keys if key in raw_settings} if isinstance(raw_settings, dict) else {}


def _who(kind: str, item: Any, index: int) -> str:
    """`task 'x'` when the item has a usable id, else `task #3` (1-based, as people count)."""
    item_id = item.get("id") if isinstance(item, dict) else None
    return f"{kind} {shown(item_id)}" if isinstance(item_id, str) and item_id else f"{kind} #{index + 1}"


# ---------------------------------------------------------------- issues in an author's words


def _read(report: Report, part: Part, value: Any, loc: tuple[Any, ...], who: str | None) -> Any:
    """The part read from `value`, or None after recording each of its issues."""
    built, issues = part.read(value)
    for issue in issues:
        report.at(*_issue_at(issue, loc), who)
    return built


def _issue_at(issue: Issue, loc: tuple[Any, ...]) -> tuple[tuple[Any, ...], str]:
    """(where in the document, message) for one issue of the part at `loc`."""
    where = issue.where
    if issue.kind == "missing":
        return loc + where[:-1], f"missing required key '{issue.reason}'"
    if issue.kind == "unknown":
        return loc + where, f"unknown key '{issue.reason}'{suggest(issue.reason, issue.allowed)}"
    field = _field_name(where)
    return loc + where, f"{field}: {issue.reason}" if field else issue.reason


def _field_name(where: Sequence[Any]) -> str:
    """A path inside one part as an author writes it: `resources[0].mode`."""
    name = ""
    for part in where:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name
