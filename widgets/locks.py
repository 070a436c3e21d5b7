"""The Locks pane: every live grant with its fencing token, lease left and queue of waiters."""

from __future__ import annotations

from datetime import datetime

from textual.binding import Binding

from engine.models import ProjectState, ResourceLock
from widgets.changes import Changes
from widgets.pane_table import PaneTable
from widgets.status import lock_badge

COLUMNS = [("path", "Path"), ("mode", "Mode"), ("holder", "Holder"), ("token", "Token"),
           ("ttl", "TTL left"), ("waiters", "Waiters (queue order)"), ("task", "For task")]


class LocksPane(PaneTable):
    BORDER_TITLE = "Locks"
    COLUMNS = COLUMNS
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
        waiters = ", ".join(f"{w.agent_id}:{w.lock_type}" for w in lock.waiters) or "—"
        return [lock.resource_id, lock_badge(self.app, lock.lock_type), lock.agent_id, str(lock.token),
                f"{max(0.0, left):.0f}s", waiters, lock.task_id or "—"]
