"""File watching: change-to-conflict latency, initial scan and no-change rescan, with peers.

Run by hand:  .venv/bin/python benchmarks/bench_watch.py [--edits 200] [--files 10000] [--mb 200] [--dir DIR]

1. Latency: a running SprintManager (real watcher, real journal) over a workspace; each of N edits
   writes a file nobody holds a lock on and waits for the `file_changed` conflict event the manager
   emits (measured in the manager's event listener).  Peer, in the same run: raw `watchfiles.awatch`
   with the same debounce/step on another directory, write -> batch yielded; and awatch with its
   default debounce (1,600 ms / 50 ms step) for the first few edits, to show why it is tuned.
2. Scan: a generated tree of F files / M MB (random bytes, 100 files per directory); the watcher's
   initial scan (`FileIndex.scan`: stat + read + xxh3 of every file) and a rescan with nothing
   changed (stat only), next to `git add -A` on a copy of the same tree (first add: hash + store
   every blob; second add: nothing changed).
3. Checksums: throughput of xxh3-128 (the choice), sha1, blake2b on 64 MB in memory.
4. Reads, as the kernel counts them (/proc/self/io, Linux): read system calls per file of the
   initial scan and of `FileIndex.read` (floor 1: one read of the size the stat gave), and bytes
   read per lock grant as a multiple of the file's size, for each way a lock keeps a file's content
   (first lock: floor 1; locked again after a release, unchanged: floor 0; written a moment ago,
   so racily clean: floor 1, the settle's own read).
Prints figures; asserts nothing.  The tree lives under `--dir` (default: benchmarks/, the project's disk).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import watchfiles  # noqa: E402
import xxhash  # noqa: E402
import yaml  # noqa: E402

from engine.events import EventType  # noqa: E402
from engine.journal import JournalWriter  # noqa: E402
from engine.manager import SprintManager  # noqa: E402
from engine.plan import load_plan  # noqa: E402
from engine.protocol import MANAGER_ID, MessageType, make_message  # noqa: E402
from engine.file_index import FileIndex  # noqa: E402
from engine.watch import DEBOUNCE_MS, STEP_MS  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(name: str, values_ms: list[float]) -> str:
    return (
        f"{name:<44} p50 {percentile(values_ms, 50):6.1f} ms   p95 {percentile(values_ms, 95):6.1f} ms"
        f"   max {max(values_ms):6.1f} ms   (n={len(values_ms)})"
    )


# ---------------------------------------------------------------- latency


async def raw_latency(root: Path, edits: int, debounce: int, step: int) -> list[float]:
    """write -> awatch yields the batch, with nothing else in the loop."""
    root.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    results: list[float] = []
    changes = watchfiles.awatch(root, watch_filter=None, debounce=debounce, step=step, stop_event=stop)
    pending = asyncio.ensure_future(changes.__anext__())
    await asyncio.sleep(0.05)
    for i in range(edits):
        target = root / f"raw{i}.txt"
        start = time.perf_counter()
        target.write_text(f"edit {i}\n")
        await pending
        results.append((time.perf_counter() - start) * 1000)
        pending = asyncio.ensure_future(changes.__anext__())
        await asyncio.sleep(0.01)
    stop.set()
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)
    await changes.aclose()
    return results


async def started_manager(base: Path, workspace: Path) -> tuple[SprintManager, JournalWriter]:
    """A running SprintManager (real watcher, journal beside the workspace) with one external agent."""
    plan_path = base / "plan.yaml"
    plan_path.write_text(
        yaml.safe_dump(
            {
                "sprint": "bench-watch",
                "settings": {"heartbeat_timeout": "600s"},
                "agents": [{"id": "alice", "kind": "external"}],
                "tasks": [],
            }
        )
    )
    plan = load_plan(plan_path)
    journal = JournalWriter.create(base / "journal" / "j.jsonl", {"sprint": plan.sprint, "planDigest": plan.digest})
    manager = SprintManager(plan, workspace=workspace, journal=journal)
    manager.transport.subscribe("alice")  # somewhere for the manager's replies to go
    await manager.start()
    return manager, journal


async def conflict_latency(base: Path, edits: int) -> list[float]:
    """write an unlocked file -> the manager has journaled and applied its conflict event."""
    workspace = base / "ws"
    workspace.mkdir(parents=True)
    for i in range(edits):
        (workspace / f"f{i}.txt").write_text("original\n")
    manager, journal = await started_manager(base, workspace)
    loop = asyncio.get_running_loop()
    waiting: dict[str, tuple[float, asyncio.Future[float]]] = {}

    def on_event(event) -> None:
        if event.type == EventType.FILE_CHANGED and event.data["status"] == "conflict":
            entry = waiting.pop(event.data["path"], None)
            if entry is not None:
                entry[1].set_result((time.perf_counter() - entry[0]) * 1000)

    manager.subscribe(on_event)
    results = []
    for i in range(edits):
        path = f"f{i}.txt"
        future: asyncio.Future[float] = loop.create_future()
        waiting[path] = (time.perf_counter(), future)
        (workspace / path).write_text(f"rogue edit {i}\n")
        results.append(await asyncio.wait_for(future, 5))
        await asyncio.sleep(0.01)
    await manager.stop()
    journal.close()
    return results


# ---------------------------------------------------------------- scan


def generate_tree(root: Path, files: int, megabytes: int) -> int:
    """`files` files of random bytes totalling about `megabytes` MB, 100 per directory."""
    size = megabytes * 1_000_000 // files
    total = 0
    block = os.urandom(size * 2)
    for i in range(files):
        directory = root / f"pkg{i // 100:03}"
        if i % 100 == 0:
            directory.mkdir(parents=True, exist_ok=True)
        offset = (i * 7919) % size
        data = block[offset : offset + size - (i % 512)]
        (directory / f"mod{i:05}.bin").write_bytes(data)
        total += len(data)
    return total


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def scan_figures(base: Path, files: int, megabytes: int) -> list[str]:
    tree = base / "tree"
    total = generate_tree(tree, files, megabytes)
    copy = base / "copy"
    shutil.copytree(tree, copy)
    time.sleep(0.1)  # past the racy window: a real tree was not written a moment ago
    index = FileIndex(tree)
    with counted_reads() as scan_reads:
        first, observed = timed(index.scan)
    hashed_first = index.hashed
    again, changed = timed(index.scan)
    hashed_again = index.hashed - hashed_first
    lines = [
        f"tree: {files:,} files, {total / 1e6:.0f} MB (page cache warm: just written)",
        f"initial scan (stat + read + xxh3 each file)       {first:6.2f} s   {total / 1e6 / first:7.0f} MB/s   {len(observed):,} files",
        f"rescan, nothing changed (stat cache)              {again:6.3f} s   re-hashed {hashed_again} files, {len(changed)} changes",
    ]
    if READS_COUNTED:
        with counted_reads() as plain_reads:
            for rel in index.entries:
                index.read(rel)
        lines.append(
            f"read calls per file: initial scan {scan_reads[0] / files:.2f}, FileIndex.read {plain_reads[0] / files:.2f}"
            "   (floor 1: one read of the size the stat gave)"
        )
    if shutil.which("git"):
        git("init", "-q", cwd=copy)
        add_first, _ = timed(lambda: git("add", "-A", cwd=copy))
        add_again, _ = timed(lambda: git("add", "-A", cwd=copy))
        lines += [
            f"git add -A on a copy (hash + write every blob)    {add_first:6.2f} s   {total / 1e6 / add_first:7.0f} MB/s",
            f"git add -A again, nothing changed                 {add_again:6.3f} s",
            f"ratios: initial scan / git add -A = {first / add_first:.2f};  rescan / git add -A again = {again / add_again:.2f}",
        ]
    return lines


# ---------------------------------------------------------------- reads

READS_COUNTED = Path("/proc/self/io").exists()


def process_reads() -> tuple[int, int]:
    """(read system calls, bytes read) by this process so far, as the kernel counts them (Linux).

    Counted below any code of ours, so the figures hold whichever function does the reading.
    """
    with open("/proc/self/io", "rb", buffering=0) as file:
        fields = dict(line.split(b": ") for line in file.read().splitlines())
    return int(fields[b"syscr"]), int(fields[b"rchar"])


@contextmanager
def counted_reads() -> Iterator[list[int]]:
    """After the block, the list holds [read calls, bytes read] the block made ([0, 0] without /proc)."""
    counts = [0, 0]
    if not READS_COUNTED:
        yield counts
        return
    start, again = process_reads(), process_reads()  # the second says what reading the counters costs
    yield counts
    end = process_reads()
    counts[:] = [end[k] - again[k] - (again[k] - start[k]) for k in (0, 1)]


async def lock_read_figures(base: Path, size: int = 200_000) -> list[str]:
    """Bytes read per lock grant, as a multiple of the file's size, for each way the manager keeps
    a locked file's content (engine/conflicts.py).  `size` stays under the store's spill size, so
    a released file's content stays at hand for the second lock."""
    workspace = base / "ws"
    workspace.mkdir(parents=True)
    old = workspace / "old.bin"
    old.write_bytes(os.urandom(size))
    an_hour_ago = time.time_ns() - 3600 * 10**9
    os.utime(old, ns=(an_hour_ago, an_hour_ago))  # long past its racy window
    manager, journal = await started_manager(base, workspace)
    try:
        first = await bytes_read_to_lock(manager, "old.bin")
        await unlock(manager, "old.bin")
        again = await bytes_read_to_lock(manager, "old.bin")
        await unlock(manager, "old.bin")
        await written_and_seen(manager, workspace / "fresh.bin", os.urandom(size))
        racy = await bytes_read_to_lock(manager, "fresh.bin")
    finally:
        await manager.stop()
        journal.close()
    return [
        f"bytes read per lock grant / file size ({size:,} B file):",
        f"  first lock of a file unchanged since the scan    {first / size:5.2f}   (floor 1: its content is kept)",
        f"  locked again after a release, still unchanged    {again / size:5.2f}   (floor 0: kept from the store)",
        f"  lock of a file written a moment ago (racy)       {racy / size:5.2f}   (floor 1: the settle's read is kept)",
    ]


async def bytes_read_to_lock(manager: SprintManager, path: str) -> int:
    """Bytes this process read while `alice` was granted a write lock on `path`."""
    request = make_message(MessageType.RESOURCE_LOCK, "alice", MANAGER_ID, {"resourceId": path, "lockType": "write"})
    with counted_reads() as reads:
        await manager.handle_ipc_message(request)
    return reads[1]


async def unlock(manager: SprintManager, path: str) -> None:
    (lock_id,) = [lock.lock_id for lock in manager.state.locks.values() if lock.resource_id == path]
    payload = {"resourceId": path, "lockId": lock_id}
    await manager.handle_ipc_message(make_message(MessageType.RESOURCE_UNLOCK, "alice", MANAGER_ID, payload))


async def written_and_seen(manager: SprintManager, target: Path, data: bytes) -> None:
    """Write `target` and return once the watcher has recorded it."""
    seen = asyncio.get_running_loop().create_future()

    def on_event(event) -> None:
        if event.type == EventType.FILE_CHANGED and event.data["path"] == target.name and not seen.done():
            seen.set_result(None)

    manager.subscribe(on_event)
    target.write_bytes(data)
    await asyncio.wait_for(seen, 5)


# ---------------------------------------------------------------- checksums


def checksum_figures() -> list[str]:
    data = os.urandom(64 << 20)
    lines = []
    for name, fn in (
        ("xxh3-128 (chosen)", xxhash.xxh3_128_hexdigest),
        ("sha1", lambda d: hashlib.sha1(d).hexdigest()),
        ("blake2b-128", lambda d: hashlib.blake2b(d, digest_size=16).hexdigest()),
    ):
        fn(data[:1024])
        elapsed, _ = timed(lambda: fn(data))
        lines.append(f"checksum {name:<20} {64 * 1.048576 / elapsed:8.0f} MB/s")
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--dir", default=str(Path(__file__).resolve().parent))
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {platform.platform()}, CPython {platform.python_version()}")
    base = Path(tempfile.mkdtemp(prefix="bench-watch-", dir=args.dir))
    try:
        raw = await raw_latency(base / "raw", args.edits, DEBOUNCE_MS, STEP_MS)
        engine = await conflict_latency(base / "engine", args.edits)
        default = await raw_latency(base / "raw-default", 5, 1_600, 50)
        print(summary(f"watchfiles raw (debounce {DEBOUNCE_MS} ms, step {STEP_MS} ms)", raw))
        print(summary("engine: write -> conflict event", engine))
        print(summary("watchfiles raw, default debounce 1600/step 50", default))
        print(f"engine overhead over raw notification: p50 {percentile(engine, 50) - percentile(raw, 50):+.1f} ms")
        for line in scan_figures(base / "scan", args.files, args.mb):
            print(line)
        for line in checksum_figures():
            print(line)
        if READS_COUNTED:
            for line in await lock_read_figures(base / "locks"):
                print(line)
        else:
            print("reads: not counted (no /proc/self/io on this system)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
