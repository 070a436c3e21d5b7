"""Who `sprintdeck mcp` is: the agent, the manager's address and the token, from the environment.

Claude Code starts the MCP server from an agent-neutral `.mcp.json` (DESIGN §10), so everything
that says which agent this session is comes from the environment the user started `claude` with.
A missing or bad variable does not stop the server: Claude Code shows a server that fails to start
poorly (a red mark, no reason), so the server starts anyway and every tool answers with the
sentence kept here, which names the variable and how to set it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from engine.transports.address import Address, AddressError, parse_address
from engine.transports.tokens import TokenError, token_source

AGENT_ENV = "SPRINTDECK_AGENT_ID"
CONNECT_ENV = "SPRINTDECK_CONNECT"
SESSION_ENV = "SPRINTDECK_SESSION"
#: What Claude Code tells the MCP servers it starts: the session is bound to the agent, so a second
#: session as the same agent is refused rather than taking the first one's connection over.
CLAUDE_SESSION_ENV = "CLAUDE_CODE_SESSION_ID"
#: "requests" when the agent itself lives elsewhere (a `kind: claude` run the manager started): the
#: server then joins on a side channel, neither heartbeating for the agent nor leaving for it.
CHANNEL_ENV = "SPRINTDECK_CHANNEL"
#: Where such a run's complete_task/fail_task leave their verdict for the manager to read at its end.
VERDICT_ENV = "SPRINTDECK_VERDICT_FILE"
#: Where the workspace root is for the session; Claude Code sets it for its hooks and servers.
PROJECT_ENV = "CLAUDE_PROJECT_DIR"
HOW_TO_START = "sprintdeck init-claude --plan PLAN prints the command that starts each agent"


@dataclass(frozen=True)
class Identity:
    """Everything needed to connect as the agent."""

    agent_id: str
    address: Address
    token: Callable[[], str]
    session: str | None = None
    project_dir: str | None = None  # where absolute paths from Claude Code are relative to
    channel: str = "agent"
    verdict_file: str | None = None


@dataclass(frozen=True)
class Unidentified:
    """Why the server cannot be an agent: one sentence naming the variable to set."""

    problem: str


def identity_from(environ: Mapping[str, str] = os.environ) -> Identity | Unidentified:
    """The agent this process is, or the sentence that says which variable is missing or wrong."""
    agent_id = environ.get(AGENT_ENV, "").strip()
    if not agent_id:
        return Unidentified(
            f"{AGENT_ENV} is not set, so sprintdeck does not know which agent of the sprint this Claude Code "
            f"session is; restart claude with {AGENT_ENV}=<agent id> ({HOW_TO_START})"
        )
    connect = environ.get(CONNECT_ENV, "").strip()
    if not connect:
        return Unidentified(
            f"{CONNECT_ENV} is not set, so sprintdeck does not know where the sprint manager listens; restart "
            f"claude with {CONNECT_ENV}=unix:PATH or tcp:HOST:PORT, the address `sprintdeck serve` printed"
        )
    try:
        address = parse_address(connect)
    except AddressError as exc:
        return Unidentified(f"{CONNECT_ENV} is wrong: {exc}")
    try:
        token = token_source(agent_id, None, environ)
    except TokenError as exc:
        return Unidentified(f"agent {agent_id} has no token: {exc}")
    session = (environ.get(SESSION_ENV) or environ.get(CLAUDE_SESSION_ENV) or "").strip() or None
    project_dir = environ.get(PROJECT_ENV, "").strip() or None
    channel = environ.get(CHANNEL_ENV, "").strip() or "agent"
    if channel not in ("agent", "requests"):
        return Unidentified(f"{CHANNEL_ENV}={channel!r} should be agent or requests")
    verdict_file = environ.get(VERDICT_ENV, "").strip() or None
    return Identity(agent_id, address, token, session=session, project_dir=project_dir, channel=channel,
                    verdict_file=verdict_file)
