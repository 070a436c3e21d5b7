"""Fork a recorded sprint at a moment: a new journal that starts as the parent did and goes on live.

`sprintdeck run PLAN --resume PARENT --at SEQ --record NEW` answers "what if, from event SEQ, ...":
NEW gets a header naming its parent (`parent`: the parent's path, its `startedAt` and `sprint` as its
identity, and SEQ) and then the parent's records 1..SEQ, re-encoded to the same bytes, so NEW alone
replays the whole story, `diff PARENT NEW` finds the fork point, and a crash of the fork is resumed
like any other run.  The parent is only read: its bytes never change (a torn tail after SEQ is
left where it is, and one before SEQ is refused, since the records are not there).

From SEQ the fork continues as a resume continues a crash (`engine/resume.py`): attempts running
at SEQ are re-queued, waiters dropped, leases renewed.  One thing differs: the workspace.  A journal
keeps files' checksums, not their content, so the workspace as it was at SEQ cannot be rebuilt;
the fork works in its own copy and takes its files as they are (`rebase_files`), judging only what
changes after that.  Judging the copy against SEQ's checksums would call every difference a conflict.
"""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Any

from engine.journal import JournalWriter, iter_journal
from engine.journal_codec import utc_timestamp
from engine.replay import ReplayCursor
from engine.resume import ResumeError

HEADER_KEYS = ("sprint", "planDigest", "plan", "seed")  # carried over from the parent's header


class ForkError(ResumeError):
    """The fork cannot start (a seq outside the recording, a torn record before it); nothing was written."""


def fork_point_problem(seq: int, total: int, parent: Path) -> str | None:
    """Why `seq` cannot be forked from (a sentence naming both the seq and the recording's range)."""
    span = f"its events are seq 1 to {total}" if total else "it has no events yet"
    if seq < 1:
        return f"--at {seq} is before the start of {parent}: {span}"
    if seq > total:
        return f"--at {seq} is past the end of {parent}: {span}"
    return None


def parent_records(parent: Path, seq: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The parent's header and its records 1..seq, read only (a torn tail is neither read nor cut)."""
    with ReplayCursor.open(parent) as cursor:  # checks every crc; a torn tail is left out
        header, total = cursor.header, cursor.total
    problem = fork_point_problem(seq, total, parent)
    if problem is not None:
        raise ForkError(problem)
    return header, list(islice(iter_journal(parent), seq))


def fork_header(parent: Path, parent_header: dict[str, Any], seq: int, workspace: Path) -> dict[str, Any]:
    """NEW's header: the parent's plan and seed, its own start and workspace, and where it came from."""
    header = {key: parent_header[key] for key in HEADER_KEYS if key in parent_header}
    header.update(startedAt=utc_timestamp(), epoch=1, workspace=str(workspace))
    identity = {key: parent_header[key] for key in ("sprint", "startedAt") if key in parent_header}
    header["parent"] = {"path": str(parent.resolve()), **identity, "seq": seq}
    return header


def create_fork(parent: Path, seq: int, new: Path, workspace: Path) -> tuple[JournalWriter, list[dict[str, Any]]]:
    """Write NEW (header and the parent's first `seq` records, made durable) and return its writer.

    `JournalWriter.create` refuses an existing non-empty NEW, so a fork never overwrites a journal.
    """
    parent_header, records = parent_records(parent, seq)
    writer = JournalWriter.create(new, fork_header(parent, parent_header, seq, workspace))
    for record in records:
        writer.append(record["seq"], record["type"], record["data"], record["ts"], record["mono"])
    writer.flush_sync()
    return writer, records


def forked_from(header: dict[str, Any]) -> dict[str, Any] | None:
    """The `parent` entry of a fork's header (path, sprint, startedAt, seq), else None."""
    parent = header.get("parent")
    return parent if isinstance(parent, dict) and isinstance(parent.get("seq"), int) else None
