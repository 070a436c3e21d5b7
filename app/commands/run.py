"""`sprintdeck run PLAN`: run a sprint with the embedded engine and in-process agents.

Headless runs report progress on stderr and, with `--json`, print exactly one JSON object on
stdout: the final ProjectState and the sprint metrics.  Every run records a journal.

The dashboard's first frame is drawn before the engine is imported (the manager, the state and
message models: most of a third of a second), so this module imports only what reads the plan and
opens the journal and workspace; each path imports the engine where it builds or resumes one.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli import EXIT_BAD_INPUT, EXIT_JOURNAL_FAILED, EXIT_OK, EXIT_TASKS_FAILED
from engine.journal import JournalError, JournalFailure, JournalWriter, read_header
from engine.metrics import sprint_outcome, sprint_succeeded
from engine.os_errors import os_problem
from engine.plan import Plan, PlanError, load_plan
from engine.workspace import ScratchWorkspace, prepare_workspace

if TYPE_CHECKING:
    from app.source import LiveSource
    from engine.manager import SprintManager, SprintResult
    from engine.transports.socket import SocketTransport

DEFAULT_SPEED = 20.0
RUNS_DIR = Path(".sprintdeck/runs")


def main(args: argparse.Namespace) -> int:
    try:
        plan = load_plan(Path(args.plan))
    except PlanError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.speed is not None and args.speed <= 0:
        print(f"sprintdeck: --speed must be positive, got {args.speed:g}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.at is not None and not args.resume:
        print(f"sprintdeck: --at {args.at} forks a recording: give it --resume JOURNAL and --record NEW",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.resume:
        return fork(plan, args) if args.at is not None else resume(plan, args)
    journal_path = Path(args.record) if args.record else default_journal_path(plan)
    try:
        workspace = workspace_for(plan, args.workspace)
        journal = open_journal(journal_path, plan, args.seed, args.plan, workspace)
    except JournalFailure as failure:  # not even the header could be written
        print(f"sprintdeck: the sprint did not start: {failure}", file=sys.stderr)
        return EXIT_JOURNAL_FAILED
    except (OSError, JournalError) as exc:
        print(f"sprintdeck: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    scratch = announce_workspace(workspace, args)
    print(f"sprintdeck: recording {journal_path}", file=sys.stderr)
    return run_recorded(plan, workspace, journal, journal_path, args, None, scratch=scratch)


def announce_workspace(workspace: Path, args: argparse.Namespace) -> ScratchWorkspace | None:
    """Say where the sprint works; a scratch copy (no `--workspace`) is the run's own to clean up."""
    scratch = None if args.workspace else ScratchWorkspace(workspace)
    kept = " (a scratch copy, removed at the end unless --keep-workspace)" if scratch else ""
    print(f"sprintdeck: workspace {workspace}{kept}", file=sys.stderr)
    return scratch


def leave_scratch(scratch: ScratchWorkspace | None, args: argparse.Namespace) -> None:
    """Remove the run's scratch copy, or say where it stays (kept on request or for a resume)."""
    if scratch is not None and (kept := scratch.leave(keep=args.keep_workspace)):
        print(f"sprintdeck: {kept}", file=sys.stderr)


def workspace_for(plan: Plan, requested: str | None) -> Path:
    """The sprint's workspace (`prepare_workspace`); an OS refusal is a `JournalError`-like sentence naming it."""
    try:
        return prepare_workspace(plan, requested)
    except OSError as exc:
        raise OSError(f"workspace {os_problem(requested or 'scratch copy', exc)}") from None


def journal_failed(failure: JournalFailure, args: argparse.Namespace) -> int:
    """The journal could not be written: say so, say how to go on, exit 3 (shared with `serve`)."""
    command = "serve" if getattr(args, "listen", None) else "run"
    listen = f" --listen {args.listen}" if command == "serve" else ""
    print(f"sprintdeck: the sprint stopped: {failure}", file=sys.stderr)
    print(f"sprintdeck: once the journal can be written again, continue with: "
          f"sprintdeck {command} {args.plan}{listen} --resume {failure.path}", file=sys.stderr)
    return EXIT_JOURNAL_FAILED


def print_result_json(result: SprintResult) -> None:
    """The one JSON object of `run --headless --json` (and of replay and serve): state plus metrics.

    Written in pieces (engine/state_json.py): no dict of the whole state, no `json.dumps` of it
    and not even its whole JSON at once, each of which held every task once more at the end of a
    large run (45 MB at 100,000 tasks).
    """
    from engine.state_json import state_json_chunks

    parts = chain((b'{"state":',), state_json_chunks(result.state),
                  (b',"metrics":', result.metrics.__pydantic_serializer__.to_json(result.metrics), b"}\n"))
    sys.stdout.flush()
    out = getattr(sys.stdout, "buffer", None)
    for part in parts:
        if out is not None:
            out.write(part)
        else:  # a text-only stdout (a test's StringIO)
            sys.stdout.write(part.decode())
    sys.stdout.flush()


def default_journal_path(plan: Plan) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return RUNS_DIR / f"{plan.sprint}-{stamp}.jsonl"


def open_journal(path: Path, plan: Plan, seed: int, plan_path: str, workspace: Path | None = None) -> JournalWriter:
    """A new journal; the header names the workspace so that `--resume` continues in the same one."""
    header = {
        "sprint": plan.sprint,
        "planDigest": plan.digest,
        "plan": plan_path,
        "startedAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "epoch": 1,
        "seed": seed,
    }
    if workspace is not None:
        header["workspace"] = str(workspace)
    return JournalWriter.create(path, header)


def resume_inputs(plan: Plan, args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The workspace a `--resume` continues in and the journal's header, checked without writing.

    Shared by `run` and `serve`: a wrong plan, a missing workspace or a `--record` elsewhere is
    refused (ResumeError) while the journal is still exactly as the crash left it.
    """
    from engine.resume import ResumeError, check_resumable, finished_seq

    journal_path = Path(args.resume)
    if args.record and Path(args.record).resolve() != journal_path.resolve():
        raise ResumeError(f"--record cannot be combined with --resume: the resumed run appends to {journal_path} "
                          f"(to start a new journal from a moment of it, add --at SEQ)")
    header = read_header(journal_path)
    if (finished := finished_seq(journal_path)) is not None:
        raise ResumeError(f"the sprint it records finished at seq {finished}: there is nothing to resume "
                          f"(replay it, or fork it from a moment with --at SEQ --record NEW)")
    workspace_arg = args.workspace or header.get("workspace")
    if not workspace_arg:
        raise ResumeError("the journal does not record its workspace; pass --workspace DIR")
    workspace = Path(workspace_arg).resolve()
    if not workspace.is_dir():
        raise ResumeError(f"workspace {workspace} of the crashed run does not exist")
    if header.get("planDigest") != plan.digest:
        check_resumable(plan, header, [])  # raises, naming both digests
    return workspace, header


def resume_problem(journal_path: Path, exc: Exception) -> str:
    """Why a `--resume` cannot start, naming the journal once (a `JournalError` names it already)."""
    return f"cannot resume: {exc}" if isinstance(exc, JournalError) else f"cannot resume {journal_path}: {exc}"


def resume(plan: Plan, args: argparse.Namespace) -> int:
    """`run PLAN --resume JOURNAL`: continue a crashed sprint, appending to the same journal.

    Everything is checked before the journal is touched (the torn-tail cut is the first write),
    so a wrong plan or a missing workspace leaves the journal exactly as the crash left it.
    """
    from engine.resume import ResumeError, check_resumable

    journal_path = Path(args.resume)
    try:
        workspace, _ = resume_inputs(plan, args)
        journal, header, records, recovery = JournalWriter.resume(journal_path)
        check_resumable(plan, header, records)
    except JournalFailure as failure:  # no room to repair the torn tail
        print(f"sprintdeck: cannot resume: {failure}", file=sys.stderr)
        return EXIT_JOURNAL_FAILED
    except (OSError, JournalError, ResumeError) as exc:
        print(f"sprintdeck: {resume_problem(journal_path, exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if recovery is not None:
        print(f"sprintdeck: {recovery}", file=sys.stderr)
    print(f"sprintdeck: workspace {workspace}", file=sys.stderr)
    print(f"sprintdeck: resuming {journal_path} after seq {journal.last_seq}", file=sys.stderr)
    args.seed = int(header.get("seed", args.seed))  # the simulation goes on with the recorded seed
    return run_recorded(plan, workspace, journal, journal_path, args, records)


def fork_inputs(plan: Plan, args: argparse.Namespace) -> Path:
    """The checks of `--resume JOURNAL --at SEQ --record NEW` before anything is written (shared
    with `serve`): NEW is named and is not JOURNAL, and JOURNAL was recorded for this plan."""
    from engine.resume import ResumeError, check_resumable

    parent = Path(args.resume)
    if not args.record:
        raise ResumeError(f"--at {args.at} starts a new journal from {parent}: name it with --record NEW "
                          f"({parent} itself is never changed)")
    new = Path(args.record)
    if new.resolve() == parent.resolve():
        raise ResumeError(f"--record {new} is the journal being forked: name a new file")
    check_resumable(plan, read_header(parent), [])
    return new


def fork(plan: Plan, args: argparse.Namespace) -> int:
    """`run PLAN --resume JOURNAL --at SEQ --record NEW`: a new live sprint from the state at SEQ.

    JOURNAL is only read (engine/fork.py); NEW starts with its first SEQ records and goes on from
    there in a workspace of its own (`--workspace DIR`, else a scratch copy of the plan's).
    """
    from engine.fork import create_fork
    from engine.resume import ResumeError

    parent = Path(args.resume)
    try:
        new = fork_inputs(plan, args)
        workspace = workspace_for(plan, args.workspace)
        journal, records = create_fork(parent, args.at, new, workspace)
    except JournalFailure as failure:
        print(f"sprintdeck: the fork did not start: {failure}", file=sys.stderr)
        return EXIT_JOURNAL_FAILED
    except (OSError, JournalError, ResumeError) as exc:
        print(f"sprintdeck: cannot fork: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    scratch = announce_workspace(workspace, args)
    print(f"sprintdeck: recording {new}, forked from {parent} at seq {args.at}", file=sys.stderr)
    args.seed = int(read_header(new).get("seed", args.seed))
    return run_recorded(plan, workspace, journal, new, args, records, fork=True, scratch=scratch)


def run_recorded(plan: Plan, workspace: Path, journal: JournalWriter, journal_path: Path, args: argparse.Namespace,
                 records: list[dict] | None, *, fork: bool = False, scratch: ScratchWorkspace | None = None) -> int:
    """Run (dashboard or headless) a sprint whose journal is open; closes it, leaves its scratch
    workspace (if it has one); the exit code."""
    speed = args.speed or DEFAULT_SPEED
    try:
        if not args.headless:
            return run_dashboard(plan, workspace, journal, journal_path, args, records=records, fork=fork,
                                 scratch=scratch)
        result = asyncio.run(
            run_headless(plan, workspace, journal, seed=args.seed, speed=speed, records=records, fork=fork)
        )
        if scratch is not None:
            scratch.finished = True
    except JournalFailure as failure:
        return journal_failed(failure, args)
    finally:
        journal.close()
        leave_scratch(scratch, args)
    if args.json:
        print_result_json(result)
    return EXIT_OK if result.succeeded else EXIT_TASKS_FAILED


def run_dashboard(plan: Plan, workspace: Path, journal: JournalWriter, journal_path: Path, args,
                  records: list[dict] | None = None, fork: bool = False,
                  scratch: ScratchWorkspace | None = None) -> int:
    """The dashboard with the engine embedded on the same event loop; stays open after the end.

    The App's first frame shows the plan; the engine is built (`start`) once that frame is on
    screen.  Whatever building it raised is raised here again, after the App, as it was before."""
    from app.dashboard import SprintDeckApp
    from app.source import StartingSource

    transports: list[SocketTransport | None] = []

    def start() -> LiveSource:
        from app.source import LiveSource, ServedSource
        from engine.resume import sprint_manager
        from engine.transports.private import private_transport

        transport = private_transport(plan)  # claude agents' runs connect to it
        transports.append(transport)
        manager = sprint_manager(plan, records, workspace=workspace, journal=journal, seed=args.seed,
                                 speed=args.speed or DEFAULT_SPEED, transport=transport, fork=fork)
        if transport is None:
            return LiveSource(manager, journal=str(journal_path))
        transport.on_refused = manager.refuse
        return ServedSource(manager, transport, journal=str(journal_path))

    starting = StartingSource(plan, start, journal=str(journal_path))
    SprintDeckApp(starting, theme_name=args.theme).run()
    manager = starting.started().manager  # built by now, unless the App ended before its first frame
    transport = transports[0]
    if scratch is not None:
        scratch.finished = manager.finished
    if transport is not None and transport.address.path:
        shutil.rmtree(Path(transport.address.path).parent, ignore_errors=True)
    if journal.failure is not None:
        return journal_failed(journal.failure, args)
    return exit_after_dashboard(manager)


def exit_after_dashboard(manager: SprintManager) -> int:
    """Leaving the dashboard: the headless last line, so the exit code has its reason on the terminal."""
    metrics = manager.metrics()
    if not manager.finished:
        print(f"sprintdeck: left before the sprint finished · {sprint_outcome(metrics)}", file=sys.stderr)
        return EXIT_TASKS_FAILED
    print(f"sprintdeck: finished · {sprint_outcome(metrics)}", file=sys.stderr)
    return EXIT_OK if sprint_succeeded(metrics) else EXIT_TASKS_FAILED


async def run_headless(
    plan: Plan,
    workspace: Path,
    journal: JournalWriter,
    *,
    seed: int,
    speed: float,
    records: list[dict] | None = None,
    fork: bool = False,
) -> SprintResult:
    """Run to the end; with `records` (a resumed journal, or a fork's) continue that sprint instead of starting one."""
    from app.progress import ProgressLine
    from engine.resume import sprint_manager
    from engine.transports.private import private_transport, serving

    transport = private_transport(plan)  # claude agents' runs connect to it
    manager = sprint_manager(plan, records, workspace=workspace, journal=journal, seed=seed, speed=speed,
                             transport=transport, fork=fork)
    progress = ProgressLine(sys.stderr, manager.state, total=len(plan.tasks))
    manager.subscribe(progress.on_event)
    async with serving(transport, manager.refuse):
        result = await manager.execute_sprint()
    progress.finish()
    print_outcome(result)
    return result


def print_outcome(result: SprintResult) -> None:
    """The last line on stderr: the outcome in words, so a file left in conflict is as visible as a
    failed task (`sprintdeck: finished · 3/3 done · 1 file left in conflict: src/config.py`)."""
    print(f"sprintdeck: finished · {sprint_outcome(result.metrics)}", file=sys.stderr)
