"""The watcher's side of `sprintdeck watch nats://HOST:PORT/SPRINT` (engine/transports/nats_watch.py
is the manager's): a `WatchWire` over a NATS server.

What the watcher sends (its hello, pings, resync and operator requests) goes into the sprint's
stream on `sprintdeck.<sprint>.manager`, with its reply subject and, once welcomed, its session
key.  What the manager sends arrives on that reply subject, numbered: a number missing (NATS
dropped it, or this watcher let `MAX_QUEUED` messages pile up unread) means the state here is no
longer the manager's, so what is queued is dropped, and everything up to a fresh snapshot, which
the watcher asks for (and asks again each ping while it has not come).  The watcher also asks
after NATS reconnected, since what was published meanwhile is lost.  A manager not heard from
for `SILENCE` seconds while NATS is up (killed, say) ends the watch.  A hello not answered is
said again (with a new id) each ping: one sent before the manager consumes its subject is not
delivered to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from engine.protocol import (MANAGER_ID, SPRINT_FINISHED, IPCMessage, MessageType, ProtocolError, make_message, new_id,
                             parse_message)
from engine.transports.address import Address
from engine.transports.base import TransportError
from engine.transports.nats_link import REPLY_HEADER, SESSION_HEADER, NatsCredentials, Subjects, connect_nats, server_url, store
from engine.transports.nats_watch import BYE_INFO, PART_HEADER, PING_INFO, PONG_INFO, SEQ_HEADER, WATCH_PING
from engine.transports.watching import RESYNC_INFO

log = logging.getLogger(__name__)

MAX_QUEUED = 1_000  # messages received and not yet taken before this watcher counts as behind
STREAM_WAIT = 5.0  # seconds to wait for the sprint's stream to be made
SILENCE = 30.0  # seconds without a word from the manager (NATS being up) that end the watch


class NatsWatchWire:
    """A watcher's messages to and from the manager of one sprint, through NATS."""

    def __init__(self, address: Address, name: str, nc: Client, *, max_queued: int = MAX_QUEUED) -> None:
        self.address = address
        self.name = name
        self.subjects = Subjects(address.sprint)
        self.gaps = 0  # times a number was missing (or this watcher fell behind)
        self._nc = nc
        self._js = nc.jetstream()
        self._reply = nc.new_inbox()
        self._session: str | None = None
        self._max_queued = max_queued
        self._queue: deque[IPCMessage | None] = deque()
        self._ready = asyncio.Event()
        self._expected: int | None = None  # the next sequence number
        self._parts: list[bytes] = []  # the parts of a message published in parts, so far
        self._resyncing = False
        self._asked_at = 0.0
        self._heard = time.monotonic()
        self._keepalive: asyncio.Task[None] | None = None
        self._hello: IPCMessage | None = None  # sent again until answered

    @classmethod
    async def open(cls, address: Address, name: str, credentials: NatsCredentials | None = None,
                   *, max_queued: int = MAX_QUEUED) -> NatsWatchWire:
        """Connect to the NATS server and check the sprint is there (`TransportError` saying why not)."""
        if not address.sprint:
            raise TransportError(f"{address}: name the sprint as serve prints it, nats://HOST:PORT/SPRINT")
        wire: NatsWatchWire | None = None

        async def reconnected() -> None:
            if wire is not None:
                wire._lost("NATS reconnected: what was published meanwhile is lost")

        nc = await connect_nats(address, credentials or NatsCredentials(), name=f"sprintdeck-watch-{name}",
                                reconnected_cb=reconnected, error_cb=_quiet)
        wire = cls(address, name, nc, max_queued=max_queued)
        try:
            await wire._stream_made()
            await nc.subscribe(wire._reply, cb=wire._on_msg)
        except NotFoundError:
            await nc.close()
            raise TransportError(f"no sprint {address.sprint!r} on the NATS server at {server_url(address)} "
                                 "(is `sprintdeck serve --listen nats://...` running it?)") from None
        except (NatsError, TimeoutError) as exc:
            await nc.close()
            raise TransportError(f"the NATS server at {server_url(address)} has no JetStream for the sprint: {exc}") from None
        wire._keepalive = asyncio.get_running_loop().create_task(wire._ping(), name="nats-watch-ping")
        return wire

    async def _stream_made(self) -> None:
        """Wait (`STREAM_WAIT` at most) for the sprint's stream: serve says where it listens a
        moment before it has made it.  `NotFoundError` when it does not come."""
        deadline = time.monotonic() + STREAM_WAIT
        while True:
            try:
                await self._js.stream_info(self.subjects.stream)
                return
            except NotFoundError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    # ------------------------------------------------------------ WatchWire

    async def receive(self) -> IPCMessage | None:
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        message = self._queue.popleft()
        if message is None:
            self._queue.append(None)  # the end stays the end
        return message

    async def send(self, message: IPCMessage) -> bool:
        if self._nc.is_closed:
            return False
        headers = {REPLY_HEADER: self._reply}
        if self._session is not None:
            headers[SESSION_HEADER] = self._session
        elif message.type == MessageType.AGENT_READY:
            self._hello = message
        return bool(await store(self._js, self.subjects.manager, message, headers))

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
        if not self._nc.is_closed:
            if self._session is not None:
                await self.send(self._info(BYE_INFO))
            try:
                await self._nc.close()
            except (NatsError, OSError):
                pass
        self._end()

    # ------------------------------------------------------------ receiving

    async def _on_msg(self, msg: Msg) -> None:
        headers = msg.headers or {}
        seq = headers.get(SEQ_HEADER)
        if seq is not None:
            self._session = headers.get(SESSION_HEADER, self._session)
        data = msg.data if seq is None else self._numbered(int(seq), headers.get(PART_HEADER), msg.data)
        if data is None:
            return
        try:
            message = parse_message(data)
        except ProtocolError as exc:
            log.warning("ignored a message from the manager: %s", exc)
            self._lost("a message from the manager could not be read")
            return
        if seq is None:
            self._out_of_band(message)
            return
        self._heard = time.monotonic()
        self._take(message)

    def _numbered(self, seq: int, part: str | None, data: bytes) -> bytes | None:
        """The whole message once its last part came in sequence; None while parts are missing."""
        if self._expected is not None and seq != self._expected:
            self._lost(f"message {self._expected} never came (the next was {seq})")
            self._parts = []
        self._expected = seq + 1
        if part is None:
            return data
        number, _, count = part.partition("/")
        if number == "1":
            self._parts = []
        elif not self._parts:
            self._lost(f"part {part} came without the parts before it")
            return None
        self._parts.append(data)
        if number != count:
            return None
        whole, self._parts = b"".join(self._parts), []
        return whole

    def _take(self, message: IPCMessage) -> None:
        info = message.payload.info if message.type == MessageType.BROADCAST_INFO else None
        if info == PONG_INFO:
            return
        snapshot = message.type == MessageType.STATE_SYNC
        if self._resyncing and not snapshot and message.correlation_id is None and info != SPRINT_FINISHED:
            return  # an event the snapshot on its way holds
        if snapshot:
            self._resyncing = False
        elif len(self._queue) >= self._max_queued:
            self._lost(f"{len(self._queue):,} messages were waiting to be shown")
            if message.correlation_id is None and info != SPRINT_FINISHED:
                return
        self._put(message)
        if info == SPRINT_FINISHED:
            self._end()

    def _out_of_band(self, message: IPCMessage) -> None:
        """A message without a number: the manager's answer to a hello it refused (or after the
        end), or a refusal of what this watcher sent."""
        if message.type == MessageType.AGENT_ERROR and message.payload.field == "session":
            message = make_message(MessageType.AGENT_ERROR, MANAGER_ID, self.name, {
                "error": "the manager no longer knows this watcher (was serve restarted?): watch it again"})
        self._put(message)
        if self._session is None or message.type == MessageType.AGENT_ERROR and message.correlation_id is None:
            self._end()

    def _lost(self, why: str) -> None:
        """Something did not reach this watcher: drop what its state no longer follows from, and
        ask for a fresh snapshot (once; `_ping` asks again if it does not come)."""
        if self._session is None or (self._queue and self._queue[-1] is None):
            return  # no session to ask with yet (the hello is unanswered), or the watch is over
        self.gaps += 1
        self._queue = deque(m for m in self._queue if m is not None and m.correlation_id is not None)  # replies
        log.info("watcher %s: %s; asking for a fresh snapshot", self.name, why)
        if not self._resyncing:
            self._resyncing = True
            self._ask()

    def _ask(self) -> None:
        self._asked_at = time.monotonic()
        asyncio.get_running_loop().create_task(self.send(self._info(RESYNC_INFO)))

    def _put(self, message: IPCMessage | None) -> None:
        self._queue.append(message)
        self._ready.set()

    def _end(self) -> None:
        if not self._queue or self._queue[-1] is not None:
            self._put(None)

    # ------------------------------------------------------------ keeping in touch

    async def _ping(self) -> None:
        """Say this watcher is here; end the watch when the manager stopped answering."""
        while True:
            await asyncio.sleep(WATCH_PING)
            if self._session is None:
                if self._hello is not None and not self._queue:  # the manager was not consuming yet
                    await self.send(self._hello.model_copy(update={"id": new_id()}))
                continue
            await self.send(self._info(PING_INFO))
            if self._resyncing and time.monotonic() - self._asked_at > 2 * WATCH_PING:
                self._ask()
            if not self._nc.is_connected:
                self._heard = time.monotonic()  # NATS is away: the manager's silence says nothing
            elif time.monotonic() - self._heard > SILENCE:
                log.warning("watcher %s: the manager sent nothing for %.0f s", self.name, SILENCE)
                self._end()
                return

    def _info(self, info: str) -> IPCMessage:
        return make_message(MessageType.BROADCAST_INFO, self.name, MANAGER_ID, {"info": info})


async def _quiet(error: Exception) -> None:
    log.debug("NATS: %s", error)
