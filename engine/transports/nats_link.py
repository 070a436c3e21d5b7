"""What both sides of the NATS transport share: the subjects, the credentials, the connection.

Subjects are per sprint, so that several sprints share one NATS server without seeing each other:
`sprintdeck.<sprint>.manager` (hellos: agents' and watchers', and what watchers send),
`sprintdeck.<sprint>.manager.<id>` (what a bound agent sends: each agent's subject has a consumer of
its own, so that one agent's backlog never holds up another's messages), `sprintdeck.<sprint>.agent.<id>`
(what the manager sends one agent) and `sprintdeck.<sprint>.broadcast` (what it sends every agent),
all kept in the sprint's stream; and `sprintdeck.<sprint>.ask.<id>`, the bound agent's requests on
core NATS, answered on its reply subject (engine/transports/nats_order.py).

A NATS account lets a client publish; it does not make the client an agent.  The manager binds
an agent with its token in `agent_ready`, exactly as over a socket, and answers the welcome with a
session key (the `Sprintdeck-Session` header) that only the client that sent the right token
receives, on its own reply subject.  Every later message carries that key, and the manager takes it
as the agent the key was given to: a client without it (or with another agent's `from`) is refused.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, NotFoundError

from engine.os_errors import describe
from engine.protocol import IPCMessage

from engine.transports.address import Address
from engine.transports.base import TransportError

SESSION_HEADER = "Sprintdeck-Session"
REPLY_HEADER = "Sprintdeck-Reply"  # where refusals go: JetStream replaces a message's reply subject
MSG_ID_HEADER = "Nats-Msg-Id"  # JetStream drops a second message with the same id (the dedupe window)
DEDUPE_WINDOW = 300.0  # seconds within which a message published again is dropped by the server
STREAM_MAX_AGE = 7 * 24 * 3600.0  # seconds a sprint's messages are kept (2.9 has no per-message TTL)
ACK_WAIT = 5.0  # seconds before a message not acknowledged by its consumer is delivered again
PUBLISH_TIMEOUT = 2.0  # seconds for the server to acknowledge (store) a published message
SEEN_LIMIT = 100_000  # message ids remembered to apply none twice
CONNECT_TIMEOUT = 5  # seconds for one attempt to reach the NATS server
CONNECT_GIVE_UP = 12.0  # seconds for the first connection, all attempts together
MANAGER_DURABLE = "manager"  # the manager's consumer of the sprint's manager subject


@dataclass(frozen=True)
class Subjects:
    """The subjects of one sprint."""

    sprint: str

    @property
    def manager(self) -> str:
        return f"sprintdeck.{self.sprint}.manager"

    @property
    def broadcast(self) -> str:
        return f"sprintdeck.{self.sprint}.broadcast"

    def agent(self, agent_id: str) -> str:
        return f"sprintdeck.{self.sprint}.agent.{agent_id}"

    def sent_by(self, agent_id: str) -> str:
        """What the bound agent sends the manager (its hello goes to `manager`)."""
        return f"sprintdeck.{self.sprint}.manager.{agent_id}"

    def asked_by(self, agent_id: str) -> str:
        """The bound agent's requests, on core NATS (not stored: the reply is their acknowledgement;
        see engine/transports/nats_order.py)."""
        return f"sprintdeck.{self.sprint}.ask.{agent_id}"

    @property
    def stored(self) -> list[str]:
        """The subjects the sprint's stream keeps: everything but the requests' fast way."""
        prefix = f"sprintdeck.{self.sprint}"
        return [f"{prefix}.manager", f"{prefix}.manager.>", f"{prefix}.agent.>", f"{prefix}.broadcast"]

    @property
    def stream(self) -> str:
        """The JetStream stream that keeps every message of the sprint until it is acknowledged."""
        return f"SPRINTDECK_{self.sprint}"


async def served_elsewhere(js: JetStreamContext, subjects: Subjects) -> bool:
    """Whether a manager consumes the sprint's subject right now: its durable consumer is bound
    (the NATS server unbinds it as soon as that manager's connection is gone, even by kill -9).
    A second `serve` of the sprint would share the subjects and purge the first one's stream."""
    try:
        info = await js.consumer_info(subjects.stream, MANAGER_DURABLE)
    except NotFoundError:
        return False
    return bool(info.push_bound)


def already_served(address: Address, subjects: Subjects) -> str:
    """Why a second manager of the sprint is refused, and what to do instead."""
    return (f"sprint {subjects.sprint!r} is already served on the NATS server at {server_url(address)} by another "
            f"serve: stop that one first, or serve this one under another name (--listen {server_url(address)}/OTHER)")


async def ensure_stream(js: JetStreamContext, subjects: Subjects, *, fresh: bool) -> None:
    """The sprint's stream on file storage, with de-duplication by message id; a new sprint (not a
    resumed one) starts from an empty stream, so no message of an earlier run is delivered."""
    config = StreamConfig(name=subjects.stream, subjects=subjects.stored,
                          storage=StorageType.FILE, duplicate_window=DEDUPE_WINDOW, max_age=STREAM_MAX_AGE)
    try:
        await js.add_stream(config)
    except BadRequestError:  # it exists (with other settings): ours apply
        await js.update_stream(config)
    if fresh:
        await js.purge_stream(subjects.stream)


async def consume(js: JetStreamContext, subject: str, durable: str, cb: Callable[[Msg], Awaitable[None]],
                  *, max_ack_pending: int | None = None) -> int:
    """A durable consumer with explicit acks: what it has not acknowledged comes again after
    `ACK_WAIT`, after a reconnect and after a restart of the server; it starts at new messages.
    With `max_ack_pending` the server delivers no more than that many unacknowledged at once: the
    rest waits in the stream (the NATS form of not reading a socket).  Returns the stream sequence
    the consumer last delivered (before this subscription: a durable one may have a past)."""
    config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT,
                            max_ack_pending=max_ack_pending)
    subscription = await js.subscribe(subject, durable=durable, cb=cb, manual_ack=True, config=config)
    info = await subscription.consumer_info()
    return int(info.delivered.stream_seq) if info.delivered is not None else 0


async def store(js: JetStreamContext, subject: str, message: IPCMessage, headers: dict[str, str] | None = None) -> int:
    """Publish `message` into the stream and wait until the server has stored it: its sequence in
    the stream, or 0 when the server did not say so (then the caller publishes it again: the message
    id makes that harmless)."""
    try:
        # The id is per subject: a broadcast the manager passes on keeps the id of the agent's message.
        ack = await js.publish(subject, message.wire().encode(), timeout=PUBLISH_TIMEOUT,
                               headers={**(headers or {}), MSG_ID_HEADER: f"{subject}:{message.id}"})
    except (NatsError, OSError, TimeoutError):
        return 0
    return int(ack.seq)


class Seen:
    """The message ids already applied, the last `SEEN_LIMIT` of them: a redelivery (its ack was
    lost with the server) is acknowledged again and not applied twice."""

    def __init__(self) -> None:
        self._ids: dict[str, None] = {}

    def first_time(self, msg: Msg) -> bool:
        message_id = (msg.headers or {}).get(MSG_ID_HEADER)
        if message_id is None:
            return True
        if message_id in self._ids:
            return False
        self._ids[message_id] = None
        if len(self._ids) > SEEN_LIMIT:
            del self._ids[next(iter(self._ids))]
        return True


@dataclass(frozen=True)
class NatsCredentials:
    """How to authenticate to the NATS server (`--nats-*` options); all optional, passed through."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None  # a .creds file (JWT and NKey seed)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def problem(self) -> str | None:
        """The first option that cannot work (a file that is not there, a password without a user)."""
        for option, path in (("--nats-creds", self.creds), ("--nats-tls-ca", self.tls_ca),
                             ("--nats-tls-cert", self.tls_cert), ("--nats-tls-key", self.tls_key)):
            if path is not None and not os.path.isfile(path):
                return f"{option} {path}: no such file"
        if self.password is not None and self.user is None:
            return "--nats-password needs --nats-user"
        if self.tls_key is not None and self.tls_cert is None:
            return "--nats-tls-key needs --nats-tls-cert"
        return None

    def connect_options(self) -> dict[str, Any]:
        """nats.connect's keyword arguments for these credentials."""
        options: dict[str, Any] = {}
        if self.user is not None:
            options["user"] = self.user
            options["password"] = self.password or ""
        if self.token is not None:
            options["token"] = self.token
        if self.creds is not None:
            options["user_credentials"] = self.creds
        if self.tls_ca or self.tls_cert:
            options["tls"] = self.tls_context()
        return options

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context: the CA to trust the server by, and our certificate if given."""
        try:
            context = ssl.create_default_context(cafile=self.tls_ca)
            if self.tls_cert:
                context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"cannot use the NATS TLS files: {exc}") from None
        return context


def nats_address(address: Address, sprint: str) -> Address:
    """The address agents connect to: the sprint's name filled in when the address has none."""
    return Address("nats", host=address.host, port=address.port, sprint=address.sprint or sprint)


async def probe(address: Address, credentials: NatsCredentials) -> None:
    """Connect once and leave: `serve` checks the server, its credentials and JetStream, and that
    no other manager serves the sprint, before it touches a journal, so a wrong address, password
    or certificate, or a sprint name in use, is an error naming it, not a stuck or mixed sprint."""
    nc = await connect_nats(address, credentials, name="sprintdeck-probe")
    try:
        js = nc.jetstream()
        await js.account_info()
        busy = bool(address.sprint) and await served_elsewhere(js, Subjects(address.sprint))
    except (NatsError, TimeoutError) as exc:
        raise TransportError(f"the NATS server at {server_url(address)} has no JetStream (start it with -js): {exc}") from None
    finally:
        await nc.close()
    if busy:
        raise TransportError(already_served(address, Subjects(address.sprint)))


def server_url(address: Address) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"nats://{host}:{address.port}"


class NatsRefused(TransportError):
    """The NATS server refused our credentials: retrying with the same ones cannot help."""


async def connect_nats(
    address: Address,
    credentials: NatsCredentials,
    *,
    name: str,
    **callbacks: Any,
) -> Client:
    """One connection to the NATS server that, once made, reconnects by itself for as long as needed.

    The first connection is tried twice only, so that a wrong address or wrong credentials is an
    error naming them (`TransportError`, `NatsRefused` for an authorization failure) instead of
    nats-py's endless retrying; after it, the client retries forever (the server may restart).
    """
    errors: list[Exception] = []
    report = callbacks.pop("error_cb", None)

    async def on_error(error: Exception) -> None:
        errors.append(error)
        if report is not None:
            await report(error)

    try:
        async with asyncio.timeout(CONNECT_GIVE_UP):  # nats-py can wait forever on a TLS mismatch
            nc = await nats.connect(
                servers=[server_url(address)],
                name=name,
                connect_timeout=CONNECT_TIMEOUT,
                allow_reconnect=True,
                max_reconnect_attempts=1,
                reconnect_time_wait=0.2,  # seconds; a restarted server is back soon
                error_cb=on_error,
                **credentials.connect_options(),
                **callbacks,
            )
    except (NatsError, OSError, TimeoutError) as exc:
        refusals = [error for error in errors if "authori" in str(error).lower()]  # more telling than a reset
        cause = (refusals or errors or [exc])[-1]
        if isinstance(cause, OSError) and not isinstance(cause, ssl.SSLError) and cause.errno is not None:
            text = describe(cause)  # a sentence, not "[Errno 111] Connect call failed"
        else:
            text = str(cause).removeprefix("nats: ").strip("'") or type(cause).__name__
        if isinstance(exc, TimeoutError) and not errors:
            text = f"no answer within {CONNECT_GIVE_UP:g}s (does it need TLS, --nats-tls-ca?)"
        kind = NatsRefused if "authori" in text.lower() else TransportError
        raise kind(f"the NATS server at {server_url(address)} refused the connection: {text}"
                   if kind is NatsRefused else f"cannot reach the NATS server at {server_url(address)}: {text}") from None
    nc.options["max_reconnect_attempts"] = -1  # from now on, wait for the server as long as it takes
    return nc
