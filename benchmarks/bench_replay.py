"""Replay of a generated 1,000,000-event journal: open-to-ready, seeks, linear replay, bytes/event.

Run by hand:  .venv/bin/python benchmarks/bench_replay.py [--events N] [--seeks S] [--dir DIR] [--keep]
(the dashboard's open -> first paint is measured by `bench_replay_first_paint.py`, which reuses
`generate` from here)

The journal is synthesised with `JournalWriter`: the first 31 events of the recorded webrtc sample
(sprint started, agents registered, two tasks running), then heartbeats and `task_update` messages
from the agents interleaved with `task_progress` events, and a real `state_digest` every 500 events
(the generator folds as it writes, as the live manager would), so the replay verifies digests too.

Figures, each next to a peer measured in the same run:
- open-to-ready: `ReplayCursor.open` (checks every crc and seq, builds the sparse index) -- what the
  replay dashboard's first paint waits for -- next to reading the file's lines and doing nothing;
- linear replay (`build_snapshots`: parse, fold, verify digests, snapshot every 1,000) in events/s,
  next to a bare `json.loads` of every line of the same file;
- seeks to random positions (snapshots built) p50/p95, and cold seeks on a fresh cursor;
- a jump to the end issued one second into the snapshot build, done the way the dashboard's
  worker does it (`build_snapshots(total)` waits for the running build, then `state_at`), next
  to the build alone: the jump should land when the build does, not fold the journal a second time;
- bytes per event.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.events import Event  # noqa: E402
from engine.journal import JournalWriter  # noqa: E402
from engine.models import ProjectState  # noqa: E402
from engine.reducer import apply, state_digest  # noqa: E402
from engine.replay import ReplayCursor  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_sprints/webrtc/recorded.jsonl"
PREFIX = 31  # sample events kept: both first tasks are running by then
DIGEST_EVERY = 500
AGENTS = ("database", "backend", "frontend", "testing")
RUNNING = ("update_schema", "websocket_signaling")


def _ts(base: float, seq: int) -> str:
    """1 ms of sprint time per event, ISO-8601 UTC like the manager writes."""
    seconds = base + seq / 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1e6) % 1_000_000:06d}Z"


def _synthetic(seq: int, ts: str) -> tuple[str, dict]:
    agent = AGENTS[seq % len(AGENTS)]
    if seq % 3 == 0:
        task = RUNNING[seq % 2]
        return "task_progress", {"taskId": task, "attempt": 1, "progress": (seq % 100) / 100, "output": None}
    kind = "heartbeat" if seq % 3 == 1 else "task_update"
    payload = {"tasks": [], "load": 0} if kind == "heartbeat" else {
        "taskId": RUNNING[seq % 2], "attempt": 1, "progress": (seq % 100) / 100, "message": "running tests"}
    message = {"id": f"{seq:032x}", "type": kind, "from": agent, "to": "sprint_manager", "timestamp": ts,
               "payload": payload, "priority": "medium", "requiresResponse": False}
    return "message", {"message": message}


def generate(path: Path, events: int) -> float:
    """Write the journal; returns seconds taken (folding included, for the digests)."""
    started = time.perf_counter()
    lines = SAMPLE.read_bytes().splitlines()
    header = json.loads(lines[0])
    writer = JournalWriter.create(path, {"sprint": header["sprint"], "planDigest": header["planDigest"],
                                         "startedAt": header["startedAt"]})
    state = ProjectState()
    base = time.time() - events / 1000

    def emit(seq: int, kind: str, data: dict, ts: str) -> None:
        event = Event.decode(seq, ts, kind, data, seq / 1000)
        apply(state, event)
        writer.append(seq, kind, data, ts, event.mono)
        if seq % 20_000 == 0:
            writer.flush_sync()

    for line in lines[1 : PREFIX + 1]:
        record = json.loads(line)
        emit(record["seq"], record["type"], record["data"], record["ts"])
    seq = PREFIX
    while seq < events:
        seq += 1
        ts = _ts(base, seq)
        if seq % DIGEST_EVERY == 0:
            emit(seq, "state_digest", {"digest": state_digest(state), "of": state.version}, ts)
        else:
            emit(seq, *_synthetic(seq, ts), ts)
    writer.close()
    return time.perf_counter() - started


def timed(fn, *args):
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def bare_lines(path: Path) -> int:
    with open(path, "rb") as file:
        return sum(1 for _ in file)


def bare_json(path: Path) -> int:
    loads = json.loads
    with open(path, "rb") as file:
        file.readline()
        return sum(1 for line in file if loads(line))


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def seek_times(cursor: ReplayCursor, count: int, rng: random.Random) -> list[float]:
    times = []
    for _ in range(count):
        target = rng.randint(0, cursor.total)
        started = time.perf_counter()
        cursor.seek(target)
        times.append(time.perf_counter() - started)
    return times


def end_seek_during_build(path: Path, delay: float = 1.0) -> tuple[float, float]:
    """(seconds until a jump to the end issued `delay` s into the build lands, seconds the build took)."""
    cursor = ReplayCursor.open(path)
    started = time.perf_counter()
    builder = threading.Thread(target=cursor.build_snapshots)
    builder.start()
    time.sleep(delay)
    cursor.build_snapshots(cursor.total)  # the dashboard's seek worker: wait for the running build
    cursor.place(cursor.total, cursor.state_at(cursor.total))
    landed = time.perf_counter() - started
    builder.join()
    built = time.perf_counter() - started
    cursor.close()
    return landed, built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seeks", type=int, default=500)
    parser.add_argument("--dir", type=Path, default=None, help="where to write the journal (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated journal")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(dir=args.dir, prefix="bench_replay_"))
    path = directory / "big.jsonl"
    try:
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} "
              f"{platform.python_version()}")
        generated = generate(path, args.events)
        size = path.stat().st_size
        print(f"generated {args.events:,} events in {generated:.1f}s: {size / 2**20:.0f} MiB, "
              f"{size / args.events:.0f} bytes per event")

        lines_s, _ = timed(bare_lines, path)
        open_s, cursor = timed(ReplayCursor.open, path)
        print(f"open-to-ready: {open_s * 1000:.0f} ms (target <= 2000); peer: reading the lines alone "
              f"{lines_s * 1000:.0f} ms (ratio {open_s / lines_s:.1f}x)")

        cold = seek_times(ReplayCursor.open(path), 5, random.Random(1))
        print(f"cold seeks (no snapshots yet, fold from the nearest point): max {max(cold) * 1000:.0f} ms")

        landed, built = end_seek_during_build(path)
        print(f"jump to the end 1 s into the snapshot build (a worker's way): landed after {landed:.1f}s; "
              f"the build took {built:.1f}s")

        json_s, _ = timed(bare_json, path)
        build_s, _ = timed(cursor.build_snapshots)
        print(f"linear replay (parse + fold + verify {args.events // DIGEST_EVERY:,} digests + snapshots): "
              f"{args.events / build_s:,.0f} events/s in {build_s:.1f}s; bare json.loads per line: "
              f"{args.events / json_s:,.0f} lines/s (replay/parse {json_s / build_s:.2f})")

        warm = seek_times(cursor, args.seeks, random.Random(2))
        print(f"random seeks (snapshots built, {args.seeks}): p50 {statistics.median(warm) * 1000:.1f} ms, "
              f"p95 {percentile(warm, 0.95) * 1000:.1f} ms (target <= 50), max {max(warm) * 1000:.1f} ms")
        steps = []
        for _ in range(1000):
            started = time.perf_counter()
            cursor.step(1)
            steps.append(time.perf_counter() - started)
        print(f"step(1): p50 {statistics.median(steps) * 1e6:.0f} us")
        cursor.close()
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(directory)


if __name__ == "__main__":
    main()
