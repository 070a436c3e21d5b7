"""The ready queue and placement: which ready task goes to which agent next.

The scheduler only decides; the manager turns each decision into events.  Dispatch is event
driven: the manager calls `dependency_done` when a task completes (which readies its dependents
in the same step) and `place` after any change that could free capacity — never a polling loop.

Ranking: explicit priority first, then the estimate-weighted critical-path length from the task to
the end of the sprint (the longer, the sooner), then the number of descendants, then plan order.

Ready tasks wait in one heap per *group*: the tasks that the same agents can take.  Placement
walks the groups' heads in rank order and skips a whole group when none of its agents has room,
so a busy sprint does not pop, test and push back every ready task each time one slot frees up:
the cost of a placement follows the number of groups (capability sets), not the backlog.
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


class _Group:
    """Ready tasks that the same agents can take, best-ranked first (lazy deletion, see `Scheduler`)."""

    __slots__ = ("agents", "heap", "collaborative")

    def __init__(self, agents: tuple[str, ...], collaborative: bool) -> None:
        self.agents = agents
        self.heap: list[tuple[tuple, str]] = []
        self.collaborative = collaborative


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
        self._groups: dict[tuple[str, bool], _Group] = {}
        self._group_of: dict[str, _Group] = {}
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
        heapq.heappush(self._group(task.id).heap, (rank, task.id))

    def _group(self, task_id: str) -> _Group:
        group = self._group_of.get(task_id)
        if group is None:
            collaborative = task_id in self._collaborative
            key = (tuple(self._capable[task_id]), collaborative)
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(key[0], collaborative)
            self._group_of[task_id] = group
        return group

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
        changed = False
        for task_id, capable in self._capable.items():
            if task_id in self._pinned or task_id in self._collaborative or agent.id in capable:
                continue
            if self._requires[task_id] <= set(agent.capabilities):
                capable.append(agent.id)
                changed = True
        if changed:
            self._regroup()

    def _regroup(self) -> None:
        """Capable sets changed: rebuild the groups from the queued tasks (rare: an agent joined)."""
        self._groups.clear()
        self._group_of.clear()
        for task_id, rank in self._queued.items():
            heapq.heappush(self._group(task_id).heap, (rank, task_id))

    def capable_agents(self, task_id: str) -> list[str]:
        return list(self._capable[task_id])

    # ------------------------------------------------------------ placement

    def place(self, state: ProjectState) -> list[Placement]:
        """Assign as many ready tasks as free capacity allows, best-ranked first.

        Each round takes the best head among the groups that have an agent with room; a group
        whose agents are all full is not looked into.  A collaborative task that cannot start
        reserves its agents for the rest of the pass, so lower-ranked work cannot starve it.
        """
        if state.meta.paused or not self._queued:
            return []
        free = _free_slots(state.agents.values())
        total_free = sum(free.values())
        placements: list[Placement] = []
        skipped: list[tuple[_Group, tuple[tuple, str]]] = []
        while total_free > 0:
            group = self._best_group(free)
            if group is None:
                break
            entry = heapq.heappop(group.heap)
            task_id = entry[1]
            chosen = self._choose(group, free)
            if chosen is None:  # a collaborative task whose agents are not all free
                skipped.append((group, entry))
                for agent_id in group.agents:
                    total_free -= free.get(agent_id, 0)
                    free[agent_id] = 0
                continue
            del self._queued[task_id]
            for agent_id in chosen:
                free[agent_id] -= 1
            total_free -= len(chosen)
            placements.append(Placement(task_id, chosen))
        for group, entry in skipped:
            heapq.heappush(group.heap, entry)
        return placements

    def _best_group(self, free: dict[str, int]) -> _Group | None:
        """The group whose head ranks best among those with an agent that has room."""
        best: _Group | None = None
        for group in self._groups.values():
            heap = group.heap
            while heap and self._queued.get(heap[0][1]) != heap[0][0]:
                heapq.heappop(heap)  # stale entry: re-ranked, placed or discarded
            if not heap or (best is not None and heap[0][0] >= best.heap[0][0]):
                continue
            if any(free.get(agent_id, 0) > 0 for agent_id in group.agents):
                best = group
        return best

    @staticmethod
    def _choose(group: _Group, free: dict[str, int]) -> tuple[str, ...] | None:
        if group.collaborative:
            return group.agents if all(free.get(a, 0) > 0 for a in group.agents) else None
        candidates = [a for a in group.agents if free.get(a, 0) > 0]
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
