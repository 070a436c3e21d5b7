"""`sprintdeck watch ADDR`: the dashboard attached to a running `serve` (engine/watchers.py).

Read-only unless `--token-file` gives serve's operator token; then the operator keys work and are
journaled under `--name` (default: the login name).  `--headless` shows no dashboard: it follows the
sprint to its end and, with `--json`, prints the final state and metrics as `serve --json` does
(what the tests compare); without `--json` it prints a line per resync and the outcome.
Quitting the dashboard leaves the sprint running.  Over NATS (`nats://HOST:PORT/SPRINT`) the
`--nats-*` options log in to the NATS server as they do for `agent`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path

from app.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_TASKS_FAILED
from app.commands.agent import nats_credentials
from app.commands.run import print_result_json
from app.watch_source import WatchedSource, WatchRefused
from engine.manager import SprintResult
from engine.metrics import sprint_metrics, sprint_outcome, sprint_succeeded
from engine.transports.address import Address, AddressError, parse_address
from engine.transports.nats_link import NatsCredentials
from engine.transports.tokens import TokenError, read_operator_token
from engine.watchers import watcher_name_problem

EXIT_ENDED_EARLY = 1  # the server went away before the sprint finished


def main(args: argparse.Namespace) -> int:
    try:
        address = parse_address(args.address)
        token = read_operator_token(Path(args.token_file)) if args.token_file else None
    except AddressError as exc:
        print(f"sprintdeck: watch {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TokenError as exc:
        print(f"sprintdeck: --token-file: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    name = args.name or _login()
    if (problem := watcher_name_problem(name)) is not None:
        print(f"sprintdeck: --name: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    credentials = nats_credentials(args)
    if address.kind == "nats" and (problem := nats_problem(address, credentials)) is not None:
        print(f"sprintdeck: watch {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if args.headless:
            return asyncio.run(_headless(address, name, token, args.json, credentials))
        return asyncio.run(_dashboard(address, name, token, args.theme, credentials))
    except WatchRefused as exc:
        print(f"sprintdeck: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def nats_problem(address: Address, credentials: NatsCredentials) -> str | None:
    """What is wrong with a nats:// address or its --nats-* options before connecting (web checks them too)."""
    if not address.sprint:
        return f"{address}: name the sprint as serve prints it, nats://HOST:PORT/SPRINT"
    return credentials.problem()


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


async def _headless(address: Address, name: str, token: str | None, as_json: bool,
                    credentials: NatsCredentials) -> int:
    source = await WatchedSource.connect(address, name, token, credentials)
    print(f"sprintdeck: watching {address} as {name}{'' if token else ' (read-only)'}", file=sys.stderr)
    await source.run()
    return _outcome(source, as_json)


def _outcome(source: WatchedSource, as_json: bool) -> int:
    """The sprint's last line, as serve prints it; the JSON object when asked."""
    metrics = sprint_metrics(source.state)
    if source.resyncs:
        print(f"sprintdeck: resynchronised {source.resyncs} time(s) from a fresh snapshot", file=sys.stderr)
    if not source.finished:
        print(f"sprintdeck: the server closed before the sprint finished · {sprint_outcome(metrics)}", file=sys.stderr)
        return EXIT_ENDED_EARLY
    print(f"sprintdeck: finished · {sprint_outcome(metrics)}", file=sys.stderr)
    if as_json:
        print_result_json(SprintResult(source.state, metrics))
    return EXIT_OK if sprint_succeeded(metrics) else EXIT_TASKS_FAILED


async def _dashboard(address: Address, name: str, token: str | None, theme: str | None,
                     credentials: NatsCredentials) -> int:
    from app.dashboard import SprintDeckApp

    source = await WatchedSource.connect(address, name, token, credentials)
    app = SprintDeckApp(source, theme_name=theme)
    reader = asyncio.get_running_loop().create_task(source.run())
    try:
        await app.run_async()
    finally:
        await source.stop()
        reader.cancel()
    return EXIT_OK
