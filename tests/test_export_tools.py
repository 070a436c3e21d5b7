"""`sprintdeck export` of every sample plan, checked by the tools that read it: Graphviz's `dot`
for the DOT export and the svg and png it draws, Mermaid's own parser for the Mermaid export.

The tools are real programs (Debian's `graphviz`; the `mermaid` npm package that `.ci/run`
installs into .cache/npm). A missing tool fails these tests with how to install it; they are the
proof that the exports render, so they are never skipped.
"""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine.dag import build_dag, critical_path
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
        "finish within 1 s and was stopped\n")


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
