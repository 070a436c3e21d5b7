"""What a joining agent is checked against and told, in the manager's answer to its agent_ready.

Everything an agent in another process cannot know from its own side: its plan entry, the
heartbeat timing, the seed and speed of a simulated run, where the workspace is, and its work now
(a Claude Code hook names the task with each lock it takes, and tells the model its assignment).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.models import ProjectState
from engine.payloads import AgentReadyPayload
from engine.plan import Plan


def welcome(plan: Plan, state: ProjectState, agent_id: str, *, workspace: Path, seed: int, speed: float) -> dict[str, Any]:
    settings = plan.settings
    spec = next((agent for agent in plan.agents if agent.id == agent_id), None)
    return {
        "sprint": plan.sprint,
        "agentId": agent_id,
        "agent": spec.as_json() if spec is not None else None,
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


def hello_refusal(plan: Plan, agent_id: str, hello: AgentReadyPayload) -> tuple[str, str] | None:
    """What in an agent's agent_ready contradicts its plan entry: (field, reason naming the plan's value).

    The seed's AgentConfig fields are welcome, and a field the agent leaves out (or sends empty) is
    taken from the plan; only a value that differs from the plan's is refused, since the manager places work by
    the plan (an agent that says it cannot build would be given builds anyway).  A limit the plan
    leaves open may be set by the agent; an agent the plan does not name has nothing to contradict.
    """
    spec = next((agent for agent in plan.agents if agent.id == agent_id), None)
    if spec is None:
        return None
    limits = hello.resource_limits
    checks: list[tuple[bool, str, object, object]] = [  # (said, field, what it says, what the plan says)
        (bool(hello.capabilities), "payload.capabilities", sorted(hello.capabilities), sorted(spec.capabilities)),
        (bool(hello.specializations), "payload.specializations", sorted(hello.specializations), sorted(spec.specializations)),
        (hello.max_concurrent_tasks is not None, "payload.maxConcurrentTasks", hello.max_concurrent_tasks, spec.max_concurrent_tasks),
    ]
    if limits is not None:
        checks += [
            (limits.max_concurrent_tasks is not None, "payload.resourceLimits.maxConcurrentTasks",
             limits.max_concurrent_tasks, spec.max_concurrent_tasks),
            (limits.max_memory_usage is not None and spec.max_memory_usage is not None,
             "payload.resourceLimits.maxMemoryUsage", limits.max_memory_usage, spec.max_memory_usage),
            (limits.max_execution_time is not None and spec.max_execution_time is not None,
             "payload.resourceLimits.maxExecutionTime", limits.max_execution_time, spec.max_execution_time),
        ]
    checks.append((bool(hello.dependencies), "payload.dependencies", sorted(hello.dependencies), sorted(spec.dependencies)))
    for was_given, field, value, planned in checks:
        if was_given and value != planned:
            return field, f"{value!r} contradicts the plan, where agent {agent_id!r} has {_plan_name(field)} {planned!r}"
    return None


def _plan_name(field: str) -> str:
    """The plan's name for a wire field (`payload.resourceLimits.maxExecutionTime` -> max_execution_time)."""
    last = field.rsplit(".", 1)[-1]
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in last)
