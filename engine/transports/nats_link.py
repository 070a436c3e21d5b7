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

import asyncio
import os
import ssl
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

from engine.transports.address import Address
from engine.transports.base import TransportError

SESSION_HEADER = "Sprintdeck-Session"
CONNECT_TIMEOUT = 5  # seconds for one attempt to reach the NATS server
CONNECT_GIVE_UP = 12.0  # seconds for the first connection, all attempts together


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
    """Connect once and leave: `serve` checks the server and its credentials before it touches a
    journal, so a wrong address, password or certificate is an error naming it, not a stuck sprint."""
    nc = await connect_nats(address, credentials, name="sprintdeck-probe")
    await nc.close()


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
        text = str(cause).removeprefix("nats: ").strip("'") or type(cause).__name__
        if isinstance(exc, TimeoutError) and not errors:
            text = f"no answer within {CONNECT_GIVE_UP:g}s (does it need TLS, --nats-tls-ca?)"
        kind = NatsRefused if "authori" in text.lower() else TransportError
        raise kind(f"the NATS server at {server_url(address)} refused the connection: {text}"
                   if kind is NatsRefused else f"cannot reach the NATS server at {server_url(address)}: {text}") from None
    nc.options["max_reconnect_attempts"] = -1  # from now on, wait for the server as long as it takes
    return nc
