"""Crash recovery: a new manager continues a sprint from the journal of one that died (DESIGN §8).

The journal is the truth, so the restarted manager's state is the fold of its records; what the
reducer does not keep (the lock manager's grants, the scheduler's dependency counts and ready
queue, the manager's task/lock bookkeeping) is rebuilt from that state.  Then the restart itself is
recorded, so a replay tells the story too:

* `sprint_recovered` opens a new epoch and renews every recovered lease by a full TTL from now
  (the TTL is a lower bound: nobody loses a lock because the manager was down);
* lock queues died with the old process: every recorded waiter is removed (`waiter_removed`);
* attempts that local (simulated or shell) agents were running died with them, and a blocked
  attempt has done nothing yet: each is ended (`lock_released` of its locks, `task_requeued` with
  reason `manager_restart`) and runs again as a new attempt, whose number fences any late
  completion of the old one.  Completed tasks stay completed: their effect happens once.
* external agents live in their own processes: their locks and running attempts are kept.
* the workspace is rescanned before any lock is released: what changed while the manager was down
  is judged against the locks of that moment (a deleted file is recorded as deleted), and the
  content of every path still locked is kept again as the base for revert and merge.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine.events import Event, EventType
from engine.journal import JournalWriter
from engine.locks import Grant
from engine.manager import SprintManager
from engine.models import TERMINAL_TASK_STATUSES, ProjectState, TaskState
from engine.plan import Plan
from engine.protocol import MANAGER_ID
from engine.reducer import fold

LOCAL_AGENT_KINDS = frozenset({"simulated", "shell"})
IN_FLIGHT = frozenset({"assigned", "running", "blocked"})
RESTART_REASON = "manager_restart"


class ResumeError(ValueError):
    """The journal cannot be continued with this plan (the message says why); nothing was written."""


def check_resumable(plan: Plan, header: dict[str, Any], records: Sequence[dict[str, Any]]) -> None:
    """Refuse a journal of another plan, or one that never started, before anything is appended."""
    recorded = header.get("planDigest")
    if recorded != plan.digest:
        raise ResumeError(
            f"the journal was recorded for plan digest {recorded!r}, but {plan.sprint!r} has digest "
            f"{plan.digest!r}: resume with the plan the crashed run used"
        )
    if records and records[0]["type"] != EventType.SPRINT_STARTED:
        raise ResumeError(f"the journal's first event is {records[0]['type']!r}, not sprint_started")


def resume_manager(
    plan: Plan,
    records: Sequence[dict[str, Any]],
    **manager_args: Any,
) -> SprintManager:
    """A manager whose state, locks and scheduler continue the journaled sprint.

    `manager_args` are SprintManager's keyword arguments; `journal` should be the writer from
    `JournalWriter.resume` on the same file, so the new events follow the old ones.
    `execute_sprint()` then continues the sprint without a second `sprint_started` (the lease
    timers of the recovered locks are armed when it starts).
    """
    journal: JournalWriter | None = manager_args.get("journal")
    if journal is not None and journal.last_seq != (records[-1]["seq"] if records else 0):
        raise ResumeError(f"the journal writer is at seq {journal.last_seq}, the records end elsewhere")
    manager = SprintManager(plan, **manager_args)
    if not records:  # killed before the sprint started: it starts now, on the same journal
        return manager
    manager.state = fold(Event.from_record(record) for record in records)
    previous_version = manager.state.version
    _restore_locks(manager, _next_token(records))
    manager.emit(
        EventType.SPRINT_RECOVERED,
        epoch=manager.state.meta.journal_epoch + 1,
        previousVersion=previous_version,
        leases={grant.lock_id: manager._wall_at(grant.expires_at) for grant in manager.locks.grants()},
    )
    manager.files.recover()  # judged against the restored locks, before any is released
    _drop_waiters(manager)
    for task in _attempts_to_restart(manager.state):
        _restart_attempt(manager, task)
    _release_orphaned_locks(manager)
    _rebuild_bookkeeping(manager)
    _rebuild_scheduler(manager)
    return manager


# ---------------------------------------------------------------- locks


def _next_token(records: Sequence[dict[str, Any]]) -> int:
    """Above every token ever granted (released ones too): a token is never reused."""
    tokens = [r["data"]["token"] for r in records if r["type"] == EventType.LOCK_GRANTED]
    return max(tokens, default=0) + 1


def _restore_locks(manager: SprintManager, next_token: int) -> None:
    """Every lock held at the crash, leased again for a full TTL from now (LockManager.restore)."""
    now = manager.clock()
    grants = [
        Grant(
            lock_id=lock.lock_id,
            token=lock.token,
            owner=lock.agent_id,
            resource_id=lock.resource_id,
            mode=lock.lock_type,
            ttl=lock.ttl / 1000,
            granted_at=now,
            expires_at=now,
            task_id=lock.task_id,
        )
        for lock in manager.state.locks.values()
    ]
    manager.locks.restore(grants, next_token)


def _release(manager: SprintManager, grant: Grant) -> None:
    manager.locks.release(grant.owner, grant.lock_id)  # no lock-delay: the holder is gone, not late
    manager.emit(EventType.LOCK_RELEASED, lockId=grant.lock_id, reason=RESTART_REASON, by=MANAGER_ID)


def _drop_waiters(manager: SprintManager) -> None:
    """Queues are not restored: a waiting task is restarted below, an agent asks again."""
    request_ids = dict.fromkeys(waiter.request_id for _, waiter in manager.state.meta.waiters)
    for request_id in request_ids:
        manager.emit(EventType.WAITER_REMOVED, requestId=request_id, reason=RESTART_REASON)


def _release_orphaned_locks(manager: SprintManager) -> None:
    """Locks of local agents that no kept attempt uses: their holder died with the old manager."""
    kept = {task.id for task in manager.state.tasks.values() if task.status in IN_FLIGHT}
    for grant in manager.locks.grants():
        if _is_local(manager.state, grant.owner) and grant.task_id not in kept:
            _release(manager, grant)


# ---------------------------------------------------------------- tasks


def _is_local(state: ProjectState, agent_id: str | None) -> bool:
    agent = state.agents.get(agent_id) if agent_id else None
    return agent is not None and agent.kind in LOCAL_AGENT_KINDS


def _attempt_agents(task: TaskState) -> list[str]:
    return list(task.agents) if task.coordination == "collaborative" else [a for a in [task.agent] if a]


def _attempts_to_restart(state: ProjectState) -> list[TaskState]:
    """Blocked attempts (nothing done yet) and those a local agent was running."""
    return [
        task
        for task in state.tasks.values()
        if task.status == "blocked"
        or (task.status in IN_FLIGHT and any(_is_local(state, a) for a in _attempt_agents(task)))
    ]


def _restart_attempt(manager: SprintManager, task: TaskState) -> None:
    """End the dead attempt on the record; the scheduler places it again as attempt + 1."""
    owners = set(_attempt_agents(task))
    for grant in manager.locks.grants():
        if grant.task_id == task.id and grant.owner in owners:
            _release(manager, grant)
    manager.emit(EventType.TASK_REQUEUED, taskId=task.id, attempt=task.attempt, reason=RESTART_REASON)


def _rebuild_bookkeeping(manager: SprintManager) -> None:
    """The manager's own maps for the attempts and locks that survive the restart."""
    live = {task.id for task in manager.state.tasks.values() if task.status in IN_FLIGHT}
    for grant in manager.locks.grants():
        if grant.task_id in live:
            manager._task_grants.setdefault(grant.task_id, []).append(grant.lock_id)
        else:
            manager._explicit_locks.add(grant.lock_id)
    for task_id in live:
        manager._task_grants.setdefault(task_id, [])
    manager._open_tasks = {
        task.id for task in manager.state.tasks.values() if task.status not in TERMINAL_TASK_STATUSES
    }
    if manager.state.meta.finished_at is not None and not manager._open_tasks:
        manager._finished.set()  # it ended before the crash: do not record the end twice


def _rebuild_scheduler(manager: SprintManager) -> None:
    """Dependency counts from completed tasks; ready work queued again, due retries made ready.

    A crash can fall between a completion and the events it causes (readying its dependents,
    cancelling after a final failure), so those consequences are re-derived, never assumed.
    """
    state = manager.state
    for task in state.tasks.values():
        if task.status == "completed":
            manager.scheduler.dependency_done(task.id)
    for task in list(state.tasks.values()):
        if task.status in ("failed", "cancelled"):  # idempotent: finished dependents are skipped
            verb = "failed" if task.status == "failed" else "was cancelled"
            manager._cancel_dependents(task.id, f"dependency {task.id} {verb}")
    for task in state.tasks.values():
        if task.status == "ready":
            manager.scheduler.push(task)
        elif task.status == "retrying" or (
            task.status == "pending" and all(state.tasks[d].status == "completed" for d in task.dependencies)
        ):
            manager._make_ready(task.id)
