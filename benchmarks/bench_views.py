"""The task and agent views (Enter) in a large sprint: 10,000 tasks, 50 agents, 1,000,000 messages.

Times, in the real App headless at 200×60, from pressing `enter` until the view is painted and the
App idle, and the view's once-a-second redraw on its own (computing its sections and updating its
widgets).  The floor, measured in the same run: Enter on a message (its JSON modal, which decodes
one message), and Pilot's own key-to-idle time on an empty App.

    .venv/bin/python benchmarks/bench_views.py [--messages 1000000] [--tasks 10000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.dashboard import SprintDeckApp  # noqa: E402
from app.screens.record_view import RecordView  # noqa: E402
from app.source import RecordedSource  # noqa: E402
from bench_dashboard import START, message, pilot_floor, push, start_sprint, time_keys  # noqa: E402
from engine.events import EventType  # noqa: E402


def assign_some(source: RecordedSource, tasks: int, agents: int) -> None:
    """Every 5th task assigned, started and failed once, then assigned again: attempts to list."""
    for t in range(0, tasks, 5):
        now = START + timedelta(milliseconds=t)
        agent = f"agent{t % agents:02d}"
        push(source, EventType.TASK_READY, now, taskId=f"t{t}")
        push(source, EventType.TASK_ASSIGNED, now, taskId=f"t{t}", attempt=1, agents=[agent])
        push(source, EventType.TASK_STARTED, now, taskId=f"t{t}", attempt=1)
        push(source, EventType.TASK_FAILED, now, taskId=f"t{t}", attempt=1, error="exit status 1", willRetry=True,
             exitCode=1)
        push(source, EventType.TASK_READY, now, taskId=f"t{t}")
        push(source, EventType.TASK_ASSIGNED, now, taskId=f"t{t}", attempt=2, agents=[agent])


async def open_close(pilot, pane_key: str, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds from `enter` to idle with the view up, and of its redraw alone; `escape` between."""
    opens, redraws = [], []
    await pilot.press(pane_key)
    for _ in range(rounds):
        began = time.perf_counter()
        await pilot.press("enter")
        opens.append(time.perf_counter() - began)
        screen = pilot.app.screen
        if isinstance(screen, RecordView):
            began = time.perf_counter()
            screen.redraw()
            redraws.append(time.perf_counter() - began)
        await pilot.press("escape")
    return opens, redraws


async def measure(args: argparse.Namespace) -> dict[str, list[float]]:
    source = RecordedSource([], transport="synthetic")
    start_sprint(source, args.tasks, args.agents)
    assign_some(source, args.tasks, args.agents)
    app = SprintDeckApp(source, clock=lambda: START, config_file=Path("/tmp/sprintdeck-bench-config.json"))
    async with app.run_test(size=(200, 60)) as pilot:
        for i in range(args.messages):
            app.store.append(source.state.version, message(i, args.agents, START))
        app.messages.messages_appended()
        await pilot.pause(0.2)
        task_open, task_redraw = await open_close(pilot, "1", args.rounds)
        agent_open, agent_redraw = await open_close(pilot, "2", args.rounds)
        message_open, _ = await open_close(pilot, "3", args.rounds)
    return {"task view: enter to painted": task_open, "task view: redraw": task_redraw,
            "agent view: enter to painted": agent_open, "agent view: redraw": agent_redraw,
            "floor — message JSON: enter to painted": message_open, "floor — Pilot key to idle": await pilot_floor()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    results = asyncio.run(measure(args))
    floor = statistics.median(results["floor — message JSON: enter to painted"])
    print(f"{args.tasks} tasks, {args.agents} agents, {args.messages} messages; medians (p95), ms; ratio to the floor")
    for name, values in results.items():
        ordered = sorted(values)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        median = statistics.median(values)
        print(f"  {name:42s} {median * 1000:8.1f} ({p95 * 1000:.1f})  ×{median / floor:.2f}")


if __name__ == "__main__":
    main()
