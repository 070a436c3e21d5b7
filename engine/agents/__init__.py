"""Agents that run inside the manager's process: simulated, shell, and claude (which runs `claude -p`)."""

from __future__ import annotations

from pathlib import Path

from engine.agents.base import LocalAgent
from engine.agents.claude import ClaudeAgent
from engine.agents.shell import ShellAgent
from engine.agents.simulated import SimulatedAgent, rogue_edit_plan
from engine.plan import Plan
from engine.transports.base import Transport

def start_local_agents(plan: Plan, transport: Transport, workspace: Path, *, seed: int, speed: float) -> list[LocalAgent]:
    """Create and start every agent of the plan that runs in this process (external ones connect)."""
    interval = plan.settings.heartbeat_interval
    agents: list[LocalAgent] = []
    rogue = rogue_edit_plan(plan, seed)
    for spec in plan.agents:
        agent: LocalAgent
        if spec.kind == "simulated":
            agent = SimulatedAgent(spec, transport, workspace=workspace, heartbeat_interval=interval, seed=seed,
                                   speed=speed, rogue_tasks=rogue)
        elif spec.kind == "shell":
            agent = ShellAgent(spec, transport, workspace=workspace, heartbeat_interval=interval)
        elif spec.kind == "claude":
            agent = ClaudeAgent(spec, transport, workspace=workspace, heartbeat_interval=interval, sprint=plan.sprint)
        else:
            continue
        agent.start()
        agents.append(agent)
    return agents
