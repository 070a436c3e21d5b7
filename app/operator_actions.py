"""The operator's actions: reassign, retry, cancel, priority, pause, force-release, resolve a file.

Operations never touch state: each reads the selection in a pane and calls one of the manager's
`op_*` methods, which record an operator action and go through the engine's own paths; a refusal
comes back as an OperatorError whose reason the App shows in a notification.  A recording (replay,
snapshots) has no manager: every operation says so and does nothing.

The panes' keys name these as `app.<action>`, so they are methods of the App: `SprintDeckApp`
(app/dashboard.py) derives from this class and provides the source, the panes and their redraw.

The engine's classes (the manager's errors, the watched source) and the operations' screens are
imported by the operation that uses them: the dashboard draws its first frame before the engine
is imported (`app.source.StartingSource`), and no operation runs before that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from textual.app import App

from app.screens.confirm import ConfirmScreen
from app.source import LiveSource, StateSource
from widgets.agents import AgentsPane
from widgets.changes import Changes
from widgets.files import FilesPane
from widgets.locks import LocksPane
from widgets.tasks import TasksPane

if TYPE_CHECKING:
    from app.watch_source import RemoteOperator
    from engine.manager import SprintManager
    from engine.merge import MergeResult

PRIORITIES = ["low", "medium", "high", "critical"]  # lowest first: `+` moves one step right


class OperatorActions(App[int]):
    """The actions bound to the panes' keys, the palette and the `:` commands that operate."""

    # Provided by the dashboard (SprintDeckApp).
    source: StateSource
    tasks: TasksPane
    agents: AgentsPane
    locks: LocksPane
    files: FilesPane

    def refresh_panes(self, changes: Changes) -> None:
        """Redraw what `changes` touched: an operation's effect shows at once, not at the next batch."""
        raise NotImplementedError

    # ------------------------------------------------------------ selection helpers

    def _manager(self) -> SprintManager | RemoteOperator | None:
        """The running engine's manager, or a watched one's (app/watch_source.py); a recording has
        none, and neither has a read-only watcher: the operator is told so."""
        from app.watch_source import WatchedSource

        if isinstance(self.source, WatchedSource):
            if self.source.operator is None:
                self.notify(self.source.read_only, severity="warning")
                return None
            self.source.operator.tell = self._told
            return self.source.operator
        if not isinstance(self.source, LiveSource):
            self.notify("This is a recorded sprint: operations are disabled.", severity="warning")
            return None
        return self.source.manager

    def _told(self, text: str, done: bool) -> None:
        """A watched manager's answer to an operator request: done, or refused saying why."""
        self.notify(text) if done else self.notify(text, title="not possible", severity="warning")

    def _selected_task(self) -> str | None:
        task_id = self.tasks.selected_key()
        if task_id is None:
            self.notify("No task is selected.", severity="warning")
        return task_id

    def _operate(self, operation: Callable[[], Any], done: str | None = None) -> bool:
        """Run one operator action; a refusal is explained and nothing changes."""
        from app.watch_source import WatchedSource
        from engine.operators import OperatorError

        try:
            operation()
        except OperatorError as exc:
            self.notify(str(exc), title="not possible", severity="warning")
            return False
        if done and not isinstance(self.source, WatchedSource):  # a watched manager answers later (`_told`)
            self.notify(done)
        self.refresh_panes(Changes(everything=False, locks=True, tasks=set(self.source.state.tasks)))
        return True

    # ------------------------------------------------------------ operations

    def action_reassign(self, task_id: str | None = None) -> None:
        from app.screens.reassign import Candidate, ReassignScreen
        from engine.operators import OperatorError

        manager = self._manager()
        task_id = task_id or self._selected_task()
        if manager is None or task_id is None:
            return
        try:
            targets = manager.check_reassign(task_id)
        except OperatorError as exc:
            self.notify(str(exc), title="not possible", severity="warning")
            return
        state = manager.state
        candidates = [
            Candidate(t.agent_id, state.agents[t.agent_id].status, len(state.agents[t.agent_id].current_tasks),
                      state.agents[t.agent_id].max_concurrent_tasks, tuple(state.agents[t.agent_id].capabilities),
                      t.refusal)
            for t in targets if t.agent_id in state.agents
        ]
        task = state.tasks[task_id]
        current = task.agent if task.in_flight else None

        def chosen(agent_id: str | None) -> None:
            if agent_id:
                self.reassign(task_id, agent_id)

        self.push_screen(ReassignScreen(task_id, current, candidates), chosen)

    def reassign(self, task_id: str, agent_id: str) -> bool:
        manager = self._manager()
        return manager is not None and self._operate(
            lambda: manager.op_reassign(task_id, agent_id), f"{task_id} reassigned to {agent_id}"
        )

    def action_retry(self, task_id: str | None = None) -> None:
        manager = self._manager()
        task_id = task_id or self._selected_task()
        if manager is not None and task_id is not None:
            self._operate(lambda: manager.op_retry(task_id), f"{task_id} will run again")

    def action_cancel_task(self, task_id: str | None = None) -> None:
        manager = self._manager()
        task_id = task_id or self._selected_task()
        if manager is None or task_id is None:
            return
        status = manager.state.tasks[task_id].status
        if status in ("completed", "failed", "cancelled"):
            self.notify(f"task {task_id} is already {status}", title="not possible", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._operate(lambda: manager.op_cancel(task_id), f"{task_id} cancelled")

        self.push_screen(ConfirmScreen(f"Cancel task {task_id} (and the tasks that depend on it)?"), answered)

    def action_priority(self, delta: int, task_id: str | None = None) -> None:
        manager = self._manager()
        task_id = task_id or self._selected_task()
        if manager is None or task_id is None:
            return
        current = manager.state.tasks[task_id].priority
        index = PRIORITIES.index(current) + delta
        if not 0 <= index < len(PRIORITIES):
            self.notify(f"task {task_id} is already {current}", title="not possible", severity="warning")
            return
        self._operate(lambda: manager.op_set_priority(task_id, PRIORITIES[index]), f"{task_id}: {PRIORITIES[index]}")

    def action_pause(self) -> None:
        """In the Agents pane: the selected agent. Anywhere else: the whole sprint."""
        manager = self._manager()
        if manager is None:
            return
        if isinstance(self.focused, AgentsPane):
            self._toggle_selected_agent()
            return
        paused = not manager.state.meta.paused
        self._operate(lambda: manager.op_pause_sprint(paused), f"sprint {'paused' if paused else 'resumed'}")

    def _toggle_selected_agent(self) -> None:
        manager = self._manager()
        agent_id = self.agents.selected_key()
        if manager is None or agent_id is None:
            return
        paused = manager.state.agents[agent_id].status != "paused"
        self._operate(lambda: manager.op_pause_agent(agent_id, paused), f"{agent_id} {'paused' if paused else 'resumed'}")

    def action_force_release(self, lock_id: str | None = None) -> None:
        manager = self._manager()
        if manager is None:
            return
        lock_id = lock_id or self.locks.selected_key()
        if lock_id is None or lock_id not in manager.state.locks:
            self.notify("No lock is selected: nothing to release.", title="not possible", severity="warning")
            return
        lock = manager.state.locks[lock_id]
        warning = manager.force_release_consequences(lock_id)

        def answered(yes: bool | None) -> None:
            if yes:
                self._operate(lambda: manager.op_force_release(lock_id), f"released {lock.resource_id}")

        self.push_screen(
            ConfirmScreen(f"Force-release the {lock.lock_type} lock on {lock.resource_id} held by {lock.agent_id}?\n\n"
                          f"{warning}", enter_confirms=True),
            answered,
        )

    def action_resolve_file(self, how: str, path: str | None = None) -> None:
        """Resolve the selected file's conflict; the engine refuses (and says why) when it can't."""
        from app.watch_source import WatchedSource

        manager = self._manager()
        path = path or self.files.selected_key()
        if manager is None:
            return
        if path is None:
            self.notify("No file is selected.", title="not possible", severity="warning")
            return
        outcome: list[MergeResult | None] = []
        if not self._operate(lambda: outcome.append(manager.op_resolve_file(path, how))):
            return
        merge = outcome[0] if outcome else None
        if how == "merge" and merge is not None and not merge.clean:
            self.notify(f"{path}: the merge left conflict markers; it stays a conflict", severity="warning")
        elif not isinstance(self.source, WatchedSource):  # a watched manager answers later (`_told`)
            self.notify(f"{path}: {how} done")

    def action_escalate_file(self, path: str | None = None) -> None:
        """Record the escalation, then show the diff and let the operator choose."""
        from app.screens.conflict import ConflictScreen

        manager = self._manager()
        path = path or self.files.selected_key()
        if manager is None or path is None:
            return
        if not self._operate(lambda: manager.op_escalate_file(path)):
            return
        file = manager.state.files.get(path)
        reason = file.conflict.detail if file is not None and file.conflict is not None else ""

        def chosen(how: str | None) -> None:
            if how:
                self.action_resolve_file(how, path)

        self.push_screen(ConflictScreen(path, reason, manager.conflict_diff(path)), chosen)

    # ------------------------------------------------------------ `:` commands that operate

    def _command_priority(self, task_id: str, level: str) -> None:
        manager = self._manager()
        if manager is None:
            return
        if level not in PRIORITIES:
            self.notify(f"priority must be one of {', '.join(PRIORITIES)}", severity="warning")
            return
        self._operate(lambda: manager.op_set_priority(task_id, level), f"{task_id}: {level}")

    def _command_pause(self, args: tuple[str, ...], paused: bool) -> None:
        manager = self._manager()
        if manager is None:
            return
        if args:
            self._operate(lambda: manager.op_pause_agent(args[0], paused), f"{args[0]} {'paused' if paused else 'resumed'}")
        else:
            self._operate(lambda: manager.op_pause_sprint(paused), f"sprint {'paused' if paused else 'resumed'}")

