"""`sprintdeck run --headless` as a user runs it: a real subprocess, real exit codes and output."""

from __future__ import annotations

import itertools
import json
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import ROOT, SAMPLES
from engine.events import Event
from engine.journal import read_journal
from engine.reducer import fold

SPRINTDECK = [sys.executable, "-m", "app.cli"]


def sprintdeck(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SPRINTDECK, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **(env or {})})


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
    assert "0/2 done · 1 failed · 1 cancelled" in out.stderr
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


# ---------------------------------------------------------------- the headless progress line

PROGRESS = re.compile(r"^\[[#-]{30}\] (?P<counts>.*) · (?P<elapsed>\d+\.\d)s$")


def progress_lines(stderr: str) -> list[re.Match[str]]:
    """The progress lines of a run whose stderr was a pipe (one per printed line)."""
    return [match for line in stderr.splitlines() if (match := PROGRESS.match(line))]


def test_a_2000_task_sprint_logs_at_most_one_progress_line_a_second(tmp_path: Path) -> None:
    """stderr piped (CI, a log file): not one line per task, but at most one a second, then the
    final counts and the outcome."""
    plan = {"sprint": "wide", "agents": [{"id": "a"}],
            "tasks": [{"id": f"t{n}", "estimate": "0s"} for n in range(2000)]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    started = time.monotonic()
    out = sprintdeck("run", "plan.yaml", "--headless", cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    lines = progress_lines(out.stderr)
    assert 1 <= len(lines) <= elapsed + 2, out.stderr
    times = [float(line["elapsed"]) for line in lines[:-1]]  # the last is the end's, whenever it came
    assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(times)), out.stderr
    assert lines[-1]["counts"] == "2000/2000 done"
    assert out.stderr.splitlines()[-1] == "sprintdeck: finished · 2000/2000 done"


def test_a_change_is_logged_within_a_second_not_at_the_next_event(tmp_path: Path) -> None:
    """`quick` completes (a line), `doomed` fails right after (within the second: held back), then
    nothing happens while `long` runs for seconds: the failure is still logged once the second
    is over, not only when `long` ends."""
    plan = {
        "sprint": "quiet", "settings": {"max_retries": 0},
        "agents": [{"id": "a", "capabilities": ["x"]}, {"id": "b", "capabilities": ["x"]},
                   {"id": "bad", "capabilities": ["y"], "failure_rate": 1.0}],
        "tasks": [{"id": "quick", "requires": ["x"], "estimate": "0s"},
                  {"id": "doomed", "requires": ["y"], "estimate": "300ms"},
                  {"id": "long", "requires": ["x"], "estimate": "4s"}],
    }
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = sprintdeck("run", "plan.yaml", "--headless", "--speed", "1", cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    counts = [line["counts"] for line in progress_lines(out.stderr)]
    assert "1/3 done · 1 failed" in counts, out.stderr  # logged while `long` still ran
    assert counts[-1] == "2/3 done · 1 failed", out.stderr


def test_the_progress_line_counts_retries_of_the_flaky_sample(tmp_path: Path) -> None:
    """Seed 0 of the flaky sample fails attempts that are retried (tests/test_activity_log.py)."""
    out = sprintdeck("run", str(SAMPLES / "flaky/plan.yaml"), "--headless", "--json", "--seed", "0", "--speed", "50",
                     "--record", str(tmp_path / "run.jsonl"), "--workspace", str(tmp_path / "ws"))
    assert out.returncode == 0, out.stderr
    retries = json.loads(out.stdout)["metrics"]["retries"]
    assert retries >= 2
    assert progress_lines(out.stderr)[-1]["counts"] == f"10/10 done · {retries} retries", out.stderr
    assert out.stderr.splitlines()[-1] == "sprintdeck: finished · 10/10 done"


def test_the_progress_line_counts_files_in_conflict(tmp_path: Path) -> None:
    out = sprintdeck("run", str(SAMPLES / "conflict/plan.yaml"), "--headless", "--record", str(tmp_path / "run.jsonl"))
    assert out.returncode == 1, out.stderr
    assert progress_lines(out.stderr)[-1]["counts"] == "3/3 done · 1 conflict", out.stderr


FAKE_CLAUDE = """#!/bin/sh
# The first run is killed as a crash would be; the next one finishes with a result.
if [ ! -e "$0.died" ]; then : > "$0.died"; kill -9 $$; fi
echo '{"type": "result", "result": "done", "is_error": false}'
"""


def test_the_progress_line_counts_agent_deaths(tmp_path: Path) -> None:
    """A claude agent's process killed mid-task is the agent dying; its restart completes the task."""
    claude = tmp_path / "claude"
    claude.write_text(FAKE_CLAUDE)
    claude.chmod(0o755)
    plan = {"sprint": "mortal", "settings": {"heartbeat_interval": "100ms"},
            "agents": [{"id": "coder", "kind": "claude", "role": "You write code."}],
            "tasks": [{"id": "t", "estimate": "100ms"}]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    out = sprintdeck("run", "plan.yaml", "--headless", "--json", cwd=tmp_path, env={"SPRINTDECK_CLAUDE": str(claude)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["metrics"]["agentDeaths"] == 1
    assert progress_lines(out.stderr)[-1]["counts"] == "1/1 done · 1 agent died", out.stderr


def test_on_a_terminal_the_progress_line_is_redrawn_in_place(tmp_path: Path) -> None:
    plan = {"sprint": "tiny", "agents": [{"id": "a"}], "tasks": [{"id": f"t{n}", "estimate": "0s"} for n in range(50)]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    leader, follower = pty.openpty()
    process = subprocess.Popen([*SPRINTDECK, "run", "plan.yaml", "--headless"], cwd=tmp_path, stderr=follower,
                               stdout=subprocess.DEVNULL, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    os.close(follower)
    written = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal's other side closed: the run is over
            break
        if not chunk:
            break
        written += chunk
    os.close(leader)
    assert process.wait(timeout=120) == 0
    screen = written.decode().replace("\r\n", "\n")
    lines = screen.rstrip("\n").split("\n")  # a redraw (\r) stays on its line
    assert lines[-1] == "sprintdeck: finished · 50/50 done", screen
    # One terminal line for the progress, redrawn with carriage returns and ended once.
    (bar,) = [line for line in lines if line.startswith("[")]
    assert bar.count("\r") >= 1, repr(bar)
    assert re.search(r"\r\[#{30}\] 50/50 done · \d+\.\ds\s*$", bar), repr(bar)


def test_leaving_the_dashboard_prints_the_outcome_behind_the_exit_code(tmp_path: Path) -> None:
    """After `q` on a sprint that ended with a file in conflict, the terminal says why the exit code is 1."""
    journal = tmp_path / "j.jsonl"
    command = f"{sys.executable} -m app.cli run {SAMPLES / 'conflict' / 'plan.yaml'} --record {journal}"
    env = os.environ | {"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40", "PYTHONPATH": str(ROOT)}
    screen = subprocess.Popen(["script", "-qec", command, "/dev/null"], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (journal.exists() and '"sprint_finished"' in journal.read_text()):
            assert time.monotonic() < deadline and screen.poll() is None, "the sprint did not finish"
            time.sleep(0.1)
        time.sleep(0.5)  # the dashboard shows the end
        assert screen.stdin is not None
        screen.stdin.write(b"q")
        screen.stdin.flush()
        out, _ = screen.communicate(timeout=30)
    finally:
        screen.kill()
    assert screen.returncode == 1
    after_app = out.decode(errors="replace")[out.decode(errors="replace").rindex("\x1b[?1049l"):].replace("\r", "")
    assert "sprintdeck: finished · 3/3 done · 1 file left in conflict: src/config.py" in after_app


def test_a_reader_that_left_gets_no_traceback() -> None:
    # `sprintdeck validate plan | head -0`, deterministically: the pipe's reading end is closed
    # before sprintdeck writes its line.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        out = subprocess.run([*SPRINTDECK, "validate", str(SAMPLES / "webrtc/plan.yaml")], cwd=ROOT, stdout=write_end,
                             stderr=subprocess.PIPE, text=True, timeout=60, env={"PYTHONPATH": str(ROOT)})
    finally:
        os.close(write_end)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr
