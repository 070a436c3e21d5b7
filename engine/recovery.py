"""ErrorRecoveryManager: notices agents that stopped heartbeating and hands their work on.

Missed heartbeats are judged live, on the manager's monotonic clock, and written down as events
(unresponsive, then dead); replay never recomputes them from time.  Any message from an agent
counts as a sign of life (`saw`), not only heartbeats.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from engine.events import AgentStatus
from engine.mail import Post
from engine.plan import Settings
from engine.protocol import BROADCAST, MANAGER_ID, MessageType, make_message
from engine.recorder import Recorder


class ErrorRecoveryManager:
    def __init__(self, settings: Settings, recorder: Recorder, post: Post,
                 agent_failed: Callable[[str, str], None]) -> None:
        self._state = recorder.state
        self._emit = recorder.emit
        self._clock = recorder.clock
        self._post = post
        self._agent_failed = agent_failed
        self.interval = settings.heartbeat_interval
        self.timeout = settings.heartbeat_timeout
        # Two missed beats make an agent look unresponsive; the timeout makes it dead.
        self.unresponsive_after = min(2 * self.interval, self.timeout / 2)
        self._last_seen: dict[str, float] = {}

    def expect(self, agent_ids: Iterable[str]) -> None:
        """The sprint starts: every agent of the plan is counted as seen now."""
        now = self._clock()
        for agent_id in agent_ids:
            self._last_seen.setdefault(agent_id, now)

    def saw(self, agent_id: str) -> None:
        self._last_seen[agent_id] = self._clock()

    def last_seen(self, agent_id: str) -> float | None:
        return self._last_seen.get(agent_id)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval / 2)
            self.check()

    def check(self) -> None:
        """Judge every agent's heartbeat age once; called on a timer and by tests."""
        now = self._clock()
        for agent in list(self._state.agents.values()):
            if agent.status == "dead" or (agent.kind == "external" and agent.last_heartbeat is None):
                continue
            seen = self._last_seen.get(agent.id)
            if seen is None:
                continue
            age = now - seen
            if age > self.timeout:
                self.handle_agent_failure(agent.id, f"no heartbeat for {age:.1f}s (timeout {self.timeout:g}s)")
            elif age > self.unresponsive_after and agent.status != "unresponsive":
                self._emit(AgentStatus(agent_id=agent.id, status="unresponsive"))

    def handle_agent_failure(self, agent_id: str, reason: str) -> None:
        """The seed's handleAgentFailure: release its locks, requeue its tasks, record it."""
        self._agent_failed(agent_id, reason)

    def synchronize_state(self) -> None:
        """The seed's synchronizeState: every agent gets the authoritative state version."""
        payload = {"version": self._state.version, "state": self._state.model_dump(mode="json")}
        self._post(make_message(MessageType.STATE_SYNC, MANAGER_ID, BROADCAST, payload))

    handleAgentFailure = handle_agent_failure
    synchronizeState = synchronize_state
