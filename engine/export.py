"""The task graph for people and tools: Mermaid, Graphviz DOT and JSON (`sprintdeck export`).

Kept apart from `engine.dag` so that the graph algorithms, which the plan loader and the
scheduler use, do not depend on the plan model; the exports read the whole plan (titles, owners,
estimates) and so depend on it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from engine.dag import build_dag, critical_path
from engine.plan import Plan, TaskSpec
from engine.plan_values import format_duration


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


# ---------------------------------------------------------------- Mermaid

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


# ---------------------------------------------------------------- Graphviz DOT


def _dot_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _dot_label(task: TaskSpec) -> str:
    """The task id first (what the plan, the journal and the dashboard call it), then its title
    when that says more than the id, then who does it and for how long."""
    lines = [task.id] + ([task.title] if task.title != task.id else [])
    return "\n".join([*lines, f"{_owner(task)} · {format_duration(task.estimate)}"])


def to_dot(plan: Plan) -> str:
    """A Graphviz `digraph` of the tasks; the critical path drawn in red and bold, and named
    with its length in the graph's title so that a black-and-white print still says it."""
    graph = build_dag(plan)
    path = critical_path(graph)
    on_path, path_edges = set(path), _critical_edges(path)
    red = ', color="#dd3333", penwidth=2.5'
    title = plan.sprint
    if path:
        length = format_duration(sum(plan.task(task_id).estimate for task_id in path))
        title += f"\ncritical path in red: {len(path)} tasks, {length}"
    lines = [
        f"digraph {_dot_string(plan.sprint)} {{",
        f'    graph [rankdir=TB, labelloc=t, fontname="Helvetica", label={_dot_string(title)}];',
        '    node [shape=box, style=rounded, fontname="Helvetica"];',
    ]
    for task in plan.tasks:
        label = _dot_string(_dot_label(task))
        lines.append(f"    {_dot_string(task.id)} [label={label}{red if task.id in on_path else ''}];")
    for dep, task_id in graph.edges:
        style = f" [{red[2:]}]" if (dep, task_id) in path_edges else ""
        lines.append(f"    {_dot_string(dep)} -> {_dot_string(task_id)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- JSON


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
