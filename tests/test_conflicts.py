"""Resolving conflicts (accept, revert, merge, escalate), the three-way merge itself, the demo sprint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import SAMPLES, run_sprint
from test_watch_support import Engine
from engine.agents.simulated import rogue_edit_plan
from engine.kept_content import SPILL_OVER, ContentStore
from engine.events import EventType
from engine.operators import OperatorError
from engine.merge import merge3, python_merge3
from engine.plan import load_plan
from engine.reducer import fold
from engine.file_index import checksum_bytes

BASE = "a\nb\nc\n"


def _sum(text: str) -> str:
    return checksum_bytes(text.encode())


async def _read_lock_conflict(engine: Engine, path: str = "f.txt", content: str = "rogue\n") -> None:
    await engine.lock("bob", path, "read")
    engine.write(path, content)
    await engine.until(lambda: engine.file(path).status == "conflict")


async def _lost_update(engine: Engine, rogue: str) -> None:
    """alice changes line 1 under her lock and reports it; someone then writes over it from the old base."""
    grant = await engine.lock("alice", "f.txt", "write")
    engine.write("f.txt", "A\nb\nc\n")
    await engine.report("alice", grant, "f.txt", _sum("A\nb\nc\n"))
    await engine.until(lambda: engine.file("f.txt").checksum == _sum("A\nb\nc\n"))
    engine.write("f.txt", rogue)
    await engine.until(lambda: engine.file("f.txt").status == "conflict")


async def test_accept_makes_the_current_content_the_new_base(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"f.txt": BASE}) as engine:
        await _read_lock_conflict(engine)
        engine.manager.op_accept_file("f.txt")
        file = engine.file("f.txt")
        assert (file.status, file.resolution, file.resolved_by, file.conflict) == ("clean", "accept", "operator", None)
        assert file.checksum == _sum("rogue\n")
        (resolved,) = engine.of(EventType.CONFLICT_RESOLVED)
        assert resolved.data["by"] == "operator" and resolved.data["resolution"] == "accept"
        assert (engine.workspace / "f.txt").read_text() == "rogue\n"
        assert engine.replayed_files() == engine.live_files()


async def test_revert_restores_the_last_good_content(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"f.txt": BASE}) as engine:
        await _read_lock_conflict(engine)
        engine.manager.op_revert_file("f.txt", by="dana")
        assert (engine.workspace / "f.txt").read_text() == BASE
        file = engine.file("f.txt")
        assert (file.status, file.checksum, file.resolved_by) == ("clean", _sum(BASE), "dana")
        await engine.settled()  # the engine's own write is not a new conflict
        assert engine.file("f.txt").status == "clean"
        assert engine.replayed_files() == engine.live_files()


async def test_revert_of_a_file_created_without_a_lock_removes_it(tmp_path: Path) -> None:
    async with Engine(tmp_path, {}) as engine:
        engine.write("intruder.txt", "x")
        await engine.until(lambda: engine.file("intruder.txt") is not None)
        assert engine.file("intruder.txt").conflict.change == "created"
        engine.manager.op_revert_file("intruder.txt")
        assert not (engine.workspace / "intruder.txt").exists()
        assert engine.file("intruder.txt") is None
        assert engine.replayed_files() == engine.live_files()


async def test_revert_of_an_unlocked_delete_brings_the_file_back(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"f.txt": BASE}) as engine:
        await engine.lock("bob", "f.txt", "read")
        (engine.workspace / "f.txt").unlink()
        await engine.until(lambda: engine.file("f.txt").status == "conflict")
        engine.manager.op_revert_file("f.txt")
        assert (engine.workspace / "f.txt").read_text() == BASE
        assert engine.file("f.txt").status == "clean" and not engine.file("f.txt").deleted


async def test_three_way_merge_recovers_a_lost_update(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"f.txt": BASE}) as engine:
        await _lost_update(engine, rogue="a\nb\nC\n")
        assert engine.file("f.txt").conflict.reason == "checksum_mismatch"
        assert engine.file("f.txt").conflict.can_merge
        result = engine.manager.op_merge_file("f.txt")
        assert result.clean
        assert (engine.workspace / "f.txt").read_text() == "A\nb\nC\n"
        file = engine.file("f.txt")
        assert (file.status, file.resolution, file.checksum) == ("clean", "merge", _sum("A\nb\nC\n"))
        assert engine.replayed_files() == engine.live_files()


async def test_a_merge_with_conflict_markers_stays_a_conflict(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"f.txt": BASE}) as engine:
        await _lost_update(engine, rogue="X\nb\nc\n")
        version = engine.manager.state.version
        result = engine.manager.op_merge_file("f.txt")
        assert not result.clean and b"<<<<<<<" in result.content
        assert (engine.workspace / "f.txt").read_text() == "X\nb\nc\n"  # untouched
        file = engine.file("f.txt")
        assert file.status == "conflict" and file.conflict.merge_attempts == 1
        resolved = engine.of(EventType.CONFLICT_RESOLVED)[-1]
        assert resolved.seq > version and resolved.data["status"] == "conflict" and resolved.data["conflicts"] == 1
        engine.manager.op_revert_file("f.txt")  # the conflict can still be undone
        assert (engine.workspace / "f.txt").read_text() == "A\nb\nc\n"
        assert engine.replayed_files() == engine.live_files()


async def test_escalate_records_it_and_the_diff_is_available(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"f.txt": BASE}) as engine:
        await _read_lock_conflict(engine, content=BASE + "rogue line\n")
        engine.manager.op_escalate_file("f.txt", note="ask the team")
        conflict = engine.file("f.txt").conflict
        assert (conflict.escalated, conflict.escalated_by, conflict.note) == (True, "operator", "ask the team")
        assert engine.file("f.txt").status == "conflict"
        diff = engine.manager.conflict_diff("f.txt")
        assert "--- a/f.txt" in diff and "+rogue line" in diff
        actions = [e.data["action"] for e in engine.of(EventType.OPERATOR_ACTION)]
        assert actions == ["escalate_file"]
        assert engine.replayed_files() == engine.live_files()


async def test_refused_resolutions_change_nothing(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"f.txt": BASE, "g.txt": BASE}) as engine:
        version = engine.manager.state.version
        with pytest.raises(OperatorError, match="not in conflict"):
            engine.manager.op_accept_file("f.txt")
        with pytest.raises(OperatorError, match="unknown resolution"):
            engine.manager.op_resolve_file("f.txt", "shrug")
        assert engine.manager.state.version == version
        engine.write("g.txt", "rogue\n")  # no lock: nothing was kept to revert to or merge from
        await engine.until(lambda: engine.file("g.txt").status == "conflict")
        version = engine.manager.state.version
        with pytest.raises(OperatorError, match="no last good content"):
            engine.manager.op_revert_file("g.txt")
        with pytest.raises(OperatorError, match="no merge base"):
            engine.manager.op_merge_file("g.txt")
        assert engine.manager.state.version == version
        assert "no last good content" in engine.manager.conflict_diff("g.txt")


async def test_large_files_are_kept_on_disk_beside_the_journal(tmp_path: Path) -> None:
    big = "line\n" * (SPILL_OVER // 5 + 100)
    async with Engine(tmp_path, {"big.txt": big}) as engine:
        await _read_lock_conflict(engine, "big.txt", "short\n")
        store = engine.manager.files.store
        assert store.spilled == 1 and store.memory_bytes == 0
        assert store.spill_dir.parent == engine.journal_path.parent
        engine.manager.op_revert_file("big.txt")
        assert (engine.workspace / "big.txt").read_text() == big
    assert not store.spill_dir.exists()  # cleaned up when the manager stops


def test_content_store_keeps_memory_bounded(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "kept", memory_budget=80, spill_over=60)
    small, other, large = b"x" * 50, b"y" * 50, b"z" * 70
    keys = [store.put(small), store.put(other), store.put(large)]
    assert store.memory_bytes == 50 and store.spilled == 2  # budget reached, then too large
    assert [store.get(k) for k in keys] == [small, other, large]
    store.put(small)
    store.drop(keys[0])
    assert store.get(keys[0]) == small  # still referenced once
    for key in keys:
        store.drop(key)
    assert store.memory_bytes == 0 and store.spilled == 0


@pytest.mark.parametrize("use_git", [True, False])
def test_merge3_with_and_without_git(use_git: bool) -> None:
    clean = merge3(b"a\nb\nc\n", b"A\nb\nc\n", b"a\nb\nC\n", use_git=use_git)
    assert (clean.content, clean.conflicts) == (b"A\nb\nC\n", 0)
    both = merge3(b"a\n", b"a\nsame\n", b"a\nsame\n", use_git=use_git)
    assert both.clean and both.content == b"a\nsame\n"
    clash = merge3(b"a\nb\n", b"X\nb\n", b"Y\nb\n", use_git=use_git)
    assert clash.conflicts == 1 and clash.content.startswith(b"<<<<<<< ours\nX\n=======\nY\n>>>>>>> theirs\n")
    assert clash.tool == ("git merge-file" if use_git else "python")


def test_python_merge_agrees_with_git_on_a_larger_text() -> None:
    if shutil.which("git") is None:
        raise AssertionError("git is needed for this comparison")
    base = b"".join(b"line %d\n" % i for i in range(40))
    ours = base.replace(b"line 3\n", b"line three\n").replace(b"line 20\n", b"")
    theirs = base.replace(b"line 30\n", b"line thirty\n") + b"tail\n"
    assert python_merge3(base, ours, theirs).content == merge3(base, ours, theirs, use_git=True).content


async def test_conflict_sample_always_ends_with_a_conflict(tmp_path: Path) -> None:
    plan = load_plan(SAMPLES / "conflict" / "plan.yaml")
    assert sum(rogue_edit_plan(plan, 0).values()) == plan.settings.rogue_edits == 1
    run = await run_sprint(plan, tmp_path, seed=0)
    assert run.result.metrics.completed_tasks == run.result.metrics.total_tasks
    conflicts = [e for e in run.events if e.type == EventType.FILE_CHANGED and e.data["status"] == "conflict"]
    assert conflicts, "the rogue edit was not caught"
    path = conflicts[0].data["path"]
    assert run.result.state.files[path].status == "conflict"
    # Every task completed, yet the file left in conflict means the sprint did not succeed.
    assert run.result.metrics.unresolved_conflicts == [path] and not run.result.succeeded
    assert run.result.state.files[path].conflict.holders  # a reader held it: the conflict names them
    assert "unlocked edit" in (run.workspace / path).read_text()
    live = json.dumps(run.result.state.model_dump(mode="json"))
    assert json.dumps(fold(run.events).model_dump(mode="json")) == live


async def test_rogue_edits_are_deterministic_for_the_seed(tmp_path: Path) -> None:
    plan = load_plan(SAMPLES / "conflict" / "plan.yaml")
    assert rogue_edit_plan(plan, 5) == rogue_edit_plan(plan, 5)
    first = await run_sprint(plan, tmp_path / "one", seed=5)
    second = await run_sprint(plan, tmp_path / "two", seed=5)

    def conflicted(run) -> set[str]:
        return {p for p, f in run.result.state.files.items() if f.status == "conflict"}

    assert conflicted(first) == conflicted(second) and conflicted(first)


async def test_no_rogue_edits_means_no_conflicts(tmp_path: Path) -> None:
    plan = load_plan(SAMPLES / "webrtc" / "plan.yaml")
    run = await run_sprint(plan, tmp_path)
    assert not [p for p, f in run.result.state.files.items() if f.status == "conflict"]
    assert run.result.state.files["server/routes.ts"].modified_by == "backend"
