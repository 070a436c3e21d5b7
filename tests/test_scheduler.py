"""Scheduler: ranking and placement rules, and properties of whole runs on random DAGs."""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import run_sprint, write_plan
from engine.events import EventType
from engine.models import ProjectState
from engine.reducer import fold
from engine.scheduler import Scheduler


def _state_for(plan) -> ProjectState:
    state = ProjectState()
    from engine.models import AgentState, TaskState

    for a in plan.agents:
        state.agents[a.id] = AgentState(id=a.id, capabilities=a.capabilities, max_concurrent_tasks=a.max_concurrent_tasks)
    for t in plan.tasks:
        state.tasks[t.id] = TaskState(id=t.id, priority=t.priority, dependencies=t.depends_on)
    return state


def test_rank_is_priority_then_critical_path_then_descendants(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        {
            "sprint": "rank",
            "agents": [{"id": "solo"}],
            "tasks": [
                {"id": "short", "estimate": "1s"},
                {"id": "long_head", "estimate": "1s"},
                {"id": "long_tail", "estimate": "10s", "depends_on": ["long_head"]},
                {"id": "urgent", "estimate": "1s", "priority": "critical"},
                {"id": "fan", "estimate": "1s"},
                {"id": "fan1", "estimate": "1s", "depends_on": ["fan"]},
                {"id": "fan2", "estimate": "1s", "depends_on": ["fan"]},
            ],
        },
    )
    scheduler = Scheduler(plan)
    state = _state_for(plan)
    for task_id in scheduler.initially_ready():
        scheduler.push(state.tasks[task_id])
    order = []
    while len(scheduler):
        (placement,) = scheduler.place(state)
        order.append(placement.task_id)
    # critical first; then the 11 s chain; then fan (2 s path, 2 descendants) before short.
    assert order == ["urgent", "long_head", "fan", "short"]


def test_placement_respects_capacity_and_capabilities(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        {
            "sprint": "cap",
            "agents": [{"id": "ui", "capabilities": ["ui"], "max_concurrent_tasks": 2}, {"id": "db", "capabilities": ["db"]}],
            "tasks": [{"id": f"u{i}", "requires": ["ui"]} for i in range(4)] + [{"id": "d", "requires": ["db"]}],
        },
    )
    scheduler = Scheduler(plan)
    state = _state_for(plan)
    for task_id in scheduler.initially_ready():
        scheduler.push(state.tasks[task_id])
    placements = scheduler.place(state)
    by_agent: dict[str, list[str]] = {}
    for p in placements:
        by_agent.setdefault(p.agents[0], []).append(p.task_id)
    assert len(by_agent["ui"]) == 2 and by_agent["db"] == ["d"]
    assert len(scheduler) == 2
    state.meta.paused = True
    assert scheduler.place(state) == []


def test_a_backlog_for_a_full_agent_does_not_hide_work_for_a_free_one(tmp_path: Path) -> None:
    """Ready tasks wait in groups by who can take them; a group whose agents are full is skipped
    whole, and across groups the best-ranked placeable task still goes first."""
    plan = write_plan(
        tmp_path,
        {
            "sprint": "groups",
            "agents": [
                {"id": "ui", "capabilities": ["ui"]},
                {"id": "db", "capabilities": ["db"], "max_concurrent_tasks": 2},
            ],
            "tasks": [{"id": f"u{i}", "requires": ["ui"], "priority": "critical"} for i in range(50)]
            + [
                {"id": "d_low", "requires": ["db"], "priority": "low"},
                {"id": "d_high", "requires": ["db"], "priority": "high"},
                {"id": "d_mid", "requires": ["db"]},
            ],
        },
    )
    scheduler = Scheduler(plan)
    state = _state_for(plan)
    for task_id in scheduler.initially_ready():
        scheduler.push(state.tasks[task_id])
    first = scheduler.place(state)
    assert [(p.task_id, p.agents) for p in first] == [("u0", ("ui",)), ("d_high", ("db",)), ("d_mid", ("db",))]
    for placement in first:
        state.agents[placement.agents[0]].current_tasks.append(placement.task_id)
    assert scheduler.place(state) == []  # everyone is full: 49 ui tasks and d_low wait
    state.agents["db"].current_tasks.remove("d_high")
    assert [p.task_id for p in scheduler.place(state)] == ["d_low"]  # not one of the 49 critical ui tasks
    assert len(scheduler) == 49


def test_a_collaborative_task_waiting_for_a_busy_agent_keeps_its_free_agents(tmp_path: Path) -> None:
    """Otherwise lower-ranked work would keep taking the free agent and starve the pair."""
    plan = write_plan(
        tmp_path,
        {
            "sprint": "pair",
            "agents": [{"id": "a", "capabilities": ["x"]}, {"id": "b", "capabilities": ["y"]}],
            "tasks": [
                {"id": "pair", "agents": ["a", "b"], "coordination": "collaborative", "priority": "critical"},
                {"id": "b_only", "requires": ["y"], "priority": "low"},
                {"id": "a_only", "requires": ["x"], "priority": "low"},
            ],
        },
    )
    scheduler = Scheduler(plan)
    state = _state_for(plan)
    for task_id in ("pair", "b_only"):
        scheduler.push(state.tasks[task_id])
    state.agents["a"].current_tasks = ["elsewhere"]  # a is busy; b is free
    assert scheduler.place(state) == [] and len(scheduler) == 2  # b waits for the pair
    state.agents["a"].current_tasks = []
    assert [(p.task_id, p.agents) for p in scheduler.place(state)] == [("pair", ("a", "b"))]
    scheduler.push(state.tasks["a_only"])
    state.agents["a"].current_tasks = state.agents["b"].current_tasks = ["pair"]
    assert scheduler.place(state) == []
    state.agents["b"].current_tasks = []  # b done with the pair: only b_only fits, a_only waits for a
    assert [p.task_id for p in scheduler.place(state)] == ["b_only"] and len(scheduler) == 1


def test_an_agent_joining_late_takes_queued_work_it_can_do(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        {
            "sprint": "join",
            "agents": [{"id": "ui", "capabilities": ["ui"]}],
            "tasks": [{"id": "u1", "requires": ["ui"]}, {"id": "u2", "requires": ["ui"]}],
        },
    )
    scheduler = Scheduler(plan)
    state = _state_for(plan)
    for task_id in scheduler.initially_ready():
        scheduler.push(state.tasks[task_id])
    (placed,) = scheduler.place(state)
    state.agents["ui"].current_tasks.append(placed.task_id)
    from engine.models import AgentState

    late = state.agents["late"] = AgentState(id="late", kind="external", capabilities=["ui", "db"])
    scheduler.agent_joined(late)
    assert [(p.task_id, p.agents) for p in scheduler.place(state)] == [("u2", ("late",))]


@st.composite
def random_plans(draw):
    n_agents = draw(st.integers(1, 4))
    caps = ["a", "b", "c"]
    agents = []
    for i in range(n_agents):
        agents.append(
            {
                "id": f"ag{i}",
                "capabilities": draw(st.lists(st.sampled_from(caps), min_size=1, max_size=3, unique=True)),
                "max_concurrent_tasks": draw(st.integers(1, 3)),
            }
        )
    offered = sorted({c for a in agents for c in a["capabilities"]})
    n_tasks = draw(st.integers(1, 14))
    tasks = []
    for t in range(n_tasks):
        task: dict = {"id": f"t{t}", "estimate": 0}
        deps = draw(st.lists(st.integers(0, t - 1), max_size=3, unique=True)) if t else []
        if deps:
            task["depends_on"] = [f"t{d}" for d in deps]
        kind = draw(st.sampled_from(["any", "requires", "pinned"]))
        if kind == "requires":
            task["requires"] = [draw(st.sampled_from(offered))]
        elif kind == "pinned":
            task["agent"] = draw(st.sampled_from(agents))["id"]
        if draw(st.booleans()):
            task["resources"] = [
                {"path": draw(st.sampled_from(["src", "src/a.ts", "src/b.ts", "docs/x.md"])),
                 "mode": draw(st.sampled_from(["read", "write", "exclusive"]))}
            ]
        task["priority"] = draw(st.sampled_from(["low", "medium", "high", "critical"]))
        tasks.append(task)
    return {"sprint": "random", "settings": {"heartbeat_interval": "1s"}, "agents": agents, "tasks": tasks}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_plans(), st.integers(0, 3))
def test_random_dags_respect_dependencies_capacity_and_pins(raw_plan, seed) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        plan = write_plan(tmp_path, raw_plan)
        run = asyncio.run(run_sprint(plan, tmp_path, seed=seed, speed=1000.0))
    capacity = {a.id: a.max_concurrent_tasks for a in plan.agents}
    load = {a.id: 0 for a in plan.agents}
    owner: dict[str, str] = {}
    completed: set[str] = set()
    for event in run.events:
        data = event.data
        if event.type == EventType.TASK_ASSIGNED:
            task = plan.task(data["taskId"])
            assert set(task.depends_on) <= completed, (task.id, task.depends_on, completed)
            (agent,) = data["agents"]
            if task.agent:
                assert agent == task.agent
            assert agent in plan.capable_agents(task)
            load[agent] += 1
            owner[task.id] = agent
            assert load[agent] <= capacity[agent]
        elif event.type in (EventType.TASK_COMPLETED, EventType.TASK_FAILED, EventType.TASK_CANCELLED,
                            EventType.TASK_REQUEUED):  # a requeued attempt (lock refused, agent died) frees its slot too
            if data["taskId"] in owner:
                load[owner.pop(data["taskId"])] -= 1
            if event.type == EventType.TASK_COMPLETED:
                completed.add(data["taskId"])
    assert all(t.status in ("completed", "failed", "cancelled") for t in run.result.state.tasks.values())
    assert run.result.succeeded
    replayed = fold(run.events)
    assert json.dumps(replayed.model_dump(mode="json")) == json.dumps(run.result.state.model_dump(mode="json"))
