"""`sprintdeck web ADDR`: the dashboard attached to a running `serve`, in a browser (textual-serve).

Each page a visitor opens runs its own `sprintdeck watch ADDR` process (app/commands/watch.py), so
every visitor gets the same dashboard `watch` gives in a terminal, attached to the one manager: no
page ever starts a sprint or a manager of its own.  ADDR and `--token-file` are passed to `watch`
unchanged, so whatever `watch` can attach to, a page can too.

The page is as powerful as the token it holds: without `--token-file` it is read-only; with it,
anyone who can open the page can operate the sprint.  So it listens on loopback unless `--host`
says otherwise, and then warns.  What cannot work is said before serving, each with exit code 2
and no traceback: a bad ADDR or token file, textual-serve missing, the port in use, and a manager
that does not answer there (checked by attaching once, as a page would).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import importlib.util
import ipaddress
import os
import shlex
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli import EXIT_BAD_INPUT, EXIT_OK
from engine.transports.address import LOOPBACK_NAMES, Address, AddressError, parse_address
from engine.transports.tokens import TokenError, read_operator_token

if TYPE_CHECKING:
    from engine.transports.nats_link import NatsCredentials

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
CHECK_SECONDS = 10.0  # how long the manager has to answer the check before serving
TEXTUAL_SERVE = "textual-serve>=1.1,<2"


class WebError(Exception):
    """Why `web` cannot serve; the message says what to do."""


def main(args: argparse.Namespace) -> int:
    try:
        address = parse_address(args.address)
        token = read_operator_token(Path(args.token_file)) if args.token_file else None
        if importlib.util.find_spec("textual_serve") is None:
            raise WebError(f"web needs textual-serve, which is not installed: pip install '{TEXTUAL_SERVE}'")
        sock = bind(args.host, args.port)
    except AddressError as exc:
        return _refuse(f"web {exc}")
    except TokenError as exc:
        return _refuse(f"--token-file: {exc}")
    except WebError as exc:
        return _refuse(str(exc))
    # Imported once textual-serve is known to be there: what a page runs needs the engine's libraries.
    from app.commands.agent import nats_arguments, nats_credentials, nats_secrets
    from app.commands.watch import nats_problem

    try:
        credentials = nats_credentials(args) if address.kind == "nats" else None
        problem = (nats_problem(address, credentials) if credentials is not None else None) or asyncio.run(
            manager_problem(address, token, credentials))
        if problem is not None:
            return _refuse(problem)
        # The pages' watch processes inherit the NATS password and token from the environment,
        # never on their command lines (which every user of the machine can read).
        os.environ.update(nats_secrets(credentials))
        return _serve(args, sock, token is not None, nats_arguments(credentials))
    finally:
        sock.close()


def _refuse(message: str) -> int:
    print(f"sprintdeck: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a port in use is said before anything else."""
    if not 0 <= port <= 65535:
        raise WebError(f"--port {port} is not a number from 0 to 65535")
    try:
        return socket.create_server((host, port), family=_family(host), reuse_port=False)
    except socket.gaierror as exc:
        raise WebError(f"--host {host!r} is not an address of this machine: {exc.strerror}") from None
    except OSError as exc:
        if port and exc.errno == errno.EADDRINUSE:
            raise WebError(f"port {port} on {host} is in use (another program listens there): "
                           "choose another with --port, or --port 0 for a free one") from None
        raise WebError(f"cannot listen on {host} port {port}: {exc.strerror or exc}") from None


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return socket.AF_INET  # a name: resolved by create_server


async def manager_problem(address: Address, token: str | None, credentials: NatsCredentials | None = None) -> str | None:
    """Attach once, as each page's `watch` will, and leave: why that failed, or None."""
    from app.watch_source import WatchedSource, WatchRefused

    try:
        source = await asyncio.wait_for(WatchedSource.connect(address, "web", token, credentials), CHECK_SECONDS)
    except WatchRefused as exc:
        return str(exc)
    except TimeoutError:
        return f"{address} did not answer within {CHECK_SECONDS:g} s (is it a sprintdeck serve?)"
    await source.stop()
    return None


def watch_command(args: argparse.Namespace, nats_options: list[str] | None = None) -> str:
    """The shell line each page runs: `sprintdeck watch` with ADDR as given, in this Python, through
    app/web_page.py so that it ends with this process however this one ends (`exec`: no shell between)."""
    command = [sys.executable, "-m", "app.web_page", str(os.getpid()), "watch", args.address]
    if args.token_file:
        command += ["--token-file", str(Path(args.token_file).resolve())]
    if args.theme:
        command += ["--theme", args.theme]
    command += nats_options or []
    return f"exec {shlex.join(command)}"


def page_url(sock: socket.socket) -> str:
    """The URL to open: on a wildcard address, the loopback one (the warning names the others)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def is_loopback(host: str) -> bool:
    try:
        return host in LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int, token_file: str | None) -> str:
    """What binding beyond loopback means: whoever reaches the port holds what the page holds."""
    power = (f"it holds the operator token of {token_file}: anyone who opens it can reassign, retry, "
             "cancel and pause as you" if token_file else "it is read-only (no --token-file), but shows the whole sprint")
    return (f"sprintdeck: warning: web listens on {host} port {port}, not only on loopback: anyone who can "
            f"reach it can open the dashboard, and the page is as powerful as the token it holds; {power}. "
            "Nothing is encrypted (use an SSH tunnel or a TLS proxy across networks).")


def _serve(args: argparse.Namespace, sock: socket.socket, operator: bool, nats_options: list[str]) -> int:
    from app.web_server import DashboardServer

    loopback = is_loopback(args.host)
    if not loopback:
        print(exposure_warning(args.host, sock.getsockname()[1], args.token_file), file=sys.stderr)
    url = page_url(sock)
    print(f"sprintdeck: the dashboard of {args.address} at {url}"
          f"{'' if operator else ' (read-only)'}; each page runs its own `sprintdeck watch`; ctrl+c stops",
          file=sys.stderr)
    print(url, flush=True)
    server = DashboardServer(watch_command(args, nats_options), sock, title=f"sprintdeck · {args.address}", loopback=loopback)
    server.run()
    return EXIT_OK
