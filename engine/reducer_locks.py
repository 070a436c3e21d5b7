"""The reducer's lock handlers: who holds which lock, who waits in which order.

`ProjectState.locks` is the record the views show (the Locks pane, `--json`); the lock desk's
lock manager is what decides.  Both follow the same journaled events, so they agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from engine.events import Event, LockGranted, LockQueued, LockRefused, LockReleased, LockRenewed, WaiterRemoved
from engine.models import LockWaiter, ProjectState, ResourceLock
from engine.reducer_attempts import credit_release
from engine.resources import overlaps

Handler = Callable[[ProjectState, Any, Event], None]


def _refresh_waiters(state: ProjectState, paths: Iterable[str]) -> None:
    """Each lock lists, in queue order, the requests waiting on a path it overlaps.

    Only locks overlapping a path whose queue changed are rebuilt; with no such path (the usual
    uncontended grant) no lock is looked at.
    """
    touched = set(paths)
    if not touched:
        return
    for lock in state.locks.values():
        if any(overlaps(lock.resource_id, path) for path in touched):
            lock.waiters = _waiters_on(state, lock.resource_id)


def _waiters_on(state: ProjectState, resource_id: str) -> list[LockWaiter]:
    """Copies, in queue order, of the waiters on paths overlapping `resource_id` (one per lock)."""
    return [w.model_copy() for path, w in state.meta.waiters if overlaps(resource_id, path)]


def _remove_waiters(state: ProjectState, request_id: str | None) -> list[str]:
    if request_id is None:
        return []
    gone = [path for path, w in state.meta.waiters if w.request_id == request_id]
    if gone:
        state.meta.waiters = [(p, w) for p, w in state.meta.waiters if w.request_id != request_id]
    return gone


def end_locks_of_dead_agent(state: ProjectState, released: list[str], cancelled: list[str]) -> None:
    """The lock side of an `agent_dead` event: its locks go and its waits end."""
    for lock_id in released:
        lock = state.locks.pop(lock_id, None)
        if lock is not None:
            credit_release(state, lock)
    touched: list[str] = []
    for request_id in cancelled:
        touched += _remove_waiters(state, request_id)
    _refresh_waiters(state, touched)


def _lock_granted(state: ProjectState, body: LockGranted, event: Event) -> None:
    lock = ResourceLock(
        resource_id=body.resource_id,
        lock_type=body.lock_type,  # type: ignore[arg-type]
        agent_id=body.agent_id,
        timestamp=event.time,
        ttl=body.ttl,
        lock_id=body.lock_id,
        token=body.token,
        expires_at=datetime.fromisoformat(body.expires_at),
        task_id=body.task_id,
    )
    state.locks[lock.lock_id] = lock
    # The granted request leaves the queue (locks that listed it are rebuilt); the new lock lists
    # whoever still waits on its path.  No other lock's list changes.
    _refresh_waiters(state, _remove_waiters(state, body.request_id))
    if state.meta.waiters:
        lock.waiters = _waiters_on(state, lock.resource_id)


def _lock_queued(state: ProjectState, body: LockQueued, event: Event) -> None:
    since = event.time
    for item in body.resources:
        waiter = LockWaiter(
            request_id=body.request_id,
            agent_id=body.agent_id,
            lock_type=item["lockType"],  # type: ignore[arg-type]
            since=since,
            task_id=body.task_id,
        )
        state.meta.waiters.append((item["resourceId"], waiter))
    contention = state.meta.contention
    for item in body.resources:
        path = item["resourceId"]
        contention[path] = contention.get(path, 0) + 1
    _refresh_waiters(state, [item["resourceId"] for item in body.resources])


def _waiter_removed(state: ProjectState, body: WaiterRemoved, event: Event) -> None:
    _refresh_waiters(state, _remove_waiters(state, body.request_id))


def _lock_refused(state: ProjectState, body: LockRefused, event: Event) -> None:
    contention = state.meta.contention
    contention[body.resource_id] = contention.get(body.resource_id, 0) + 1


def _lock_released(state: ProjectState, body: LockReleased, event: Event) -> None:
    lock = state.locks.pop(body.lock_id, None)
    if lock is None:
        raise ValueError(f"event {event.seq}: release of unknown lock {body.lock_id}")
    credit_release(state, lock)


def _lock_renewed(state: ProjectState, body: LockRenewed, event: Event) -> None:
    for lock_id, expires_at in body.expires_at.items():
        if lock_id in state.locks:
            state.locks[lock_id].expires_at = datetime.fromisoformat(expires_at)


HANDLERS: dict[type, Handler] = {
    LockGranted: _lock_granted,
    LockQueued: _lock_queued,
    WaiterRemoved: _waiter_removed,
    LockRefused: _lock_refused,
    LockReleased: _lock_released,
    LockRenewed: _lock_renewed,
}
