"""The task graph: critical path, ranking figures, exports, and the sample sprints."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.dag import (
    build_dag,
    critical_path,
    dependency_graph,
    cycles_among,
    descendants_of,
    longest_paths,
    reach_counts,
    task_children,
)
from engine.export import to_dot, to_json, to_mermaid
from engine.plan import Plan, PlanError, TaskSpec, load_plan

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_sprints"
SPRINTDECK = Path(sys.executable).parent / "sprintdeck"

# a(2) -> b(3) -> d(1);  a -> c(10) -> d;  e(4) alone.  Longest: a -> c -> d = 13 s.
HAND_MADE = """\
sprint: hand-made
agents:
  - id: dev
    capabilities: [code]
  - id: qa
    capabilities: [test]
tasks:
  - id: a
    title: Design "the" API
    agent: dev
    estimate: 2s
  - id: b
    title: Backend <fast> & safe
    requires: [code]
    depends_on: [a]
    estimate: 3s
  - id: c
    title: Client
    depends_on: [a]
    estimate: 10s
    priority: high
  - id: d
    title: Test
    requires: [test]
    depends_on: [b, c]
    estimate: 1s
  - id: e
    title: Docs
    estimate: 4s
"""


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    path = tmp_path / "plan.yaml"
    path.write_text(HAND_MADE)
    return load_plan(path)


def test_build_dag_nodes_and_edges(plan: Plan) -> None:
    graph = build_dag(plan)
    assert list(graph.nodes) == ["a", "b", "c", "d", "e"]
    assert sorted(graph.edges) == [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]
    assert graph.nodes["c"]["estimate"] == 10.0 and graph.nodes["c"]["priority"] == "high"
    assert graph.nodes["a"]["agent"] == "dev" and graph.nodes["d"]["requires"] == ["test"]
    assert graph.graph["sprint"] == "hand-made"


def test_critical_path(plan: Plan) -> None:
    assert critical_path(build_dag(plan)) == ["a", "c", "d"]


def test_critical_path_lengths(plan: Plan) -> None:
    assert longest_paths(task_children(plan.tasks), {t.id: t.estimate for t in plan.tasks}) == {"a": 13.0, "b": 4.0, "c": 11.0, "d": 1.0, "e": 4.0}


def test_descendant_counts(plan: Plan) -> None:
    assert reach_counts(task_children(plan.tasks)) == {"a": 3, "b": 1, "c": 1, "d": 0, "e": 0}


def test_descendants_counted_once_through_diamonds() -> None:
    # a fans out to b1..b50, which all feed z: a has 51 descendants, not 100.
    tasks = [TaskSpec(id="a")] + [TaskSpec(id=f"b{i}", depends_on=["a"]) for i in range(50)]
    tasks.append(TaskSpec(id="z", depends_on=[f"b{i}" for i in range(50)]))
    counts = reach_counts(task_children(tasks))
    assert counts["a"] == 51 and counts["b7"] == 1 and counts["z"] == 0


def test_empty_graph() -> None:
    graph = dependency_graph([])
    assert critical_path(graph) == [] and longest_paths({}, {}) == {} and reach_counts({}) == {}


def test_long_chain_and_wide_fan_are_handled() -> None:
    """10,000 tasks: a chain of 5,000 and a fan of 5,000 (no recursion, no path enumeration)."""
    chain = [TaskSpec(id="c0", estimate=1.0)] + [
        TaskSpec(id=f"c{i}", depends_on=[f"c{i - 1}"], estimate=1.0) for i in range(1, 5000)
    ]
    fan = [TaskSpec(id=f"f{i}", depends_on=["c0"], estimate=0.5) for i in range(5000)]
    graph = dependency_graph(chain + fan)
    path = critical_path(graph)
    assert len(path) == 5000 and path[0] == "c0" and path[-1] == "c4999"
    children = task_children(chain + fan)
    assert longest_paths(children, {t.id: t.estimate for t in chain + fan})["c0"] == 5000.0
    assert reach_counts(children)["c0"] == 4999 + 5000


def test_find_cycles() -> None:
    tasks = [
        TaskSpec(id="a", depends_on=["c"]),
        TaskSpec(id="b", depends_on=["a"]),
        TaskSpec(id="c", depends_on=["b"]),
        TaskSpec(id="x", depends_on=["x"]),
        TaskSpec(id="ok"),
    ]
    depends_on = {task.id: task.depends_on for task in tasks}
    # along edges: dependency -> dependent
    assert cycles_among([t.id for t in tasks], depends_on) == [["a", "b", "c", "a"], ["x", "x"]]
    assert cycles_among(["ok"], depends_on) == []


# ---------------------------------------------------------------- exports


def test_mermaid(plan: Plan) -> None:
    text = to_mermaid(plan)
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    for task_id in "abcde":
        assert any(line.strip().startswith(f'{task_id}["') for line in lines)
    assert '    a["Design #quot;the#quot; API<br/><small>dev · 2s</small>"]' in lines
    assert '    b["Backend #lt;fast#gt; & safe<br/><small>needs code · 3s</small>"]' in lines
    edges = [line.strip() for line in lines if "-->" in line]
    assert edges == ["a --> b", "a --> c", "b --> d", "c --> d"]
    assert "    class a,c,d critical" in lines
    assert "    linkStyle 1,3 stroke:#d33,stroke-width:3px" in lines  # a --> c and c --> d


def test_mermaid_renames_ids_it_would_misread(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("sprint: s\nagents: [{id: a}]\ntasks:\n  - id: end\n  - id: build-ui\n    depends_on: [end]\n")
    lines = to_mermaid(load_plan(path)).splitlines()
    assert '    t0["end<br/><small>any agent · 1s</small>"]' in lines
    assert "    t0 --> t1" in lines


def _dot_statements(text: str) -> list[str]:
    """The statements of a DOT graph, after checking its frame and quoting."""
    assert re.fullmatch(r'digraph "(?:[^"\\]|\\.)*" \{\n(.*\n)*\}\n', text), text
    body = text.splitlines()[1:-1]
    string = r'"(?:[^"\\]|\\.)*"'
    attrs = rf"\[(?:\w+=(?:{string}|[\w.#]+)(?:, )?)+\]"
    statement = re.compile(rf"(?:(?:graph|node) {attrs}|{string}(?: -> {string})?(?: {attrs})?);")
    for line in body:
        assert statement.fullmatch(line.strip()), line
    return [line.strip() for line in body]


def test_dot(plan: Plan) -> None:
    statements = _dot_statements(to_dot(plan))
    # The id first, then the title where it differs, then owner and estimate.
    assert '"a" [label="a\\nDesign \\"the\\" API\\ndev · 2s", color="#dd3333", penwidth=2.5];' in statements
    assert '"e" [label="e\\nDocs\\nany agent · 4s"];' in statements
    assert statements[0].endswith('label="hand-made\\ncritical path in red: 3 tasks, 13s"];')
    edges = [s for s in statements if " -> " in s]
    assert [e.split(" [")[0].rstrip(";") for e in edges] == ['"a" -> "b"', '"a" -> "c"', '"b" -> "d"', '"c" -> "d"']
    red = [e.split(" [")[0] for e in edges if "#dd3333" in e]
    assert red == ['"a" -> "c"', '"c" -> "d"']


def test_dot_label_leaves_out_a_title_that_is_only_the_id(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text("sprint: s\nagents: [{id: a}]\ntasks:\n  - id: build\n")
    assert '"build" [label="build\\nany agent · 1s", color="#dd3333", penwidth=2.5];' in _dot_statements(to_dot(load_plan(path)))


def test_json(plan: Plan) -> None:
    document = json.loads(to_json(plan))
    assert document["sprint"] == "hand-made"
    assert document["criticalPath"] == ["a", "c", "d"]
    assert document["criticalPathLength"] == 13.0
    assert document["edges"] == [{"from": "a", "to": "b"}, {"from": "a", "to": "c"}, {"from": "b", "to": "d"}, {"from": "c", "to": "d"}]
    nodes = {node["id"]: node for node in document["nodes"]}
    assert list(nodes) == ["a", "b", "c", "d", "e"]
    assert nodes["a"] == {
        "id": "a",
        "title": 'Design "the" API',
        "agent": "dev",
        "agents": [],
        "requires": [],
        "priority": "medium",
        "estimate": 2.0,
        "critical": True,
    }
    assert nodes["d"]["requires"] == ["test"] and nodes["d"]["agent"] is None
    assert [node_id for node_id, node in nodes.items() if node["critical"]] == ["a", "c", "d"]


@pytest.mark.parametrize("fmt", ["mermaid", "dot", "json"])
def test_cli_export(fmt: str) -> None:
    result = subprocess.run(
        [str(SPRINTDECK), "export", "sample_sprints/webrtc/plan.yaml", "--format", fmt],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    if fmt == "json":
        assert json.loads(result.stdout)["criticalPath"][0] == "update_schema"
    elif fmt == "dot":
        _dot_statements(result.stdout)
    else:
        assert result.stdout.startswith("flowchart TD\n")


def test_cli_export_bad_plan() -> None:
    result = subprocess.run(
        [str(SPRINTDECK), "export", "sample_sprints/invalid/cycle.yaml", "--format", "json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("sample_sprints/invalid/cycle.yaml:6: task 'plan': dependency cycle: plan -> check")


# ---------------------------------------------------------------- the sample sprints


VALID_SAMPLES = sorted(p for p in SAMPLES.glob("*/plan.*") if p.parent.name != "invalid")


def test_samples_exist() -> None:
    assert {p.parent.name for p in VALID_SAMPLES} >= {"webrtc", "flaky", "large"}


@pytest.mark.parametrize("path", VALID_SAMPLES, ids=lambda p: p.parent.name)
def test_sample_loads_and_has_a_workspace_if_named(path: Path) -> None:
    plan = load_plan(path)
    assert plan.tasks and plan.agents
    if plan.workspace is not None:
        assert plan.workspace.is_dir()
    graph = build_dag(plan)
    assert critical_path(graph)


INVALID_SAMPLES = sorted(p for p in (SAMPLES / "invalid").glob("*.*") if p.suffix in {".yaml", ".json"})


@pytest.mark.parametrize("path", INVALID_SAMPLES, ids=lambda p: p.name)
def test_invalid_samples_are_refused(path: Path) -> None:
    with pytest.raises(PlanError):
        load_plan(path)


def test_webrtc_sample_follows_the_seed() -> None:
    plan = load_plan(SAMPLES / "webrtc" / "plan.yaml")
    assert [a.id for a in plan.agents] == ["database", "backend", "frontend", "testing"]
    assert all(a.kind == "simulated" and 1 <= a.max_concurrent_tasks <= 2 for a in plan.agents)
    task = plan.task
    assert (task("update_schema").agent, task("implement_api").agent, task("integrate_api").agent) == ("database", "backend", "frontend")
    assert task("implement_api").depends_on == ["update_schema"] and task("integrate_api").depends_on == ["implement_api"]
    for parallel in ("websocket_signaling", "session_management", "message_persistence"):
        assert task(parallel).depends_on == [] and plan.capable_agents(parallel) == ["backend"]
    webrtc = task("webrtc_implementation")
    assert webrtc.coordination == "collaborative" and webrtc.agents == ["backend", "frontend"]
    assert webrtc.shared_resources == ["client/src/lib/websocket.ts", "server/routes.ts"]
    assert set(webrtc.depends_on) == {"implement_api", "websocket_signaling"}
    for test_task in ("unit_tests", "integration_tests", "e2e_tests"):
        assert plan.capable_agents(test_task) == ["testing"]

    graph = build_dag(plan)
    length = sum(plan.task(t).estimate for t in critical_path(graph))
    assert 60 <= length <= 120
    assert critical_path(graph)[-1] in {"unit_tests", "integration_tests", "e2e_tests"}

    resources = [r for t in plan.tasks for r in t.resources]
    assert {r.mode for r in resources} >= {"read", "write"}
    assert plan.workspace is not None
    directories = [r.path for r in resources if (plan.workspace / r.path).is_dir()]
    assert "server/db" in directories
    for t in plan.tasks:
        for r in t.resources:
            if ":" not in r.path and r.mode != "write":
                assert (plan.workspace / r.path).exists(), r.path  # what is read is there


def test_flaky_sample_retries_enough() -> None:
    plan = load_plan(SAMPLES / "flaky" / "plan.yaml")
    assert 8 <= len(plan.tasks) <= 12
    assert all(0.2 <= a.failure_rate <= 0.4 for a in plan.agents)
    assert all(t.max_retries >= 4 for t in plan.tasks)


def test_large_sample_is_large() -> None:
    plan = load_plan(SAMPLES / "large" / "plan.yaml")
    assert len(plan.tasks) >= 500 and len(plan.agents) >= 20
    assert all(plan.capable_agents(t) for t in plan.tasks)
    assert plan.workspace is None
    assert all(0.1 <= t.estimate <= 2.0 for t in plan.tasks)


def test_large_sample_is_the_generator_output(tmp_path: Path) -> None:
    out = tmp_path / "large.yaml"
    script = ROOT / "benchmarks" / "generate_large_sprint.py"
    args = [sys.executable, str(script), "--tasks", "600", "--agents", "24", "--seed", "1", "-o", str(out)]
    subprocess.run(args, check=True, timeout=60)
    assert out.read_text() == (SAMPLES / "large" / "plan.yaml").read_text()


def test_generator_other_sizes_load(tmp_path: Path) -> None:
    out = tmp_path / "small.yaml"
    script = ROOT / "benchmarks" / "generate_large_sprint.py"
    subprocess.run([sys.executable, str(script), "--tasks", "50", "--agents", "3", "--seed", "7", "-o", str(out)], check=True, timeout=60)
    plan = load_plan(out)
    assert len(plan.tasks) == 50 and len(plan.agents) == 3
    again = out.read_text()
    subprocess.run([sys.executable, str(script), "--tasks", "50", "--agents", "3", "--seed", "7", "-o", str(out)], check=True, timeout=60)
    assert out.read_text() == again


def _networkx_cycles(order: list[str], depends_on: dict[str, list[str]]) -> list[list[str]]:
    """The networkx formulation the plan check used before it stopped importing networkx."""
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(order)
    for node in order:
        graph.add_edges_from((dep, node) for dep in depends_on[node] if dep in graph)
    position = {node: index for index, node in enumerate(graph)}
    cycles = []
    for group in nx.strongly_connected_components(graph):
        start = min(group, key=position.__getitem__)
        if len(group) == 1 and not graph.has_edge(start, start):
            continue
        sub = graph.subgraph(group)
        paths = nx.single_source_shortest_path(sub, start)
        cycles.append(min((paths[pred] for pred in sub.predecessors(start)), key=len) + [start])
    return sorted(cycles, key=lambda cycle: position[cycle[0]])


@given(st.integers(1, 12).flatmap(lambda n: st.lists(
    st.lists(st.integers(0, n + 1), max_size=4), min_size=n, max_size=n)))
@settings(max_examples=400, deadline=None)
def test_plan_cycles_match_networkx_message_for_message(deps: list[list[int]]) -> None:
    # Same cycles, same starting task, same tie-breaks: a plan's error messages do not change.
    order = [f"t{i}" for i in range(len(deps))]
    depends_on = {f"t{i}": [f"t{d}" for d in ds] for i, ds in enumerate(deps)}  # t{n}, t{n+1}: unknown
    assert cycles_among(order, depends_on) == _networkx_cycles(order, depends_on)



@given(st.lists(st.tuples(st.lists(st.integers(0, 30), max_size=3), st.floats(0, 100)), min_size=1, max_size=30))
@settings(max_examples=300, deadline=None)
def test_the_schedulers_dict_figures_match_networkx(spec: list[tuple[list[int], float]]) -> None:
    # The scheduler ranks by these without building a networkx graph: same figures as the graph's.
    import networkx as nx

    tasks = [TaskSpec(id=f"t{i}", estimate=estimate, depends_on=sorted({f"t{d}" for d in deps if d < i}))
             for i, (deps, estimate) in enumerate(spec)]
    graph = dependency_graph(tasks)
    children = task_children(tasks)
    longest: dict[str, float] = {}
    for node in reversed(list(nx.topological_sort(graph))):
        longest[node] = graph.nodes[node]["estimate"] + max((longest[s] for s in graph.successors(node)), default=0.0)
    assert longest_paths(children, {t.id: t.estimate for t in tasks}) == longest
    assert reach_counts(children) == {node: len(nx.descendants(graph, node)) for node in graph}
    for task in tasks:
        assert descendants_of(children, task.id) == nx.descendants(graph, task.id)
