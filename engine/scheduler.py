"""The ready queue and placement: which ready task goes to which agent next.

The scheduler only decides; the manager turns each decision into events.  Dispatch is event
driven: the manager calls `dependency_done` when a task completes (which readies its dependents
in the same step) and `place` after any change that could free capacity — never a polling loop.

Ranking: explicit priority first, then the estimate-weighted critical-path length from the task to
the end of the sprint (the longer, the sooner), then the number of descendants, then plan order.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx

from engine.dag import critical_path_lengths, descendant_counts
from engine.models import AgentState, ProjectState, TaskState
from engine.plan import Plan
from engine.protocol import PRIORITY_RANK

PLACEABLE_AGENT_STATUSES = frozenset({"ready", "busy"})


@dataclass(frozen=True, slots=True)
class Placement:
    task_id: str
    agents: tuple[str, ...]


class Scheduler:
    def __init__(self, plan: Plan, graph: nx.DiGraph) -> None:
        critical = critical_path_lengths(graph)
        descendants = descendant_counts(graph)
        self._graph = graph
        self._static_rank = {
            task.id: (-critical.get(task.id, 0.0), -descendants.get(task.id, 0), index)
            for index, task in enumerate(plan.tasks)
        }
        self._deps_left = {task.id: len(task.depends_on) for task in plan.tasks}
        self._capable = {task.id: list(plan.capable_agents(task)) for task in plan.tasks}
        self._collaborative = {task.id for task in plan.tasks if task.coordination == "collaborative"}
        self._pinned = {task.id for task in plan.tasks if task.agent}
        self._requires = {task.id: set(task.requires) for task in plan.tasks}
        self._ready: list[tuple[tuple, str]] = []
        self._queued: dict[str, tuple] = {}  # task -> rank it was pushed with (lazy deletion)
        self._deferred: set[str] = set()

    # ------------------------------------------------------------ queue

    def rank(self, task: TaskState) -> tuple:
        return (PRIORITY_RANK[task.priority], *self._static_rank[task.id])

    def initially_ready(self) -> list[str]:
        return [task_id for task_id, left in self._deps_left.items() if left == 0]

    def push(self, task: TaskState) -> None:
        """Put a ready task in the queue (again, with its current rank)."""
        rank = self.rank(task)
        self._queued[task.id] = rank
        heapq.heappush(self._ready, (rank, task.id))

    def discard(self, task_id: str) -> None:
        self._queued.pop(task_id, None)
        self._deferred.discard(task_id)

    def defer(self, task_id: str) -> None:
        """Keep a task out of placement until `undefer_all` (e.g. its locks were refused)."""
        self._queued.pop(task_id, None)
        self._deferred.add(task_id)

    def undefer_all(self, state: ProjectState) -> None:
        for task_id in sorted(self._deferred):
            if state.tasks[task_id].status == "ready":
                self.push(state.tasks[task_id])
        self._deferred.clear()

    def __len__(self) -> int:
        return len(self._queued)

    # ------------------------------------------------------------ dependencies

    def dependency_done(self, task_id: str) -> list[str]:
        """Tasks that became ready because `task_id` completed."""
        newly_ready = []
        for child in self._graph.successors(task_id):
            self._deps_left[child] -= 1
            if self._deps_left[child] == 0:
                newly_ready.append(child)
        return newly_ready

    def descendants(self, task_id: str) -> list[str]:
        return sorted(nx.descendants(self._graph, task_id), key=lambda t: self._static_rank[t][2])

    # ------------------------------------------------------------ agents

    def agent_joined(self, agent: AgentState) -> None:
        """A late-joining (external) agent can take tasks whose required capabilities it has."""
        for task_id, capable in self._capable.items():
            if task_id in self._pinned or task_id in self._collaborative or agent.id in capable:
                continue
            if self._requires[task_id] <= set(agent.capabilities):
                capable.append(agent.id)

    def capable_agents(self, task_id: str) -> list[str]:
        return list(self._capable[task_id])

    # ------------------------------------------------------------ placement

    def place(self, state: ProjectState) -> list[Placement]:
        """Assign as many ready tasks as free capacity allows, best-ranked first."""
        if state.meta.paused or not self._queued:
            return []
        free = _free_slots(state.agents.values())
        total_free = sum(free.values())
        placements: list[Placement] = []
        skipped: list[tuple[tuple, str]] = []
        while self._ready and total_free > 0:
            rank, task_id = heapq.heappop(self._ready)
            if self._queued.get(task_id) != rank:
                continue  # stale entry: re-ranked, placed or discarded
            chosen = self._choose(task_id, free)
            if chosen is None:
                skipped.append((rank, task_id))
                if task_id in self._collaborative:
                    # Reserve its agents so lower-ranked work cannot starve the group.
                    for agent_id in self._capable[task_id]:
                        total_free -= free.get(agent_id, 0)
                        free[agent_id] = 0
                continue
            del self._queued[task_id]
            for agent_id in chosen:
                free[agent_id] -= 1
            total_free -= len(chosen)
            placements.append(Placement(task_id, chosen))
        for entry in skipped:
            heapq.heappush(self._ready, entry)
        return placements

    def _choose(self, task_id: str, free: dict[str, int]) -> tuple[str, ...] | None:
        capable = self._capable[task_id]
        if task_id in self._collaborative:
            return tuple(capable) if all(free.get(a, 0) > 0 for a in capable) else None
        candidates = [a for a in capable if free.get(a, 0) > 0]
        if not candidates:
            return None
        return (max(candidates, key=lambda a: free[a]),)


def _free_slots(agents: Iterable[AgentState]) -> dict[str, int]:
    """Agents with room for another task and how much (agents without room are left out)."""
    free = {}
    for agent in agents:
        if agent.status in PLACEABLE_AGENT_STATUSES:
            room = agent.max_concurrent_tasks - len(agent.current_tasks)
            if room > 0:
                free[agent.id] = room
    return free
