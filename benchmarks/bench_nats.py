"""Request/reply and messages/s over the NATS transport, next to the Unix-socket transport and a
bare nats-py request/reply echo, in one run (issue 17).

A nats-server with JetStream is started on a free loopback port in a temporary directory.  Three
paths, each measured from the agent's side in this process (one event loop, so the Python costs
are alike):
- nats: a `NatsClient` (agent-a) asks a `NatsTransport` manager, whose loop answers every request
  from its inbox: the request and its reply on core NATS (agent -> server -> manager's lane -> inbox,
  reply -> server -> agent), each behind the last message its side stored in the stream (one
  `task_update` each way before the rounds, so the ordering headers and gates are on the path);
- unix: the same over `SocketClient` / `SocketTransport` on a Unix socket;
- echo: nats-py's own request/reply (core NATS) to a subscriber that responds with the same bytes,
  on a connection of its own: the floor of one round trip through the server.
The request is a `resource_lock` message of the usual size.  Rounds alternate between the paths in
blocks after a warm-up (benchmarks/interleaved.py).  Then messages/s: N `task_update`s sent by the
agent as fast as it can, until the manager's inbox has all N (echo: N publishes until the
subscriber counted N).  The target (issue 17) is NATS p50 <= 1.5 x the bare echo p50.

Figures are printed, never asserted.  Usage:
    .venv/bin/python benchmarks/bench_nats.py [--rounds 400] [--warmup 50] [--block 50] [--messages 5000] [--shared]

With two CPUs or more the nats-server runs on the last one and this process on the others, as a
broker on a machine of its own would (issue 17: agents on a laptop, a cloud box and CI); on a
shared core every microsecond of Python is added to each round trip, and on two cores the OS
puts them together about half the time, so the p50 becomes bimodal.  `--shared` measures that.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import nats  # noqa: E402
from engine.protocol import MANAGER_ID, WELCOME, IPCMessage, make_message, reply_to  # noqa: E402
from engine.transports.address import bound_address, listen, parse_address  # noqa: E402
from engine.transports.client import SocketClient  # noqa: E402
from engine.transports.nats import NatsTransport  # noqa: E402
from engine.transports.nats_client import NatsClient  # noqa: E402
from engine.transports.socket import SocketTransport  # noqa: E402
from interleaved import Round, measure, pct  # noqa: E402  (benchmarks/, the script's own folder)

TOKENS = {"agent-a": "bench-token"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nats(store: Path, cpus: set[int] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """A nats-server with JetStream; on `cpus` only, if given."""
    port = free_port()
    server = subprocess.Popen([shutil.which("nats-server") or "nats-server", "-js", "-a", "127.0.0.1", "-p", str(port),
                               "-sd", str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus))
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, port
        except OSError:
            time.sleep(0.01)
    raise SystemExit("nats-server did not start")


def lock_request(i: int) -> IPCMessage:
    return make_message("resource_lock", "agent-a", MANAGER_ID, {"resourceId": f"src/file_{i % 50}.py", "lockType": "write"})


def grant(request: IPCMessage) -> IPCMessage:
    payload = {"resourceId": request.payload.resource_id, "lockType": "write", "lockId": "L1", "token": 1}
    return reply_to(request, "resource_lock", payload)


async def manager_loop(transport: Any, inbox: Any) -> None:
    """The manager's side: welcome the agent, answer every lock request, count the rest."""
    async for message in inbox:
        if message.type == "agent_ready" and message.requires_response:
            data = {"agentId": message.from_, "heartbeatInterval": 60}
            await transport.send(reply_to(message, "broadcast_info", {"info": WELCOME, "data": data}))
        elif message.type == "resource_lock":
            await transport.send(grant(message))


class Path_:
    """One path: its request round and its burst of one-way messages."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.received = 0

    async def round(self, i: int) -> tuple[float, float]:
        raise NotImplementedError

    async def burst(self, count: int) -> float:
        raise NotImplementedError


class Transported(Path_):
    """A sprintdeck transport: manager and agent client in this process."""

    def __init__(self, name: str, transport: Any, client: Any) -> None:
        super().__init__(name)
        self.transport, self.client = transport, client
        self.inbox: Any = None

    async def start(self) -> None:
        self.inbox = self.transport.subscribe(MANAGER_ID)
        self.counted = self.transport.subscribe("counter")  # where the burst's updates go
        self.manager = asyncio.create_task(manager_loop(self.transport, self.inbox))
        await self.transport.start()
        await self.client.connect()
        self.agent_inbox = self.client.subscribe("agent-a")
        self.reader = asyncio.create_task(self.client.run())
        # One ordinary (stored, over NATS) message each way first, as in any sprint.
        await self.client.send(make_message("task_update", "agent-a", MANAGER_ID, {"taskId": "T1", "attempt": 1}))
        await self.transport.send(make_message("task_update", MANAGER_ID, "agent-a", {"taskId": "T1", "attempt": 1}))
        await asyncio.wait_for(self.agent_inbox.get(), 10)

    async def round(self, i: int) -> tuple[float, float]:
        request = lock_request(i)  # built before the clock starts, as the echo's bytes are
        started = time.perf_counter()
        await self.client.request(request, timeout=10)
        took = time.perf_counter() - started
        return took, took

    async def burst(self, count: int) -> float:
        # Agents may not message each other's inboxes with task_update; broadcast_info to the
        # manager's "counter" subscriber would be refused too, so count on the manager's own inbox.
        seen = 0
        done = asyncio.Event()

        def tap(message: IPCMessage) -> None:
            nonlocal seen
            if message.type == "task_update" and message.payload.message == "burst":
                seen += 1
                if seen == count:
                    done.set()

        self.transport.tap(tap)
        started = time.perf_counter()
        for i in range(count):
            await self.client.send(make_message("task_update", "agent-a", MANAGER_ID,
                                                {"taskId": "T1", "attempt": 1, "message": "burst"}))
        await asyncio.wait_for(done.wait(), 120)
        return count / (time.perf_counter() - started)

    async def stop(self) -> None:
        await self.client.close()
        self.reader.cancel()
        self.manager.cancel()
        await self.transport.close()


class Echo(Path_):
    """nats-py alone: core request/reply to a responder, and publish to a counting subscriber."""

    def __init__(self, url: str) -> None:
        super().__init__("echo")
        self.url = url

    async def start(self) -> None:
        self.server = await nats.connect(self.url)
        self.nc = await nats.connect(self.url)
        self.count = 0
        self.done = asyncio.Event()
        self.target = 0

        async def respond(msg: Any) -> None:
            await msg.respond(msg.data)

        async def count(msg: Any) -> None:
            self.count += 1
            if self.count == self.target:
                self.done.set()

        await self.server.subscribe("bench.echo", cb=respond)
        await self.server.subscribe("bench.count", cb=count)
        await self.server.flush()

    async def round(self, i: int) -> tuple[float, float]:
        body = lock_request(i).wire().encode()
        started = time.perf_counter()
        await self.nc.request("bench.echo", body, timeout=10)
        took = time.perf_counter() - started
        return took, took

    async def burst(self, count: int) -> float:
        body = make_message("task_update", "agent-a", MANAGER_ID, {"taskId": "T1", "attempt": 1, "message": "burst"}).wire().encode()
        self.count, self.target = 0, count
        self.done.clear()
        started = time.perf_counter()
        for _ in range(count):
            await self.nc.publish("bench.count", body)
        await asyncio.wait_for(self.done.wait(), 120)
        return count / (time.perf_counter() - started)

    async def stop(self) -> None:
        await self.nc.close()
        await self.server.close()


async def run(args: argparse.Namespace, url: str, directory: Path) -> dict[str, Any]:
    nats_address = parse_address(f"{url}/bench")
    unix_address = parse_address(f"unix:{directory}/s/bench.sock", listening=True)
    listener, _ = listen(unix_address)
    unix_address = bound_address(unix_address, listener)
    paths = [
        Transported("nats", NatsTransport(nats_address, tokens=TOKENS),
                    NatsClient(nats_address, "agent-a", token=lambda: TOKENS["agent-a"])),
        Transported("unix", SocketTransport(listener, unix_address, tokens=TOKENS),
                    SocketClient(unix_address, "agent-a", token=lambda: TOKENS["agent-a"])),
        Echo(url),
    ]
    for path in paths:
        await path.start()  # type: ignore[attr-defined]
    try:
        rounds: dict[str, Round] = {path.name: path.round for path in paths}
        samples = await measure(rounds, args.rounds, args.warmup, args.block)
        rates = {path.name: await path.burst(args.messages) for path in paths}
    finally:
        for path in paths:
            await path.stop()  # type: ignore[attr-defined]
    figures: dict[str, Any] = {}
    for name, values in samples.items():
        times = [took for took, _ in values]
        figures[name] = {"p50_us": round(pct(times, 50) * 1e6), "p99_us": round(pct(times, 99) * 1e6),
                         "messages_per_s": round(rates[name])}
    figures["nats_p50_over_echo_p50"] = round(figures["nats"]["p50_us"] / figures["echo"]["p50_us"], 2)
    figures["unix_p50_over_echo_p50"] = round(figures["unix"]["p50_us"] / figures["echo"]["p50_us"], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--shared", action="store_true",
                        help="leave the server and this process where the OS schedules them (default: apart)")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="sd-bench-nats-", dir="/tmp"))
    cpus = sorted(os.sched_getaffinity(0))
    args.apart = not args.shared and len(cpus) >= 2
    server, port = start_nats(directory / "js", {cpus[-1]} if args.apart else None)
    if args.apart:  # as a broker on a machine of its own: it never takes this process's core
        os.sched_setaffinity(0, set(cpus[:-1]))
    try:
        figures = asyncio.run(run(args, f"nats://127.0.0.1:{port}", directory))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(directory, ignore_errors=True)
    version = subprocess.run(["nats-server", "--version"], capture_output=True, text=True).stdout.strip()
    figures["machine"] = f"{platform.python_implementation()} {platform.python_version()}, {version}"
    figures["placement"] = "server on its own CPU" if args.apart else "as the OS schedules"
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
