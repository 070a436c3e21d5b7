"""`sprintdeck log JOURNAL`: the seed's ActivityLog of a real recorded sprint, as a user reads it.

Each test records a sprint with `sprintdeck run --headless --record` (a separate process, the
sample plans as shipped) and reads its log back with `sprintdeck log`, asserting on what a user
would look for: a failed attempt's error and duration, who held a lock and for how long, the
filters, and bad input that exits 2 naming the file and line without touching the journal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES

SPRINTDECK = [sys.executable, "-m", "app.cli"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
SEED_KEYS = ("timestamp", "agentId", "action", "resourceId", "taskId", "duration", "success", "error")


def sprintdeck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SPRINTDECK, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def flaky(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The flaky sample, seed 0: `packaging` fails three times on `wobbly`, then completes."""
    journal = tmp_path_factory.mktemp("flaky") / "run.jsonl"
    done = sprintdeck("run", str(SAMPLES / "flaky/plan.yaml"), "--headless", "--record", str(journal), "--speed", "50")
    assert done.returncode == 0, done.stderr
    return journal


def log_json(journal: Path, *args: str) -> list[dict]:
    done = sprintdeck("log", str(journal), "--json", *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_failed_attempt_shows_its_agent_error_and_duration(flaky: Path) -> None:
    entries = log_json(flaky)
    for entry in entries:  # the seed's field names, in the seed's order; absent values left out
        keys = [key for key in entry if key in SEED_KEYS]
        assert keys == [key for key in SEED_KEYS if key in entry]
        assert {"timestamp", "agentId", "action", "success"} <= set(entry)
    failures = [e for e in entries if e["action"] == "task_failed"]
    assert failures, "the flaky sprint's seed-0 run fails packaging three times"
    first = failures[0]
    assert first["agentId"] == "wobbly" and first["taskId"] == "packaging" and first["success"] is False
    assert first["error"] == "simulated failure of packaging attempt 1"
    assert first["duration"] > 0  # from the attempt's start to its failure, in ms
    completed = [e for e in entries if e["action"] == "task_completed" and e["taskId"] == "packaging"]
    assert len(completed) == 1 and completed[0]["success"] is True and "attempt 4" in completed[0]["detail"]
    assert entries[-1]["action"] == "sprint_finished" and entries[-1]["agentId"] == "sprint_manager"
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)


def test_a_lock_names_its_holder_task_and_hold_time(flaky: Path) -> None:
    entries = log_json(flaky)
    acquired = next(e for e in entries if e["action"] == "lock_acquired" and e["resourceId"] == "src/api.py")
    lock_id = acquired["detail"].split()[2].rstrip(",")  # "write lock L5, token 5"
    released = next(e for e in entries if e["action"] == "lock_released" and f" lock {lock_id}" in e["detail"])
    holder = acquired["agentId"]
    assert holder in ("steady", "shaky", "wobbly") and released["agentId"] == holder
    assert acquired["taskId"] == released["taskId"] == "api_errors"
    assert acquired["detail"].startswith("write lock") and released["resourceId"] == "src/api.py"
    held_ms = released["duration"]
    assert held_ms > 0 and released["seq"] > acquired["seq"]
    # The hold covers the attempt: granted before it started, released after it ended.
    ended = next(e for e in entries if e["action"] in ("task_completed", "task_failed") and e["taskId"] == "api_errors"
                 and e["seq"] > acquired["seq"])
    assert ended["agentId"] == holder and held_ms >= ended["duration"] > 0
    changed = [e for e in entries if e["action"] == "file_changed" and e["resourceId"] == "src/api.py"]
    assert changed and all(e["taskId"] == "api_errors" for e in changed)  # credited to the task holding the lock


def test_filters_by_agent_and_by_task(flaky: Path) -> None:
    everything = log_json(flaky)
    wobbly = log_json(flaky, "--agent", "wobbly")
    assert wobbly and {e["agentId"] for e in wobbly} == {"wobbly"}
    assert wobbly == [e for e in everything if e["agentId"] == "wobbly"]
    docs = log_json(flaky, "--task", "docs")
    assert docs and {e["taskId"] for e in docs} == {"docs"}
    assert {e["action"] for e in docs} >= {"task_assigned", "lock_acquired", "task_completed", "lock_released"}
    both = log_json(flaky, "--agent", "wobbly", "--task", "packaging")
    assert both and all(e["agentId"] == "wobbly" and e["taskId"] == "packaging" for e in both)
    assert sum(e["action"] == "task_failed" for e in both) == 3


def test_the_table_is_aligned_and_says_what_failed(flaky: Path) -> None:
    done = sprintdeck("log", str(flaky), "--task", "packaging")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = lines[0]
    assert header.split() == ["TIME", "AGENT", "ACTION", "TASK", "RESOURCE", "DURATION", "OK", "ERROR", "/", "DETAIL"]
    column = header.index("ACTION")
    assert all(line[column - 2:column] == "  " and line[column] != " " for line in lines[1:])
    failed = [line for line in lines if " task_failed " in line]
    assert len(failed) == 3
    assert all(" FAIL " in line and "simulated failure of packaging attempt" in line for line in failed)
    assert len(lines) == 1 + len(log_json(flaky, "--task", "packaging"))


def test_a_conflict_is_logged_as_a_failure_naming_the_file(tmp_path: Path) -> None:
    journal = tmp_path / "conflict.jsonl"
    done = sprintdeck("run", str(SAMPLES / "conflict/plan.yaml"), "--headless", "--record", str(journal))
    assert done.returncode in (0, 1), done.stderr
    conflicts = [e for e in log_json(journal) if e["action"] == "file_conflict"]
    assert len(conflicts) == 1
    assert conflicts[0]["resourceId"] == "src/config.py" and conflicts[0]["success"] is False
    assert "read locks" in conflicts[0]["error"]


# ---------------------------------------------------------------- bad input


def _untouched(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


def test_a_torn_tail_is_bad_input_named_by_line_and_the_journal_is_not_modified(flaky: Path, tmp_path: Path) -> None:
    torn = tmp_path / "torn.jsonl"
    data = flaky.read_bytes()
    torn.write_bytes(data[:-30])  # the last record cut short, as a crash mid-write leaves it
    lines = data[:-30].count(b"\n") + 1
    before = _untouched(torn)
    done = sprintdeck("log", str(torn), "--json")
    assert done.returncode == 2
    assert done.stdout == ""  # nothing half-printed before the error
    assert f"{torn}:{lines}: record seq {lines - 1}: torn" in done.stderr
    assert "run --resume" in done.stderr and "Traceback" not in done.stderr
    assert _untouched(torn) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["torn.jsonl"]  # no .broken copy either


def test_a_corrupt_record_in_the_middle_names_its_line(flaky: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.jsonl"
    lines = flaky.read_bytes().split(b"\n")
    lines[9] = lines[9].replace(b'"seq":9,', b'"seq":9, ')  # same record, bytes its crc does not cover
    corrupt.write_bytes(b"\n".join(lines))
    done = sprintdeck("log", str(corrupt))
    assert done.returncode == 2
    assert f"{corrupt}:10: record seq 9: crc mismatch" in done.stderr


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: None, "{path}: no such journal"),
        (lambda p: p.write_text("hello\n"), "{path}:1: not a sprintdeck journal"),
        (lambda p: p.write_text(""), "{path}:1: not a sprintdeck journal (empty file"),
        (lambda p: p.mkdir(), "{path}: is a directory, not a journal"),
        (lambda p: os.mkfifo(p), "{path}: is not a regular file (a FIFO or a device)"),
    ],
    ids=["missing", "not-a-journal", "empty", "directory", "fifo"],
)
def test_what_is_not_a_journal_exits_2_with_a_sentence(tmp_path: Path, make, expected: str) -> None:
    path = tmp_path / "j.jsonl"
    make(path)
    done = sprintdeck("log", str(path))  # a FIFO must not block the reader: the timeout guards that
    assert done.returncode == 2
    assert expected.format(path=path) in done.stderr
    assert "Traceback" not in done.stderr and "Errno" not in done.stderr


def test_a_filter_that_names_nothing_in_the_journal_is_bad_input(flaky: Path) -> None:
    done = sprintdeck("log", str(flaky), "--agent", "wobly")
    assert done.returncode == 2
    assert "--agent wobly" in done.stderr and "no agent 'wobly'" in done.stderr and "wobbly" in done.stderr
    done = sprintdeck("log", str(flaky), "--task", "nope")
    assert done.returncode == 2 and "no task 'nope'" in done.stderr and "packaging" in done.stderr


def test_a_killed_agent_shows_as_died_with_its_locks_and_attempt_ended(tmp_path: Path) -> None:
    """kill -9 of a `sprintdeck agent` mid-task: its death, the locks it lost and the attempt it
    lost are in the log, each failed with the reason; the next attempt completes."""
    from test_serve import Proc, finish_all, listening_on, records_of, serve, wait_for, write_plan

    directory = Path(tempfile.mkdtemp(prefix="sd-log-", dir="/tmp"))  # a short socket path
    try:
        write_plan(directory, {
            "sprint": "dies",
            "settings": {"heartbeat_interval": "100ms", "heartbeat_timeout": "2s", "lock_ttl": "30s"},
            "agents": [{"id": "worker", "kind": "external", "capabilities": ["work"]}],
            "tasks": [{"id": "slow", "requires": ["work"], "resources": ["again", "out.txt"],
                       "command": "if [ -f again ]; then echo second > out.txt; else touch again; sleep 30; fi"}],
        })
        journal = directory / "run.jsonl"
        server = serve(directory / "plan.yaml", f"unix:{directory}/deck.sock", directory, "--record", str(journal),
                       "--workspace", str(directory / "ws"))
        agents: list[Proc] = []
        try:
            address = listening_on(server)
            token = ["--token-file", str(directory / "run.tokens/worker.token")]
            agents.append(Proc.start(["agent", "--connect", address, "--id", "worker", *token], "first", directory))
            wait_for(lambda: (directory / "ws/again").exists(), "the first attempt's command", server.process)
            agents[0].kill()  # SIGKILL
            wait_for(lambda: bool(records_of(journal, "agent_dead")), "the agent's death", server.process)
            agents.append(Proc.start(["agent", "--connect", address, "--id", "worker", *token], "second", directory))
            assert server.finish().returncode == 0, server.stderr()
        finally:
            server.kill()
            finish_all(agents)
        entries = log_json(journal, "--agent", "worker")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    died = [e for e in entries if e["action"] == "agent_died"]
    assert len(died) == 1 and died[0]["success"] is False and died[0]["error"]
    after = [e for e in entries if e["seq"] >= died[0]["seq"]]
    lost_locks = [e for e in after if e["action"] == "lock_released" and e["seq"] == died[0]["seq"]]
    assert sorted(e["resourceId"] for e in lost_locks) == ["again", "out.txt"]
    for lock in lost_locks:
        assert lock["success"] is False and lock["error"].startswith("worker died: ") and lock["duration"] > 0
        assert lock["taskId"] == "slow"
    lost = next(e for e in after if e["action"] == "task_requeued")
    assert lost["taskId"] == "slow" and lost["success"] is False and lost["error"].startswith("worker died: ")
    assert lost["duration"] > 0 and lost["detail"] == "attempt 1"
    done = [e for e in after if e["action"] == "task_completed"]
    assert len(done) == 1 and done[0]["detail"] == "attempt 2"
    assert any(e["action"] == "agent_joined" for e in after)  # the second process


def test_a_lock_that_waited_in_the_queue_carries_its_wait() -> None:
    """The recorded webrtc sprint: message_persistence queued for server/db/messages.ts."""
    entries = log_json(SAMPLES / "webrtc/recorded.jsonl", "--task", "message_persistence")
    queued = next(e for e in entries if e["action"] == "lock_queued")
    granted = next(e for e in entries if e["action"] == "lock_acquired" and e["resourceId"] == queued["resourceId"])
    assert granted["seq"] > queued["seq"] and granted["duration"] > 0 and "after waiting" in granted["detail"]
    unblocked = next(e for e in entries if e["action"] == "task_unblocked")
    assert abs(unblocked["duration"] - granted["duration"]) < 1.0  # the task waited as long as its lock
