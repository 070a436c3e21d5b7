"""The Locks pane: every live grant with its holder and task, lease left, queue of waiters (each with
the task it waits for: the operator deciding whether to force-release asks what work is held up)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from textual.binding import Binding

from widgets.changes import Changes
from widgets.pane_table import PaneTable
from widgets.status import lock_badge

if TYPE_CHECKING:  # types only: the dashboard's first frame is drawn before pydantic is imported
    from engine.models import LockWaiter, ProjectState, ResourceLock

COLUMNS = [("path", "Path"), ("holder", "Holder"), ("task", "For task"), ("waiters", "Waiters (queue order)"),
           ("mode", "Mode"), ("ttl", "TTL left"), ("token", "Token")]


class LocksPane(PaneTable):
    BORDER_TITLE = "Locks"
    COLUMNS = COLUMNS
    DROP_ORDER = ["token", "ttl", "mode"]
    BINDINGS = [Binding("u", "app.force_release", "Force-release", id="locks.force_release")]


    def refresh_state(self, state: ProjectState, changes: Changes, now: datetime) -> None:
        """Locks are few and their TTLs tick, so the rows are reconciled every batch."""
        keys = [key for key, _ in COLUMNS]
        live = set(state.locks)
        for key in [key for key in self.rows if key not in live]:
            self.remove_row(key)
        for lock in sorted(state.locks.values(), key=lambda lock: (lock.resource_id, lock.token)):
            self.upsert(lock.lock_id, self._cells(lock, now), keys)

    def _cells(self, lock: ResourceLock, now: datetime) -> list:
        left = (lock.expires_at - now).total_seconds()
        waiters = ", ".join(waiter_text(w) for w in lock.waiters) or "—"
        return [lock.resource_id, lock.agent_id, lock.task_id or "—", waiters, lock_badge(self.app, lock.lock_type),
                f"{max(0.0, left):.0f}s", str(lock.token)]


def waiter_text(waiter: LockWaiter) -> str:
    """`migrate (migrator, write)`: the task held up first, then who asked and for what mode."""
    asked = f"{waiter.agent_id}, {waiter.lock_type}"
    return f"{waiter.task_id} ({asked})" if waiter.task_id else f"{waiter.agent_id}:{waiter.lock_type}"
