"""The checks that span several parts of a plan: ids, references between parts, cycles, the
timings that must agree with each other, and the workspace the plan names.

They run after each agent and task was validated on its own, and on every item whose references
could be read even when the rest of it is broken (`AgentLinks`, `TaskLinks`), so one bad task
does not hide the problems of the others.  Duplicates are reported once: each check after the
id check sees only the first item with a given id.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from engine.dag import TaskRefs, cycles_among
from engine.identifiers import shown
from engine.marked_yaml import line_at
from engine.plan_problems import Report, suggest
from engine.plan_values import Names, format_duration
from engine.resources import LockError, canonical_resource

MIN_HEARTBEAT_INTERVAL = 0.01  # seconds; below it agents would do little but heartbeat


class AgentRefs(Protocol):
    """What other parts of a plan refer to in an agent (an `AgentSpec` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def capabilities(self) -> Sequence[str]: ...


Spec_co = TypeVar("Spec_co", covariant=True)
Refs_co = TypeVar("Refs_co", covariant=True)
Refs = TypeVar("Refs", AgentRefs, TaskRefs)


class Entry(NamedTuple, Generic[Spec_co, Refs_co]):
    """One item of the `agents` or `tasks` list: its full spec if valid, its links if readable."""

    position: int  # in its list
    raw: Any  # the item as written (a MarkedDict when it is a mapping)
    spec: Spec_co | None
    links: Refs_co | None


class CapabilityIndex:
    """Who holds which capability, so "who can do this task" costs one AND per capability asked.

    Each capability maps to a bitset of agent positions; answers are kept per distinct set of
    requirements, which a large plan repeats across thousands of tasks (matching each task
    against every agent made loading a 10,000-task, 50-agent plan tasks x agents).
    """

    def __init__(self, agents: Sequence[AgentRefs]) -> None:
        self._ids = [agent.id for agent in agents]
        self._everyone = (1 << len(self._ids)) - 1
        self._holders: dict[str, int] = {}
        for position, agent in enumerate(agents):
            for capability in agent.capabilities:
                self._holders[capability] = self._holders.get(capability, 0) | 1 << position
        self._answers: dict[frozenset[str], list[str]] = {}

    def agents_with(self, requires: Sequence[str]) -> list[str]:
        """Ids of the agents holding every capability in `requires`, in plan order (a new list)."""
        needed = frozenset(requires)
        found = self._answers.get(needed)
        if found is None:
            mask = self._everyone
            for capability in needed:
                mask &= self._holders.get(capability, 0)
            found = self._answers[needed] = [agent for position, agent in enumerate(self._ids) if mask >> position & 1]
        return list(found)

    def holds(self, capability: str) -> bool:
        """Whether any agent has this capability."""
        return capability in self._holders


def cross_check(
    report: Report, agents: Sequence[Entry[object, AgentRefs]], tasks: Sequence[Entry[object, TaskRefs]]
) -> None:
    """Record every problem between the parts of a plan in `report`."""
    _CrossCheck(report, agents, tasks).run()


class _CrossCheck:
    """Checks that span several parts of the plan, on every entry whose links could be read."""

    def __init__(
        self, report: Report, agents: Sequence[Entry[object, AgentRefs]], tasks: Sequence[Entry[object, TaskRefs]]
    ) -> None:
        self.report = report
        self.agent_ids = self._unique_ids("agent", "agents", agents)
        self.task_ids = self._unique_ids("task", "tasks", tasks)
        # An agent whose capabilities could not be read makes "nobody can do this" a guess.
        self.agents_known = all(entry.links is not None for entry in agents)
        self.agents = [links for _, links in _first_of_each(agents)]
        self.capabilities = CapabilityIndex(self.agents)
        self.tasks = _first_of_each(tasks)

    def run(self) -> None:
        for index, task in self.tasks:
            who = f"task {shown(task.id)}"
            self._check_agents(index, task, who)
            self._check_capabilities(index, task, who)
            self._check_dependencies(index, task, who)
        self._check_cycles()

    def _unique_ids(self, kind: str, key: str, entries: Sequence[Entry[object, object]]) -> dict[str, int]:
        """id -> line of its first definition; each later duplicate is a problem."""
        seen: dict[str, int] = {}
        for entry in entries:
            item_id = entry.raw.get("id") if isinstance(entry.raw, dict) else None
            if not isinstance(item_id, str):
                continue
            line = line_at(self.report.root, (key, entry.position, "id"))
            if item_id in seen:
                self.report.add(line, f"duplicate {kind} id {shown(item_id)} (first defined on line {seen[item_id]})")
            else:
                seen[item_id] = line
        return seen

    def _check_agents(self, index: int, task: TaskRefs, who: str) -> None:
        known = list(self.agent_ids)
        if task.agent is not None and task.agent not in self.agent_ids:
            message = f"agent {shown(task.agent)} is not defined{suggest(task.agent, known)}"
            self.report.at(("tasks", index, "agent"), message, who)
        for position, name in enumerate(task.agents):
            if name not in self.agent_ids:
                message = f"agents: unknown agent {shown(name)}{suggest(name, known)}"
                self.report.at(("tasks", index, "agents", position), message, who)

    def _check_capabilities(self, index: int, task: TaskRefs, who: str) -> None:
        if task.agent or task.agents or not task.requires or not self.agents_known:
            return
        if self.capabilities.agents_with(task.requires):
            return
        missing = [repr(capability) for capability in task.requires if not self.capabilities.holds(capability)]
        why = f"no agent has {', '.join(missing)}" if missing else "no single agent has all of them"
        message = f"no agent can perform it: requires [{', '.join(task.requires)}]; {why}"
        self.report.at(("tasks", index, "requires"), message, who)

    def _check_dependencies(self, index: int, task: TaskRefs, who: str) -> None:
        for position, dep in enumerate(task.depends_on):
            if dep not in self.task_ids:
                message = f"depends on unknown task {shown(dep)}{suggest(dep, list(self.task_ids))}"
                self.report.at(("tasks", index, "depends_on", position), message, who)

    def _check_cycles(self) -> None:
        by_id = {task.id: (index, task) for index, task in self.tasks}
        for cycle in cycles_among(list(by_id), {task.id: task.depends_on for _, task in self.tasks}):
            # Edges run dependency -> dependent; people read `a -> b` as "a depends on b".
            chain = list(reversed(cycle))
            index, task = by_id[chain[0]]
            position = task.depends_on.index(chain[1])
            message = f"dependency cycle: {' -> '.join(chain)} (each task depends on the next)"
            self.report.at(("tasks", index, "depends_on", position), message, f"task {shown(chain[0])}")


def _first_of_each(entries: Sequence[Entry[object, Refs]]) -> list[tuple[int, Refs]]:
    """(index, links) of the entries whose links could be read, dropping any whose id appeared before."""
    kept: list[tuple[int, Refs]] = []
    seen: set[str] = set()
    for entry in entries:
        if entry.links is not None and entry.links.id not in seen:
            seen.add(entry.links.id)
            kept.append((entry.position, entry.links))
    return kept


# ---------------------------------------------------------------- timings


class Timings(Protocol):
    """The settings whose values only make sense together (a plan's `Settings` is one)."""

    @property
    def heartbeat_interval(self) -> float: ...
    @property
    def heartbeat_timeout(self) -> float: ...
    @property
    def lock_ttl(self) -> float: ...


def check_timings(report: Report, settings: Timings) -> None:
    """Timings that validate one by one and then break the sprint together.

    A heartbeat timeout within two intervals declares live agents dead whenever one heartbeat is
    a little late (a plan with the timeout below the interval killed and restarted its agents
    39 times in 40 s and never finished); leases are renewed by heartbeats, so a lock TTL within
    two intervals expires under a holder that is working.
    """
    interval = settings.heartbeat_interval
    if interval < MIN_HEARTBEAT_INTERVAL:
        report.at(_setting("heartbeat_interval"), f"heartbeat_interval: {format_duration(interval)} is too short "
                  f"(at least {format_duration(MIN_HEARTBEAT_INTERVAL)}: agents heartbeat this often)", "settings")
    floor = 2 * max(interval, MIN_HEARTBEAT_INTERVAL)
    at = f"twice heartbeat_interval ({format_duration(interval)})"
    if settings.heartbeat_timeout < floor:
        report.at(_written(report, "heartbeat_timeout"),
                  f"heartbeat_timeout: {_value(report, 'heartbeat_timeout', settings.heartbeat_timeout)} must be at least "
                  f"{at}, or an agent whose heartbeat is a moment late is declared dead", "settings")
    if settings.lock_ttl <= 0:
        report.at(_setting("lock_ttl"), "lock_ttl: must be more than 0", "settings")
    elif settings.lock_ttl < floor:
        report.at(_written(report, "lock_ttl"),
                  f"lock_ttl: {_value(report, 'lock_ttl', settings.lock_ttl)} must be at least {at}: "
                  "heartbeats renew leases, so a shorter one expires under an agent that is working", "settings")


def _setting(key: str) -> tuple[str, str]:
    return ("settings", key)


def _written(report: Report, key: str) -> tuple[str, ...]:
    """Where a timing problem is: at `key` if the plan sets it, else at the heartbeat interval that makes it wrong."""
    settings = report.root.get("settings") if isinstance(report.root, dict) else None
    if isinstance(settings, dict) and key not in settings and "heartbeat_interval" in settings:
        return _setting("heartbeat_interval")
    return _setting(key)


def _value(report: Report, key: str, seconds: float) -> str:
    settings = report.root.get("settings") if isinstance(report.root, dict) else None
    written = isinstance(settings, dict) and key in settings
    return format_duration(seconds) + ("" if written else " (the default)")


# ---------------------------------------------------------------- the workspace


class ResourceRefs(Protocol):
    @property
    def path(self) -> str: ...


class TaskResources(Protocol):
    """A task's lock resources (a `TaskSpec` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def resources(self) -> Sequence[ResourceRefs]: ...
    @property
    def shared_resources(self) -> Sequence[str]: ...


def check_workspace(report: Report, plan_file: Path, written: Any) -> Path | None:
    """The real path of the plan's `workspace:`, or None after recording why there is none.

    A missing workspace used to run the sprint on an empty scratch folder and exit 0.
    """
    if not isinstance(written, str) or not written:
        return None
    path = plan_file.parent / written
    if not path.is_dir():
        why = "is not a directory" if path.exists() else "does not exist"
        report.at(("workspace",), f"workspace: {shown(written)} {why} (looked for {path.absolute()})")
        return None
    return Path(os.path.realpath(path))


def check_resource_links(report: Report, workspace: Path, tasks: Sequence[Entry[TaskResources, object]]) -> None:
    """Each task's resources, resolved in the plan's workspace: a symlink that leads out is refused."""
    root = str(workspace)
    for entry in tasks:
        if entry.spec is None:
            continue
        who = f"task {shown(entry.spec.id)}"
        paths: list[tuple[tuple[str | int, ...], str, str]] = [
            (("resources", i, "path"), f"resources[{i}].path", r.path) for i, r in enumerate(entry.spec.resources)
        ]
        paths += [(("shared_resources", i), f"shared_resources[{i}]", p) for i, p in enumerate(entry.spec.shared_resources)]
        for loc, field, resource in paths:
            try:
                canonical_resource(resource, root)
            except LockError as exc:
                report.at(("tasks", entry.position, *loc), f"{field}: {exc}", who)
