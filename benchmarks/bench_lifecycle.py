"""Agent processes' lifecycle: how soon a dead agent's work moves on, and whether load fakes deaths.

Run by hand:  .venv/bin/python benchmarks/bench_lifecycle.py [--kills 10] [--stops 5] [--runs 100]

Real processes throughout: `sprintdeck serve` on a Unix socket and `sprintdeck agent` processes.

1. kill -9: two external agents can do one task whose first attempt sleeps; the agent running it is
   killed, and the time is measured from the kill to the second attempt's command running on the
   other agent (it creates a file; polled every millisecond).  Next to it, in the same run: the
   configured `disconnect_grace` (the floor: the manager waits that long for the agent to come
   back) and `heartbeat_timeout` (what the move would cost without the closed-socket signal).
2. SIGSTOP: the same sprint, the runner stopped instead; measured from the stop to `agent_dead` in
   the journal (polled), next to `heartbeat_timeout` (the floor) and the heartbeat interval.
3. False deaths: `--runs` sprints under `serve --spawn` (two agents, six 0.2 s commands each run)
   while two spinning processes keep both cores busy; every `agent_dead` is a false death, since
   no agent is harmed.  Target: 0.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.journal import read_journal  # noqa: E402

SPRINTDECK = [sys.executable, "-m", "app.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
SETTINGS = {"heartbeat_interval": "250ms", "heartbeat_timeout": "2s", "disconnect_grace": "500ms",
            "lock_delay": "1s", "lock_ttl": "30s", "max_retries": 0}
GUARD = 60.0


def wait_for(condition: Callable[[], bool], what: str, poll: float = 0.001) -> None:
    deadline = time.monotonic() + GUARD
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {what} after {GUARD:g} s")
        time.sleep(poll)


def records(journal: Path, kind: str) -> list[dict]:
    try:
        _, found, _ = read_journal(journal)
    except Exception:  # a record being written: read again next time
        return []
    return [r["data"] for r in found if r["type"] == kind]


def write_plan(directory: Path, tasks: list[dict]) -> Path:
    plan = {"sprint": "lifecycle", "settings": SETTINGS,
            "agents": [{"id": a, "kind": "external", "capabilities": ["work"]} for a in ("a", "b")],
            "tasks": tasks}
    path = directory / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return path


class Sprint:
    """serve + two agents (or serve --spawn) in a fresh directory; everything ends with it."""

    def __init__(self, tasks: list[dict], *, spawn: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sd-bench-", dir="/tmp"))
        self.journal, self.workspace = self.dir / "run.jsonl", self.dir / "ws"
        plan = write_plan(self.dir, tasks)
        listen = f"unix:{self.dir}/s.sock"
        args = ["serve", str(plan), "--listen", listen, "--headless", "--record", str(self.journal),
                "--workspace", str(self.workspace)] + (["--spawn"] if spawn else [])
        self.log = (self.dir / "serve.err").open("wb")
        self.server = subprocess.Popen([*SPRINTDECK, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=self.log)
        self.agents: dict[str, subprocess.Popen[bytes]] = {}
        if not spawn:
            wait_for(lambda: (self.dir / "run.tokens" / "b.token").exists(), "token files", poll=0.01)
            for agent_id in ("a", "b"):
                token = self.dir / "run.tokens" / f"{agent_id}.token"
                self.agents[agent_id] = subprocess.Popen(
                    [*SPRINTDECK, "agent", "--connect", listen, "--id", agent_id, "--token-file", str(token)],
                    env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def runner(self, attempt: int) -> str:
        assigned = [r for r in records(self.journal, "task_assigned") if r["attempt"] == attempt]
        return assigned[0]["agents"][0] if assigned else ""

    def finish(self) -> int:
        code = self.server.wait(timeout=GUARD)
        for process in self.agents.values():
            process.wait(timeout=GUARD)
        return code

    def close(self) -> None:
        for process in [self.server, *self.agents.values()]:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


MOVING_TASK = [{"id": "job", "requires": ["work"], "resources": ["data.txt"],
                "command": "if [ -e first ]; then touch second; else touch first; sleep 60; fi"}]


def kill_to_elsewhere() -> float:
    sprint = Sprint(MOVING_TASK)
    try:
        wait_for(lambda: (sprint.workspace / "first").exists() and sprint.runner(1) != "", "a first attempt")
        victim = sprint.agents[sprint.runner(1)]
        killed = time.perf_counter()
        victim.send_signal(signal.SIGKILL)
        wait_for(lambda: (sprint.workspace / "second").exists(), "the second attempt running")
        moved = time.perf_counter() - killed
        sprint.finish()
        return moved
    finally:
        sprint.close()


def stop_to_death() -> float:
    sprint = Sprint(MOVING_TASK)
    try:
        wait_for(lambda: (sprint.workspace / "first").exists() and sprint.runner(1) != "", "a first attempt")
        victim = sprint.agents[sprint.runner(1)]
        stopped = time.perf_counter()
        victim.send_signal(signal.SIGSTOP)
        wait_for(lambda: bool(records(sprint.journal, "agent_dead")), "agent_dead")
        dead = time.perf_counter() - stopped
        victim.send_signal(signal.SIGCONT)
        sprint.finish()
        return dead
    finally:
        sprint.close()


@contextmanager
def cores_loaded(count: int) -> Iterator[None]:
    """`count` processes spinning at the same priority as the sprint."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def false_deaths(runs: int) -> tuple[int, int, list[float]]:
    """(agent_dead records, runs that did not exit 0, seconds per run) over `runs` sprints."""
    tasks = [{"id": f"t{i}", "requires": ["work"], "resources": [f"out/t{i}.txt"],
              "command": f"sleep 0.2; echo {i} > out/t{i}.txt"} for i in range(6)]
    deaths, failed, times = 0, 0, []
    for _ in range(runs):
        started = time.perf_counter()
        sprint = Sprint(tasks, spawn=True)
        try:
            (sprint.workspace / "out").mkdir(parents=True, exist_ok=True)
            code = sprint.finish()
            deaths += len(records(sprint.journal, "agent_dead"))
            failed += code != 0
        finally:
            sprint.close()
        times.append(time.perf_counter() - started)
    return deaths, failed, times


def seconds(value: str) -> float:
    return float(value.removesuffix("ms")) / 1000 if value.endswith("ms") else float(value.removesuffix("s"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--stops", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    grace, timeout = seconds(SETTINGS["disconnect_grace"]), seconds(SETTINGS["heartbeat_timeout"])
    interval = seconds(SETTINGS["heartbeat_interval"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"settings: disconnect_grace {grace:g}s, heartbeat_interval {interval:g}s, heartbeat_timeout {timeout:g}s")

    if args.kills:
        moved = [kill_to_elsewhere() for _ in range(args.kills)]
        p50 = statistics.median(moved)
        print(f"kill -9 -> task running elsewhere, {len(moved)} runs: p50 {p50 * 1000:.0f} ms, "
              f"max {max(moved) * 1000:.0f} ms; {p50 / grace:.2f}x disconnect_grace, {p50 / timeout:.2f}x heartbeat_timeout")
    if args.stops:
        deaths = [stop_to_death() for _ in range(args.stops)]
        p50 = statistics.median(deaths)
        print(f"SIGSTOP -> agent_dead, {len(deaths)} runs: p50 {p50 * 1000:.0f} ms, max {max(deaths) * 1000:.0f} ms; "
              f"{p50 / timeout:.2f}x heartbeat_timeout (checked every {interval / 2:g}s)")
    if args.runs:
        with cores_loaded(os.cpu_count() or 2):
            dead, failed, times = false_deaths(args.runs)
        print(f"false deaths with {os.cpu_count()} cores loaded: {dead} in {args.runs} runs "
              f"({failed} runs did not exit 0; {statistics.median(times):.2f} s per run)")


if __name__ == "__main__":
    main()
