"""`why(task, state)`: what a task waits for or why it failed, read from states of real sprints.

The sprints run real shell commands with a real journal; the states are the recorded ones at the
moment a task blocked, failed or was retried, folded back by the replay cursor.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import SAMPLES, run_sprint, write_plan
from engine.models import AgentState, LockWaiter, ProjectState, ResourceLock, TaskResource, TaskState
from engine.plan import load_plan
from engine.replay import ReplayCursor
from engine.task_reasons import agent_blocked, agent_waits, short_path, shorten, why


def state_after(journal: Path, kind: str, task_id: str) -> ProjectState:
    """The recorded state just after the first `kind` event of `task_id`."""
    with ReplayCursor.open(journal) as cursor:
        for seq in range(1, cursor.total + 1):
            event = cursor.event(seq)
            if event.type == kind and event.data.get("taskId") == task_id:
                return cursor.state_at(seq)
    raise AssertionError(f"no {kind} of {task_id} in {journal}")


@pytest.fixture
async def blocked_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SPRINTDECK_HOLD_SECONDS", "2")
    return await run_sprint(load_plan(SAMPLES / "blocked" / "plan.yaml"), tmp_path)


async def test_a_blocked_task_names_the_path_and_the_holders_task(blocked_run) -> None:
    state = state_after(blocked_run.journal, "task_blocked", "migrate")
    assert state.tasks["migrate"].status == "blocked"
    assert why(state.tasks["migrate"], state) == "lock server/db ← update_schema"
    migrator = state.agents["migrator"]
    assert agent_blocked(migrator, state)
    assert agent_waits(migrator, state) == "migrate ← update_schema (server/db)"
    assert not agent_blocked(state.agents["dba"], state)  # the holder works


async def test_a_failed_task_says_its_attempt_and_error(blocked_run) -> None:
    state = blocked_run.result.state
    assert why(state.tasks["npm_test"], state) == "#1 failed: exit 1: npm test: 3 failing"
    assert why(state.tasks["update_schema"], state) == ""  # done: nothing to explain


async def test_a_pending_task_counts_its_dependencies(blocked_run) -> None:
    state = state_after(blocked_run.journal, "task_started", "update_schema")
    assert state.tasks["migrate"].status == "pending"
    assert why(state.tasks["migrate"], state) == "deps: 0 of 1 (waits for prepare_migration)"


def flaky_plan() -> dict:
    # The first attempt fails with a long multi-line error; the second succeeds.
    long = "x" * 100
    return {
        "sprint": "reasons",
        "settings": {"heartbeat_interval": "100ms", "max_retries": 1},
        "agents": [{"id": "sh", "kind": "shell"}],
        "tasks": [{"id": "build", "command": f"test -f marker || {{ touch marker; echo 'npm test {long}' >&2; exit 1; }}"}],
    }


async def test_a_retrying_task_keeps_its_failure_after_the_retry_is_assigned(tmp_path: Path) -> None:
    run = await run_sprint(write_plan(tmp_path, flaky_plan()), tmp_path)
    failed_at = state_after(run.journal, "task_failed", "build")
    task = failed_at.tasks["build"]
    assert task.status == "retrying"
    now = task.attempts[0].ended_at + timedelta(seconds=3)
    reason = why(task, failed_at, now)
    assert reason.startswith("#1 failed 3s ago: exit 1: npm test xxx") and reason.endswith("… · retry #2 due")
    assert len(reason) < 100  # the error is shortened, not the line's end
    # The retry's assignment clears task.error; the reason still names the first failure.
    with ReplayCursor.open(run.journal) as cursor:
        assigned = [s for s in range(1, cursor.total + 1)
                    if cursor.event(s).type == "task_assigned" and cursor.event(s).data["attempt"] == 2]
        retried = cursor.state_at(assigned[0])
    assert retried.tasks["build"].error is None
    assert why(retried.tasks["build"], retried).startswith("after #1 failed: exit 1: npm test")


# ---------------------------------------------------------------- shapes the sprints above do not reach


def _lock(path: str, agent: str, task: str | None, token: int) -> ResourceLock:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return ResourceLock(resource_id=path, lock_type="write", agent_id=agent, timestamp=at, ttl=30000,
                        lock_id=f"L{token}", token=token, expires_at=at, task_id=task)


def test_several_paths_are_summarised_with_every_holder() -> None:
    task = TaskState(id="migrate", status="blocked", blocked_on=["server/db", "server/api.py", "docs"])
    state = ProjectState(tasks={"migrate": task}, locks={
        "L1": _lock("server", "dba", "update_schema", 1),  # a directory lock covers server/db
        "L2": _lock("server/api.py", "web", "routes", 2),
    })
    assert why(task, state) == "locks server/db ← update_schema +2 more (routes)"


def test_a_lock_taken_outside_a_task_names_its_agent_and_a_queue_names_who_is_ahead() -> None:
    task = TaskState(id="b", status="blocked", blocked_on=["cfg.yaml"])
    state = ProjectState(tasks={"b": task}, locks={"L1": _lock("cfg.yaml", "operator-bot", None, 1)})
    assert why(task, state) == "lock cfg.yaml ← operator-bot"
    state.locks.clear()
    state.meta.waiters = [("cfg.yaml", LockWaiter(request_id="r1", agent_id="a", lock_type="write", task_id="first")),
                          ("cfg.yaml", LockWaiter(request_id="r2", agent_id="b", lock_type="write", task_id="b"))]
    assert why(task, state) == "lock cfg.yaml behind first"


def test_a_ready_task_says_which_agent_it_waits_for() -> None:
    task = TaskState(id="t", status="ready", requires=["python", "db"], resources=[TaskResource(path="a")])
    state = ProjectState(tasks={"t": task}, agents={"web": AgentState(id="web", capabilities=["js"])})
    assert why(task, state) == "no agent has python, db"
    state.agents["py"] = AgentState(id="py", capabilities=["python", "db"], status="busy", current_tasks=["x"])
    assert why(task, state) == "waits for a free agent (py 1/1)"
    state.agents["py"].max_concurrent_tasks = 2
    assert why(task, state) == "queued for py"
    state.agents["py"].status = "dead"
    assert why(task, state) == "waits for a capable agent (py dead)"
    state.meta.paused = True
    assert why(task, state) == "sprint paused"


def test_a_cancelled_task_gives_its_reason_and_errors_are_one_short_line() -> None:
    task = TaskState(id="t", status="cancelled", error="dependency npm_test failed")
    assert why(task, ProjectState(tasks={"t": task})) == "cancelled: dependency npm_test failed"
    assert shorten("a\n  b\tc") == "a b c"
    assert shorten("y" * 80, 10) == "yyyyyyyyy…"


def test_a_long_path_keeps_its_file_name_so_the_holder_stays_in_view() -> None:
    task = TaskState(id="integrate", status="blocked", blocked_on=["client/src/components/Call.tsx"])
    state = ProjectState(tasks={"integrate": task}, locks={"L1": _lock("client/src/components/Call.tsx", "b", "webrtc", 1)})
    assert why(task, state) == "lock …/components/Call.tsx ← webrtc"
    paths = ["server/db", "client/src/components/Call.tsx", "x/y/verylongname_of_some_file.ts"]
    assert [short_path(p) for p in paths] == ["server/db", "…/components/Call.tsx", "…ongname_of_some_file.ts"]


def test_a_pending_task_lists_at_most_two_open_dependencies() -> None:
    deps = ["a", "b", "c", "d"]
    task = TaskState(id="t", dependencies=deps)
    state = ProjectState(tasks={"t": task, **{d: TaskState(id=d, status="completed" if d == "a" else "running") for d in deps}})
    assert why(task, state) == "deps: 1 of 4 (waits for b, c +1 more)"
