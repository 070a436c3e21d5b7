"""Plans that used to validate and then break the sprint are refused, with file, line and reason.

Each case is a real file (most of them in sample_sprints/invalid/), checked by `sprintdeck
validate`, `run` and `serve` as a user types them: exit 2, the message naming the line, and no
traceback, no journal, no sprint.  Timings that livelock the recovery (a heartbeat timeout within
the interval), `lock_ttl: 0` (a traceback at `run`), `estimate: 1e308` (a sprint asleep for good),
duplicate YAML keys (the last won silently), a missing workspace (an empty scratch folder, exit 0),
ids with ANSI escapes, `../` or 100,000 characters, and every hostile number.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from engine.plan import PlanError, load_plan
from engine.plan_values import parse_duration, parse_size

ROOT = Path(__file__).resolve().parents[1]
INVALID = "sample_sprints/invalid"
SPRINTDECK = [sys.executable, "-m", "app.cli"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}

TWICE = "must be at least twice heartbeat_interval"
EXPECTED = {
    "livelock_timings.yaml": [
        f"4: settings: heartbeat_timeout: 1s {TWICE} (2s), or an agent whose heartbeat is a moment late is declared dead",
        f"5: settings: lock_ttl: 1.5s {TWICE} (2s): heartbeats renew leases, so a shorter one expires under an agent "
        "that is working",
    ],
    "zero_timings.yaml": [
        "3: settings: heartbeat_interval: 0ms is too short (at least 10ms: agents heartbeat this often)",
        "4: settings: lock_ttl: must be more than 0",
    ],
    "hostile_numbers.yaml": [
        "3: settings: max_retries: should be less than or equal to 100, got 100000000000000000000000000000000000000000",
        "4: settings: lock_delay: invalid duration nan (use 500ms, 30s, 2m, 1h or a number of seconds)",
        "7: agent 'worker': failure_rate: should be less than or equal to 1, got inf",
        "8: agent 'worker': max_concurrent_tasks: should be greater than or equal to 1, got -1",
        "9: agent 'worker': max_execution_time: must be more than 0 (leave it out for no limit)",
        "10: agent 'worker': max_memory_usage: size 1e+30 is too large (at most 1024TB)",
        "13: task 'build': estimate: duration 1e+308 is too long (at most 720h, 30 days)",
        "15: task 'test': estimate: invalid duration '-5s' (use 500ms, 30s, 2m, 1h or a number of seconds)",
    ],
    "duplicate_keys.yaml": [
        "5: duplicate key 'lock_ttl' (first on line 3): only one of the two would be kept",
        "5: settings: lock_ttl: must be more than 0",
        "11: duplicate key 'estimate' (first on line 10): only one of the two would be kept",
    ],
    "missing_workspace.yaml": [
        f"2: workspace: 'no_such_folder' does not exist (looked for {ROOT}/{INVALID}/no_such_folder)",
    ],
    "hostile_ids.yaml": [
        "1: sprint: '../../journal' contains a path separator ('/' or '\\'); ids become parts of file names",
        r"4: agent 'worker': capabilities[0]: 'build\x1b[2J' contains the control character '\x1b'",
        r"6: task '\x1b[31mred': id: '\x1b[31mred' contains the control character '\x1b'",
        "7: task '../escape': id: '../escape' contains a path separator ('/' or '\\'); ids become parts of file names",
        r"8: task '../escape': title: 'line one\nline two' contains the control character '\n'",
    ],
}


def sprintdeck(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SPRINTDECK, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_validate_refuses_each_with_its_line_and_reason(name: str) -> None:
    out = sprintdeck("validate", f"{INVALID}/{name}")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines() == [f"{INVALID}/{name}:{line}" for line in EXPECTED[name]]
    assert "\x1b" not in out.stderr  # the escapes are quoted, never sent to the terminal


@pytest.mark.parametrize("name", ["livelock_timings.yaml", "zero_timings.yaml", "hostile_numbers.yaml",
                                  "duplicate_keys.yaml", "missing_workspace.yaml", "hostile_ids.yaml"])
def test_run_and_serve_refuse_before_anything_starts(tmp_path: Path, name: str) -> None:
    plan = ROOT / INVALID / name
    journal = tmp_path / "run.jsonl"
    for command in (["run", str(plan), "--headless", "--record", str(journal)],
                    ["serve", str(plan), "--listen", "tcp:127.0.0.1:0", "--headless", "--record", str(journal)]):
        out = sprintdeck(*command, cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert out.stderr.splitlines()[0] == f"{plan}:{EXPECTED[name][0]}"
        assert "Traceback" not in out.stderr
        assert not journal.exists() and not (tmp_path / ".sprintdeck").exists()


def test_a_100000_character_id_is_refused_and_quoted_short(tmp_path: Path) -> None:
    long_id = "x" * 100_000
    (tmp_path / "plan.yaml").write_text(
        f"sprint: s\nagents:\n  - id: a\n  - id: {'a' * 300}\ntasks:\n  - id: {long_id}\n"
        f"  - id: y\n    depends_on: [{long_id}]\n    requires: [{'c' * 201}]\n")
    out = sprintdeck("validate", "plan.yaml", cwd=tmp_path)
    shown = "'" + "x" * 40 + "'...'" + "x" * 20 + "' (100,000 characters)"
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "plan.yaml:4: agent '" + "a" * 40 + "'...'" + "a" * 20 + "' (300 characters): id: agent id '" + "a" * 40
        + "'...'" + "a" * 20 + "' (300 characters) is too long (at most 200 characters)",
        f"plan.yaml:6: task {shown}: id: {shown} is too long (at most 200 characters)",
        f"plan.yaml:8: task 'y': depends_on[0]: {shown} is too long (at most 200 characters)",
        "plan.yaml:9: task 'y': requires[0]: '" + "c" * 40 + "'...'" + "c" * 20
        + "' (201 characters) is too long (at most 200 characters)",
    ]
    assert max(len(line) for line in out.stderr.splitlines()) < 300


def test_timings_from_defaults_point_at_the_setting_that_makes_them_wrong(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text("sprint: s\nsettings:\n  max_retries: 1\n  heartbeat_interval: 20s\n"
                                        "agents: [{id: a}]\n")
    with pytest.raises(PlanError) as refused:
        load_plan(tmp_path / "plan.yaml")
    assert [(p.line, p.message) for p in refused.value.problems] == [
        (4, f"settings: heartbeat_timeout: 5s (the default) {TWICE} (20s), or an agent whose heartbeat is a "
            "moment late is declared dead"),
        (4, f"settings: lock_ttl: 30s (the default) {TWICE} (20s): heartbeats renew leases, so a shorter one "
            "expires under an agent that is working"),
    ]


def test_a_broken_setting_does_not_hide_a_timing_problem(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text("sprint: s\nsettings:\n  max_retries: -1\n  lock_ttl: 0\nagents: [{id: a}]\n")
    with pytest.raises(PlanError) as refused:
        load_plan(tmp_path / "plan.yaml")
    assert [(p.line, p.message) for p in refused.value.problems] == [
        (3, "settings: max_retries: should be greater than or equal to 0, got -1"),
        (4, "settings: lock_ttl: must be more than 0"),
    ]


def test_timings_at_the_bounds_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text("sprint: s\nsettings: {heartbeat_interval: 10ms, heartbeat_timeout: 20ms, "
                                        "lock_ttl: 20ms, lock_delay: 0}\nagents: [{id: a}]\n"
                                        "tasks: [{id: t, estimate: 720h, max_retries: 100}]\n")
    plan = load_plan(tmp_path / "plan.yaml")
    assert (plan.settings.heartbeat_timeout, plan.settings.lock_ttl, plan.task("t").estimate) == (0.02, 0.02, 2592000.0)


def test_merge_keys_may_override_but_json_duplicates_are_refused(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text("sprint: s\nagents: [{id: a}]\ntasks:\n  - &t {id: t, estimate: 2s}\n"
                                        "  - <<: *t\n    id: u\n    estimate: 3s\n")
    plan = load_plan(tmp_path / "plan.yaml")
    assert (plan.task("t").estimate, plan.task("u").estimate) == (2.0, 3.0)  # overriding a merge is YAML doing its job
    (tmp_path / "plan.json").write_text('{\n "sprint": "s",\n "agents": [{"id": "a"}],\n "sprint": "t"\n}\n')
    with pytest.raises(PlanError) as refused:
        load_plan(tmp_path / "plan.json")
    assert [str(p) for p in refused.value.problems] == [
        f"{tmp_path}/plan.json:4: duplicate key 'sprint' (first on line 2): only one of the two would be kept"]


@pytest.mark.parametrize("value", [10**400, -(10**400), float("nan"), float("inf"), -1, "1e999s", "99999999999h"],
                         ids=["huge", "-huge", "nan", "inf", "-1", "1e999s", "99999999999h"])
def test_hostile_numbers_are_value_errors_never_anything_else(value: object) -> None:
    for parse in (parse_duration, parse_size):
        with pytest.raises(ValueError):
            parse(value)


def test_the_largest_values_still_mean_something() -> None:
    assert parse_duration("720h") == 30 * 24 * 3600.0 and math.isfinite(parse_duration(2592000))
    assert parse_size("1024TB") == 1024**5
