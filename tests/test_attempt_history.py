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
