"""Fork from a moment (issue 15): `run PLAN --resume PARENT --at SEQ --record NEW`, and what `diff` says.

Every journal here is recorded by a real `sprintdeck run --headless` process: the flaky sample,
whose agents fail and retry, so the recording has failures to fork before.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES
from engine.journal import read_journal

SPRINTDECK = [sys.executable, "-m", "app.cli"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
PLAN = str(SAMPLES / "flaky/plan.yaml")


def sprintdeck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SPRINTDECK, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)


def record_flaky(journal: Path) -> Path:
    """A real headless run of the flaky sample recorded in `journal` (it has failures, then completes)."""
    out = sprintdeck("run", PLAN, "--headless", "--record", str(journal), "--speed", "50",
                     "--workspace", str(journal.parent / f"{journal.stem}-ws"))
    assert out.returncode == 0, out.stderr
    return journal


@pytest.fixture(scope="module")
def parent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_flaky(tmp_path_factory.mktemp("parent") / "parent.jsonl")


def first_failure(journal: Path) -> int:
    _, records, _ = read_journal(journal)
    return next(r["seq"] for r in records if r["type"] == "task_failed")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fork_before_a_failure_runs_to_completion_and_leaves_the_parent_untouched(parent: Path, tmp_path: Path) -> None:
    at = first_failure(parent) - 1
    before = sha256(parent)
    fork = tmp_path / "fork.jsonl"
    out = sprintdeck("run", PLAN, "--headless", "--json", "--resume", str(parent), "--at", str(at),
                     "--record", str(fork), "--workspace", str(tmp_path / "fork-ws"))
    assert out.returncode == 0, out.stderr
    assert f"recording {fork}, forked from {parent} at seq {at}" in out.stderr
    assert sha256(parent) == before, "forking changed the parent journal"
    assert not list(parent.parent.glob("*.broken*"))
    parent_header, parent_records, _ = read_journal(parent)
    header, records, recovery = read_journal(fork)
    assert recovery is None
    assert header["parent"] == {"path": str(parent.resolve()), "sprint": "flaky-parser",
                                "startedAt": parent_header["startedAt"], "seq": at}
    assert header["planDigest"] == parent_header["planDigest"] and header["startedAt"] != parent_header["startedAt"]
    assert records[:at] == parent_records[:at], "the fork starts with the parent's first records, byte for byte"
    assert records[at]["type"] == "sprint_recovered"
    final = json.loads(out.stdout)["state"]
    assert all(task["status"] == "completed" for task in final["tasks"].values())
    assert [r["type"] for r in records].count("sprint_started") == 1

    diff = sprintdeck("diff", str(parent), str(fork))
    assert diff.returncode == 1, diff.stdout + diff.stderr
    lines = diff.stdout.splitlines()
    assert lines[0] == f"B ({fork}) was forked from {parent} at seq {at}; compared from there"
    assert lines[1].startswith(f"first divergence at seq {at + 1}:")
    assert f"B: seq {at + 1} sprint_recovered" in diff.stdout
    assert f"after: seq {at} " in diff.stdout and "the last event both agree on" in diff.stdout


def test_tasks_running_at_the_fork_point_are_requeued(parent: Path, tmp_path: Path) -> None:
    _, records, _ = read_journal(parent)
    started = next(r for r in records if r["type"] == "task_started")
    fork = tmp_path / "fork.jsonl"
    out = sprintdeck("run", PLAN, "--headless", "--resume", str(parent), "--at", str(started["seq"]),
                     "--record", str(fork), "--workspace", str(tmp_path / "fork-ws"))
    assert out.returncode == 0, out.stderr
    _, forked, _ = read_journal(fork)
    after = forked[started["seq"]:]
    task = started["data"]["taskId"]
    assert {"taskId": task, "attempt": 1, "reason": "manager_restart"} in [
        r["data"] for r in after if r["type"] == "task_requeued"]
    assert any(r["type"] == "task_completed" and r["data"]["taskId"] == task for r in after)


def test_fork_refuses_a_seq_outside_the_recording_and_a_missing_record(parent: Path, tmp_path: Path) -> None:
    before = sha256(parent)
    total = len(read_journal(parent)[1])
    new = tmp_path / "new.jsonl"
    for at, where in (("99999", "past the end"), ("0", "before the start"), ("-3", "before the start")):
        out = sprintdeck("run", PLAN, "--headless", "--resume", str(parent), "--at", at, "--record", str(new))
        assert out.returncode == 2, out.stderr
        assert f"--at {at} is {where} of {parent}: its events are seq 1 to {total}" in out.stderr
        assert "Traceback" not in out.stderr and not new.exists()
    out = sprintdeck("run", PLAN, "--headless", "--resume", str(parent), "--at", "5")
    assert out.returncode == 2 and "name it with --record NEW" in out.stderr
    out = sprintdeck("run", PLAN, "--headless", "--at", "5", "--record", str(new))
    assert out.returncode == 2 and "--at 5 forks a recording: give it --resume JOURNAL" in out.stderr
    out = sprintdeck("run", PLAN, "--headless", "--resume", str(parent), "--at", "5", "--record", str(parent))
    assert out.returncode == 2 and "is the journal being forked" in out.stderr
    out = sprintdeck("run", PLAN, "--headless", "--resume", str(parent), "--record", str(new))
    assert out.returncode == 2 and "add --at SEQ" in out.stderr
    other = str(SAMPLES / "webrtc/plan.yaml")
    out = sprintdeck("run", other, "--headless", "--resume", str(parent), "--at", "5", "--record", str(new))
    assert out.returncode == 2 and "plan digest" in out.stderr and not new.exists()
    assert sha256(parent) == before


def test_serve_forks_too(parent: Path, tmp_path: Path) -> None:
    fork = tmp_path / "served-fork.jsonl"
    socket_dir = tmp_path / "sock"
    socket_dir.mkdir(mode=0o700)
    out = sprintdeck("serve", PLAN, "--headless", "--listen", f"unix:{socket_dir}/s", "--resume", str(parent),
                     "--at", "10", "--record", str(fork), "--workspace", str(tmp_path / "ws"))
    assert out.returncode == 0, out.stderr
    assert f"recording {fork}, forked at seq 10" in out.stderr
    assert read_journal(fork)[0]["parent"]["seq"] == 10


def test_diff_json_names_the_fork_point_and_each_side(parent: Path, tmp_path: Path) -> None:
    fork = tmp_path / "fork.jsonl"
    assert sprintdeck("run", PLAN, "--headless", "--resume", str(parent), "--at", "30", "--record", str(fork),
                      "--workspace", str(tmp_path / "ws")).returncode == 0
    out = sprintdeck("diff", str(parent), str(fork), "--json")
    assert out.returncode == 1, out.stderr
    facts = json.loads(out.stdout)
    assert facts["forkedFrom"] == {"child": "B", "seq": 30} and facts["diverged"] is True
    divergence = facts["divergence"]
    assert divergence["seq"] == 31 and divergence["b"]["type"] == "sprint_recovered"
    assert divergence["lastCommon"]["seq"] == 30
    a = divergence["a"]
    assert set(a) == {"seq", "type", "task", "agent", "summary"} and a["seq"] == 31
    reversed_out = json.loads(sprintdeck("diff", str(fork), str(parent), "--json").stdout)
    assert reversed_out["forkedFrom"] == {"child": "A", "seq": 30}


def test_diff_names_the_task_and_agent_of_a_changed_event(parent: Path, tmp_path: Path) -> None:
    lines = parent.read_bytes().splitlines(keepends=True)
    failed = first_failure(parent)
    record = json.loads(lines[failed])
    record["data"]["error"] = "exit 1 — npm test"
    del record["crc"]
    from engine.journal_codec import encode_record
    lines[failed] = encode_record(record["seq"], record["type"], record["data"], record["ts"], record["mono"])
    changed = tmp_path / "changed.jsonl"
    changed.write_bytes(b"".join(lines))
    out = sprintdeck("diff", str(parent), str(changed))
    assert out.returncode == 1
    task = record["data"]["taskId"]
    assert f"first divergence at seq {failed} task_failed: data.error:" in out.stdout
    assert f"B: seq {failed} task_failed {task}: exit 1 — npm test" in out.stdout
    assert f"after: seq {failed - 1} " in out.stdout


def test_diff_reads_a_torn_journal_up_to_the_tear_and_says_so(parent: Path, tmp_path: Path) -> None:
    data = parent.read_bytes()
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(data[:-40])  # a crash mid-write of the last record
    before = sha256(torn)
    total = data.count(b"\n") - 1
    out = sprintdeck("diff", str(torn), str(parent))
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and out.stderr == ""
    assert f"A: {torn}:{total + 1}: the last record is torn" in out.stdout
    assert f"compared up to seq {total - 1}" in out.stdout
    assert f"first divergence at seq {total} sprint_finished: A and B agree until here, then only B goes on" in out.stdout
    assert sha256(torn) == before and not list(tmp_path.glob("*.broken*"))
    out = sprintdeck("diff", str(torn), str(torn), "--json")
    assert out.returncode == 0 and "torn" in json.loads(out.stdout)["torn"]["A"]


async def test_a_fork_restarts_an_external_agents_attempt_that_a_resume_keeps(tmp_path: Path) -> None:
    """A resume keeps an external agent's running attempt (the agent lives on and reconnects); a
    fork restarts it, since that agent works for the parent sprint, not for the fork."""
    import asyncio

    from conftest import write_plan
    from engine.fork import create_fork
    from engine.journal import JournalWriter
    from engine.manager import SprintManager
    from engine.protocol import MANAGER_ID, MessageType, make_message
    from engine.resume import resume_manager

    plan = write_plan(tmp_path, {
        "sprint": "fork-external",
        "settings": {"lock_ttl": "20s", "heartbeat_timeout": "60s"},
        "agents": [{"id": "ext", "kind": "external"}],
        "tasks": [{"id": "u", "agent": "ext", "resources": ["a.txt"]}],
    })
    workspace = tmp_path / "ws"
    workspace.mkdir()
    parent_path = tmp_path / "parent.jsonl"
    journal = JournalWriter.create(parent_path, {"sprint": plan.sprint, "planDigest": plan.digest})
    manager = SprintManager(plan, workspace=workspace, journal=journal)
    await manager.start()
    await manager.handle_ipc_message(make_message(MessageType.AGENT_READY, "ext", MANAGER_ID, {}))
    await manager.handle_ipc_message(make_message(MessageType.RESOURCE_LOCK, "ext", MANAGER_ID,
                                                  {"resourceId": "a.txt", "lockType": "write"}))
    assert manager.state.tasks["u"].status in ("assigned", "running") and manager.state.locks
    journal.flush_sync()
    manager.journal = None
    await manager.stop()
    journal.close()
    await asyncio.sleep(0)
    at = len(read_journal(parent_path)[1])
    before = sha256(parent_path)

    writer, records = create_fork(parent_path, at, tmp_path / "fork.jsonl", workspace)
    forked = resume_manager(plan, records, fork=True, workspace=workspace, journal=writer)
    task = forked.state.tasks["u"]
    assert not task.in_flight and not forked.state.locks
    writer.flush_sync()
    writer.close()
    after = read_journal(tmp_path / "fork.jsonl")[1][at:]
    assert {"taskId": "u", "attempt": 1, "reason": "manager_restart"} in [
        r["data"] for r in after if r["type"] == "task_requeued"]
    assert any(r["type"] == "lock_released" for r in after)
    assert sha256(parent_path) == before

    resumed_writer, _, resumed_records, _ = JournalWriter.resume(parent_path)
    resumed = resume_manager(plan, resumed_records, workspace=workspace, journal=resumed_writer)
    assert resumed.state.tasks["u"].in_flight and resumed.state.locks  # a resume keeps it
    resumed_writer.close()
