"""Scheduler benchmark: engine overhead per task on a 10,000-task random DAG with 50 agents.

Zero-length tasks, which do no work and write no file, so the wall time is all engine: placement,
events, the reducer, the in-process bus and the simulated agents' protocol traffic.  The headline
is what a user's `run --headless --json` costs as a whole process (start-up, plan load, durable
journal); then the engine alone with the durable journal, and without a journal.  Where dask
is installed (`pip install -e '.[bench]'`), its threaded scheduler runs the same graph of no-op
tasks in the same process, as a peer.

The same DAG also runs with file work: 30% of tasks lock a file and their agent appends a line to
it, so the figures show the locks' and the file guard's share (watcher, settles, kept content) and
the tasks' own appends apart from scheduling and messages.

    .venv/bin/python benchmarks/bench_scheduler.py [--tasks 10000] [--agents 50] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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


LOCKED_SHARE = 0.3  # of tasks that lock a file in the file-work runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=4, help="repeats of every run, interleaved (each kind leads once)")
    args = parser.parse_args()
    n = args.tasks
    zero_raw = random_dag(n, args.agents, args.seed, 0.0)
    files_raw = random_dag(n, args.agents, args.seed, LOCKED_SHARE)
    times: dict[str, list[float]] = {}
    appends: list[float] = []
    journals: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        plans = {}
        for name, raw in (("zero", zero_raw), ("files", files_raw)):
            (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
            plans[name] = load_plan(tmp_path / f"{name}.yaml")
        warm_up(tmp_path, args.agents, args.seed)

        def engine_run(plan_name: str, journaled: bool):  # type: ignore[no-untyped-def]
            key = f"{plan_name}{'+journal' if journaled else ''}"

            def run(ws: Path) -> None:
                journal = JournalWriter.create(ws / "j.jsonl", {"sprint": "bench"}) if journaled else None
                AgentWork.seconds = 0.0
                times.setdefault(key, []).append(asyncio.run(run_engine(plans[plan_name], ws, journal)))
                if plan_name == "files" and not journaled:
                    appends.append(AgentWork.seconds)
                if journal is not None:
                    journal.close()
                    journals[key] = (journal.last_seq, (ws / "j.jsonl").stat().st_size)

            run.__name__ = key.replace("+", "_")
            return run

        def whole_process(ws: Path) -> None:
            """What a user's `run` costs: a new process, start-up, plan load and a durable journal."""
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "app.cli", "run", str(tmp_path / "zero.yaml"), "--headless",
                            "--json", "--record", str(ws / "j.jsonl"), "--workspace", str(ws / "w")],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=os.environ | {"PYTHONPATH": str(ROOT)})
            times.setdefault("process", []).append(time.perf_counter() - started)

        def peer(ws: Path) -> None:
            dask_time = run_dask(zero_raw)
            if dask_time is not None:
                times.setdefault("dask", []).append(dask_time)

        # Rounds interleave the runs, so a slow minute of the VM slows every kind of run alike, and
        # each round starts with a different one, so no kind always runs after the same others.
        runs = [whole_process, engine_run("zero", False), engine_run("zero", True), peer,
                engine_run("files", False), engine_run("files", True)]
        for round_ in range(args.rounds):
            lead = round_ * len(runs) // args.rounds
            for run in runs[lead:] + runs[:lead]:
                ws = tmp_path / f"round{round_}" / run.__name__
                ws.mkdir(parents=True)
                run(ws)

    def journal_note(key: str) -> str:
        events, size = journals[key]
        return f"  {events / n:.1f} events/task, {size / events:.0f} B/event"

    print(f"tasks={n} agents={args.agents}, median of {args.rounds} interleaved rounds (min-max)")
    print("zero-length tasks:")
    print(f"  `sprintdeck run --headless --json`, whole process (what a user's run costs): "
          f"{spread(times['process'], n)}")
    print(f"  engine, durable journal: {spread(times['zero+journal'], n)}{journal_note('zero+journal')}")
    print(f"  engine, no journal:      {spread(times['zero'], n)}")
    if times.get("dask"):
        dask = median(times["dask"])
        print(f"  dask threaded, no-ops:   {spread(times['dask'], n)}")
        print(f"  engine/dask (medians):   {median(times['zero']) / dask:.2f}x, "
              f"journaled {median(times['zero+journal']) / dask:.2f}x")
    else:
        print("  dask not installed (pip install -e '.[bench]'): no peer figure")
    print(f"with file work ({LOCKED_SHARE:.0%} of tasks lock a file and append a line to it):")
    print(f"  engine, no journal:      {spread(times['files'], n)}")
    print(f"    of which agents' appends {spread(appends, n)}  (the tasks' own work: the lines written)")
    print(f"  engine, durable journal: {spread(times['files+journal'], n)}{journal_note('files+journal')}")


if __name__ == "__main__":
    main()
