"""The manager's side of the NATS transport (DESIGN §9): external agents on any machine that
reaches the NATS server, with the socket transport's contract.

As with `SocketTransport`, the manager and the embedded agents keep in-process inboxes, and every
external agent of the plan has an inbox from the start; while the agent is bound, a pump publishes
that inbox onto `sprintdeck.<sprint>.agent.<id>` in delivery order (so a message to an agent that
is not bound waits, in priority order, and the receiver's inbox orders what arrives by priority
again).  A broadcast is published once, on `sprintdeck.<sprint>.broadcast`.

Agents say their first hello on `sprintdeck.<sprint>.manager`, and send the rest (a later hello
too, so that it stays behind what the agent sent before) on their own `sprintdeck.<sprint>.manager.<id>`,
each taken through a consumer of its own (so one agent's backlog in the stream does not hold up
another's), into a lane of its own (engine/transports/nats_intake.py).  The first message of an agent is
`agent_ready` with its token, checked by the same `hello_problem` as over a socket; the manager's
answer goes to the message's reply subject, a welcome with a fresh session key (see
engine/transports/nats_link.py).  A later message is taken as the agent its session key was given
to: a missing or stale key, a `from` that is not that agent, or a type agents may not send is
refused with an `agent_error` naming the field (on the message's reply subject) and handed to
`on_refused`, which `serve` journals.  Tokens never reach the journal.  What each sender may cost
the manager is bounded as over a socket (engine/transports/nats_intake.py): its messages are taken
at its own pace, a flood is dropped and journaled as one counted record, a flooder disconnected.

Watchers (`sprintdeck watch nats://...`) say hello on the same subject with `channel: "watch"`;
`NatsWatchers` (engine/transports/nats_watch.py) feeds them and takes what their sessions send.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from functools import partial

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext

from engine.protocol import (
    IPCMessage,
    MessageType,
    ProtocolError,
    agent_traffic_refusal,
    parse_message,
)
from engine.refusal import Refusal
from engine.transports.address import Address
from engine.transports.base import TransportClosed, TransportError, UnknownRecipient, check_size
from engine.transports.external import DRAIN_TIMEOUT, ExternalAgentsTransport, finished_notice, hello_problem
from engine.transports.nats_link import (
    MANAGER_DURABLE,
    REPLY_HEADER,
    SESSION_HEADER,
    NatsCredentials,
    Seen,
    Subjects,
    already_served,
    connect_nats,
    consume,
    ensure_stream,
    served_elsewhere,
    store,
)
from engine.transports.nats_intake import CROWD, LANE_MESSAGES, Intake, ack
from engine.transports.nats_order import AFTER_HEADER, AskedRequests, SequenceGate, after_of, stream_sequence
from engine.transports.nats_presence import Presence
from engine.transports.nats_watch import NatsWatchers
from engine.transports.watching import WATCH_CHANNEL, WatchDesk

log = logging.getLogger(__name__)

FORMER_SESSIONS = 1_024  # retired session keys remembered, so that what comes under them is counted


@dataclass
class _Hello:
    """An agent_ready the manager has not answered yet: where the answer goes, the key it gives."""

    agent_id: str
    reply: str
    session: str


class NatsTransport(ExternalAgentsTransport[str]):  # bound: agent id -> its session key
    """In-process inboxes for local parties, NATS subjects for the plan's external agents."""

    def __init__(
        self,
        address: Address,
        *,
        tokens: Mapping[str, str],
        credentials: NatsCredentials | None = None,
        local: Collection[str] = (),
        on_refused: Callable[[Refusal], None] | None = None,
        fresh: bool = True,
    ) -> None:
        """`fresh`: a new sprint, whose stream starts empty; a resumed one (False) takes what the
        stream still holds for it."""
        if not address.sprint:
            raise TransportError(f"{address}: the NATS transport needs the sprint's name in the address")
        # `on_disconnected` hears of an agent whose NATS subscription is gone (engine/transports/nats_presence.py).
        super().__init__(address, tokens=tokens, local=local, on_refused=on_refused)
        self.subjects = Subjects(address.sprint)
        self._credentials = credentials or NatsCredentials()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._fresh = fresh
        self._seen = Seen()
        self._hellos: dict[str, _Hello] = {}  # agent_ready id -> its pending answer
        self._sessions: dict[str, str] = {}  # session key -> agent id
        self._former: dict[str, str] = {}  # a session key no longer valid -> the agent it was given to
        external = sorted(set(self._tokens) - self._local)
        self._asks_of = {self.subjects.asked_by(a): a for a in external}  # subject -> agent: its requests (core NATS)
        self._subjects_of = {self.subjects.sent_by(a): a for a in external} | self._asks_of  # and what it stores
        # agent -> the gate its fast requests wait at; one that waited is not dropped for the room its
        # agent's stored messages take in the lane (they are already bounded by the consumer)
        self._gates = {a: SequenceGate(partial(self._queue, a, room=2 * LANE_MESSAGES)) for a in external}
        self._asked = AskedRequests()
        self._stored_to: dict[str, int] = {}  # agent -> the stream sequence of the last message stored for it
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._watchers = NatsWatchers(lambda: self._nc, self._refuse)
        self._presence = Presence(lambda: self._nc, self.subjects, lambda: list(self._bound), self._gone)
        self._presence_task: asyncio.Task[None] | None = None
        self._intake = Intake(self._handle, self._record, self._flooded)

    @property
    def watch_desk(self) -> WatchDesk | None:
        """What feeds `sprintdeck watch` (serve sets it): None takes no watchers."""
        return self._watchers.desk

    @watch_desk.setter
    def watch_desk(self, desk: WatchDesk | None) -> None:
        self._watchers.desk = desk

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect to the NATS server and take what agents send (raises `TransportError`)."""
        async def reconnected() -> None:
            self._presence.reconnected()

        self._nc = await connect_nats(self.address, self._credentials, name=f"sprintdeck-manager-{self.address.sprint}",
                                      reconnected_cb=reconnected)
        self._js = self._nc.jetstream()
        try:
            if await served_elsewhere(self._js, self.subjects):  # started since serve's probe
                await self._nc.close()
                raise TransportError(already_served(self.address, self.subjects))
            await ensure_stream(self._js, self.subjects, fresh=self._fresh)
            # Each agent's consumer exists before any hello is taken (a consumer starts at new
            # messages: what a welcomed agent sent before it existed would never come), and holds
            # back what the agent's lane has no room for: the rest of a flood waits in the stream.
            for agent_id, gate in self._gates.items():
                gate.stored(await consume(self._js, self.subjects.sent_by(agent_id), f"from-{agent_id}", self._on_stored,
                                          max_ack_pending=LANE_MESSAGES))
            await consume(self._js, self.subjects.manager, MANAGER_DURABLE, self._on_stored)
            await self._nc.subscribe(self.subjects.asked_by(">"), cb=self._on_asked)
        except NatsError as exc:
            await self._nc.close()
            raise TransportError(f"no JetStream on the NATS server at {self.address} (start it with -js): {exc}") from None
        self._presence_task = asyncio.get_running_loop().create_task(self._presence.run(), name="nats-presence")

    def joining(self, agent_id: str) -> tuple[str, str] | None:
        return None  # Claude Code's hook speaks to sockets only

    async def finish(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """End of sprint: bound agents get what is queued for them, then the notice, then close."""
        self.stop_inbound()
        await self._until_taken(timeout)
        await self._watchers.finish(timeout)  # the watchers see the final events
        deadline = asyncio.get_running_loop().time() + timeout
        for agent_id in list(self._bound):
            await self._store_by(deadline, self.subjects.agent(agent_id), finished_notice(agent_id))
        await self.close()

    async def close(self) -> None:
        self._inbound = False
        pumps = list(self._pumps.values()) + ([self._presence_task] if self._presence_task is not None else [])
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        self._pumps.clear()
        await self._watchers.close()
        await self._intake.close()
        if self._nc is not None and not self._nc.is_closed:
            try:
                async with asyncio.timeout(2.0):
                    await self._nc.drain()
            except (NatsError, TimeoutError, OSError):
                await self._nc.close()
        await super().close()

    # ------------------------------------------------------------ taking messages

    async def _on_stored(self, msg: Msg) -> None:
        """A message from the stream, into its sender's lane (a redelivery is only acknowledged);
        a lane that is full drops it, and the drop is recorded as a refusal."""
        if self._seen.first_time(msg):
            self._queue(self._sender_of(msg), msg)
        else:
            await ack(msg)
        gate = self._gates.get(self._subjects_of.get(msg.subject, ""))
        if gate is not None:
            gate.stored(stream_sequence(msg))  # the agent's fast requests sent after it may go on

    async def _on_asked(self, msg: Msg) -> None:
        """A request on core NATS: into its agent's lane once what the agent stored before it came."""
        gate = self._gates.get(self._subjects_of.get(msg.subject, ""))
        if gate is None:
            self._queue(self._sender_of(msg), msg)  # no such agent: refused in its sender's lane
        elif not gate.holds(msg, after_of(msg.headers)):
            await self._take_now(self._sender_of(msg), msg)

    async def _take_now(self, key: str, msg: Msg) -> None:
        """`_queue`, but handled in this turn when its lane is idle (nats_intake.Intake.take_now)."""
        self._dropped(key, msg, await self._intake.take_now(key, msg))

    def _queue(self, key: str, msg: Msg, room: int = LANE_MESSAGES) -> None:
        """Into `key`'s lane; a lane that is full drops it, and the drop is recorded as a refusal."""
        self._dropped(key, msg, self._intake.take(key, msg, room=room))

    def _dropped(self, key: str, msg: Msg, dropped: Refusal | None) -> None:
        if dropped is not None:
            asyncio.get_running_loop().create_task(ack(msg))
            refusal = replace(dropped, bound=key if key in self._tokens else None, transport=f"nats:{self.subjects.manager}")
            self._intake.digest.add(_source(key), refusal)

    async def _handle(self, msg: Msg) -> None:
        """A message its lane lets through: applied, then acked, so one the manager had not taken
        when the server died comes again."""
        await self._on_msg(msg)
        await ack(msg)

    def _sender_of(self, msg: Msg) -> str:
        """Whose lane a message goes to: its agent's when it came on the agent's subject or carries
        a session key the agent was given (even one no longer valid), else its sender's reply
        subject (one per connection).  One lane per agent keeps its messages in their order."""
        agent = self._subjects_of.get(msg.subject) or self._agent_of(msg)
        if agent is not None:
            return agent
        reply = (msg.headers or {}).get(REPLY_HEADER)
        return f"reply:{reply}" if reply else CROWD

    def _agent_of(self, msg: Msg) -> str | None:
        """The agent the message's session key was given to (valid or retired), if any."""
        session = (msg.headers or {}).get(SESSION_HEADER, "")
        return self._sessions.get(session) or self._former.get(session)

    def _flooded(self, key: str, why: str, last: Msg) -> None:
        """A sender held at its rate too long: told why, a bound agent loses its session (it is an
        agent that disconnected), and the disconnection is recorded."""
        bound = key if key in self._tokens else None
        refusal = Refusal(field="", reason=f"disconnected: {why}", bound=bound, transport=f"nats:{self.subjects.manager}")
        if (reply := _reply_of(last)) is not None:
            asyncio.get_running_loop().create_task(self._publish(reply, refusal.reply()))
        self._intake.digest.add(_source(key), refusal, "connections")
        if bound is not None:
            self._gone(bound)
            asyncio.get_running_loop().create_task(self._purge(bound))

    async def _purge(self, agent_id: str) -> None:
        """What a flooder left in the stream goes: it would only be refused, at its lane's pace."""
        if self._js is None:
            return
        try:
            await self._js.purge_stream(self.subjects.stream, subject=self.subjects.sent_by(agent_id))
        except (NatsError, TimeoutError, OSError) as exc:
            log.warning("could not purge what %s left in the stream: %s", agent_id, exc)

    async def _on_msg(self, msg: Msg) -> None:
        """One message from an agent or a watcher (or from anyone with the NATS account)."""
        session = (msg.headers or {}).get(SESSION_HEADER)
        if self._watchers.owns(session):  # watchers are fed to the very end, after agents' traffic stops
            await self._watchers.take(msg, str(session))
            return
        if not self._inbound:
            if (reply := _reply_of(msg)) is not None:
                await self._publish(reply, finished_notice("unknown"))
            return
        try:
            message = parse_message(msg.data)
        except ProtocolError as exc:
            await self._refuse(msg, exc.field, exc.reason, message_id=exc.message_id, bound=self._agent_of(msg))
            return
        if session is None:
            await self._hello(msg, message)
            return
        bound = self._sessions.get(session)
        if bound is None:
            await self._refuse(msg, "session", "no agent holds this session: send agent_ready with your token first",
                               message, security=True)
        elif message.from_ != bound:
            reason = f"this session is bound to agent {bound!r}; a message from {message.from_!r} is refused"
            await self._refuse(msg, "from", reason, message, bound=bound, security=True)
        elif message.type == MessageType.AGENT_READY:
            await self._hello(msg, message)  # a new session for the same agent, with its token again
        elif (refused := agent_traffic_refusal(message)) is not None:
            await self._refuse(msg, *refused, message, bound=bound, security=True)
        else:
            if self._asks_of.get(msg.subject) == bound and message.requires_response and (reply := _reply_of(msg)):
                self._asked.remember(message.id, bound, reply)
            await self._deliver(msg, message, bound)

    async def _hello(self, msg: Msg, message: IPCMessage) -> None:
        """agent_ready with the token: the manager is asked to answer it (welcome or refusal)."""
        if message.type == MessageType.AGENT_READY and message.payload.channel == WATCH_CHANNEL:
            await self._watchers.hello(msg, message, _reply_of(msg))
            return
        problem = hello_problem(message, self._tokens, self._local)
        if problem is None and (too_fast := self._intake.still_flooding(message.from_)) is not None:
            problem = "", too_fast
        reply = _reply_of(msg)
        if problem is None and reply is None:
            problem = "reply", f"agent_ready needs a {REPLY_HEADER} header for the manager's answer"
        if problem is not None or reply is None:
            await self._refuse(msg, *(problem or ("reply", "")), message, security=True)
            return
        self._hellos[message.id] = _Hello(message.from_, reply, secrets.token_urlsafe(18))
        payload = message.payload.model_copy(update={"token": None})  # the token stays on the wire
        hello = message.model_copy(update={"payload": payload, "requires_response": True})
        if not await self._deliver(msg, hello, message.from_):
            self._hellos.pop(message.id, None)

    async def _deliver(self, msg: Msg, message: IPCMessage, bound: str) -> bool:
        try:
            await self.send(message)
            return True
        except UnknownRecipient as exc:
            await self._refuse(msg, "to", str(exc), message, bound=bound)
        except ProtocolError as exc:
            await self._refuse(msg, exc.field, exc.reason, message, bound=bound)
        except TransportClosed:
            pass
        except TransportError as exc:
            await self._refuse(msg, "", str(exc), message, bound=bound)
        return False

    # ------------------------------------------------------------ sending

    async def send(self, message: IPCMessage) -> None:
        """The answer to an agent_ready goes to its reply subject (binding the agent when it is a
        welcome); everything else is routed as in-process."""
        hello = self._hellos.pop(message.correlation_id, None) if message.correlation_id is not None else None
        if hello is None:
            asked = self._asked.answered(message.correlation_id)
            if asked is None or not await self._answer_fast(message, *asked):
                await super().send(message)
            return
        check_size(message)
        self._notify(message)
        welcomed = message.type != MessageType.AGENT_ERROR
        await self._publish(hello.reply, message, {SESSION_HEADER: hello.session} if welcomed else None)
        if welcomed:
            self._bind(hello)

    async def _answer_fast(self, message: IPCMessage, agent_id: str, reply: str) -> bool:
        """The reply to a fast request, on core NATS to its reply subject, behind the last message
        stored for the agent (engine/transports/nats_order.py); False (the stored way) when something
        for the agent still waits to be stored, or it is not bound."""
        if message.to != agent_id or agent_id not in self._bound or self._waiting_for(agent_id):
            return False
        check_size(message)
        self._notify(message)
        after = {AFTER_HEADER: str(self._stored_to.get(agent_id, 0))}
        if not await self._publish(reply, message, after):
            self._inboxes[agent_id].put(message)  # the stored way after all
        return True

    def _broadcast(self, message: IPCMessage) -> None:
        """Local subscribers get it in their inboxes; external agents on the broadcast subject, once."""
        self._notify(message)
        for agent_id, inbox in self._inboxes.items():
            if agent_id != message.from_ and (agent_id not in self._tokens or agent_id in self._local):
                inbox.put(message)
        if self._js is not None:
            asyncio.get_running_loop().create_task(self._store(self.subjects.broadcast, message))

    def _bind(self, hello: _Hello) -> None:
        """The agent's new session replaces its old one; its pump starts (or goes on)."""
        old = self._bound.get(hello.agent_id)
        if old is not None:
            self._retire(old)
        self._bound[hello.agent_id] = hello.session
        self._sessions[hello.session] = hello.agent_id
        pump = self._pumps.get(hello.agent_id)
        if pump is None or pump.done():
            self._pumps[hello.agent_id] = asyncio.get_running_loop().create_task(
                self._pump(hello.agent_id), name=f"nats-pump-{hello.agent_id}")

    def _retire(self, session: str) -> None:
        """The session is no longer valid; what still comes under it counts against its agent."""
        agent_id = self._sessions.pop(session, None)
        if agent_id is not None:
            self._former[session] = agent_id
            if len(self._former) > FORMER_SESSIONS:
                del self._former[next(iter(self._former))]

    def _gone(self, agent_id: str) -> None:
        """The agent's NATS subscription is gone (its process died, say): unbound as a socket agent
        whose connection closed, its messages waiting in its inbox, and the manager told."""
        session = self._bound.pop(agent_id, None)
        if session is None:
            return
        self._retire(session)
        pump = self._pumps.pop(agent_id, None)
        if pump is not None:
            pump.cancel()
        if self._inbound and self.on_disconnected is not None:
            self.on_disconnected(agent_id, None)

    async def _pump(self, agent_id: str) -> None:
        """Publish the agent's inbox on its subject, in delivery order.  The message being published
        is kept in `_unsent` until the server has it, so one lost with the server goes again."""
        inbox = self._inboxes[agent_id]
        subject = self.subjects.agent(agent_id)
        try:
            while True:
                message = self._unsent.get(agent_id) or await inbox.get()
                self._unsent[agent_id] = message
                if not (sequence := await self._store(subject, message)):
                    await asyncio.sleep(0.1)
                    continue
                self._stored_to[agent_id] = sequence
                if self._unsent.get(agent_id) is message:
                    del self._unsent[agent_id]
        except TransportClosed:
            pass

    async def _store(self, subject: str, message: IPCMessage) -> int:
        """Into the stream, acknowledged by the server (an agent's messages and broadcasts): its
        sequence in the stream, 0 when the server did not take it."""
        return 0 if self._js is None else await store(self._js, subject, message)

    async def _store_by(self, deadline: float, subject: str, message: IPCMessage) -> bool:
        """`_store`, tried again until the server has it or `deadline` (loop time) passes: an agent
        that never gets its sprint's end would wait for it for good."""
        loop = asyncio.get_running_loop()
        while not await self._store(subject, message):
            if loop.time() >= deadline:
                log.warning("could not store %s for %s before the drain timeout", message.type, subject)
                return False
            await asyncio.sleep(0.1)
        return True

    async def _publish(self, subject: str, message: IPCMessage, headers: dict[str, str] | None = None) -> bool:
        """Publish `message` once, on core NATS (answers on a reply subject); False when the
        connection could not take it."""
        if self._nc is None or self._nc.is_closed:
            return False
        try:
            await self._nc.publish(subject, message.wire().encode(), headers=headers)
        except (NatsError, OSError) as exc:
            log.warning("could not publish %s %s on %s: %s", message.type, message.id, subject, exc)
            return False
        return True

    # ------------------------------------------------------------ refusals

    async def _refuse(
        self,
        msg: Msg,
        field: str,
        reason: str,
        message: IPCMessage | None = None,
        *,
        message_id: str | None = None,
        bound: str | None = None,
        security: bool = False,
    ) -> None:
        """Tell the sender what was wrong (on its reply subject) and record it (`on_refused`)."""
        refusal = Refusal.of(field, reason, message, message_id=message_id, bound=bound,
                             transport=f"nats:{self.subjects.manager}", security=security)
        if (reply := _reply_of(msg)) is not None:
            await self._publish(reply, refusal.reply(message))
        key = self._sender_of(msg)
        self._intake.refused(key)  # a refused message costs its sender more than a valid one
        self._intake.digest.add(_source(key), refusal)


def _source(key: str) -> str:
    """Whom a lane's refusals are counted against, as the journal says it."""
    if key == CROWD:
        return "senders beyond the lane limit"
    return f"the sender with reply subject {key.removeprefix('reply:')}" if key.startswith("reply:") else f"agent {key!r}"


def _reply_of(msg: Msg) -> str | None:
    """Where the sender takes answers: its `Sprintdeck-Reply` header (JetStream delivers a message
    with an ack subject as its reply, so the sender's own reply subject travels in a header)."""
    reply = (msg.headers or {}).get(REPLY_HEADER)
    return reply if reply and reply.startswith("_INBOX.") else None

