"""Durable journal events per second with group fsync, next to a raw write floor.

Run by hand:  .venv/bin/python benchmarks/bench_journal.py [--events N] [--appenders C] [--dir DIR]

C concurrent appenders each loop `append` + `await flush()` (an event is counted once `flush`
returned, i.e. once it is fsynced) until N events are durable.  The floor writes the same lines
with one `file.write` each and a single fsync at the end: what the disk and the kernel cost with no
per-event durability.  A peer with one fsync per event shows what group commit saves.  Run it on
the disk the journals live on (`--dir`; /tmp may be a RAM disk where fsync costs nothing).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.journal import JournalWriter, encode_record  # noqa: E402

HEADER = {"sprint": "bench", "planDigest": "sha256:bench"}
TS = "2030-01-01T00:00:00.000000Z"


def event_data(n: int) -> dict[str, object]:
    """A typical journalled event: a message as the manager records it."""
    return {
        "id": f"{n:032x}",
        "type": "task_update",
        "from": f"agent-{n % 8}",
        "to": "sprint_manager",
        "payload": {"taskId": f"T{n % 50}", "attempt": 1, "progress": 0.5, "message": "running tests"},
    }


async def group_commit(path: Path, events: int, appenders: int) -> tuple[float, int, int]:
    """(durable events/s, bytes per event, fsyncs) with `appenders` concurrent callers."""
    writer = JournalWriter.create(path, HEADER)
    header_bytes = path.stat().st_size

    async def appender() -> None:
        while writer.last_seq < events:
            seq = writer.last_seq + 1
            writer.append(seq, "message", event_data(seq), TS, time.monotonic())
            await writer.flush()

    started = time.perf_counter()
    await asyncio.gather(*(appender() for _ in range(appenders)))
    elapsed = time.perf_counter() - started
    writer.close()
    return events / elapsed, (path.stat().st_size - header_bytes) // events, writer.fsync_count


def write_floor(path: Path, events: int) -> float:
    """Events/s writing the same lines with one write each and one fsync at the end."""
    lines = [encode_record(seq, "message", event_data(seq), TS, 1.0) for seq in range(1, events + 1)]
    started = time.perf_counter()
    with open(path, "wb") as file:
        for line in lines:
            file.write(line)
        file.flush()
        os.fsync(file.fileno())
    return events / (time.perf_counter() - started)


def fsync_each(path: Path, events: int) -> float:
    """Events/s with one fsync per event (no grouping)."""
    writer = JournalWriter.create(path, HEADER)
    started = time.perf_counter()
    for seq in range(1, events + 1):
        writer.append(seq, "message", event_data(seq), TS, time.monotonic())
        writer.flush_sync()
    elapsed = time.perf_counter() - started
    writer.close()
    return events / elapsed


def encode_cost_us(events: int) -> float:
    started = time.perf_counter()
    for seq in range(1, events + 1):
        encode_record(seq, "message", event_data(seq), TS, 1.0)
    return (time.perf_counter() - started) / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--appenders", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-journal-", dir=args.dir))
    try:
        runs = [
            asyncio.run(group_commit(work / f"group-{n}.jsonl", args.events, args.appenders))
            for n in range(args.rounds)
        ]
        rate, per_event, fsyncs = max(runs)
        floor = max(write_floor(work / f"floor-{n}.jsonl", args.events) for n in range(args.rounds))
        single = fsync_each(work / "single.jsonl", 300)
        encode = min(encode_cost_us(20_000) for _ in range(3))
    finally:
        shutil.rmtree(work)

    print(f"python {platform.python_version()}, {os.cpu_count()} cores, journal dir {args.dir}")
    print(f"group commit, {args.appenders} appenders  {rate:>10,.0f} durable events/s (target >= 20,000/s)")
    print(f"  {fsyncs:,} fsyncs for {args.events:,} events")
    print(
        f"floor: write + one fsync at end {floor:>10,.0f} events/s   group commit / floor {rate / floor:.2f}"
    )
    print(
        f"peer: one fsync per event        {single:>10,.0f} events/s   group commit / peer {rate / single:.1f}x"
    )
    print(f"bytes per event {per_event}   encode_record {encode:.1f} us/event")


if __name__ == "__main__":
    main()
