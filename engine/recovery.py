"""ErrorRecoveryManager: notices agents that stopped heartbeating and hands their work on.

Missed heartbeats are judged live, on the manager's monotonic clock, and written down as events
(unresponsive, then dead); replay never recomputes them from time.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine.protocol import BROADCAST, MANAGER_ID, MessageType, make_message

if TYPE_CHECKING:
    from engine.manager import SprintManager


class ErrorRecoveryManager:
    def __init__(self, manager: SprintManager) -> None:
        self.manager = manager
        settings = manager.plan.settings
        self.interval = settings.heartbeat_interval
        self.timeout = settings.heartbeat_timeout
        # Two missed beats make an agent look unresponsive; the timeout makes it dead.
        self.unresponsive_after = min(2 * self.interval, self.timeout / 2)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval / 2)
            self.check()

    def check(self) -> None:
        """Judge every agent's heartbeat age once; called on a timer and by tests."""
        manager = self.manager
        now = manager.clock()
        for agent in list(manager.state.agents.values()):
            if agent.status in ("dead",) or (agent.kind == "external" and agent.last_heartbeat is None):
                continue
            seen = manager.last_seen(agent.id)
            if seen is None:
                continue
            age = now - seen
            if age > self.timeout:
                self.handle_agent_failure(agent.id, f"no heartbeat for {age:.1f}s (timeout {self.timeout:g}s)")
            elif age > self.unresponsive_after and agent.status != "unresponsive":
                manager.mark_unresponsive(agent.id)

    def handle_agent_failure(self, agent_id: str, reason: str) -> None:
        """The seed's handleAgentFailure: release its locks, requeue its tasks, record it."""
        self.manager.agent_failed(agent_id, reason)

    def synchronize_state(self) -> None:
        """The seed's synchronizeState: every agent gets the authoritative state version."""
        manager = self.manager
        manager.post(
            make_message(
                MessageType.STATE_SYNC,
                MANAGER_ID,
                BROADCAST,
                {"version": manager.state.version, "state": manager.state.model_dump(mode="json")},
            )
        )

    handleAgentFailure = handle_agent_failure
    synchronizeState = synchronize_state
