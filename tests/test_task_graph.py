"""The Tasks pane's graph view (`v`): the layout, moving along edges, one selection with the table,
and a status change repainting its node without a new layout.

Screens are read as the pane draws them (its rendered lines), over the recorded webrtc sprint.
"""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import SAMPLES
from test_snapshots import recorded_app, recorded_events
from textual.geometry import Region

from app.replay_dashboard import ReplayApp
from app.screens.task_view import TaskViewScreen
from app.source import RecordedSource
from engine.dag_layout import NODE_HEIGHT, layered, step
from engine.events import Event
from engine.plan import load_plan
from engine.replay import ReplayCursor
from widgets.tasks import TasksPane

WEBRTC = {task.id: list(task.depends_on) for task in load_plan(SAMPLES / "webrtc" / "plan.yaml").tasks}


def screen_of(pane: TasksPane) -> str:
    """What the pane shows, line by line."""
    return "\n".join(pane.render_line(y).text for y in range(pane.scrollable_content_region.height))


async def show_graph(pilot) -> TasksPane:
    """The Tasks pane switched to its graph (`v`) and maximised (`z`), drawn."""
    pane = pilot.app.query_one(TasksPane)
    await pilot.press("v", "z")
    await pilot.pause()
    return pane


def node_line(pane: TasksPane, task_id: str) -> str:
    """The second line of a task's node as drawn: its status, owner and attempt."""
    assert pane.graph is not None
    x, y = pane.graph.grid.origin(task_id)
    line = pane.render_line(y + 1 - pane.scroll_offset.y).text
    start = x - pane.scroll_offset.x
    return line[start:start + pane.graph.grid.node_width].strip()


def test_layers_follow_dependency_depth_and_moves_follow_edges() -> None:
    layout = layered(WEBRTC)
    assert layout.layers[0] == ["update_schema", "websocket_signaling", "session_management", "message_persistence"]
    for task, deps in WEBRTC.items():
        for dep in deps:  # every edge points down
            assert layout.place[dep][0] < layout.place[task][0]
    for layer in layout.layers:  # columns ascend along a layer, so nodes never overlap
        columns = [layout.columns[task] for task in layer]
        assert columns == sorted(set(columns))
    assert step(layout, "update_schema", "down") == "implement_api"
    assert step(layout, "implement_api", "up") == "update_schema"
    assert step(layout, "unit_tests", "up", came_from="session_management") == "session_management"
    assert step(layout, "update_schema", "right") == "websocket_signaling"
    assert step(layout, "update_schema", "left") == "update_schema"
    assert step(layout, "e2e_tests", "down") == "e2e_tests"


async def test_moving_along_an_edge_selects_the_dependency(tmp_path: Path) -> None:
    app = recorded_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await show_graph(pilot)
        assert pane.graph_mode and pane.border_title == "Tasks · graph"
        assert pane.selected_key() == "update_schema"
        await pilot.press("j")  # down an edge: update_schema's dependent
        assert pane.selected_key() == "implement_api"
        screen = screen_of(pane)
        assert "↑ update_schema" not in screen and "★ update_schema" in screen  # critical path keeps its ★
        assert "↓ integrate_api" in screen  # a dependent of the selection is marked as in the table
        await pilot.press("j", "k")  # down to a dependent and back up the same edge
        assert pane.selected_key() == "implement_api"
        await pilot.press("k")
        assert pane.selected_key() == "update_schema"
        assert "✔ done database #1" in screen_of(pane)
        await pilot.press("right", "right", "j")  # along layer 0, then down to its dependent
        assert pane.selected_key() == "unit_tests"
        screen = screen_of(pane)
        assert "↑ session_management" in screen and "↑ message_persistence" in screen
        await pilot.press("enter")  # the task view of the selected task
        await pilot.pause()
        assert isinstance(app.screen, TaskViewScreen) and app.screen.task_id == "unit_tests"


async def test_toggling_keeps_the_selection(tmp_path: Path) -> None:
    app = recorded_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.query_one(TasksPane)
        await pilot.press("v", "j", "j")  # graph: update_schema -> implement_api -> its first dependent
        chosen = pane.selected_key()
        assert chosen in ("integrate_api", "webrtc_implementation")
        await pilot.press("v")  # back to the table, on the same task
        assert not pane.graph_mode and pane.selected_key() == chosen
        assert pane.render_line(pane.cursor_row - pane.scroll_offset.y + 1).text.split()[2] == chosen
        await pilot.press("j")  # the table's own order
        in_table = pane.selected_key()
        assert in_table != chosen
        await pilot.press("v")
        assert pane.graph_mode and pane.selected_key() == in_table
        assert in_table in screen_of(pane)


async def test_a_status_change_repaints_its_node_without_a_new_layout(tmp_path: Path) -> None:
    shown = recorded_events(5)
    later = recorded_events(None)[len(shown):]
    started = next(i for i, e in enumerate(later) if e.type == "task_started" and e.data["taskId"] == "unit_tests")
    source = RecordedSource.from_events(shown)
    app = recorded_app(tmp_path)
    app.source = source
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await show_graph(pilot)
        layout = pane.graph.layout
        assert node_line(pane, "unit_tests") == "· pending"
        repainted: list[Region] = []
        refresh = pane.refresh
        pane.refresh = lambda *regions, **kw: (repainted.extend(regions or [Region(0, 0, 999, 999)]), refresh(*regions, **kw))[1]
        for event in later[:started + 1]:
            source.push(event)
        await pilot.pause(0.2)
        assert node_line(pane, "unit_tests") == "▶ running testing #1"
        assert pane.graph.layout is layout  # the same layout object: nothing was laid out again
        assert repainted and all(region.height <= NODE_HEIGHT for region in repainted)


async def test_the_replay_graph_follows_the_cursor(tmp_path: Path) -> None:
    app = ReplayApp(ReplayCursor.open(SAMPLES / "webrtc" / "recorded.jsonl"), at=60, config_file=tmp_path / "c.json")
    async with app.run_test(size=(120, 40)) as pilot:
        pane = await show_graph(pilot)
        assert pane.graph_mode
        layout = pane.graph.layout
        before = app.cursor.state.tasks["e2e_tests"].status
        await pilot.press("end")  # the final state: every task done
        await pilot.pause(0.2)
        assert before != "completed" and node_line(pane, "e2e_tests") == "✔ done testing #1"
        app.seek(2)  # back to just after the sprint started: nothing begun
        await pilot.pause(0.2)
        assert node_line(pane, "update_schema").startswith("· pending")
        assert pane.graph.layout is layout  # seeking redraws the same layout


async def test_large_plans_stay_navigable_in_the_graph(tmp_path: Path) -> None:
    """sample_sprints/large (600 tasks) and a generated 10,000-task plan: one layout, the edges of
    the selection only, and every move lands on a task that is then on screen."""
    sys.path.insert(0, str(SAMPLES.parent / "benchmarks"))
    from generate_large_sprint import make_plan

    large = {task.id: list(task.depends_on) for task in load_plan(SAMPLES / "large" / "plan.yaml").tasks}
    generated = {task["id"]: list(task.get("depends_on", [])) for task in make_plan(10_000, 40, 1)["tasks"]}
    for parents in (large, generated):
        source = RecordedSource([])
        source.push(Event.decode(1, "2026-11-24T12:00:00Z", "sprint_started", {
            "sprint": "big", "agents": [{"id": "a"}],
            "tasks": [{"id": task, "dependencies": deps} for task, deps in parents.items()]}))
        app = recorded_app(tmp_path)
        app.source = source
        async with app.run_test(size=(120, 40)) as pilot:
            pane = await show_graph(pilot)
            assert pane.border_subtitle == "edges of the selected task"
            layout = pane.graph.layout
            seen = []
            for key in ["right"] * 3 + ["j"] * 4 + ["left", "k", "k"]:
                await pilot.press(key)
                selected = pane.selected_key()
                seen.append(selected)
                assert selected in screen_of(pane), (key, selected)
            assert len(set(seen)) >= 6 and pane.graph.layout is layout
            # the selected task's edges are drawn: an arrow into it, or it has no dependencies
            x, y = pane.graph.grid.origin(selected)
            if parents[selected]:
                assert pane.graph.cells[y - 1][x][0]
