"""The Agents pane: who is alive, what each works on, how loaded it is."""

from __future__ import annotations

from datetime import datetime

from textual.binding import Binding

from engine.models import AgentState, ProjectState
from widgets.changes import Changes
from widgets.pane_table import PaneTable
from widgets.status import agent_badge

COLUMNS = [("status", "Status"), ("agent", "Agent"), ("load", "Load"), ("beat", "Heartbeat"),
           ("done", "Done/failed"), ("kind", "Kind"), ("task", "Current task")]


class AgentsPane(PaneTable):
    BORDER_TITLE = "Agents"
    COLUMNS = COLUMNS
    BINDINGS = [Binding("p", "app.pause", "Pause/resume agent", id="agents.pause")]


    def refresh_state(self, state: ProjectState, changes: Changes, now: datetime) -> None:
        """Agents are few and heartbeat ages move every second, so every row is checked."""
        keys = [key for key, _ in COLUMNS]
        for agent in state.agents.values():
            self.upsert(agent.id, self._cells(agent, now), keys)

    def _cells(self, agent: AgentState, now: datetime) -> list:
        metrics = agent.metrics
        return [
            agent_badge(self.app, agent.status),
            agent.id,
            f"{len(agent.current_tasks)}/{agent.max_concurrent_tasks}",
            _age(agent.last_heartbeat, now),
            f"{metrics.tasks_completed}/{metrics.tasks_failed}",
            agent.kind,
            ", ".join(agent.current_tasks) or "—",
        ]


def _age(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = max(0.0, (now - then).total_seconds())
    return f"{seconds:.0f}s ago" if seconds >= 1 else "now"
