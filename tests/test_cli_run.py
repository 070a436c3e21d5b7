"""`sprintdeck run --headless` as a user runs it: a real subprocess, real exit codes and output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import ROOT, SAMPLES
from engine.events import Event
from engine.journal import read_journal
from engine.reducer import fold

SPRINTDECK = [sys.executable, "-m", "app.cli"]


def sprintdeck(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SPRINTDECK, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_sample_sprint_json_is_one_object_and_matches_the_journal(tmp_path: Path) -> None:
    journal = tmp_path / "run.jsonl"
    out = sprintdeck("run", str(SAMPLES / "webrtc/plan.yaml"), "--headless", "--json", "--seed", "4",
                     "--record", str(journal), "--workspace", str(tmp_path / "ws"))
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "10/10 done" in out.stderr
    result = json.loads(out.stdout)  # exactly one JSON object, nothing else on stdout
    assert set(result) == {"state", "metrics"}
    assert set(result["state"]) == {"version", "files", "tasks", "agents", "locks"}
    assert result["metrics"]["completedTasks"] == result["metrics"]["totalTasks"] == 10
    assert all(t["status"] == "completed" for t in result["state"]["tasks"].values())
    header, records, _ = read_journal(journal)
    assert header["sprint"] == "webrtc-signaling"
    replayed = fold(Event.from_record(r) for r in records)
    assert replayed.model_dump(mode="json") == result["state"]
    # --workspace is used as is: the simulated agents' edits are there.
    assert "backend: implement_api attempt 1" in (tmp_path / "ws/server/routes.ts").read_text()


def test_default_journal_goes_under_sprintdeck_runs(tmp_path: Path) -> None:
    plan = {"sprint": "tiny", "agents": [{"id": "a"}], "tasks": [{"id": "t", "estimate": "100ms"}]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = sprintdeck("run", "plan.yaml", "--headless", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (journal,) = (tmp_path / ".sprintdeck/runs").glob("tiny-*.jsonl")
    assert str(journal.relative_to(tmp_path)) in out.stderr
    assert out.stdout == ""


def test_failed_tasks_exit_1(tmp_path: Path) -> None:
    plan = {
        "sprint": "doomed",
        "settings": {"max_retries": 0},
        "agents": [{"id": "a", "failure_rate": 1.0}],
        "tasks": [{"id": "t", "estimate": "100ms"}, {"id": "u", "depends_on": ["t"]}],
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = sprintdeck("run", "plan.yaml", "--headless", "--json", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    state = json.loads(out.stdout)["state"]
    assert state["tasks"]["t"]["status"] == "failed" and state["tasks"]["u"]["status"] == "cancelled"
    assert "0/2 done, 2 failed or cancelled" in out.stderr
    assert out.stderr.splitlines()[-1] == "sprintdeck: finished · 0/2 done · 1 failed · 1 cancelled"


def test_bad_plan_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text("sprint: x\nagents:\n  - id: a\ntasks:\n  - id: t\n    depends_on: [ghost]\n")
    out = sprintdeck("run", "plan.yaml", "--headless", cwd=tmp_path)
    assert out.returncode == 2
    assert "plan.yaml:6:" in out.stderr and "ghost" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / ".sprintdeck").exists()


def test_existing_journal_is_never_overwritten(tmp_path: Path) -> None:
    journal = tmp_path / "keep.jsonl"
    journal.write_text('{"format":"sprintdeck-journal"}\n')
    out = sprintdeck("run", str(SAMPLES / "webrtc/plan.yaml"), "--headless", "--record", str(journal))
    assert out.returncode == 2
    assert "keep.jsonl" in out.stderr and "Traceback" not in out.stderr
    assert journal.read_text() == '{"format":"sprintdeck-journal"}\n'


def test_a_file_left_in_conflict_is_part_of_the_outcome_exit_1(tmp_path: Path) -> None:
    """Every task completed, but src/config.py is still in conflict: the sprint did not succeed.

    The last line says which file, the --json metrics list it (fields added, none changed), and the
    exit code is 1 as DESIGN §11 says for "a conflict is left unresolved".
    """
    journal = tmp_path / "conflict.jsonl"
    out = sprintdeck("run", str(SAMPLES / "conflict/plan.yaml"), "--headless", "--json", "--record", str(journal))
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.splitlines()[-1] == "sprintdeck: finished · 3/3 done · 1 file left in conflict: src/config.py"
    result = json.loads(out.stdout)
    assert set(result) == {"state", "metrics"}
    files = result["state"]["files"]
    conflicted = [path for path, f in files.items() if f["status"] == "conflict"]
    assert conflicted == ["src/config.py"], files
    metrics = result["metrics"]
    assert metrics["completedTasks"] == metrics["totalTasks"] == 3
    assert metrics["unresolvedConflicts"] == ["src/config.py"]
    _, records, _ = read_journal(journal)
    recorded = {r["data"].get("path") for r in records if r["type"] == "file_changed" and r["data"].get("status") == "conflict"}
    assert set(conflicted) <= recorded
    # The replay's final state and metrics, unresolved conflict included, are the run's byte for byte.
    replay = sprintdeck("replay", str(journal), "--headless", "--json")
    assert replay.returncode == 0, replay.stderr
    assert replay.stdout == out.stdout


def test_a_clean_sprint_says_finished_and_lists_no_conflicts(tmp_path: Path) -> None:
    plan = {"sprint": "tiny", "agents": [{"id": "a"}], "tasks": [{"id": "t", "estimate": "100ms"}]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = sprintdeck("run", "plan.yaml", "--headless", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[-1] == "sprintdeck: finished · 1/1 done"
    assert json.loads(out.stdout)["metrics"]["unresolvedConflicts"] == []


def test_help_documents_exit_1_for_a_file_left_in_conflict() -> None:
    for command in ("run", "serve"):
        out = sprintdeck(command, "--help")
        assert out.returncode == 0
        assert "file is left in conflict" in " ".join(out.stdout.split()), out.stdout
