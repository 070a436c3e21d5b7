"""`run` without `--workspace` works in a scratch copy and cleans it up, unless told or needed to keep it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from conftest import ROOT

SPRINTDECK = [sys.executable, "-m", "app.cli"]


def plan_with_workspace(tmp_path: Path, estimate: str = "100ms") -> Path:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo/readme.md").write_text("hello\n")
    plan = {"sprint": "scratch", "workspace": "repo", "agents": [{"id": "a"}],
            "tasks": [{"id": "t", "estimate": estimate, "resources": ["readme.md"]}]}
    (tmp_path / "plan.yaml").write_text(yaml.safe_dump(plan))
    return tmp_path / "plan.yaml"


def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path / "tmp")}


def scratch_of(stderr: str) -> Path:
    found = re.search(r"workspace (\S+) \(a scratch copy, removed at the end unless --keep-workspace\)", stderr)
    assert found, stderr
    return Path(found.group(1))


def run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SPRINTDECK, "run", str(plan_with_workspace(tmp_path)), "--headless",
                           "--record", str(tmp_path / "j.jsonl"), *extra],
                          cwd=tmp_path, env=env(tmp_path), capture_output=True, text=True, timeout=60)


def test_a_finished_run_removes_its_scratch_copy_and_keeps_the_journal(tmp_path: Path) -> None:
    out = run(tmp_path)
    assert out.returncode == 0, out.stderr
    assert not scratch_of(out.stderr).exists()
    assert list((tmp_path / "tmp").iterdir()) == []  # nothing left behind in the temp folder
    assert (tmp_path / "j.jsonl").stat().st_size > 0
    assert (tmp_path / "repo/readme.md").read_text() == "hello\n"  # the plan's workspace untouched
    assert out.stderr.rstrip().splitlines()[-1].startswith("sprintdeck: finished")


def test_keep_workspace_keeps_it_and_says_where(tmp_path: Path) -> None:
    out = run(tmp_path, "--keep-workspace")
    assert out.returncode == 0, out.stderr
    scratch = scratch_of(out.stderr)
    assert (scratch / "readme.md").exists()
    assert f"sprintdeck: workspace kept at {scratch} (--keep-workspace)" in out.stderr


def test_an_interrupted_run_keeps_its_scratch_copy_for_resume(tmp_path: Path) -> None:
    plan = plan_with_workspace(tmp_path, estimate="10m")
    process = subprocess.Popen([*SPRINTDECK, "run", str(plan), "--headless", "--speed", "1",
                                "--record", str(tmp_path / "j.jsonl")],
                               cwd=tmp_path, env=env(tmp_path), stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while "recording" not in (line := process.stderr.readline()):
        assert line or time.monotonic() < deadline, "run did not start"
        stderr = line
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    rest = process.stderr.read()
    assert process.wait(timeout=30) == 130
    scratch = scratch_of(stderr)
    assert (scratch / "readme.md").exists()
    assert f"workspace kept at {scratch}: the sprint did not finish (run --resume continues in it)" in rest
