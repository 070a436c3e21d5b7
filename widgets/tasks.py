"""The Tasks pane: the DAG as a table — status, why, owner, attempt, what blocks what, the critical path.

Rows are keyed by task id and updated in place from each batch's changed tasks, so a 10,000-task
sprint costs per batch what its changes cost, not what the whole table costs.  Selecting a task
marks its upstream (↑) and downstream (↓) tasks in the `Path` column.  The `Why` column says in
words what a waiting task waits for and why a failed one failed (`engine.task_reasons`); it and the
task id are the last columns a narrow pane gives up.

`v` draws the same tasks as a graph (`widgets.task_graph`) in the same pane: one widget, so the
table and the graph share one selection, one focus and one place in the layout; arrows and `j`/`k`
then move along edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.strip import Strip

from engine.dag import critical_chain, descendants_of
from engine.dag_layout import layered as layout_of
from engine.dag_layout import signature_of, step
from engine.task_reasons import why
from widgets.changes import Changes
from widgets.pane_table import Cell, PaneTable
from widgets.status import colour, task_badge
from widgets.task_graph import GraphView

if TYPE_CHECKING:  # types only: the dashboard's first frame is drawn before pydantic is imported
    from engine.models import ProjectState, TaskState
    from engine.plan import Plan

COLUMNS = [("status", "Status"), ("task", "Task"), ("why", "Why"), ("owner", "Owner"), ("attempt", "Try"),
           ("priority", "Priority"), ("path", "Path"), ("deps", "Depends on")]
# A reason can change while its task does not: a blocked task's lock changes hands, a retrying
# task's failure ages (re-read when locks or agents change, and once a second); a ready task's
# agents fill up or free (re-read once a second: a big sprint has thousands of ready tasks).
# A pending task's reason changes with its dependencies, which are re-read when those change.
WAITING = frozenset({"blocked", "retrying"})
QUEUED = "ready"
PRIORITY = Binding.Group("Priority")
PRIORITY_MARK = {"critical": "!!!", "high": "!!", "medium": "!", "low": "·"}


class TasksPane(PaneTable):
    BORDER_TITLE = "Tasks"
    COLUMNS = COLUMNS
    DROP_ORDER = ["deps", "path", "priority", "attempt", "owner"]
    BINDINGS = [
        Binding("r", "app.reassign", "Reassign", id="tasks.reassign"),
        Binding("R", "app.retry", "Retry", id="tasks.retry"),
        Binding("x", "app.cancel_task", "Cancel", id="tasks.cancel"),
        # One footer entry for the pair ("+ - Priority"), so that `v DAG` fits beside `p Pause` at 120 columns.
        Binding("plus,equals_sign", "app.priority(1)", "Priority +", key_display="+", id="tasks.priority_up",
                group=PRIORITY),
        Binding("minus", "app.priority(-1)", "Priority -", key_display="-", id="tasks.priority_down", group=PRIORITY),
        Binding("enter", "app.task_details", "Details", id="tasks.details"),
        Binding("v", "toggle_graph", "DAG", id="tasks.graph", tooltip="table / graph of the task DAG"),
        Binding("left", "graph_step('left')", "Left", show=False, id="tasks.left"),
        Binding("right", "graph_step('right')", "Right", show=False, id="tasks.right"),
    ]
    COMPONENT_CLASSES = PaneTable.COMPONENT_CLASSES | {"tasks--edge", "tasks--edge-selected"}
    DEFAULT_CSS = """
    TasksPane > .tasks--edge { color: $foreground-muted; }
    TasksPane > .tasks--edge-selected { color: $primary; text-style: bold; }
    """

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
        self.graph: GraphView | None = None  # the drawing, kept while the plan's tasks and edges stay the same
        self.graph_mode = False
        self._came_from: str | None = None  # the task a move along an edge left (going back returns)

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
        self._set_dag({task.id: task.dependencies for task in state.tasks.values()},
                      {task.id: task.estimate for task in state.tasks.values()})
        self.clear()
        self._waiting.clear()
        self._queued.clear()
        for task in state.tasks.values():
            self.add_row(*self._cells(task), key=task.id)
        if self.graph_mode:
            self._show_graph()

    def show_plan(self, plan: Plan) -> None:
        """`run`'s first frame, before the engine has a state: the plan's tasks, each pending, in the
        same columns (what a task waits for and who has it come with the engine's first batch,
        which rebuilds the rows from the state)."""
        self._set_dag({task.id: task.depends_on for task in plan.tasks}, {task.id: task.estimate for task in plan.tasks})
        self.clear()
        for task in plan.tasks:
            self.add_row(task_badge(self.app, "pending"), task.id, "—", "—", "—",
                         f"{PRIORITY_MARK[task.priority]} {task.priority}", self._path_mark(task.id),
                         ("← " + ", ".join(task.depends_on)) if task.depends_on else "—", key=task.id)

    def _set_dag(self, dependencies: dict[str, list[str]], estimates: dict[str, float]) -> None:
        """Each task's dependencies and dependents, and the critical chain, from the plan's edges."""
        self._children = {task_id: [] for task_id in dependencies}
        self._parents = {task_id: [dep for dep in deps if dep in dependencies] for task_id, deps in dependencies.items()}
        for task_id, deps in self._parents.items():
            for dep in dict.fromkeys(deps):
                self._children[dep].append(task_id)
        self._critical = set(critical_chain(self._children, estimates))

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
        if self.graph_mode and self.graph is not None:
            self.graph.select(task_id, self._critical)
            self.refresh()

    def related(self) -> dict[str, str]:
        return dict(self._related)

    @property
    def critical(self) -> set[str]:
        return set(self._critical)

    # ------------------------------------------------------------ graph mode

    def action_toggle_graph(self) -> None:
        """`v`: table <-> graph, on the same selected task."""
        self.graph_mode = not self.graph_mode
        self.border_title = "Tasks · graph" if self.graph_mode else None
        if self.graph_mode:
            self._show_graph()
        else:
            self.scroll_to(x=0, animate=False)
            super()._sync_size(True)
            self._scroll_to_row(self.cursor_row)

    def _show_graph(self) -> None:
        """Lay the plan out (only if its tasks or edges changed) and draw the window around the selection."""
        if self.graph is None or self.graph.layout.signature != signature_of(self._parents):
            self.graph = GraphView(layout_of(self._parents))
        self.graph.select(self.selected_key(), self._critical)
        width, height = self.graph.grid.size
        self.virtual_size = Size(width, height)
        self.border_subtitle = None if self.graph.every_edge else "edges of the selected task"
        self._scroll_to_row(self.cursor_row)
        self.refresh()

    def action_cursor(self, step_by: int) -> None:
        if self.graph_mode:
            self.action_graph_step("down" if step_by > 0 else "up")
        else:
            super().action_cursor(step_by)

    def action_graph_step(self, direction: str) -> None:
        """Move along an edge (down: a dependent, up: a dependency) or within the layer; in the
        table, left and right scroll as they did."""
        if not self.graph_mode:
            self.scroll_left() if direction == "left" else self.scroll_right()
            return
        current = self.selected_key()
        if self.graph is None or current is None:
            return
        target = step(self.graph.layout, current, direction, self._came_from)
        self._came_from = current if direction in ("up", "down") else None
        self.move_cursor(row=self._index[target])

    def _sync_size(self, full_refresh: bool) -> None:
        if not self.graph_mode:  # the graph's size is its layout's; the table's is set again on `v`
            super()._sync_size(full_refresh)

    def upsert(self, key: str, cells: Sequence[Cell], columns: list[str] | None = None) -> None:
        super().upsert(key, cells, columns)
        if self.graph_mode:
            self._refresh_node(key)

    def _refresh_row(self, row: int) -> None:
        if not self.graph_mode:
            super()._refresh_row(row)
        elif row < len(self._order):
            self._refresh_node(self._order[row])

    def _refresh_node(self, task_id: str) -> None:
        """Repaint one node's cells, if on screen (a status change touches nothing else)."""
        if self.graph is not None and task_id in self.graph.layout.place:
            region = self.graph.node_region(task_id).translate(-self.scroll_offset)
            visible = region.intersection(self.scrollable_content_region.reset_offset)
            if visible:
                self.refresh(visible)

    def _scroll_to_row(self, row: int) -> None:
        if not self.graph_mode or self.graph is None:
            super()._scroll_to_row(row)
        elif row < len(self._order):
            region = self.graph.node_region(self._order[row])
            self.scroll_to_region(region.grow((1, 2, 1, 2)), animate=False, immediate=True, force=True)

    def render_line(self, y: int) -> Strip:
        if not self.graph_mode or self.graph is None:
            return super().render_line(y)
        width = self.scrollable_content_region.width
        x0, y0 = self.scroll_offset
        styles = [self.get_component_rich_style(name) for name in ("tasks--edge", "tasks--edge", "tasks--edge-selected")]
        styles[1] = Style(color=colour(self.app, "critical-path") or None)
        text = self.graph.line(y0 + y, x0, width, self._node_line, styles)
        return Strip(list(text.render(self.app.console)), width).apply_style(self.rich_style)

    def _node_line(self, task_id: str, line: int) -> Text:
        """One of a node's two lines: its mark and id, then its status, owner and attempt."""
        assert self.graph is not None
        task = self._state.tasks.get(task_id) if self._state is not None else None
        if line == 0:
            critical = task_id in self._critical
            mark = "★" if critical else self._related.get(task_id, " ")[0]
            text = Text(f"{mark} ", style=colour(self.app, "critical-path") if critical else "")
            text.append(task_id, style="bold")
        elif task is None:
            text = Text("")
        else:
            text = task_badge(self.app, task.status)
            owners = "+".join(task.agents) if task.coordination == "collaborative" and task.agents else task.agent
            text.append(f" {owners}" if owners else "")
            text.append(f" #{task.attempt}" if task.attempt else "", style="dim")
        text.truncate(self.graph.grid.node_width, overflow="ellipsis", pad=True)
        if task_id == self.selected_key():
            text.stylize(self.get_component_rich_style("pane-table--cursor"))
        elif task_id in self._related:
            text.stylize(Style(bgcolor=colour(self.app, "related-row") or None))
        return text

    def on_click(self, event: events.Click) -> None:
        if not self.graph_mode or self.graph is None:
            super().on_click(event)
            return
        task_id = self.graph.grid.node_at(event.x + self.scroll_offset.x, event.y + self.scroll_offset.y)
        if task_id is not None:
            self.move_cursor(row=self._index[task_id])
