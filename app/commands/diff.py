"""`sprintdeck diff A B`: the first event at which two recordings of one plan diverge.

Timing is not divergence: wall and monotonic timestamps, the crc (it covers them), timestamp-valued
fields inside events (`timestamp`, `expiresAt`, `mtime`...), measured latencies, random message ids
and state digests (they hash timestamps too) are left out of the comparison.  Everything else --
which event, in which order, with which data -- must match.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from typing import Any

from app.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_TASKS_FAILED
from engine.journal import JournalError, iter_journal, read_header

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


def divergence(path_a: Path, path_b: Path) -> str | None:
    """Describe the first diverging event, or None when the recordings agree (streamed, O(1) memory)."""
    records: Iterator[tuple[dict[str, Any] | None, dict[str, Any] | None]] = zip_longest(iter_journal(path_a), iter_journal(path_b))
    for a, b in records:
        if a is None or b is None:
            longer, record = ("B", b) if a is None else ("A", a)
            assert record is not None  # zip_longest fills one side only
            return f"seq {record['seq']} {record['type']}: A and B agree until here, then only {longer} goes on"
        if a["type"] != b["type"]:
            return f"seq {a['seq']}: {a['type']} in A, {b['type']} in B"
        what = first_difference(normalise(a["data"]), normalise(b["data"]), "data")
        if what:
            return f"seq {a['seq']} {a['type']}: {what}"
    return None


def main(args: argparse.Namespace) -> int:
    path_a, path_b = Path(args.journal_a), Path(args.journal_b)
    try:
        header_a, header_b = read_header(path_a), read_header(path_b)
        if header_a.get("planDigest") != header_b.get("planDigest"):
            print(f"sprintdeck: {path_a} and {path_b} record different plans (plan digests "
                  f"{str(header_a.get('planDigest'))[:12]}… and {str(header_b.get('planDigest'))[:12]}…)",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        found = divergence(path_a, path_b)
    except FileNotFoundError as exc:
        print(f"sprintdeck: {exc.filename}: no such journal", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (OSError, JournalError) as exc:
        print(f"sprintdeck: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if found is None:
        print("the recordings do not diverge (timestamps aside)")
        return EXIT_OK
    print(f"first divergence at {found}")
    return EXIT_DIVERGED
