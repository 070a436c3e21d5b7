"""`sprintdeck replay JOURNAL`: step through a recorded sprint, or print its state headless.

`--headless --json` prints exactly what `run --headless --json` printed for the same final state
(the same `print_result_json`), so a run and its replay can be compared byte for byte.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli import EXIT_BAD_INPUT, EXIT_OK
from engine.journal import JournalError
from engine.manager import SprintResult
from engine.metrics import sprint_metrics
from engine.os_errors import os_problem
from engine.replay import ReplayCursor


def main(args: argparse.Namespace) -> int:
    try:
        cursor = ReplayCursor.open(Path(args.journal))  # read-only: never repairs what it reads
    except OSError as exc:
        print(f"sprintdeck: {os_problem(args.journal, exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (JournalError, ValueError) as exc:
        print(f"sprintdeck: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if cursor.torn is not None:
        print(f"sprintdeck: {cursor.torn}", file=sys.stderr)
    try:
        if not args.headless:
            from app.replay_dashboard import run_replay  # Textual only when a dashboard is wanted

            return int(run_replay(cursor, theme=args.theme, at=args.at))
        return headless(cursor, at=args.at, as_json=args.json)
    except (JournalError, ValueError, KeyError) as exc:
        print(f"sprintdeck: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        cursor.close()


def headless(cursor: ReplayCursor, *, at: int | None, as_json: bool) -> int:
    """Print the state at `at` (default: the end): `run`'s JSON, or a few lines for a person."""
    if at is not None and not 0 <= at <= cursor.total:
        print(f"sprintdeck: --at {at} is outside 0..{cursor.total}", file=sys.stderr)
        return EXIT_BAD_INPUT
    state = cursor.seek(cursor.total if at is None else at)
    metrics = sprint_metrics(state)
    if as_json:
        from app.commands.run import print_result_json

        print_result_json(SprintResult(state, metrics))
        return EXIT_OK
    print(summary(cursor, metrics))
    return EXIT_OK


def summary(cursor: ReplayCursor, metrics) -> str:
    state = cursor.state
    when = cursor.time_of(cursor.position).strftime("%Y-%m-%d %H:%M:%S")
    lines = [
        f"{cursor.header.get('sprint')}: event {cursor.position}/{cursor.total} at {when} UTC",
        f"tasks: {metrics.completed_tasks}/{metrics.total_tasks} completed, {metrics.failed_tasks} failed, "
        f"{metrics.cancelled_tasks} cancelled",
        f"agents: {len(state.agents)}, locks held: {len(state.locks)}, files: {len(state.files)}, "
        f"messages: {metrics.messages}, elapsed {metrics.elapsed:.1f}s",
    ]
    return "\n".join(lines)
