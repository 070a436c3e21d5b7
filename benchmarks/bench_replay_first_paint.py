"""Replay dashboard first paint: `sprintdeck replay JOURNAL`, from opening the journal to the first screen.

Run by hand:
    .venv/bin/python benchmarks/bench_replay_first_paint.py [--events 1000000] [--runs 5] [--journal PATH]

Without `--journal` a journal of `--events` events is generated with `bench_replay.generate` (about
15 s for a million) in a temp dir and removed afterwards (`--keep` keeps it).

Every measurement runs in a fresh Python process, because importing Textual is part of what the
command pays.  The replay child does what `app/commands/replay.py` does, in its order:
`ReplayCursor.open` (checks every record, builds the index), then imports the replay dashboard,
then `ReplayApp(cursor).run()` -- headless at 200x60 -- and stops at the first screen update the
App hands to its driver (turned into terminal bytes, as a terminal would receive them).  Reported:
open -> first paint (the figure with the 2 s target), split into open / import / App start, and
process start -> first paint for information (interpreter start and the CLI's own imports added).

The floor, measured in the same invocation in the same way: a child that counts the lines of the
same file (1 MiB reads, `bytes.count`: the least any open that looks at every record can cost),
then imports Textual and runs an empty App to its first screen update.  Medians and maxima over
`--runs` (runs alternate replay / floor).

Then, once: `end` pressed right after first paint, before any snapshot exists (the jump the
dashboard hands to a worker), with a speed key posted every 0.25 s while it is pending: how long
until the jump lands, and how long each key took to reach its action (the UI thread's
responsiveness while the builder folds).  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZE = (200, 60)


# ---------------------------------------------------------------- children (one per process)


def _stop_at_first_paint(app, times: dict[str, float], key: str) -> None:
    """Wrap `app._display` so the first real screen update is rendered, timed, and ends the App.

    Mirrors `App._display`'s own conditions: nothing is written while a batch update is open.
    """
    display = app._display

    def first_paint(screen, renderable) -> None:
        if renderable is not None and not app._batch_count and key not in times:
            if hasattr(renderable, "render_segments"):
                renderable.render_segments(app.console)
            else:
                app.console.render(renderable)
            times[key] = time.perf_counter()
            times[key + "_wall"] = time.time()
            app.exit()
        display(screen, renderable)

    app._display = first_paint


def child_replay(journal: Path, spawned: float) -> dict[str, float]:
    """`sprintdeck replay JOURNAL`'s path to first paint, with a clock at each step."""
    times: dict[str, float] = {}
    import app.commands.replay  # noqa: F401  what the CLI has loaded before it opens the journal
    from engine.replay import ReplayCursor

    times["open"] = time.perf_counter()
    cursor = ReplayCursor.open(journal)
    times["opened"] = time.perf_counter()
    from app.replay_dashboard import ReplayApp  # as the command does: Textual only for a dashboard

    times["imported"] = time.perf_counter()
    replay_app = ReplayApp(cursor, at=None, theme_name=None)
    _stop_at_first_paint(replay_app, times, "painted")
    replay_app.run(headless=True, size=SIZE)
    cursor.close()
    return {
        "open_to_paint": times["painted"] - times["open"],
        "open": times["opened"] - times["open"],
        "import": times["imported"] - times["opened"],
        "app": times["painted"] - times["imported"],
        "process_to_paint": times["painted_wall"] - spawned,
    }


def child_floor(journal: Path, spawned: float) -> dict[str, float]:
    """Count the file's lines, then run an empty Textual App to its first paint."""
    times = {"start": time.perf_counter()}
    lines = 0
    with open(journal, "rb") as file:
        while block := file.read(1 << 20):
            lines += block.count(b"\n")
    times["counted"] = time.perf_counter()
    from textual.app import App, ComposeResult
    from textual.widgets import Static

    class Empty(App):
        def compose(self) -> ComposeResult:
            yield Static(f"{lines} lines")

    app = Empty()
    _stop_at_first_paint(app, times, "painted")
    app.run(headless=True, size=SIZE)
    return {
        "floor": times["painted"] - times["start"],
        "count": times["counted"] - times["start"],
        "empty_app": times["painted"] - times["counted"],
        "process_to_paint": times["painted_wall"] - spawned,
    }


def child_seek_end(journal: Path, spawned: float) -> dict[str, float | list[float]]:
    """Press `end` at first paint; post a key every 0.25 s until the jump lands; time both."""
    from textual import events

    from app.replay_dashboard import ReplayApp
    from engine.replay import ReplayCursor

    cursor = ReplayCursor.open(journal)
    app = ReplayApp(cursor, config_file=Path(tempfile.mkdtemp()) / "config.json")
    handled: list[float] = []
    speed = app.action_speed
    app.action_speed = lambda delta: (handled.append(time.perf_counter()), speed(delta))[1]

    async def drive() -> dict[str, float | list[float]]:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause(0.05)
            pressed = time.perf_counter()
            app.post_message(events.Key("end", None))
            latencies, was_pending = [], False
            while app.cursor.position != cursor.total:
                await asyncio.sleep(0.25)
                was_pending = was_pending or app.seeking is not None
                count, posted = len(handled), time.perf_counter()
                app.post_message(events.Key("greater_than_sign", ">"))
                while len(handled) == count:
                    await asyncio.sleep(0.001)
                latencies.append(handled[-1] - posted)
            return {"landed": time.perf_counter() - pressed, "latencies": latencies, "pending": was_pending}

    result = asyncio.run(drive())
    cursor.close()
    return result


# ---------------------------------------------------------------- the parent


def run_child(mode: str, journal: Path) -> dict[str, float]:
    spawned = repr(time.time())  # wall clock: the child reads the same one
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(journal), spawned], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{mode} child failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(runs: list[dict[str, float]], key: str) -> str:
    values = [run[key] * 1000 for run in runs]
    return f"{statistics.median(values):,.0f} ms (max {max(values):,.0f})"


def measure(journal: Path, count: int) -> None:
    replays, floors = [], []
    for _ in range(count):
        replays.append(run_child("replay", journal))
        floors.append(run_child("floor", journal))
    print(f"open -> first paint: {summary(replays, 'open_to_paint')} (target <= 2000); "
          f"floor: {summary(floors, 'floor')}")
    print(f"  open {summary(replays, 'open')} · import dashboard {summary(replays, 'import')} · "
          f"App to first paint {summary(replays, 'app')}")
    print(f"  floor: count lines {summary(floors, 'count')} · empty App to first paint {summary(floors, 'empty_app')}")
    print(f"process start -> first paint: {summary(replays, 'process_to_paint')}; "
          f"floor process: {summary(floors, 'process_to_paint')}")
    jump = run_child("seek-end", journal)
    latencies = [value * 1000 for value in jump["latencies"]]
    print(f"`end` at first paint, before any snapshot: {'handed to a worker' if jump['pending'] else 'done at once'}, "
          f"landed after {jump['landed']:.1f}s; {len(latencies)} keys posted meanwhile reached their action in "
          f"median {statistics.median(latencies):.0f} ms, p95 {sorted(latencies)[int(0.95 * len(latencies))]:.0f} ms, "
          f"max {max(latencies):.0f} ms")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        sys.path.insert(0, str(ROOT))
        child = {"replay": child_replay, "floor": child_floor, "seek-end": child_seek_end}[sys.argv[2]]
        print(json.dumps(child(Path(sys.argv[3]), float(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--journal", type=Path, default=None, help="an existing journal (nothing generated)")
    parser.add_argument("--dir", type=Path, default=None, help="where to generate the journal (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated journal")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
          f"{platform.python_version()}")
    directory = None
    journal = args.journal
    try:
        if journal is None:
            sys.path.insert(0, str(ROOT / "benchmarks"))
            sys.path.insert(0, str(ROOT))
            from bench_replay import generate

            directory = Path(tempfile.mkdtemp(dir=args.dir, prefix="bench_first_paint_"))
            journal = directory / "big.jsonl"
            print(f"generated {args.events:,} events in {generate(journal, args.events):.1f}s")
        size = journal.stat().st_size
        print(f"journal: {journal} ({size / 2**20:.0f} MiB); {args.runs} runs each, {SIZE[0]}x{SIZE[1]} headless")
        measure(journal, args.runs)
    finally:
        if directory is not None:
            if args.keep:
                print(f"kept {journal}")
            else:
                shutil.rmtree(directory)


if __name__ == "__main__":
    main()
