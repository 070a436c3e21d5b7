"""How statuses look: a symbol and a word beside every colour, so nothing relies on colour alone."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import App

if TYPE_CHECKING:  # types only: the dashboard's first frame is drawn before pydantic is imported
    from engine.models import AgentState


TASK = {
    "pending": ("·", "pending"),
    "ready": ("○", "ready"),
    "assigned": ("◔", "assigned"),
    "blocked": ("⊘", "blocked"),
    "running": ("▶", "running"),
    "retrying": ("↻", "retrying"),
    "completed": ("✔", "done"),
    "failed": ("✖", "failed"),
    "cancelled": ("⊗", "cancelled"),
}
TASK_VARIABLE = {"assigned": "status-running"}

AGENT = {
    "ready": ("●", "ready"),
    "busy": ("▶", "busy"),
    "unresponsive": ("?", "unresponsive"),
    "connecting": ("◌", "waiting to connect"),  # an external agent not yet started: see `shown_agent_status`
    "dead": ("✖", "dead"),
    "paused": ("‖", "paused"),
    "waiting": ("…", "waiting"),  # for a human: a Claude Code permission prompt, say
    "error": ("!", "error"),  # it reported an error of its own (agent_error): no new work until it acts again
}

LOCK = {"read": ("r", "read"), "write": ("w", "write"), "exclusive": ("X", "exclusive")}
FILE = {"clean": ("·", "clean"), "modified": ("✎", "modified"), "conflict": ("⚠", "conflict")}


def colour(app: App, variable: str) -> str:
    """The current theme's colour for a semantic variable (themes define every status variable)."""
    return app.current_theme.variables.get(variable, "")


def badge(app: App, table: dict[str, tuple[str, str]], prefix: str, status: str) -> Text:
    symbol, word = table.get(status, ("?", status))
    variable = TASK_VARIABLE.get(status, f"{prefix}-{status}") if prefix == "status" else f"{prefix}-{status}"
    return Text(f"{symbol} {word}", style=colour(app, variable))


def task_badge(app: App, status: str) -> Text:
    return badge(app, TASK, "status", status)


def agent_badge(app: App, status: str) -> Text:
    return badge(app, AGENT, "agent", status)


def shown_agent_status(agent: AgentState) -> str:
    """The engine marks an external agent unresponsive until it joins; one that has never joined
    (no heartbeat, not a dropped connection) is waiting for the user to start it, which is not the
    same as one that stopped answering, so it is shown as `connecting` ("waiting to connect")."""
    never_joined = agent.last_heartbeat is None and agent.status_reason is None
    return "connecting" if agent.kind == "external" and agent.status == "unresponsive" and never_joined else agent.status


def lock_badge(app: App, mode: str) -> Text:
    return badge(app, LOCK, "lock", mode)


def file_badge(app: App, status: str) -> Text:
    return badge(app, FILE, "file", status)
