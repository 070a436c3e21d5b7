"""Far seeks before the snapshots exist: off the UI thread, sharing the snapshot builder's work.

The builder is held with a gate: `engine.replay.apply` (the reducer's fold step) waits for it in
every thread but the main one, where the App and its key handling run.  So a seek that is prepared
in a worker cannot finish until the test opens the gate, while anything done on the UI thread runs
at once -- which is how the tests tell "waits in a worker" from "blocks the UI".
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine.replay
from app.replay_dashboard import ReplayApp
from conftest import SAMPLES
from engine.events import Event
from engine.journal import read_journal
from engine.reducer import apply as real_apply
from engine.reducer import fold
from engine.replay import ReplayCursor
from widgets.scrubber import Scrubber

RECORDED = SAMPLES / "webrtc" / "recorded.jsonl"
EVERY = 10  # snapshot interval: the sample's 251 events are 25 intervals, far more than a quick seek


class Gate:
    """Holds every fold step outside the main thread until opened; counts steps per thread."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.steps: Counter[str] = Counter()
        self.waiting = threading.Event()  # some thread is held at the gate

    def apply(self, state, event) -> None:
        if threading.current_thread() is not threading.main_thread():
            if not self.open.is_set():
                self.waiting.set()
                self.open.wait(timeout=30)
            self.steps[threading.current_thread().name] += 1
        real_apply(state, event)


@pytest.fixture
def gate(monkeypatch) -> Iterator[Gate]:
    gate = Gate()
    monkeypatch.setattr(engine.replay, "apply", gate.apply)
    yield gate
    gate.open.set()


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    target = tmp_path / "recorded.jsonl"
    shutil.copyfile(RECORDED, target)
    return target


def linear(journal: Path, seq: int) -> str:
    """The state after `seq` by folding every event from the start: what any seek must equal."""
    events = [Event.from_record(record) for record in read_journal(journal)[1][:seq]]
    return fold(events).model_dump_json()


async def settle(pilot, until, tries: int = 400) -> None:
    """Let the App run until `until()` holds (a bound on tries, not a timed assertion)."""
    for _ in range(tries):
        if until():
            return
        await pilot.pause(0.02)


# ---------------------------------------------------------------- the dashboard


@pytest.mark.parametrize("how", ["end", "seek command", "scrubber click"])
async def test_a_far_seek_waits_for_the_builder_in_a_worker_and_keys_still_work(how, gate, journal,
                                                                              tmp_path) -> None:
    cursor = ReplayCursor.open(journal, snapshot_every=EVERY)
    total = cursor.total
    app = ReplayApp(cursor, config_file=tmp_path / "config.json")
    async with app.run_test(size=(120, 40)) as pilot:
        try:
            await pilot.pause(0.1)
            if how == "end":
                await pilot.press("end")
                wanted = total
            elif how == "seek command":
                await pilot.press("colon", *"seek 200", "enter")
                wanted = 200
            else:
                scrubber = app.query_one(Scrubber)
                await pilot.click(Scrubber, offset=(1 + scrubber.content_region.width * 3 // 4, 0))
                wanted = app.seeking
                assert wanted is not None and abs(wanted - total * 3 // 4) <= total // 50 + 2
            # The seek is pending in a worker held at the gate; the UI thread is free.
            assert app.seeking == wanted and app.cursor.position == 0
            assert f"seeking to #{wanted}" in app.scrubber.transport.event
            await pilot.press("greater_than_sign")
            assert app.scrubber.transport.speed == "×2 real time"  # the key was handled while the seek waits
            await pilot.press("2")
            assert app.focused is app.agents
            assert app.cursor.position == 0 and app.seeking == wanted
        finally:
            gate.open.set()
        await settle(pilot, lambda: app.cursor.position == wanted)
        assert app.cursor.position == wanted and app.seeking is None
        assert app.source.state.model_dump_json() == linear(journal, wanted)
        assert "seeking" not in app.scrubber.transport.event
        assert app.scrubber.transport.position == wanted
    cursor.close()


async def test_a_quick_move_makes_a_pending_seek_stale(gate, journal, tmp_path) -> None:
    cursor = ReplayCursor.open(journal, snapshot_every=EVERY)
    app = ReplayApp(cursor, at=15, config_file=tmp_path / "config.json")
    async with app.run_test(size=(120, 40)) as pilot:
        try:
            await pilot.pause(0.1)
            await pilot.press("end")
            assert app.seeking == cursor.total and app.cursor.position == 15
            await pilot.press("home")  # from the snapshot at 0: quick, done at once
            assert app.seeking is None and app.cursor.position == 0
            # Had the worker for `end` got its state before it was cancelled, its message is dropped:
            app.post_message(ReplayApp.SeekReady(-1, cursor.total, cursor.state_at(cursor.total)))
            await pilot.pause(0.05)
            assert app.cursor.position == 0
        finally:
            gate.open.set()
        await settle(pilot, lambda: cursor.snapshots_until == cursor.total // EVERY * EVERY)
        await pilot.pause(0.1)
        assert cursor.snapshots_until == cursor.total // EVERY * EVERY  # the builder did finish
        assert app.cursor.position == 0 and app.source.state.model_dump_json() == linear(journal, 0)
        await pilot.press("end")  # snapshots exist now: quick
        assert app.seeking is None and app.cursor.position == cursor.total
        assert app.source.state.model_dump_json() == linear(journal, cursor.total)
    cursor.close()


async def test_steps_while_seeking_count_from_the_target(gate, journal, tmp_path) -> None:
    cursor = ReplayCursor.open(journal, snapshot_every=EVERY)
    app = ReplayApp(cursor, config_file=tmp_path / "config.json")
    async with app.run_test(size=(120, 40)) as pilot:
        try:
            await pilot.pause(0.1)
            await pilot.press("end", "left_square_bracket", "left_square_bracket")
            assert app.seeking == cursor.total - 2 and app.cursor.position == 0
        finally:
            gate.open.set()
        await settle(pilot, lambda: app.cursor.position == cursor.total - 2)
        assert app.source.state.model_dump_json() == linear(journal, cursor.total - 2)
    cursor.close()


async def test_an_at_too_far_to_fold_quickly_is_reached_after_first_paint(gate, journal, tmp_path) -> None:
    cursor = ReplayCursor.open(journal, snapshot_every=EVERY)
    app = ReplayApp(cursor, at=200, config_file=tmp_path / "config.json")
    assert cursor.position == 0  # nothing folded before the App runs
    async with app.run_test(size=(120, 40)) as pilot:
        try:
            await settle(pilot, lambda: app.seeking is not None)
            assert app.seeking == 200 and app.cursor.position == 0
        finally:
            gate.open.set()
        await settle(pilot, lambda: app.cursor.position == 200)
        assert app.source.state.model_dump_json() == linear(journal, 200)
    cursor.close()


# ---------------------------------------------------------------- the cursor


def test_a_second_build_waits_for_the_first_and_no_event_is_folded_twice(gate, journal) -> None:
    with ReplayCursor.open(journal, snapshot_every=EVERY) as cursor:
        first = threading.Thread(target=cursor.build_snapshots, name="first")
        second = threading.Thread(target=cursor.build_snapshots, kwargs={"until": 120}, name="second")
        first.start()
        assert gate.waiting.wait(10)  # the first build is folding (held at its first event)
        second.start()
        gate.open.set()
        first.join(30)
        second.join(30)
        assert not first.is_alive() and not second.is_alive()
        assert gate.steps == {"first": cursor.total}  # the second only waited for the first
        assert cursor.snapshots_until == cursor.total // EVERY * EVERY


def test_a_build_after_a_stopped_one_continues_from_its_last_snapshot(gate, journal, monkeypatch) -> None:
    with ReplayCursor.open(journal, snapshot_every=EVERY) as cursor:
        stop = threading.Event()
        gate.open.set()
        real = gate.apply

        def stopping(state, event) -> None:  # ask the first build to stop at event 95
            real(state, event)
            if event.seq == 95:
                stop.set()

        monkeypatch.setattr(engine.replay, "apply", stopping)
        first = threading.Thread(target=cursor.build_snapshots, kwargs={"stop": stop}, name="first")
        first.start()
        first.join(30)
        assert cursor.snapshots_until == 100  # it ran on to the next snapshot, then stopped
        second = threading.Thread(target=cursor.build_snapshots, name="second")
        second.start()
        second.join(30)
        assert gate.steps == {"first": 100, "second": cursor.total - 100}


def test_close_stops_a_build_in_another_thread(gate, journal) -> None:
    cursor = ReplayCursor.open(journal, snapshot_every=EVERY)
    builder = threading.Thread(target=cursor.build_snapshots, name="builder")
    builder.start()
    assert gate.waiting.wait(10)
    cursor.close()
    gate.open.set()
    builder.join(30)
    assert not builder.is_alive()
    assert gate.steps["builder"] <= EVERY  # stopped at the first snapshot after close()


def test_state_at_and_place_do_a_seek_in_two_halves(journal) -> None:
    with ReplayCursor.open(journal, snapshot_every=EVERY) as cursor:
        cursor.seek(30)
        assert cursor.seek_cost(35) == 5  # forwards from the position
        assert cursor.seek_cost(25) == 5  # from the snapshot at 20
        assert cursor.seek_cost(cursor.total) == cursor.total - 30
        state = cursor.state_at(200)
        assert cursor.position == 30  # state_at does not move the cursor
        assert state.model_dump_json() == linear(journal, 200)
        with pytest.raises(ValueError):
            cursor.place(199, state)
        assert cursor.place(200, state) is cursor.state and cursor.position == 200
        assert cursor.step(1).model_dump_json() == linear(journal, 201)
        cursor.build_snapshots()
        assert cursor.seek_cost(cursor.total) <= EVERY
