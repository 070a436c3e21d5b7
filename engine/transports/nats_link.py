"""What both sides of the NATS transport share: the subjects, the credentials, the connection.

Subjects are per sprint, so that several sprints share one NATS server without seeing each other:
`sprintdeck.<sprint>.manager` (everything agents send), `sprintdeck.<sprint>.agent.<id>` (what the
manager sends one agent) and `sprintdeck.<sprint>.broadcast` (what it sends every agent).

A NATS account lets a client publish; it does not make the client an agent.  The manager binds
an agent with its token in `agent_ready`, exactly as over a socket, and answers the welcome with a
session key (the `Sprintdeck-Session` header) that only the client that sent the right token
receives, on its own reply subject.  Every later message carries that key, and the manager takes it
as the agent the key was given to: a client without it (or with another agent's `from`) is refused.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

from engine.transports.address import Address, AddressError
from engine.transports.base import TransportError

SESSION_HEADER = "Sprintdeck-Session"
CONNECT_TIMEOUT = 5  # seconds for one attempt to reach the NATS server


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
    """The address agents connect to: the sprint's name filled in, once a NATS server answers there.

    Checked before `serve` touches a journal, so a wrong host or port is a clear error (exit 2),
    not a sprint that waits for a server that is not there.
    """
    try:
        socket.create_connection((address.host, address.port), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise AddressError(f"no NATS server answers at {server_url(address)}: {exc.strerror or exc}") from None
    return Address("nats", host=address.host, port=address.port, sprint=address.sprint or sprint)


def server_url(address: Address) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"nats://{host}:{address.port}"


async def connect_nats(
    address: Address,
    credentials: NatsCredentials,
    *,
    name: str,
    **callbacks: Any,
) -> Client:
    """One connection to the NATS server, reconnecting by itself for as long as it is needed.

    A refused connection (no server, bad credentials) raises `TransportError` naming the address.
    """
    try:
        return await nats.connect(
            servers=[server_url(address)],
            name=name,
            connect_timeout=CONNECT_TIMEOUT,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.2,  # seconds between attempts: a restarted server is back within ~0.2 s
            **credentials.connect_options(),
            **callbacks,
        )
    except (NatsError, OSError, TimeoutError) as exc:
        raise TransportError(f"cannot reach the NATS server at {server_url(address)}: {exc or type(exc).__name__}") from None
