"""Why a task stands where it stands, in words: the Tasks pane's "why" column and the Agents pane's
note on a blocked agent.

The operator's two questions during a sprint are "blocked on what?" and "failed why?"; the state
already holds the answers (a blocked task's paths, the locks and their holders, each attempt's
outcome), scattered over tasks, locks and agents.  This module reads them together into one short
line per task, so the answer is on the main screen rather than behind a details key or in the
journal.  It only reads state: nothing here decides anything.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING

from engine.vocabulary import PLACEABLE_AGENT_STATUSES

if TYPE_CHECKING:  # only read: the dashboard imports this before its first frame, without pydantic
    from engine.models import AgentState, AttemptRecord, ProjectState, ResourceLock, TaskState

PATH_MAX = 24  # characters of a lock's path in a reason (its end: the file's name)
ERROR_MAX = 60  # characters of an error kept in the line (the task view shows it whole)
EXIT_STATUS = re.compile(r"\bexit status (-?\d+)")


def why(task: TaskState, state: ProjectState, now: datetime | None = None) -> str:
    """One line saying what `task` waits for or why it ended badly ("" when there is nothing to say).

    `now` lets a retrying task say how long ago its attempt failed.
    """
    status = task.status
    if status == "blocked":
        return blocked_reason(task, state)
    if status == "pending":
        return dependency_reason(task, state)
    if status in ("failed", "retrying"):
        return failure_reason(task, now)
    if status == "cancelled":
        return f"cancelled: {shorten(task.error)}" if task.error else "cancelled"
    if status == "ready":
        return placement_reason(task, state)
    if status in ("assigned", "running"):
        failed = last_failure(task)
        return f"after #{failed.number} failed: {shorten(failed.error)}" if failed is not None else ""
    return ""


def shorten(text: str | None, limit: int = ERROR_MAX) -> str:
    """One line of at most `limit` characters, whitespace collapsed, a cut marked with `…`;
    a shell agent's `exit status 1: ...` reads `exit 1: ...` (the room goes to the command's words)."""
    line = EXIT_STATUS.sub(r"exit \1", " ".join((text or "").split()))
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


# ---------------------------------------------------------------- locks


def blocked_reason(task: TaskState, state: ProjectState) -> str:
    """`lock server/db ← update_schema`: the path waited for and who has it (several summarised)."""
    paths = task.blocked_on or [resource.path for resource in task.resources]
    if not paths:
        return "waits for its locks"
    first = f"{short_path(paths[0])} {_obstacle(paths[0], task, state)}"
    if len(paths) == 1:
        return f"lock {first}"
    named = set(_in_the_way(paths[0], task, state))
    others = [name for path in paths[1:] for name in _in_the_way(path, task, state) if name not in named]
    also = f" ({', '.join(dict.fromkeys(others))})" if others else ""
    return f"locks {first} +{len(paths) - 1} more{also}"


def short_path(path: str, limit: int = PATH_MAX) -> str:
    """A long path keeps its end (the file's name) and loses its start: `…/components/Call.tsx`,
    so the holder after it stays in view."""
    if len(path) <= limit:
        return path
    parts = path.split("/")
    kept = parts[-1]
    for part in reversed(parts[:-1]):
        if len(part) + len(kept) + 3 > limit:
            break
        kept = f"{part}/{kept}"
    return "…/" + kept if len(kept) + 2 <= limit else "…" + path[-(limit - 1):]


def _in_the_way(path: str, task: TaskState, state: ProjectState) -> list[str]:
    """The holders of locks over `path`, else the waiters queued for it ahead of the task."""
    return _holders(path, task, state) or waiters_ahead(path, task, state)


def _holders(path: str, task: TaskState, state: ProjectState) -> list[str]:
    return [_holder_name(lock) for lock in _locks_over(path, state) if lock.task_id != task.id]


def _obstacle(path: str, task: TaskState, state: ProjectState) -> str:
    """`← holder` for the locks in the way, `behind waiter` when only the queue is, else `(held back)`."""
    holders = _holders(path, task, state)
    if holders:
        return "← " + ", ".join(dict.fromkeys(holders))
    ahead = waiters_ahead(path, task, state)
    if ahead:
        return "behind " + ", ".join(dict.fromkeys(ahead))
    return "(held back after a release)"


def _locks_over(path: str, state: ProjectState) -> list[ResourceLock]:
    """Live locks on `path`, on a directory above it, or on a path below it (a directory lock
    covers everything under it, DESIGN §4)."""
    return sorted(
        (lock for lock in state.locks.values() if overlaps(lock.resource_id, path)),
        key=lambda lock: lock.token,
    )


def waiters_ahead(path: str, task: TaskState, state: ProjectState) -> list[str]:
    """Who queues for an overlapping path before this task does (fairness makes them go first)."""
    ahead: list[str] = []
    for resource_id, waiter in state.meta.waiters:
        if waiter.task_id == task.id:
            break
        if overlaps(resource_id, path):
            ahead.append(waiter.task_id or waiter.agent_id)
    return ahead


def overlaps(held: str, wanted: str) -> bool:
    return held == wanted or wanted.startswith(held.rstrip("/") + "/") or held.startswith(wanted.rstrip("/") + "/")


def _holder_name(lock: ResourceLock) -> str:
    """The holder's task names the work in the way; its agent when the lock was taken outside a task."""
    return lock.task_id or lock.agent_id


# ---------------------------------------------------------------- dependencies and placement


def dependency_reason(task: TaskState, state: ProjectState) -> str:
    """`deps: 2 of 3 (waits for api)`: how many dependencies are done and which ones are not."""
    deps = task.dependencies
    if not deps:
        return ""
    open_deps = [dep for dep in deps if dep not in state.tasks or state.tasks[dep].status != "completed"]
    if not open_deps:
        return ""
    described = ", ".join(open_deps[:2]) + (f" +{len(open_deps) - 2} more" if len(open_deps) > 2 else "")
    return f"deps: {len(deps) - len(open_deps)} of {len(deps)} (waits for {described})"


def placement_reason(task: TaskState, state: ProjectState) -> str:
    """Why a ready task has no agent yet: the sprint is paused, nobody can do it, or all who can are busy."""
    if state.meta.paused:
        return "sprint paused"
    capable = capable_agents(task, state)
    if not capable:
        needs = ", ".join(task.requires)
        return f"no agent has {needs}" if needs else "no agent can take it"
    placeable = [agent for agent in capable if agent.status in PLACEABLE_AGENT_STATUSES]
    if not placeable:
        states = ", ".join(f"{agent.id} {agent.status}" for agent in capable[:3])
        return f"waits for a capable agent ({states})"
    with_room = [agent for agent in placeable if len(agent.current_tasks) < agent.max_concurrent_tasks]
    if not with_room:
        loads = ", ".join(f"{a.id} {len(a.current_tasks)}/{a.max_concurrent_tasks}" for a in placeable[:3])
        return f"waits for a free agent ({loads})"
    return f"queued for {', '.join(agent.id for agent in with_room[:3])}"  # placed at the next dispatch


def capable_agents(task: TaskState, state: ProjectState) -> list[AgentState]:
    """The agents that may take the task: its pinned agent, else those with every required capability."""
    if task.pinned_agent:
        pinned = state.agents.get(task.pinned_agent)
        return [pinned] if pinned is not None else []
    needs = set(task.requires)
    return [agent for agent in state.agents.values() if needs <= set(agent.capabilities)]


# ---------------------------------------------------------------- failures


def last_failure(task: TaskState) -> AttemptRecord | None:
    """The latest attempt that failed: a retry's reassignment clears `task.error`, not this."""
    for attempt in reversed(task.attempts):
        if attempt.outcome == "failed":
            return attempt
    return None


def failure_reason(task: TaskState, now: datetime | None = None) -> str:
    """`#2 failed: exit 1: npm test`; a retrying task adds when it failed and that a retry comes."""
    failed = last_failure(task)
    number = failed.number if failed is not None else task.attempt
    error = shorten(failed.error if failed is not None and failed.error else task.error) or "no reason given"
    if task.status != "retrying":
        return f"#{number} failed: {error}"
    ended = failed.ended_at if failed is not None else None
    when = f" {_ago(ended, now)}" if ended is not None and now is not None else ""
    return f"#{number} failed{when}: {error} · retry #{task.attempt + 1} due"


def _ago(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60}m ago"


# ---------------------------------------------------------------- agents


def agent_waits(agent: AgentState, state: ProjectState) -> str:
    """What an agent's blocked tasks wait for, holder first (the pane is narrow; the path is last
    so a cut loses it, and the Tasks pane has it whole): `migrate ← update_schema (server/db)`."""
    waits = []
    for task_id in agent.current_tasks:
        task = state.tasks.get(task_id)
        if task is None or task.status != "blocked":
            continue
        paths = task.blocked_on
        holders = [name for path in paths for name in _in_the_way(path, task, state)]
        where = (short_path(paths[0]) + (f" +{len(paths) - 1}" if len(paths) > 1 else "")) if paths else "its locks"
        waits.append(f"{task.id} ← {', '.join(dict.fromkeys(holders)) or 'a lock'} ({where})")
    return "; ".join(waits)


def agent_blocked(agent: AgentState, state: ProjectState) -> bool:
    """Every task the agent has waits for a lock: it is working on nothing."""
    tasks = [state.tasks.get(t) for t in agent.current_tasks]
    return bool(tasks) and all(task is not None and task.status == "blocked" for task in tasks)
