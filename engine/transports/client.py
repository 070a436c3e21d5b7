"""The agent's side of the socket transport: one agent id over one connection that comes back.

`SocketClient` is a `Transport`, so the agent classes of engine/agents run over it unchanged (they
subscribe their id, send, heartbeat).  It binds every connection it makes with `agent_ready` and
the agent's token, and when the connection is lost it reconnects with capped exponential backoff
and binds again, so a `serve --resume` that replaced a crashed server picks the agent up.

While disconnected, messages wait in a bounded buffer and go out first after the next handshake;
heartbeats are dropped instead (a stale heartbeat says nothing).  The server's "sprint finished"
notice ends `run`; a refused handshake (wrong token, unknown agent) raises `HandshakeRefused`,
and a server gone for longer than `give_up_after` raises `ServerUnreachable`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from engine.protocol import (
    MANAGER_ID,
    SPRINT_FINISHED,
    WELCOME,
    IPCMessage,
    MessageType,
    ProtocolError,
    make_message,
    parse_message,
)
from engine.transports.address import Address
from engine.transports.base import Inbox, Transport, TransportClosed, TransportError, check_size
from engine.transports.framing import Oversize, encode, read_lines
from engine.transports.inproc import PriorityInbox

log = logging.getLogger(__name__)

HANDSHAKE_TIMEOUT = 10.0  # seconds for the server's answer to agent_ready
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 1.0
GIVE_UP_AFTER = 300.0  # seconds without a server before `run` gives up
BUFFER_LIMIT = 10_000  # messages kept while disconnected (the oldest go first)


class HandshakeRefused(TransportError):
    """The server refused to bind this agent (wrong token, unknown id): retrying cannot help."""


class ServerUnreachable(TransportError):
    """No server accepted the agent for `give_up_after` seconds."""


@dataclass
class _Link:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    lines: AsyncIterator[bytes | Oversize]


@dataclass
class ClientEvents:
    """What the client tells its owner (the `agent` command prints these)."""

    connected: Callable[[bool], None] = lambda reconnected: None  # after each handshake
    lost: Callable[[str], None] = lambda reason: None
    retrying: Callable[[str, float], None] = lambda error, delay: None


class SocketClient(Transport):
    """A `Transport` for one agent id, connected to a `SocketTransport` server."""

    def __init__(
        self,
        address: Address,
        agent_id: str,
        *,
        token: Callable[[], str],
        give_up_after: float | None = GIVE_UP_AFTER,
        events: ClientEvents | None = None,
        channel: str = "agent",
        session: str | None = None,
    ) -> None:
        """`channel="requests"` makes a side channel of the agent (its replies only, see
        engine/transports/socket.py); `session` names the Claude Code session the agent is."""
        super().__init__()
        self.address = address
        self.agent_id = agent_id
        self._joining: dict[str, Any] = {"channel": channel} if channel != "agent" else {}
        if session is not None:
            self._joining["session"] = session
        self.events = events or ClientEvents()
        self.welcome: dict[str, Any] = {}
        self.finished = False  # the server said the sprint is over
        self.connections = 0
        self._token = token
        self._give_up_after = give_up_after
        self._inbox = PriorityInbox()
        self._subscribed = False
        self._link: _Link | None = None
        self._outbox: deque[IPCMessage] = deque(maxlen=BUFFER_LIMIT)
        self._hello: dict[str, Any] = {}  # the agent_ready payload the agent announced itself with
        self._closed = False

    # ------------------------------------------------------------ Transport

    def subscribe(self, agent_id: str) -> Inbox:
        if agent_id != self.agent_id:
            raise TransportError(f"this connection carries agent {self.agent_id!r} only, not {agent_id!r}")
        if self._subscribed:
            raise TransportError(f"{agent_id!r} is already subscribed; unsubscribe it first")
        if self._inbox.closed:
            self._inbox = PriorityInbox()
        self._subscribed = True
        return self._inbox

    def unsubscribe(self, agent_id: str) -> None:
        if agent_id == self.agent_id and self._subscribed:
            self._subscribed = False
            self._inbox.close()

    @property
    def connected(self) -> bool:
        return self._link is not None

    async def send(self, message: IPCMessage) -> None:
        """Send the message, or keep it for the next connection (heartbeats are dropped); the
        agent's own agent_ready is kept for every handshake instead."""
        if self._closed:
            raise TransportClosed("transport is closed")
        check_size(message)
        if message.type == MessageType.AGENT_READY and message.from_ == self.agent_id:
            self._announce(message)
            return
        await self._deliver(message)

    async def _deliver(self, message: IPCMessage) -> None:
        """Write the message on the connection, or keep it."""
        link = self._link
        if link is None or link.writer.is_closing():
            self._keep(message)
            return
        link.writer.write(encode(message))
        try:
            await link.writer.drain()
        except (ConnectionError, OSError):
            self._keep(message)  # the server most likely never read it: at least once

    def _announce(self, message: IPCMessage) -> None:
        """The agent's own agent_ready: the handshake of every connection sends it (with the token)."""
        self._hello = message.payload.model_dump(exclude_none=True, exclude={"token"})

    def _keep(self, message: IPCMessage) -> None:
        if message.type != MessageType.HEARTBEAT:
            self._outbox.append(message)

    async def close(self) -> None:
        self._closed = True
        if self._link is not None:
            self._link.writer.close()
            self._link = None
        self._inbox.close()
        self._pending.fail_all(TransportClosed("transport closed while waiting for a reply"))

    # ------------------------------------------------------------ connecting

    async def connect(self) -> dict[str, Any]:
        """The first connection (retried while no server answers); returns the welcome data."""
        await self._connect_with_retry()
        return self.welcome

    async def run(self) -> None:
        """Read until the sprint is over, reconnecting whenever the connection is lost."""
        while not self._closed and not self.finished:
            if self._link is None:
                await self._connect_with_retry()
                continue
            reason = await self._read_until_lost(self._link)
            if not self.finished and not self._closed:
                self.events.lost(reason)

    async def _connect_with_retry(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        delay = BACKOFF_FIRST
        while not self._closed:
            try:
                await self._connect_once()
                return
            except HandshakeRefused:
                raise
            except (OSError, TimeoutError, TransportError, ProtocolError) as exc:
                waited = loop.time() - started
                if self._give_up_after is not None and waited >= self._give_up_after:
                    raise ServerUnreachable(
                        f"no server accepted agent {self.agent_id!r} at {self.address} for {waited:.0f}s: {_why(exc)}"
                    ) from None
                pause = delay * (0.5 + random.random() / 2)
                self.events.retrying(_why(exc), pause)
                await asyncio.sleep(pause)
                delay = min(delay * 2, BACKOFF_MAX)
        raise TransportClosed("transport is closed")

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.kind == "unix":
            return await asyncio.open_unix_connection(self.address.path)
        return await asyncio.open_connection(self.address.host, self.address.port)

    async def _connect_once(self) -> None:
        """Connect, bind with agent_ready + token, wait for the welcome, then send what waited."""
        reader, writer = await self._open()
        link = _Link(reader, writer, read_lines(reader).__aiter__())
        try:
            payload = {**self._hello, **self._joining, "token": self._token()}
            hello = make_message(MessageType.AGENT_READY, self.agent_id, MANAGER_ID, payload, priority="critical",
                                 requires_response=True, response_timeout=int(HANDSHAKE_TIMEOUT * 1000))
            writer.write(encode(hello))
            await writer.drain()
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                answer = await self._await_answer(link, hello)
        except BaseException:
            writer.close()
            raise
        if _is_finished(answer):
            self.finished = True
            writer.close()
            return
        self.welcome = dict(answer.payload.data)
        self._link = link
        self.connections += 1
        self.events.connected(self.connections > 1)  # first: an agent stops superseded work before it says more
        self._flush(writer)

    async def _await_answer(self, link: _Link, hello: IPCMessage) -> IPCMessage:
        """Lines up to the reply to `hello`; messages queued for the agent before it are kept."""
        async for line in link.lines:
            message = self._parse(line)
            if message is None:
                continue
            if _is_finished(message):
                return message
            if message.correlation_id != hello.id:
                self._receive(message)
            elif message.type == MessageType.AGENT_ERROR:
                field = f"{message.payload.field}: " if message.payload.field else ""
                raise HandshakeRefused(f"the server refused agent {self.agent_id!r}: {field}{message.payload.error}")
            elif message.type == MessageType.BROADCAST_INFO and message.payload.info == WELCOME:
                return message
        raise ConnectionResetError("the server closed the connection during the handshake")

    def _flush(self, writer: asyncio.StreamWriter) -> None:
        """What waited while disconnected goes first, before anything sent from now on."""
        while self._outbox:
            writer.write(encode(self._outbox.popleft()))

    # ------------------------------------------------------------ reading

    async def _read_until_lost(self, link: _Link) -> str:
        async for line in link.lines:
            message = self._parse(line)
            if message is None:
                continue
            if _is_finished(message):
                self.finished = True
                break
            self._receive(message)
        if self._link is link:
            self._link = None
        link.writer.close()
        return "sprint finished" if self.finished else "the server closed the connection"

    def _parse(self, line: bytes | Oversize) -> IPCMessage | None:
        if isinstance(line, Oversize):
            log.warning("ignored a line from the server: %s", line.reason())
            return None
        try:
            return parse_message(line)
        except ProtocolError as exc:
            log.warning("ignored a line from the server: %s", exc)
            return None

    def _receive(self, message: IPCMessage) -> None:
        if message.correlation_id is not None and self._pending.awaits(message):
            self._notify(message)
            self._pending.resolve(message)
            return
        self._notify(message)
        if message.to == self.agent_id or message.to == "broadcast":
            try:
                self._inbox.put(message)
            except TransportClosed:
                pass


def _is_finished(message: IPCMessage) -> bool:
    return (
        message.type == MessageType.BROADCAST_INFO
        and message.from_ == MANAGER_ID
        and message.payload.info == SPRINT_FINISHED
    )


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
