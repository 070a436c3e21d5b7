"""The Metrics pane: sprint progress with an ETA, throughput and utilisation sparklines, and the
seed's SprintMetrics and per-agent AgentMetrics.

Everything is derived from ProjectState and a clock passed in, so a replay (or a snapshot test
with a frozen clock) draws exactly what the live dashboard drew.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Sparkline, Static

from engine.metrics import sprint_metrics
from widgets.agents import cost
from widgets.changes import Changes
from widgets.pane_table import PaneTable
from widgets.text_line import TextLines

if TYPE_CHECKING:  # types only: the dashboard's first frame is drawn before pydantic is imported
    from engine.models import ProjectState

THROUGHPUT_BINS = 30
BAR_WIDTH = 24


def throughput_series(state: ProjectState, now: datetime, bins: int = THROUGHPUT_BINS) -> list[float]:
    """Completed tasks per time bin since the sprint started."""
    started = state.meta.started_at
    if started is None:
        return [0.0] * bins  # one value draws as a full bar: before the start, an empty line
    end = state.meta.finished_at or now
    span = max((end - started).total_seconds(), 1e-6)
    series = [0.0] * bins
    for task in state.tasks.values():
        if task.status == "completed" and task.completed_at is not None:
            offset = (task.completed_at - started).total_seconds()
            series[min(bins - 1, max(0, int(offset / span * bins)))] += 1
    return series


def progress_line(state: ProjectState, now: datetime) -> Text:
    total = len(state.tasks)
    finished = sum(1 for t in state.tasks.values() if t.status in ("completed", "failed", "cancelled"))
    fraction = finished / total if total else 0.0  # no tasks yet (a replay before the start): empty
    filled = int(BAR_WIDTH * fraction)
    eta = "—"
    started = state.meta.started_at
    if state.meta.finished_at is not None:
        eta = "finished"
    elif started is not None and finished:
        elapsed = (now - started).total_seconds()
        eta = f"ETA {elapsed / finished * (total - finished):.0f}s"
    return Text(f"{'█' * filled}{'░' * (BAR_WIDTH - filled)} {finished}/{total} {fraction:4.0%}  {eta}")


class MetricsPane(VerticalScroll):
    BORDER_TITLE = "Metrics"
    can_focus = True
    ALLOW_MAXIMIZE = True  # a scroll container refuses by default; `z` maximises every pane

    def compose(self) -> ComposeResult:
        # Kept as attributes: the App may refresh this pane before its children are mounted.
        self.progress = TextLines(id="metrics-progress")
        # Empty lines until the first state (`run`'s first frame has none): one value draws as a full bar.
        self.throughput = Sparkline([0.0] * THROUGHPUT_BINS, id="metrics-throughput")
        self.utilisation = Sparkline([0.0, 0.0], id="metrics-utilisation")
        self.summary = TextLines(id="metrics-summary")
        self.agent_table = AgentMetricsTable(id="metrics-agents")
        yield self.progress
        yield Static("Throughput (tasks per interval)", classes="metrics-label")
        yield self.throughput
        yield Static("Utilisation per agent", classes="metrics-label")
        yield self.utilisation
        yield self.summary
        yield self.agent_table

    def refresh_state(self, state: ProjectState, changes: Changes, now: datetime) -> None:
        metrics = sprint_metrics(state, now)
        self.progress.set_text(progress_line(state, now))
        self.throughput.data = throughput_series(state, now)
        self.utilisation.data = list(metrics.agent_utilization.values()) or [0.0, 0.0]  # [0.0] is drawn full
        busiest = sorted(metrics.resource_contention.items(), key=lambda kv: -kv[1])[:3]
        summary = (
            f"tasks {metrics.completed_tasks}/{metrics.total_tasks} done, {metrics.failed_tasks} failed, "
            f"{metrics.cancelled_tasks} cancelled · retries {metrics.retries} · agent deaths {metrics.agent_deaths}\n"
            f"messages {metrics.messages} · reply latency {metrics.communication_latency:.1f} ms · "
            f"contention: {', '.join(f'{p} ×{n}' for p, n in busiest) or 'none'}"
        )
        if metrics.cost_usd or metrics.input_tokens:
            summary += (f"\nspend {cost(metrics.cost_usd)} · tokens in {metrics.input_tokens:,} · "
                        f"out {metrics.output_tokens:,}")
        self.summary.set_text(summary)
        self._refresh_agents(state, metrics.agent_utilization)

    def _refresh_agents(self, state: ProjectState, utilisation: dict[str, float]) -> None:
        table = self.agent_table
        for agent in state.agents.values():
            m = agent.metrics
            table.upsert(agent.id, [agent.id, str(m.tasks_completed), str(m.tasks_failed),
                                    f"{m.average_task_duration:.1f}", f"{m.resource_lock_wait_time:.1f}",
                                    str(m.messages_sent), str(m.messages_received),
                                    f"{utilisation.get(agent.id, 0.0):.0%}", cost(m.cost_usd)], AGENT_COLUMN_KEYS)
        for gone in set(table.keys()) - state.agents.keys():  # a replay gone back before them
            table.remove_row(gone)


AGENT_COLUMNS = [("agent", "Agent"), ("done", "Done"), ("failed", "Fail"), ("avg", "Avg s"),
                 ("wait", "Lock wait s"), ("sent", "Sent"), ("recv", "Recv"), ("util", "Util"), ("cost", "Cost")]
AGENT_COLUMN_KEYS = [key for key, _ in AGENT_COLUMNS]


class AgentMetricsTable(PaneTable):
    """Per-agent AgentMetrics, keyed rows (a Rich table here re-rendered per line: 50× slower)."""

    COLUMNS = AGENT_COLUMNS
