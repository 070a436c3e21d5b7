"""The task graph for people and tools: Mermaid, Graphviz DOT and JSON (`sprintdeck export`).

Kept apart from `engine.dag` so that the graph algorithms, which the plan loader and the
scheduler use, do not depend on the plan model; the exports read the whole plan (titles, owners,
estimates) and so depend on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.dag import build_dag, critical_path
from engine.plan import Plan, TaskSpec
from engine.plan_values import format_duration

if TYPE_CHECKING:
    import networkx as nx

# Mermaid's default limits (mermaid 11), both counted over a whole diagram, subgraphs included:
# its flowchart parser refuses the 501st edge ("Edge limit exceeded"), and its renderer draws
# text longer than `maxTextSize` as "Maximum text size in diagram exceeded" instead.
MERMAID_MAX_EDGES = 500
MERMAID_MAX_TEXT = 50_000


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


def _js_length(text: str) -> int:
    """The text's length as Mermaid (JavaScript) counts it: in UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True)
class _MermaidGraph:
    """What every diagram of one plan shares: the graph, its critical path, the node names."""

    plan: Plan
    graph: nx.DiGraph[str]
    path: list[str]
    path_edges: set[tuple[str, str]]
    names: dict[str, str]

    @classmethod
    def of(cls, plan: Plan) -> _MermaidGraph:
        graph = build_dag(plan)
        path = critical_path(graph)
        return cls(plan, graph, path, _critical_edges(path), _mermaid_ids(plan))

    def node(self, task: TaskSpec) -> str:
        detail = f"{_owner(task)} · {format_duration(task.estimate)}"
        return f'    {self.names[task.id]}["{_mermaid_text(task.title)}<br/><small>{_mermaid_text(detail)}</small>"]'

    def stub(self, task_id: str, part: int) -> str:
        """A task drawn in another part, shown where its dependents are: its id and which part."""
        return f'    {self.names[task_id]}["{_mermaid_text(task_id)}<br/><small>in part {part}</small>"]'

    def diagram(self, task_ids: Sequence[str], part_of: Mapping[str, int], header: str) -> str:
        """A `flowchart TD` of these tasks and every dependency of theirs; a dependency on a task
        of another part (`part_of`) is drawn to a dashed stub naming that part."""
        here = set(task_ids)
        lines = ["flowchart TD", f"    %% {header}"]
        lines += [self.node(self.plan.task(task_id)) for task_id in task_ids]
        edges = [(dep, task_id) for dep, task_id in self.graph.edges if task_id in here]
        stubs = list(dict.fromkeys(dep for dep, _ in edges if dep not in here))
        lines += [self.stub(dep, part_of[dep]) for dep in stubs]
        critical_links = []
        for number, (dep, task_id) in enumerate(edges):
            lines.append(f"    {self.names[dep]} --> {self.names[task_id]}")
            if (dep, task_id) in self.path_edges:
                critical_links.append(str(number))
        on_path = [node for node in self.path if node in here]
        if on_path:
            lines.append("    classDef critical fill:#fde2e1,stroke:#d33,stroke-width:3px")
            lines.append(f"    class {','.join(self.names[node] for node in on_path)} critical")
        if critical_links:
            lines.append(f"    linkStyle {','.join(critical_links)} stroke:#d33,stroke-width:3px")
        if stubs:
            lines.append("    classDef elsewhere fill:#f4f4f4,stroke:#888,stroke-dasharray:4 3")
            lines.append(f"    class {','.join(self.names[dep] for dep in stubs)} elsewhere")
        return "\n".join(lines) + "\n"


def to_mermaid(plan: Plan) -> str:
    """A Mermaid `flowchart TD`: one node per task (title, owner, estimate), critical path styled.
    One diagram whatever the plan's size: `mermaid_diagrams` keeps to Mermaid's limits."""
    whole = _MermaidGraph.of(plan)
    return whole.diagram([task.id for task in plan.tasks], {}, f"sprint: {plan.sprint}")


class MermaidTooLarge(Exception):
    """One task's node and dependencies alone are over Mermaid's limits: no split can help."""


def mermaid_size(text: str) -> tuple[int, int]:
    """A flowchart's edges (its `-->` lines) and characters, the two things Mermaid limits."""
    return sum(" --> " in line for line in text.splitlines()), _js_length(text)


def mermaid_diagrams(plan: Plan) -> list[str]:
    """The graph in diagrams that Mermaid, with its default limits, draws: `[to_mermaid(plan)]`
    when that fits, else parts of at most `MERMAID_MAX_EDGES` edges and `MERMAID_MAX_TEXT`
    characters. Mermaid counts both over the whole diagram (subgraphs share the one count), so
    a bigger graph has to be several diagrams: the tasks are taken connected part by connected
    part, in dependency order, and a part closes when the next task would not fit. Each task is
    drawn in one part, each dependency once, in the part of the task that waits for it."""
    shared = _MermaidGraph.of(plan)
    whole = shared.diagram([task.id for task in plan.tasks], {}, f"sprint: {plan.sprint}")
    edges, chars = mermaid_size(whole)
    if edges <= MERMAID_MAX_EDGES and chars <= MERMAID_MAX_TEXT:
        return [whole]
    parts = _mermaid_parts(shared)
    part_of = {task_id: number for number, part in enumerate(parts, 1) for task_id in part}
    return [shared.diagram(part, part_of, f"sprint: {plan.sprint} · part {number} of {len(parts)}")
            for number, part in enumerate(parts, 1)]


def _dependency_order(graph: nx.DiGraph[str], plan: Plan) -> list[str]:
    """Tasks connected part by connected part (in plan order of their first task), each part in
    dependency order, plan order breaking ties."""
    import networkx as nx

    index = {task.id: number for number, task in enumerate(plan.tasks)}
    component: dict[str, int] = {}
    for nodes in nx.weakly_connected_components(graph):
        first = min(index[node] for node in nodes)
        component.update(dict.fromkeys(nodes, first))
    return list(nx.lexicographical_topological_sort(graph, key=lambda node: (component[node], index[node])))


def _mermaid_parts(shared: _MermaidGraph) -> list[list[str]]:
    """Tasks in parts whose diagrams stay within Mermaid's limits (see `_chars_added`)."""
    graph = shared.graph
    fixed = _js_length(shared.diagram([], {}, f"sprint: {shared.plan.sprint} · part 999999 of 999999"))
    fixed += 300  # the classDef lines and the fixed words of the class and linkStyle lines
    parts: list[list[str]] = [[]]
    drawn: set[str] = set()  # the part's tasks and stubs
    edges = chars = 0
    for task_id in _dependency_order(graph, shared.plan):
        deps = list(graph.predecessors(task_id))
        cost = _chars_added(shared, task_id, drawn)
        if parts[-1] and (edges + len(deps) > MERMAID_MAX_EDGES or fixed + chars + cost > MERMAID_MAX_TEXT):
            parts.append([])
            drawn, edges, chars = set(), 0, 0
            cost = _chars_added(shared, task_id, drawn)
        if len(deps) > MERMAID_MAX_EDGES or fixed + cost > MERMAID_MAX_TEXT:
            raise MermaidTooLarge(f"task {task_id!r} alone, with its {len(deps)} dependencies, is over "
                                  f"Mermaid's limits of {MERMAID_MAX_EDGES} edges and {MERMAID_MAX_TEXT:,} "
                                  "characters per diagram")
        parts[-1].append(task_id)
        drawn.update([task_id, *deps])
        edges += len(deps)
        chars += cost
    return [part for part in parts if part]


def _chars_added(shared: _MermaidGraph, task_id: str, drawn: set[str]) -> int:
    """At least the characters that adding the task adds to a part already drawing `drawn`:
    its node, its edges, stubs for dependencies not yet drawn (part numbers counted as six
    digits), and in the style lines its name (as if it were on the critical path), its stubs'
    names and its critical edges' numbers (as six digits). An upper bound keeps the count one
    pass over the tasks; the parts it makes are a few percent smaller than they could be."""
    names = shared.names
    deps = list(shared.graph.predecessors(task_id))
    chars = _js_length(shared.node(shared.plan.task(task_id))) + 1
    chars += len(names[task_id]) + 1  # in the critical class line, if it is on the path
    chars += sum(len(f"    {names[dep]} --> {names[task_id]}") + 1 + 7 * ((dep, task_id) in shared.path_edges)
                 for dep in deps)
    chars += sum(_js_length(shared.stub(dep, 999999)) + 1 + len(names[dep]) + 1
                 for dep in deps if dep not in drawn)
    return chars


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
