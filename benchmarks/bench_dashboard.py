"""Whole-dashboard benchmark: 1,000,000 messages, 10,000 tasks, 50 agents, 1,000 new messages/s.

The App runs headless at 200×60 over a source whose state is folded by the real reducer.  Each
batch (the App drains at 15 Hz) carries ~67 message events and a task event; a batch's update time
is the App's drain (widgets updated) plus the time the screen then spends repainting (Textual's
screen update, timed), p50/p95; and the peak RSS of the process.  In a
separate process, Textual's RichLog writing 100,000 lines is timed as the peer.  Then, the time
from pressing `j` in the 10,000-row Tasks pane until the App has processed it and repainted.

    .venv/bin/python benchmarks/bench_dashboard.py [--messages 1000000] [--tasks 10000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textual.screen import Screen  # noqa: E402

from app.dashboard import BATCH_HZ, SprintDeckApp  # noqa: E402
from app.source import RecordedSource  # noqa: E402
from engine.events import Event, EventType  # noqa: E402

START = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
REPAINT: list[float] = []  # seconds the screen spent repainting since the last batch


def _time_repaints() -> None:
    """Time Textual's screen update (layout, compositor, output) so a batch's cost includes the paint."""
    original = Screen._on_timer_update

    def timed(self: Screen) -> None:
        began = time.perf_counter()
        original(self)
        REPAINT.append(time.perf_counter() - began)

    Screen._on_timer_update = timed


def push(source: RecordedSource, kind: EventType, ts: datetime, **data) -> None:
    source.push(Event.decode(source.state.version + 1, ts.isoformat().replace("+00:00", "Z"), kind.value, data))


def message(i: int, agents: int, ts: datetime) -> dict:
    sender = f"agent{i % agents:02d}"
    return {"id": f"m{i}", "type": "task_update", "from": sender, "to": "sprint_manager",
            "timestamp": ts.isoformat().replace("+00:00", "Z"),
            "payload": {"taskId": f"t{i % 10_000}", "attempt": 1, "progress": 0.5}, "priority": "medium"}


def start_sprint(source: RecordedSource, tasks: int, agents: int) -> None:
    push(
        source, EventType.SPRINT_STARTED, START, sprint="bench", planDigest="", seed=0,
        agents=[{"id": f"agent{a:02d}", "maxConcurrentTasks": 2} for a in range(agents)],
        tasks=[{"id": f"t{t}", "dependencies": [f"t{t - 1}"] if t % 50 else [], "estimate": 1.0}
               for t in range(tasks)],
    )


def prefill(app: SprintDeckApp, count: int, agents: int) -> None:
    """Put `count` messages straight into the store (recording them as events would take minutes)."""
    for i in range(count):
        app.store.append(i + 1, message(i, agents, START))


async def measure_updates(args: argparse.Namespace) -> dict:
    _time_repaints()
    source = RecordedSource([], transport="synthetic")
    start_sprint(source, args.tasks, args.agents)
    app = SprintDeckApp(source, clock=lambda: START, config_file=Path("/tmp/sprintdeck-bench-config.json"))
    timings: list[float] = []
    async with app.run_test(size=(200, 60)) as pilot:
        prefill(app, args.messages, args.agents)
        await pilot.pause(0.2)
        per_batch = args.rate // BATCH_HZ
        sent = args.messages
        for batch in range(int(args.seconds * BATCH_HZ)):
            now = START + timedelta(seconds=batch / BATCH_HZ)
            for _ in range(per_batch):
                push(source, EventType.MESSAGE, now, message=message(sent, args.agents, now))
                sent += 1
            task = f"t{batch % args.tasks}"
            if source.state.tasks[task].status == "pending":
                push(source, EventType.TASK_READY, now, taskId=task)
            REPAINT.clear()
            began = time.perf_counter()
            app._drain_events()  # what the 15 Hz timer does
            drained = time.perf_counter() - began
            await asyncio.sleep(1 / BATCH_HZ)  # the screen repaints what changed, on its own timer
            timings.append(drained + sum(REPAINT))
        # Key press to repaint in the 10,000-row Tasks pane.
        await pilot.press("1")  # the Tasks pane (1-6 follow reading order)
        keys = await time_keys(pilot)
        assert app.tasks.row_count == args.tasks and app.tasks.cursor_row == 50
    return {"batches": timings, "keys": keys, "floor": await pilot_floor(),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "messages": len(app.store)}


async def time_keys(pilot, presses: int = 50) -> list[float]:
    """Seconds from pressing `j` until the App has handled it and is idle again (repainted)."""
    keys = []
    for _ in range(presses):
        began = time.perf_counter()
        await pilot.press("j")
        keys.append(time.perf_counter() - began)
    return keys


async def pilot_floor() -> list[float]:
    """The same measurement on an App with one empty focusable widget: Pilot's own waiting."""
    from textual.app import App, ComposeResult
    from textual.widget import Widget

    class Bare(App):
        def compose(self) -> ComposeResult:
            yield Widget()

    async with Bare().run_test(size=(200, 60)) as pilot:
        return await time_keys(pilot)


async def richlog_peer(lines: int) -> dict:
    from textual.app import App, ComposeResult
    from textual.widgets import RichLog

    class Peer(App):
        def compose(self) -> ComposeResult:
            yield RichLog(max_lines=None)

    app = Peer()
    async with app.run_test(size=(200, 60)) as pilot:
        log = app.query_one(RichLog)
        began = time.perf_counter()
        for i in range(lines):
            log.write(f"12:00:00.000 medium task_update agent{i % 50:02d} → sprint_manager t{i} #1 50%")
        await pilot.pause()
        elapsed = time.perf_counter() - began
    return {"seconds": elapsed, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--peer-lines", type=int, default=100_000)
    parser.add_argument("--peer-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_only:
        print(json.dumps(asyncio.run(richlog_peer(args.peer_lines))))
        return
    result = asyncio.run(measure_updates(args))
    peer = json.loads(subprocess.run([sys.executable, __file__, "--peer-only", "--peer-lines", str(args.peer_lines)],
                                     capture_output=True, text=True, check=True).stdout)
    batches = result["batches"]
    print(f"dashboard: {result['messages']:,} messages, {args.tasks:,} tasks, {args.agents} agents, "
          f"{args.rate} msg/s in {len(batches)} batches at {BATCH_HZ} Hz")
    print(f"  batch update p50 {pct(batches, 0.5):.1f} ms, p95 {pct(batches, 0.95):.1f} ms (target p95 <= 50 ms)")
    print(f"  peak RSS {result['rss_mb']:.0f} MB (target <= 600 MB)")
    print(f"  key j -> handled and repainted, {args.tasks:,}-row Tasks pane: p50 {pct(result['keys'], 0.5):.1f} ms, "
          f"p95 {pct(result['keys'], 0.95):.1f} ms; floor (same Pilot wait on an empty app): "
          f"p50 {pct(result['floor'], 0.5):.1f} ms, p95 {pct(result['floor'], 0.95):.1f} ms")
    print(f"peer: RichLog writing {args.peer_lines:,} lines: {peer['seconds']:.2f} s "
          f"({peer['seconds'] / args.peer_lines * 1e6:.0f} us/line), peak RSS {peer['rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
