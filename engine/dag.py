"""The task graph of a plan: dependencies, critical path, descendants and cycles.

Edges run from a dependency to the task that waits for it.  Everything here is one pass over a
topological order (or a strongly-connected-component pass for cycles), so a 10,000-task plan is
analysed in a fraction of a second; nothing enumerates paths.

The plan loader uses `cycles_among` while it checks a plan, so this module knows tasks and plans
only by the shapes below (`TaskRefs`, `GraphTask`, `GraphPlan`) and never imports `engine.plan`.
Exports for people and tools are in `engine.export`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # networkx costs a plan check (`validate`) three times its own run time to import
    import networkx as nx


class TaskRefs(Protocol):
    """A task's id and what it refers to: the tasks it waits for, and who may do it.

    A `TaskSpec` is one; so is the plan checks' `TaskLinks`, read from a task that is otherwise broken.
    """

    @property
    def id(self) -> str: ...
    @property
    def depends_on(self) -> Sequence[str]: ...
    @property
    def agent(self) -> str | None: ...
    @property
    def agents(self) -> Sequence[str]: ...
    @property
    def requires(self) -> Sequence[str]: ...


class GraphTask(TaskRefs, Protocol):
    """What the graph keeps of a task (a `TaskSpec` is one): edges from `depends_on`, the rest node data."""

    @property
    def estimate(self) -> float: ...
    @property
    def title(self) -> str: ...
    @property
    def priority(self) -> str: ...
    @property
    def coordination(self) -> str: ...


class GraphPlan(Protocol):
    """What `build_dag` needs of a plan (a `Plan` is one)."""

    @property
    def sprint(self) -> str: ...
    @property
    def tasks(self) -> Sequence[GraphTask]: ...


# ---------------------------------------------------------------- building


def dependency_graph(tasks: Iterable[GraphTask]) -> nx.DiGraph[str]:
    """A graph of these tasks (in their order); dependencies on tasks not given are left out."""
    import networkx as nx

    tasks = list(tasks)
    graph: nx.DiGraph[str] = nx.DiGraph()
    for task in tasks:
        graph.add_node(
            task.id,
            title=task.title,
            estimate=task.estimate,
            priority=task.priority,
            agent=task.agent,
            agents=list(task.agents),
            requires=list(task.requires),
            coordination=task.coordination,
        )
    for task in tasks:
        for dep in task.depends_on:
            if dep in graph:
                graph.add_edge(dep, task.id)
    return graph


def build_dag(plan: GraphPlan) -> nx.DiGraph[str]:
    """The plan's task graph; `graph.graph["sprint"]` names the sprint."""
    graph = dependency_graph(plan.tasks)
    graph.graph["sprint"] = plan.sprint
    return graph


# ---------------------------------------------------------------- analysis


def critical_path(graph: nx.DiGraph[str]) -> list[str]:
    """The chain of tasks with the largest summed estimate (the sprint's shortest possible length)."""
    return critical_chain(_children_of(graph), {node: _estimate(graph, node) for node in graph})


def critical_chain(children: Mapping[str, Sequence[str]], estimates: Mapping[str, float]) -> list[str]:
    """`critical_path` on plain dicts: the dashboard marks it without building a graph."""
    lengths = longest_paths(children, estimates)
    if not lengths:
        return []
    has_parent = {child for kids in children.values() for child in kids}
    node = max((node for node in children if node not in has_parent), key=lengths.__getitem__)
    path = [node]
    while children[node]:
        node = max(children[node], key=lengths.__getitem__)
        path.append(node)
    return path


def _children_of(graph: nx.DiGraph[str]) -> dict[str, list[str]]:
    return {node: list(graph.successors(node)) for node in graph}


# ---------------------------------------------------------------- on plain dicts
# The scheduler and the dashboard need only these figures and each task's dependents: they work
# on dicts, so that running or watching a sprint does not build (or import) a networkx graph;
# the graph above is for exports.


def task_children(tasks: Sequence[TaskRefs]) -> dict[str, list[str]]:
    """Each task's dependents, in plan order (dependencies on tasks not given are left out)."""
    children: dict[str, list[str]] = {task.id: [] for task in tasks}
    for task in tasks:
        for dep in dict.fromkeys(task.depends_on):
            if dep in children:
                children[dep].append(task.id)
    return children


def longest_paths(children: Mapping[str, Sequence[str]], estimates: Mapping[str, float]) -> dict[str, float]:
    """For each task, the longest estimate-weighted path from it to any sink, its own estimate included.

    The scheduler ranks ready tasks by this: starting the task that most delays the end first.
    """
    lengths: dict[str, float] = {}
    for node in _sinks_first(children):
        after = max((lengths[child] for child in children[node]), default=0.0)
        lengths[node] = estimates[node] + after
    return lengths


def reach_counts(children: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """For each task, how many tasks wait for it directly or indirectly.

    One bitset per task (a Python int), ORed from the sinks up: exact, and far faster than a
    search from every node.  A task's bitset is dropped as soon as the last task depending on it
    has taken it in, and no per-task one-bit ints are kept: held for every task, bit i costing
    i/8 bytes, they were n²/16 bytes (600 MB at 100,000 tasks).
    """
    position = {node: index for index, node in enumerate(children)}
    parents_left = dict.fromkeys(children, 0)
    for kids in children.values():
        for child in kids:
            parents_left[child] += 1
    reach: dict[str, int] = {}
    counts: dict[str, int] = {}
    for node in _sinks_first(children):
        mask = 0
        for child in children[node]:
            mask |= reach[child]
            mask |= 1 << position[child]
            parents_left[child] -= 1
            if parents_left[child] == 0:
                del reach[child]
        counts[node] = mask.bit_count()
        if parents_left[node]:
            reach[node] = mask
    return {node: counts[node] for node in children}


def descendants_of(children: Mapping[str, Sequence[str]], task_id: str) -> set[str]:
    """Every task that waits for `task_id`, directly or indirectly."""
    found: set[str] = set()
    stack = list(children[task_id])
    while stack:
        node = stack.pop()
        if node not in found:
            found.add(node)
            stack.extend(children[node])
    return found


def _sinks_first(children: Mapping[str, Sequence[str]]) -> list[str]:
    """A reverse topological order (Kahn's): every task after all of its dependents."""
    waiting = dict.fromkeys(children, 0)
    for kids in children.values():
        for child in kids:
            waiting[child] += 1
    ready = [node for node, count in waiting.items() if count == 0]
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        for child in children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if len(order) != len(waiting):
        raise ValueError("the task graph has a cycle")
    order.reverse()
    return order


def cycles_among(order: Sequence[str], depends_on: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """`find_cycles` without a graph object: tasks in plan order and what each depends on.

    Dependencies on tasks not in `order` are left out.  Each cycle starts at its group's first task
    in plan order and is the shortest one through it, so messages are stable.
    """
    index = {node: position for position, node in enumerate(order)}
    preds = {node: list(dict.fromkeys(dep for dep in depends_on.get(node, ()) if dep in index)) for node in order}
    succs: dict[str, list[str]] = {node: [] for node in order}
    for node in order:
        for dep in preds[node]:
            succs[dep].append(node)
    cycles = []
    for group in _strongly_connected(order, succs):
        start = min(group, key=index.__getitem__)
        if len(group) > 1 or start in succs[start]:
            cycles.append(_shortest_cycle(group, start, succs, preds))
    return sorted(cycles, key=lambda cycle: index[cycle[0]])


def _strongly_connected(order: Sequence[str], succs: Mapping[str, list[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, iteratively (a 10,000-task chain must not recurse)."""
    number: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    for root in order:
        if root in number:
            continue
        work = [(root, iter(succs[root]))]
        number[root] = low[root] = len(number)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in number:
                    number[child] = low[child] = len(number)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(succs[child])))
                    break
                if child in on_stack:
                    low[node] = min(low[node], number[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == number[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
    return groups


def _shortest_cycle(group: set[str], start: str, succs: Mapping[str, list[str]],
                    preds: Mapping[str, list[str]]) -> list[str]:
    """The shortest cycle through `start` in a strongly connected group: breadth first along the
    edges, closed by the first of `start`'s dependencies at the least depth."""
    paths = {start: [start]}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in succs[node]:
            if succ in group and succ not in paths:
                paths[succ] = paths[node] + [succ]
                queue.append(succ)
    closing = [paths[pred] for pred in preds[start] if pred in group]
    return min(closing, key=len) + [start]


def _estimate(graph: nx.DiGraph[str], node: str) -> float:
    return float(graph.nodes[node].get("estimate", 0.0))
