"""The file watcher end to end: real files in a temporary workspace, the real watchfiles watcher.

Each test ends by folding the journal and comparing every FileState with the live one.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from test_watch_support import Engine
from engine.events import EventType
from engine.file_index import (
    COARSEST_STEP_NS,
    RACY_NS,
    FileIndex,
    checksum_bytes,
    read_and_hash,
    read_expected,
    stamp_step,
    timestamp_step_ns,
)


def _sum(text: str | bytes) -> str:
    return checksum_bytes(text.encode() if isinstance(text, str) else text)


async def test_initial_scan_records_every_file_and_skips_ignored_ones(tmp_path: Path) -> None:
    files = {
        "src/app.py": "print('hi')\n",
        "README.md": "# readme\n",
        ".gitignore": "build/\n*.log\n!keep.log\n",
        "build/out.o": "binary",
        "debug.log": "noise",
        "keep.log": "kept by negation",
        "docs/.gitignore": "drafts/\n",
        "docs/drafts/wip.md": "wip",
        "docs/guide.md": "guide",
        ".git/HEAD": "ref: refs/heads/main\n",
    }
    async with Engine(tmp_path, files, journal_dir=tmp_path / "ws" / ".sprintdeck" / "runs") as engine:
        state = engine.manager.state.files
        expected = {"src/app.py", "README.md", ".gitignore", "keep.log", "docs/.gitignore", "docs/guide.md"}
        assert set(state) == expected
        assert state["src/app.py"].checksum == _sum(files["src/app.py"])
        assert state["src/app.py"].size == len(files["src/app.py"])
        assert state["src/app.py"].status == "clean" and state["src/app.py"].mtime is not None
        (scan,) = engine.of(EventType.FILES_SCANNED)
        assert scan.seq == 2  # right after sprint_started
        # Live changes to ignored paths (and to the journal, which lives in the workspace here) leave no state.
        engine.write("build/new.o", "x")
        engine.write("trace.log", "x")
        engine.write("docs/drafts/more.md", "x")
        engine.write(".git/index", "x")
        await engine.settled()
        assert set(engine.manager.state.files) == expected | {"zz-sentinel.txt"}
        assert engine.replayed_files() == engine.live_files()


async def test_change_under_a_write_lock_is_modified_by_the_holder(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"a.txt": "one\n"}) as engine:
        await engine.lock("alice", "a.txt", "write")
        engine.write("a.txt", "one\ntwo\n")
        await engine.until(lambda: engine.file("a.txt").checksum == _sum("one\ntwo\n"))
        file = engine.file("a.txt")
        assert (file.status, file.modified_by, file.conflict) == ("modified", "alice", None)
        assert engine.replayed_files() == engine.live_files()


async def test_directory_write_lock_covers_the_files_below(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"src/a.py": "a\n"}) as engine:
        await engine.lock("bob", "src", "exclusive")
        engine.write("src/a.py", "b\n")
        await engine.until(lambda: engine.file("src/a.py").checksum == _sum("b\n"))
        assert (engine.file("src/a.py").status, engine.file("src/a.py").modified_by) == ("modified", "bob")


async def test_change_without_any_lock_is_a_conflict(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"a.txt": "one\n"}) as engine:
        engine.write("a.txt", "rogue\n")
        await engine.until(lambda: engine.file("a.txt").status == "conflict")
        file = engine.file("a.txt")
        assert file.conflict.reason == "no_lock" and file.conflict.holders == []
        assert file.modified_by is None and file.checksum == _sum("rogue\n")
        assert engine.replayed_files() == engine.live_files()


async def test_change_under_read_locks_only_is_a_conflict_naming_the_readers(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"a.txt": "one\n"}) as engine:
        grant = await engine.lock("alice", "a.txt", "read")
        await engine.lock("bob", "a.txt", "read")
        engine.write("a.txt", "changed\n")
        await engine.until(lambda: engine.file("a.txt").status == "conflict")
        conflict = engine.file("a.txt").conflict
        assert conflict.reason == "read_lock_only"
        assert [(h.agent_id, h.lock_type) for h in conflict.holders] == [("alice", "read"), ("bob", "read")]
        assert conflict.holders[0].lock_id == grant.lock_id and conflict.holders[0].token == grant.token
        assert conflict.can_revert  # the content at the read grant was kept
        assert engine.replayed_files() == engine.live_files()


async def test_content_that_differs_from_the_holders_report_is_a_conflict(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"a.txt": "one\n"}) as engine:
        grant = await engine.lock("alice", "a.txt", "write")
        engine.write("a.txt", "alice's\n")
        await engine.report("alice", grant, "a.txt", _sum("alice's\n"))
        await engine.until(lambda: engine.file("a.txt").checksum == _sum("alice's\n"))
        assert engine.file("a.txt").status == "modified"
        assert engine.file("a.txt").reported_checksum == _sum("alice's\n")
        # Someone else overwrites the file while alice still holds the lock.
        engine.write("a.txt", "overwritten\n")
        await engine.until(lambda: engine.file("a.txt").status == "conflict")
        conflict = engine.file("a.txt").conflict
        assert conflict.reason == "checksum_mismatch" and "reported by alice" in conflict.detail
        assert [h.agent_id for h in conflict.holders] == ["alice"]
        assert engine.replayed_files() == engine.live_files()


async def test_a_report_that_does_not_match_the_disk_is_a_conflict_at_once(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"a.txt": "one\n"}) as engine:
        grant = await engine.lock("alice", "a.txt", "write")
        await engine.report("alice", grant, "a.txt", "sha256:" + "0" * 64)  # stdlib-only reporters use sha256
        assert engine.file("a.txt").status == "conflict"
        assert engine.file("a.txt").conflict.reason == "checksum_mismatch"


async def test_a_matching_sha256_report_is_accepted(tmp_path: Path) -> None:
    import hashlib

    async with Engine(tmp_path, {"a.txt": "one\n"}) as engine:
        grant = await engine.lock("alice", "a.txt", "write")
        engine.write("a.txt", "two\n")
        await engine.report("alice", grant, "a.txt", "sha256:" + hashlib.sha256(b"two\n").hexdigest())
        await engine.until(lambda: engine.file("a.txt").checksum == _sum("two\n"))
        await asyncio.sleep(0.3)  # past the report grace: no late conflict
        assert (engine.file("a.txt").status, engine.file("a.txt").modified_by) == ("modified", "alice")


async def test_a_stale_report_is_refused(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"a.txt": "one\n"}) as engine:
        grant = await engine.lock("alice", "a.txt", "write")
        await engine.unlock("alice", grant)
        await engine.report("alice", grant, "a.txt", _sum("whatever"))
        (rejected,) = engine.of(EventType.MESSAGE_REJECTED)
        assert rejected.data["field"] == "payload.token"
        assert not engine.of(EventType.FILE_REPORTED)


async def test_create_delete_and_rename_under_a_lock(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"src/old.py": "old content\n"}) as engine:
        await engine.lock("carol", "src", "write")
        engine.write("src/new.py", "new\n")
        await engine.until(lambda: engine.file("src/new.py") is not None)
        assert (engine.file("src/new.py").status, engine.file("src/new.py").modified_by) == ("modified", "carol")
        os.rename(engine.workspace / "src/old.py", engine.workspace / "src/renamed.py")
        await engine.until(lambda: engine.file("src/renamed.py") is not None and engine.file("src/old.py") is None)
        renamed = engine.file("src/renamed.py")
        assert renamed.renamed_from == "src/old.py" and renamed.modified_by == "carol"
        assert renamed.checksum == _sum("old content\n")
        (engine.workspace / "src/new.py").unlink()
        await engine.until(lambda: engine.file("src/new.py") is None)
        assert engine.of(EventType.FILE_DELETED)[-1].data["modifiedBy"] == "carol"
        assert engine.replayed_files() == engine.live_files()


async def test_delete_without_a_lock_is_a_conflict_that_keeps_the_entry(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"a.txt": "one\n"}) as engine:
        (engine.workspace / "a.txt").unlink()
        await engine.until(lambda: engine.file("a.txt").status == "conflict")
        file = engine.file("a.txt")
        assert file.deleted and file.conflict.change == "deleted"
        assert engine.replayed_files() == engine.live_files()


async def test_a_new_directory_moved_in_is_scanned(tmp_path: Path) -> None:
    outside = tmp_path / "outside_tree"
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "x.txt").write_text("x")
    async with Engine(tmp_path, {}) as engine:
        await engine.lock("alice", "moved", "write")
        os.rename(outside, engine.workspace / "moved")
        await engine.until(lambda: engine.file("moved/deep/x.txt") is not None)
        assert engine.file("moved/deep/x.txt").modified_by == "alice"


async def test_a_burst_of_1000_changes_is_fully_accounted_for(tmp_path: Path) -> None:
    names = [f"burst/f{i:03}.txt" for i in range(200)]
    async with Engine(tmp_path, {name: "0" for name in names}) as engine:
        await engine.lock("alice", "burst", "write")
        for round_ in range(5):  # 200 files x 5 rewrites, same size each time: the racy-clean case
            for name in names:
                engine.write(name, f"{round_}")
        expected = {name: _sum("4") for name in names}
        await engine.until(
            lambda: all(engine.file(n).checksum == c for n, c in expected.items()), timeout=20, what="burst"
        )
        assert all(engine.file(n).status == "modified" and engine.file(n).modified_by == "alice" for n in names)
        assert engine.replayed_files() == engine.live_files()


async def test_an_unreadable_file_is_reported_and_the_watcher_goes_on(tmp_path: Path) -> None:
    # Tests run as root, for whom chmod 000 does not stop a read; a FIFO is a file the watcher must
    # not read (it would block), so it stands for every file that cannot be read.
    async with Engine(tmp_path, {"a.txt": "one\n"}) as engine:
        os.mkfifo(engine.workspace / "pipe")
        await engine.until(lambda: engine.file("pipe") is not None and engine.file("pipe").error)
        assert "named pipe" in engine.file("pipe").error
        engine.write("a.txt", "still watching\n")
        await engine.until(lambda: engine.file("a.txt").checksum == _sum("still watching\n"))
        assert engine.replayed_files() == engine.live_files()


async def test_unreadable_at_scan_time(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.mkfifo(workspace / "pipe")
    (workspace / "ok.txt").write_text("ok")
    index = FileIndex(workspace)
    observations = {o.path: o for o in index.scan()}
    assert observations["pipe"].kind == "unreadable" and "named pipe" in observations["pipe"].error
    assert observations["ok.txt"].kind == "changed"
    assert index.scan() == []  # reported once, not at every rescan


async def test_symlinks_are_recorded_as_links_and_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    engine = Engine(tmp_path, {"a.txt": "one\n"})  # the scan happens when it starts
    (engine.workspace / "link_dir").symlink_to(outside, target_is_directory=True)
    (engine.workspace / "link_file").symlink_to(outside / "secret.txt")
    async with engine:
        files = engine.manager.state.files
        assert "link_file" in files and not any(p.startswith("link_dir/") for p in files)
        assert files["link_file"].checksum == _sum(b"symlink:" + str(outside / "secret.txt").encode())
        (outside / "secret.txt").write_text("changed outside")
        (outside / "new.txt").write_text("new outside")
        await engine.settled()
        assert not any(p.startswith("link_dir/") for p in engine.manager.state.files)
        assert engine.file("link_file").checksum == _sum(b"symlink:" + str(outside / "secret.txt").encode())
        assert engine.replayed_files() == engine.live_files()


async def test_rescan_with_nothing_changed_hashes_nothing(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    for i in range(50):
        (workspace / f"d{i % 5}").mkdir(parents=True, exist_ok=True)
        (workspace / f"d{i % 5}" / f"f{i}.txt").write_text(str(i))
    index = FileIndex(workspace)
    assert len(index.scan()) == 50
    for entry in index.entries.values():
        entry.racy = False  # as if hashed long after the files were written
    hashed = index.hashed
    assert index.scan() == []
    assert index.hashed == hashed
    (workspace / "d0" / "f0.txt").write_text("changed!")
    (changed,) = index.scan()
    assert changed.path == "d0/f0.txt" and changed.checksum == _sum("changed!")


def test_a_racily_clean_entry_is_rehashed(tmp_path: Path) -> None:
    """Same size, same mtime (one coarse timestamp tick), new content: git's racy-clean case."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    target = workspace / "f.txt"
    target.write_text("aaaa")
    index = FileIndex(workspace)
    index.scan()
    stamp = target.stat().st_mtime_ns
    target.write_text("bbbb")
    os.utime(target, ns=(stamp, stamp))  # the rewrite landed in the same tick
    (changed,) = index.scan()
    assert changed.checksum == _sum("bbbb")
    # Once the entry is old enough to trust, an unchanged stat means unchanged content.
    index.entries["f.txt"].racy = False
    hashed = index.hashed
    assert index.scan() == [] and index.hashed == hashed


def test_stamp_step_is_the_tick_of_a_coarse_clock_and_bounds_a_fine_one() -> None:
    tick = 4_000_000
    assert stamp_step([0, 0, 0, tick, tick, 2 * tick, 2 * tick]) == tick
    assert stamp_step([1_000, 4_100, 7_050, 10_200]) == 2_950
    assert stamp_step([5, 5, 5]) is None and stamp_step([]) is None


def test_the_timestamp_probe_leaves_nothing_and_assumes_fat_where_it_cannot_measure(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    step = timestamp_step_ns(tmp_path)
    assert 0 < step <= COARSEST_STEP_NS
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]  # an unnamed O_TMPFILE
    assert timestamp_step_ns(tmp_path / "missing") == COARSEST_STEP_NS
    assert timestamp_step_ns("/proc") == COARSEST_STEP_NS  # no O_TMPFILE there
    assert FileIndex(tmp_path).racy_ns >= RACY_NS  # never trusted sooner than before the probe


def test_on_a_coarse_file_system_an_entry_stays_racy_for_its_whole_tick(tmp_path: Path) -> None:
    """FAT stamps in 2 s: hashed 0.1 s after its stamp, a file can still be rewritten unseen by stat."""
    target = tmp_path / "f.txt"
    target.write_text("aaaa")
    stamp = time.time_ns() - 100_000_000  # its last write, 0.1 s ago, inside the current tick
    os.utime(target, ns=(stamp, stamp))
    fat = FileIndex(tmp_path, racy_ns=2 * COARSEST_STEP_NS)
    ext4_rule = FileIndex(tmp_path, racy_ns=RACY_NS)  # what a fine-stamped file system allows
    fat.scan()
    ext4_rule.scan()
    assert fat.entries["f.txt"].racy and not ext4_rule.entries["f.txt"].racy
    target.write_text("bbbb")  # same size, and on FAT the same stamp
    os.utime(target, ns=(stamp, stamp))
    (changed,) = fat.reconcile("f.txt")
    assert changed.checksum == _sum("bbbb")
    assert ext4_rule.reconcile("f.txt") == []  # the stat alone cannot tell: why the tick matters


async def test_a_journal_in_the_workspace_root_is_not_watched(tmp_path: Path) -> None:
    """Otherwise every journaled event would change the journal, and so on without end."""
    async with Engine(tmp_path, {"a.txt": "one\n"}, journal_dir=tmp_path / "ws") as engine:
        engine.write("a.txt", "two\n")
        await engine.until(lambda: engine.file("a.txt").checksum == _sum("two\n"))
        await engine.settled()
        assert "journal.jsonl" not in engine.manager.state.files
        changed = [e.data["path"] for e in engine.of(EventType.FILE_CHANGED)]
        assert sorted(changed) == ["a.txt", "zz-sentinel.txt"]


def test_a_deleted_or_replaced_directory_reports_every_file_below(tmp_path: Path) -> None:
    """`below` skips the pass over every entry only for directories nothing was ever indexed under."""
    workspace = tmp_path / "ws"
    for rel in ("a/b/c/deep.txt", "a/d.txt", "x.txt", "ab.txt"):
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (workspace / rel).write_text(rel)
    index = FileIndex(workspace)
    index.scan()
    assert sorted(index.below("a")) == ["a/b/c/deep.txt", "a/d.txt"]
    assert index.below("a/b") == ["a/b/c/deep.txt"]
    assert index.below("x.txt") == [] and index.below("nowhere") == [] and index.below("a/b/c/deep.txt") == []
    assert index.reconcile("nowhere/new.txt") == []
    (workspace / "a/d.txt").unlink()
    assert [(o.path, o.kind) for o in index.reconcile("a")] == [("a/d.txt", "deleted")]
    for path in sorted((workspace / "a").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (workspace / "a").rmdir()
    (workspace / "a").write_text("a file now")
    observed = sorted((o.path, o.kind) for o in index.reconcile("a"))
    assert observed == [("a", "changed"), ("a/b/c/deep.txt", "deleted")]
    assert index.below("a") == [] and sorted(index.entries) == ["a", "ab.txt", "x.txt"]


def test_remembering_hands_back_what_a_reconcile_read(tmp_path: Path) -> None:
    """Bytes read inside the block come back with their checksum (changed or only re-hashed), and
    only inside it; links and anything past the limit are left out."""
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "f.txt").write_text("same")
    (workspace / "g.txt").write_text("0123456789")
    (workspace / "link").symlink_to("f.txt")
    index = FileIndex(workspace)
    index.scan()  # outside any block: nothing remembered
    for entry in index.entries.values():
        entry.racy = True  # hashed within RACY_NS of the write (true here, but not left to timing)
    with index.remembering() as fresh:
        index.reconcile("f.txt")  # racy: re-hashed, unchanged
        index.reconcile("link")
    assert fresh == {"f.txt": (_sum("same"), b"same")}
    index.reconcile("g.txt")  # after the block: the dict no longer grows
    assert "g.txt" not in fresh
    for entry in index.entries.values():
        entry.racy = True
    with index.remembering(limit=5) as small:
        index.scan()
    assert small == {"f.txt": (_sum("same"), b"same")}  # g.txt is over the limit


def test_clean_checksum_only_for_a_trusted_regular_file(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "f.txt").write_text("f")
    (workspace / "link").symlink_to("f.txt")
    os.mkfifo(workspace / "pipe")
    index = FileIndex(workspace)
    index.scan()
    index.entries["f.txt"].racy = True
    assert index.clean_checksum("f.txt") is None
    for entry in index.entries.values():
        entry.racy = False
    assert index.clean_checksum("f.txt") == _sum("f")
    assert index.clean_checksum("link") is None and index.clean_checksum("pipe") is None
    assert index.clean_checksum("missing") is None


def test_an_observation_names_its_content_key(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "f.txt").write_text("f")
    (workspace / "link").symlink_to("f.txt")
    observed = {o.path: o for o in FileIndex(workspace).scan()}
    assert observed["f.txt"].content_key == _sum("f")
    assert observed["link"].content == b"f.txt" and observed["link"].content_key is None



@contextmanager
def _pipe_writer_if_blocked(fifo: Path) -> Iterator[None]:
    """Should the code under test open `fifo` for reading (the bug), a writer comes and goes every
    0.2 s so that the open returns and the test fails instead of hanging the whole run."""
    stop = threading.Event()

    def unblock() -> None:
        while not stop.wait(0.2):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO while nobody reads
            except OSError:
                pass

    thread = threading.Thread(target=unblock, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_read_refuses_a_special_file(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.mkfifo(workspace / "pipe")
    index = FileIndex(workspace)
    with _pipe_writer_if_blocked(workspace / "pipe"), pytest.raises(OSError, match="named pipe"):
        index.read("pipe")


def test_a_pipe_swapped_in_after_the_stat_is_refused_not_opened(tmp_path: Path) -> None:
    """The index lstats a path, then opens it; a named pipe put there in between must not block
    the manager (the open itself would wait for a writer) nor be read as the file."""
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "target.txt").write_text("x\n")
    os.symlink(tmp_path / "target.txt", tmp_path / "link")
    with _pipe_writer_if_blocked(tmp_path / "pipe"), pytest.raises(OSError, match="named pipe"):
        read_and_hash(tmp_path / "pipe", 0)
    with pytest.raises(OSError):  # a symlink swapped in is not followed either
        read_and_hash(tmp_path / "link", 2)
    assert read_and_hash(tmp_path / "target.txt", 2)[1] == b"x\n"


@pytest.mark.parametrize("expected", [0, 5, 6, 7, 100, 3 << 20])
def test_a_file_is_read_whole_whatever_size_was_expected(tmp_path: Path, expected: int) -> None:
    """The size comes from a stat made a moment before: the file may have grown or shrunk since."""
    (tmp_path / "f").write_bytes(b"x" * 6 + b"y" * (2 << 20))
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert read_expected(fd, expected) == b"x" * 6 + b"y" * (2 << 20)
    finally:
        os.close(fd)


async def test_locking_a_directory_with_a_named_pipe_does_not_block(tmp_path: Path) -> None:
    """Keeping a lock's content never opens a special file (a FIFO would block until a writer came)."""
    async with Engine(tmp_path, {"d/a.txt": "a\n"}) as engine:
        os.mkfifo(engine.workspace / "d" / "pipe")
        await engine.until(lambda: engine.file("d/pipe") is not None and engine.file("d/pipe").error)
        with _pipe_writer_if_blocked(engine.workspace / "d" / "pipe"):
            await engine.lock("alice", "d", "write")
        kept = engine.manager.files.kept
        assert "d/a.txt" in kept and "d/pipe" not in kept
        engine.write("d/a.txt", "b\n")
        await engine.until(lambda: engine.file("d/a.txt").checksum == _sum("b\n"))
        assert engine.file("d/a.txt").modified_by == "alice"


async def test_an_atomic_save_of_a_locked_file_is_its_holders_change_not_a_conflict(tmp_path: Path, monkeypatch) -> None:
    """Claude Code's Write (like most editors) writes a temporary name, then renames it onto the
    file: the temporary file, seen on its own, must not become a conflict nobody caused."""
    import engine.conflicts

    monkeypatch.setattr(engine.conflicts, "CREATION_GRACE", 10.0)  # the rename always comes within it
    async with Engine(tmp_path, {"db/schema.sql": "old\n"}) as engine:
        await engine.lock("alice", "db/schema.sql")
        temporary = "db/schema.sql.tmp.2030.658c47e7f96f"
        engine.write(temporary, "create table notes;\n")
        await engine.until(lambda: temporary in engine.manager.files.index.entries, what="the watcher saw it")
        os.rename(engine.workspace / temporary, engine.workspace / "db/schema.sql")
        await engine.until(lambda: engine.file("db/schema.sql").size == len("create table notes;\n"))
        assert engine.file("db/schema.sql").modified_by == "alice"
        assert engine.file("db/schema.sql").status == "modified"
        assert engine.file(temporary) is None
        assert not [e for e in engine.of("file_changed") if e.body.path == temporary]
        assert engine.replayed_files() == engine.live_files()


async def test_an_atomic_save_whose_rename_is_reported_late_is_still_its_holders_change(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    """On a loaded machine the watcher's word of the rename can come after the creation grace: the
    temporary file is gone from disk by then, and must not be judged as a file nobody holds (a
    `kind: claude` sprint ended "1 file left in conflict: web/app.js.tmp.29389…" in CI)."""
    import engine.conflicts

    monkeypatch.setattr(engine.conflicts, "CREATION_GRACE", 0.2)
    async with Engine(tmp_path, {"web/app.js": "the old script\n"}) as engine:
        await engine.lock("alice", "web/app.js")
        watcher = engine.manager.files.watcher
        deliver = watcher.on_changes
        loop = asyncio.get_running_loop()

        def late(observations: list) -> None:  # the rename's batch arrives 0.8 s late
            if any(obs.renamed_from for obs in observations) or any(obs.kind == "deleted" for obs in observations):
                loop.call_later(0.8, deliver, observations)
            else:
                deliver(observations)
        monkeypatch.setattr(watcher, "on_changes", late)
        temporary = "web/app.js.tmp.29389.24848bcd55b1"
        engine.write(temporary, "new\n")
        await engine.until(lambda: temporary in engine.manager.files.index.entries, what="the watcher saw it")
        os.rename(engine.workspace / temporary, engine.workspace / "web/app.js")
        await engine.until(lambda: engine.file("web/app.js").size == len("new\n"), what="the late rename")
        assert engine.file("web/app.js").modified_by == "alice" and engine.file("web/app.js").status == "modified"
        assert engine.file(temporary) is None
        assert not [e for e in engine.of("file_changed") if e.body.path == temporary]


async def test_a_temporary_file_that_comes_and_goes_is_not_recorded(tmp_path: Path, monkeypatch) -> None:
    import engine.conflicts

    monkeypatch.setattr(engine.conflicts, "CREATION_GRACE", 10.0)
    async with Engine(tmp_path, {}) as engine:
        engine.write("scratch.tmp", "x")
        await engine.until(lambda: "scratch.tmp" in engine.manager.files.index.entries, what="the watcher saw it")
        (engine.workspace / "scratch.tmp").unlink()
        await engine.until(lambda: "scratch.tmp" not in engine.manager.files.index.entries, what="the deletion")
        await engine.manager.files.stop()  # what was still pending is judged now: nothing is
        assert engine.file("scratch.tmp") is None and not engine.of("file_deleted") and not engine.of("file_changed")


async def test_a_new_unlocked_file_that_stays_is_a_conflict_after_the_grace(tmp_path: Path) -> None:
    async with Engine(tmp_path, {}) as engine:
        engine.write("intruder.txt", "x")
        await engine.until(lambda: engine.file("intruder.txt") is not None, what="the conflict")
        assert engine.file("intruder.txt").status == "conflict"
        assert engine.file("intruder.txt").conflict.reason == "no_lock"
