"""Enter on a file: its history — who changed it, under which lock and for which task, its
conflicts (with the holders they overlapped) and how each was resolved.

`FileState` says only where the file stands now; the history comes from the journal's file events
as `engine/file_history.py` keeps them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from app.screens.record_view import RecordView, Section, table
from engine.file_history import FileHistory
from engine.models import FileState, ProjectState
from engine.task_story import clock


def file_facts(file: FileState | None) -> str:
    """Where the file stands now, in words (the current conflict's reason first)."""
    if file is None:
        return "Status: not in the sprint's files (yet)"
    lines = [f"Status: {file.status}" + (f" — last changed by {file.modified_by}" if file.modified_by else "")
             + (f" at {clock(file.last_modified)}" if file.last_modified else "")]
    conflict = file.conflict
    if conflict is not None:
        lines.append(f"Conflict: {conflict.reason} — {conflict.detail}")
        holders = [f"{h.agent_id} ({h.lock_type} lock {h.lock_id}" + (f", task {h.task_id})" if h.task_id else ")")
                   for h in conflict.holders]
        if holders:
            lines.append(f"Held by: {', '.join(holders)}")
        ways = [way for way, can in (("accept (a)", True), ("revert (v)", conflict.can_revert),
                                     ("merge (m)", conflict.can_merge)) if can]
        lines.append(f"Resolve with: {', '.join(ways)} in the Files pane, or escalate (e)")
    if file.resolution:
        lines.append(f"Last resolution: {file.resolution}" + (f" by {file.resolved_by}" if file.resolved_by else ""))
    if file.error:
        lines.append(f"Cannot read it: {file.error}")
    return "\n".join(lines)


class FileViewScreen(RecordView):
    def __init__(self, path: str, state: Callable[[], ProjectState], clock: Callable[[], datetime], *,
                 files: FileHistory) -> None:
        super().__init__(state, clock)
        self.path = path
        self.files = files

    def heading(self, state: ProjectState) -> str:
        return f"File {self.path}"

    def sections(self, state: ProjectState, now: datetime) -> list[Section]:
        entries = self.files.of_path(self.path, upto=state.version)
        rows = [(clock(datetime.fromisoformat(e.ts)), e.what, e.agent or "—", e.lock_id or "—", e.task_id or "—",
                 e.detail) for e in entries]
        return [
            ("", file_facts(state.files.get(self.path))),
            ("History", table(["Time", "What", "Who", "Lock", "Task", "Detail"], rows, "no changes recorded")),
        ]

    def record(self, state: ProjectState) -> dict[str, Any]:
        file = state.files.get(self.path)
        return file.model_dump(mode="json") if file is not None else {"path": self.path}
