"""The agent's side of the NATS transport: one agent id, bound to the manager over a NATS server.

`NatsClient` is a `SocketClient` to the code that uses it (engine/agents/remote.py, `agent`): the
same handshake (agent_ready with the token, a welcome or a refusal), the same inbox in priority
order, the same buffer for what is sent while unbound, the same events.  What differs is the wire:
it says its first hello on `sprintdeck.<sprint>.manager` and, once it has been bound, publishes
everything on `sprintdeck.<sprint>.manager.<id>` (a later hello too, so that the manager takes it
after what the agent sent under its old session), with its session key and its own reply subject, and
takes its messages from `sprintdeck.<sprint>.agent.<id>` and `.broadcast`.

nats-py reconnects to the NATS server by itself; after it has, the client binds again (a fresh
session), so the agent compares notes with the manager (engine/agents/remote.py) about whatever
travelled while the server was away.  A manager that no longer knows the session (it was
restarted by `serve --resume`) refuses it, and the client binds again too.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext

from engine.protocol import BROADCAST, MANAGER_ID, WELCOME, IPCMessage, MessageType, ProtocolError, make_message, parse_message
from engine.transports.address import Address
from engine.transports.base import TransportClosed, TransportError
from engine.transports.client import HANDSHAKE_TIMEOUT, GIVE_UP_AFTER, ClientEvents, HandshakeRefused, SocketClient, _is_finished
from engine.transports.nats_link import (
    REPLY_HEADER,
    SESSION_HEADER,
    NatsCredentials,
    NatsRefused,
    Seen,
    Subjects,
    connect_nats,
    consume,
    store,
)
from engine.transports.nats_order import AFTER_HEADER, SequenceGate, after_of, stream_sequence

log = logging.getLogger(__name__)

RESEND_FIRST = 0.1  # seconds before what was kept is published again while bound; doubled up to
RESEND_MAX = 2.0


class NatsClient(SocketClient):
    """A `Transport` for one agent id, bound to a `NatsTransport` manager through NATS."""

    def __init__(
        self,
        address: Address,
        agent_id: str,
        *,
        token: Any,
        credentials: NatsCredentials | None = None,
        give_up_after: float | None = GIVE_UP_AFTER,
        events: ClientEvents | None = None,
    ) -> None:
        if not address.sprint:
            raise TransportError(f"{address}: name the sprint, as serve prints it: nats://HOST:PORT/SPRINT")
        super().__init__(address, agent_id, token=token, give_up_after=give_up_after, events=events)
        self.subjects = Subjects(address.sprint)
        self._credentials = credentials or NatsCredentials()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._seen = Seen()
        self._reply = ""
        self._session: str | None = None
        self._answer: tuple[str, asyncio.Future[tuple[IPCMessage, str | None]]] | None = None
        self._wake = asyncio.Event()  # finished, closed, or the binding must be made again
        self._storing = 0  # stored messages on their way to the server: no request may overtake them
        self._stored = 0  # the stream sequence of the last one it took from this agent
        self._replies = SequenceGate(self._take)  # fast replies wait for the stored messages before them
        self._sending_kept = asyncio.Lock()
        self._resending: asyncio.Task[None] | None = None
        self._asks, self._mine = self.subjects.asked_by(agent_id), self.subjects.agent(agent_id)  # its subjects

    @property
    def connected(self) -> bool:
        return self._session is not None and self._nc is not None and self._nc.is_connected

    # ------------------------------------------------------------ sending

    async def _deliver(self, message: IPCMessage) -> None:
        """Publish the message with the session key, or keep it.  A request goes the fast way when
        nothing stored is still on its way (engine/transports/nats_order.py).  What is kept goes
        first, in order: on the next handshake, or, while bound, as soon as the server stores it
        (`_resend`)."""
        session = self._session
        if session is not None and not self._outbox:
            if message.requires_response and not self._storing and await self._ask(message, session):
                return
            if await self._publish(message, session):
                return
        self._keep(message)
        if session is not None:
            self._resend_soon()

    def _resend_soon(self) -> None:
        if self._resending is None or self._resending.done():
            self._resending = asyncio.get_running_loop().create_task(self._resend(), name=f"nats-resend-{self.agent_id}")

    async def _resend(self) -> None:
        """While bound, publish what was kept until the server has stored all of it.  A store that
        was not acknowledged in time (a JetStream busy with a flood drops what it cannot take)
        would otherwise wait for a reconnect that a live connection never makes, and a request
        among it for its caller's timeout; the message id makes a second copy harmless."""
        delay = RESEND_FIRST
        while not await self._send_kept():
            if self._session is None or self._closed:
                return  # the next handshake sends it
            await asyncio.sleep(delay)
            delay = min(2 * delay, RESEND_MAX)

    async def _send_kept(self) -> bool:
        """Publish what was kept, in order (one sender at a time); True once nothing is left."""
        async with self._sending_kept:
            while self._outbox and self._session is not None:
                if not await self._publish(self._outbox[0], self._session):
                    return False
                self._outbox.popleft()
            return not self._outbox

    async def _ask(self, message: IPCMessage, session: str) -> bool:
        """A request on core NATS, after the last stored message; False when it could not go."""
        if self._nc is None or self._nc.is_closed or not self._nc.is_connected:
            return False
        # No message id: a request on core NATS is never sent twice (one lost goes unanswered, as over a socket).
        headers = {REPLY_HEADER: self._reply, SESSION_HEADER: session, AFTER_HEADER: str(self._stored)}
        try:
            await self._nc.publish(self._asks, message.wire().encode(), headers=headers)
        except (NatsError, OSError):
            return False
        return True

    async def _publish(self, message: IPCMessage, session: str | None) -> bool:
        """Into the sprint's stream, stored by the server (or False: kept, and sent again with the
        same id after the next handshake, which the server's de-duplication makes harmless)."""
        if self._js is None or self._nc is None or self._nc.is_closed:
            return False
        headers = {REPLY_HEADER: self._reply}
        if session is not None:
            headers[SESSION_HEADER] = session
        subject = self.subjects.manager if session is None and not self.connections else self.subjects.sent_by(self.agent_id)
        self._storing += 1
        try:
            sequence = await store(self._js, subject, message, headers)
        finally:
            self._storing -= 1
        if sequence and subject != self.subjects.manager:
            self._stored = max(self._stored, sequence)
        return bool(sequence)

    async def close(self) -> None:
        self._closed = True
        self._session = None
        self._wake.set()
        if self._resending is not None:
            self._resending.cancel()
        if self._nc is not None and not self._nc.is_closed:
            try:
                await self._nc.close()
            except (NatsError, OSError):
                pass
        self._inbox.close()
        self._pending.fail_all(TransportClosed("transport closed while waiting for a reply"))

    # ------------------------------------------------------------ binding

    async def run(self) -> None:
        """Wait until the sprint is over, binding again whenever the manager or NATS asks for it."""
        while not self._closed and not self.finished:
            await self._wake.wait()
            self._wake.clear()
            if not self._closed and not self.finished and self._session is None:
                await self._connect_with_retry()

    def _rebind(self, reason: str) -> None:
        if self._session is not None and not self._closed and not self.finished:
            self._session = None
            self.events.lost(reason)
            self._wake.set()

    async def _connect_once(self) -> None:
        """Bind with agent_ready + token, wait for the welcome and its session key, send what waited."""
        if self._nc is None:
            try:
                await self._open_nats()
            except NatsRefused as exc:  # wrong NATS credentials: retrying cannot help either
                raise HandshakeRefused(str(exc)) from None
        payload = {**self._hello, **self._joining, "token": self._token()}
        hello = make_message(MessageType.AGENT_READY, self.agent_id, MANAGER_ID, payload, priority="critical",
                             requires_response=True, response_timeout=int(HANDSHAKE_TIMEOUT * 1000))
        answer: asyncio.Future[tuple[IPCMessage, str | None]] = asyncio.get_running_loop().create_future()
        self._answer = (hello.id, answer)
        try:
            if not await self._publish(hello, None):
                raise TransportError(f"the NATS server at {self.address} did not take the handshake")
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                message, session = await answer
        finally:
            self._answer = None
        if _is_finished(message):
            self.finished = True
            self._wake.set()
            return
        if message.type == MessageType.AGENT_ERROR:
            field = f"{message.payload.field}: " if message.payload.field else ""
            raise HandshakeRefused(f"the server refused agent {self.agent_id!r}: {field}{message.payload.error}")
        if session is None or message.type != MessageType.BROADCAST_INFO or message.payload.info != WELCOME:
            raise TransportError(f"the manager answered agent_ready with {message.type}, not a welcome")
        self.welcome = dict(message.payload.data)
        self._session = session
        self.connections += 1
        self.events.connected(self.connections > 1)
        if not await self._send_kept():
            self._resend_soon()

    async def _open_nats(self) -> None:
        async def lost() -> None:
            if self._session is not None and not self._closed:
                self.events.lost("the NATS server connection was lost")

        async def back() -> None:
            self._rebind("the NATS server came back; binding again")

        self._nc = await connect_nats(self.address, self._credentials, name=f"sprintdeck-agent-{self.agent_id}",
                                      disconnected_cb=lost, reconnected_cb=back, error_cb=_quiet)
        self._reply = self._nc.new_inbox()
        await self._nc.subscribe(self._reply, cb=self._on_msg)  # answers to the handshake, refusals
        self._js = self._nc.jetstream()
        try:
            delivered = await consume(self._js, self.subjects.agent(self.agent_id), f"agent-{self.agent_id}", self._on_stored)
            self._replies.stored(delivered)
            await consume(self._js, self.subjects.broadcast, f"broadcast-{self.agent_id}", self._on_stored)
        except NatsError as exc:
            await self._nc.close()
            self._nc = self._js = None
            raise TransportError(f"the sprint's stream is not on the NATS server at {self.address} (is serve running?): {exc}") from None

    # ------------------------------------------------------------ receiving

    async def _on_stored(self, msg: Msg) -> None:
        """A message from the stream: taken once (a redelivery is only acknowledged), then acked."""
        if self._seen.first_time(msg):
            self._take(msg)
        if msg.subject == self._mine:
            self._replies.stored(stream_sequence(msg))  # the fast replies sent after it may go on
        try:
            await msg.ack()
        except (NatsError, OSError):
            pass  # delivered again once the server is back; `Seen` drops it

    async def _on_msg(self, msg: Msg) -> None:
        """On the reply subject: answers to the handshake, refusals, and fast replies (which wait
        behind the stored messages the manager sent before them)."""
        if not self._replies.holds(msg, after_of(msg.headers)):
            self._take(msg)

    def _take(self, msg: Msg) -> None:
        try:
            message = parse_message(msg.data)
        except ProtocolError as exc:
            log.warning("ignored a message from the server: %s", exc)
            return
        waiting = self._answer
        if waiting is not None and (message.correlation_id == waiting[0] or _is_finished(message)):
            if not waiting[1].done():
                waiting[1].set_result((message, (msg.headers or {}).get(SESSION_HEADER)))
            return
        if _is_finished(message):
            self.finished = True
            self._wake.set()
            return
        if message.type == MessageType.AGENT_ERROR and message.payload.field == "session":
            self._rebind("the manager no longer knows this session (it was restarted); binding again")
            return
        if message.to == BROADCAST and message.from_ == self.agent_id:
            return  # its own broadcast, back from the broadcast subject
        self._receive(message)


async def _quiet(error: Exception) -> None:
    """nats-py's errors while it reconnects are expected; the client's events say what matters."""
    log.debug("NATS: %s", error)
