"""Enter on a task: what it is doing and why, every attempt and how it ended, the locks it holds and
waits for, the files it changed, its messages, and the tasks around it.

The operator's question "what happened to this task" answered on one page in words and tables
(the words come from `engine/task_story.py`); the raw record is one key (`j`) away.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Group

from engine.file_history import FileHistory
from engine.message_store import MessageStore
from engine.models import ProjectState, TaskState
from engine.task_story import (
    attempt_row, clock, latest_task_messages, lock_rows, needed_by, neighbour_words, task_messages_view, why,
)
from app.screens.record_view import RecordView, Section, table

MESSAGES_SHOWN = 6  # the latest; the Messages pane (filter `/taskId`) has them all


class TaskViewScreen(RecordView):
    def __init__(self, task_id: str, state: Callable[[], ProjectState], clock: Callable[[], datetime], *,
                 store: MessageStore, files: FileHistory) -> None:
        super().__init__(state, clock)
        self.task_id = task_id
        self.store = store
        self.files = files
        self.messages = task_messages_view(store, task_id)

    def task_of(self, state: ProjectState) -> TaskState:
        return state.tasks[self.task_id]

    def heading(self, state: ProjectState) -> str:
        task = self.task_of(state)
        return f"Task {task.id}" + (f" — {task.title}" if task.title and task.title != task.id else "")

    def sections(self, state: ProjectState, now: datetime) -> list[Section]:
        task = self.task_of(state)
        return [
            ("", self._summary(task, state)),
            ("Attempts", table(["#", "Agent", "Start", "Duration", "Outcome", "Error", "Exit", "Released"],
                               [attempt_row(a, now, task) for a in task.attempts], "none yet")),
            ("Locks", table(["Path", "Mode", "State", "Lock / held by"],
                            [(r.path, r.mode, r.state, r.other) for r in lock_rows(task, state)],
                            "none held or waited for")),
            ("Files it changed", self._files(state)),
            ("Dependencies", f"depends on: {neighbour_words(task.dependencies, state)}\n"
                             f"needed by:  {neighbour_words(needed_by(task.id, state), state)}"),
            ("Messages", self._messages(state)),
        ]

    def _summary(self, task: TaskState, state: ProjectState) -> str:
        lines = [f"Status: {task.status} — {why(task, state)}"]
        lines.append(f"Agent: {', '.join(task.owners) or '—'}   Attempt: {task.attempt}   "
                     f"Failures: {task.failures}   Agent deaths: {task.agent_deaths}   Priority: {task.priority}")
        if task.command:
            lines.append(f"Command: {task.command}")
        if task.last_output:
            lines.append(f"Last output: {task.last_output}")
        return "\n".join(lines)

    def _files(self, state: ProjectState) -> Any:
        entries = self.files.of_task(self.task_id, upto=state.version)
        rows = [(clock(datetime.fromisoformat(e.ts)), e.path, e.what, e.agent or "—", e.lock_id or "—", e.detail)
                for e in entries]
        return table(["Time", "Path", "Change", "By", "Lock", "Detail"], rows, "none")

    def _messages(self, state: ProjectState) -> Any:
        found, total = latest_task_messages(self.messages, self.task_id, state.version, MESSAGES_SHOWN)
        rows = []
        for index in found:
            line = self.store.summary(index)
            when = datetime.fromtimestamp(line.time, UTC).strftime("%H:%M:%S")
            rows.append((when, f"{line.sender} → {line.recipient}", line.type, line.summary_text))
        more = f" (latest {len(found)} of {total})" if total > len(found) else ""
        shown = table(["Time", "From → to", "Type", "Says"], rows, "none")
        return shown if not more else _with_note(shown, more)

    def record(self, state: ProjectState) -> dict[str, Any]:
        task = self.task_of(state)
        record = task.model_dump(mode="json")
        record["attempts"] = [attempt.as_json() for attempt in task.attempts]
        return record


def _with_note(renderable: Any, note: str) -> Any:
    return Group(renderable, note.strip())
