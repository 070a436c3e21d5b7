"""The replay dashboard's marks (`n` / `N`, the scrubber) and `:follow` over a large journal.

Run by hand:  .venv/bin/python benchmarks/bench_replay_marks.py [--events N] [--every K] [--runs R]

The journal is `bench_replay.generate`'s (heartbeats, `task_update` messages and `task_progress`
events of two running tasks), with every K-th `task_progress` record rewritten as a `task_failed`
of the same seq (valid crc), so there are events/K marks to find.  Figures, each next to peers
measured in the same run on the same file:
- `find_marks` (the fingerprint search, then parsing only the lines it hit) -- what opening the
  replay dashboard adds -- next to `ReplayCursor.open` (what first paint waits for anyway) and to
  reading the file's bytes;
- `task_events` for one of the two running tasks (a third of all lines name it: the worst case,
  every hit parsed), next to a bare `json.loads` of every line.
Prints figures (medians of R runs); asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_replay import generate  # noqa: E402
from engine.journal_codec import encode_record  # noqa: E402
from engine.replay import ReplayCursor  # noqa: E402
from engine.replay_marks import find_marks, task_events  # noqa: E402


def with_failures(source: Path, target: Path, every: int) -> int:
    """Copy `source`, every `every`-th task_progress record made a task_failed; returns how many."""
    made = seen = 0
    with open(source, "rb") as src, open(target, "wb") as out:
        out.write(src.readline())
        for line in src:
            if b'"type":"task_progress"' in line:
                seen += 1
                if seen % every == 0:
                    record = json.loads(line)
                    data = {"taskId": record["data"]["taskId"], "attempt": 1, "error": "exit 1", "willRetry": True}
                    line = encode_record(record["seq"], "task_failed", data, record["ts"], record["mono"])
                    made += 1
            out.write(line)
    return made


def median_time(runs: int, fn, *args) -> tuple[float, object]:
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def read_bytes(path: Path) -> int:
    return len(path.read_bytes())


def parse_all(path: Path) -> int:
    with open(path, "rb") as file:
        file.readline()
        return sum(1 for line in file if json.loads(line))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=333, help="one failure per this many task_progress events")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        plain, journal = Path(directory) / "plain.jsonl", Path(directory) / "marked.jsonl"
        generate(plain, args.events)
        failures = with_failures(plain, journal, args.every)
        plain.unlink()
        total = args.events
        read, size = median_time(args.runs, read_bytes, journal)
        opened, _ = median_time(args.runs, lambda: ReplayCursor.open(journal).close())
        marks_time, marks = median_time(args.runs, find_marks, journal, total)
        follow_time, events = median_time(args.runs, task_events, journal, total, "update_schema")
        parsed, _ = median_time(1, parse_all, journal)
        print(f"{total:,} events, {size / 2**20:.0f} MiB, {failures:,} failures planted")
        print(f"find_marks: {marks_time * 1000:.0f} ms for {len(marks):,} marks"  # type: ignore[arg-type]
              f" | ReplayCursor.open {opened * 1000:.0f} ms ({marks_time / opened:.2f}x)"
              f" | read the bytes {read * 1000:.0f} ms ({marks_time / read:.2f}x)")
        print(f"task_events(update_schema): {follow_time * 1000:.0f} ms for {len(events):,} events"  # type: ignore[arg-type]
              f" | json.loads of every line {parsed * 1000:.0f} ms ({follow_time / parsed:.2f}x)")


if __name__ == "__main__":
    main()
