"""Scale: whole `sprintdeck` processes, as users run them, from 1,000 to 100,000 tasks (issue 16).

For each size, a random DAG of zero-length tasks (up to 2 dependencies each, 50 agents; the same
generator as `bench_scheduler.py`) is written as a YAML plan, and these run as separate processes,
each timed from spawn to exit with its peak RSS read from `wait4`, all spawned by a small helper
process started first (Linux carries a parent's memory high-water mark into a forked child's
`ru_maxrss`, and this benchmark's own process grows to hundreds of MB running the floors):
- `run PLAN --headless --json --record J --workspace W` (journaled, as every user's run is);
- `validate PLAN` and `export PLAN --format json`;
- the same `run` of an empty plan (one agent, no task): the process's fixed cost, which the
  per-task memory figure is measured above.
Floors, in the same run: the same DAG as plain asyncio coroutines each awaiting its dependencies'
events (in this process), and dask's threaded scheduler on the same graph of no-ops (when dask is
installed: `pip install -e '.[bench]'`).

Targets: µs/task at 100k within 1.15x of the 10k figure; peak RSS at 100k <= 500 MB and <= 4 KB/task
above the empty plan; the 10k-task run <= 2.5 s of wall.  Figures are printed, never asserted.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 1000,10000,50000,100000] [--rounds 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scheduler import random_dag, run_dask  # noqa: E402  (benchmarks/, this script's folder)

AGENTS = 50


@dataclass
class Process:
    wall: float  # seconds
    rss: int  # peak resident set, bytes
    code: int


SPAWNER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    argv, cwd, env = json.loads(line)
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    print(json.dumps([time.perf_counter() - started, usage.ru_maxrss * 1024, os.waitstatus_to_exitcode(status)]), flush=True)
"""
_spawner: subprocess.Popen[str] | None = None


def whole_process(*args: str) -> Process:
    """Run `sprintdeck ARGS` to its end; its wall time and its own peak RSS, read from the kernel."""
    global _spawner
    if _spawner is None:  # started while this process is still small
        _spawner = subprocess.Popen([sys.executable, "-c", SPAWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    text=True)
    assert _spawner.stdin is not None and _spawner.stdout is not None
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    _spawner.stdin.write(json.dumps([[sys.executable, "-m", "app.cli", *args], str(ROOT), env]) + "\n")
    _spawner.stdin.flush()
    wall, rss, code = json.loads(_spawner.stdout.readline())
    return Process(wall, rss, code)


def asyncio_floor(raw: dict) -> float:
    """The DAG as coroutines awaiting their dependencies: what scheduling zero-length work costs
    with no placement, no locks, no messages and no journal."""
    async def sprint() -> None:
        done = {task["id"]: asyncio.Event() for task in raw["tasks"]}

        async def task(spec: dict) -> None:
            for dep in spec.get("depends_on", []):
                await done[dep].wait()
            done[spec["id"]].set()
        await asyncio.gather(*(task(spec) for spec in raw["tasks"]))

    started = time.perf_counter()
    asyncio.run(sprint())
    return time.perf_counter() - started


def write_plan(directory: Path, tasks: int) -> tuple[Path, dict]:
    raw = random_dag(tasks, AGENTS, seed=1, locked_share=0.0) if tasks else {
        "sprint": "empty", "agents": [{"id": "a"}], "tasks": []}
    path = directory / f"plan-{tasks}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, raw


def run_once(directory: Path, plan: Path, label: str) -> Process:
    journal, workspace = directory / f"{label}.jsonl", directory / f"{label}-ws"
    journal.unlink(missing_ok=True)
    result = whole_process("run", str(plan), "--headless", "--json", "--record", str(journal),
                           "--workspace", str(workspace))
    if result.code != 0:
        raise SystemExit(f"run {plan} exited {result.code}")
    return result


def main(args: argparse.Namespace) -> None:
    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{AGENTS} agents, zero-length tasks, medians of {args.rounds} round(s)\n")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        directory = Path(tmp)
        empty, _ = write_plan(directory, 0)
        base = [run_once(directory, empty, "empty") for _ in range(args.rounds)]
        empty_rss = statistics.median(p.rss for p in base)
        empty_wall = statistics.median(p.wall for p in base)
        print(f"empty plan: run {empty_wall:.2f} s, peak RSS {empty_rss / 2**20:.0f} MB\n")
        header = (f"{'tasks':>8} {'run s':>7} {'µs/task':>8} {'RSS MB':>7} {'KB/task':>8} "
                  f"{'validate s':>10} {'val MB':>7} {'export s':>9} {'asyncio s':>9} {'dask s':>7}")
        print(header)
        figures: dict[int, tuple[float, int]] = {}
        for size in sizes:
            plan, raw = write_plan(directory, size)
            runs = [run_once(directory, plan, f"run-{size}") for _ in range(args.rounds)]
            wall = statistics.median(p.wall for p in runs)
            rss = int(statistics.median(p.rss for p in runs))
            validate = whole_process("validate", str(plan))
            export = whole_process("export", str(plan), "--format", "json")
            floor = asyncio_floor(raw)
            dask = run_dask(raw)
            per_task = (wall - empty_wall) / size * 1e6
            per_task_kb = (rss - empty_rss) / size / 1024
            figures[size] = (per_task, rss)
            dask_text = f"{dask:7.2f}" if dask is not None else f"{'-':>7}"
            print(f"{size:>8,} {wall:7.2f} {per_task:8.0f} {rss / 2**20:7.0f} {per_task_kb:8.2f} "
                  f"{validate.wall:10.2f} {validate.rss / 2**20:7.0f} {export.wall:9.2f} {floor:9.2f} {dask_text}",
                  flush=True)
        print()
        if 10_000 in figures and 100_000 in figures:
            ratio = figures[100_000][0] / figures[10_000][0]
            print(f"µs/task at 100k / at 10k = {ratio:.2f} (target <= 1.15)")
            print(f"peak RSS at 100k = {figures[100_000][1] / 2**20:.0f} MB (target <= 500 MB)")
        print("µs/task is the run's wall above the empty plan's, per task; KB/task likewise for peak RSS.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,50000,100000")
    parser.add_argument("--rounds", type=int, default=1)
    main(parser.parse_args())
