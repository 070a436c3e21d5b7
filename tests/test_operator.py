"""Operator actions through the manager's public API: each is recorded, refusals change nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from conftest import write_plan
from engine.events import EventType
from engine.manager import SprintManager
from engine.operators import OperatorError


def plan_dict() -> dict:
    return {
        "sprint": "ops",
        "settings": {"heartbeat_interval": "100ms"},
        "agents": [
            {"id": "one", "capabilities": ["api"]},
            {"id": "two", "capabilities": ["api"]},
            {"id": "ui", "capabilities": ["ui"]},
        ],
        "tasks": [
            {"id": "long", "requires": ["api"], "estimate": "60s", "resources": ["server/routes.ts"]},
            {"id": "next", "requires": ["api"], "depends_on": ["long"], "estimate": "1s"},
        ],
    }


async def started(tmp_path: Path) -> tuple[SprintManager, asyncio.Task, list]:
    return await started_with(tmp_path, plan_dict())


async def started_with(tmp_path: Path, plan_data: dict) -> tuple[SprintManager, asyncio.Task, list]:
    plan = write_plan(tmp_path, plan_data)
    manager = SprintManager(plan, workspace=tmp_path, speed=1.0)
    events: list = []
    manager.subscribe(events.append)
    run = asyncio.create_task(manager.execute_sprint())
    while "long" not in manager.state.tasks or manager.state.tasks["long"].status != "running":
        await asyncio.sleep(0.01)
    return manager, run, events


async def finish(manager: SprintManager, run: asyncio.Task) -> None:
    for task_id, task in manager.state.tasks.items():
        if task.status not in ("completed", "failed", "cancelled"):
            manager.op_cancel(task_id)
    await asyncio.wait_for(run, 10)


async def test_reassign_cancels_the_attempt_moves_the_lock_and_records_it(tmp_path: Path) -> None:
    manager, run, events = await started(tmp_path)
    task = manager.state.tasks["long"]
    old_agent, old_lock = task.agent, next(iter(manager.state.locks.values()))
    target = "two" if old_agent == "one" else "one"
    manager.op_reassign("long", target)
    task = manager.state.tasks["long"]
    assert (task.agent, task.attempt) == (target, 2)
    (lock,) = manager.state.locks.values()
    assert lock.agent_id == target and lock.token > old_lock.token
    assert [e.data["action"] for e in events if e.type == EventType.OPERATOR_ACTION] == ["reassign"]
    assert "long" not in manager.state.agents[old_agent].current_tasks
    await asyncio.sleep(0.05)
    cancels = [e for e in events if e.type == EventType.MESSAGE and e.data["message"]["type"] == "task_cancel"]
    assert cancels and cancels[0].data["message"]["to"] == old_agent
    await finish(manager, run)


async def test_refused_operations_explain_and_change_nothing(tmp_path: Path) -> None:
    manager, run, events = await started(tmp_path)
    before = manager.state.model_dump_json()
    with pytest.raises(OperatorError, match="lacks the capabilities"):
        manager.op_reassign("long", "ui")
    with pytest.raises(OperatorError, match="unknown agent"):
        manager.op_reassign("long", "ghost")
    with pytest.raises(OperatorError, match="only failed or cancelled"):
        manager.op_retry("long")
    with pytest.raises(OperatorError, match="no lock"):
        manager.op_force_release("L999")
    assert manager.state.model_dump_json() == before
    await finish(manager, run)
    with pytest.raises(OperatorError, match="already completed|already cancelled"):
        manager.op_cancel("long")


async def test_force_release_is_recorded_as_an_operator_action(tmp_path: Path) -> None:
    manager, run, events = await started(tmp_path)
    (lock,) = manager.state.locks.values()
    manager.op_force_release(lock.lock_id)
    assert manager.state.locks == {}
    (action,) = [e for e in events if e.type == EventType.OPERATOR_ACTION]
    assert action.data == {"action": "force_release", "by": "operator", "lockId": lock.lock_id,
                           "resourceId": "server/routes.ts", "holder": lock.agent_id}
    released = [e for e in events if e.type == EventType.LOCK_RELEASED]
    assert released[-1].data["reason"] == "operator"
    await finish(manager, run)


async def test_paused_agent_gets_no_new_work_and_priority_changes_are_recorded(tmp_path: Path) -> None:
    manager, run, events = await started(tmp_path)
    manager.op_pause_agent("ui")
    assert manager.state.agents["ui"].status == "paused"
    with pytest.raises(OperatorError, match="already paused"):
        manager.op_pause_agent("ui")
    manager.op_set_priority("next", "critical")
    assert manager.state.tasks["next"].priority == "critical"
    manager.op_pause_sprint()
    assert manager.state.meta.paused
    manager.op_pause_sprint(False)
    manager.op_pause_agent("ui", False)
    assert manager.state.agents["ui"].status == "ready"
    actions = [e.data["action"] for e in events if e.type == EventType.OPERATOR_ACTION]
    assert actions == ["pause_agent", "priority", "pause_sprint", "resume_sprint", "resume_agent"]
    await finish(manager, run)


async def test_retry_runs_a_failed_task_again_and_reopens_its_cancelled_dependents(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, {
        "sprint": "retry",
        "settings": {"heartbeat_interval": "100ms", "max_retries": 0},
        "agents": [{"id": "one", "capabilities": ["x"], "failure_rate": 1.0}, {"id": "two"}],
        "tasks": [
            {"id": "flaky", "requires": ["x"], "estimate": "20ms"},
            {"id": "child", "depends_on": ["flaky"], "agent": "two"},
            {"id": "long", "agent": "two", "estimate": "60s"},
        ],
    })
    manager = SprintManager(plan, workspace=tmp_path, speed=1.0)
    events: list = []
    manager.subscribe(events.append)
    run = asyncio.create_task(manager.execute_sprint())
    while "child" not in manager.state.tasks or manager.state.tasks["child"].status != "cancelled":
        await asyncio.sleep(0.01)
    with pytest.raises(OperatorError, match="depends on flaky, which did not complete"):
        manager.op_retry("child")
    manager.op_retry("flaky")
    assert manager.state.tasks["child"].status == "pending"
    while manager.state.tasks["flaky"].attempt < 2 or manager.state.tasks["flaky"].status != "failed":
        await asyncio.sleep(0.01)
    assert manager.state.tasks["flaky"].failures == 2
    assert manager.state.tasks["child"].status == "cancelled"  # cancelled again by the second failure
    assert [e.data["action"] for e in events if e.type == EventType.OPERATOR_ACTION] == ["retry"]
    await finish(manager, run)


def wobbly_plan() -> dict:
    """Three agents able to do api work, two long api tasks: one agent stays idle."""
    return {
        "sprint": "capacity",
        "settings": {"heartbeat_interval": "100ms"},
        "agents": [
            {"id": "wobbly", "capabilities": ["api"]},
            {"id": "shaky", "capabilities": ["api"]},
            {"id": "steady", "capabilities": ["api"]},
            {"id": "pyd", "capabilities": ["python", "db", "api"]},
        ],
        "tasks": [
            {"id": "long", "requires": ["api"], "estimate": "60s"},
            {"id": "other", "requires": ["api"], "estimate": "60s"},
            {"id": "migrate", "requires": ["python", "db"], "estimate": "60s"},
        ],
    }


async def running_all(tmp_path: Path, plan: dict) -> tuple[SprintManager, asyncio.Task, list]:
    manager = SprintManager(write_plan(tmp_path, plan), workspace=tmp_path, speed=1.0)
    events: list = []
    manager.subscribe(events.append)
    run = asyncio.create_task(manager.execute_sprint())
    async with asyncio.timeout(10):
        while not manager.state.tasks or any(t.status != "running" for t in manager.state.tasks.values()):
            await asyncio.sleep(0.01)
    return manager, run, events


async def test_reassign_to_a_full_agent_is_refused_with_its_load_and_never_overfills(tmp_path: Path) -> None:
    manager, run, events = await running_all(tmp_path, wobbly_plan())
    tasks, agents = manager.state.tasks, manager.state.agents
    full = tasks["other"].agent
    idle = next(a for a in ("wobbly", "shaky", "steady", "pyd") if not agents[a].current_tasks)
    assert full is not None and tasks["long"].agent != full
    before = manager.state.model_dump_json()
    with pytest.raises(OperatorError) as refused:
        manager.op_reassign("long", full)
    assert str(refused.value) == f"{full} is full: 1 of 1 tasks running (max_concurrent_tasks 1)"
    assert manager.state.model_dump_json() == before
    assert not [e for e in events if e.type == EventType.OPERATOR_ACTION]
    # What every caller is offered: the full agent with its reason, the idle one without.
    targets = {t.agent_id: t.refusal for t in manager.check_reassign("long")}
    assert targets[full] == "full: 1 of 1 tasks running (max_concurrent_tasks 1)"
    assert targets[idle] is None and tasks["long"].agent not in targets
    manager.op_reassign("long", idle)
    assert manager.state.tasks["long"].agent == idle
    assert all(len(a.current_tasks) <= a.max_concurrent_tasks for a in manager.state.agents.values())
    await finish(manager, run)


async def test_reassign_when_every_other_agent_is_full_says_who_and_why(tmp_path: Path) -> None:
    plan = wobbly_plan()
    plan["agents"] = plan["agents"][:2] + plan["agents"][3:]  # no idle agent: wobbly, shaky, pyd all busy
    manager, run, _ = await running_all(tmp_path, plan)
    owner = manager.state.tasks["long"].agent
    with pytest.raises(OperatorError) as refused:
        manager.check_reassign("long")
    message = str(refused.value)
    assert message.startswith("no agent can take task long now: ")
    others = [a for a in ("wobbly", "shaky", "pyd") if a != owner]
    for agent in others:
        assert f"{agent} is full: 1 of 1 tasks running (max_concurrent_tasks 1)" in message
    await finish(manager, run)


async def test_reassign_a_task_only_its_agent_can_do_names_the_missing_capabilities(tmp_path: Path) -> None:
    manager, run, events = await running_all(tmp_path, wobbly_plan())
    assert manager.state.tasks["migrate"].agent == "pyd"
    with pytest.raises(OperatorError, match=r"^no other agent has python, db \(task migrate needs python, db\): it stays with pyd$"):
        manager.check_reassign("migrate")
    assert not [e for e in events if e.type == EventType.OPERATOR_ACTION]
    manager.op_reassign("migrate", "pyd")  # to its own agent: a fresh attempt in the slot it gives back
    assert manager.state.tasks["migrate"].agent == "pyd" and manager.state.tasks["migrate"].attempt == 2
    assert len(manager.state.agents["pyd"].current_tasks) <= manager.state.agents["pyd"].max_concurrent_tasks
    await finish(manager, run)


async def test_force_release_warns_then_the_holders_task_fails_as_warned(tmp_path: Path) -> None:
    plan = plan_dict()
    plan["settings"]["max_retries"] = 0
    plan["tasks"][0]["estimate"] = "1s"
    manager, run, events = await started_with(tmp_path, plan)
    (lock,) = manager.state.locks.values()
    holder = lock.agent_id
    assert manager.force_release_consequences(lock.lock_id) == (
        f"{holder}'s task long will fail when it reports: the lock it relies on is gone. "
        f"server/routes.ts may go into conflict: {holder} may go on writing it without the lock."
    )
    manager.op_force_release(lock.lock_id)
    await asyncio.wait_for(run, 10)
    task = manager.state.tasks["long"]
    assert task.status == "failed" and task.error is not None and "is no longer held" in task.error
    with pytest.raises(OperatorError, match="no lock 'L999' is held"):
        manager.force_release_consequences("L999")
