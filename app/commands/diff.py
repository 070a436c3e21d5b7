"""`sprintdeck diff A B`: the first event at which two recordings of one plan diverge.

Timing is not divergence: wall and monotonic timestamps, the crc (it covers them), timestamp-valued
fields inside events (`timestamp`, `expiresAt`, `mtime`...), measured latencies, random message ids
and state digests (they hash timestamps too) are left out of the comparison.  Everything else --
which event, in which order, with which data -- must match.

A fork (`run --resume A --at SEQ --record B`) starts with A's first SEQ records: when one header
names the other as its parent, the comparison starts after SEQ and says so.  The first difference
is shown with each side's event (seq, type, task, agent, what it says) and the last event both agree
on, so the reader knows where in the story it happened; `--json` gives the same facts.  A torn last
record (a crash mid-write) is left out, said, and never cut: diff only reads.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice, zip_longest
from pathlib import Path
from typing import Any

from app.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_TASKS_FAILED
from engine.fork import forked_from
from engine.journal import JournalError, iter_journal
from engine.replay import ReplayCursor, TornTail
from engine.replay_marks import record_agent, record_task, summary

EXIT_DIVERGED = EXIT_TASKS_FAILED  # 1: the recordings differ
TIME_KEYS = frozenset({
    "ts", "mono", "crc", "timestamp", "expiresAt", "since", "startedAt", "finishedAt", "mtime",
    "lastHeartbeat", "busySince", "lastModified", "latencyMs", "digest", "epoch",
    "waited",  # seconds a task waited for its locks: measured live, like a timestamp
})
ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?$")
RANDOM_ID = re.compile(r"^[0-9a-f]{32}$")  # uuid4().hex message ids and the correlation ids naming them


def normalise(value: Any) -> Any:
    """`value` with everything that depends on when (rather than what) left out."""
    if isinstance(value, dict):
        return {key: normalise(item) for key, item in value.items() if key not in TIME_KEYS}
    if isinstance(value, list):
        return [normalise(item) for item in value]
    if isinstance(value, str) and (ISO_TIME.match(value) or RANDOM_ID.match(value)):
        return "<ignored>"
    return value


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """A short `path: a != b` for the first place two normalised values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [key for key in b if key not in a]:
            if key not in a or key not in b:
                side = "A" if key in a else "B"
                return f"{path}.{key} only in {side}".lstrip(".")
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{path}: {len(a)} items in A, {len(b)} in B".lstrip(".")
        return None
    if a != b:
        return f"{path.lstrip('.')}: {_short(a)} in A, {_short(b)} in B"
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Recording:
    """One side of a diff: its records up to a torn tail (left out and described in `torn`)."""

    path: Path
    header: dict[str, Any]
    total: int
    torn: TornTail | None

    @classmethod
    def open(cls, path: Path) -> Recording:
        with ReplayCursor.open(path) as cursor:  # read-only: a torn tail is described, never cut
            return cls(path, cursor.header, cursor.total, cursor.torn)

    def records(self, after: int = 0) -> Iterator[dict[str, Any]]:
        return islice(iter_journal(self.path), after, self.total)


@dataclass(frozen=True)
class Divergence:
    """The first differing event: each side's record (None past its end), what differs, and the
    last event both agree on (None when they differ from the first)."""

    seq: int
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    what: str
    common: dict[str, Any] | None


def fork_point(a: Recording, b: Recording) -> tuple[str, int] | None:
    """("B", seq) when B's header names A as its parent (by path or by A's identity), or ("A", seq)."""
    for child, parent, side in ((b, a, "B"), (a, b, "A")):
        named = forked_from(child.header)
        if named is None:
            continue
        same_path = Path(str(named.get("path"))).resolve() == parent.path.resolve()
        same_identity = named.get("startedAt") is not None and named.get("startedAt") == parent.header.get("startedAt")
        if same_path or same_identity:
            return side, int(named["seq"])
    return None


def divergence(a: Recording, b: Recording, after: int = 0) -> Divergence | None:
    """The first diverging event after seq `after`, or None when the recordings agree (streamed)."""
    common = next(a.records(after - 1), None) if after else None  # the fork point itself
    pairs: Iterator[tuple[dict[str, Any] | None, dict[str, Any] | None]] = zip_longest(a.records(after), b.records(after))
    for x, y in pairs:
        if x is None or y is None:
            longer, record = ("B", y) if x is None else ("A", x)
            assert record is not None  # zip_longest fills one side only
            return Divergence(record["seq"], x, y, f"A and B agree until here, then only {longer} goes on", common)
        if x["type"] != y["type"]:
            return Divergence(x["seq"], x, y, f"{x['type']} in A, {y['type']} in B", common)
        what = first_difference(normalise(x["data"]), normalise(y["data"]), "data")
        if what:
            return Divergence(x["seq"], x, y, what, common)
        common = x
    return None


def _side(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {"seq": record["seq"], "type": record["type"], "task": record_task(record),
            "agent": record_agent(record), "summary": summary(record)}


def report_json(a: Recording, b: Recording, fork: tuple[str, int] | None, found: Divergence | None) -> str:
    """`diff --json`: the same facts as the text, one object."""
    return json.dumps({
        "a": str(a.path), "b": str(b.path),
        "forkedFrom": {"child": fork[0], "seq": fork[1]} if fork else None,
        "torn": {side: _torn(r.torn) for side, r in (("A", a), ("B", b)) if r.torn} or None,
        "diverged": found is not None,
        "divergence": None if found is None else {
            "seq": found.seq, "what": found.what, "a": _side(found.a), "b": _side(found.b),
            "lastCommon": _side(found.common)},
    })


def report_text(a: Recording, b: Recording, fork: tuple[str, int] | None, found: Divergence | None) -> list[str]:
    """The lines `diff` prints: fork point, torn tails, then the divergence with its context."""
    lines = []
    if fork is not None:
        child, seq = fork
        names = (b.path, a.path) if child == "B" else (a.path, b.path)
        lines.append(f"{child} ({names[0]}) was forked from {names[1]} at seq {seq}; compared from there")
    lines += [f"{side}: {_torn(r.torn)}" for side, r in (("A", a), ("B", b)) if r.torn]
    if found is None:
        lines.append("the recordings do not diverge (timestamps aside)")
        return lines
    lines.append(f"first divergence at seq {found.seq}{_type(found)}: {found.what}")
    for side, record in (("A", found.a), ("B", found.b)):
        lines.append(f"  {side}: " + (f"seq {record['seq']} {summary(record)}" if record else "(ended before this)"))
    common = found.common
    lines.append(f"  after: seq {common['seq']} {summary(common)} (the last event both agree on)" if common
                 else "  after: nothing (they differ from the first event compared)")
    return lines


def _type(found: Divergence) -> str:
    """` lock_granted` when both sides have that type (or one side ended), else nothing: `what` says both."""
    if found.a is not None and found.b is not None and found.a["type"] != found.b["type"]:
        return ""
    record = found.a or found.b
    assert record is not None
    return f" {record['type']}"


def _torn(torn: TornTail) -> str:
    return (f"{torn.path}:{torn.line}: the last record is torn ({torn.reason}); compared up to seq "
            f"{torn.kept_records}, leaving the file as it is")


def main(args: argparse.Namespace) -> int:
    path_a, path_b = Path(args.journal_a), Path(args.journal_b)
    try:
        a, b = Recording.open(path_a), Recording.open(path_b)
        if a.header.get("planDigest") != b.header.get("planDigest"):
            print(f"sprintdeck: {path_a} and {path_b} record different plans (plan digests "
                  f"{str(a.header.get('planDigest'))[:12]}… and {str(b.header.get('planDigest'))[:12]}…)",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        fork = fork_point(a, b)
        found = divergence(a, b, after=fork[1] if fork else 0)
    except FileNotFoundError as exc:
        print(f"sprintdeck: {exc.filename}: no such journal", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, JournalError) as exc:
        print(f"sprintdeck: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(report_json(a, b, fork, found))
    else:
        print("\n".join(report_text(a, b, fork, found)))
    return EXIT_OK if found is None else EXIT_DIVERGED
