"""The embedded default transport: agents and the manager on one asyncio event loop.

Messages are handed over as objects (no JSON), so a message must not be mutated after it is sent:
the recipient (every recipient, for a broadcast) gets the very same object.

An inbox keeps one deque per priority rather than one heap.  Four deques make a put one `append`
and a get a scan over at most four lanes, with no `(rank, counter, message)` tuple to allocate and
no O(log n) sift.  Measured (benchmarks/BENCHMARKS.md): level with a heap on an empty inbox,
2.5-2.9x faster once a backlog builds, which is when the bus's speed matters.
"""

from __future__ import annotations

import asyncio
from collections import deque

from engine.payloads import PRIORITY_RANK
from engine.protocol import BROADCAST, IPCMessage, MAX_MESSAGE_BYTES
from engine.transports.base import (
    Inbox,
    Transport,
    TransportClosed,
    TransportError,
    UnknownRecipient,
    _message_bound,
    check_size,
)


class PriorityInbox(Inbox):
    """An agent's inbox: critical, high, medium, low lanes, each FIFO.

    Several readers may wait on one inbox; each message goes to exactly one of them.  Waiters are
    woken, not handed the message, so a reader cancelled just after its wake-up loses nothing.
    """

    __slots__ = ("_lanes", "_size", "_waiters", "_closed")

    def __init__(self) -> None:
        self._lanes: tuple[deque[IPCMessage], ...] = tuple(deque() for _ in PRIORITY_RANK)
        self._size = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    def __len__(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, message: IPCMessage) -> None:
        """Queue `message` in its priority lane and wake one waiting reader."""
        if self._closed:
            raise TransportClosed("inbox is closed")
        self._lanes[PRIORITY_RANK[message.priority]].append(message)
        self._size += 1
        if self._waiters:
            self._wake_one()

    def get_nowait(self) -> IPCMessage | None:
        if self._size:
            for lane in self._lanes:
                if lane:
                    self._size -= 1
                    return lane.popleft()
        return None

    async def get(self) -> IPCMessage:
        while not self._size:
            await self._wait()
        self._size -= 1
        for lane in self._lanes:
            if lane:
                return lane.popleft()
        raise AssertionError("inbox size and lanes disagree")  # pragma: no cover

    async def _wait(self) -> None:
        """Sleep until a put or close wakes this reader."""
        if self._closed:
            raise TransportClosed("inbox is closed")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            self._pass_on_wakeup(waiter)
            raise

    def close(self) -> None:
        """End the inbox: readers drain what is queued, then see `TransportClosed` / the end."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _wake_one(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _pass_on_wakeup(self, waiter: asyncio.Future[None]) -> None:
        """A cancelled reader that had been woken passes its wake-up to the next reader."""
        if waiter.done() and not waiter.cancelled() and self._size:
            self._wake_one()
        elif not waiter.done():
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass


class InProcessTransport(Transport):
    """Asyncio-only transport: per-agent `PriorityInbox`es in one process, one event loop."""

    def __init__(self) -> None:
        super().__init__()
        self._inboxes: dict[str, PriorityInbox] = {}
        self._closed = False

    def subscribe(self, agent_id: str) -> PriorityInbox:
        if self._closed:
            raise TransportClosed("transport is closed")
        if agent_id == BROADCAST:
            raise TransportError(f"{BROADCAST!r} is reserved and cannot be subscribed")
        if agent_id in self._inboxes:
            raise TransportError(f"{agent_id!r} is already subscribed; unsubscribe it first")
        inbox = self._inboxes[agent_id] = PriorityInbox()
        return inbox

    def unsubscribe(self, agent_id: str) -> None:
        inbox = self._inboxes.pop(agent_id, None)
        if inbox is not None:
            inbox.close()

    @property
    def subscribers(self) -> list[str]:
        """The subscribed agent ids, in subscription order."""
        return list(self._inboxes)

    async def send(self, message: IPCMessage) -> None:
        # The hot path: one bound, one reply check, one dict lookup.  Broadcast and a closed
        # transport both miss the lookup (nobody subscribes "broadcast"; close empties the table).
        if _message_bound(message) > MAX_MESSAGE_BYTES:
            check_size(message)  # the bound is not the size: measure before refusing
        if message.correlation_id is not None and self._pending.awaits(message):
            self._notify(message)
            self._pending.resolve(message)
            return
        inbox = self._inboxes.get(message.to)
        if inbox is None:
            self._deliver_elsewhere(message)
            return
        if self._observers:
            self._notify(message)
        inbox.put(message)

    def _deliver_elsewhere(self, message: IPCMessage) -> None:
        if self._closed:
            raise TransportClosed("transport is closed")
        if message.to != BROADCAST:
            raise UnknownRecipient(message.to)
        self._broadcast(message)

    def _broadcast(self, message: IPCMessage) -> None:
        self._notify(message)
        sender = message.from_
        for agent_id, inbox in self._inboxes.items():
            if agent_id != sender:
                inbox.put(message)

    async def close(self) -> None:
        self._closed = True
        for inbox in self._inboxes.values():
            inbox.close()
        self._inboxes.clear()
        self._pending.fail_all(TransportClosed("transport closed while waiting for a reply"))
