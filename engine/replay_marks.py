"""What matters in a recording: the notable events replay jumps between, and one line saying each.

Notable are the events an operator looks for afterwards: a task failure, a file going into
conflict, an agent's death, and an operator's own action (`KINDS`, in the words `:marks` takes).
`find_marks` finds them all in one pass over the journal's bytes without parsing the rest: the
kinds' fingerprints (`"type":"task_failed"`, `"status":"conflict"`, ...) are searched for in the
file, and only the lines they hit are decoded and checked (a message whose own type is
`task_failed` is not a failure; the record's type decides).  `task_events` does the same for one
task (`:follow TASK`), reading only each hit line's head (seq and type).  On a million-event
journal `find_marks` takes about as long as opening it (0.7 s) and `task_events` of a task named
by a third of the lines 1 s (benchmarks/bench_replay_marks.py): no index is kept on disk, and the
replay dashboard runs both in a worker for a large journal.

`summary` is the one line for a record (`task_failed build_ui · agent frontend: exit 1`), shared by
the replay dashboard and `sprintdeck diff`.
"""

from __future__ import annotations

import json
import mmap
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Each kind of mark, in the order `:marks` lists them, with its glyph on the scrubber.
KINDS = ("failures", "conflicts", "deaths", "operator")
TASK_EVENT = "task"  # the kind of a followed task's event that is none of `KINDS`
GLYPHS = {"failures": "✗", "conflicts": "!", "deaths": "†", "operator": "◆", TASK_EVENT: "•"}
_FINGERPRINTS = {  # bytes each kind's lines contain (a superset: `kind_of` decides)
    b'"type":"task_failed"': "failures",
    b'"status":"conflict"': "conflicts",
    b'"type":"conflict_escalated"': "conflicts",
    b'"type":"agent_dead"': "deaths",
    b'"type":"operator_action"': "operator",
}


_HEAD = re.compile(rb'\{"seq":(\d+),"ts":"[^"]*","mono":[^,]*,"type":"([a-z_]+)"')  # a record line's start
_KIND_BY_TYPE = {"task_failed": "failures", "agent_dead": "deaths", "operator_action": "operator"}


@dataclass(frozen=True)
class Mark:
    """A notable event: its seq, its kind (one of `KINDS`, or `TASK_EVENT`), its task (if any) and
    its line (None when it is left to be said when shown: `task_events` has too many to parse)."""

    seq: int
    kind: str
    task: str | None
    text: str | None


def kind_of(record: dict[str, Any]) -> str | None:
    """The mark kind of a journal record, or None when it is not notable."""
    kind, data = record["type"], record["data"]
    if kind == "task_failed":
        return "failures"
    if kind in ("file_changed", "file_deleted") and data.get("status") == "conflict":
        return "conflicts"
    if kind == "conflict_escalated":
        return "conflicts"
    if kind == "agent_dead":
        return "deaths"
    if kind == "operator_action":
        return "operator"
    return None


def record_task(record: dict[str, Any]) -> str | None:
    """The task a record is about (a message's payload task too), else None."""
    data = record["data"]
    message = data.get("message")
    if isinstance(message, dict):
        payload = message.get("payload")
        return payload.get("taskId") if isinstance(payload, dict) else None
    task = data.get("taskId")
    return task if isinstance(task, str) else None


def record_agent(record: dict[str, Any]) -> str | None:
    """The agent a record is about: the sender of a message, else the agent or lock holder named."""
    data = record["data"]
    message = data.get("message")
    if isinstance(message, dict):
        return str(message.get("from"))
    for key in ("agentId", "modifiedBy", "by"):
        if isinstance(data.get(key), str):
            return str(data[key])
    agents = data.get("agents")
    return ", ".join(agents) if isinstance(agents, list) and agents else None


def _detail(record: dict[str, Any]) -> str | None:
    """What happened, in a few words, where the record says more than its type."""
    data = record["data"]
    message = data.get("message")
    if isinstance(message, dict):
        return f"{message.get('type')} → {message.get('to')}"
    for key in ("error", "reason", "action", "resolution", "status"):
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def summary(record: dict[str, Any]) -> str:
    """One line for a record: `task_failed build_ui · agent frontend: exit 1`."""
    data = record["data"]
    subject = record_task(record) or data.get("path") or data.get("lockId") or data.get("agentId") or ""
    text = f"{record['type']} {subject}".rstrip()
    agent = record_agent(record)
    if agent and agent != subject:
        text += f" · agent {agent}"
    detail = _detail(record)
    return f"{text}: {detail}" if detail else text


def _lines_with(data: bytes | mmap.mmap, needle: bytes) -> Iterator[tuple[int, bytes]]:
    """(start offset, line) of each line containing `needle` (each line once)."""
    at, last = data.find(needle), -1
    while at >= 0:
        start = data.rfind(b"\n", 0, at) + 1
        end = data.find(b"\n", at)
        end = len(data) if end < 0 else end
        if start != last:
            last = start
            yield start, bytes(data[start:end])
        at = data.find(needle, end)


def _matching_lines(path: Path, needles: list[bytes]) -> dict[int, bytes]:
    """The record lines (by offset; not the header) that contain any of `needles`."""
    found: dict[int, bytes] = {}
    with open(path, "rb") as file:
        if file.seek(0, 2) == 0:
            return found
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            header_end = data.find(b"\n") + 1
            for needle in needles:
                found.update((start, line) for start, line in _lines_with(data, needle) if start >= header_end)
    return found


def _records_with(path: Path, needles: list[bytes], total: int) -> dict[int, dict[str, Any]]:
    """The records (seq 1..total: a torn tail is left out) whose lines contain any of `needles`."""
    found: dict[int, dict[str, Any]] = {}
    for line in _matching_lines(path, needles).values():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a torn last line: not a record
        if isinstance(record, dict) and 0 < record.get("seq", 0) <= total:
            found[record["seq"]] = record
    return found


def find_marks(path: Path, total: int) -> list[Mark]:
    """Every notable event of the journal at `path` (records 1..total), in seq order."""
    marks = []
    for seq, record in sorted(_records_with(path, list(_FINGERPRINTS), total).items()):
        kind = kind_of(record)
        if kind is not None:
            marks.append(Mark(seq, kind, record_task(record), summary(record)))
    return marks


def task_events(path: Path, total: int, task_id: str) -> list[Mark]:
    """Every event naming task `task_id` (its own events, its locks, messages about it), in seq order.

    A busy task is named by a third of a journal's lines, so only each line's head is read (seq and
    type); what an event says is left to be read when it is shown (`Mark.text` None).
    """
    needle = b'"taskId":' + json.dumps(task_id).encode()
    marks = []
    for line in _matching_lines(path, [needle]).values():
        head = _HEAD.match(line)
        if head is not None and 0 < int(head[1]) <= total:
            kind = _KIND_BY_TYPE.get(head[2].decode(), TASK_EVENT)
            marks.append(Mark(int(head[1]), kind, task_id, None))
    return sorted(marks, key=lambda mark: mark.seq)


def parse_kinds(text: str) -> frozenset[str]:
    """`:marks failures,conflicts` (or `all`) as a set of kinds; ValueError names a wrong word."""
    words = [word.strip().lower() for word in text.replace(",", " ").split() if word.strip()]
    if not words or words == ["all"]:
        return frozenset(KINDS)
    unknown = [word for word in words if word not in KINDS]
    if unknown:
        raise ValueError(f"unknown mark kind {unknown[0]!r}: :marks takes {', '.join(KINDS)} or all")
    return frozenset(words)


def next_mark(marks: list[Mark], seq: int, direction: int) -> Mark | None:
    """The first mark after `seq` (direction 1) or before it (-1), else None."""
    if direction > 0:
        return next((mark for mark in marks if mark.seq > seq), None)
    return next((mark for mark in reversed(marks) if mark.seq < seq), None)
