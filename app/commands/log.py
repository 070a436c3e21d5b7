"""`sprintdeck log JOURNAL`: the seed's ActivityLog of a recorded sprint, as a table or JSON lines.

Entries come from engine/activity_log.py; this module filters (`--agent`, `--task`) and prints.
`--json` writes one JSON object per line (JSON lines, like the journal itself, so `jq` and
`grep` work on it line by line and a long sprint streams), with the seed's field names.  The
journal is only read: a torn or corrupt record is bad input (exit 2) naming the file and line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from app.cli import EXIT_BAD_INPUT, EXIT_OK
from engine.activity_log import ActivityDeriver, ActivityLog, ActivityLogError, read_activity_log

COLUMNS = ("TIME", "AGENT", "ACTION", "TASK", "RESOURCE", "DURATION", "OK", "ERROR / DETAIL")


def main(args: argparse.Namespace) -> int:
    try:
        log = read_activity_log(Path(args.journal))
    except ActivityLogError as exc:
        print(f"sprintdeck log: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    problem = _unknown_filter(log, Path(args.journal), args.agent, args.task)
    if problem:
        print(f"sprintdeck log: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    entries = [entry for entry in log.entries
               if (args.agent is None or entry.agent_id == args.agent) and (args.task is None or entry.task_id == args.task)]
    try:
        if args.json:
            for entry in entries:
                sys.stdout.write(json.dumps(entry.wire()) + "\n")
        else:
            sys.stdout.write(table(entries))
        sys.stdout.flush()
    except BrokenPipeError:  # `sprintdeck log J | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _unknown_filter(log: ActivityDeriver, path: Path, agent: str | None, task: str | None) -> str | None:
    """A filter naming no agent or task of the journal is a typo, not an empty log."""
    for flag, value, known in (("--agent", agent, log.agents), ("--task", task, log.tasks)):
        if value is not None and value not in known:
            names = ", ".join(sorted(known)) or "none"
            what = "agent" if flag == "--agent" else "task"
            return f"{flag} {value}: {path} records no {what} {value!r} (its {what}s: {names})"
    return None


def table(entries: Iterable[ActivityLog]) -> str:
    """An aligned table for a person: one row per entry, the last column left ragged."""
    rows = [COLUMNS] + [_row(entry) for entry in entries]
    if len(rows) == 1:
        return "no activity recorded\n"
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = ["  ".join([cell.ljust(width) for cell, width in zip(row, widths)] + [row[-1]]).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def _row(entry: ActivityLog) -> tuple[str, ...]:
    said = "; ".join(text for text in (entry.error, entry.detail) if text)
    return (
        entry.timestamp[11:23] or "-",  # HH:MM:SS.mmm of the ISO timestamp (the date is the sprint's)
        entry.agent_id,
        entry.action,
        entry.task_id or "-",
        entry.resource_id or "-",
        _duration(entry.duration),
        "ok" if entry.success else "FAIL",
        " ".join(said.split()),  # a multi-line error stays on its row
    )


def _duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1000:
        return f"{ms:.1f}ms"
    return f"{ms / 1000:.2f}s"
