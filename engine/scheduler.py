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
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, NamedTuple, TypeVar

from engine.dag import descendants_of, longest_paths, reach_counts, task_children
from engine.models import AgentState, ProjectState, TaskState
from engine.plan import Plan
from engine.payloads import PRIORITY_RANK
from engine.vocabulary import PLACEABLE_AGENT_STATUSES as PLACEABLE_AGENT_STATUSES


class Placement(NamedTuple):
    """A decision: this task goes to these agents (one, or all of a collaborative task's).

    A named tuple: one is made per task placed, and a frozen dataclass pays a setattr per field.
    """

    task_id: str
    agents: tuple[str, ...]


class _Group:
    """Ready tasks that the same agents can take, best-ranked first (lazy deletion, see `Scheduler`)."""

    __slots__ = ("agents", "heap", "collaborative")

    def __init__(self, agents: tuple[str, ...], collaborative: bool) -> None:
        self.agents = agents
        self.heap: list[int] = []  # ranks (see `Scheduler.rank`)
        self.collaborative = collaborative


class Scheduler:
    def __init__(self, plan: Plan) -> None:
        self._children = task_children(plan.tasks)
        critical = longest_paths(self._children, {task.id: task.estimate for task in plan.tasks})
        descendants = reach_counts(self._children)
        self._index = {task.id: index for index, task in enumerate(plan.tasks)}
        # Within one priority: the longest estimate-weighted path to the end first, then the most
        # descendants, then plan order.  That order never changes, so a rank is one int (priority
        # times the task count, plus the task's place in it) and the ready heaps hold plain ints,
        # which heapq compares in C: tuples of floats took most of a placement's time.
        self._order = sorted(
            self._index, key=lambda t: (-critical.get(t, 0.0), -descendants.get(t, 0), self._index[t])
        )
        self._position = {task_id: position for position, task_id in enumerate(self._order)}
        self._span = max(1, len(self._order))
        self._deps_left = {task.id: len(task.depends_on) for task in plan.tasks}
        # Tasks with the same capable agents (or requirements) share one tuple (frozenset): a
        # 100,000-task plan asks for a few dozen distinct ones, and a list and a set per task
        # were 400 bytes of each task's memory.
        alike: dict[Any, Any] = {}
        self._capable: dict[str, tuple[str, ...]] = {
            task.id: _shared(alike, tuple(plan.capable_agents(task))) for task in plan.tasks}
        self._collaborative = {task.id for task in plan.tasks if task.coordination == "collaborative"}
        self._pinned = {task.id for task in plan.tasks if task.agent}
        self._requires = {task.id: _shared(alike, frozenset(task.requires)) for task in plan.tasks}
        self._groups: dict[tuple[tuple[str, ...], bool], _Group] = {}
        self._group_of: dict[str, _Group] = {}
        self._groups_with: dict[str, list[_Group]] = {}  # agent -> the groups it belongs to
        self._queued: dict[str, int] = {}  # task -> rank it was pushed with (lazy deletion)
        self._deferred: set[str] = set()
        # The seed's AgentConfig.dependencies: an agent takes work once every agent it depends on
        # has been ready (a latch: a dependency that dies later does not stop it again).
        self._waiting_on = {agent.id: set(agent.dependencies) for agent in plan.agents if agent.dependencies}

    # ------------------------------------------------------------ queue

    def rank(self, task: TaskState) -> int:
        """Smaller is sooner; `_order[rank % _span]` is the task."""
        return PRIORITY_RANK[task.priority] * self._span + self._position[task.id]

    def initially_ready(self) -> list[str]:
        return [task_id for task_id, left in self._deps_left.items() if left == 0]

    def push(self, task: TaskState) -> None:
        """Put a ready task in the queue (again, with its current rank)."""
        rank = self.rank(task)
        self._queued[task.id] = rank
        heapq.heappush(self._group(task.id).heap, rank)

    def _group(self, task_id: str) -> _Group:
        group = self._group_of.get(task_id)
        if group is None:
            collaborative = task_id in self._collaborative
            key = (self._capable[task_id], collaborative)
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(key[0], collaborative)
                for agent_id in group.agents:
                    self._groups_with.setdefault(agent_id, []).append(group)
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
        for child in self._children[task_id]:
            self._deps_left[child] -= 1
            if self._deps_left[child] == 0:
                newly_ready.append(child)
        return newly_ready

    def descendants(self, task_id: str) -> list[str]:
        return sorted(descendants_of(self._children, task_id), key=self._index.__getitem__)

    # ------------------------------------------------------------ agents

    def agent_joined(self, agent: AgentState) -> None:
        """A late-joining (external) agent can take tasks whose required capabilities it has."""
        changed = False
        for task_id, capable in self._capable.items():
            if task_id in self._pinned or task_id in self._collaborative or agent.id in capable:
                continue
            if self._requires[task_id] <= set(agent.capabilities):
                self._capable[task_id] = (*capable, agent.id)
                changed = True
        if changed:
            self._regroup()

    def _regroup(self) -> None:
        """Capable sets changed: rebuild the groups from the queued tasks (rare: an agent joined)."""
        self._groups.clear()
        self._group_of.clear()
        self._groups_with.clear()
        for task_id, rank in self._queued.items():
            heapq.heappush(self._group(task_id).heap, rank)

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
        if self._waiting_on:
            self._gate_on_dependencies(state, free)
        # Per group, how many of its agents have room: kept up to date as slots are taken, so a
        # round asks one number per group instead of walking the group's agents.
        room = {group: sum(free[a] > 0 for a in group.agents) for group in self._groups.values()}
        placements: list[Placement] = []
        skipped: list[tuple[_Group, int]] = []
        while (group := self._best_group(room)) is not None:
            rank = heapq.heappop(group.heap)
            chosen = self._choose(group, free)
            if chosen is None:  # a collaborative task whose agents are not all free
                skipped.append((group, rank))
                for agent_id in group.agents:
                    self._take(agent_id, free[agent_id], free, room)
                continue
            task_id = self._order[rank % self._span]
            del self._queued[task_id]
            for agent_id in chosen:
                self._take(agent_id, 1, free, room)
            placements.append(Placement(task_id, chosen))
        for group, rank in skipped:
            heapq.heappush(group.heap, rank)
        return placements

    def _gate_on_dependencies(self, state: ProjectState, free: dict[str, int]) -> None:
        """No slots for an agent until the agents it depends on have all been ready."""
        for agent_id, waiting in list(self._waiting_on.items()):
            waiting -= {a for a in waiting if a in state.agents and state.agents[a].status in PLACEABLE_AGENT_STATUSES}
            if waiting:
                free[agent_id] = 0
            else:
                del self._waiting_on[agent_id]

    def _take(self, agent_id: str, slots: int, free: dict[str, int], room: dict[_Group, int]) -> None:
        """Use `slots` of an agent's free slots; when it fills up, its groups have one agent less with room."""
        if slots <= 0:
            return
        free[agent_id] -= slots
        if free[agent_id] == 0:
            for group in self._groups_with.get(agent_id, ()):
                room[group] -= 1

    def _best_group(self, room: dict[_Group, int]) -> _Group | None:
        """The group whose head ranks best among those with an agent that has room."""
        best: _Group | None = None
        best_rank = 0
        queued, order, span = self._queued, self._order, self._span
        for group, agents_with_room in room.items():
            if not agents_with_room:
                continue
            heap = group.heap
            while heap and queued.get(order[heap[0] % span]) != heap[0]:
                heapq.heappop(heap)  # stale entry: re-ranked, placed or discarded
            if heap and (best is None or heap[0] < best_rank):
                best, best_rank = group, heap[0]
        return best

    @staticmethod
    def _choose(group: _Group, free: dict[str, int]) -> tuple[str, ...] | None:
        if group.collaborative:
            return group.agents if all(free[a] > 0 for a in group.agents) else None
        return (max(group.agents, key=free.__getitem__),)  # the group has room: the roomiest is free


def _free_slots(agents: Iterable[AgentState]) -> defaultdict[str, int]:
    """Free slots per agent; 0 for a full, paused or dead agent (and for any agent not known)."""
    free: defaultdict[str, int] = defaultdict(int)
    for agent in agents:
        if agent.status in PLACEABLE_AGENT_STATUSES:
            free[agent.id] = max(0, agent.max_concurrent_tasks - len(agent.current_tasks))
    return free


Alike = TypeVar("Alike")


def _shared(alike: dict[Any, Any], value: Alike) -> Alike:
    """The one copy kept of an immutable value equal to `value`."""
    kept: Alike = alike.setdefault(value, value)
    return kept
