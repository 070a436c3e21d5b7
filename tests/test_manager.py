"""The sprint manager end to end: real in-process agents, real files, a real journal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from conftest import SAMPLES, run_sprint, simple_plan, write_plan
from engine.events import EventType
from engine.journal import JournalWriter
from engine.manager import SprintManager
from engine.models import ProjectState
from engine.plan import load_plan
from engine.protocol import MANAGER_ID, MessageType, make_message
from engine.reducer import fold


def _dump(state: ProjectState) -> str:
    return json.dumps(state.model_dump(mode="json"), sort_keys=False)


def _of(events, kind):
    return [e for e in events if e.type == kind]


async def test_webrtc_sample_completes_and_journal_folds_to_live_state(tmp_path: Path) -> None:
    plan = load_plan(SAMPLES / "webrtc" / "plan.yaml")
    run = await run_sprint(plan, tmp_path)
    assert run.result.succeeded, {t.id: t.status for t in run.result.state.tasks.values()}
    assert set(run.result.state.tasks) == {t.id for t in plan.tasks}
    assert _dump(fold(run.events)) == _dump(run.result.state)
    assert run.result.state.version == run.events[-1].seq
    assert run.result.state.locks == {}


async def test_simulated_agents_change_the_files_they_lock(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, simple_plan())
    run = await run_sprint(plan, tmp_path)
    routes = (run.workspace / "server/routes.ts").read_text()
    assert "backend: api attempt 1" in routes
    assert not (run.workspace / "server/routes.ts.notes").exists()


async def test_flaky_sample_completes_through_retries(tmp_path: Path) -> None:
    plan = load_plan(SAMPLES / "flaky" / "plan.yaml")
    run = await run_sprint(plan, tmp_path, seed=0)  # the default seed: the README's run fails some attempts
    assert run.result.succeeded
    failed = _of(run.events, EventType.TASK_FAILED)
    assert failed and all(e.data["willRetry"] for e in failed)
    attempts = {t.id: t.attempt for t in run.result.state.tasks.values()}
    assert max(attempts.values()) > 1
    assert run.result.metrics.retries == len(failed)
    assert _dump(fold(run.events)) == _dump(run.result.state)


async def test_dependencies_complete_before_dependents_start(tmp_path: Path) -> None:
    plan = load_plan(SAMPLES / "webrtc" / "plan.yaml")
    run = await run_sprint(plan, tmp_path)
    completed_at = {e.data["taskId"]: e.seq for e in _of(run.events, EventType.TASK_COMPLETED)}
    for event in _of(run.events, EventType.TASK_ASSIGNED):
        for dep in plan.task(event.data["taskId"]).depends_on:
            assert completed_at[dep] < event.seq, (event.data["taskId"], dep)


def _start_reports(events) -> dict[str, int]:
    """How many `task_update` messages at progress 0 each task's agents sent."""
    counts: dict[str, int] = {}
    for event in _of(events, EventType.MESSAGE):
        message = event.data["message"]
        if message["type"] == MessageType.TASK_UPDATE and message["payload"].get("progress") == 0.0:
            task_id = message["payload"]["taskId"]
            counts[task_id] = counts.get(task_id, 0) + 1
    return counts


async def test_an_attempt_with_a_running_phase_reports_its_start_and_an_instant_one_goes_straight_to_completed(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        simple_plan(
            tasks=[
                {"id": "timed", "requires": ["api"], "estimate": "1s"},
                {"id": "instant", "requires": ["api"], "estimate": 0, "depends_on": ["timed"]},
            ]
        ),
    )
    run = await run_sprint(plan, tmp_path)
    assert run.result.succeeded
    assert _start_reports(run.events) == {"timed": 1}
    started = {e.data["taskId"] for e in _of(run.events, EventType.TASK_STARTED)}
    assert started == {"timed"}
    # The instant attempt went from assigned to completed; its completion is its start.
    instant = run.result.state.tasks["instant"]
    assert instant.status == "completed" and instant.started_at == instant.completed_at is not None
    timed = run.result.state.tasks["timed"]
    assert timed.started_at < timed.completed_at
    assert _dump(fold(run.events)) == _dump(run.result.state)


async def test_collaborative_task_runs_on_every_listed_agent(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        simple_plan(
            tasks=[
                {
                    "id": "pair",
                    "agents": ["backend", "frontend"],
                    "coordination": "collaborative",
                    "shared_resources": ["client/ws.ts"],
                }
            ]
        ),
    )
    run = await run_sprint(plan, tmp_path)
    (assigned,) = _of(run.events, EventType.TASK_ASSIGNED)
    assert assigned.data["agents"] == ["backend", "frontend"]
    completes = [
        e for e in _of(run.events, EventType.MESSAGE) if e.data["message"]["type"] == "task_complete"
    ]
    assert {e.data["message"]["from"] for e in completes} == {"backend", "frontend"}
    assert run.result.state.tasks["pair"].agents == ["backend", "frontend"]
    assert run.result.state.tasks["pair"].status == "completed"


async def test_failed_task_without_retries_cancels_its_dependents(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        simple_plan(
            agents=[{"id": "backend", "capabilities": ["api"], "failure_rate": 1.0}],
            tasks=[
                {"id": "a", "max_retries": 1},
                {"id": "b", "depends_on": ["a"]},
                {"id": "c", "depends_on": ["b"]},
            ],
        ),
    )
    run = await run_sprint(plan, tmp_path)
    tasks = run.result.state.tasks
    assert (tasks["a"].status, tasks["a"].attempt, tasks["a"].failures) == ("failed", 2, 2)
    assert tasks["b"].status == tasks["c"].status == "cancelled"
    assert "dependency a failed" in tasks["b"].error
    assert not run.result.succeeded
    retry_delays = [e.data["retryIn"] for e in _of(run.events, EventType.TASK_FAILED) if e.data["willRetry"]]
    assert len(retry_delays) == 1 and retry_delays[0] > 0


async def test_write_locks_serialise_tasks_and_readers_share(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        simple_plan(
            agents=[{"id": f"a{i}", "max_concurrent_tasks": 1} for i in range(3)],
            tasks=[
                {"id": "w1", "resources": ["src"], "estimate": "2s"},
                {"id": "w2", "resources": ["src/app.ts"], "estimate": "2s"},
                {"id": "r1", "resources": [{"path": "docs", "mode": "read"}]},
            ],
        ),
    )
    run = await run_sprint(plan, tmp_path)
    assert run.result.succeeded
    # The directory lock on src covers src/app.ts: one of the writers had to wait.
    blocked = _of(run.events, EventType.TASK_BLOCKED)
    assert [e.data["taskId"] for e in blocked] in (["w1"], ["w2"])
    granted_at = {}
    released_at = {}
    for e in run.events:
        if e.type == EventType.LOCK_GRANTED:
            granted_at[e.data["taskId"]] = e.seq
        if e.type == EventType.TASK_COMPLETED:
            released_at[e.data["taskId"]] = e.seq
    first, second = sorted(["w1", "w2"], key=lambda t: granted_at[t])
    assert released_at[first] < granted_at[second]
    assert run.result.metrics.resource_contention


async def test_stale_completion_is_refused_and_recorded(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, simple_plan(tasks=[{"id": "slow", "estimate": "20s"}]))
    workspace = tmp_path / "ws"
    workspace.mkdir()
    manager = SprintManager(plan, workspace=workspace, speed=10.0)
    events = []
    manager.subscribe(events.append)
    run = asyncio.create_task(manager.execute_sprint())
    while "slow" not in manager.state.tasks or manager.state.tasks["slow"].status != "running":
        await asyncio.sleep(0.01)
    task = manager.state.tasks["slow"]
    stale = make_message(MessageType.TASK_COMPLETE, task.agent, MANAGER_ID, {"taskId": "slow", "attempt": 7})
    await manager.handle_ipc_message(stale)
    assert manager.state.tasks["slow"].status == "running"
    (refused,) = _of(events, EventType.COMPLETION_REFUSED)
    assert "stale attempt 7" in refused.data["reason"] and "current attempt 1" in refused.data["reason"]
    manager.op_cancel("slow")
    result = await asyncio.wait_for(run, 10)
    assert result.state.tasks["slow"].status == "cancelled"


async def test_bad_messages_get_agent_error_and_the_engine_keeps_running(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, simple_plan())
    errors: list = []

    def setup(manager: SprintManager) -> None:
        inbox = manager.transport.subscribe("spy")

        async def drain() -> None:
            while True:
                errors.append(await inbox.get())

        async def misbehave() -> None:
            await asyncio.sleep(0.01)
            # Unknown sender, a manager-only type, an unknown task, a path escaping the workspace.
            bad = [
                make_message(MessageType.HEARTBEAT, "nobody", MANAGER_ID, {}),
                make_message(MessageType.TASK_ASSIGN, "backend", MANAGER_ID, {"taskId": "api", "attempt": 1}),
                make_message(MessageType.TASK_FAILED, "backend", MANAGER_ID, {"taskId": "zzz", "attempt": 1, "error": "x"}),
                make_message(
                    MessageType.RESOURCE_LOCK, "backend", MANAGER_ID, {"resourceId": "../etc/passwd", "lockType": "read"}
                ),
            ]
            for message in bad:
                await manager.handle_ipc_message(message)

        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: (loop.create_task(drain()), loop.create_task(misbehave())))

    run = await run_sprint(plan, tmp_path, setup=setup)
    assert run.result.succeeded
    rejected = _of(run.events, EventType.MESSAGE_REJECTED)
    fields = [e.data["field"] for e in rejected]
    assert fields == ["from", "type", "payload.taskId", "payload.resourceId"]
    assert "leaves the workspace" in rejected[-1].data["reason"]
    assert run.result.state.meta.rejected_messages == 4


async def test_dead_agent_loses_its_locks_and_its_task_moves_on(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        simple_plan(
            settings={"heartbeat_interval": "50ms", "heartbeat_timeout": "300ms", "lock_delay": "100ms"},
            agents=[{"id": "one", "capabilities": ["api"]}, {"id": "two", "capabilities": ["api"]}],
            tasks=[{"id": "long", "requires": ["api"], "estimate": "3s", "resources": ["server/routes.ts"]}],
        ),
    )
    killed: list[str] = []

    def setup(manager: SprintManager) -> None:
        def on_event(event) -> None:
            if event.type == EventType.TASK_STARTED and not killed:
                victim = manager.state.tasks["long"].agent
                killed.append(victim)
                agent = next(a for a in manager.agents if a.id == victim)
                asyncio.get_running_loop().create_task(agent.crash())

        manager.subscribe(on_event)

    run = await run_sprint(plan, tmp_path, speed=2.0, setup=setup)
    (dead,) = _of(run.events, EventType.AGENT_DEAD)
    assert dead.data["agentId"] == killed[0]
    assert dead.data["requeuedTasks"] == ["long"] and len(dead.data["releasedLocks"]) == 1
    task = run.result.state.tasks["long"]
    assert task.status == "completed" and task.attempt == 2 and task.agent != killed[0]
    assert task.agent_deaths == 1 and task.failures == 0
    assert run.result.state.agents[killed[0]].status == "dead"
    assert run.result.metrics.agent_deaths == 1
    assert _dump(fold(run.events)) == _dump(run.result.state)


async def test_pinned_tasks_run_only_on_their_agent(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        simple_plan(
            agents=[{"id": f"a{i}", "max_concurrent_tasks": 2} for i in range(4)],
            tasks=[{"id": f"t{i}", "agent": "a2"} for i in range(5)],
        ),
    )
    run = await run_sprint(plan, tmp_path)
    assert {e.data["agents"][0] for e in _of(run.events, EventType.TASK_ASSIGNED)} == {"a2"}


async def test_journal_is_durable_before_assignments_are_sent(tmp_path: Path) -> None:
    """No agent hears of an assignment before the journal has made that assignment durable."""
    plan = write_plan(tmp_path, simple_plan())
    journal = JournalWriter.create(tmp_path / "j.jsonl", {"sprint": "test"})
    manager = SprintManager(plan, workspace=tmp_path, journal=journal, speed=200.0)
    assigned_seq: dict[tuple[str, int], int] = {}
    checked: list[tuple[int, int]] = []
    manager.subscribe(
        lambda e: assigned_seq.__setitem__((e.data["taskId"], e.data["attempt"]), e.seq)
        if e.type == EventType.TASK_ASSIGNED
        else None
    )
    original_send = manager.transport.send

    async def send(message):
        if message.type == MessageType.TASK_ASSIGN:
            key = (message.payload.task_id, message.payload.attempt)
            checked.append((journal.durable_seq, assigned_seq[key]))
        await original_send(message)

    manager.transport.send = send
    await manager.execute_sprint()
    journal.close()
    assert len(checked) == 3
    assert all(durable >= seq for durable, seq in checked), checked


async def test_large_generated_sprint_completes_and_replays_exactly(tmp_path: Path) -> None:
    plan = load_plan(SAMPLES / "large" / "plan.yaml")
    assert len(plan.tasks) >= 500 and len(plan.agents) >= 20
    run = await run_sprint(plan, tmp_path, seed=11, speed=50.0)
    assert run.result.succeeded
    assert _dump(fold(run.events)) == _dump(run.result.state)
    busiest = max(run.result.metrics.agent_utilization.values())
    assert 0 < busiest <= 1.0


async def test_two_tasks_of_one_agent_share_a_reentrant_lock_until_both_end(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        simple_plan(
            agents=[{"id": "solo", "max_concurrent_tasks": 2}],
            tasks=[
                {"id": "short", "estimate": "200ms", "resources": ["src/app.ts"]},
                {"id": "long", "estimate": "2s", "resources": ["src/app.ts"]},
            ],
        ),
    )
    run = await run_sprint(plan, tmp_path, speed=1.0)
    assert run.result.succeeded
    granted = [e for e in _of(run.events, EventType.LOCK_GRANTED)]
    assert len({e.data["lockId"] for e in granted}) == 1  # the same grant, re-asked
    (released,) = _of(run.events, EventType.LOCK_RELEASED)
    long_done = next(e.seq for e in _of(run.events, EventType.TASK_COMPLETED) if e.data["taskId"] == "long")
    assert released.seq > long_done  # not released when the short task ended


async def test_the_collector_is_tuned_while_a_sprint_runs_and_restored_after(tmp_path: Path) -> None:
    """Long-lived sprint structures are frozen out of full collections and young collections are
    spaced out during the sprint (engine/collector.py: collector_tuned_for_sprint); stop undoes both."""
    import gc

    from engine.collector import SPRINT_GC_THRESHOLD

    before = (gc.get_threshold(), gc.get_freeze_count())
    seen: list[tuple[int, int]] = []
    plan = write_plan(tmp_path, simple_plan())

    def watch(manager: SprintManager) -> None:
        manager.subscribe(lambda event: seen.append((gc.get_threshold()[0], gc.get_freeze_count())))

    run = await run_sprint(plan, tmp_path, setup=watch)
    assert run.result.succeeded
    during = seen[-2]  # the last event before the sprint finished
    assert during[0] >= SPRINT_GC_THRESHOLD and during[1] > 0
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


async def test_the_start_events_task_states_are_frozen_before_any_collection_walks_them(tmp_path: Path) -> None:
    """Between the start event and the freeze, a young collection would walk every new task state."""
    import gc

    raw = simple_plan()
    raw["tasks"] = [{"id": f"t{i}", "requires": ["api"]} for i in range(3000)]
    plan = write_plan(tmp_path, raw)
    frozen_before = gc.get_freeze_count()
    walked: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start" and manager.state.version >= 1 and gc.get_freeze_count() == frozen_before:
            walked.append(info["generation"])

    manager = SprintManager(plan, workspace=tmp_path, seed=0, speed=200.0)
    gc.callbacks.append(record)
    try:
        await manager.start()
    finally:
        gc.callbacks.remove(record)
        await manager.stop()
    assert len(manager.state.tasks) == 3000 and gc.get_freeze_count() == frozen_before
    assert walked == []
