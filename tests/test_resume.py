"""Crash recovery (issue 5, item 3): `run --resume` continues a sprint after a `kill -9`.

The crash test uses real processes: the manager is SIGKILLed at seeded random moments of a real
`sprintdeck run --headless`, then a second process resumes on the same journal.  The unit test
checks what cannot be seen from outside: leases renewed by a full TTL, tokens never reused.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES, write_plan
from engine.events import Event, EventType
from engine.journal import JournalWriter, read_journal
from engine.manager import SprintManager
from engine.protocol import MANAGER_ID, MessageType, make_message
from engine.reducer import fold
from engine.resume import resume_manager
from engine.file_index import checksum_bytes

SPRINTDECK = [sys.executable, "-m", "app.cli"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
PLAN = str(SAMPLES / "webrtc/plan.yaml")
KILLS = 20


# ---------------------------------------------------------------- kill -9 with real processes


def _start_run(journal: Path, workspace: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*SPRINTDECK, "run", PLAN, "--headless", "--record", str(journal), "--workspace", str(workspace),
         "--speed", "20"],
        cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _wait_for_header(journal: Path, process: subprocess.Popen[bytes]) -> None:
    """Crash moments count from the journal's header, so that interpreter start-up does not eat them."""
    deadline = time.monotonic() + 30
    while not (journal.exists() and b"\n" in journal.read_bytes()):
        assert process.poll() is None, "the run ended before writing its journal"
        assert time.monotonic() < deadline, "no journal header after 30 s"
        time.sleep(0.005)


def _crash_after(delay: float, journal: Path, workspace: Path) -> bytes:
    """Run, SIGKILL after `delay` seconds, and return the journal's bytes as the crash left them."""
    process = _start_run(journal, workspace)
    try:
        _wait_for_header(journal, process)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    return journal.read_bytes()


def _resume(journal: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SPRINTDECK, "run", PLAN, "--headless", "--json", "--resume", str(journal)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120,
    )


def _complete_lines(data: bytes) -> bytes:
    """What survives a torn write: everything up to the last newline."""
    return data[: data.rfind(b"\n") + 1]


def _crash_moments() -> list[float]:
    """Seeded: three before the first completion can happen, the rest anywhere in a ~4 s run."""
    rng = random.Random(20261124)
    return [0.0, 0.1, 0.25] + sorted(round(rng.uniform(0.3, 4.2), 3) for _ in range(KILLS - 3))


def _check_resumed_run(crashed: bytes, journal: Path, out: subprocess.CompletedProcess[str]) -> int:
    """Every assertion of one crash; returns how many tasks had completed before it."""
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    prefix = _complete_lines(crashed)
    after = journal.read_bytes()
    assert after[: len(prefix)] == prefix, "the journal's prefix changed"
    header, records, recovery = read_journal(journal)
    assert recovery is None
    old = prefix.count(b"\n") - 1  # records before the crash (the first line is the header)
    before, resumed = records[:old], records[old:]
    completions = Counter(r["data"]["taskId"] for r in records if r["type"] == EventType.TASK_COMPLETED)
    tasks = [r["data"]["tasks"] for r in records if r["type"] == EventType.SPRINT_STARTED][0]
    assert completions == Counter({task["id"]: 1 for task in tasks}), "each task completes exactly once"
    done_before = {r["data"]["taskId"] for r in before if r["type"] == EventType.TASK_COMPLETED}
    rerun = {r["data"]["taskId"] for r in resumed if r["type"] == EventType.TASK_ASSIGNED}
    assert not done_before & rerun, f"completed tasks ran again: {done_before & rerun}"
    if before:
        assert resumed[0]["type"] == EventType.SPRINT_RECOVERED
        assert resumed[0]["data"]["epoch"] == 2 and resumed[0]["data"]["previousVersion"] == old
        assert [r["type"] for r in records].count(EventType.SPRINT_STARTED) == 1
    result = json.loads(out.stdout)
    assert all(task["status"] == "completed" for task in result["state"]["tasks"].values())
    replayed = fold(Event.from_record(r) for r in records)
    assert replayed.model_dump(mode="json") == result["state"]
    return len(done_before)


def test_kill_9_at_random_moments_then_resume_completes_every_task_exactly_once(tmp_path: Path) -> None:
    done_at_crash = []
    for index, delay in enumerate(_crash_moments()):
        run_dir = tmp_path / f"crash-{index:02d}"
        journal, workspace = run_dir / "journal.jsonl", run_dir / "ws"
        crashed = _crash_after(delay, journal, workspace)
        out = _resume(journal)
        try:
            done_at_crash.append(_check_resumed_run(crashed, journal, out))
        except AssertionError as exc:
            raise AssertionError(f"crash {index} after {delay} s: {exc}") from exc
    # The moments must cover the sprint: crashes before any completion and in the middle of it.
    assert 0 in done_at_crash, done_at_crash
    assert any(0 < done < 10 for done in done_at_crash), done_at_crash


def test_resume_refuses_a_journal_of_another_plan(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    crashed = _crash_after(0.3, journal, tmp_path / "ws")
    other = SAMPLES / "conflict/plan.yaml"
    out = subprocess.run([*SPRINTDECK, "run", str(other), "--headless", "--resume", str(journal)],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "plan digest" in out.stderr and "Traceback" not in out.stderr
    assert journal.read_bytes() == crashed  # untouched, torn tail included


# ---------------------------------------------------------------- leases and tokens


def _lock_request(agent: str, path: str) -> object:
    return make_message(MessageType.RESOURCE_LOCK, agent, MANAGER_ID, {"resourceId": path, "lockType": "write"})


async def test_resume_extends_leases_by_a_full_ttl_and_tokens_keep_increasing(tmp_path: Path) -> None:
    plan = write_plan(
        tmp_path,
        {
            "sprint": "resume-unit",
            "settings": {"lock_ttl": "20s", "heartbeat_timeout": "60s"},
            "agents": [{"id": "ext", "kind": "external"}, {"id": "sim", "kind": "simulated"}],
            "tasks": [
                {"id": "u", "agent": "ext"},
                {"id": "t", "agent": "sim", "depends_on": ["u"], "resources": ["a.txt"]},
            ],
        },
    )
    workspace = tmp_path / "ws"
    workspace.mkdir()
    path = tmp_path / "journal.jsonl"

    # The crashed manager: ext holds a.txt, so the task placed on sim is blocked on it.
    journal = JournalWriter.create(path, {"sprint": plan.sprint, "planDigest": plan.digest})
    first = SprintManager(plan, workspace=workspace, journal=journal)
    await first.start()  # no local agents run: sim never works on its attempts
    await first.handle_ipc_message(make_message(MessageType.AGENT_READY, "ext", MANAGER_ID, {}))
    assert first.state.tasks["u"].status == "assigned"
    await first.handle_ipc_message(_lock_request("ext", "a.txt"))
    await first.handle_ipc_message(
        make_message(MessageType.TASK_COMPLETE, "ext", MANAGER_ID, {"taskId": "u", "attempt": 1})
    )
    task = first.state.tasks["t"]
    assert (task.status, task.attempt) == ("blocked", 1)
    (held,) = first.state.locks.values()
    journal.flush_sync()
    first.journal = None  # the crash: nothing more reaches the journal
    await first.stop()
    journal.close()
    await asyncio.sleep(0.05)  # time passes while the manager is down

    writer, _, records, _ = JournalWriter.resume(path)
    resumed_at, resumed_wall = time.monotonic(), datetime.now(UTC)
    manager = resume_manager(plan, records, workspace=workspace, journal=writer)
    grant = manager.locks.get(held.lock_id)
    assert grant is not None and grant.owner == "ext" and grant.token == held.token
    assert grant.expires_at >= resumed_at + 20
    lease = manager.state.locks[held.lock_id].expires_at
    assert lease >= resumed_wall + timedelta(seconds=20) > held.expires_at
    assert manager.state.tasks["t"].status == "ready"  # the blocked attempt is over

    await manager.start()
    try:
        task = manager.state.tasks["t"]
        assert (task.status, task.attempt) == ("blocked", 2)  # a new attempt, waiting again
        await manager.handle_ipc_message(
            make_message(MessageType.RESOURCE_UNLOCK, "ext", MANAGER_ID, {"resourceId": "a.txt"})
        )
        (granted,) = manager.state.locks.values()
        assert granted.agent_id == "sim" and granted.task_id == "t"
        assert granted.token > held.token
    finally:
        await manager.stop()
        writer.close()
    _, records, _ = read_journal(path)
    kinds = [r["type"] for r in records]
    assert kinds.count(EventType.SPRINT_STARTED) == 1 and kinds.count(EventType.SPRINT_RECOVERED) == 1
    assert manager.state.meta.journal_epoch == 2
    requeued = [r["data"] for r in records if r["type"] == EventType.TASK_REQUEUED]
    assert requeued == [{"taskId": "t", "attempt": 1, "reason": "manager_restart"}]
    assert fold(Event.from_record(r) for r in records).model_dump(mode="json") == manager.state.model_dump(mode="json")


@pytest.mark.parametrize("edit", ["plan", "workspace"])
def test_resume_checks_before_touching_the_journal(tmp_path: Path, edit: str) -> None:
    journal = tmp_path / "journal.jsonl"
    crashed = _crash_after(0.2, journal, tmp_path / "ws")
    args = [PLAN, "--headless", "--resume", str(journal)]
    if edit == "workspace":
        args += ["--workspace", str(tmp_path / "missing" / "file.txt")]
        (tmp_path / "missing").mkdir()
        (tmp_path / "missing" / "file.txt").write_text("not a directory")
    else:
        args[0] = str(SAMPLES / "flaky/plan.yaml")
    out = subprocess.run([*SPRINTDECK, "run", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "cannot resume" in out.stderr and "Traceback" not in out.stderr
    assert journal.read_bytes() == crashed


def test_a_rescan_after_a_restart_keeps_a_conflict_until_it_is_resolved() -> None:
    ts = "2026-01-01T00:00:00Z"
    scan = {"files": [{"path": "a.txt", "checksum": "c1", "size": 1, "mtime": None}]}
    events = [
        Event.decode(1, ts, EventType.SPRINT_STARTED, {"sprint": "s", "agents": [], "tasks": []}),
        Event.decode(2, ts, EventType.FILES_SCANNED, scan),
        Event.decode(3, ts, EventType.FILE_CHANGED, {
            "path": "a.txt", "checksum": "c2", "status": "conflict",
            "conflict": {"reason": "no_lock", "detail": "nobody held it", "canRevert": True, "canMerge": True},
        }),
        Event.decode(4, ts, EventType.SPRINT_RECOVERED, {"epoch": 2, "previousVersion": 3, "leases": {}}),
        Event.decode(5, ts, EventType.FILES_SCANNED, {"files": [{"path": "a.txt", "checksum": "c2", "size": 2, "mtime": None}]}),
    ]
    state = fold(events)
    file = state.files["a.txt"]
    assert file.status == "conflict" and file.checksum == "c2"
    assert file.conflict.reason == "no_lock" and not file.conflict.can_revert and not file.conflict.can_merge
    assert state.meta.journal_epoch == 2


# ---------------------------------------------------------------- the workspace while the manager was down


async def test_resume_judges_what_changed_while_the_manager_was_down(tmp_path: Path) -> None:
    """Deleted and changed files are recorded as such, and a lock kept across the restart has
    its content kept again, so an unlocked change to it can still be reverted."""
    plan = write_plan(
        tmp_path,
        {
            "sprint": "resume-files",
            "settings": {"lock_ttl": "60s", "heartbeat_timeout": "60s"},
            "agents": [{"id": "ext", "kind": "external"}],
            "tasks": [{"id": "u", "agent": "ext"}],
        },
    )
    workspace = tmp_path / "ws"
    workspace.mkdir()
    for name in ("held.txt", "base.txt", "gone.txt", "edited.txt", "same.txt"):
        (workspace / name).write_text(f"{name} as recorded\n")
    path = tmp_path / "journal.jsonl"
    journal = JournalWriter.create(path, {"sprint": plan.sprint, "planDigest": plan.digest})
    first = SprintManager(plan, workspace=workspace, journal=journal)
    await first.start()
    await first.handle_ipc_message(make_message(MessageType.AGENT_READY, "ext", MANAGER_ID, {}))
    await first.handle_ipc_message(_lock_request("ext", "held.txt"))
    await first.handle_ipc_message(_lock_request("ext", "base.txt"))
    journal.flush_sync()
    first.journal = None  # the crash
    await first.stop()
    journal.close()

    # While the manager is down: one file deleted, one edited without a lock, the held one edited by its holder.
    (workspace / "gone.txt").unlink()
    (workspace / "edited.txt").write_text("edited behind everyone's back\n")
    (workspace / "held.txt").write_text("the holder's own edit\n")

    writer, _, records, _ = JournalWriter.resume(path)
    manager = resume_manager(plan, records, workspace=workspace, journal=writer)
    await manager.start()
    try:
        files = manager.state.files
        gone = files["gone.txt"]  # deleted under no lock: recorded, and a conflict as it would be live
        assert (gone.status, gone.conflict.change, gone.conflict.reason) == ("conflict", "deleted", "no_lock")
        assert files["edited.txt"].status == "conflict"
        assert files["edited.txt"].conflict.reason == "no_lock"
        assert (files["held.txt"].status, files["held.txt"].modified_by) == ("modified", "ext")
        assert files["same.txt"].status != "conflict"

        # base.txt stayed locked and untouched: the holder reports its content, a different write
        # is a conflict, and revert can undo it because the content was kept again at the restart.
        (lock,) = [lock for lock in manager.state.locks.values() if lock.resource_id == "base.txt"]
        report = {"path": "base.txt", "checksum": checksum_bytes(b"base.txt as recorded\n"),
                  "lockId": lock.lock_id, "token": lock.token}
        await manager.handle_ipc_message(make_message(MessageType.STATE_UPDATE, "ext", MANAGER_ID, report))
        (workspace / "base.txt").write_text("someone else\n")
        for _ in range(200):
            if manager.state.files["base.txt"].status == "conflict":
                break
            await asyncio.sleep(0.02)
        base = manager.state.files["base.txt"]
        assert base.status == "conflict" and base.conflict.can_revert
        manager.op_revert_file("base.txt")
        assert (workspace / "base.txt").read_text() == "base.txt as recorded\n"
    finally:
        await manager.stop()
        writer.close()
    _, records, _ = read_journal(path)
    assert fold(Event.from_record(r) for r in records).model_dump(mode="json") == manager.state.model_dump(mode="json")


def test_resuming_a_sprint_that_finished_is_refused_and_leaves_its_journal_alone(tmp_path: Path) -> None:
    # Its scratch workspace is gone by then; what matters is saying there is nothing to resume
    # (before this, a finished journal was "resumed" and appended to).
    journal = tmp_path / "run.jsonl"
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path)}
    plan = str(SAMPLES / "webrtc/plan.yaml")
    done = subprocess.run([sys.executable, "-m", "app.cli", "run", plan, "--headless", "--record", str(journal)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    before = journal.read_bytes()
    again = subprocess.run([sys.executable, "-m", "app.cli", "run", plan, "--headless", "--resume", str(journal)],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2
    assert f"cannot resume {journal}: the sprint it records finished at seq" in again.stderr
    assert "nothing to resume" in again.stderr and "Traceback" not in again.stderr
    assert journal.read_bytes() == before
