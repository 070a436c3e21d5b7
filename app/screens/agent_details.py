"""Enter on an agent: what it is doing and, for an external agent, how to start it.

An external agent of `serve` is a process the user starts; the command (with this installation's
absolute path to `sprintdeck`, the address and the token file) is shown here because the dashboard
covers the lines `serve` printed before it.
"""

from __future__ import annotations

from datetime import datetime

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.models import AgentState
from widgets.status import AGENT, shown_agent_status


def agent_summary(agent: AgentState, now: datetime) -> list[str]:
    """The agent in words, one fact a line."""
    status = AGENT.get(shown_agent_status(agent), ("", agent.status))[1]
    beat = "never" if agent.last_heartbeat is None else f"{max(0.0, (now - agent.last_heartbeat).total_seconds()):.0f}s ago"
    metrics = agent.metrics
    return [
        f"Status: {status}" + (f" ({agent.status_reason})" if agent.status_reason else ""),
        f"Kind: {agent.kind}",
        f"Load: {len(agent.current_tasks)}/{agent.max_concurrent_tasks}"
        + (f" — {', '.join(agent.current_tasks)}" if agent.current_tasks else ""),
        f"Last heartbeat: {beat}",
        f"Tasks done/failed: {metrics.tasks_completed}/{metrics.tasks_failed}",
    ]


class AgentDetailsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close", id="agent_details.close")]

    def __init__(self, agent: AgentState, now: datetime, how_to_start: str | None) -> None:
        super().__init__()
        self.agent_id = agent.id
        self.lines = agent_summary(agent, now)
        self.how_to_start = how_to_start

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details-dialog", classes="dialog"):
            yield Static(f"Agent {self.agent_id}", classes="dialog-title")
            yield Static("\n".join(self.lines), id="agent-facts", markup=False)
            if self.how_to_start is not None:
                start = Static(self.how_to_start, id="agent-start", markup=False)
                start.styles.margin = (1, 0, 0, 0)
                yield start
