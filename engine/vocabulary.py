"""The words a plan and the protocol share: priorities, lock modes, kinds of agent.

A module of its own, with nothing but `typing`, so that checking a plan (`validate`) does not
build every message and state model just to learn that "high" is a priority.
"""

from __future__ import annotations

from typing import Literal

Priority = Literal["low", "medium", "high", "critical"]
LockType = Literal["read", "write", "exclusive"]
AgentKind = Literal["simulated", "shell", "external", "claude"]
PRIORITY_RANK: dict[str, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3}
#: The agent statuses the scheduler places work on (the Tasks pane says why a ready task waits with it).
PLACEABLE_AGENT_STATUSES = frozenset({"ready", "busy"})
