"""Scheduler benchmark: engine overhead per task on a 10,000-task random DAG with 50 agents.

Tasks have zero length, so the wall time is all engine: placement, lock grants, events, the
reducer, the in-process bus and the simulated agents' protocol traffic.  Where dask is installed
(`pip install -e '.[bench]'`), its threaded scheduler runs the same graph of no-op tasks in the
same process, as a peer.  A third engine run uses the same DAG with no task locking a file, to
show the file guard's share (watcher, settles, kept content) apart from scheduling and messages.

    .venv/bin/python benchmarks/bench_scheduler.py [--tasks 10000] [--agents 50] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.agents.simulated import SimulatedAgent  # noqa: E402
from engine.journal import JournalWriter  # noqa: E402
from engine.manager import SprintManager  # noqa: E402
from engine.plan import load_plan  # noqa: E402


def random_dag(tasks: int, agents: int, seed: int, locked_share: float = 0.3) -> dict:
    rng = random.Random(seed)
    caps = [f"c{i}" for i in range(8)]
    agent_list = [
        {"id": f"agent{i}", "capabilities": sorted({caps[i % 8], rng.choice(caps)}), "max_concurrent_tasks": 2}
        for i in range(agents)
    ]
    task_list = []
    for t in range(tasks):
        task: dict = {"id": f"t{t}", "estimate": 0, "requires": [caps[t % 8]]}
        if t:
            deps = {f"t{rng.randrange(max(0, t - 200), t)}" for _ in range(rng.randint(0, 2))}
            if deps:
                task["depends_on"] = sorted(deps)
        if rng.random() < locked_share:
            task["resources"] = [f"src/m{rng.randrange(400)}.py"]
        task_list.append(task)
    return {"sprint": "bench", "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "60s"},
            "agents": agent_list, "tasks": task_list}


class AgentWork:
    """Wall time the simulated agents spent appending to the files they lock.

    That is the tasks' own work (on this VM's disk an append can take a few hundred µs), not the
    engine's, so the figures say how much of the wall time it was.
    """

    seconds = 0.0

    @classmethod
    def timing(cls, write_files):  # type: ignore[no-untyped-def]
        def timed(agent, assign):  # type: ignore[no-untyped-def]
            started = time.perf_counter()
            try:
                return write_files(agent, assign)
            finally:
                cls.seconds += time.perf_counter() - started

        return timed


SimulatedAgent._write_files = AgentWork.timing(SimulatedAgent._write_files)  # type: ignore[method-assign]


async def run_engine(plan, workspace: Path, journal: JournalWriter | None) -> float:
    manager = SprintManager(plan, workspace=workspace, journal=journal, speed=1.0)
    started = time.perf_counter()
    result = await manager.execute_sprint()
    elapsed = time.perf_counter() - started
    assert result.succeeded, "benchmark sprint did not complete"
    return elapsed


def warm_up(tmp_path: Path, agents: int, seed: int) -> None:
    """A 300-task sprint first, so lazy imports and first-use caches are not billed to the measured run."""
    (tmp_path / "warm.yaml").write_text(yaml.safe_dump(random_dag(300, agents, seed), sort_keys=False))
    (tmp_path / "warm").mkdir()
    asyncio.run(run_engine(load_plan(tmp_path / "warm.yaml"), tmp_path / "warm", None))


def run_dask(raw: dict) -> float | None:
    try:
        import dask.threaded
    except ImportError:
        return None

    def noop(*_):
        return None

    graph = {t["id"]: (noop, *t.get("depends_on", [])) for t in raw["tasks"]}
    started = time.perf_counter()
    dask.threaded.get(graph, list(graph), num_workers=2)
    return time.perf_counter() - started


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def spread(values: list[float], n: int) -> str:
    """`median (min-max) us/task` of a run's repeats."""
    per_task = sorted(v / n * 1e6 for v in values)
    return f"{median(per_task):7.1f} us/task  ({per_task[0]:.0f}-{per_task[-1]:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4, help="repeats of every run, interleaved (4: each kind leads once)")
    args = parser.parse_args()
    raw = random_dag(args.tasks, args.agents, args.seed)
    times: dict[str, list[float]] = {"bare": [], "appends": [], "journaled": [], "unlocked": [], "dask": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "plan.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        plan = load_plan(tmp_path / "plan.yaml")
        # The same DAG with no task locking a file: scheduling, locks-free dispatch, events and
        # messages without the file guard's share (the watcher, settles, kept content).
        (tmp_path / "free.yaml").write_text(yaml.safe_dump(random_dag(args.tasks, args.agents, args.seed, 0.0), sort_keys=False))
        unlocked_plan = load_plan(tmp_path / "free.yaml")
        warm_up(tmp_path, args.agents, args.seed)
        journal_stats: list[tuple[int, int]] = []

        def bare(ws: Path) -> None:
            AgentWork.seconds = 0.0
            times["bare"].append(asyncio.run(run_engine(plan, ws, None)))
            times["appends"].append(AgentWork.seconds)

        def journaled(ws: Path) -> None:
            journal = JournalWriter.create(ws / "j.jsonl", {"sprint": "bench"})
            times["journaled"].append(asyncio.run(run_engine(plan, ws, journal)))
            journal.close()
            journal_stats.append((journal.last_seq, (ws / "j.jsonl").stat().st_size))

        def unlocked(ws: Path) -> None:
            times["unlocked"].append(asyncio.run(run_engine(unlocked_plan, ws, None)))

        def peer(ws: Path) -> None:
            dask_time = run_dask(raw)
            if dask_time is not None:
                times["dask"].append(dask_time)

        # Rounds interleave the runs, so a slow minute of the VM slows every kind of run alike, and
        # each round starts with a different one, so no kind always runs after the same others.
        runs = [bare, journaled, unlocked, peer]
        for round_ in range(args.rounds):
            for run in runs[round_ % len(runs):] + runs[: round_ % len(runs)]:
                ws = tmp_path / f"round{round_}" / run.__name__
                ws.mkdir(parents=True)
                run(ws)
    events, size = journal_stats[-1]
    n = args.tasks
    print(f"tasks={n} agents={args.agents}, median of {args.rounds} interleaved rounds (min-max)")
    print(f"engine, no journal:      {spread(times['bare'], n)}")
    print(f"  of which agents' appends {spread(times['appends'], n)}  (the tasks' own work: the lines written)")
    print(f"engine, durable journal: {spread(times['journaled'], n)}"
          f"  {events / n:.1f} events/task, {size / events:.0f} B/event")
    print(f"engine, no file locks:   {spread(times['unlocked'], n)}  same DAG, no journal, no task locks a file")
    if not times["dask"]:
        print("dask not installed (pip install -e '.[bench]'): no peer figure")
        return
    dask = median(times["dask"])
    print(f"dask threaded, no-ops:   {spread(times['dask'], n)}")
    print(f"engine/dask (medians): {median(times['bare']) / dask:.2f}x, "
          f"journaled {median(times['journaled']) / dask:.2f}x, "
          f"no file locks {median(times['unlocked']) / dask:.2f}x")


if __name__ == "__main__":
    main()
