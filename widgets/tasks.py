"""The Tasks pane: the DAG as a table — status, why, owner, attempt, what blocks what, the critical path.

Rows are keyed by task id and updated in place from each batch's changed tasks, so a 10,000-task
sprint costs per batch what its changes cost, not what the whole table costs.  Selecting a task
marks its upstream (↑) and downstream (↓) tasks in the `Path` column.  The `Why` column says in
words what a waiting task waits for and why a failed one failed (`engine.task_reasons`); it and the
task id are the last columns a narrow pane gives up.
"""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.binding import Binding
from textual.message import Message

from engine.dag import critical_chain, descendants_of
from engine.models import ProjectState, TaskState
from engine.task_reasons import why
from widgets.changes import Changes
from widgets.pane_table import PaneTable
from widgets.status import colour, task_badge

COLUMNS = [("status", "Status"), ("task", "Task"), ("why", "Why"), ("owner", "Owner"), ("attempt", "Try"),
           ("priority", "Priority"), ("path", "Path"), ("deps", "Depends on")]
# A reason can change while its task does not: a blocked task's lock changes hands, a retrying
# task's failure ages (re-read when locks or agents change, and once a second); a ready task's
# agents fill up or free (re-read once a second: a big sprint has thousands of ready tasks).
# A pending task's reason changes with its dependencies, which are re-read when those change.
WAITING = frozenset({"blocked", "retrying"})
QUEUED = "ready"
PRIORITY_MARK = {"critical": "!!!", "high": "!!", "medium": "!", "low": "·"}


class TasksPane(PaneTable):
    BORDER_TITLE = "Tasks"
    COLUMNS = COLUMNS
    DROP_ORDER = ["deps", "path", "priority", "attempt", "owner"]
    BINDINGS = [
        Binding("r", "app.reassign", "Reassign", id="tasks.reassign"),
        Binding("R", "app.retry", "Retry", id="tasks.retry"),
        Binding("x", "app.cancel_task", "Cancel", id="tasks.cancel"),
        Binding("plus,equals_sign", "app.priority(1)", "Priority +", key_display="+", id="tasks.priority_up"),
        Binding("minus", "app.priority(-1)", "Priority -", key_display="-", id="tasks.priority_down"),
        Binding("enter", "app.task_details", "Details", id="tasks.details"),
    ]

    class Selected(Message):
        """The highlighted task changed (the App shows its neighbourhood, operations use it)."""

        def __init__(self, task_id: str | None) -> None:
            super().__init__()
            self.task_id = task_id

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        # task -> the tasks that depend on it, and task -> its dependencies (plain dicts: importing
        # networkx for these cost the dashboard's first paint 60 ms)
        self._children: dict[str, list[str]] = {}
        self._parents: dict[str, list[str]] = {}
        self._critical: set[str] = set()
        self._related: dict[str, str] = {}  # task -> "↑" or "↓"
        self._state: ProjectState | None = None
        self._now: datetime | None = None
        self._waiting: set[str] = set()  # blocked or retrying rows (see WAITING)
        self._queued: set[str] = set()  # ready rows
        self._slow_refresh: datetime | None = None  # when the ready rows were last re-read

    # ------------------------------------------------------------ state

    def refresh_state(self, state: ProjectState, changes: Changes, now: datetime) -> None:
        self._state, self._now = state, now
        if changes.everything or len(self._children) != len(state.tasks):
            self._rebuild(state)
            return
        touched = set(changes.tasks)
        # A task that changed changes how its dependents' "Depends on" and "Why" read.
        for task_id in changes.tasks:
            touched.update(self._children.get(task_id, ()))
        once_a_second = self._slow_refresh is None or (now - self._slow_refresh).total_seconds() >= 1
        if once_a_second:
            self._slow_refresh = now
            touched |= self._queued
        if changes.locks or changes.agents or once_a_second:
            touched |= self._waiting
        keys = [key for key, _ in COLUMNS]
        for task_id in touched:
            task = state.tasks.get(task_id)
            if task is not None:
                self.upsert(task_id, self._cells(task), keys)

    def _rebuild(self, state: ProjectState) -> None:
        self._children = {task_id: [] for task_id in state.tasks}
        self._parents = {task.id: [dep for dep in task.dependencies if dep in state.tasks] for task in state.tasks.values()}
        for task_id, deps in self._parents.items():
            for dep in dict.fromkeys(deps):
                self._children[dep].append(task_id)
        estimates = {task.id: task.estimate for task in state.tasks.values()}
        self._critical = set(critical_chain(self._children, estimates))
        self.clear()
        self._waiting.clear()
        self._queued.clear()
        for task in state.tasks.values():
            self.add_row(*self._cells(task), key=task.id)

    def restyle(self) -> None:
        """Re-render every row, e.g. after a theme change (cell colours come from the theme)."""
        if self._state is not None:
            self._rebuild(self._state)

    def _cells(self, task: TaskState) -> list:
        state = self._state
        owners = "+".join(task.agents) if task.coordination == "collaborative" and task.agents else task.agent
        reason = why(task, state, self._now) if state is not None else ""
        for rows, member in ((self._waiting, task.status in WAITING), (self._queued, task.status == QUEUED)):
            if member:
                rows.add(task.id)
            else:
                rows.discard(task.id)
        deps = []
        for dep in task.dependencies:
            done = state is not None and dep in state.tasks and state.tasks[dep].status == "completed"
            deps.append(f"{dep}{'✔' if done else ''}")
        return [
            task_badge(self.app, task.status),
            task.id,
            reason or "—",
            owners or "—",
            str(task.attempt or "—"),
            f"{PRIORITY_MARK[task.priority]} {task.priority}",
            self._path_mark(task.id),
            ("← " + ", ".join(deps)) if deps else "—",
        ]

    def _path_mark(self, task_id: str) -> Text:
        marks = ("★ " if task_id in self._critical else "") + self._related.get(task_id, "")
        style = colour(self.app, "critical-path") if task_id in self._critical else ""
        return Text(marks.strip() or "", style=style)

    # ------------------------------------------------------------ selection

    def on_pane_table_highlighted(self, event: PaneTable.Highlighted) -> None:
        task_id = event.key
        self._mark_related(task_id)
        self.post_message(self.Selected(task_id))

    def _mark_related(self, task_id: str | None) -> None:
        related: dict[str, str] = {}
        if task_id is not None and task_id in self._children:
            related.update({t: "↑ up" for t in descendants_of(self._parents, task_id)})
            related.update({t: "↓ down" for t in descendants_of(self._children, task_id)})
        touched = set(related) | set(self._related)
        self._related = related
        for key in touched:
            if key in self.rows:
                self.update_cell(key, "path", self._path_mark(key))

    def related(self) -> dict[str, str]:
        return dict(self._related)

    @property
    def critical(self) -> set[str]:
        return set(self._critical)
