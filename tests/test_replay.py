"""The replay cursor: fidelity to the live engine, seeking, recovery and corruption, the command."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

import engine.recorder
from conftest import ROOT, SAMPLES, run_sprint, simple_plan, write_plan
from engine.events import Event, EventType
from engine.journal import JournalError, encode_record, read_journal
from engine.plan import load_plan
from engine.reducer import fold, state_digest
from engine.replay import ReplayCursor, ReplayError, parse_time_of_day

SAMPLE_JOURNAL = SAMPLES / "webrtc/recorded.jsonl"
SPRINTDECK = [sys.executable, "-m", "app.cli"]


def sprintdeck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SPRINTDECK, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def copy_of(journal: Path, tmp_path: Path) -> Path:
    """Cursors may cut a torn tail, so tests always open a copy."""
    target = tmp_path / journal.name
    shutil.copyfile(journal, target)
    return target


def events_of(journal: Path) -> list[Event]:
    return [Event.from_record(record) for record in read_journal(journal)[1]]


def dumped(state) -> dict:
    return state.model_dump(mode="json")


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return copy_of(SAMPLE_JOURNAL, tmp_path)


# ---------------------------------------------------------------- fidelity


@pytest.mark.parametrize("name", ["webrtc", "conflict", "flaky"])
async def test_replay_matches_every_recorded_digest_of_a_fresh_run(name, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(engine.recorder, "DIGEST_EVERY", 20)  # many digests even in a short sprint
    monkeypatch.setattr(engine.recorder, "DIGEST_EVENTS_PER_TASK", 0)
    run = await run_sprint(load_plan(SAMPLES / name / "plan.yaml"), tmp_path)
    digests = [e for e in run.events if e.type == EventType.STATE_DIGEST]
    assert len(digests) >= run.events[-1].seq // 20
    assert run.events[-2].type == EventType.STATE_DIGEST  # one right before sprint_finished
    assert run.events[-1].type == EventType.SPRINT_FINISHED
    with ReplayCursor.open(run.journal, snapshot_every=7) as cursor:
        for digest in digests:
            state = cursor.seek(digest.seq - 1)
            assert digest.data["of"] == state.version
            assert state_digest(state) == digest.data["digest"]
        assert dumped(cursor.seek(cursor.total)) == dumped(run.result.state)


def test_every_digest_in_the_sample_recording_matches(sample: Path) -> None:
    events = events_of(sample)
    with ReplayCursor.open(sample, snapshot_every=50) as cursor:
        for digest in (e for e in events if e.type == EventType.STATE_DIGEST):
            assert state_digest(cursor.seek(digest.seq - 1)) == digest.data["digest"]
        assert dumped(cursor.seek(cursor.total)) == dumped(fold(events))


def test_a_wrong_digest_is_a_clear_error(tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    lines = SAMPLE_JOURNAL.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[-1])
    bogus = encode_record(record["seq"] + 1, "state_digest", {"digest": "0" * 64, "of": record["seq"]},
                          record["ts"], record["mono"])
    journal.write_bytes(b"".join(lines) + bogus)
    with ReplayCursor.open(journal) as cursor:
        with pytest.raises(ReplayError, match=rf"state_digest seq {record['seq'] + 1}"):
            cursor.seek(cursor.total)


@pytest.mark.parametrize("plan", ["webrtc", "conflict"])
def test_headless_json_replay_is_byte_identical_to_the_run(plan: str, tmp_path: Path) -> None:
    journal = tmp_path / "run.jsonl"
    run = sprintdeck("run", str(SAMPLES / plan / "plan.yaml"), "--headless", "--json", "--seed", "3",
                     "--record", str(journal), "--workspace", str(tmp_path / "ws"))
    assert run.returncode in (0, 1), run.stderr
    replay = sprintdeck("replay", str(journal), "--headless", "--json")
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout == run.stdout
    assert replay.stdout.count("\n") == 1


def test_headless_at_and_summary(sample: Path) -> None:
    at = sprintdeck("replay", str(sample), "--headless", "--json", "--at", "40")
    assert at.returncode == 0, at.stderr
    assert json.loads(at.stdout)["state"]["version"] == 40
    assert json.loads(at.stdout)["state"] == dumped(fold(events_of(sample)[:40]))
    human = sprintdeck("replay", str(sample), "--headless")
    assert human.returncode == 0 and "10/10 completed" in human.stdout


# ---------------------------------------------------------------- seeking


def test_random_seeks_equal_a_linear_fold(sample: Path) -> None:
    events = events_of(sample)
    linear = [dumped(fold([]))]
    state = fold([])
    for event in events:
        linear.append(dumped(fold([event], state)))
    rng = random.Random(5)
    with ReplayCursor.open(sample, snapshot_every=16) as cursor:
        for _ in range(300):
            target = rng.randint(-5, len(events) + 5)
            method = rng.choice(["seek", "step"])
            state = cursor.seek(target) if method == "seek" else cursor.step(target - cursor.position)
            expected = max(0, min(len(events), target))
            assert cursor.position == expected == state.version
            assert dumped(state) == linear[expected]
        cursor.build_snapshots()
        assert dumped(cursor.seek(123)) == linear[123]


def test_snapshots_bound_the_work_of_a_seek(sample: Path) -> None:
    with ReplayCursor.open(sample, snapshot_every=10) as cursor:
        cursor.build_snapshots()
        for target in (200, 3, 119, 250, 0, 77):
            assert cursor.seek_cost(target) <= 10
            assert cursor.seek(target).version == target


def test_events_and_time(sample: Path) -> None:
    events = events_of(sample)
    with ReplayCursor.open(sample) as cursor:
        assert cursor.total == len(events)
        assert cursor.header["sprint"] == "webrtc-signaling"
        assert cursor.event(1) == events[0] and cursor.event(cursor.total) == events[-1]
        assert cursor.events(60, 70) == events[59:70]
        assert cursor.events(cursor.total - 1, cursor.total + 10) == events[-2:]
        with pytest.raises(IndexError):
            cursor.event(0)
        middle = events[100]
        cursor.seek_time(cursor.time_of(middle.seq))
        assert cursor.time_of(cursor.position) == cursor.time_of(middle.seq)
        assert all(e.ts > middle.ts for e in events[cursor.position:])
        assert cursor.seek_time(cursor.start_time - timedelta(seconds=1)).version == 0
        assert cursor.seek_time(cursor.end_time + timedelta(hours=1)).version == cursor.total
        hhmmss = cursor.time_of(150).strftime("%H:%M:%S")
        when = parse_time_of_day(hhmmss, cursor.start_time)
        cursor.seek_time(hhmmss)
        assert 0 < cursor.position < cursor.total
        assert cursor.time_of(cursor.position) <= when < cursor.time_of(cursor.position + 1)


def test_parse_time_of_day(sample: Path) -> None:
    with ReplayCursor.open(sample) as cursor:
        start = cursor.start_time
    assert parse_time_of_day("12:30", start) == start.replace(hour=12, minute=30, second=0, microsecond=0)
    assert parse_time_of_day("03:11:29", start).second == 29
    with pytest.raises(ValueError):
        parse_time_of_day("noon", start)


# ---------------------------------------------------------------- recovery and corruption


def test_truncation_anywhere_in_the_last_record_replays_the_prefix_read_only(tmp_path: Path) -> None:
    whole = SAMPLE_JOURNAL.read_bytes()
    last_start = whole.rindex(b"\n", 0, len(whole) - 1) + 1
    prefix = events_of(SAMPLE_JOURNAL)[:-1]
    expected = dumped(fold(prefix))
    for cut in range(last_start + 1, len(whole)):  # every byte offset inside the last record
        journal = tmp_path / f"cut{cut}.jsonl"
        journal.write_bytes(whole[:cut])
        with ReplayCursor.open(journal) as cursor:
            assert cursor.torn is not None, cut
            assert cursor.torn.kept_records == len(prefix) and cursor.torn.line == len(prefix) + 2
            assert cursor.torn.torn_bytes == cut - last_start
            assert cursor.total == len(prefix)
            assert dumped(cursor.seek(cursor.total)) == expected
        assert journal.read_bytes() == whole[:cut]  # replay never writes: the torn tail is still there
        assert not journal.with_name(journal.name + ".broken").exists()


def test_cut_exactly_at_a_record_boundary_needs_no_recovery(tmp_path: Path) -> None:
    whole = SAMPLE_JOURNAL.read_bytes()
    last_start = whole.rindex(b"\n", 0, len(whole) - 1) + 1
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(whole[:last_start])
    with ReplayCursor.open(journal) as cursor:
        assert cursor.torn is None and cursor.total == len(events_of(SAMPLE_JOURNAL)) - 1


@pytest.mark.parametrize("line_no", [2, 60, 150, 250])
def test_a_flipped_byte_in_the_middle_is_an_error_naming_the_line(line_no: int, tmp_path: Path) -> None:
    lines = SAMPLE_JOURNAL.read_bytes().splitlines(keepends=True)
    line = bytearray(lines[line_no - 1])
    line[len(line) // 2] ^= 0x01
    lines[line_no - 1] = bytes(line)
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b"".join(lines))
    with pytest.raises(JournalError) as caught:
        ReplayCursor.open(journal)
    assert caught.value.line == line_no and caught.value.seq == line_no - 1
    assert f"j.jsonl:{line_no}:" in str(caught.value) and f"seq {line_no - 1}" in str(caught.value)
    assert not journal.with_name("j.jsonl.broken").exists()
    out = sprintdeck("replay", str(journal), "--headless", "--json")
    assert out.returncode == 2 and out.stdout == ""
    assert f":{line_no}:" in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_missing_or_foreign_journal_exits_2(tmp_path: Path) -> None:
    missing = sprintdeck("replay", str(tmp_path / "nope.jsonl"), "--headless")
    assert missing.returncode == 2 and "nope.jsonl" in missing.stderr and "Traceback" not in missing.stderr
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"hello": 1}\n')
    out = sprintdeck("replay", str(foreign), "--headless", "--json")
    assert out.returncode == 2 and "foreign.jsonl:1:" in out.stderr and "Traceback" not in out.stderr


def test_replay_never_reads_the_plan(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, simple_plan())
    journal = tmp_path / "run.jsonl"
    out = sprintdeck("run", str(plan.path if hasattr(plan, "path") else tmp_path / "plan.yaml"), "--headless",
                     "--record", str(journal), "--workspace", str(tmp_path / "ws"))
    assert out.returncode == 0, out.stderr
    (tmp_path / "plan.yaml").unlink()
    replay = sprintdeck("replay", str(journal), "--headless", "--json")
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["metrics"]["completedTasks"] == 3
