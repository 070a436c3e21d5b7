"""Each attempt's record on its task (`TaskState.attempts`): how it ended, why, with which exit
code, and which of the task's locks it let go of.

The task's live fields (`error`, `started_at`, `blocked_on`) describe only the current attempt and
are reset by the next one; this history is what the task view reads to say what happened before.
The reducer's task and lock handlers call these helpers; nothing here decides anything.
"""

from __future__ import annotations

from datetime import datetime

from engine.models import AgentKind, AttemptOutcome, AttemptRecord, ProjectState, ResourceLock, TaskState

#: Agents whose attempts run a command: a completed attempt of theirs exited 0 (the exit status decides).
COMMAND_AGENTS: frozenset[AgentKind] = frozenset({"shell", "claude"})


def live_attempt(task: TaskState) -> AttemptRecord | None:
    """The attempt still running, if any (a requeue before the first assignment has none)."""
    last = task.attempts[-1] if task.attempts else None
    return last if last is not None and last.outcome == "running" else None


def end_attempt(task: TaskState, now: datetime, outcome: AttemptOutcome, error: str | None = None,
                exit_code: int | None = None) -> None:
    attempt = live_attempt(task)
    if attempt is not None:
        attempt.ended_at = now
        attempt.outcome = outcome
        attempt.error = error
        attempt.exit_code = exit_code


def completed_exit_code(state: ProjectState, task: TaskState) -> int | None:
    """0 when the attempt's agents run commands (a shell or claude agent completes only on exit 0)."""
    attempt = live_attempt(task)
    agents = attempt.agents if attempt is not None else []
    kinds = {state.agents[a].kind for a in agents if a in state.agents}
    return 0 if kinds and kinds <= COMMAND_AGENTS else None


def credit_release(state: ProjectState, lock: ResourceLock) -> None:
    """A lock taken for a task is let go of: its path goes on the task's latest attempt.

    A task's locks belong to its latest attempt: the next attempt's are granted only after its
    own assignment.  The end of an attempt (completed, failed, cancelled) is journaled just before
    the releases it causes, a requeue or an agent's death just after, so "latest" covers both.
    """
    task = state.tasks.get(lock.task_id) if lock.task_id else None
    if task is None or not task.attempts:
        return
    released = task.attempts[-1].released_locks
    if lock.resource_id not in released:
        released.append(lock.resource_id)
