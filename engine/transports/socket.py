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

No client is trusted with the server's memory or time (the figures: engine/transports/limits.py;
enforced by `Guard`, engine/transports/guard.py): each connection is read at a bounded pace
(slowed when over it, disconnected when it keeps on), what waits for a peer is bounded (one that
stops reading is disconnected), and connections are accepted at a bounded rate, with a cap and a
deadline on those still to say who they are.  Every refusal and disconnection is answered to the
peer and recorded through one path, a burst of them as one record with a count.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
from collections.abc import Callable, Collection, Iterator, Mapping

from engine.protocol import (
    MANAGER_ID,
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
from engine.transports.connection import Connection as _Connection  # the names this module always used
from engine.transports.connection import accept
from engine.transports.connection import peer_name as _peer_name
from engine.transports.guard import Guard
from engine.transports.framing import Oversize, encode, read_lines
from engine.transports.external import DRAIN_TIMEOUT, ExternalAgentsTransport, finished_notice, hello_problem
from engine.transports.watching import WATCH_CHANNEL, WATCHER_PREFIX, WatchDesk, WatchLink

log = logging.getLogger(__name__)



class SocketTransport(ExternalAgentsTransport[_Connection]):
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
        super().__init__(address, tokens=tokens, local=local, on_refused=on_refused)
        self._listener = listener
        self._tasks: list[asyncio.Task[None]] = []  # accepting, and watching the backlogs
        self._connections: set[_Connection] = set()
        self._guard = Guard(self._queued, self._record)
        self._routes: dict[str, _Connection] = {}  # request id -> the connection its reply goes to
        #: `serve` sets it: the manager's side of `sprintdeck watch` (engine/watchers.py)
        self.watch_desk: WatchDesk | None = None
        self._watching: dict[_Connection, WatchLink] = {}

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Accept connections (the listener already listens; early clients wait in its backlog)."""
        self._listener.setblocking(False)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(accept(self._listener, self._serve, self._guard.accepts), name="socket-accept"),
                       loop.create_task(self._guard.watch(self._backlogs), name="socket-backlogs")]

    def _backlogs(self) -> Iterator[tuple[_Connection, int]]:
        """Every open connection, with the messages waiting for it (an agent's own connection's)."""
        for connection in self._connections:
            agent_id = connection.agent_id
            own = agent_id is not None and self._bound.get(agent_id) is connection
            yield connection, self._queued(agent_id) if own else 0

    def _queued(self, agent_id: str | None) -> int:
        """Messages waiting for an external agent's own connection: its inbox, and one being written."""
        if agent_id is None or agent_id in self._local or agent_id not in self._tokens:
            return 0
        return self._waiting_for(agent_id)

    async def finish(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """End of sprint: let connected agents receive what is queued, tell them, then close."""
        self.stop_inbound()
        await self._until_taken(timeout)
        if self.watch_desk is not None:
            await self.watch_desk.finish(timeout)  # the watchers see the final events
        for agent_id, connection in list(self._bound.items()):
            connection.write(finished_notice(agent_id))
            try:
                async with asyncio.timeout(1.0):
                    await connection.writer.drain()
            except (TimeoutError, ConnectionError, OSError):
                pass
        await self.close()

    async def close(self) -> None:
        self._inbound = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._listener.close()
        connections = list(self._connections)
        readers = [c.task for c in connections if c.task is not None and c.task is not asyncio.current_task()]
        for connection in connections:
            connection.close()
        for reader in readers:
            reader.cancel()  # it may be waiting for its budget
        await asyncio.gather(*(c.pump for c in connections if c.pump), *readers, return_exceptions=True)
        self._guard.flush()
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
        connection.task = asyncio.current_task()
        self._connections.add(connection)
        deadline = self._guard.admit(connection)
        try:
            await self._read(connection)
        except Exception:  # a bug must not take the server down; this connection ends
            log.exception("socket connection %s failed", connection.peer)
        finally:
            deadline.cancel()
            self._drop(connection)

    async def _read(self, connection: _Connection) -> None:
        """Take the connection's lines at the pace its `Guard` allows."""
        async for line in read_lines(connection.reader):
            if connection.closing:
                break
            if not self._inbound:
                self._after_the_end(connection)
            elif isinstance(line, Oversize):
                self._refuse(connection, "", line.reason(), close=connection.agent_id is None)
            else:
                await self._on_line(connection, line)
            if connection.closing:
                break
            await self._guard.paced(connection, line.size if isinstance(line, Oversize) else len(line) + 1)

    async def _on_line(self, connection: _Connection, line: bytes) -> None:
        try:
            message = parse_message(line)
        except ProtocolError as exc:
            self._refuse(connection, exc.field, exc.reason, message_id=exc.message_id, close=connection.agent_id is None)
            return
        if connection in self._watching:
            self._watched(connection, message)
        elif connection.agent_id is None:
            await self._bind(connection, message)
        else:
            await self._forward(connection, message)

    def _after_the_end(self, connection: _Connection) -> None:
        """After the sprint, a newcomer is told it is over; a bound agent's late lines are ignored."""
        if connection.agent_id is None:
            connection.write(finished_notice("unknown"))
            connection.closing = True

    async def _bind(self, connection: _Connection, message: IPCMessage) -> None:
        """The first message: agent_ready from an external agent of the plan, with its token.

        The manager answers it: a refusal (a second Claude Code session for a live one, say)
        closes the connection; a welcome makes it the agent's own connection, replacing an older
        one, or a side channel (`channel: requests`) that gets only the replies to its requests.
        """
        if message.type == MessageType.AGENT_READY and message.payload.channel == WATCH_CHANNEL:
            self._watch(connection, message)
            return
        problem = self._check_hello(message)
        if problem is not None:
            field, reason = problem
            self._refuse(connection, field, reason, message, security=True, close=True)
            return
        if (too_fast := self._guard.bind(connection, message.from_)) is not None:
            self._refuse(connection, "", too_fast, message, close=True)
            return
        connection.agent_id = message.from_
        connection.hello_id = message.id
        connection.side = message.payload.channel == "requests"
        self._routes[message.id] = connection
        hello = _without_token(message).model_copy(update={"requires_response": True})
        if not await self._deliver(connection, hello):
            connection.closing = True

    def _watch(self, connection: _Connection, hello: IPCMessage) -> None:
        """A watcher's hello: the desk feeds it (snapshot, then events) or refuses its token."""
        desk = self.watch_desk
        problem = ("", "this server takes no watchers") if desk is None else desk.refusal(hello)
        if desk is None or problem is not None:
            field, reason = problem or ("", "")
            self._refuse(connection, field, reason, hello, security=True, close=True)
            return
        self._guard.bind(connection, WATCHER_PREFIX + hello.from_)  # a reading budget of its own
        connection.agent_id = WATCHER_PREFIX + hello.from_  # never an agent's: nothing routes to it

        async def sink(message: IPCMessage) -> None:
            if connection.closing or connection.writer.is_closing():
                raise ConnectionResetError("the watcher's connection closed")
            connection.writer.write(encode(message))
            await connection.writer.drain()

        self._watching[connection] = desk.attach(hello, sink)

    def _watched(self, connection: _Connection, message: IPCMessage) -> None:
        """A watcher's later lines: operator requests, each answered."""
        link, desk = self._watching[connection], self.watch_desk
        if message.type != MessageType.BROADCAST_INFO or not message.requires_response or desk is None:
            self._refuse(connection, "type", f"a watcher sends operator requests only (broadcast_info with "
                         f"requiresResponse), not {message.type}", message)
            return
        connection.write(desk.operate(link, message))

    def _check_hello(self, message: IPCMessage) -> tuple[str, str] | None:
        return hello_problem(message, self._tokens, self._local)

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
            old.abort()

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
                await self._guard.wrote(connection)
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
            route = self._idle_connection(message)
            if route is None:
                await super().send(message)
                return
        check_size(message)
        route.write(message)
        self._notify(message)  # recorded once written: what it announces is durable already (engine/mail.py)
        if message.correlation_id is not None and route.hello_id == message.correlation_id:
            self._answered_hello(route, message)

    def _idle_connection(self, message: IPCMessage) -> _Connection | None:
        """The connection of the agent a message is for, when nothing waits to be written to it
        (its pump idle, its socket's buffer empty): the message is written in this turn instead
        of through its inbox and a turn of the pump (issue 14), in the same order."""
        connection = self._bound.get(message.to)
        if (connection is None or connection.closing or connection.writer.is_closing() or connection.unread
                or self._queued(message.to) or message.to in self._local):
            return None
        return connection

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
        link = self._watching.pop(connection, None)
        if link is not None and self.watch_desk is not None:
            self.watch_desk.detach(link)
        for request_id in [r for r, c in self._routes.items() if c is connection]:
            del self._routes[request_id]
        self._connections.discard(connection)
        self._guard.dropped(connection)
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
        """Tell the peer what was wrong (`agent_error` naming the field) and record it (`Guard.refused`)."""
        refusal = Refusal.of(field, reason, message, message_id=message_id, bound=connection.agent_id,
                             transport=connection.peer, security=security)
        self._guard.refused(connection, refusal, message)
        if close:
            connection.closing = True


def _without_token(message: IPCMessage) -> IPCMessage:
    """agent_ready as the manager (and so the journal) sees it: the token stays on the wire."""
    payload = message.payload.model_copy(update={"token": None})
    return message.model_copy(update={"payload": payload, "requires_response": False, "response_timeout": None})

