"""The task graph of a plan: dependencies, critical path, and exports for people and tools.

Edges run from a dependency to the task that waits for it.  Everything here is one pass over a
topological order (or a strongly-connected-component pass for cycles), so a 10,000-task plan is
analysed in a fraction of a second; nothing enumerates paths.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import networkx as nx

from engine.plan_values import format_duration

if TYPE_CHECKING:
    from engine.plan import Plan, TaskSpec


# ---------------------------------------------------------------- building


def dependency_graph(tasks: Iterable[TaskSpec]) -> nx.DiGraph:
    """A graph of these tasks (in their order); dependencies on tasks not given are left out."""
    tasks = list(tasks)
    graph = nx.DiGraph()
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


def build_dag(plan: Plan) -> nx.DiGraph:
    """The plan's task graph; `graph.graph["sprint"]` names the sprint."""
    graph = dependency_graph(plan.tasks)
    graph.graph["sprint"] = plan.sprint
    return graph


# ---------------------------------------------------------------- analysis


def critical_path_lengths(graph: nx.DiGraph) -> dict[str, float]:
    """For each task, the longest estimate-weighted path from it to any sink, its own estimate included.

    The scheduler ranks ready tasks by this: starting the task that most delays the end first.
    """
    lengths: dict[str, float] = {}
    for node in reversed(list(nx.topological_sort(graph))):
        after = max((lengths[succ] for succ in graph.successors(node)), default=0.0)
        lengths[node] = _estimate(graph, node) + after
    return lengths


def critical_path(graph: nx.DiGraph) -> list[str]:
    """The chain of tasks with the largest summed estimate (the sprint's shortest possible length)."""
    lengths = critical_path_lengths(graph)
    if not lengths:
        return []
    sources = [node for node in graph if graph.in_degree(node) == 0]
    node = max(sources, key=lengths.__getitem__)
    path = [node]
    while graph.out_degree(node):
        node = max(graph.successors(node), key=lengths.__getitem__)
        path.append(node)
    return path


def descendant_counts(graph: nx.DiGraph) -> dict[str, int]:
    """For each task, how many tasks wait for it directly or indirectly.

    One bitset per task (a Python int), ORed along a reverse topological order: exact, and far
    faster than a search from every node.
    """
    bit = {node: 1 << index for index, node in enumerate(graph)}
    reach: dict[str, int] = {}
    for node in reversed(list(nx.topological_sort(graph))):
        mask = 0
        for succ in graph.successors(node):
            mask |= reach[succ] | bit[succ]
        reach[node] = mask
    return {node: reach[node].bit_count() for node in graph}


def find_cycles(graph: nx.DiGraph) -> list[list[str]]:
    """One cycle per group of mutually dependent tasks, each as `[a, b, ..., a]` along the edges.

    Each cycle starts at the group's first task in graph (plan) order, so messages are stable.
    """
    order = {node: index for index, node in enumerate(graph)}
    cycles = []
    for group in nx.strongly_connected_components(graph):
        start = min(group, key=order.__getitem__)
        if len(group) == 1 and not graph.has_edge(start, start):
            continue
        cycles.append(_cycle_through(graph.subgraph(group), start))
    return sorted(cycles, key=lambda cycle: order[cycle[0]])


def find_cycle(graph: nx.DiGraph) -> list[str] | None:
    """The first cycle of `find_cycles`, or None when the graph is a DAG."""
    cycles = find_cycles(graph)
    return cycles[0] if cycles else None


def _cycle_through(group: nx.DiGraph, start: str) -> list[str]:
    """The shortest cycle through `start` in a strongly connected group."""
    paths = nx.single_source_shortest_path(group, start)
    closing = [paths[pred] for pred in group.predecessors(start)]
    return min(closing, key=len) + [start]


def _estimate(graph: nx.DiGraph, node: str) -> float:
    return float(graph.nodes[node].get("estimate", 0.0))


# ---------------------------------------------------------------- exports


def _owner(task: TaskSpec) -> str:
    """Who does the task, in a few words: the agent, the group, or the capabilities needed."""
    if task.agent:
        return task.agent
    if task.agents:
        return " + ".join(task.agents)
    if task.requires:
        return "needs " + ", ".join(task.requires)
    return "any agent"


def _critical_edges(path: list[str]) -> set[tuple[str, str]]:
    return set(zip(path, path[1:]))


_MERMAID_WORDS = {
    "end", "graph", "flowchart", "subgraph", "style", "class", "classdef", "click", "linkstyle", "direction", "default",
}  # fmt: skip


def _mermaid_ids(plan: Plan) -> dict[str, str]:
    """Task id -> Mermaid node id; ids Mermaid would misread become `t<index>`."""
    ids = {}
    for index, task in enumerate(plan.tasks):
        safe = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", task.id) and task.id.lower() not in _MERMAID_WORDS
        ids[task.id] = task.id if safe else f"t{index}"
    return ids


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label (entity codes for the characters it parses)."""
    for char, code in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, code)
    return text.replace("\n", " ")


def to_mermaid(plan: Plan) -> str:
    """A Mermaid `flowchart TD`: one node per task (title, owner, estimate), critical path styled."""
    graph = build_dag(plan)
    path = critical_path(graph)
    names = _mermaid_ids(plan)
    lines = ["flowchart TD", f"    %% sprint: {plan.sprint}"]
    for task in plan.tasks:
        detail = f"{_owner(task)} · {format_duration(task.estimate)}"
        label = f"{_mermaid_text(task.title)}<br/><small>{_mermaid_text(detail)}</small>"
        lines.append(f'    {names[task.id]}["{label}"]')
    path_edges = _critical_edges(path)
    critical_links = []
    for number, (dep, task_id) in enumerate(graph.edges):
        lines.append(f"    {names[dep]} --> {names[task_id]}")
        if (dep, task_id) in path_edges:
            critical_links.append(str(number))
    if path:
        lines.append("    classDef critical fill:#fde2e1,stroke:#d33,stroke-width:3px")
        lines.append(f"    class {','.join(names[node] for node in path)} critical")
    if critical_links:
        lines.append(f"    linkStyle {','.join(critical_links)} stroke:#d33,stroke-width:3px")
    return "\n".join(lines) + "\n"


def _dot_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def to_dot(plan: Plan) -> str:
    """A Graphviz `digraph` of the tasks; the critical path drawn in red and bold."""
    graph = build_dag(plan)
    path = critical_path(graph)
    on_path, path_edges = set(path), _critical_edges(path)
    red = ', color="#dd3333", penwidth=2.5'
    lines = [
        f"digraph {_dot_string(plan.sprint)} {{",
        f"    graph [rankdir=TB, labelloc=t, label={_dot_string(plan.sprint)}];",
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
    ]
    for task in plan.tasks:
        label = _dot_string(f"{task.title}\n{_owner(task)} · {format_duration(task.estimate)}")
        lines.append(f"    {_dot_string(task.id)} [label={label}{red if task.id in on_path else ''}];")
    for dep, task_id in graph.edges:
        style = f" [{red[2:]}]" if (dep, task_id) in path_edges else ""
        lines.append(f"    {_dot_string(dep)} -> {_dot_string(task_id)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(plan: Plan) -> str:
    """The graph as JSON for other tools: nodes, edges and the critical path."""
    graph = build_dag(plan)
    path = critical_path(graph)
    on_path = set(path)
    nodes: list[dict[str, Any]] = [
        {
            "id": task.id,
            "title": task.title,
            "agent": task.agent,
            "agents": list(task.agents),
            "requires": list(task.requires),
            "priority": task.priority,
            "estimate": task.estimate,
            "critical": task.id in on_path,
        }
        for task in plan.tasks
    ]
    edges = [{"from": dep, "to": task_id} for dep, task_id in graph.edges]
    length = sum(plan.task(task_id).estimate for task_id in path)
    document = {
        "sprint": plan.sprint,
        "nodes": nodes,
        "edges": edges,
        "criticalPath": path,
        "criticalPathLength": length,
    }
    return json.dumps(document, indent=2) + "\n"
