"""`sprintdeck export` of every sample plan, checked by the tools that read it: a JSON parser,
Graphviz's `dot` for the DOT export and the svg and png it draws, Mermaid's own parser for the
Mermaid export.

The tools are real programs (Debian's `graphviz`; the `mermaid` npm package that `.ci/run`
installs into .cache/npm). A missing tool fails these tests with how to install it; they are the
proof that the exports render, so they are never skipped.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from mermaid_parser import (
    LOCAL_MODULES,
    MermaidNotFound,
    find_mermaid_modules,
    find_node,
    mermaid_limits,
    mermaid_verdicts,
)

from engine.dag import build_dag, critical_path
from engine.export import MERMAID_MAX_EDGES, MERMAID_MAX_TEXT
from engine.plan import Plan, load_plan

ROOT = Path(__file__).resolve().parent.parent
SPRINTDECK = Path(sys.executable).parent / "sprintdeck"
SAMPLES = sorted(p for p in (ROOT / "sample_sprints").glob("*/plan.*") if p.parent.name != "invalid")
SVG = "{http://www.w3.org/2000/svg}"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RED = "#dd3333"


def export(plan: Path | str, *args: str, env: dict[str, str] | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    """`sprintdeck export PLAN ARGS...`, run as a user would, from the repository."""
    return subprocess.run([str(SPRINTDECK), "export", str(plan), *args], cwd=ROOT, capture_output=True,
                          env=env, timeout=timeout, check=False)


def dot_program() -> str:
    """Graphviz's `dot`, failing (never skipping) the test when it is not installed."""
    found = shutil.which("dot")
    if found is None:
        pytest.fail("Graphviz's `dot` is not installed: `sudo apt-get install graphviz`, or run "
                    "`.ci/run`, which does that", pytrace=False)
    return found


def svg_graph(svg: bytes) -> tuple[dict[str, ET.Element], list[str]]:
    """The nodes of a Graphviz SVG by their name (the task id) and its edges' titles."""
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    nodes, edges = {}, []
    for group in root.iter(f"{SVG}g"):
        title = group.find(f"{SVG}title")
        if group.get("class") == "node" and title is not None:
            nodes[str(title.text)] = group
        elif group.get("class") == "edge" and title is not None:
            edges.append(str(title.text))
    return nodes, edges


def node_text(node: ET.Element) -> list[str]:
    return [str(text.text) for text in node.iter(f"{SVG}text")]


def check_svg_shows(plan: Plan, svg: bytes) -> None:
    """Every task a node named by its id, with the id as the label's first line; every
    dependency an edge; the critical path's nodes outlined in red."""
    nodes, edges = svg_graph(svg)
    assert set(nodes) == {task.id for task in plan.tasks}
    for task in plan.tasks:
        assert node_text(nodes[task.id])[0] == task.id
    graph = build_dag(plan)
    assert sorted(edges) == sorted(f"{dep}->{task}" for dep, task in graph.edges)
    red = {node_id for node_id, node in nodes.items()
           if any(shape.get("stroke") == RED for shape in node.iter(f"{SVG}path"))}
    assert red == set(critical_path(graph))


# ---------------------------------------------------------------- JSON


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.parent.name)
def test_json_export_is_the_graph(path: Path) -> None:
    exported = export(path, "--format", "json")
    assert exported.returncode == 0, exported.stderr.decode()
    document = json.loads(exported.stdout)
    plan, graph = load_plan(path), build_dag(load_plan(path))
    assert [node["id"] for node in document["nodes"]] == [task.id for task in plan.tasks]
    assert [(edge["from"], edge["to"]) for edge in document["edges"]] == list(graph.edges)
    assert document["criticalPath"] == critical_path(graph)


# ---------------------------------------------------------------- Graphviz


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.parent.name)
def test_dot_accepts_the_dot_export(path: Path) -> None:
    exported = export(path, "--format", "dot")
    assert exported.returncode == 0, exported.stderr.decode()
    drawn = subprocess.run([dot_program(), "-Tsvg"], input=exported.stdout, capture_output=True, timeout=60,
                           check=False)
    assert drawn.returncode == 0 and drawn.stderr == b"", drawn.stderr.decode()
    check_svg_shows(load_plan(path), drawn.stdout)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.parent.name)
def test_svg_export_is_the_graph_with_ids_and_the_critical_path(path: Path) -> None:
    dot_program()
    exported = export(path, "--format", "svg")
    assert exported.returncode == 0, exported.stderr.decode()
    check_svg_shows(load_plan(path), exported.stdout)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.parent.name)
def test_png_export_to_a_file(path: Path, tmp_path: Path) -> None:
    dot_program()
    out = tmp_path / "graph.png"
    exported = export(path, "--format", "png", "--output", str(out))
    assert exported.returncode == 0 and exported.stdout == b"", exported.stderr.decode()
    picture = out.read_bytes()
    assert picture.startswith(PNG_MAGIC) and len(picture) > 1000


def test_png_and_svg_to_stdout_and_files_are_the_same_picture(tmp_path: Path) -> None:
    dot_program()
    plan = ROOT / "sample_sprints/webrtc/plan.yaml"
    for fmt in ("png", "svg"):
        out = tmp_path / f"graph.{fmt}"
        assert export(plan, "--format", fmt, "--output", str(out)).returncode == 0
        piped = export(plan, "--format", fmt)
        assert piped.returncode == 0 and piped.stdout == out.read_bytes()
    assert out.read_bytes().startswith(b"<?xml")


def test_png_to_a_terminal_is_refused() -> None:
    """PNG bytes on a terminal would garble it: the command asks for --output instead."""
    leader, follower = pty.openpty()
    try:
        result = subprocess.run([str(SPRINTDECK), "export", "sample_sprints/webrtc/plan.yaml", "--format", "png"],
                                cwd=ROOT, stdout=follower, stderr=subprocess.PIPE, timeout=60, check=False)
        os.set_blocking(leader, False)
        try:
            shown = os.read(leader, 4096)
        except BlockingIOError:
            shown = b""
    finally:
        os.close(leader)
        os.close(follower)
    assert result.returncode == 2 and shown == b""
    assert result.stderr.decode() == ("sprintdeck export: a PNG is binary and stdout is a terminal: give "
                                      "--output FILE or redirect stdout to a file\n")


def _path_with(tmp_path: Path, dot_script: str | None) -> dict[str, str]:
    """An environment whose PATH holds nothing but, if given, a `dot` that runs `dot_script`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if dot_script is not None:
        fake = bin_dir / "dot"
        fake.write_text(f"#!/bin/sh\n{dot_script}\n")
        fake.chmod(0o755)
    return {**os.environ, "PATH": str(bin_dir)}


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_without_graphviz_the_command_says_what_to_install(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"graph.{fmt}"
    result = export("sample_sprints/webrtc/plan.yaml", "--format", fmt, "--output", str(out),
                    env=_path_with(tmp_path, None))
    assert result.returncode == 5 and result.stdout == b"" and not out.exists()
    assert result.stderr.decode() == (
        f"sprintdeck export: cannot draw sample_sprints/webrtc/plan.yaml as {fmt}: Graphviz's `dot` "
        "program is not on PATH: install Graphviz, which provides it (Debian/Ubuntu: `sudo apt-get "
        "install graphviz`, Fedora: `sudo dnf install graphviz`, macOS: `brew install graphviz`)\n")


def test_a_failing_dot_is_reported_with_the_plan_and_what_dot_said(tmp_path: Path) -> None:
    env = _path_with(tmp_path, "echo 'Error: <stdin>: syntax error in line 3 near ->' >&2; exit 1")
    result = export("sample_sprints/flaky/plan.yaml", "--format", "svg", env=env)
    assert result.returncode == 6 and result.stdout == b""
    assert result.stderr.decode() == (
        "sprintdeck export: cannot draw sample_sprints/flaky/plan.yaml as svg: `dot -Tsvg` failed with "
        "exit status 1: Error: <stdin>: syntax error in line 3 near ->\n")


def test_a_dot_that_hangs_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    """The hanging `dot` leaves a child holding the output pipe (not `exec`): it is stopped too."""
    env = {**_path_with(tmp_path, "/bin/sleep 120"), "SPRINTDECK_DOT_TIMEOUT": "1"}
    started = time.monotonic()
    result = export("sample_sprints/webrtc/plan.yaml", "--format", "png", "--output", str(tmp_path / "g.png"),
                    env=env)
    assert time.monotonic() - started < 30
    assert result.returncode == 6 and not (tmp_path / "g.png").exists()
    assert result.stderr.decode() == (
        "sprintdeck export: cannot draw sample_sprints/webrtc/plan.yaml as png: `dot -Tpng` did not "
        "finish within 1 s and was stopped; SPRINTDECK_DOT_TIMEOUT=SECONDS waits longer\n")


def test_a_bad_dot_timeout_is_named(tmp_path: Path) -> None:
    result = export("sample_sprints/webrtc/plan.yaml", "--format", "svg",
                    env={**os.environ, "SPRINTDECK_DOT_TIMEOUT": "soon"})
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode() == ("sprintdeck export: SPRINTDECK_DOT_TIMEOUT='soon' is not a number "
                                      "of seconds above 0\n")


def test_an_output_file_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    out = tmp_path / "missing-dir" / "graph.svg"
    result = export("sample_sprints/webrtc/plan.yaml", "--format", "json", "--output", str(out))
    assert result.returncode == 2
    assert result.stderr.decode() == f"sprintdeck export: cannot write {out}: No such file or directory\n"


# ---------------------------------------------------------------- Mermaid

NODE = re.compile(r'    (\w+)\["(.*?)<br/><small>(.*?)</small>"\]')
EDGE = re.compile(r"    (\w+) --> (\w+)")


def mermaid_export(plan: Path, tmp_path: Path) -> list[str]:
    """The plan's Mermaid export: stdout when it fits one diagram, else the --output parts."""
    exported = export(plan, "--format", "mermaid")
    if exported.returncode == 0:
        return [exported.stdout.decode()]
    assert exported.returncode == 4, exported.stderr.decode()
    out = tmp_path / f"{plan.parent.name}.mmd"
    written = export(plan, "--format", "mermaid", "--output", str(out))
    assert written.returncode == 0, written.stderr.decode()
    parts = sorted(tmp_path.glob(f"{plan.parent.name}-*.mmd"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    assert len(parts) > 1 and not out.exists()
    return [part.read_text() for part in parts]


def drawn_graph(diagrams: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The tasks drawn in full (stubs, whose label says `in part N`, left out) and the edges."""
    nodes, edges = [], []
    for text in diagrams:
        nodes += [m[1] for m in NODE.finditer(text) if not m[3].startswith("in part ")]
        edges += [(m[1], m[2]) for m in EDGE.finditer(text)]
    return nodes, edges


def test_a_missing_mermaid_says_how_to_install_it(tmp_path: Path) -> None:
    hint = r"npm install --prefix \.cache/npm mermaid@11\.17\.2 jsdom@26\.1\.0"
    with pytest.raises(MermaidNotFound, match=rf"no mermaid and jsdom in {tmp_path}/\.cache/npm/node_modules: .*{hint}"):
        find_mermaid_modules({}, root=tmp_path)
    (tmp_path / LOCAL_MODULES / "mermaid").mkdir(parents=True)
    (tmp_path / LOCAL_MODULES / "mermaid/package.json").write_text("{}")
    with pytest.raises(MermaidNotFound, match=rf"^no jsdom in {tmp_path}/\.cache/npm/node_modules: .*{hint}"):
        find_mermaid_modules({}, root=tmp_path)
    (tmp_path / LOCAL_MODULES / "jsdom").mkdir()
    (tmp_path / LOCAL_MODULES / "jsdom/package.json").write_text("{}")
    assert find_mermaid_modules({}, root=tmp_path) == tmp_path / LOCAL_MODULES
    with pytest.raises(MermaidNotFound, match=rf"^no mermaid and jsdom in SPRINTDECK_MERMAID_MODULES=/nowhere: .*{hint}"):
        find_mermaid_modules({"SPRINTDECK_MERMAID_MODULES": "/nowhere"}, root=tmp_path)
    with pytest.raises(MermaidNotFound, match="node is not installed"):
        find_node({"PATH": str(tmp_path)})


def test_our_limits_are_mermaids() -> None:
    assert mermaid_limits() == {"maxEdges": MERMAID_MAX_EDGES, "maxTextSize": MERMAID_MAX_TEXT}


def test_mermaids_edge_limit_counts_the_whole_diagram_not_each_subgraph() -> None:
    """Why a big graph becomes several diagrams: subgraphs of 300 edges each are still refused."""
    chains = "".join(f"  subgraph {name}\n" + "".join(f"    {name}{i} --> {name}{i + 1}\n" for i in range(300))
                     + "  end\n" for name in ("a", "b"))
    verdict = mermaid_verdicts([f"flowchart TD\n{chains}"])[0]
    assert verdict is not None and verdict.startswith("Edge limit exceeded. 500 edges found")


def test_every_sample_plans_mermaid_export_is_accepted_by_mermaid(tmp_path: Path) -> None:
    """One node process parses every diagram; each plan's diagrams draw each task once and each
    dependency once (sample_sprints/large, 1,037 edges, as parts under Mermaid's limits)."""
    diagrams = {path.parent.name: mermaid_export(path, tmp_path) for path in SAMPLES}
    texts = [(name, number, text) for name, parts in diagrams.items() for number, text in enumerate(parts, 1)]
    verdicts = mermaid_verdicts([text for _, _, text in texts])
    refused = {f"{name} part {number}": verdict for (name, number, _), verdict in zip(texts, verdicts) if verdict}
    assert refused == {}
    assert len(diagrams["large"]) == 3
    for path in SAMPLES:
        plan = load_plan(path)
        nodes, edges = drawn_graph(diagrams[path.parent.name])
        assert sorted(nodes) == sorted(task.id for task in plan.tasks)
        assert sorted(edges) == sorted(build_dag(plan).edges)


def test_a_graph_too_big_for_one_mermaid_diagram_is_refused_on_stdout() -> None:
    result = export("sample_sprints/large/plan.yaml", "--format", "mermaid")
    assert result.returncode == 4 and result.stdout == b""
    assert result.stderr.decode() == (
        "sprintdeck export: sample_sprints/large/plan.yaml is too big for one Mermaid diagram: 1,037 edges "
        "and 82,627 characters, and Mermaid draws at most 500 edges (maxEdges) and 50,000 characters "
        "(maxTextSize) per diagram, subgraphs included. Give --output FILE.mmd to write it as 3 diagrams "
        "(FILE-1.mmd to FILE-3.mmd), or use --format svg, png or dot, which have no such limit\n")


def test_the_parts_are_named_on_stderr_and_a_dependency_across_parts_is_a_stub(tmp_path: Path) -> None:
    out = tmp_path / "large.mmd"
    result = export("sample_sprints/large/plan.yaml", "--output", str(out))
    parts = [tmp_path / f"large-{number}.mmd" for number in (1, 2, 3)]
    assert result.returncode == 0 and result.stdout == b""
    assert result.stderr.decode() == (
        f"sprintdeck export: sample_sprints/large/plan.yaml is too big for one Mermaid diagram; wrote 3 "
        f"diagrams: {parts[0]}, {parts[1]}, {parts[2]} (a dependency on a task in another diagram is drawn "
        "to a dashed node naming that diagram's part)\n")
    second = parts[1].read_text()
    assert second.startswith("flowchart TD\n    %% sprint: large-600x24-seed1 · part 2 of 3\n")
    stubs = {m[1]: m[3] for m in NODE.finditer(second) if m[3].startswith("in part ")}
    first = {node for node in drawn_graph([parts[0].read_text()])[0]}
    assert stubs and all(where == "in part 1" for where in stubs.values()) and set(stubs) <= first
    assert f"    class {','.join(stubs)} elsewhere" in second.splitlines()


def _write_plan(path: Path, tasks: list[str]) -> Path:
    path.write_text("sprint: s\nagents: [{id: a}]\ntasks:\n" + "".join(tasks))
    return path


def test_mermaids_limits_are_kept_exactly(tmp_path: Path) -> None:
    """500 edges is one diagram, 501 two; 100 nodes of long titles (no edges) split on text size."""
    chain = [f"  - id: t{i}\n" + (f"    depends_on: [t{i - 1}]\n" if i else "") for i in range(502)]
    at_limit = _write_plan(tmp_path / "at.yaml", chain[:501])
    over = _write_plan(tmp_path / "over.yaml", chain)
    wordy = _write_plan(tmp_path / "wordy.yaml", [f"  - id: w{i}\n    title: {'word ' * 120}\n" for i in range(100)])
    one = export(at_limit, "--format", "mermaid")
    assert one.returncode == 0
    diagrams = [one.stdout.decode()]
    for plan, count in ((over, 2), (wordy, 2)):
        assert export(plan, "--format", "mermaid").returncode == 4
        assert export(plan, "--format", "mermaid", "--output", str(tmp_path / f"{plan.stem}.mmd")).returncode == 0
        parts = sorted(tmp_path.glob(f"{plan.stem}-*.mmd"))
        assert len(parts) == count
        diagrams += [part.read_text() for part in parts]
    assert mermaid_verdicts(diagrams) == [None] * len(diagrams)
    assert len(EDGE.findall(diagrams[0])) == 500


def test_a_task_too_big_for_any_mermaid_diagram_is_named(tmp_path: Path) -> None:
    tasks = [f"  - id: d{i}\n" for i in range(501)] + [f"  - id: hub\n    depends_on: [{', '.join(f'd{i}' for i in range(501))}]\n"]
    plan = _write_plan(tmp_path / "hub.yaml", tasks)
    result = export(plan, "--format", "mermaid", "--output", str(tmp_path / "hub.mmd"))
    assert result.returncode == 4 and not list(tmp_path.glob("hub*.mmd"))
    assert result.stderr.decode() == (
        f"sprintdeck export: cannot write {plan} as Mermaid: task 'hub' alone, with its 501 dependencies, is "
        "over Mermaid's limits of 500 edges and 50,000 characters per diagram; --format svg, png or dot "
        "have no such limit\n")
