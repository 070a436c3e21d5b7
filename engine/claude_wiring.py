"""How a Claude Code process is wired to a sprint: the hooks, the MCP server, the environment.

One home for what `sprintdeck init-claude` merges into a checkout's settings and what the manager
hands each `claude -p` run it starts (engine/agents/claude.py), so the two never drift apart.
The settings are agent-neutral: who the process is comes from its environment (DESIGN §10).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

EDIT_TOOLS = "Write|Edit|MultiEdit|NotebookEdit"
#: Claude Code event, matcher (None: every occurrence), `sprintdeck hook` event, timeout in seconds.
#: A hook that times out does not block, so an edit would go through unlocked: pre-tool-use's
#: timeout stays far above the hook's own deadline (3 s by default, plus SPRINTDECK_HOOK_WAIT_MS).
HOOKS: tuple[tuple[str, str | None, str, int], ...] = (
    ("SessionStart", None, "session-start", 10),
    ("PreToolUse", EDIT_TOOLS, "pre-tool-use", 60),
    ("PostToolUse", f"{EDIT_TOOLS}|Bash", "post-tool-use", 10),
    ("Notification", None, "notification", 10),
    ("Stop", None, "stop", 10),
    ("SessionEnd", None, "session-end", 10),
)
MCP_SERVER = "sprintdeck"
#: What a `kind: claude` agent may use without asking when its plan entry names no allowed_tools.
DEFAULT_ALLOWED_TOOLS = ("Read", "Write", "Edit", "MultiEdit", "NotebookEdit", "Glob", "Grep", "LS", "Bash")


def sprintdeck_executable() -> str | None:
    """Our console script, by absolute path, so that Claude Code finds it whatever its PATH."""
    beside = Path(sys.executable).with_name("sprintdeck")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside.absolute())
    found = shutil.which("sprintdeck")
    return os.path.abspath(found) if found else None


def hook_command(executable: str, event: str) -> str:
    return shlex.join([executable, "hook", event])


def hook_group(matcher: str | None, command: str, timeout: int) -> dict[str, Any]:
    group: dict[str, Any] = {} if matcher is None else {"matcher": matcher}
    group["hooks"] = [{"type": "command", "command": command, "timeout": timeout}]
    return group


def settings_document(executable: str) -> dict[str, Any]:
    """A `--settings` file with every sprintdeck hook."""
    hooks: dict[str, list[dict[str, Any]]] = {}
    for event, matcher, name, timeout in HOOKS:
        hooks.setdefault(event, []).append(hook_group(matcher, hook_command(executable, name), timeout))
    return {"hooks": hooks}


def mcp_server_entry(executable: str) -> dict[str, Any]:
    return {"command": executable, "args": ["mcp"]}


def mcp_document(executable: str) -> dict[str, Any]:
    """An `--mcp-config` file with the sprintdeck MCP server."""
    return {"mcpServers": {MCP_SERVER: mcp_server_entry(executable)}}


def allowed_tools(configured: list[str]) -> list[str]:
    """The plan's allowed_tools (or the defaults), and always the sprintdeck MCP tools."""
    tools = list(configured or DEFAULT_ALLOWED_TOOLS)
    return tools if f"mcp__{MCP_SERVER}" in tools else [*tools, f"mcp__{MCP_SERVER}"]
