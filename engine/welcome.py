"""What a joining agent is told, in the manager's answer to its agent_ready.

Everything an agent in another process cannot know from its own side: its plan entry, the
heartbeat timing, the seed and speed of a simulated run, where the workspace is, and its work now
(a Claude Code hook names the task with each lock it takes, and tells the model its assignment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.models import ProjectState
from engine.plan import Plan


def welcome(plan: Plan, state: ProjectState, agent_id: str, *, workspace: Path, seed: int, speed: float) -> dict[str, Any]:
    settings = plan.settings
    spec = next((agent for agent in plan.agents if agent.id == agent_id), None)
    return {
        "sprint": plan.sprint,
        "agentId": agent_id,
        "agent": spec.model_dump(mode="json") if spec is not None else None,
        "heartbeatInterval": settings.heartbeat_interval,
        "heartbeatTimeout": settings.heartbeat_timeout,
        "seed": seed,
        "speed": speed,
        "workspace": str(workspace),
        "assignments": assignments(state, agent_id),
    }


def assignments(state: ProjectState, agent_id: str) -> list[dict[str, Any]]:
    """The agent's tasks in flight, oldest first."""
    agent = state.agents.get(agent_id)
    tasks = [state.tasks[task_id] for task_id in (agent.current_tasks if agent else [])]
    return [{"taskId": t.id, "attempt": t.attempt, "title": t.title, "status": t.status} for t in tasks]
