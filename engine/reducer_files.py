"""The reducer's handlers for files and conflicts, messages and operator actions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from engine.events import (
    ConflictEscalated,
    ConflictRecord,
    ConflictResolved,
    Event,
    FileChanged,
    FileDeleted,
    FilesScanned,
    FileReported,
    FileUnreadable,
    MessageRecorded,
    MessageRejected,
    OperatorAction,
)
from engine.models import FileConflict, FileState, ProjectState
from engine.protocol import MessageType

Handler = Callable[[ProjectState, Any, Event], None]


# ---------------------------------------------------------------- messages and operators


def _message(state: ProjectState, body: MessageRecorded, event: Event) -> None:
    """Every IPC message is recorded; the state keeps counters and heartbeat times from them."""
    message = body.message
    sender, recipient = message["from"], message["to"]
    state.meta.messages += 1
    if sender in state.agents:
        state.agents[sender].metrics.messages_sent += 1
        if message["type"] == MessageType.HEARTBEAT:
            state.agents[sender].last_heartbeat = event.time
    if recipient == "broadcast":
        for agent_id, agent in state.agents.items():
            if agent_id != sender:
                agent.metrics.messages_received += 1
    elif recipient in state.agents:
        state.agents[recipient].metrics.messages_received += 1
    if isinstance(body.latency_ms, (int, float)):
        state.meta.replies += 1
        state.meta.reply_latency_total += float(body.latency_ms)


def _message_rejected(state: ProjectState, body: MessageRejected, event: Event) -> None:
    state.meta.rejected_messages += body.count if isinstance(body.count, int) else 1


def _operator_action(state: ProjectState, body: OperatorAction, event: Event) -> None:
    """The operator's intent is recorded; its effects follow as their own events."""


# ---------------------------------------------------------------- files and conflicts


def _conflict(event: Event, raw: ConflictRecord | None) -> FileConflict | None:
    if raw is None:
        return None
    conflict = FileConflict.model_validate(raw)
    conflict.seq = event.seq
    conflict.detected_at = event.time
    return conflict


def _mtime(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _files_scanned(state: ProjectState, body: FilesScanned, event: Event) -> None:
    for raw in body.files:
        mtime = _mtime(raw.get("mtime"))
        file = FileState(
            path=raw["path"], checksum=raw["checksum"], size=raw["size"], mtime=mtime, last_modified=mtime
        )
        _keep_conflict(state.files.get(raw["path"]), file)
        state.files[raw["path"]] = file
    for unreadable in body.unreadable:
        state.files[unreadable["path"]] = FileState(path=unreadable["path"], error=unreadable["error"])


def _keep_conflict(previous: FileState | None, file: FileState) -> None:
    """A rescan after a manager restart does not resolve a conflict (it stays until resolved).

    The content kept for revert and merge lived in the old process, so only escalation or
    acceptance remain possible.
    """
    if previous is None or previous.conflict is None:
        return
    file.conflict = previous.conflict.model_copy(update={"can_revert": False, "can_merge": False})
    file.status = "conflict"
    file.modified_by = previous.modified_by


def _file_changed(state: ProjectState, body: FileChanged, event: Event) -> None:
    """A created, modified or renamed file, as judged live: modified by its holder, or a conflict."""
    path = body.path
    previous = state.files.get(path)
    if body.renamed_from is not None:
        _drop_rename_source(state, event, body)
    conflict = _conflict(event, body.conflict)
    if conflict is None and previous is not None and previous.conflict is not None:
        conflict = previous.conflict  # a conflict stays until it is resolved
    state.files[path] = FileState(
        path=path,
        last_modified=event.time,
        modified_by=body.modified_by,
        checksum=body.checksum,
        status="conflict" if conflict is not None else body.status,  # type: ignore[arg-type]
        size=body.size,
        mtime=_mtime(body.mtime),
        renamed_from=body.renamed_from,
        reported_checksum=previous.reported_checksum if previous else None,
        reported_by=previous.reported_by if previous else None,
        conflict=conflict,
    )


def _drop_rename_source(state: ProjectState, event: Event, body: FileChanged) -> None:
    """The old name goes, unless taking it away was itself a conflict (then it stays, deleted)."""
    source = body.renamed_from
    assert source is not None
    conflict = _conflict(event, body.source_conflict)
    old = state.files.get(source)
    if conflict is None and (old is None or old.conflict is None):
        state.files.pop(source, None)
        return
    _mark_deleted(state, event, source, conflict or (old.conflict if old else None), body.modified_by)


def _mark_deleted(state: ProjectState, event: Event, path: str, conflict: FileConflict | None,
                  modified_by: str | None) -> None:
    old = state.files.get(path) or FileState(path=path)
    old.deleted = True
    old.status = "conflict"
    old.conflict = conflict
    old.last_modified = event.time
    old.modified_by = modified_by
    old.size = None
    state.files[path] = old


def _file_deleted(state: ProjectState, body: FileDeleted, event: Event) -> None:
    conflict = _conflict(event, body.conflict)
    old = state.files.get(body.path)
    if conflict is None and (old is None or old.conflict is None):
        state.files.pop(body.path, None)
        return
    _mark_deleted(state, event, body.path, conflict or (old.conflict if old else None), body.modified_by)


def _file_unreadable(state: ProjectState, body: FileUnreadable, event: Event) -> None:
    file = state.files.get(body.path) or FileState(path=body.path)
    file.error = body.error
    state.files[body.path] = file


def _file_reported(state: ProjectState, body: FileReported, event: Event) -> None:
    file = state.files.get(body.path)
    if file is not None:
        file.reported_checksum = body.checksum
        file.reported_by = body.agent_id


def _conflict_resolved(state: ProjectState, body: ConflictResolved, event: Event) -> None:
    """Accept, revert or merge: the content on disk becomes the new base, unless the merge failed."""
    path = body.path
    file = state.files.get(path) or FileState(path=path)
    file.resolution = body.resolution
    file.resolved_by = body.by
    if body.status == "conflict":  # a merge that left conflict markers
        if file.conflict is not None:
            file.conflict.merge_attempts += 1
        return
    if body.deleted is True:
        state.files.pop(path, None)
        return
    file.status = "clean"
    file.conflict = None
    file.deleted = False
    file.error = None
    file.checksum = body.checksum if isinstance(body.checksum, str) else ""
    file.size = body.size if isinstance(body.size, int) else None
    file.mtime = _mtime(body.mtime if isinstance(body.mtime, str) else None)
    file.last_modified = event.time
    file.modified_by = body.by
    state.files[path] = file


def _conflict_escalated(state: ProjectState, body: ConflictEscalated, event: Event) -> None:
    file = state.files[body.path]
    if file.conflict is not None:
        file.conflict.escalated = True
        file.conflict.escalated_by = body.by
        file.conflict.note = body.note


HANDLERS: dict[type, Handler] = {
    MessageRecorded: _message,
    MessageRejected: _message_rejected,
    OperatorAction: _operator_action,
    FilesScanned: _files_scanned,
    FileChanged: _file_changed,
    FileDeleted: _file_deleted,
    FileUnreadable: _file_unreadable,
    FileReported: _file_reported,
    ConflictResolved: _conflict_resolved,
    ConflictEscalated: _conflict_escalated,
}
