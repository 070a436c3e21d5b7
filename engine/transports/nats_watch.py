"""The manager's side of `sprintdeck watch nats://HOST:PORT/SPRINT` (the watch protocol of
engine/watchers.py, carried by NATS).

A watcher says hello as an agent does, on `sprintdeck.<sprint>.manager` with its reply subject
(`agent_ready`, `channel: "watch"`, the operator token if it has one); the desk checks it, and a
refused hello is answered and journaled as any refusal.  An accepted watcher gets a session key
with every message, and its later messages carry it: pings, requests for a fresh snapshot
(`resync`), operator requests, and its goodbye.

What the manager sends a watcher is published on core NATS to the watcher's reply subject:
fire-and-forget, so the manager never waits for a watcher, however slow (the desk's list of
pending events per watcher is bounded too).  The price is that NATS may drop what a slow watcher
does not take (nats-server cuts a slow consumer off; the client's own buffers are bounded), so
every message carries the watcher's next sequence number (`Sprintdeck-Seq`), and one larger than
the server's payload limit goes in numbered parts (`Sprintdeck-Part: i/n`): a watcher that sees a
number missing asks for a fresh snapshot (engine/transports/nats_watcher.py).  A watcher pings
every `WATCH_PING` seconds and is answered, so each side knows the other is there; one not heard
from for `WATCH_LEASE` seconds is let go.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from engine.protocol import MANAGER_ID, IPCMessage, MessageType, ProtocolError, make_message, parse_message
from engine.transports.external import finished_notice
from engine.transports.nats_link import SESSION_HEADER
from engine.transports.watching import RESYNC_INFO, WatchDesk, WatchLink

log = logging.getLogger(__name__)

SEQ_HEADER = "Sprintdeck-Seq"  # the watcher's sequence number of this message (or part)
PART_HEADER = "Sprintdeck-Part"  # "i/n": part i of a message published in n parts
PING_INFO = "ping"  # a watcher's "I am here", answered with PONG_INFO
PONG_INFO = "pong"
BYE_INFO = "bye"  # a watcher leaves
WATCH_PING = 2.0  # seconds between a watcher's pings
WATCH_LEASE = 15.0  # seconds without a word from a watcher before it is let go
PART_HEADROOM = 1024  # bytes of a NATS message kept for its headers

Refuse = Callable[..., Awaitable[None]]  # NatsTransport._refuse: answer the sender and record it


@dataclass
class WatchRoute:
    """One watcher, as NATS reaches it: its reply subject, its session key, its sequence."""

    name: str
    reply: str
    session: str
    heard: float  # when the watcher last sent anything (monotonic)
    seq: int = 0
    link: WatchLink | None = None


class NatsWatchers:
    """The watchers attached through NATS, fed by `desk` (the manager's `WatchHub`)."""

    def __init__(self, connection: Callable[[], Client | None], refuse: Refuse) -> None:
        self.desk: WatchDesk | None = None
        self._connection = connection
        self._refuse = refuse
        self._routes: dict[str, WatchRoute] = {}  # session key -> watcher
        self._expiry: asyncio.Task[None] | None = None

    def owns(self, session: str | None) -> bool:
        return session is not None and session in self._routes

    # ------------------------------------------------------------ joining and leaving

    async def hello(self, msg: Msg, hello: IPCMessage, reply: str | None) -> None:
        """A watcher's hello: the desk feeds it (its snapshot answers the hello) or it is refused."""
        if any(route.reply == reply for route in self._routes.values()):
            return  # the same watcher said hello again before our answer reached it: it is fed already
        desk = self.desk
        problem = ("", "this server takes no watchers") if desk is None else desk.refusal(hello)
        if problem is None and reply is None:
            problem = "reply", "a watcher's hello needs a Sprintdeck-Reply header for the manager's answer"
        if desk is None or problem is not None or reply is None:
            await self._refuse(msg, *(problem or ("", "")), hello, security=True)
            return
        route = WatchRoute(hello.from_, reply, secrets.token_urlsafe(18), time.monotonic())
        self._routes[route.session] = route
        route.link = desk.attach(hello, lambda message: self.publish(route, message))
        if self._expiry is None or self._expiry.done():
            self._expiry = asyncio.get_running_loop().create_task(self._expire(), name="nats-watch-expiry")

    def _leave(self, route: WatchRoute) -> None:
        self._routes.pop(route.session, None)
        if route.link is not None and self.desk is not None:
            self.desk.detach(route.link)

    async def _expire(self) -> None:
        """Let go of the watchers that stopped pinging (gone without a goodbye)."""
        while self._routes:
            await asyncio.sleep(WATCH_PING)
            now = time.monotonic()
            for route in [r for r in self._routes.values() if now - r.heard > WATCH_LEASE]:
                log.info("watcher %s sent nothing for %.0f s: let go", route.name, now - route.heard)
                self._leave(route)

    # ------------------------------------------------------------ what watchers send

    async def take(self, msg: Msg, session: str) -> None:
        """A later message of a watcher: a ping, a resync request, an operator request, a goodbye."""
        route = self._routes[session]
        route.heard = time.monotonic()
        try:
            message = parse_message(msg.data)
        except ProtocolError as exc:
            await self._refuse(msg, exc.field, exc.reason, message_id=exc.message_id, bound=route.name)
            return
        info = message.payload.info if message.type == MessageType.BROADCAST_INFO else None
        desk, link = self.desk, route.link
        if message.from_ != route.name:
            reason = f"this session is watcher {route.name!r}'s; a message from {message.from_!r} is refused"
            await self._refuse(msg, "from", reason, message, bound=route.name, security=True)
        elif desk is None or link is None:
            return
        elif info == PING_INFO:
            await self.publish(route, make_message(MessageType.BROADCAST_INFO, MANAGER_ID, route.name, {"info": PONG_INFO}))
        elif info == RESYNC_INFO:
            desk.resync(link)
        elif info == BYE_INFO:
            self._leave(route)
        elif info is not None and message.requires_response:
            await self.publish(route, desk.operate(link, message))
        else:
            await self._refuse(msg, "type", "a watcher sends pings, resync and operator requests only (broadcast_info), "
                               f"not {message.type}{f' {info!r}' if info else ''}", message, bound=route.name)

    # ------------------------------------------------------------ what watchers receive

    async def publish(self, route: WatchRoute, message: IPCMessage) -> None:
        """Publish on the watcher's reply subject, numbered, in parts when too large; never waits
        for the watcher.  A part NATS would not take is skipped: its number is not, so the watcher
        sees the gap and asks for a fresh snapshot."""
        nc = self._connection()
        if nc is None or nc.is_closed:
            return
        data = message.wire().encode()
        size = max(nc.max_payload - PART_HEADROOM, PART_HEADROOM)
        parts = [data[at:at + size] for at in range(0, len(data), size)]
        for number, part in enumerate(parts, 1):
            route.seq += 1
            headers = {SEQ_HEADER: str(route.seq), SESSION_HEADER: route.session}
            if len(parts) > 1:
                headers[PART_HEADER] = f"{number}/{len(parts)}"
            try:
                await nc.publish(route.reply, part, headers=headers)
            except (NatsError, OSError) as exc:
                log.debug("watcher %s: part %d of %s not published: %s", route.name, number, message.type, exc)

    async def finish(self, timeout: float) -> None:
        """The sprint is over: the watchers take what is pending, then the notice that it ended."""
        if self.desk is not None:
            await self.desk.finish(timeout)
        for route in list(self._routes.values()):
            await self.publish(route, finished_notice(route.name))
        self._routes.clear()

    async def close(self) -> None:
        for route in list(self._routes.values()):
            self._leave(route)
        if self._expiry is not None:
            self._expiry.cancel()
            await asyncio.gather(self._expiry, return_exceptions=True)
