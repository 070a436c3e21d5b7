"""Messages pane at scale: 1,000,000 messages in the store, 1,000 new messages/s in 10-20 Hz batches.

Measures, headless (App.run_test), in one run:
- the pane's update time per batch: store appends + `messages_appended()` + the repaint of the
  pane's lines (`render_lines`, timed by wrapping it), p50/p95; and the whole process's CPU per batch
  interval (Textual's compositor and event loop included);
- peak RSS of the process holding the 1M-message store and the dashboard pane;
- the peer: Textual's RichLog writing 100,000 lines (time per 1,000-line batch, total, peak RSS).
Each scenario runs in its own child process, so each peak RSS is its own.

Figures are printed, never asserted.  Usage:
    .venv/bin/python benchmarks/bench_messages.py [--messages 1000000] [--seconds 6] [--richlog-lines 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AGENTS = [f"agent_{n:02d}" for n in range(50)]
BASE_MICROS = 1_795_000_000_000_000
SIZE = (200, 60)


def make_message(i: int) -> dict[str, Any]:
    """A realistic mix of wire messages (as the manager journals them)."""
    from engine.message_store import iso_from_micros

    agent = AGENTS[i % len(AGENTS)]
    task = f"task_{i % 10_000:05d}"
    kind, payload = [
        ("task_update", {"taskId": task, "attempt": 1, "progress": 0.5, "message": "running tests"}),
        ("heartbeat", {"tasks": [task], "load": 1}),
        ("resource_lock", {"resourceId": f"src/module_{i % 300}.py", "lockType": "write", "ttl": 30000}),
        ("task_assign", {"taskId": task, "attempt": 1, "title": "Implement the endpoint"}),
        ("task_complete", {"taskId": task, "attempt": 1, "result": "ok"}),
    ][i % 5]
    sender, recipient = ("sprint_manager", agent) if kind == "task_assign" else (agent, "sprint_manager")
    return {
        "id": f"{i:032x}",
        "type": kind,
        "from": sender,
        "to": recipient,
        "timestamp": iso_from_micros(BASE_MICROS + i * 1000),
        "payload": payload,
        "priority": ("low", "medium", "high", "critical")[i % 4],
        "requiresResponse": kind == "resource_lock",
    }


def rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---------------------------------------------------------------- scenario: the pane


def build_store(count: int):
    from engine.message_store import MessageStore

    templates = [make_message(i) for i in range(5000)]
    store = MessageStore()
    started = time.perf_counter()
    for i in range(count):
        store.append(i + 1, templates[i % 5000])
    return store, time.perf_counter() - started


def filter_scans(store) -> dict[str, float]:
    from engine.message_filter import Filter, FilteredView

    timings = {}
    for label, flt in [("agent", Filter(agent="agent_07")), ("type", Filter(type="heartbeat")),
                       ("text", Filter(text="module_42")), ("agent+text", Filter(agent="agent_07", text="tests"))]:
        started = time.perf_counter()
        view = FilteredView(store, flt)
        timings[label] = (time.perf_counter() - started, len(view))
    return timings


async def drive_pane(count: int, seconds: float) -> dict[str, Any]:
    from textual.app import App, ComposeResult

    from widgets.messages import MessagesPane

    base_rss = rss_mb()
    store, build_s = build_store(count)
    store_rss = rss_mb()
    scans = filter_scans(store)

    render_time = [0.0]
    original = MessagesPane.render_lines

    def timed_render_lines(self, crop):
        started = time.perf_counter()
        try:
            return original(self, crop)
        finally:
            render_time[0] += time.perf_counter() - started

    MessagesPane.render_lines = timed_render_lines  # type: ignore[method-assign]

    class Bench(App[None]):
        CSS = "MessagesPane { height: 1fr; }"

        def compose(self) -> ComposeResult:
            yield MessagesPane(store)

    results: dict[str, Any] = {"build_s": build_s, "scans": scans, "base_rss": base_rss, "store_rss": store_rss,
                               "memory_bytes": store.memory_bytes()}
    app = Bench()
    next_i = count
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(MessagesPane)
        pane.focus()
        await pilot.pause()
        for label, hz, follow in [("20 Hz x 50, following", 20, True), ("10 Hz x 100, following", 10, True),
                                  ("20 Hz x 50, scrolled up", 20, False)]:
            pane.follow = follow
            if not follow:
                pane.action_cursor_first()
            await pilot.pause()
            per_batch = 1000 // hz
            pane_ms, cpu_ms = [], []
            for _ in range(int(seconds * hz)):
                render_time[0] = 0.0
                cpu0, tick = time.process_time(), time.perf_counter()
                started = time.perf_counter()
                for i in range(next_i, next_i + per_batch):
                    store.append(i + 1, make_message(i))
                next_i += per_batch
                pane.messages_appended()
                sync = time.perf_counter() - started
                await asyncio.sleep(max(0.0, 1 / hz - (time.perf_counter() - tick)))
                pane_ms.append((sync + render_time[0]) * 1000)
                cpu_ms.append((time.process_time() - cpu0) * 1000)
            results[label] = {"pane_ms": pane_ms, "cpu_ms": cpu_ms}
        results["rows"] = pane.row_count
    results["peak_rss"] = rss_mb()
    return results


# ---------------------------------------------------------------- scenario: the RichLog peer


async def drive_richlog(lines: int) -> dict[str, Any]:
    from textual.app import App, ComposeResult
    from textual.widgets import RichLog

    from engine.message_store import MessageStore

    class Peer(App[None]):
        def compose(self) -> ComposeResult:
            yield RichLog(max_lines=None, markup=False, wrap=False)

    # The same text the pane shows per message, so the peer draws comparable lines.
    store = MessageStore()
    for i in range(1000):
        store.append(i + 1, make_message(i))
    texts = []
    for i in range(1000):
        row = store.summary(i)
        texts.append(f"{row.time:.3f} {row.priority:8} {row.type:18} {row.sender} → {row.recipient} {row.summary_text}")
    base_rss = rss_mb()
    batch_ms = []
    app = Peer()
    async with app.run_test(size=SIZE) as pilot:
        log = app.query_one(RichLog)
        await pilot.pause()
        started_all = time.perf_counter()
        for start in range(0, lines, 1000):
            started = time.perf_counter()
            for i in range(start, min(lines, start + 1000)):
                log.write(texts[i % 1000])
            batch_ms.append((time.perf_counter() - started) * 1000)
            await pilot.pause()
        total = time.perf_counter() - started_all
        count = len(log.lines)
    return {"batch_ms": batch_ms, "total_s": total, "lines": count, "base_rss": base_rss, "peak_rss": rss_mb()}


# ---------------------------------------------------------------- report


def child(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", scenario, "--messages", str(args.messages),
               "--seconds", str(args.seconds), "--richlog-lines", str(args.richlog_lines)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(pane: dict[str, Any], peer: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"machine: {sys.platform}, CPython {sys.version.split()[0]}, terminal {SIZE[0]}x{SIZE[1]} headless")
    n = args.messages
    print(f"store: {n:,} messages appended in {pane['build_s']:.2f} s "
          f"({pane['build_s'] / n * 1e6:.2f} µs/message); columns+JSON {pane['memory_bytes'] / 2**20:.0f} MiB "
          f"({pane['memory_bytes'] / n:.0f} B/message); RSS {pane['base_rss']:.0f} -> {pane['store_rss']:.0f} MB")
    for label, (seconds, rows) in pane["scans"].items():
        print(f"new filter over {n:,}: {label:10} {seconds * 1000:7.1f} ms ({rows:,} rows)")
    for label in ("20 Hz x 50, following", "10 Hz x 100, following", "20 Hz x 50, scrolled up"):
        data = pane[label]
        p, c = data["pane_ms"], data["cpu_ms"]
        print(f"pane update per batch [{label}]: p50 {statistics.median(p):.2f} ms, p95 {percentile(p, 0.95):.2f} ms, "
              f"max {max(p):.2f} ms; process CPU per batch interval p50 {statistics.median(c):.2f} ms, "
              f"p95 {percentile(c, 0.95):.2f} ms  (target p95 <= 50 ms)")
    print(f"pane process peak RSS: {pane['peak_rss']:.0f} MB with {pane['rows']:,} messages (dashboard target <= 600 MB)")
    b = peer["batch_ms"]
    per_line_peer = statistics.median(b) / 1000
    per_line_bytes = (peer["peak_rss"] - peer["base_rss"]) * 2**20 / peer["lines"]
    print(f"RichLog peer: {peer['lines']:,} lines in {peer['total_s']:.2f} s; per 1,000-line batch p50 "
          f"{statistics.median(b):.1f} ms, p95 {percentile(b, 0.95):.1f} ms ({per_line_peer * 1000:.0f} µs/line); "
          f"RSS {peer['base_rss']:.0f} -> {peer['peak_rss']:.0f} MB "
          f"(+{per_line_bytes:,.0f} B/line → {per_line_bytes * n / 2**30:.1f} GiB at {n:,} lines)")
    for label, hz in (("20 Hz x 50, following", 20), ("10 Hz x 100, following", 10)):
        per_second = statistics.median(pane[label]["pane_ms"]) * hz
        print(f"pane cost per second of traffic (1,000 messages) [{label}]: {per_second:.0f} ms "
              f"vs RichLog {statistics.median(b):.0f} ms to write 1,000 lines (its repaint not counted): "
              f"{statistics.median(b) / per_second:.1f}x")
    store_per_message = pane["memory_bytes"] / n
    print(f"memory per message: store {store_per_message:.0f} B vs RichLog {per_line_bytes:,.0f} B/line: "
          f"{per_line_bytes / store_per_message:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--richlog-lines", type=int, default=100_000)
    parser.add_argument("--child", choices=["pane", "richlog"])
    args = parser.parse_args()
    if args.child == "pane":
        print(json.dumps(asyncio.run(drive_pane(args.messages, args.seconds))))
    elif args.child == "richlog":
        print(json.dumps(asyncio.run(drive_richlog(args.richlog_lines))))
    else:
        report(child("pane", args), child("richlog", args), args)


if __name__ == "__main__":
    main()
