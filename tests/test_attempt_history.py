"""A retried task keeps each attempt's outcome: the first failure's reason outlives the retry."""

from __future__ import annotations

from pathlib import Path

from conftest import run_sprint, write_plan
from engine.replay import ReplayCursor


def flaky_plan() -> dict:
    # The first attempt leaves a marker and fails; the second finds it and succeeds.
    return {
        "sprint": "attempts",
        "settings": {"heartbeat_interval": "100ms", "max_retries": 1},
        "agents": [{"id": "sh", "kind": "shell"}],
        "tasks": [{"id": "build", "command": "test -f marker || { touch marker; echo 'npm test: 2 failing' >&2; exit 1; }"}],
    }


async def test_a_retried_task_keeps_the_first_attempts_failure(tmp_path: Path) -> None:
    run = await run_sprint(write_plan(tmp_path, flaky_plan()), tmp_path)
    task = run.result.state.tasks["build"]
    assert task.status == "completed" and task.error is None  # the live field is the last attempt's
    first, second = task.attempts
    assert (first.number, first.agents, first.outcome) == (1, ["sh"], "failed")
    assert first.error == "exit status 1: npm test: 2 failing"
    assert first.started_at is not None and first.ended_at is not None and first.started_at <= first.ended_at
    assert (second.number, second.outcome, second.error) == (2, "completed", None)


async def test_a_replay_folds_the_same_attempts_and_digests_are_unchanged(tmp_path: Path) -> None:
    run = await run_sprint(write_plan(tmp_path, flaky_plan()), tmp_path)
    cursor = ReplayCursor.open(run.journal)
    # the fold checks every journaled state digest as it passes it
    folded = cursor.state_at(cursor.total).tasks["build"].attempts
    assert [(a.number, a.outcome, a.error) for a in folded] == [
        (a.number, a.outcome, a.error) for a in run.result.state.tasks["build"].attempts
    ]
    assert "attempts" not in run.result.state.model_dump_json()  # not part of the wire shape


def exit_code_plan() -> dict:
    # Attempt 1 holds src/app.py and exits 3; attempt 2 succeeds.
    return {
        "sprint": "exit-codes",
        "settings": {"heartbeat_interval": "100ms", "max_retries": 1},
        "agents": [{"id": "sh", "kind": "shell"}],
        "tasks": [{"id": "build", "resources": ["src/app.py"],
                   "command": "test -f marker || { touch marker; echo 'pytest: 1 failed' >&2; exit 3; }"}],
    }


async def test_each_attempt_keeps_its_exit_code_and_the_locks_it_let_go_of(tmp_path: Path) -> None:
    run = await run_sprint(write_plan(tmp_path, exit_code_plan()), tmp_path)
    first, second = run.result.state.tasks["build"].attempts
    assert (first.outcome, first.exit_code, first.error) == ("failed", 3, "exit status 3: pytest: 1 failed")
    assert first.released_locks == ["src/app.py"]
    assert (second.outcome, second.exit_code, second.released_locks) == ("completed", 0, ["src/app.py"])
    # The journal says it too, and a replay folds the same record.
    failed = [e.data for e in run.events if e.type == "task_failed"]
    assert failed == [{"taskId": "build", "attempt": 1, "error": "exit status 3: pytest: 1 failed",
                       "willRetry": True, "retryIn": failed[0]["retryIn"], "exitCode": 3}]
    folded = ReplayCursor.open(run.journal).state_at(run.events[-1].seq).tasks["build"].attempts
    assert [(a.exit_code, a.released_locks) for a in folded] == [(3, ["src/app.py"]), (0, ["src/app.py"])]


async def test_a_failure_without_a_command_journals_no_exit_code(tmp_path: Path) -> None:
    plan = exit_code_plan()
    plan["tasks"][0]["command"] = None
    del plan["tasks"][0]["command"]
    run = await run_sprint(write_plan(tmp_path, plan), tmp_path)
    failed = [e.data for e in run.events if e.type == "task_failed"]
    assert failed and all("exitCode" not in data for data in failed)  # old shape kept where nothing ran
    assert run.result.state.tasks["build"].attempts[0].exit_code is None
