"""The Files pane: every file the watcher knows, conflicts first."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from textual.binding import Binding

from widgets.changes import Changes
from widgets.pane_table import PaneTable
from widgets.status import file_badge

if TYPE_CHECKING:  # types only: the dashboard's first frame is drawn before pydantic is imported
    from engine.models import FileState, ProjectState

COLUMNS = [("status", "Status"), ("path", "Path"), ("by", "Modified by"), ("sum", "Checksum"),
           ("when", "Last change")]
STATUS_ORDER = {"conflict": 0, "modified": 1, "clean": 2}


class FilesPane(PaneTable):
    BORDER_TITLE = "Files"
    COLUMNS = COLUMNS
    BINDINGS = [
        Binding("a", "app.resolve_file('accept')", "Accept", id="files.accept"),
        Binding("v", "app.resolve_file('revert')", "Revert", id="files.revert"),
        Binding("m", "app.resolve_file('merge')", "Merge", id="files.merge"),
        Binding("e", "app.escalate_file", "Escalate (diff)", id="files.escalate"),
        Binding("enter", "app.file_details", "Details", id="files.details"),
    ]

    def refresh_state(self, state: ProjectState, changes: Changes, now: datetime) -> None:
        if not (changes.files or changes.everything) and self.row_count == len(state.files):
            return
        order = sorted(state.files, key=lambda p: (STATUS_ORDER.get(state.files[p].status, 3), p))
        keys = [key for key, _ in COLUMNS]
        if order != self.keys():
            # The conflicts-first order changed: rebuild (rare: only when a status changes).
            self.clear()
            for path in order:
                self.add_row(*self._cells(state.files[path]), key=path)
            return
        for path in changes.files:
            if path in state.files:
                self.upsert(path, self._cells(state.files[path]), keys)

    def _cells(self, file: FileState) -> list:
        when = file.last_modified.strftime("%H:%M:%S") if file.last_modified else "—"
        return [file_badge(self.app, file.status), file.path, file.modified_by or "—",
                file.checksum[:8] or "—", when]
