"""`sprintdeck serve PLAN --listen ADDR`: the sprint manager on a socket, for agents in other processes.

The same sprint as `run` (journal, exit codes, `--json` object, `--resume`), except that the plan's
`external` agents join over a Unix socket or loopback TCP (`sprintdeck agent`); its simulated and
shell agents still run embedded in this process.  Each external agent gets a token, written to a
0700 directory beside the journal (and found there again by `--resume`, so agents of the crashed
server reconnect to the new one), or kept in the one JSON file `--token-file` names (read when it
exists, written when not).  Everything that can be refused - the address, the plan, the
journal, the tokens - is checked before the journal is touched.

With `--spawn` the server starts each external agent itself, as a `sprintdeck agent` process, and
starts one again when it dies before the sprint is over (engine/supervisor.py).  A closed
connection marks its agent disconnected at once and dead after `settings.disconnect_grace`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.cli import EXIT_BAD_INPUT, EXIT_JOURNAL_FAILED, EXIT_OK, EXIT_TASKS_FAILED
from app.commands.run import (
    DEFAULT_SPEED,
    default_journal_path,
    exit_after_dashboard,
    fork_inputs,
    journal_failed,
    open_journal,
    print_outcome,
    print_result_json,
    resume_inputs,
    resume_problem,
)
from app.commands.agent import nats_arguments, nats_credentials, nats_secrets
from app.progress import ProgressLine
from app.source import ServedSource
from engine.events import AgentDead, Event, SprintFinished
from engine.fork import create_fork
from engine.journal import JournalError, JournalFailure, JournalWriter, read_header
from engine.manager import SprintManager, SprintResult
from engine.os_errors import regular_file_problem
from engine.plan import Plan, PlanError, load_plan
from engine.resume import ResumeError, check_resumable, sprint_manager
from engine.supervisor import ProcessSupervisor
from engine.transports.address import Address, AddressError, bound_address, listen, parse_address
from engine.transports.nats import NatsTransport
from engine.transports.base import TransportError
from engine.transports.nats_link import NatsCredentials, nats_address, probe
from engine.transports.socket import SocketTransport
from engine.transports.tokens import (
    TokenError,
    TokenPlace,
    agents_needing_tokens,
    claude_agents,
    ensure_operator_token,
    ensure_tokens,
    operator_token_path,
    token_file_tokens,
    tokens_dir_for,
)
from engine.watchers import WatchHub
from engine.workspace import prepare_workspace

SHOWN_AGENT_COMMANDS = 5  # agent command lines printed at start (the rest are alike)


@dataclass
class Served:
    """Everything a served sprint runs with, prepared before the event loop starts."""

    plan: Plan
    address: Address
    listener: socket.socket | None  # None for NATS: the NATS server listens
    tokens: dict[str, str]
    tokens_at: TokenPlace
    workspace: Path
    journal: JournalWriter
    journal_path: Path
    seed: int
    speed: float
    records: list[dict[str, Any]] | None = None  # a resumed journal's records (or a fork's: engine/fork.py)
    fork: bool = False  # the records are a parent's first ones: the workspace is rebased, not judged
    spawn: bool = False  # start the external agents as processes, and keep them alive
    operator_token: str | None = None  # lets `sprintdeck watch --token-file` operate
    nats: NatsCredentials | None = None  # `--nats-*`: how serve (and --spawn's agents) log in to NATS


class BadInput(Exception):
    """Printed as it is and exits 2 (3 when the journal could not be written)."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def main(args: argparse.Namespace) -> int:
    try:
        served = prepare(args)
    except BadInput as exc:
        print(exc, file=sys.stderr)
        return exc.code
    announce(served)
    try:
        if not args.headless:
            code = run_dashboard(served, args.theme)
            return journal_failed(served.journal.failure, args) if served.journal.failure else code
        result = asyncio.run(serve_headless(served))
    except JournalFailure as failure:  # a full disk: the sprint stopped, exit 3
        return journal_failed(failure, args)
    finally:
        served.journal.close()
        if served.listener is not None:
            served.listener.close()
    if args.json:
        print_result_json(result)
    return EXIT_OK if result.succeeded else EXIT_TASKS_FAILED


# ---------------------------------------------------------------- preparing


def prepare(args: argparse.Namespace) -> Served:
    """Check every input, then listen, then write tokens, then open the journal (in that order)."""
    try:
        address = parse_address(args.listen, listening=True)
    except AddressError as exc:
        raise BadInput(f"sprintdeck: --listen {exc}") from None
    plan = _load(args.plan)
    if args.speed is not None and args.speed <= 0:
        raise BadInput(f"sprintdeck: --speed must be positive, got {args.speed:g}")
    if args.at is not None and not args.resume:
        raise BadInput(f"sprintdeck: --at {args.at} forks a recording: give it --resume JOURNAL and --record NEW")
    if args.resume and args.at is not None:
        try:
            journal_path, workspace = fork_inputs(plan, args), None
            seed = int(read_header(Path(args.resume)).get("seed", args.seed))  # the parent's simulation goes on
        except (OSError, JournalError, ResumeError) as exc:
            raise BadInput(f"sprintdeck: cannot fork: {exc}") from None
    elif args.resume:
        journal_path = Path(args.resume)
        try:
            workspace, header = resume_inputs(plan, args)
        except (OSError, JournalError, ResumeError) as exc:
            raise BadInput(f"sprintdeck: {resume_problem(journal_path, exc)}") from None
        seed = int(header.get("seed", args.seed))
    else:
        journal_path = Path(args.record) if args.record else default_journal_path(plan)
        problem = regular_file_problem(journal_path, must_exist=False)  # a directory, a FIFO, a device
        if problem is not None:
            raise BadInput(f"sprintdeck: {journal_path}: {problem}")
        if journal_path.exists() and journal_path.stat().st_size > 0:
            raise BadInput(f"sprintdeck: {journal_path}: journal already exists; refusing to overwrite it")
        workspace, seed = None, args.seed
    listener, address = _listen(address, plan, args)
    try:
        return _open(plan, args, address, listener, journal_path, workspace, seed)
    except BadInput:
        if listener is not None:
            listener.close()
        _remove_socket(address)
        raise


def _load(plan_path: str) -> Plan:
    try:
        return load_plan(Path(plan_path))
    except PlanError as exc:
        raise BadInput("\n".join(str(problem) for problem in exc.problems)) from None


def _listen(address: Address, plan: Plan, args: argparse.Namespace) -> tuple[socket.socket | None, Address]:
    if address.kind == "nats":  # the NATS server listens; check that it takes us, and with what we have
        credentials = nats_credentials(args)
        if (problem := credentials.problem()) is not None:
            raise BadInput(f"sprintdeck: {problem}")
        try:
            asyncio.run(probe(nats_address(address, plan.sprint), credentials))
        except TransportError as exc:
            raise BadInput(f"sprintdeck: --listen {exc}") from None
        return None, nats_address(address, plan.sprint)
    try:
        listener, warning = listen(address)
    except AddressError as exc:
        raise BadInput(f"sprintdeck: --listen {exc}") from None
    if warning:
        print(f"sprintdeck: warning: {warning}", file=sys.stderr)
    return listener, bound_address(address, listener)


def _open(
    plan: Plan,
    args: argparse.Namespace,
    address: Address,
    listener: socket.socket | None,
    journal_path: Path,
    workspace: Path | None,
    seed: int,
) -> Served:
    """Tokens, then the journal: a new one, or the crashed run's reopened (its torn tail cut)."""
    tokens, tokens_at = _tokens(plan, args, journal_path)
    records = None
    try:
        if args.resume and args.at is not None:
            workspace = prepare_workspace(plan, args.workspace)
            journal, records = create_fork(Path(args.resume), args.at, journal_path, workspace)
        elif args.resume:
            journal, header, records, recovery = JournalWriter.resume(journal_path)
            check_resumable(plan, header, records)
            if recovery is not None:
                print(f"sprintdeck: {recovery}", file=sys.stderr)
        else:
            workspace = prepare_workspace(plan, args.workspace)
            journal = open_journal(journal_path, plan, seed, args.plan, workspace)
    except (OSError, JournalError, ResumeError) as exc:
        verb = f"cannot fork {args.resume}" if args.at is not None else (
            f"cannot resume {journal_path}" if args.resume else str(journal_path))
        code = EXIT_JOURNAL_FAILED if isinstance(exc, JournalFailure) else EXIT_BAD_INPUT  # a full disk
        raise BadInput(f"sprintdeck: {verb}: {exc}", code) from None
    assert workspace is not None
    try:
        operator_token = ensure_operator_token(tokens_at, reuse=bool(args.resume))
    except TokenError as exc:
        raise BadInput(f"sprintdeck: {exc}") from None
    return Served(
        operator_token=operator_token,
        plan=plan,
        address=address,
        listener=listener,
        tokens=tokens,
        tokens_at=tokens_at,
        workspace=workspace,
        journal=journal,
        journal_path=journal_path,
        seed=seed,
        speed=args.speed or DEFAULT_SPEED,
        records=records,
        fork=args.at is not None,
        spawn=bool(getattr(args, "spawn", False)),
        nats=nats_credentials(args) if address.kind == "nats" else None,
    )


def _tokens(plan: Plan, args: argparse.Namespace, journal_path: Path) -> tuple[dict[str, str], TokenPlace]:
    """Each external agent's token, from `--token-file` (read or created) or the directory beside the journal."""
    agent_ids = agents_needing_tokens(plan)
    try:
        if args.token_file:
            place = TokenPlace(Path(os.path.abspath(args.token_file)), one_file=True)
            return token_file_tokens(place.path, agent_ids), place
        place = TokenPlace(tokens_dir_for(journal_path), one_file=False)
        return ensure_tokens(place.path, agent_ids, reuse=bool(args.resume)), place
    except TokenError as exc:
        raise BadInput(f"sprintdeck: {exc}") from None


def _remove_socket(address: Address) -> None:
    if address.kind == "unix":
        Path(address.path).unlink(missing_ok=True)


def announce(served: Served) -> None:
    """Where it listens, where the tokens are, and how an agent joins: all on stderr."""
    out = sys.stderr
    print(f"sprintdeck: workspace {served.workspace}", file=out)
    if served.records is None:
        print(f"sprintdeck: recording {served.journal_path}", file=out)
    elif served.fork:
        print(f"sprintdeck: recording {served.journal_path}, forked at seq {served.journal.last_seq}", file=out)
    else:
        print(f"sprintdeck: resuming {served.journal_path} after seq {served.journal.last_seq}", file=out)
    print(f"sprintdeck: listening on {served.address}", file=out)
    secrets = "".join(f"{name}=... " for name in nats_secrets(served.nats))  # as join_command: never the values
    watch = shlex.join(["sprintdeck", "watch", str(served.address), *nats_arguments(served.nats)])
    print(f"sprintdeck: watch it with: {secrets}{watch} (operator token in {operator_token_path(served.tokens_at)})",
          file=out)
    if not served.tokens:
        print("sprintdeck: the plan has no external agents; nobody needs to connect", file=out)
        return
    print(f"sprintdeck: agent tokens in {served.tokens_at.path}", file=out)
    external = external_agents(served.plan)  # claude ones start here
    if served.spawn:
        print(f"sprintdeck: starting {len(external)} agent process(es): {', '.join(external)}", file=out)
        out.flush()
        return
    for agent_id in external[:SHOWN_AGENT_COMMANDS]:
        print(f"sprintdeck: {join_command(served, agent_id)}", file=out)
    out.flush()


def sprintdeck_program() -> list[str]:
    """This installation's `sprintdeck`, by absolute path, so the command works from any shell
    (one without the virtual environment activated too); `python -m app.cli` when there is no script."""
    python = os.path.abspath(sys.executable)
    script = os.path.join(os.path.dirname(python), "sprintdeck")
    return [script] if os.access(script, os.X_OK) else [python, "-m", "app.cli"]


def join_command(served: Served, agent_id: str) -> str:
    """The shell command that starts one external agent of this sprint: what headless `serve`
    prints at start and the dashboard's agent details show (the one place it is written)."""
    token_file = served.tokens_at.file_for(agent_id)
    secrets = " ".join(f"{name}=..." for name in nats_secrets(served.nats))  # never the values themselves
    return (f"{secrets} " if secrets else "") + shlex.join([
        *sprintdeck_program(), "agent", "--connect", str(served.address), "--id", agent_id,
        "--token-file", str(token_file), *nats_arguments(served.nats)])


def how_to_start(served: Served) -> Callable[[str], str | None]:
    """For the dashboard: how each external agent gets started (None for the agents serve runs)."""
    external = set(external_agents(served.plan))

    def how(agent_id: str) -> str | None:
        if agent_id not in external:
            return None
        if served.spawn:
            return "serve --spawn starts this agent itself (and again if it dies before the sprint is over)."
        return f"Start it in a shell with:\n{join_command(served, agent_id)}"

    return how


# ---------------------------------------------------------------- running


def external_agents(plan: Plan) -> list[str]:
    """The agents that connect from processes of their own (`sprintdeck agent`), in plan order."""
    return [agent.id for agent in plan.agents if agent.kind == "external"]


def agent_command(served: Served, agent_id: str) -> list[str]:
    """How `--spawn` starts one external agent: this Python, this sprintdeck."""
    token_file = served.tokens_at.file_for(agent_id)
    return [sys.executable, "-m", "app.cli", "agent", "--connect", str(served.address), "--id", agent_id,
            "--token-file", str(token_file), "--workspace", str(served.workspace), *nats_arguments(served.nats)]


def spawner(served: Served, manager: SprintManager) -> ProcessSupervisor | None:
    """With `--spawn`, the supervisor of the external agents' processes."""
    if not served.spawn:
        return None
    os.environ.update(nats_secrets(served.nats))  # the agents it starts inherit them, not on their command line
    return ProcessSupervisor(external_agents(served.plan), lambda agent_id: agent_command(served, agent_id),
                             manager.restarts, exited=manager.recovery.disconnected)


def build(served: Served) -> tuple[SprintManager, SocketTransport | NatsTransport]:
    """The manager on a socket or NATS transport; refusals are journaled, the end stops taking messages."""
    transport: SocketTransport | NatsTransport
    if served.listener is None:
        transport = NatsTransport(served.address, tokens=served.tokens, credentials=served.nats,
                                  local=claude_agents(served.plan), fresh=served.records is None)
    else:
        transport = SocketTransport(served.listener, served.address, tokens=served.tokens,
                                    local=claude_agents(served.plan))
    manager = sprint_manager(served.plan, served.records, workspace=served.workspace, journal=served.journal,
                             transport=transport, seed=served.seed, speed=served.speed, fork=served.fork)
    transport.on_refused = manager.refuse  # journaled as message_rejected (a security event if `security`)
    transport.on_disconnected = manager.recovery.disconnected  # dead after disconnect_grace unless back

    def on_event(event: Event) -> None:
        body = event.body
        if isinstance(body, SprintFinished):
            transport.stop_inbound()  # nothing more reaches the journal after the final state
        elif isinstance(body, AgentDead):
            transport.discard_queued(body.agent_id)  # its work went elsewhere

    manager.subscribe(on_event)
    transport.watch_desk = WatchHub(manager, served.operator_token)  # `sprintdeck watch`
    return manager, transport


async def serve_headless(served: Served) -> SprintResult:
    manager, transport = build(served)
    progress = ProgressLine(sys.stderr, manager.state, total=len(served.plan.tasks))
    manager.subscribe(progress.on_event)
    await transport.start()
    agents = spawner(served, manager)
    try:
        if agents is not None:
            await agents.start()
        result = await manager.execute_sprint()
        await transport.finish()
    finally:
        if agents is not None:
            await agents.stop()
        await transport.close()
    progress.finish()
    print_outcome(result)
    return result


def served_source(served: Served) -> ServedSource:
    """What the dashboard shows and runs: the manager, its socket, the processes `--spawn` starts,
    and how the user starts the others."""
    manager, transport = build(served)
    return ServedSource(manager, transport, journal=str(served.journal_path), spawned=spawner(served, manager),
                        how_to_start=how_to_start(served))


def run_dashboard(served: Served, theme: str | None) -> int:
    from app.dashboard import SprintDeckApp

    source = served_source(served)
    manager = source.manager
    app = SprintDeckApp(source, theme_name=theme)
    app.run()
    return exit_after_dashboard(manager)
