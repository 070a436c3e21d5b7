"""The manager's side of the socket transport: Unix domain socket or TCP on loopback (DESIGN §9).

The manager and the plan's embedded agents (simulated, shell) keep their in-process inboxes, as
with `InProcessTransport`; each external agent of the plan gets an inbox too, from the start,
which a connection drains onto the wire while that agent is connected.  So a message to an agent
that is not connected (yet, or any more) waits in its inbox, in priority order, until it
(re)connects; whether it is dead is the manager's call, from heartbeats, not the transport's.

On the wire each line is one message's `IPCMessage.wire()` JSON.  A connection is bound to an
agent by its first message, `agent_ready` carrying that agent's token; the manager answers it
with a `broadcast_info` "welcome" (the agent's plan entry, the heartbeat timing, the workspace),
or refuses it (then the connection closes).  An agent has one connection of its own, which takes
its messages; it may also open side channels (`channel: requests`, e.g. a Claude Code hook call)
that get only the replies to their own requests.  After the handshake, a message whose `from` is
not the bound agent, or of a type only the manager sends, is refused.  Refusals (bad token, spoofed sender, malformed or oversize lines, unknown recipients)
get an `agent_error` reply naming the field and are handed to `on_refused`, which `serve`
journals; the connection, and the engine, go on.  Tokens never reach the journal: they are
stripped from `agent_ready` before the manager sees it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable, Collection, Mapping

from engine.protocol import (
    MANAGER_ID,
    SPRINT_FINISHED,
    IPCMessage,
    MessageType,
    ProtocolError,
    agent_traffic_refusal,
    make_message,
    parse_message,
)
from engine.refusal import Refusal
from engine.transports.address import Address
from engine.transports.base import TransportClosed, TransportError, UnknownRecipient, check_size
from engine.transports.framing import Oversize, encode, read_lines
from engine.transports.inproc import InProcessTransport, PriorityInbox

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 5.0  # seconds `finish` waits for connected agents to receive what is queued for them
HELLO_TIMEOUT = 30.0  # seconds a connection may stay unbound before it is closed


class _Connection:
    """One accepted connection: its streams, the agent it is bound to and its writer task."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.agent_id: str | None = None
        self.side = False  # a `requests` channel: it gets the replies to its own requests only
        self.hello_id: str | None = None  # its agent_ready, until the manager answers it
        self.pump: asyncio.Task[None] | None = None
        self.closing = False
        self.peer_pid = _peer_pid(writer)  # a Unix socket peer's process, else None

    def write(self, message: IPCMessage) -> None:
        if not self.closing and not self.writer.is_closing():
            self.writer.write(encode(message))

    def close(self) -> None:
        self.closing = True
        if self.pump is not None:
            self.pump.cancel()
        self.writer.close()


class SocketTransport(InProcessTransport):
    """In-process inboxes for local parties, socket connections for the plan's external agents.

    `listener` is a bound, listening socket (`engine.transports.address.listen`); `tokens` maps
    each external agent id to its token.  The manager answers each agent_ready (welcome or refusal);
    a reply to a request that came on a connection goes back on that connection.
    """

    def __init__(
        self,
        listener: socket.socket,
        address: Address,
        *,
        tokens: Mapping[str, str],
        local: Collection[str] = (),
        on_refused: Callable[[Refusal], None] | None = None,
    ) -> None:
        super().__init__()
        self.address = address
        self.on_refused = on_refused
        #: Called with (agent id, peer pid or None) when an agent's own connection closes mid-sprint.
        self.on_disconnected: Callable[[str, int | None], None] | None = None
        self._listener = listener
        self._tokens = dict(tokens)
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_Connection] = set()
        self._bound: dict[str, _Connection] = {}
        self._routes: dict[str, _Connection] = {}  # request id -> the connection its reply goes to
        self._unsent: dict[str, IPCMessage] = {}  # taken from an inbox, not known to be written
        self._inbound = True
        self._local = frozenset(local)  # agents of this process (kind: claude) whose runs open side channels
        for agent_id in self._tokens:
            if agent_id not in self._local:
                self.subscribe(agent_id)

    # ------------------------------------------------------------ lifecycle

    @property
    def connected(self) -> list[str]:
        """The external agents connected right now."""
        return sorted(self._bound)

    async def start(self) -> None:
        """Accept connections (the listener already listens; early clients wait in its backlog)."""
        if self.address.kind == "unix":
            self._server = await asyncio.start_unix_server(self._serve, sock=self._listener)
        else:
            self._server = await asyncio.start_server(self._serve, sock=self._listener)

    def discard_queued(self, agent_id: str) -> int:
        """Drop what waits for an agent the manager declared dead: its assignments went elsewhere,
        and running them on its return would do the work twice.  Returns how many were dropped."""
        inbox = self._inboxes.get(agent_id)
        if inbox is None or agent_id not in self._tokens:
            return 0
        dropped = len(_drain(inbox)) + (self._unsent.pop(agent_id, None) is not None)
        if dropped:
            log.info("dropped %d messages queued for %s, declared dead", dropped, agent_id)
        return dropped

    def stop_inbound(self) -> None:
        """The sprint is over: nothing more from agents is taken (or journaled); sending goes on."""
        self._inbound = False

    async def finish(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """End of sprint: let connected agents receive what is queued, tell them, then close."""
        self.stop_inbound()
        try:
            async with asyncio.timeout(timeout):
                while any(len(self._inboxes[a]) or a in self._unsent for a in self._bound if a in self._inboxes):
                    await asyncio.sleep(0.01)
        except TimeoutError:
            log.warning("agents %s did not take all their messages before the end", ", ".join(self.connected))
        for agent_id, connection in list(self._bound.items()):
            connection.write(_finished(agent_id))
            try:
                async with asyncio.timeout(1.0):
                    await connection.writer.drain()
            except (TimeoutError, ConnectionError, OSError):
                pass
        await self.close()

    async def close(self) -> None:
        self._inbound = False
        if self._server is not None:
            self._server.close()
        else:
            self._listener.close()
        connections = list(self._connections)
        for connection in connections:
            connection.close()
        await asyncio.gather(*(c.pump for c in connections if c.pump), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        self._remove_socket_file()
        await super().close()

    def _remove_socket_file(self) -> None:
        if self.address.kind != "unix":
            return
        try:
            if stat.S_ISSOCK(os.lstat(self.address.path).st_mode):
                os.unlink(self.address.path)
        except OSError:
            pass

    # ------------------------------------------------------------ one connection

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(reader, writer, _peer_name(writer))
        self._connections.add(connection)
        deadline = asyncio.get_running_loop().call_later(HELLO_TIMEOUT, _close_if_unbound, connection)
        try:
            async for line in read_lines(reader):
                if not self._inbound:
                    self._after_the_end(connection)
                elif isinstance(line, Oversize):
                    self._refuse(connection, "", line.reason(), close=connection.agent_id is None)
                else:
                    await self._on_line(connection, line)
                if connection.closing:
                    break
        except Exception:  # a bug must not take the server down; this connection ends
            log.exception("socket connection %s failed", connection.peer)
        finally:
            deadline.cancel()
            self._drop(connection)

    async def _on_line(self, connection: _Connection, line: bytes) -> None:
        try:
            message = parse_message(line)
        except ProtocolError as exc:
            self._refuse(connection, exc.field, exc.reason, message_id=exc.message_id, close=connection.agent_id is None)
            return
        if connection.agent_id is None:
            await self._bind(connection, message)
        else:
            await self._forward(connection, message)

    def _after_the_end(self, connection: _Connection) -> None:
        """After the sprint, a newcomer is told it is over; a bound agent's late lines are ignored."""
        if connection.agent_id is None:
            connection.write(_finished("unknown"))
            connection.closing = True

    async def _bind(self, connection: _Connection, message: IPCMessage) -> None:
        """The first message: agent_ready from an external agent of the plan, with its token.

        The manager answers it: a refusal (a second Claude Code session for a live one, say)
        closes the connection; a welcome makes it the agent's own connection, replacing an older
        one, or a side channel (`channel: requests`) that gets only the replies to its requests.
        """
        problem = self._check_hello(message)
        if problem is not None:
            field, reason = problem
            self._refuse(connection, field, reason, message, security=True, close=True)
            return
        connection.agent_id = message.from_
        connection.hello_id = message.id
        connection.side = message.payload.channel == "requests"
        self._routes[message.id] = connection
        hello = _without_token(message).model_copy(update={"requires_response": True})
        if not await self._deliver(connection, hello):
            connection.closing = True

    def _check_hello(self, message: IPCMessage) -> tuple[str, str] | None:
        if message.type != MessageType.AGENT_READY:
            return "type", f"the first message on a connection must be agent_ready with the agent's token, not {message.type}"
        claimed = message.payload.agent_id
        if claimed is not None and claimed != message.from_:
            return "payload.agentId", f"{claimed!r} must equal the message's from ({message.from_!r})"
        expected = self._tokens.get(message.from_)
        if expected is None:
            known = ", ".join(sorted(self._tokens)) or "none"
            return "from", f"no external agent {message.from_!r} in this sprint (external agents: {known})"
        token = message.payload.token
        if not token:
            return "payload.token", f"missing: agent {message.from_!r} must send its token"
        if not hmac.compare_digest(token.encode(), expected.encode()):
            return "payload.token", f"wrong token for agent {message.from_!r}"
        if message.from_ in self._local and message.payload.channel != "requests":
            return "payload.channel", f"agent {message.from_!r} runs in the manager's process: join with channel requests"
        return None

    def joining(self, agent_id: str) -> tuple[str, str] | None:
        token = self._tokens.get(agent_id)
        return None if token is None else (str(self.address), token)

    def _take_over(self, agent_id: str) -> None:
        """A reconnecting agent wins over its old connection (which may be half-open)."""
        old = self._bound.pop(agent_id, None)
        if old is not None:
            old.write(
                make_message(
                    MessageType.AGENT_ERROR,
                    MANAGER_ID,
                    agent_id,
                    {"error": f"a newer connection of agent {agent_id!r} replaced this one"},
                )
            )
            old.close()

    async def _forward(self, connection: _Connection, message: IPCMessage) -> None:
        bound = connection.agent_id
        if message.from_ != bound:
            reason = f"this connection is bound to agent {bound!r}; a message from {message.from_!r} is refused"
            self._refuse(connection, "from", reason, message, security=True)
        elif (refused := agent_traffic_refusal(message)) is not None:  # a server notice, or not for agents
            self._refuse(connection, *refused, message, security=True)
        else:
            if message.type == MessageType.AGENT_READY:
                message = _without_token(message)
            if connection.side and message.requires_response:
                self._routes[message.id] = connection
            await self._deliver(connection, message)

    async def _deliver(self, connection: _Connection, message: IPCMessage) -> bool:
        """Route a message from the connection as if sent in-process; False if it was refused."""
        try:
            await self.send(message)
            return True
        except UnknownRecipient as exc:
            self._refuse(connection, "to", str(exc), message)
        except ProtocolError as exc:
            self._refuse(connection, exc.field, exc.reason, message)
        except TransportClosed:
            connection.closing = True
        except TransportError as exc:
            self._refuse(connection, "", str(exc), message)
        return False

    async def _pump(self, connection: _Connection, agent_id: str) -> None:
        """Write the agent's inbox onto its connection, in delivery order, while it lasts.

        The message being written is kept in `_unsent` until the write is drained, so one that a
        broken connection may have lost goes first on the next connection (at least once: the
        agent ignores an assignment it already has).
        """
        inbox = self._inboxes[agent_id]
        try:
            while True:
                message = self._unsent.get(agent_id) or await inbox.get()
                self._unsent[agent_id] = message
                connection.writer.write(encode(message))
                await connection.writer.drain()
                if self._unsent.get(agent_id) is message:
                    del self._unsent[agent_id]
        except (ConnectionError, OSError):
            connection.close()
        except TransportClosed:
            pass

    async def send(self, message: IPCMessage) -> None:
        """A reply to a request that came on a connection goes back on it (a side channel has no
        inbox; an agent's answer to its agent_ready must reach the connection that asked)."""
        route = self._routes.pop(message.correlation_id, None) if message.correlation_id is not None else None
        if route is None:
            await super().send(message)
            return
        check_size(message)
        self._notify(message)
        route.write(message)
        if route.hello_id == message.correlation_id:
            self._answered_hello(route, message)

    def _answered_hello(self, connection: _Connection, answer: IPCMessage) -> None:
        """The manager welcomed the agent (its own connection starts taking its messages), or
        refused it (the connection is let go)."""
        connection.hello_id = None
        agent_id = connection.agent_id
        if answer.type == MessageType.AGENT_ERROR or agent_id is None:
            connection.agent_id = None
            connection.closing = True
            asyncio.get_running_loop().call_soon(connection.close)
        elif not connection.side:
            self._take_over(agent_id)
            self._bound[agent_id] = connection
            connection.pump = asyncio.get_running_loop().create_task(
                self._pump(connection, agent_id), name=f"socket-pump-{agent_id}"
            )

    def _drop(self, connection: _Connection) -> None:
        for request_id in [r for r, c in self._routes.items() if c is connection]:
            del self._routes[request_id]
        self._connections.discard(connection)
        if connection.agent_id is not None and self._bound.get(connection.agent_id) is connection:
            del self._bound[connection.agent_id]
            log.info("agent %s disconnected; its messages wait in its inbox", connection.agent_id)
            if self._inbound and self.on_disconnected is not None:
                self.on_disconnected(connection.agent_id, connection.peer_pid)
        connection.close()

    # ------------------------------------------------------------ refusals

    def _refuse(
        self,
        connection: _Connection,
        field: str,
        reason: str,
        message: IPCMessage | None = None,
        *,
        message_id: str | None = None,
        security: bool = False,
        close: bool = False,
    ) -> None:
        """Tell the peer what was wrong (`agent_error` naming the field) and record it."""
        refusal = Refusal(
            field=field,
            reason=reason,
            message_id=message.id if message is not None else message_id,
            claimed=message.from_ if message is not None else None,
            bound=connection.agent_id,
            transport=connection.peer,
            security=security,
        )
        connection.write(refusal.reply(message))
        log.warning("refused a message on %s from %s: %s%s", connection.peer, refusal.sender or "?",
                    f"{field}: " if field else "", reason)
        if self.on_refused is not None:
            try:
                self.on_refused(refusal)
            except Exception:
                log.exception("could not record a refused message")
        if close:
            connection.closing = True


def _drain(inbox: PriorityInbox) -> list[IPCMessage]:
    messages = []
    while (message := inbox.get_nowait()) is not None:
        messages.append(message)
    return messages


def _close_if_unbound(connection: _Connection) -> None:
    """A peer that never says who it is does not get to hold a connection open."""
    if connection.agent_id is None:
        log.warning("closed a connection on %s that sent no agent_ready within %gs", connection.peer, HELLO_TIMEOUT)
        connection.close()


def _without_token(message: IPCMessage) -> IPCMessage:
    """agent_ready as the manager (and so the journal) sees it: the token stays on the wire."""
    payload = message.payload.model_copy(update={"token": None})
    return message.model_copy(update={"payload": payload, "requires_response": False, "response_timeout": None})


def _finished(agent_id: str) -> IPCMessage:
    return make_message(MessageType.BROADCAST_INFO, MANAGER_ID, agent_id, {"info": SPRINT_FINISHED})


def _peer_pid(writer: asyncio.StreamWriter) -> int | None:
    """The process at the other end of a Unix socket (SO_PEERCRED, Linux), else None."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX or not hasattr(socket, "SO_PEERCRED"):
        return None
    try:
        pid, _, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    except OSError:
        return None
    return pid or None


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else peer[0]
        return f"tcp:{host}:{peer[1]}"
    return "unix"
