"""The seed's AgentConfig limits and dependencies, enforced; plan settings for agents' lives checked.

* `max_execution_time` stops an attempt of any kind of agent (a simulated one, a shell command,
  and, past a grace, the manager itself for an agent that does not stop), with a clear reason;
* `max_memory_usage` caps a command's address space (RLIMIT_AS), and the failure says so;
* `dependencies`: an agent gets work only once the agents it depends on are ready;
* an embedded agent that crashes is recorded dead and started again (`agent_restarted`);
* `disconnect_grace`, `max_task_deaths` and `dependencies` are validated with file and line.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from conftest import run_sprint, write_plan
from engine.events import EventType
from engine.manager import SprintManager
from engine.plan import PlanError, load_plan
from engine.protocol import MANAGER_ID, MessageType, make_message


def plan_of(agents: list[dict], tasks: list[dict], **settings: object) -> dict:
    return {"sprint": "limits", "settings": {"heartbeat_interval": "100ms", "max_retries": 0, **settings},
            "agents": agents, "tasks": tasks}


async def test_max_execution_time_stops_a_simulated_and_a_shell_attempt_with_the_reason(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, plan_of(
        [{"id": "sim", "max_execution_time": "200ms"}, {"id": "sh", "kind": "shell", "max_execution_time": "300ms"}],
        [{"id": "slow-sim", "agent": "sim", "estimate": "30s"},
         {"id": "slow-sh", "agent": "sh", "command": "sleep 30"}],
    ))
    run = await run_sprint(plan, tmp_path, speed=1.0)
    tasks = run.result.state.tasks
    assert tasks["slow-sim"].status == "failed"
    assert tasks["slow-sim"].error == "exceeded max_execution_time of 0.2s and was stopped"
    assert tasks["slow-sh"].status == "failed"
    assert tasks["slow-sh"].error == "exceeded max_execution_time of 0.3s; its process group was killed"


async def test_max_memory_usage_caps_a_command_and_the_failure_names_it(tmp_path: Path) -> None:
    grab = f"{sys.executable} -c 'x = bytearray(1 << 30)'"  # 1 GiB, over the cap
    plan = write_plan(tmp_path, plan_of(
        [{"id": "sh", "kind": "shell", "max_memory_usage": "200MB"}],
        [{"id": "greedy", "command": grab}, {"id": "modest", "command": f"{sys.executable} -c 'x = bytearray(1 << 20)'"}],
    ))
    run = await run_sprint(plan, tmp_path)
    tasks = run.result.state.tasks
    assert tasks["modest"].status == "completed"
    assert tasks["greedy"].status == "failed"
    assert tasks["greedy"].error.startswith("exceeded max_memory_usage of 200 MiB (RLIMIT_AS): exit status 1")
    assert "MemoryError" in tasks["greedy"].error


async def test_the_manager_fails_an_attempt_whose_agent_does_not_stop_at_its_limit(tmp_path: Path) -> None:
    """An agent that ignores its limit (a client of its own): the manager stops it after a grace."""
    plan = write_plan(tmp_path, plan_of(
        [{"id": "own", "kind": "external", "max_execution_time": "100ms"}, {"id": "sim"}],
        [{"id": "forever", "agent": "own"}, {"id": "other", "agent": "sim", "estimate": "5s"}],
        heartbeat_timeout="60s",
    ))  # `other` keeps the sprint going while the manager's grace runs out, and the agent is told
    from engine.attempts import OVERRUN_GRACE

    def setup(manager: SprintManager) -> None:
        inbox = manager.transport.subscribe("own")  # the external agent: it takes work and never ends it

        async def agent() -> None:
            await asyncio.sleep(0.05)  # joins once the sprint has started
            await manager.transport.send(make_message(MessageType.AGENT_READY, "own", MANAGER_ID, {}))
            while True:
                await inbox.get()

        tasks.append(asyncio.get_running_loop().create_task(agent()))

    tasks: list[asyncio.Task[None]] = []
    run = await run_sprint(plan, tmp_path, setup=setup, speed=1.0)
    for task in tasks:
        task.cancel()
    forever = run.result.state.tasks["forever"]
    reason = "exceeded max_execution_time of 0.1s; stopped by the sprint manager"
    assert forever.status == "failed" and forever.error == reason
    told = [e.data["message"] for e in run.events if e.type == EventType.MESSAGE]
    assert [m["payload"]["reason"] for m in told if m["type"] == "task_cancel" and m["to"] == "own"] == [reason]
    assert OVERRUN_GRACE > 0


async def test_an_agent_gets_work_only_once_the_agents_it_depends_on_are_ready(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, plan_of(
        [{"id": "db", "kind": "external"}, {"id": "api", "capabilities": ["api"], "dependencies": ["db"]}],
        [{"id": "serve", "requires": ["api"]}],
        heartbeat_timeout="60s",
    ))
    events: list[str] = []

    def setup(manager: SprintManager) -> None:
        inbox = manager.transport.subscribe("db")
        manager.subscribe(lambda event: events.append(event.type))

        async def db_joins_late() -> None:
            await asyncio.sleep(0.5)
            events.append("db joins")
            await manager.transport.send(make_message(MessageType.AGENT_READY, "db", MANAGER_ID, {}))
            while True:
                await inbox.get()

        joins.append(asyncio.get_running_loop().create_task(db_joins_late()))

    joins: list[asyncio.Task[None]] = []
    run = await run_sprint(plan, tmp_path, setup=setup)
    for task in joins:
        task.cancel()
    assert run.result.state.tasks["serve"].status == "completed"
    assert events.index("db joins") < events.index(EventType.TASK_ASSIGNED)


async def test_an_embedded_agent_that_crashes_is_recorded_dead_and_restarted(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, plan_of(
        [{"id": "sh", "kind": "shell"}],
        [{"id": "first", "command": "sleep 0.5"}, {"id": "second", "depends_on": ["first"], "command": "true"}],
        max_retries=2,
    ))

    def setup(manager: SprintManager) -> None:
        def crash_on_assignment(event: object) -> None:
            if getattr(event, "type", None) == EventType.TASK_STARTED and not crashed:
                crashed.append(True)
                agent = manager.agents[0]

                def injected_fault(message: object) -> None:  # once: the restarted agent is itself again
                    del agent.handle
                    raise RuntimeError("injected fault")

                agent.handle = injected_fault  # type: ignore[method-assign]  # its next message kills its loop
                agent.inbox.put(make_message(MessageType.BROADCAST_INFO, MANAGER_ID, "sh", {"info": "poke"}))

        manager.subscribe(crash_on_assignment)

    crashed: list[bool] = []
    run = await run_sprint(plan, tmp_path, setup=setup)
    assert crashed and run.result.succeeded
    [dead] = [e.data for e in run.events if e.type == EventType.AGENT_DEAD]
    assert dead["agentId"] == "sh" and dead["reason"] == "crashed: RuntimeError('injected fault')"
    assert dead["requeuedTasks"] == ["first"]
    [restart] = [e.data for e in run.events if e.type == EventType.AGENT_RESTARTED]
    assert restart["agentId"] == "sh" and restart["restart"] == 1 and restart["reason"] == dead["reason"]
    assert run.result.state.tasks["first"].attempt == 2


@pytest.mark.parametrize(
    ("settings", "agents", "message"),
    [
        ({"disconnect_grace": "0s"}, None,
         "plan.yaml:5: settings: disconnect_grace: should be more than 0 and at most heartbeat_timeout (5s), got 0s"),
        ({"disconnect_grace": "10s"}, None,
         "plan.yaml:5: settings: disconnect_grace: should be more than 0 and at most heartbeat_timeout (5s), got 10s"),
        ({"max_task_deaths": 0}, None, "plan.yaml:5: settings: max_task_deaths: should be greater than or equal to 1, got 0"),
        ({}, [{"id": "a", "dependencies": ["nobody"]}],
         "plan.yaml:8: agent 'a': dependencies: unknown agent 'nobody'"),
        ({}, [{"id": "a", "dependencies": ["b"]}, {"id": "b", "dependencies": ["a"]}],
         "plan.yaml:7: agent 'a': dependencies: agents depend on each other in a cycle (a -> b -> a)"),
    ],
)
def test_lifecycle_settings_and_agent_dependencies_are_checked(
    tmp_path: Path, settings: dict, agents: list | None, message: str
) -> None:
    import yaml

    plan = {"sprint": "x", "description": "d", "workspace": None, "settings": {"heartbeat_timeout": "5s", **settings},
            "agents": agents or [{"id": "a"}], "tasks": [{"id": "t"}]}
    del plan["workspace"]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    assert [str(problem).replace(str(tmp_path) + "/", "") for problem in caught.value.problems] == [message]
