"""One line per message: what a payload says, by message type (`task_assign` -> `implement_api #2`).

The Messages pane draws a million rows by decoding only those on screen, so a summary is computed
when its row is drawn (`MessageStore.summary`), never stored with the message.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SUMMARY_MAX = 160


@dataclass(frozen=True, slots=True)
class MessageSummary:
    """One row of the message log: enough to draw a line, decoded on demand."""

    seq: int
    time: float  # seconds since the epoch, UTC
    priority: str
    type: str
    sender: str
    recipient: str
    summary_text: str


def _task(payload: dict[str, Any]) -> str:
    task = payload.get("taskId") or "?"
    attempt = payload.get("attempt")
    return f"{task} #{attempt}" if attempt is not None else str(task)


def _join(values: Any) -> str:
    return ", ".join(str(value) for value in values) if isinstance(values, list) else ""


def _lock(payload: dict[str, Any]) -> str:
    text = f"{payload.get('resourceId', '?')} {payload.get('lockType', '')}".rstrip()
    also = payload.get("also")
    if isinstance(also, list) and also:
        text += f" +{len(also)} more"
    if payload.get("lockId"):
        text += f" granted token {payload.get('token')}"
    elif payload.get("waitMs") is not None:
        text += f" wait {payload['waitMs']}ms"
    return text


def _conflict(payload: dict[str, Any]) -> str:
    text = f"{payload.get('resourceId', '?')} {payload.get('lockType', '')}".rstrip()
    holder = payload.get("holder")
    if holder:
        held = ", ".join(str(part) for part in (payload.get("holderMode"), payload.get("holderTask")) if part)
        text += f" held by {holder}" + (f" ({held})" if held else "")
    reason = payload.get("reason")
    return f"{text}: {reason}" if reason else text


def _update(payload: dict[str, Any]) -> str:
    text = _task(payload)
    progress = payload.get("progress")
    if isinstance(progress, (int, float)):
        text += f" {progress:.0%}"
    if payload.get("message"):
        stream = payload.get("stream")
        text += f" {stream}: " if stream else " "
        text += str(payload["message"])
    return text


def _failed(payload: dict[str, Any]) -> str:
    final = "" if payload.get("retryable", True) else " (final)"
    return f"{_task(payload)}{final}: {payload.get('error', '')}"


def _complete(payload: dict[str, Any]) -> str:
    result = payload.get("result")
    return f"{_task(payload)} done" + (f": {result}" if isinstance(result, str) and result else "")


def _with_task(payload: dict[str, Any], head: str) -> str:
    task = payload.get("taskId")
    return f"{head} [{task}]" if task else head


_SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "task_assign": lambda p: _task(p) + (f" with {_join(p['agents'])}" if len(p.get("agents") or []) > 1 else ""),
    "task_complete": _complete,
    "task_failed": _failed,
    "task_update": _update,
    "task_cancel": lambda p: _task(p) + (f": {p['reason']}" if p.get("reason") else ""),
    "resource_lock": _lock,
    "resource_unlock": lambda p: f"{p.get('resourceId', '?')}" + (" released" if p.get("released") else ""),
    "resource_conflict": _conflict,
    "state_update": lambda p: f"{p.get('path', '?')} {str(p.get('checksum', ''))[:8]}".rstrip(),
    "state_request": lambda p: _join(p.get("sections")) or "all",
    "state_sync": lambda p: f"version {p.get('version')}",
    "agent_ready": lambda p: _join(p.get("capabilities")) or "ready",
    "agent_busy": lambda p: " ".join(str(x) for x in (p.get("taskId"), p.get("reason")) if x) or "busy",
    "agent_error": lambda p: (f"{p['field']}: " if p.get("field") else "") + str(p.get("error", "")),
    "request_assistance": lambda p: _with_task(p, str(p.get("topic", ""))),
    "provide_assistance": lambda p: _with_task(p, str(p.get("topic", "") or p.get("details", ""))),
    "broadcast_info": lambda p: str(p.get("info", "")),
    "heartbeat": lambda p: " ".join(
        part for part in (f"load {p['load']}" if p.get("load") is not None else "", _join(p.get("tasks"))) if part
    ) or "alive",
}


def summarize(kind: str, payload: dict[str, Any]) -> str:
    """A short one-line description of a payload, e.g. `implement_api #2` for a task_assign."""
    describe = _SUMMARIES.get(kind)
    try:
        text = describe(payload) if describe else _compact(payload)
    except (KeyError, TypeError, ValueError):
        text = _compact(payload, default=str)
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def _compact(payload: dict[str, Any], default: Callable[[Any], Any] | None = None) -> str:
    """The payload as one-line JSON: the fallback for types without a summary of their own."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=default)
