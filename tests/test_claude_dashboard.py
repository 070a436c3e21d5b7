"""What the operator sees of Claude Code agents: which session each is, what it spent, and that one
waits for a human - in the Agents pane and the Metrics pane, over the recorded sample sprint."""

from __future__ import annotations

from pathlib import Path

from test_snapshots import claude_app
from widgets.agents import AgentsPane
from widgets.metrics import MetricsPane


async def test_the_operator_sees_sessions_spend_and_who_waits_for_a_human(tmp_path: Path) -> None:
    app = claude_app(tmp_path)
    async with app.run_test(size=(160, 40)) as pilot:
        await pilot.pause(0.1)
        agents = app.query_one(AgentsPane)
        row = dict(zip([key for key, _ in agents.COLUMNS], map(str, agents.get_row("frontend")), strict=True))
        assert row["status"].endswith("waiting")
        assert "Claude needs your permission to use Bash" in row["task"] and row["task"].startswith("page")
        assert row["cost"] == "—" and row["session"] == "—"  # its run has not reached the model yet
        done = dict(zip([key for key, _ in agents.COLUMNS], map(str, agents.get_row("database")), strict=True))
        assert done["cost"] == "$0.21" and done["session"] == app.source.state.agents["database"].session[:8]
        metrics = app.query_one(MetricsPane)
        assert "spend $0.41" in str(metrics.summary.text)
        cost_column = [key for key, _ in metrics.agent_table.COLUMNS].index("cost")
        assert str(metrics.agent_table.get_row("backend")[cost_column]) == "$0.21"
