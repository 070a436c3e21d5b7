"""One task's story in words: where it stands and why, its attempts, its locks, its neighbours.

The task view (Enter on a task) shows these lines and rows; they are computed here, from the
state alone (plus the message store for its messages), so the view stays a layout and the words
are testable without a screen.  Pure engine: no textual.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.message_filter import Filter, FilteredView
from engine.message_store import MessageStore
from engine.models import AttemptRecord, ProjectState, ResourceLock, TaskState
from engine.resources import overlaps

OUTCOME_WORDS = {"running": "running", "completed": "completed", "failed": "failed", "requeued": "taken back",
                 "agent_died": "agent died", "cancelled": "cancelled"}


@dataclass(frozen=True, slots=True)
class LockRow:
    path: str
    mode: str
    state: str  # "held" or "waiting"
    other: str  # held: lock id and token; waiting: who holds it (agent, task)


def clock(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S") if moment is not None else "—"


def seconds(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "—"
    total = max(0.0, (end - start).total_seconds())
    return f"{total:.1f}s" if total < 60 else f"{int(total // 60)}m{int(total % 60):02d}s"


def holders_of(state: ProjectState, path: str, task_id: str) -> list[ResourceLock]:
    """The locks (other than the task's own) on `path` or a path overlapping it."""
    return [lock for lock in state.locks.values()
            if lock.task_id != task_id and overlaps(lock.resource_id, path)]


def holder_words(lock: ResourceLock) -> str:
    return f"{lock.agent_id}" + (f"'s task {lock.task_id}" if lock.task_id else "") + f" ({lock.lock_type} lock)"


def why(task: TaskState, state: ProjectState) -> str:
    """Why the task is where it is, in one line: what it waits for, or how it last ended."""
    status = task.status
    if status == "blocked":
        waits = [f"lock {path} held by {', '.join(holder_words(h) for h in holders)}"
                 if (holders := holders_of(state, path, task.id)) else f"lock {path} (queued)"
                 for path in task.blocked_on]
        return "waiting for " + "; ".join(waits) if waits else "waiting for its locks"
    if status == "pending":
        deps = task.dependencies
        done = [d for d in deps if d in state.tasks and state.tasks[d].status == "completed"]
        missing = [d for d in deps if d not in done]
        if not missing:
            return "dependencies done: ready soon"
        return f"deps: {len(done)} of {len(deps)} done — waiting for {', '.join(missing)}"
    last = task.attempts[-1] if task.attempts else None
    if status in ("failed", "retrying", "cancelled"):
        error = task.error or (last.error if last else None) or "no reason given"
        code = f" (exit {last.exit_code})" if last is not None and last.exit_code is not None else ""
        head = f"#{task.attempt} failed" if status != "cancelled" else "cancelled"
        tail = " — will retry" if status == "retrying" else ""
        return f"{head}: {error}{code}{tail}"
    if status in ("assigned", "running"):
        who = ", ".join(task.owners) or "?"
        return f"attempt #{task.attempt} on {who}" + (f", {task.progress:.0%} done" if task.progress else "")
    if status == "completed":
        return f"completed by {', '.join(task.owners) or '?'} at {clock(task.completed_at)}"
    if status == "ready" and last is not None and last.outcome in ("requeued", "agent_died"):
        because = f" ({last.error})" if last.error else ""
        return f"ready again: attempt #{last.number} {OUTCOME_WORDS[last.outcome]}{because}"
    if status == "ready":
        return "ready: waiting for a free capable agent" + (f" ({', '.join(task.requires)})" if task.requires else "")
    return status


def attempt_row(attempt: AttemptRecord, now: datetime, task: TaskState) -> tuple[str, ...]:
    """#, agent, start, duration, outcome, error, exit code, locks it let go of (the live
    attempt's outcome is the task's status: assigned, blocked on its locks, or running)."""
    start = attempt.started_at or attempt.assigned_at
    end = attempt.ended_at or (now if attempt.outcome == "running" else None)
    live = attempt.outcome == "running" and task.in_flight
    outcome = task.status if live else OUTCOME_WORDS.get(attempt.outcome, attempt.outcome)
    return (f"#{attempt.number}", ", ".join(attempt.agents) or "—", clock(start), seconds(start, end), outcome,
            attempt.error or "", "" if attempt.exit_code is None else str(attempt.exit_code),
            ", ".join(attempt.released_locks))


def lock_rows(task: TaskState, state: ProjectState) -> list[LockRow]:
    """The locks the task holds, then those it waits for (each waiting path with its holders)."""
    rows = [LockRow(lock.resource_id, lock.lock_type, "held", f"{lock.lock_id} token {lock.token}")
            for lock in state.locks.values() if lock.task_id == task.id]
    waiting: dict[str, str] = {path: waiter.lock_type for path, waiter in state.meta.waiters
                               if waiter.task_id == task.id}
    for path in task.blocked_on:
        waiting.setdefault(path, next((r.mode for r in task.resources if r.path == path), "write"))
    for path, mode in waiting.items():
        holders = holders_of(state, path, task.id)
        rows.append(LockRow(path, mode, "waiting", ", ".join(holder_words(h) for h in holders) or "queued"))
    return rows


def needed_by(task_id: str, state: ProjectState) -> list[str]:
    return [other.id for other in state.tasks.values() if task_id in other.dependencies]


def neighbour_words(ids: list[str], state: ProjectState) -> str:
    return ", ".join(f"{i} ({state.tasks[i].status if i in state.tasks else '?'})" for i in ids) or "—"


def task_messages_view(store: MessageStore, task_id: str) -> FilteredView:
    """The messages whose JSON names `task_id` as its taskId; kept by the view and `update()`d, so
    each redraw scans only the messages that arrived since the last one."""
    return FilteredView(store, Filter(text=f'"taskId":"{task_id}"'))


def latest_task_messages(view: FilteredView, task_id: str, upto: int, last: int) -> tuple[list[int], int]:
    """The store indices of the `last` messages about `task_id` journaled by event `upto`, oldest
    first, and how many there are in all.  Only the shown ones are decoded (to check the taskId is
    the payload's own)."""
    store = view.store
    view.update()
    shown = rows_upto(view, upto)
    found: list[int] = []
    row = shown - 1
    while row >= 0 and len(found) < last:
        index = view[row]
        if store.payload(index).get("taskId") == task_id:
            found.append(index)
        row -= 1
    return found[::-1], shown


def rows_upto(view: FilteredView, upto: int) -> int:
    """How many of the view's rows were journaled by event `upto` (a replay's store holds the
    whole recording, its cursor somewhere in it): rows are in journal order, so a binary search."""
    store = view.store
    low, high = 0, len(view)
    while low < high:
        middle = (low + high) // 2
        if store.seq(view[middle]) <= upto:
            low = middle + 1
        else:
            high = middle
    return low
