"""Start-up of the quick commands as whole processes, next to `python -c pass` in the same run (issue 16).

Each command is spawned from scratch, as a user's shell does: `--help`, `validate` of a six-task
plan, `export --format json` of the same plan, and `replay --headless` of a small recorded journal
(recorded first by a real `run`).  The commands take turns, one spawn each per round, so drift on a
shared machine hits them all alike; medians and ratios to the bare interpreter are printed.

Targets: `--help` <= 1.5x and `validate` <= 3x of `python -c pass`.

    .venv/bin/python benchmarks/bench_startup.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SIX_TASKS = {
    "sprint": "six",
    "agents": [{"id": "backend", "capabilities": ["api"]}, {"id": "frontend", "capabilities": ["ui"]}],
    "tasks": [
        {"id": "schema", "requires": ["api"], "estimate": "10ms", "resources": ["db/schema.sql"]},
        {"id": "api", "requires": ["api"], "depends_on": ["schema"], "estimate": "10ms"},
        {"id": "client", "requires": ["ui"], "depends_on": ["api"], "estimate": "10ms"},
        {"id": "pages", "requires": ["ui"], "depends_on": ["client"], "estimate": "10ms"},
        {"id": "docs", "requires": ["api"], "estimate": "10ms"},
        {"id": "release", "depends_on": ["pages", "docs"], "estimate": "10ms"},
    ],
}


def spawn(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   env=os.environ | {"PYTHONPATH": str(ROOT)})
    return time.perf_counter() - started


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        plan, journal = Path(tmp) / "plan.yaml", Path(tmp) / "run.jsonl"
        plan.write_text(yaml.safe_dump(SIX_TASKS, sort_keys=False))
        cli = [sys.executable, "-m", "app.cli"]
        subprocess.run([*cli, "run", str(plan), "--headless", "--record", str(journal), "--workspace",
                        str(Path(tmp) / "ws")], cwd=ROOT, check=True, capture_output=True)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "sprintdeck --help": [*cli, "--help"],
            "sprintdeck validate (6 tasks)": [*cli, "validate", str(plan)],
            "sprintdeck export --format json": [*cli, "export", str(plan), "--format", "json"],
            "sprintdeck replay --headless": [*cli, "replay", str(journal), "--headless"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, argv in commands.items():
                times[name].append(spawn(argv))
    floor = statistics.median(times["python -c pass"])
    print(f"{args.rounds} spawns each, taking turns; medians\n")
    print(f"{'command':34} {'ms':>7} {'x python':>9}")
    for name, samples in times.items():
        median = statistics.median(samples)
        print(f"{name:34} {median * 1000:7.1f} {median / floor:9.2f}")
    print("\ntargets: --help <= 1.5x, validate <= 3x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    main(parser.parse_args())
