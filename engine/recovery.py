"""ErrorRecoveryManager: notices agents that stopped heartbeating and hands their work on.

Missed heartbeats are judged live, on the manager's monotonic clock, and written down as events
(unresponsive, then dead); replay never recomputes them from time.  Any message from an agent
counts as a sign of life (`saw`), not only heartbeats.

A closed connection is quicker news than silence: the agent is marked disconnected at once and
dead after `disconnect_grace` unless it is back by then, so a killed process's work moves on well
before its heartbeats would have timed out.  When the peer's process is known to have exited (a
Unix socket names its pid), its commands died with it and its paths need not stay contested.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from engine.events import AgentStatus
from engine.mail import Post
from engine.plan import Settings
from engine.protocol import BROADCAST, MANAGER_ID, MessageType, make_message
from engine.recorder import Recorder


class AgentFailed(Protocol):
    def __call__(self, agent_id: str, reason: str, *, exited: bool = False) -> None: ...


class ErrorRecoveryManager:
    def __init__(self, settings: Settings, recorder: Recorder, post: Post, agent_failed: AgentFailed,
                 heard_from: Callable[[str], None] | None = None) -> None:
        self._state = recorder.state
        self._emit = recorder.emit
        self._clock = recorder.clock
        self._post = post
        self._agent_failed = agent_failed
        self.interval = settings.heartbeat_interval
        self.timeout = settings.heartbeat_timeout
        # Two missed beats make an agent look unresponsive; the timeout makes it dead.
        self.unresponsive_after = min(2 * self.interval, self.timeout / 2)
        self.disconnect_grace = settings.disconnect_grace
        self._last_seen: dict[str, float] = {}
        self._heard_from = heard_from
        self._disconnected: dict[str, asyncio.TimerHandle] = {}

    def expect(self, agent_ids: Iterable[str]) -> None:
        """The sprint starts: every agent of the plan is counted as seen now."""
        now = self._clock()
        for agent_id in agent_ids:
            self._last_seen.setdefault(agent_id, now)

    def saw(self, agent_id: str, *, handshake: bool = False) -> None:
        """A message from the agent.  Any but its handshake also says that the commands of its
        superseded attempts are dead (an agent kills them first), so its paths are no longer contested."""
        self._last_seen[agent_id] = self._clock()
        if handshake and self._disconnected:
            # Back within the grace: only a handshake says so, since a message it sent before its
            # connection closed may be decided after the close was noticed.
            pending = self._disconnected.pop(agent_id, None)
            if pending is not None:
                pending.cancel()
        if self._heard_from is not None and not handshake:
            self._heard_from(agent_id)

    def disconnected(self, agent_id: str, pid: int | None = None) -> None:
        """The agent's own connection closed: disconnected now, dead after the grace unless back.

        `pid`: the peer's process, when the transport knows it (a Unix socket's peer credentials).
        """
        agent = self._state.agents.get(agent_id)
        if agent is None or agent.status == "dead":
            return
        if agent.status != "unresponsive" or agent.status_reason != "disconnected":
            self._emit(AgentStatus(agent_id=agent_id, status="unresponsive", reason="disconnected"))
        if agent_id in self._disconnected:
            return  # already counting (the socket and the process supervisor both tell)
        self._disconnected[agent_id] = asyncio.get_running_loop().call_later(
            self.disconnect_grace, self._not_back, agent_id, pid)

    def _not_back(self, agent_id: str, pid: int | None) -> None:
        self._disconnected.pop(agent_id, None)
        reason = f"connection closed and not back within {self.disconnect_grace:g}s (disconnect_grace)"
        self._agent_failed(agent_id, reason, exited=pid is not None and process_exited(pid))

    def stop(self) -> None:
        for pending in self._disconnected.values():
            pending.cancel()
        self._disconnected.clear()

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


def process_exited(pid: int) -> bool:
    """Whether a process is gone (a zombie, killed and not yet reaped, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 0)
            return False
        return True
    return stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X")
