"""Messages per second through InProcessTransport, next to a raw asyncio.Queue floor.

Run by hand:  .venv/bin/python benchmarks/bench_bus.py [--messages N] [--rounds R]

One producer sends N pre-built messages to one agent whose consumer task takes them from its inbox;
the floor does the same with `asyncio.Queue.put` / `get` in the same run.  Rounds alternate between
the two and the best round of each is reported, which filters out a noisy neighbour on the machine.
Also printed: the deque inbox against a heapq inbox (the choice in engine/transports/inproc.py)
and the per-message size check against a full serialisation.  Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.payloads import PRIORITY_RANK  # noqa: E402
from engine.protocol import IPCMessage, MANAGER_ID, make_message  # noqa: E402
from engine.transports import inproc  # noqa: E402
from engine.transports.base import _message_bound  # noqa: E402
from engine.transports.inproc import InProcessTransport, PriorityInbox  # noqa: E402

PRIORITIES = ("low", "medium", "high", "critical")


def build_messages(count: int, mixed: bool = False, distinct: int = 1_000) -> list[IPCMessage]:
    """`count` realistic task_update messages (medium, or all four priorities when mixed).

    They cycle over `distinct` objects: a live message is built just before it is sent, so it is
    hot in the CPU cache; 200,000 distinct pre-built messages would measure cache misses instead.
    """
    pool = [
        make_message(
            "task_update",
            f"agent-{n % 8}",
            MANAGER_ID,
            {"taskId": f"T{n % 50}", "attempt": 1, "progress": (n % 100) / 100, "message": "running tests"},
            priority=PRIORITIES[n % 4] if mixed else "medium",
        )
        for n in range(distinct)
    ]
    return [pool[n % distinct] for n in range(count)]


async def queue_floor(messages: list[IPCMessage]) -> float:
    queue: asyncio.Queue[IPCMessage] = asyncio.Queue()

    async def consume() -> None:
        for _ in range(len(messages)):
            await queue.get()

    started = time.perf_counter()
    consumer = asyncio.create_task(consume())
    for message in messages:
        await queue.put(message)
    await consumer
    return len(messages) / (time.perf_counter() - started)


async def transport_rate(messages: list[IPCMessage], inbox_class: type = PriorityInbox) -> float:
    inproc.PriorityInbox = inbox_class  # the class subscribe() instantiates
    transport = InProcessTransport()
    inbox = transport.subscribe(MANAGER_ID)

    async def consume() -> None:
        for _ in range(len(messages)):
            await inbox.get()

    started = time.perf_counter()
    consumer = asyncio.create_task(consume())
    for message in messages:
        await transport.send(message)
    await consumer
    rate = len(messages) / (time.perf_counter() - started)
    await transport.close()
    inproc.PriorityInbox = PriorityInbox
    return rate


class HeapInbox(PriorityInbox):
    """The alternative to four deques: one heap of (rank, counter, message), same bookkeeping."""

    __slots__ = ("_heap", "_counter")

    def __init__(self) -> None:
        super().__init__()
        self._heap: list[tuple[int, int, IPCMessage]] = []
        self._counter = itertools.count()

    def put(self, message: IPCMessage) -> None:
        if self._closed:
            raise RuntimeError("closed")
        heapq.heappush(self._heap, (PRIORITY_RANK[message.priority], next(self._counter), message))
        self._size += 1
        if self._waiters:
            self._wake_one()

    def get_nowait(self) -> IPCMessage | None:
        if self._size:
            self._size -= 1
            return heapq.heappop(self._heap)[2]
        return None

    async def get(self) -> IPCMessage:
        while not self._size:
            await self._wait()
        self._size -= 1
        return heapq.heappop(self._heap)[2]


def inbox_rate(make_inbox: Callable[[], object], messages: list[IPCMessage], backlog: int) -> float:
    """put/get pairs per second with `backlog` messages kept queued (mixed priorities)."""
    inbox = make_inbox()
    put, get = inbox.put, inbox.get_nowait  # type: ignore[attr-defined]
    for message in messages[:backlog]:
        put(message)
    started = time.perf_counter()
    for message in messages:
        put(message)
        get()
    return len(messages) / (time.perf_counter() - started)


def per_message_us(func: Callable[[IPCMessage], object], messages: list[IPCMessage]) -> float:
    started = time.perf_counter()
    for message in messages:
        func(message)
    return (time.perf_counter() - started) / len(messages) * 1e6


def compare(deques: float, heap: float) -> str:
    return f"4 deques {deques:>10,.0f}/s   heapq {heap:>10,.0f}/s   deques/heap {deques / heap:.2f}"


async def best_of(rounds: int, *runs: Callable[[], Awaitable[float]]) -> list[float]:
    best = [0.0] * len(runs)
    for _ in range(rounds):
        for index, run in enumerate(runs):
            best[index] = max(best[index], await run())
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    messages = build_messages(args.messages)
    floor, bus = asyncio.run(
        best_of(args.rounds, lambda: queue_floor(messages), lambda: transport_rate(messages))
    )
    machine = f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores"
    print(f"{machine}, {args.messages:,} messages, best of {args.rounds}")
    print(f"asyncio.Queue floor      {floor:>12,.0f} msg/s")
    print(f"InProcessTransport       {bus:>12,.0f} msg/s   ratio {bus / floor:.2f} (target >= 0.40)")

    mixed = build_messages(args.messages, mixed=True)
    deques, heap = asyncio.run(
        best_of(
            args.rounds,
            lambda: transport_rate(mixed, PriorityInbox),
            lambda: transport_rate(mixed, HeapInbox),
        )
    )
    print(f"mixed priorities, through the transport: {compare(deques, heap)}")
    for backlog in (0, 1_000):
        deques = max(inbox_rate(PriorityInbox, mixed, backlog) for _ in range(args.rounds))
        heap = max(inbox_rate(HeapInbox, mixed, backlog) for _ in range(args.rounds))
        print(f"inbox put+get alone, backlog {backlog:>5}: {compare(deques, heap)}")

    sample = messages[:50_000]
    bound = min(per_message_us(_message_bound, sample) for _ in range(3))
    wire = min(per_message_us(lambda m: len(m.wire().encode()), sample) for _ in range(3))
    print(f"size check per message: bound {bound:.2f} us   full serialisation {wire:.2f} us")


if __name__ == "__main__":
    main()
