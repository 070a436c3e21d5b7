"""One accepted connection of the socket transport, and the loop that accepts them.

A `Connection` is what the transport knows of a peer: its streams, the agent it is bound to, its
writer task, and what it may cost (its reading `Budget`, its `Backlog`).  `accept` takes new
connections at a bounded rate (engine/transports/limits.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable, Coroutine
from typing import Any

from engine.protocol import IPCMessage
from engine.transports.framing import encode
from engine.transports.limits import SEND_BUFFER, Backlog, Budget

log = logging.getLogger(__name__)

ACCEPT_RETRY = 0.1  # seconds before accepting again after the system refused (out of descriptors)


class Connection:
    """One accepted connection: its streams, the agent it is bound to and its writer task."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.agent_id: str | None = None
        self.side = False  # a `requests` channel: it gets the replies to its own requests only
        self.hello_id: str | None = None  # its agent_ready, until the manager answers it
        self.pump: asyncio.Task[None] | None = None
        self.task: asyncio.Task[object] | None = None  # the one reading it
        self.unyielded = 0  # lines read since it last let the other connections have a turn
        self.written = 0  # messages its pump wrote since it last let the others have a turn
        self.closing = False
        self.peer_pid = peer_pid(writer)  # a Unix socket peer's process, else None
        self.budget = Budget()
        self.backlog = Backlog()

    def write(self, message: IPCMessage) -> None:
        if not self.closing and not self.writer.is_closing():
            self.writer.write(encode(message))

    @property
    def unread(self) -> int:
        """Bytes written to the peer that it has not taken yet."""
        return self.writer.transport.get_write_buffer_size()

    @property
    def source(self) -> str:
        """Whom its refusals are counted against: its agent, or the unauthenticated peers of its address."""
        if self.agent_id is not None:
            return f"agent {self.agent_id!r}"
        return f"unauthenticated peers on {self.peer.rpartition(':')[0] if self.peer.startswith('tcp:') else self.peer}"

    def close(self) -> None:
        self.closing = True
        if self.pump is not None:
            self.pump.cancel()
        self.writer.close()

    def abort(self) -> None:
        """Close now, dropping what the peer has not read (`close` would wait for it to read)."""
        self.close()
        self.writer.transport.abort()


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


async def accept(listener: socket.socket, serve: Serve, budget: Budget) -> None:
    """Hand each new connection to `serve`, at `budget`'s rate at most: beyond it they wait in the
    listener's backlog (and, when that is full, the system refuses them), costing this process
    nothing.  (asyncio's `start_server` accepts as fast as they come.)"""
    loop = asyncio.get_running_loop()
    while True:
        try:
            sock, _ = await loop.sock_accept(listener)
        except OSError as exc:
            log.warning("could not accept a connection: %s", exc.strerror or exc)
            await asyncio.sleep(ACCEPT_RETRY)
            continue
        # A peer that stops reading is noticed once this much waits in the system for it: TCP
        # would otherwise take megabytes of replies off our hands that the peer never reads.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        reader = asyncio.StreamReader()
        # A plain callback that starts our own task: the task `StreamReaderProtocol` makes for a
        # coroutine logs an error when it is cancelled, as closing the transport does.
        protocol = asyncio.StreamReaderProtocol(reader, lambda r, w: loop.create_task(serve(r, w)))
        try:
            await loop.connect_accepted_socket(lambda: protocol, sock)
        except OSError:
            sock.close()
        if wait := budget.charge(1):
            await asyncio.sleep(wait)


def peer_pid(writer: asyncio.StreamWriter) -> int | None:
    """The process at the other end of a Unix socket (SO_PEERCRED, Linux), else None."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except OSError:
        return None
    return pid or None


def peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else peer[0]
        return f"tcp:{host}:{peer[1]}"
    return "unix"
