"""Enter on an agent: what it is doing and has done, whether it is connected, what its commands
last printed, and, for an external agent, how to start it.

An external agent of `serve` is a process the user starts; the command (with this installation's
absolute path to `sprintdeck`, the address and the token file) is shown here because the dashboard
covers the lines `serve` printed before it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from textual.app import ComposeResult
from textual.widgets import Static

from app.screens.record_view import RecordView, Section, table
from engine.message_filter import Filter, FilteredView
from engine.message_store import MessageStore
from engine.models import AgentState, ProjectState
from engine.task_story import OUTCOME_WORDS, clock, rows_upto, seconds
from widgets.status import AGENT, shown_agent_status

TASKS_SHOWN = 12
OUTPUT_LINES = 6
# Updates looked at, newest first, for those lines: progress-only updates carry no line, and
# decoding every one of an agent's 20,000 updates each second cost 80 ms in a large sprint.
UPDATES_SEARCHED = 200


def agent_summary(agent: AgentState, now: datetime) -> list[str]:
    """The agent in words, one fact a line."""
    status = AGENT.get(shown_agent_status(agent), ("", agent.status))[1]
    last = agent.last_heartbeat
    beat = "never" if last is None else f"{max(0.0, (now - last).total_seconds()):.0f}s ago"
    metrics = agent.metrics
    return [
        f"Status: {status}" + (f" ({agent.status_reason})" if agent.status_reason else ""),
        f"Kind: {agent.kind}",
        f"Load: {len(agent.current_tasks)}/{agent.max_concurrent_tasks}"
        + (f" — {', '.join(agent.current_tasks)}" if agent.current_tasks else ""),
        f"Last heartbeat: {beat}",
        f"Tasks done/failed: {metrics.tasks_completed}/{metrics.tasks_failed}",
    ]


def task_rows(agent_id: str, state: ProjectState, now: datetime) -> list[tuple[str, ...]]:
    """Every attempt the agent took part in, latest first: task, #, start, duration, outcome, error."""
    found = [(task.id, attempt) for task in state.tasks.values() for attempt in task.attempts
             if agent_id in attempt.agents]
    found.sort(key=lambda pair: (pair[1].assigned_at or now, pair[0]), reverse=True)
    rows: list[tuple[str, ...]] = []
    for task_id, attempt in found[:TASKS_SHOWN]:
        start = attempt.started_at or attempt.assigned_at
        end = attempt.ended_at or (now if attempt.outcome == "running" else None)
        rows.append((task_id, f"#{attempt.number}", clock(start), seconds(start, end),
                     OUTCOME_WORDS.get(attempt.outcome, attempt.outcome), attempt.error or ""))
    return rows


def output_lines(agent_id: str, view: FilteredView, upto: int) -> list[tuple[str, str]]:
    """The last lines its commands printed (a shell or claude agent's task_update messages); `view`
    is kept by the screen, so a redraw scans only the messages new since the last one."""
    store = view.store
    view.update()
    lines: list[tuple[str, str]] = []
    row = rows_upto(view, upto) - 1
    oldest = max(-1, row - UPDATES_SEARCHED)
    while row > oldest and len(lines) < OUTPUT_LINES:
        index = view[row]
        row -= 1
        if store.sender(index) != agent_id:
            continue
        payload = store.payload(index)
        text = payload.get("message") or payload.get("output")
        if isinstance(text, str):
            lines.append((str(payload.get("taskId", "")), text))
    return lines[::-1]


class AgentDetailsScreen(RecordView):
    def __init__(self, agent_id: str, state: Callable[[], ProjectState], clock: Callable[[], datetime], *,
                 store: MessageStore, how_to_start: str | None) -> None:
        super().__init__(state, clock)
        self.agent_id = agent_id
        self.updates = FilteredView(store, Filter(agent=agent_id, type="task_update"))
        self.how_to_start = how_to_start

    def heading(self, state: ProjectState) -> str:
        return f"Agent {self.agent_id}"

    def head(self) -> ComposeResult:
        yield Static(id="agent-facts", markup=False)
        if self.how_to_start is not None:
            start = Static(self.how_to_start, id="agent-start", markup=False)
            start.styles.margin = (1, 0, 0, 0)
            yield start

    def redraw_head(self, state: ProjectState, now: datetime) -> None:
        self.query_one("#agent-facts", Static).update("\n".join(agent_summary(state.agents[self.agent_id], now)))

    def sections(self, state: ProjectState, now: datetime) -> list[Section]:
        output = output_lines(self.agent_id, self.updates, state.version)
        if not output:  # a simulated agent, or output not (yet) in the store: the tasks' last lines
            output = [(task.id, task.last_output) for task in state.tasks.values()
                      if task.last_output and self.agent_id in task.owners][-OUTPUT_LINES:]
        return [
            ("Tasks (current and past)", table(["Task", "#", "Start", "Duration", "Outcome", "Error"],
                                               task_rows(self.agent_id, state, now), "none yet")),
            ("Last output", table(["Task", "Line"], output, "none")),
        ]

    def record(self, state: ProjectState) -> dict[str, Any]:
        return state.agents[self.agent_id].model_dump(mode="json")
