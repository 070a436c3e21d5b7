"""`sprintdeck agent --connect ADDR --id ID`: one external agent of a served sprint, in this process.

It binds to the server with its token, heartbeats at the interval the server names, and runs each
assignment's command in the workspace (or simulates it with `--simulate`), using the embedded
agents' code.  When the connection drops it keeps reconnecting, so it carries on with a server
restarted by `serve --resume`.  Exit codes: 0 the sprint finished, 1 no server answered for
`--give-up-after` seconds, 2 bad input or a refused token.  SIGTERM stops it cleanly (running
commands are killed with their process group).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from app.cli import EXIT_BAD_INPUT
from engine.agents.remote import serve_agent, until_the_sprint_ends, whole_lines_on_stderr
from engine.transports.address import Address, AddressError, parse_address
from engine.transports.client import ClientEvents, SocketClient
from engine.transports.nats_client import NatsClient
from engine.transports.nats_link import NatsCredentials
from engine.transports.tokens import TokenError, token_source



def main(args: argparse.Namespace) -> int:
    whole_lines_on_stderr()
    prefix = f"sprintdeck agent {args.id}"
    try:
        address = parse_address(args.connect)
        token = token_source(args.id, args.token_file)
    except (AddressError, TokenError) as exc:
        print(f"{prefix}: {'--connect ' if isinstance(exc, AddressError) else ''}{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    workspace = Path(args.workspace).resolve() if args.workspace else None
    if workspace is not None and not workspace.is_dir():
        print(f"{prefix}: --workspace {workspace} is not a directory", file=sys.stderr)
        return EXIT_BAD_INPUT
    _log_to_stderr(prefix)
    give_up = args.give_up_after if args.give_up_after and args.give_up_after > 0 else None
    credentials = nats_credentials(args)
    if address.kind == "nats" and (problem := _nats_problem(address, credentials)) is not None:
        print(f"{prefix}: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return asyncio.run(run(address, args.id, token, workspace, simulate=args.simulate, give_up_after=give_up,
                           credentials=credentials))


async def run(
    address: Address,
    agent_id: str,
    token: Callable[[], str],
    workspace: Path | None,
    *,
    simulate: bool,
    give_up_after: float | None,
    credentials: NatsCredentials | None = None,
) -> int:
    prefix = f"sprintdeck agent {agent_id}"
    events = _events(prefix, address)
    client: SocketClient
    if address.kind == "nats":
        client = NatsClient(address, agent_id, token=token, credentials=credentials, give_up_after=give_up_after,
                            events=events)
    else:
        client = SocketClient(address, agent_id, token=token, give_up_after=give_up_after, events=events)

    async def serve() -> list[str] | None:
        try:
            agent = await serve_agent(client, simulate=simulate, workspace=workspace)
        finally:
            await client.close()
        return None if agent is None else agent.finished_tasks

    return await until_the_sprint_ends(prefix, serve())


NATS_SECRETS = {"password": "SPRINTDECK_NATS_PASSWORD", "token": "SPRINTDECK_NATS_TOKEN"}


def nats_credentials(args: argparse.Namespace) -> NatsCredentials:
    """The `--nats-*` options (`serve` and `agent` share them), passed through to nats-py.  The
    password and token may come from the environment instead (`NATS_SECRETS`), which keeps them
    out of the command line that every user of the machine can read in /proc."""
    return NatsCredentials(user=args.nats_user, password=args.nats_password or os.environ.get(NATS_SECRETS["password"]),
                           token=args.nats_token or os.environ.get(NATS_SECRETS["token"]),
                           creds=args.nats_creds, tls_ca=args.nats_tls_ca, tls_cert=args.nats_tls_cert,
                           tls_key=args.nats_tls_key)


def nats_arguments(credentials: NatsCredentials | None) -> list[str]:
    """The `agent` options that pass `credentials` on, all but the secrets (see `NATS_SECRETS`)."""
    if credentials is None:
        return []
    options = {"--nats-user": credentials.user, "--nats-creds": credentials.creds, "--nats-tls-ca": credentials.tls_ca,
               "--nats-tls-cert": credentials.tls_cert, "--nats-tls-key": credentials.tls_key}
    return [part for option, value in options.items() if value is not None for part in (option, os.path.abspath(value)
            if option != "--nats-user" else value)]


def nats_secrets(credentials: NatsCredentials | None) -> dict[str, str]:
    """The environment that passes the password and token on to an agent process."""
    if credentials is None:
        return {}
    values = {"password": credentials.password, "token": credentials.token}
    return {NATS_SECRETS[name]: value for name, value in values.items() if value is not None}


def _nats_problem(address: Address, credentials: NatsCredentials) -> str | None:
    if not address.sprint:
        return f"--connect {address}: name the sprint as serve prints it, nats://HOST:PORT/SPRINT"
    return credentials.problem()


def _events(prefix: str, address: Address) -> ClientEvents:
    """Status lines on stderr: one per connection, loss and outage (not one per retry)."""
    waiting = [False]

    def connected(reconnected: bool) -> None:
        waiting[0] = False
        print(f"{prefix}: {'reconnected' if reconnected else 'connected'} to {address}", file=sys.stderr, flush=True)

    def lost(reason: str) -> None:
        print(f"{prefix}: connection lost ({reason}); reconnecting", file=sys.stderr, flush=True)

    def retrying(error: str, delay: float) -> None:
        if not waiting[0]:
            waiting[0] = True
            print(f"{prefix}: waiting for the server at {address} ({error})", file=sys.stderr, flush=True)

    return ClientEvents(connected=connected, lost=lost, retrying=retrying)


def _log_to_stderr(prefix: str) -> None:
    """What the agent decides on its own (reconciling after a reconnect) is worth a line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{prefix}: %(message)s"))
    for name in ("engine.agents.remote", "engine.transports.client", "engine.transports.nats_client"):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
