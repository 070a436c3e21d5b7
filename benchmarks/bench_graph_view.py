"""The Tasks pane's graph view (issue 18): layout time, and repaint after one status change.

Layout: `engine.dag_layout.layered` for generated plans of 1,000 and 10,000 tasks
(`generate_large_sprint.make_plan`, seed 1), next to what was measured before writing it:
networkx's `topological_generations` (layers only: no order within a layer, no columns), and,
when installed, grandalf's Sugiyama layout (`SugiyamaLayout.init_all` + `draw`, what `netext`
lays out with) and netext's `ConsoleGraph`.  The floor is one pass over the plan's edges (building
the dependents map), measured in the same run.

Repaint: the real App headless at 200×60 over the 10,000-task plan, the Tasks pane maximised;
one status change of a task on screen (ready, assigned, running, retrying, ready …), then the App's drain plus the screen's update (as
`bench_dashboard.py` times a batch), in the table and in the graph, alternating blocks of rounds in
one run.  Target: the graph's p95 at most twice the table's.

    .venv/bin/python benchmarks/bench_graph_view.py [--rounds 60] [--layout-only]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from generate_large_sprint import make_plan

from engine.dag_layout import layered

SIZES = [1_000, 10_000]
NEXT: dict[str, tuple[Any, dict[str, Any]]] = {}  # a status -> the event that moves a task on (in a cycle)
GRANDALF_LIMIT = 1_000  # grandalf takes ~10 s at 1,000 tasks; 10,000 would run for many minutes
NETEXT_SIZES = [50, 200]  # netext takes ~50 s at 200 tasks already


def plan_parents(tasks: int) -> dict[str, list[str]]:
    plan = make_plan(tasks, 40, 1)
    return {task["id"]: list(task.get("depends_on", [])) for task in plan["tasks"]}


def best_of(rounds: int, work: Callable[[], Any]) -> float:
    """Median seconds of `work` over `rounds` runs."""
    times = []
    for _ in range(rounds):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure_layouts(rounds: int) -> None:
    for size in SIZES:
        parents = plan_parents(size)
        edges = [(dep, task) for task, deps in parents.items() for dep in deps]

        def floor() -> None:
            children: dict[str, list[str]] = {task: [] for task in parents}
            for dep, task in edges:
                children[dep].append(task)

        base = best_of(rounds, floor)
        ours = best_of(rounds, lambda: layered(parents))
        print(f"{size:>6} tasks, {len(edges)} edges: floor (one pass over the edges) {base * 1e3:.2f} ms")
        print(f"        dag_layout.layered       {ours * 1e3:8.2f} ms  ({ours / base:.0f}× floor)")
        try:
            import networkx as nx
        except ImportError:
            print("        networkx not installed")
        else:
            graph = nx.DiGraph(edges)
            graph.add_nodes_from(parents)
            generations = best_of(rounds, lambda: list(nx.topological_generations(graph)))
            build = best_of(rounds, lambda: nx.DiGraph(edges))
            print(f"        networkx topological_generations {generations * 1e3:8.2f} ms (+ {build * 1e3:.2f} ms "
                  f"to build the DiGraph)  ({(generations + build) / base:.0f}× floor)")
        if size <= GRANDALF_LIMIT:
            measure_grandalf(parents, edges, base)
    for size in NETEXT_SIZES:
        parents = plan_parents(size)
        if not measure_netext(parents, [(dep, task) for task, deps in parents.items() for dep in deps], size):
            break


def measure_grandalf(parents: dict[str, list[str]], edges: list[tuple[str, str]], base: float) -> None:
    try:
        from grandalf.graphs import Edge, Graph, Vertex
        from grandalf.layouts import SugiyamaLayout
    except ImportError:
        print("        grandalf not installed")
        return

    class Box:
        w, h = 24, 2

    def run() -> None:
        vertices = {task: Vertex(task) for task in parents}
        for vertex in vertices.values():
            vertex.view = Box()
        graph = Graph(list(vertices.values()), [Edge(vertices[a], vertices[b]) for a, b in edges])
        for component in graph.C:
            layout = SugiyamaLayout(component)
            layout.init_all()
            layout.draw()

    took = best_of(1, run)
    print(f"        grandalf SugiyamaLayout  {took * 1e3:8.0f} ms  ({took / base:.0f}× floor)")


def measure_netext(parents: dict[str, list[str]], edges: list[tuple[str, str]], size: int) -> bool:
    try:
        from netext import ConsoleGraph
        from rich.console import Console
    except ImportError:
        print("        netext not installed")
        return False
    console = Console(width=200, file=open("/dev/null", "w"))

    def run() -> None:
        console.print(ConsoleGraph({task: {} for task in parents}, edges, console=console))

    took = best_of(1, run)
    print(f"{size:>6} tasks: netext ConsoleGraph (layout and drawing) {took * 1e3:8.0f} ms")
    return True


async def measure_repaints(rounds: int) -> dict[str, list[float]]:
    from datetime import timedelta

    from bench_dashboard import REPAINT, START, _time_repaints, push

    from app.dashboard import SprintDeckApp
    from app.source import RecordedSource
    from engine.events import EventType
    from widgets.tasks import TasksPane

    NEXT.update({"pending": (EventType.TASK_READY, {}),
                 "retrying": (EventType.TASK_READY, {}),
                 "ready": (EventType.TASK_ASSIGNED, {"agents": ["agent00"]}),
                 "assigned": (EventType.TASK_STARTED, {}),
                 "running": (EventType.TASK_FAILED, {"error": "exit status 1", "willRetry": True, "exitCode": 1})})
    _time_repaints()
    parents = plan_parents(SIZES[-1])
    source = RecordedSource([], transport="synthetic")
    push(source, EventType.SPRINT_STARTED, START, sprint="bench", planDigest="", seed=0,
         agents=[{"id": "agent00", "maxConcurrentTasks": 2}],
         tasks=[{"id": task, "dependencies": deps, "estimate": 1.0} for task, deps in parents.items()])
    app = SprintDeckApp(source, clock=lambda: START, config_file=Path("/tmp/sprintdeck-bench-config.json"))
    times: dict[str, list[float]] = {"table": [], "graph": []}
    async with app.run_test(size=(200, 60)) as pilot:
        pane = app.query_one(TasksPane)
        await pilot.press("1", "z")
        await pilot.pause(0.2)
        block = 10
        for start in range(0, rounds, block):
            for mode in ("table", "graph"):
                if pane.graph_mode != (mode == "graph"):
                    await pilot.press("v")
                    await pilot.pause(0.2)
                for step in range(block):
                    task = next(t for t in on_screen(pane) if source.state.tasks[t].status in NEXT)
                    state = source.state.tasks[task]
                    kind, data = NEXT[state.status]
                    attempt = state.attempt + (kind == EventType.TASK_ASSIGNED)
                    push(source, kind, START + timedelta(seconds=start + step), taskId=task, attempt=attempt, **data)
                    REPAINT.clear()
                    began = time.perf_counter()
                    app._drain_events()
                    drained = time.perf_counter() - began
                    await asyncio.sleep(0.1)  # the screen repaints what changed, on its own timer
                    times[mode].append(drained + sum(REPAINT))
    return times


def on_screen(pane: Any) -> list[str]:
    """The tasks the pane shows now, in its current mode."""
    region = pane.scrollable_content_region
    if not pane.graph_mode:
        first = pane.scroll_offset.y
        return pane.keys()[first:first + region.height - 1]
    grid = pane.graph.grid
    x0, y0 = pane.scroll_offset
    found = []
    for y in range(y0, y0 + region.height):
        for x in range(x0, x0 + region.width, grid.pitch_x // 2):
            task = grid.node_at(x, y)
            if task is not None and task not in found:
                found.append(task)
    return found


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="status changes per view (default 60)")
    parser.add_argument("--layout-only", action="store_true", help="only the layouts (no App)")
    args = parser.parse_args()
    print("Layout (median of 5 runs; grandalf and netext: one run)")
    measure_layouts(5)
    if args.layout_only:
        return
    times = asyncio.run(measure_repaints(args.rounds))
    print(f"Repaint after one status change, 10,000 tasks, 200×60, {args.rounds} rounds each (drain + screen update)")
    for mode, values in times.items():
        print(f"  {mode:<5} p50 {pct(values, 0.5):6.2f} ms  p95 {pct(values, 0.95):6.2f} ms")
    ratio = pct(times["graph"], 0.95) / pct(times["table"], 0.95)
    print(f"  graph p95 / table p95 = {ratio:.2f} (target <= 2)")


if __name__ == "__main__":
    main()
