"""Agents that run inside the manager's process: simulated and shell."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.agents.base import LocalAgent
from engine.agents.shell import ShellAgent
from engine.agents.simulated import SimulatedAgent, rogue_edit_plan

if TYPE_CHECKING:
    from engine.manager import SprintManager


def start_local_agents(manager: SprintManager) -> list[LocalAgent]:
    """Create and start every simulated and shell agent of the plan (external ones connect)."""
    interval = manager.plan.settings.heartbeat_interval
    agents: list[LocalAgent] = []
    rogue = rogue_edit_plan(manager.plan, manager.seed)
    for spec in manager.plan.agents:
        if spec.kind == "simulated":
            agent: LocalAgent = SimulatedAgent(
                spec,
                manager.transport,
                workspace=manager.workspace,
                heartbeat_interval=interval,
                seed=manager.seed,
                speed=manager.speed,
                rogue_tasks=rogue,
            )
        elif spec.kind == "shell":
            agent = ShellAgent(spec, manager.transport, workspace=manager.workspace, heartbeat_interval=interval)
        else:
            continue
        agent.start()
        agents.append(agent)
    return agents
