"""Crash recovery: a new manager continues a sprint from the journal of one that died (DESIGN §8).

The journal is the truth, so the restarted manager's state is the fold of its records, and its
locks are what the journal's lock events leave held (the lock desk folds them itself).  What the
journal does not keep (the scheduler's dependency counts and ready queue) is rebuilt from that
state.  Then the restart itself is recorded, so a replay tells the story too:

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

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.events import Event, EventType, SprintRecovered, TaskRequeued, WaiterRemoved
from engine.journal import JournalWriter
from engine.manager import SprintManager
from engine.models import ProjectState, TaskState
from engine.plan import Plan
from engine.protocol import MANAGER_ID
from engine.transports.base import Transport

LOCAL_AGENT_KINDS = frozenset({"simulated", "shell"})
RESTART_REASON = "manager_restart"


class ResumeError(ValueError):
    """The journal cannot be continued with this plan (the message says why); nothing was written."""


def finished_seq(path: Path, tail_bytes: int = 1 << 20) -> int | None:
    """The seq of the journal's `sprint_finished` record, or None when the sprint never finished.

    Read-only, from the file's last MiB (the final record closes a journal), line by line: a
    crashed run's torn last line is skipped, not an error, since that journal is the one to resume.
    """
    with path.open("rb") as file:
        file.seek(max(0, file.seek(0, 2) - tail_bytes))
        for line in file.read().splitlines():
            if b'"type":"sprint_finished"' in line:
                try:
                    return int(json.loads(line)["seq"])
                except (ValueError, KeyError, TypeError):
                    continue
    return None


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


def resume_manager(plan: Plan, records: Sequence[dict[str, Any]], *, fork: bool = False,
                   **manager_args: Any) -> SprintManager:
    """A manager whose state, locks and scheduler continue the journaled sprint.

    `manager_args` are SprintManager's keyword arguments; `journal` should be the writer from
    `JournalWriter.resume` on the same file, so the new events follow the old ones.
    `execute_sprint()` then continues the sprint without a second `sprint_started` (the lease
    timers of the recovered locks are armed when it starts).

    `fork`: the records are a parent journal's first ones (engine/fork.py).  The workspace is then
    the fork's copy, whose files are taken as they are rather than judged, and every attempt
    running at the fork point restarts, external agents' too: they work for the parent, not the fork.
    """
    journal: JournalWriter | None = manager_args.get("journal")
    if journal is not None and journal.last_seq != (records[-1]["seq"] if records else 0):
        raise ResumeError(f"the journal writer is at seq {journal.last_seq}, the records end elsewhere")
    manager = SprintManager(plan, **manager_args)
    if not records:  # killed before the sprint started: it starts now, on the same journal
        return manager
    events = [Event.from_record(record) for record in records]
    manager.recorder.replay(events)
    state = manager.state
    manager.locks.restore(events)
    recorder = manager.recorder
    recorder.emit(SprintRecovered(
        epoch=state.meta.journal_epoch + 1,
        previous_version=state.version,
        leases={grant.lock_id: recorder.wall_at(grant.expires_at) for grant in manager.locks.grants()},
    ))
    manager.files.recover(manager.locks.grants(), rebase=fork)  # judged against the restored locks, before any is released
    for request_id in dict.fromkeys(waiter.request_id for _, waiter in state.meta.waiters):
        recorder.emit(WaiterRemoved(request_id=request_id, reason=RESTART_REASON))  # queues are not restored
    restarts = frozenset(state.agents) if fork else _local_agents(state)
    for task in _attempts_to_restart(state, restarts):
        _restart_attempt(manager, task)
    _release_orphaned_locks(manager, restarts)
    manager.locks.adopt(task.id for task in state.tasks.values() if task.in_flight)
    manager.attempts.resume()
    _rebuild_scheduler(manager)
    return manager


def sprint_manager(plan: Plan, records: Sequence[dict[str, Any]] | None, *, workspace: Path,
                   journal: JournalWriter | None, transport: Transport | None = None, seed: int = 0,
                   speed: float = 1.0, fork: bool = False) -> SprintManager:
    """The manager of a sprint: a new one, or with a crashed run's journal `records` that sprint continued
    (with `fork`, records copied from a parent journal: engine/fork.py).

    A resumed manager has no loop yet: its lease timers are armed when `start` runs on one.
    """
    args: dict[str, Any] = dict(workspace=workspace, journal=journal, transport=transport, seed=seed, speed=speed)
    if records is None:
        return SprintManager(plan, **args)
    return resume_manager(plan, records, fork=fork, **args)


def _release(manager: SprintManager, lock_id: str, owner: str) -> None:
    """No lock-delay: the holder is gone, not late."""
    manager.locks.release(owner, lock_id, reason=RESTART_REASON, by=MANAGER_ID)


def _release_orphaned_locks(manager: SprintManager, restarts: frozenset[str]) -> None:
    """Locks of restarted agents that no kept attempt uses: their holder died with the old manager."""
    kept = {task.id for task in manager.state.tasks.values() if task.in_flight}
    for grant in manager.locks.grants():
        if grant.owner in restarts and grant.task_id not in kept:
            _release(manager, grant.lock_id, grant.owner)


def _local_agents(state: ProjectState) -> frozenset[str]:
    """The agents that died with the old manager (it ran them): simulated and shell ones."""
    return frozenset(agent_id for agent_id, agent in state.agents.items() if agent.kind in LOCAL_AGENT_KINDS)


def _attempts_to_restart(state: ProjectState, restarts: frozenset[str]) -> list[TaskState]:
    """Blocked attempts (nothing done yet) and those an agent in `restarts` was running."""
    return [
        task
        for task in state.tasks.values()
        if task.status == "blocked" or (task.in_flight and any(a in restarts for a in task.owners))
    ]


def _restart_attempt(manager: SprintManager, task: TaskState) -> None:
    """End the dead attempt on the record; the scheduler places it again as attempt + 1."""
    owners = set(task.owners)
    for grant in manager.locks.grants():
        if grant.task_id == task.id and grant.owner in owners:
            _release(manager, grant.lock_id, grant.owner)
    manager.recorder.emit(TaskRequeued(task_id=task.id, attempt=task.attempt, reason=RESTART_REASON))


def _rebuild_scheduler(manager: SprintManager) -> None:
    """Dependency counts from completed tasks; ready work queued again, due retries made ready.

    A crash can fall between a completion and the events it causes (readying its dependents,
    cancelling after a final failure), so those consequences are re-derived, never assumed.
    """
    state, scheduler, attempts = manager.state, manager.scheduler, manager.attempts
    for task in state.tasks.values():
        if task.status == "completed":
            scheduler.dependency_done(task.id)
    for task in list(state.tasks.values()):
        if task.status in ("failed", "cancelled"):  # idempotent: finished dependents are skipped
            verb = "failed" if task.status == "failed" else "was cancelled"
            attempts.cancel_dependents(task.id, f"dependency {task.id} {verb}")
    for task in state.tasks.values():
        if task.status == "ready":
            scheduler.push(task)
        elif task.status == "retrying" or (
            task.status == "pending" and all(state.tasks[d].status == "completed" for d in task.dependencies)
        ):
            attempts.make_ready(task.id)
