"""`sprintdeck diff A B`: timing is ignored, the first real divergence is named."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES
from engine.journal import encode_record

SAMPLE_JOURNAL = SAMPLES / "webrtc/recorded.jsonl"
ISO = "%Y-%m-%dT%H:%M:%S.%fZ"


def sprintdeck(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def _shift(value, delta: timedelta):
    """Every timestamp-looking string moved by `delta`: the same sprint, recorded at another time."""
    if isinstance(value, dict):
        return {key: _shift(item, delta) for key, item in value.items()}
    if isinstance(value, list):
        return [_shift(item, delta) for item in value]
    if isinstance(value, str) and len(value) == 27 and value.endswith("Z") and value[10] == "T":
        return (datetime.strptime(value, ISO) + delta).strftime(ISO)
    return value


def rewrite(source: Path, target: Path, change) -> None:
    """Copy a journal, passing each record through `change(record) -> record`, with fresh crcs."""
    lines = source.read_bytes().splitlines(keepends=True)
    out = [lines[0]]
    for line in lines[1:]:
        record = change(json.loads(line))
        out.append(encode_record(record["seq"], record["type"], record["data"], record["ts"], record["mono"]))
    target.write_bytes(b"".join(out))


def retimed(record: dict) -> dict:
    delta = timedelta(hours=3, seconds=17.25)
    record = _shift(record, delta)
    record["mono"] += 1234.5
    message = record["data"].get("message")
    if message is not None:
        message["id"] = "f" * 32  # message ids are random too
    if record["type"] == "state_digest":  # the state holds timestamps, so its digest differs too
        record["data"]["digest"] = "e" * 64
    if "latencyMs" in record["data"]:
        record["data"]["latencyMs"] += 3.0
    return record


@pytest.fixture
def shifted(tmp_path: Path) -> Path:
    target = tmp_path / "b.jsonl"
    rewrite(SAMPLE_JOURNAL, target, retimed)
    return target


def test_identical_recordings_do_not_diverge() -> None:
    out = sprintdeck("diff", str(SAMPLE_JOURNAL), str(SAMPLE_JOURNAL))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "do not diverge" in out.stdout


def test_timestamps_alone_are_not_a_divergence(shifted: Path) -> None:
    assert shifted.read_bytes() != SAMPLE_JOURNAL.read_bytes()
    out = sprintdeck("diff", str(SAMPLE_JOURNAL), str(shifted))
    assert out.returncode == 0, out.stdout + out.stderr


def test_one_changed_event_is_named(shifted: Path, tmp_path: Path) -> None:
    changed = tmp_path / "c.jsonl"

    def change(record: dict) -> dict:
        if record["seq"] == 120:
            record["data"]["injected"] = "something else"
        return record

    rewrite(shifted, changed, change)
    out = sprintdeck("diff", str(SAMPLE_JOURNAL), str(changed))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "seq 120" in out.stdout and "injected" in out.stdout
    kind = json.loads(SAMPLE_JOURNAL.read_bytes().splitlines()[120])["type"]
    assert kind in out.stdout


def test_a_changed_value_and_a_changed_type_are_named(tmp_path: Path) -> None:
    value, kind = tmp_path / "v.jsonl", tmp_path / "k.jsonl"
    target = next(json.loads(line) for line in SAMPLE_JOURNAL.read_bytes().splitlines()[1:]
                  if json.loads(line)["type"] == "lock_granted")

    def change_value(record: dict) -> dict:
        if record["seq"] == target["seq"]:
            record["data"]["agentId"] = "nobody"
        return record

    def change_type(record: dict) -> dict:
        if record["seq"] == 200:
            record["type"] = "task_progress" if record["type"] != "task_progress" else "message"
        return record

    rewrite(SAMPLE_JOURNAL, value, change_value)
    rewrite(SAMPLE_JOURNAL, kind, change_type)
    out = sprintdeck("diff", str(SAMPLE_JOURNAL), str(value))
    assert out.returncode == 1 and f"seq {target['seq']} lock_granted" in out.stdout and "'nobody'" in out.stdout
    out = sprintdeck("diff", str(SAMPLE_JOURNAL), str(kind))
    assert out.returncode == 1 and "seq 200" in out.stdout


def test_one_recording_going_further_diverges(tmp_path: Path) -> None:
    shorter = tmp_path / "short.jsonl"
    lines = SAMPLE_JOURNAL.read_bytes().splitlines(keepends=True)
    shorter.write_bytes(b"".join(lines[:-5]))
    out = sprintdeck("diff", str(shorter), str(SAMPLE_JOURNAL))
    assert out.returncode == 1 and f"seq {len(lines) - 5}" in out.stdout and "only B" in out.stdout


def test_different_plans_and_bad_input_exit_2(tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    lines = SAMPLE_JOURNAL.read_bytes().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["planDigest"] = "0" * 64
    other.write_bytes(json.dumps(header).encode() + b"\n" + b"".join(lines[1:]))
    out = sprintdeck("diff", str(SAMPLE_JOURNAL), str(other))
    assert out.returncode == 2 and "different plans" in out.stderr
    out = sprintdeck("diff", str(SAMPLE_JOURNAL), str(tmp_path / "missing.jsonl"))
    assert out.returncode == 2 and "missing.jsonl" in out.stderr and "Traceback" not in out.stderr
    corrupt = tmp_path / "corrupt.jsonl"
    lines[50] = lines[50].replace(b'"seq":50', b'"seq":51')
    corrupt.write_bytes(b"".join(lines))
    out = sprintdeck("diff", str(SAMPLE_JOURNAL), str(corrupt))
    assert out.returncode == 2 and "corrupt.jsonl:51:" in out.stderr and "Traceback" not in out.stderr


async def test_a_fresh_run_with_digests_retimed_does_not_diverge(tmp_path: Path, monkeypatch) -> None:
    """Digests hash timestamps, so a retimed recording has other digests: still no divergence."""
    import engine.recorder
    from conftest import run_sprint
    from engine.plan import load_plan

    monkeypatch.setattr(engine.recorder, "DIGEST_EVERY", 25)
    monkeypatch.setattr(engine.recorder, "DIGEST_EVENTS_PER_TASK", 0)
    run = await run_sprint(load_plan(SAMPLES / "webrtc/plan.yaml"), tmp_path)
    assert any(event.type == "state_digest" for event in run.events)
    retimed_copy = tmp_path / "retimed.jsonl"
    rewrite(run.journal, retimed_copy, retimed)
    out = sprintdeck("diff", str(run.journal), str(retimed_copy))
    assert out.returncode == 0, out.stdout + out.stderr
