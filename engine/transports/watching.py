"""What a transport needs from the manager's side of the watch protocol (engine/watchers.py).

A transport that takes watchers (the socket and NATS transports) hands each watcher's hello and
its later requests to a `WatchDesk`, with a `Sink` that writes to that watcher.  The desk lives
above the transports (it reads the manager's state), so this interface is all they import.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from engine.protocol import IPCMessage

WATCH_CHANNEL = "watch"  # agent_ready's channel for a watcher (`sprintdeck watch`)
WATCHER_PREFIX = "watch:"  # what a watcher's connection is bound to: never an agent's id
RESYNC_INFO = "resync"  # broadcast_info from a watcher that lost messages: send it a fresh snapshot

Sink = Callable[[IPCMessage], Awaitable[None]]  # writes one message to the watcher, waiting while it is full


class WatchLink(Protocol):
    """One attached watcher, as the desk knows it."""

    name: str


class WatchDesk(Protocol):
    def refusal(self, hello: IPCMessage) -> tuple[str, str] | None:
        """The field at fault and why the watcher's hello is refused (a wrong operator token), else None."""
        ...

    def attach(self, hello: IPCMessage, sink: Sink) -> WatchLink:
        """Start feeding the watcher: a snapshot answering its hello, then the events."""
        ...

    def operate(self, link: WatchLink, request: IPCMessage) -> IPCMessage:
        """Carry out an operator request; the reply to send back."""
        ...

    def resync(self, link: WatchLink) -> None:
        """The watcher lost messages on the way (NATS dropped them): its next message is a snapshot."""
        ...

    def detach(self, link: WatchLink) -> None: ...

    async def finish(self, timeout: float) -> None:
        """The sprint is over: let the watchers take what is pending, then stop feeding them."""
        ...


class WatchWire(Protocol):
    """The watcher's side of one transport (a socket, or NATS subjects): messages in order."""

    async def receive(self) -> IPCMessage | None:
        """The next message from the manager; None once the watch is over (or the server gone)."""
        ...

    async def send(self, message: IPCMessage) -> bool:
        """To the manager; False when it could not be sent."""
        ...

    async def close(self) -> None: ...
