"""Sprint metrics, computed from ProjectState alone so live runs and replays agree exactly."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the dashboard's header imports this before its first frame, without pydantic
    from engine.models import ProjectState, SprintMetrics


def _elapsed(state: ProjectState, now: datetime | None) -> float:
    meta = state.meta
    if meta.started_at is None:
        return 0.0
    end = meta.finished_at or now or meta.started_at
    return max(0.0, (end - meta.started_at).total_seconds())


def sprint_metrics(state: ProjectState, now: datetime | None = None) -> SprintMetrics:
    """The seed's SprintMetrics. `now` only matters while the sprint still runs."""
    elapsed = _elapsed(state, now)
    statuses = [task.status for task in state.tasks.values()]
    utilization: dict[str, float] = {}
    for agent_id, agent in state.agents.items():
        busy = agent.metrics.busy_time
        if agent.busy_since is not None and now is not None and state.meta.finished_at is None:
            busy += max(0.0, (now - agent.busy_since).total_seconds())
        utilization[agent_id] = round(busy / elapsed, 4) if elapsed > 0 else 0.0
    meta = state.meta
    from engine.models import SprintMetrics  # a state exists, so the models are imported already

    return SprintMetrics(
        total_tasks=len(statuses),
        completed_tasks=statuses.count("completed"),
        failed_tasks=statuses.count("failed"),
        cancelled_tasks=statuses.count("cancelled"),
        agent_utilization=utilization,
        resource_contention=dict(sorted(meta.contention.items())),
        communication_latency=round(meta.reply_latency_total / meta.replies, 3) if meta.replies else 0.0,
        elapsed=round(elapsed, 3),
        # Every failure was followed by a new attempt, except the last one of a task that failed.
        retries=sum(task.failures - (task.status == "failed") for task in state.tasks.values()),
        agent_deaths=sum(task.agent_deaths for task in state.tasks.values()),
        messages=meta.messages,
        cost_usd=round(sum(agent.metrics.cost_usd for agent in state.agents.values()), 6),
        input_tokens=sum(agent.metrics.input_tokens for agent in state.agents.values()),
        output_tokens=sum(agent.metrics.output_tokens for agent in state.agents.values()),
        unresolved_conflicts=sorted(path for path, file in state.files.items() if file.status == "conflict"),
    )


def sprint_succeeded(metrics: SprintMetrics) -> bool:
    """Every task completed and no file left in conflict: a conflict nobody resolved is work
    that is not done, however many tasks say `completed` (DESIGN §11, exit code 1)."""
    return metrics.completed_tasks == metrics.total_tasks and not metrics.unresolved_conflicts


def sprint_outcome(metrics: SprintMetrics, *, name_files: bool = True) -> str:
    """A finished sprint's outcome in words, for the last headless line and the dashboard header:
    `3/3 done · 1 file left in conflict: src/config.py`, `9/10 done · 1 failed`.  The header, one
    line wide, counts the files without naming them (`name_files=False`)."""
    parts = [f"{metrics.completed_tasks}/{metrics.total_tasks} done"]
    if metrics.failed_tasks:
        parts.append(f"{metrics.failed_tasks} failed")
    if metrics.cancelled_tasks:
        parts.append(f"{metrics.cancelled_tasks} cancelled")
    conflicts = metrics.unresolved_conflicts
    if conflicts:
        files = "file" if len(conflicts) == 1 else "files"
        named = f": {', '.join(conflicts)}" if name_files else ""
        parts.append(f"{len(conflicts)} {files} left in conflict{named}")
    return " · ".join(parts)
