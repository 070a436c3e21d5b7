"""`sprintdeck watch` lag: an event in the manager -> its repaint in an attached watcher (issue 17).

(`bench_watch.py` is the file watcher's benchmark; this one is the `watch` command's.)

A manager process runs a sprint whose simulated agents are busy for the whole run, with the socket
transport and the watch hub of `serve`, and emits `task_priority` events at `--rate` a second (the
reducer and every watcher take them as any event).  In this process, on the same machine (the
monotonic clock is the system's, so the two processes' times compare):

1. floor: a bare asyncio Unix-socket line stream at the same rate from the same kind of process
   (one small JSON line per event, read and parsed): what any transport costs;
2. watcher: `WatchedSource` (the watch protocol: batches of events, each applied through the
   reducer), time of the event's application;
3. dashboard: the watch dashboard (`SprintDeckApp` on that source, headless Textual at 160x50),
   time at which the batch holding the event has been drawn into the panes (`refresh_panes`
   returned; the dashboard draws at most `BATCH_HZ` times a second by design, so half that period
   is its expected share).

With `--over nats` the manager serves over NATS instead (a nats-server with JetStream started on a
free loopback port, as `serve --listen nats://...`), the watchers attach with `nats://HOST:PORT/lag`,
and the floor is a bare nats-py publish of the same lines to a subscriber in this process.

Prints p50/p95 (ms) for each and their ratios to the floor's; asserts nothing.

    .venv/bin/python benchmarks/bench_watch_lag.py [--rate 1000] [--seconds 5] [--over unix|nats]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def paced(count: int, rate: float, emit) -> dict[int, float]:  # type: ignore[no-untyped-def]
    """Call `emit(i)` `count` times at `rate` a second; the monotonic time of each."""
    sent: dict[int, float] = {}
    start = time.monotonic()
    for i in range(count):
        target = start + i / rate
        if (wait := target - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        sent[i] = time.monotonic()
        emit(i)
    return sent


# ---------------------------------------------------------------- the manager's process


async def manager_role(where: str, count: int, rate: float, out: str) -> None:
    import yaml

    from engine.events import TaskPriority
    from engine.journal import JournalWriter
    from engine.manager import SprintManager
    from engine.plan import load_plan
    from engine.transports.address import parse_address, listen
    from engine.transports.nats import NatsTransport
    from engine.transports.socket import SocketTransport
    from engine.watchers import WatchHub

    directory = Path(tempfile.mkdtemp(prefix="sd-lag-"))
    (directory / "plan.yaml").write_text(yaml.safe_dump({
        "sprint": "lag", "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "60s"},
        "agents": [{"id": "a", "capabilities": ["x"]}],
        "tasks": [{"id": "long", "requires": ["x"], "estimate": "1h"}, {"id": "later", "requires": ["x"]}],
    }))
    plan = load_plan(directory / "plan.yaml")
    transport: SocketTransport | NatsTransport
    if where.startswith("nats://"):
        transport = NatsTransport(parse_address(where), tokens={})
    else:
        address = parse_address(f"unix:{where}", listening=True)
        listener, _ = listen(address)
        transport = SocketTransport(listener, address, tokens={})
    journal = JournalWriter.create(directory / "run.jsonl", {"sprint": "lag", "planDigest": plan.digest})
    (directory / "ws").mkdir()
    manager = SprintManager(plan, workspace=directory / "ws", journal=journal, transport=transport, speed=1.0)
    hub = WatchHub(manager, None)
    transport.watch_desk = hub
    await transport.start()
    run = asyncio.create_task(manager.execute_sprint())
    while not hub.watchers:
        await asyncio.sleep(0.01)
    await asyncio.sleep(1.0)  # its snapshot, first paint
    seqs: dict[int, float] = {}

    def emit(i: int) -> None:
        event = manager.recorder.emit(TaskPriority(task_id="later", priority=("high", "low")[i % 2]))
        seqs[event.seq] = time.monotonic()

    await paced(count, rate, emit)
    await asyncio.sleep(1.5)  # the last batches reach it
    Path(out).write_text(json.dumps({"sent": seqs, "resyncs": sum(w.resyncs for w in hub.watchers)}))
    run.cancel()
    await manager.stop()
    await transport.finish(1.0)  # the watchers are told the end (over NATS they would wait for it)
    journal.close()


def floor_line(i: int) -> bytes:
    return json.dumps({"seq": i, "type": "task_priority", "data": {"taskId": "later"}}).encode()


async def floor_role(where: str, count: int, rate: float, out: str) -> None:
    if where.startswith("nats://"):
        await nats_floor_role(where, count, rate, out)
    else:
        await unix_floor_role(where, count, rate, out)


async def nats_floor_role(url: str, count: int, rate: float, out: str) -> None:
    """The same pace of small JSON lines published on core NATS, once the watcher says it listens."""
    import nats

    nc = await nats.connect(url.rsplit("/", 1)[0])
    ready = asyncio.Event()

    async def on_ready(msg) -> None:  # type: ignore[no-untyped-def]
        ready.set()

    await nc.subscribe("lag.ready", cb=on_ready)
    await asyncio.wait_for(ready.wait(), 30)
    pending: list[asyncio.Task[None]] = []
    sent = await paced(count, rate, lambda i: pending.append(asyncio.ensure_future(nc.publish("lag.floor", floor_line(i)))))
    await asyncio.gather(*pending)
    await nc.flush()
    await asyncio.sleep(0.5)
    Path(out).write_text(json.dumps({"sent": sent, "resyncs": 0}))
    await nc.close()


async def unix_floor_role(sock_path: str, count: int, rate: float, out: str) -> None:
    """The same pace of small JSON lines on a bare Unix socket."""
    connected = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        connected.set()
        try:
            await reader.read()
        except asyncio.CancelledError:
            pass

    server = await asyncio.start_unix_server(serve, sock_path)
    await connected.wait()
    await asyncio.sleep(0.5)
    writer = writers[0]
    sent = await paced(count, rate, lambda i: writer.write(floor_line(i) + b"\n"))
    await writer.drain()
    await asyncio.sleep(0.5)
    Path(out).write_text(json.dumps({"sent": sent, "resyncs": 0}))
    writer.close()
    server.close()


# ---------------------------------------------------------------- the watcher's side (this process)


def start_role(role: str, sock: str, count: int, rate: float, out: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--role", role, "--at", sock, "--count", str(count),
                             "--rate", str(rate), "--out", out], env={**os.environ, "PYTHONPATH": str(ROOT)})


async def connect(sock: str):  # type: ignore[no-untyped-def]
    from app.watch_source import WatchedSource
    from engine.transports.address import parse_address

    for _ in range(500):
        try:
            address = parse_address(sock if sock.startswith("nats://") else f"unix:{sock}")
            return await WatchedSource.connect(address, "bench", None)
        except Exception:
            await asyncio.sleep(0.02)
    raise SystemExit("the manager did not start")


async def watch_floor(sock: str, seen: dict[int, float]) -> None:
    if sock.startswith("nats://"):
        await watch_nats_floor(sock, seen)
        return
    for _ in range(500):
        try:
            reader, _ = await asyncio.open_unix_connection(sock)
            break
        except OSError:
            await asyncio.sleep(0.02)
    while line := await reader.readline():
        seen[json.loads(line)["seq"]] = time.monotonic()


async def watch_nats_floor(url: str, seen: dict[int, float]) -> None:
    import nats

    nc = await nats.connect(url.rsplit("/", 1)[0])

    async def take(msg) -> None:  # type: ignore[no-untyped-def]
        seen[json.loads(msg.data)["seq"]] = time.monotonic()

    await nc.subscribe("lag.floor", cb=take)
    await nc.flush()
    while not seen:  # say so until the floor's process starts publishing
        await nc.publish("lag.ready", b"")
        await asyncio.sleep(0.1)
    while True:
        before = len(seen)
        await asyncio.sleep(1.0)
        if len(seen) == before:
            break
    await nc.close()


async def watch_source(sock: str, seen: dict[int, float]) -> None:
    source = await connect(sock)
    source.subscribe(lambda event: seen.__setitem__(event.seq, time.monotonic()))
    await source.run()


async def watch_dashboard(sock: str, seen: dict[int, float]) -> None:
    from app.dashboard import SprintDeckApp

    class Timed(SprintDeckApp):
        def _drain_events(self) -> None:
            seqs = [event.seq for event in self._pending]
            super()._drain_events()
            now = time.monotonic()
            for seq in seqs:
                seen[seq] = now

    source = await connect(sock)
    reader = asyncio.create_task(source.run())
    app = Timed(source, config_file=Path(tempfile.mkdtemp()) / "config.json")
    async with app.run_test(size=(160, 50)) as pilot:
        while not reader.done():
            await pilot.pause(0.2)


def measure(role: str, watcher, count: int, rate: float, url: str | None) -> tuple[list[float], int]:  # type: ignore[no-untyped-def]
    directory = Path(tempfile.mkdtemp(prefix="sd-lag-"))
    sock, out = url or str(directory / "s.sock"), str(directory / "sent.json")
    process = start_role(role, sock, count, rate, out)
    seen: dict[int, float] = {}
    try:
        asyncio.run(asyncio.wait_for(watcher(sock, seen), timeout=count / rate + 60))
    finally:
        process.wait(timeout=60)
    result = json.loads(Path(out).read_text())
    sent = {int(k): v for k, v in result["sent"].items()}
    lags = [(seen[k] - t) * 1000 for k, t in sent.items() if k in seen]
    missing = len(sent) - len(lags)
    if missing:
        print(f"  {role}/{watcher.__name__}: {missing} events never seen (resyncs: {result['resyncs']})")
    return lags, int(result["resyncs"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["manager", "floor"])
    parser.add_argument("--at", help="the Unix socket's path, or the NATS address with the sprint")
    parser.add_argument("--count", type=int)
    parser.add_argument("--out")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--over", choices=["unix", "nats"], default="unix")
    args = parser.parse_args()
    if args.role == "manager":
        asyncio.run(manager_role(args.at, args.count, args.rate, args.out))
        return
    if args.role == "floor":
        asyncio.run(floor_role(args.at, args.count, args.rate, args.out))
        return
    if args.over == "nats":
        from bench_nats import start_nats

        store = Path(tempfile.mkdtemp(prefix="sd-lag-nats-"))
        server, port = start_nats(store)
        try:
            report(args, f"nats://127.0.0.1:{port}/lag")
        finally:
            server.terminate()
            server.wait()
        return
    report(args, None)


def report(args: argparse.Namespace, url: str | None) -> None:
    from app.dashboard import BATCH_HZ

    count = int(args.rate * args.seconds)
    print(f"watch lag over {args.over} at {args.rate:,.0f} events/s, {count:,} events, {os.cpu_count()} cores; dashboard draws "
          f"at most {BATCH_HZ}/s (half a period: {500 / BATCH_HZ:.0f} ms)")
    floor, _ = measure("floor", watch_floor, count, args.rate, url)
    f50, f95 = percentile(floor, 50), percentile(floor, 95)
    print(f"  {'floor (bare ' + args.over + ' lines)':<27} p50 {f50:7.2f} ms  p95 {f95:7.2f} ms")
    for name, watcher in (("watcher (applied)", watch_source), ("dashboard (drawn)", watch_dashboard)):
        lags, resyncs = measure("manager", watcher, count, args.rate, url)
        p50, p95 = percentile(lags, 50), percentile(lags, 95)
        print(f"  {name:<27} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms  ({p50 / f50:5.1f}x / {p95 / f95:5.1f}x the floor; "
              f"{len(lags):,} events, {resyncs} resyncs)")
        if "dashboard" in name:  # its own floor: waiting for the next draw, 0 to 1/BATCH_HZ s
            b50, b95 = 500 / BATCH_HZ, 950 / BATCH_HZ
            print(f"  {'  vs waiting for the draw':<27} p50 {b50:7.2f} ms  p95 {b95:7.2f} ms  "
                  f"({p50 / b50:5.2f}x / {p95 / b95:5.2f}x)")


if __name__ == "__main__":
    main()
