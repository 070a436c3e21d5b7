"""The Agents pane: who is alive, what each works on, how loaded it is, and what a blocked one waits on.

An agent whose every task waits for a lock is shown `⊘ blocked` (not `busy`: it does nothing), and
its current task says what it waits on, in the words of the Tasks pane's why column.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from textual.binding import Binding

from engine.task_reasons import agent_blocked, agent_waits
from widgets.changes import Changes
from widgets.pane_table import PaneTable
from widgets.status import agent_badge, shown_agent_status, task_badge

if TYPE_CHECKING:  # types only: the dashboard's first frame is drawn before pydantic is imported
    from engine.models import AgentState, ProjectState

COLUMNS = [("status", "Status"), ("agent", "Agent"), ("load", "Load"), ("beat", "Heartbeat"), ("task", "Current task"),
           ("cost", "Cost"), ("done", "Done/failed"), ("kind", "Kind"), ("session", "Session")]
SESSION_SHOWN = 8  # characters of a Claude Code session id: enough to tell sessions apart


class AgentsPane(PaneTable):
    BORDER_TITLE = "Agents"
    COLUMNS = COLUMNS
    DROP_ORDER = ["session", "kind", "cost", "done", "load", "beat"]
    BINDINGS = [
        Binding("p", "app.pause", "Pause/resume agent", id="agents.pause"),
        Binding("enter", "app.agent_details", "Details", id="agents.details"),
    ]

    def refresh_state(self, state: ProjectState, changes: Changes, now: datetime) -> None:
        """Agents are few and heartbeat ages move every second, so every row is checked."""
        keys = [key for key, _ in COLUMNS]
        for agent in state.agents.values():
            self.upsert(agent.id, self._cells(agent, state, now), keys)
        for gone in set(self.keys()) - state.agents.keys():  # a replay gone back before them
            self.remove_row(gone)

    def _cells(self, agent: AgentState, state: ProjectState, now: datetime) -> list:
        metrics = agent.metrics
        blocked = agent.status == "busy" and agent_blocked(agent, state)
        return [
            task_badge(self.app, "blocked") if blocked else agent_badge(self.app, shown_agent_status(agent)),
            agent.id,
            f"{len(agent.current_tasks)}/{agent.max_concurrent_tasks}",
            _age(agent.last_heartbeat, now),
            _doing(agent, agent_waits(agent, state)),
            cost(metrics.cost_usd),
            f"{metrics.tasks_completed}/{metrics.tasks_failed}",
            agent.kind,
            (agent.session or "—")[:SESSION_SHOWN],
        ]


def cost(usd: float) -> str:
    """Language-model spend as the operator reads it ("—": nothing spent, e.g. a shell agent)."""
    return f"${usd:,.2f}" if usd else "—"


def _doing(agent: AgentState, waits: str) -> str:
    """Its tasks, and why it waits when it does: a lock (`migrate ← update_schema (server/db)`)
    or a human (a Claude Code permission prompt, say)."""
    tasks = ", ".join(agent.current_tasks) or "—"
    if waits:
        tasks = waits if len(agent.current_tasks) == 1 else f"{tasks} · waits: {waits}"
    return f"{tasks} · {agent.status_reason}" if agent.status_reason else tasks


def _age(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = max(0.0, (now - then).total_seconds())
    return f"{seconds:.0f}s ago" if seconds >= 1 else "now"
