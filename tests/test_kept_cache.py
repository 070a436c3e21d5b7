"""Keeping a lock's content without reading files twice (engine/kept_content.py, engine/file_index.py).

The content a settle just read is kept without a second read, an unchanged file locked again is
kept from the store's recently dropped blobs, and neither shortcut is taken when the index cannot
vouch for the file (a racy entry, a symlink): then the file is read, as before.  These tests check
that the kept content is right; how many reads it took is a speed figure, reported by
`benchmarks/bench_watch.py` ("reads per lock") next to its floor.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_watch_support import Engine
from engine.kept_content import ContentStore
from engine.file_index import checksum_bytes


def _sum(text: str) -> str:
    return checksum_bytes(text.encode())


async def _released_after_a_change(engine: Engine, content: str) -> None:
    """alice changes f.txt under a write lock and releases it; the index then trusts the entry."""
    grant = await engine.lock("alice", "f.txt", "write")
    engine.write("f.txt", content)
    await engine.until(lambda: engine.file("f.txt").checksum == _sum(content))
    await engine.unlock("alice", grant)
    await engine.settled()
    assert "f.txt" not in engine.manager.files.kept  # released: its blobs were dropped
    engine.manager.files.index.entries["f.txt"].racy = False  # as if hashed long after the write


async def test_relocking_an_unchanged_file_keeps_it_and_reverts_to_it(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"f.txt": "base\n"}) as engine:
        await _released_after_a_change(engine, "alice's\n")
        await engine.lock("bob", "f.txt", "read")  # kept from the recently dropped blob, by its checksum
        guard = engine.manager.files
        assert guard.store.get(guard.kept["f.txt"].base) == b"alice's\n"
        engine.write("f.txt", "rogue\n")
        await engine.until(lambda: engine.file("f.txt").status == "conflict")
        engine.manager.op_revert_file("f.txt")
        assert (engine.workspace / "f.txt").read_text() == "alice's\n"
        assert engine.file("f.txt").checksum == _sum("alice's\n")
        assert engine.replayed_files() == engine.live_files()


async def test_a_same_size_rewrite_in_the_same_tick_is_read_not_taken_from_the_cache(tmp_path: Path) -> None:
    """The racy-clean case while unlocked: the stat is unchanged, only a re-read sees the rewrite."""
    async with Engine(tmp_path, {"f.txt": "base\n"}) as engine:
        await _released_after_a_change(engine, "aaaa\n")
        target = engine.workspace / "f.txt"
        stamp = target.stat().st_mtime_ns
        guard = engine.manager.files
        guard.index.entries["f.txt"].racy = True  # hashed within RACY_NS of its mtime
        engine.write("f.txt", "bbbb\n")
        os.utime(target, ns=(stamp, stamp))  # same size, same mtime: the stat cannot tell
        assert guard.store.holds(_sum("aaaa\n"))  # the stale content is still at hand...
        assert guard.index.clean_checksum("f.txt") is None  # ...the index does not vouch for it...
        await engine.lock("bob", "f.txt", "write")
        assert guard.store.get(guard.kept["f.txt"].base) == b"bbbb\n"  # ...and not used
        file = engine.file("f.txt")
        assert file.checksum == _sum("bbbb\n") and file.status == "conflict"  # nobody held it then
        assert engine.replayed_files() == engine.live_files()


async def test_a_racy_file_is_kept_from_the_settles_read(tmp_path: Path) -> None:
    """The settle re-hashes a racy entry; the base is kept from those bytes."""
    async with Engine(tmp_path, {"f.txt": "base\n"}) as engine:
        await engine.settled()
        engine.manager.files.index.entries["f.txt"].racy = True
        await engine.lock("alice", "f.txt", "write")
        guard = engine.manager.files
        assert guard.store.get(guard.kept["f.txt"].base) == b"base\n"


async def test_revert_after_a_relock_restores_the_new_holders_good_content(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"f.txt": "base\n"}) as engine:
        await _released_after_a_change(engine, "v1\n")
        grant = await engine.lock("bob", "f.txt", "write")  # base v1, from the store
        engine.write("f.txt", "v2 by bob\n")
        await engine.report("bob", grant, "f.txt", _sum("v2 by bob\n"))
        await engine.until(lambda: engine.file("f.txt").checksum == _sum("v2 by bob\n"))
        assert engine.file("f.txt").modified_by == "bob"
        engine.write("f.txt", "rogue!!\n")  # not what bob reported: a conflict under his lock
        await engine.until(lambda: engine.file("f.txt").status == "conflict")
        guard = engine.manager.files
        kept = guard.kept["f.txt"]
        assert (guard.store.get(kept.base), guard.store.get(kept.good)) == (b"v1\n", b"v2 by bob\n")
        engine.manager.op_revert_file("f.txt")
        assert (engine.workspace / "f.txt").read_text() == "v2 by bob\n"
        assert engine.replayed_files() == engine.live_files()


async def test_the_holders_change_is_kept_as_the_last_good_content(tmp_path: Path) -> None:
    """What the index read and hashed while judging the change is what is kept (under its checksum)."""
    async with Engine(tmp_path, {"f.txt": "base\n"}) as running:
        await running.settled()
        running.manager.files.index.entries["f.txt"].racy = True
        grant = await running.lock("alice", "f.txt", "write")
        running.write("f.txt", "changed\n")
        await running.until(lambda: running.file("f.txt").checksum == _sum("changed\n"))
        guard = running.manager.files
        assert guard.kept["f.txt"].good == _sum("changed\n")
        assert guard.store.get(guard.kept["f.txt"].good) == b"changed\n"
        await running.unlock("alice", grant)


async def test_a_symlink_is_kept_as_its_target_text(tmp_path: Path) -> None:
    """A link's checksum covers b"symlink:" + target: it must not name a regular file's blob.

    (A lock asked on the link itself is a lock on the file it leads to; the link is kept as a
    path under a locked directory.)"""
    impostor = b"symlink:../target.txt"  # a regular file whose content hashes like the link
    engine = Engine(tmp_path, {"target.txt": "t\n", "impostor.txt": impostor, "d/other.txt": "o\n"})
    (engine.workspace / "d" / "link").symlink_to("../target.txt")
    async with engine:
        guard = engine.manager.files
        assert guard.index.entries["d/link"].checksum == checksum_bytes(impostor)
        await engine.lock("alice", "impostor.txt", "read")
        assert guard.store.holds(checksum_bytes(impostor))
        guard.index.entries["d/link"].racy = False
        await engine.lock("alice", "d", "read")
        assert guard.store.get(guard.kept["d/link"].base) == b"../target.txt"


# ---------------------------------------------------------------- the store


def test_a_dropped_blob_stays_at_hand_within_the_recent_budget(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "kept", memory_budget=1000, spill_over=100, recent_budget=100)
    a, b, c = b"a" * 40, b"b" * 40, b"c" * 40
    keys = [store.put(data) for data in (a, b, c)]
    for key in keys:
        store.drop(key)
    assert store.memory_bytes == 0 and store.recent_bytes == 80  # a was dropped first: it went
    assert [store.holds(k) for k in keys] == [False, True, True]
    store.ref(keys[1])
    assert store.get(keys[1]) == b and store.memory_bytes == 40 and store.recent_bytes == 40
    with pytest.raises(KeyError):
        store.ref(keys[0])
    store.drop(keys[1])
    assert store.holds(keys[1])


def test_a_put_with_a_known_checksum_is_kept_under_it(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "kept")
    key = store.put(b"content", key=_sum("content"))
    assert key == _sum("content") and store.get(key) == b"content"
    store.drop(key)
    assert store.put(b"content", key=key) == key and store.get(key) == b"content"  # back from the cache
    assert store.recent_bytes == 0


def test_spilled_and_oversized_blobs_are_not_cached(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "kept", memory_budget=1000, spill_over=50, recent_budget=30)
    large, medium = b"L" * 60, b"M" * 40
    keys = [store.put(large), store.put(medium)]
    assert store.spilled == 1
    for key in keys:
        store.drop(key)
    assert not store.holds(keys[0]) and not store.holds(keys[1])  # on disk, and over the budget
    assert store.spilled == 0 and store.recent_bytes == 0 and not list((tmp_path / "kept").iterdir())


def test_a_revived_blob_respects_the_memory_budget(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "kept", memory_budget=50, spill_over=100, recent_budget=100)
    first = store.put(b"1" * 40)
    store.drop(first)
    store.put(b"2" * 40)  # the memory budget is taken again
    store.ref(first)
    assert store.spilled == 1 and store.get(first) == b"1" * 40 and store.memory_bytes == 40


async def test_recent_blobs_go_when_the_manager_stops(tmp_path: Path) -> None:
    async with Engine(tmp_path, {"f.txt": "base\n"}) as engine:
        await _released_after_a_change(engine, "x\n")
        store = engine.manager.files.store
        assert store.recent_bytes > 0
    assert store.recent_bytes == 0
