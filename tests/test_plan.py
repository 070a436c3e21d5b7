"""Loading and validating sprint plans: what a plan author sees for each kind of mistake."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.plan import Plan, PlanError, Problem, load_plan
from engine.plan_values import parse_duration, parse_size

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_sprints"
SPRINTDECK = Path(sys.executable).parent / "sprintdeck"

VALID = """\
sprint: demo
description: a small plan
workspace: ws
settings:
  lock_ttl: 10s
  max_retries: 4
agents:
  - id: backend
    capabilities: [api, websocket]
    max_concurrent_tasks: 2
    max_execution_time: 10m
    max_memory_usage: 512MB
  - id: frontend
    capabilities: [ui, websocket]
  - id: runner
    kind: shell
    capabilities: [ci]
tasks:
  - id: schema
    agent: backend
    estimate: 500ms
    resources:
      - shared/schema.ts
      - {path: server, mode: read}
      - {path: "db:schema", mode: exclusive}
  - id: api
    title: Build the API
    requires: [api]
    depends_on: [schema]
    priority: high
    max_retries: 1
  - id: socket
    requires: [websocket]
  - id: together
    agents: [backend, frontend]
    shared_resources: [client/lib/ws.ts]
  - id: ci
    requires: [ci]
"""


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    (tmp_path / "ws").mkdir(exist_ok=True)  # VALID's workspace: a plan's workspace must exist
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    """The problems `load_plan` reports, as the user reads them."""
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    return [str(problem) for problem in caught.value.problems]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SPRINTDECK), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


# ---------------------------------------------------------------- a valid plan and its defaults


def test_valid_plan_fields_and_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    plan = load_plan(path)

    assert plan.sprint == "demo" and plan.description == "a small plan"
    assert plan.workspace == (tmp_path / "ws").resolve()
    assert plan.source == path.resolve()
    assert plan.digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert plan.settings.lock_ttl == 10.0
    assert (plan.settings.heartbeat_interval, plan.settings.heartbeat_timeout) == (1.0, 5.0)
    assert (plan.settings.lock_delay, plan.settings.rogue_edits) == (1.0, 0)

    backend = plan.agent("backend")
    assert backend.kind == "simulated" and backend.max_concurrent_tasks == 2
    assert backend.max_execution_time == 600.0 and backend.max_memory_usage == 512 * 1024**2
    assert plan.agent("frontend").max_concurrent_tasks == 1 and plan.agent("frontend").failure_rate == 0.0

    schema = plan.task("schema")
    assert schema.title == "schema" and schema.estimate == 0.5 and schema.priority == "medium"
    assert [(r.path, r.mode) for r in schema.resources] == [
        ("shared/schema.ts", "write"),
        ("server", "read"),
        ("db:schema", "exclusive"),
    ]
    assert schema.coordination == "parallel" and schema.max_retries == 4  # from settings
    api = plan.task("api")
    assert api.title == "Build the API" and api.coordination == "sequential" and api.max_retries == 1
    assert plan.task("socket").estimate == 1.0
    together = plan.task("together")
    assert together.coordination == "collaborative" and together.shared_resources == ["client/lib/ws.ts"]
    assert plan.task("ci").command is None  # a shell task without a command is not refused


def test_settings_defaults_when_absent(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, "sprint: s\nagents: [{id: a}]\n"))
    s = plan.settings
    assert (s.lock_ttl, s.heartbeat_interval, s.heartbeat_timeout, s.lock_delay) == (30.0, 1.0, 5.0, 1.0)
    assert (s.max_retries, s.rogue_edits) == (2, 0)
    assert plan.tasks == [] and plan.workspace is None


def test_line_of_points_at_each_task_and_agent(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, VALID))
    assert plan.line_of("backend") == 8
    assert plan.line_of("schema") == 19
    assert plan.line_of("ci") == 37
    assert plan.agent_lines["runner"] == 15 and plan.task_lines["api"] == 26


def test_capable_agents(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, VALID))
    assert plan.capable_agents("schema") == ["backend"]  # pinned
    assert plan.capable_agents("api") == ["backend"]
    assert plan.capable_agents(plan.task("socket")) == ["backend", "frontend"]
    assert plan.capable_agents("together") == ["backend", "frontend"]  # collaborative: all of them
    assert plan.capable_agents("ci") == ["runner"]
    anyone = load_plan(write(tmp_path, "sprint: s\nagents: [{id: a}, {id: b}]\ntasks: [{id: t}]\n", "any.yaml"))
    assert anyone.capable_agents("t") == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("1m30s", 90.0), ("10", 10.0), (5, 5.0), (2.5, 2.5), (0, 0.0)],
)
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "5 minutes", "", "1x", "-3s", -1, True, None, [1], float("inf")])
def test_parse_duration_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512MB", 512 * 1024**2), ("1GB", 1024**3), ("100KB", 100 * 1024), ("2GiB", 2 * 1024**3), ("10B", 10), (2048, 2048)],
)
def test_parse_size(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "1.5XB", -1, True, "MB"])
def test_parse_size_refuses(text: object) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_json_plan_loads(tmp_path: Path) -> None:
    document = {
        "sprint": "json",
        "agents": [{"id": "a", "capabilities": ["x"]}],
        "tasks": [{"id": "t1", "estimate": 1e1}, {"id": "t2", "depends_on": ["t1"], "estimate": "250ms"}],
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(document, indent="\t"))  # tabs: legal JSON, illegal YAML indentation
    plan = load_plan(path)
    assert [t.id for t in plan.tasks] == ["t1", "t2"]
    assert plan.task("t1").estimate == 10.0 and plan.task("t2").estimate == 0.25


# ---------------------------------------------------------------- each mistake: exact message and line

AGENT = "agents:\n  - id: worker\n    capabilities: [build]\n"

CASES = {
    "unknown top-level key": (
        "sprint: s\nsprnt: x\n" + AGENT,
        ["plan.yaml:2: unknown key 'sprnt' (did you mean 'sprint'?)"],
    ),
    "unknown settings key": (
        "sprint: s\nsettings:\n  lock_ttl: 5s\n  lock_tll: 5s\n" + AGENT,
        ["plan.yaml:4: settings: unknown key 'lock_tll' (did you mean 'lock_ttl'?)"],
    ),
    "unknown agent key": (
        "sprint: s\nagents:\n  - id: worker\n    capabilites: [build]\n",
        ["plan.yaml:4: agent 'worker': unknown key 'capabilites' (did you mean 'capabilities'?)"],
    ),
    "unknown task key": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: a\n  - id: b\n    depend_on: [a]\n",
        ["plan.yaml:8: task 'b': unknown key 'depend_on' (did you mean 'depends_on'?)"],
    ),
    "unknown resource key": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: a\n    resources:\n      - {path: x.py, mood: read}\n",
        ["plan.yaml:8: task 'a': unknown key 'mood' (did you mean 'mode'?)"],
    ),
    "missing sprint": (AGENT, ["plan.yaml:1: missing required key 'sprint'"]),
    "missing agents": ("sprint: s\ntasks: []\n", ["plan.yaml:1: missing required key 'agents'"]),
    "no agents": ("sprint: s\nagents: []\n", ["plan.yaml:2: agents: at least one agent is required"]),
    "missing task id": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: a\n  - title: nameless\n",
        ["plan.yaml:7: task #2: missing required key 'id'"],
    ),
    "missing agent id": (
        "sprint: s\nagents:\n  - id: a\n  - kind: shell\n",
        ["plan.yaml:4: agent #2: missing required key 'id'"],
    ),
    "wrong type": (
        "sprint: s\nagents:\n  - id: worker\n    capabilities: 3\n",
        ["plan.yaml:4: agent 'worker': capabilities: should be a list, got 3"],
    ),
    "wrong type in a list": (
        "sprint: s\nagents:\n  - id: worker\n    capabilities:\n      - build\n      - [nested]\n",
        ["plan.yaml:6: agent 'worker': capabilities[1]: should be a string, got a list"],
    ),
    "wrong integer": (
        "sprint: s\nagents:\n  - id: worker\n    max_concurrent_tasks: 0\n",
        ["plan.yaml:4: agent 'worker': max_concurrent_tasks: should be greater than or equal to 1, got 0"],
    ),
    "bad agent id": (
        "sprint: s\nagents:\n  - id: Back End\n",
        ["plan.yaml:3: agent 'Back End': id: agent id 'Back End' must match [a-z0-9_-]+"],
    ),
    "duplicate agent id": (
        "sprint: s\nagents:\n  - id: a\n  - id: b\n  - id: a\n",
        ["plan.yaml:5: duplicate agent id 'a' (first defined on line 3)"],
    ),
    "duplicate task id": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: t\n  - id: u\n  - id: t\n",
        ["plan.yaml:8: duplicate task id 't' (first defined on line 6)"],
    ),
    "unknown dependency": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: build\n  - id: deploy\n    depends_on:\n      - build\n      - tset\n",
        ["plan.yaml:10: task 'deploy': depends on unknown task 'tset'"],
    ),
    "self dependency": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: a\n    depends_on: [a]\n",
        ["plan.yaml:7: task 'a': dependency cycle: a -> a (each task depends on the next)"],
    ),
    "cycle": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: a\n    depends_on: [c]\n  - id: b\n    depends_on: [a]\n"
        "  - id: c\n    depends_on: [b]\n  - id: d\n    depends_on: [c]\n",
        ["plan.yaml:7: task 'a': dependency cycle: a -> c -> b -> a (each task depends on the next)"],
    ),
    "missing capability": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: render\n    requires: [build, gpu]\n",
        ["plan.yaml:7: task 'render': no agent can perform it: requires [build, gpu]; no agent has 'gpu'"],
    ),
    "capabilities split over agents": (
        "sprint: s\nagents:\n  - id: a\n    capabilities: [x]\n  - id: b\n    capabilities: [y]\n"
        "tasks:\n  - id: t\n    requires: [x, y]\n",
        ["plan.yaml:9: task 't': no agent can perform it: requires [x, y]; no single agent has all of them"],
    ),
    "pinned agent missing": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: t\n    agent: wroker\n",
        ["plan.yaml:7: task 't': agent 'wroker' is not defined (did you mean 'worker'?)"],
    ),
    "collaborative agent missing": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: t\n    agents: [worker, ghost]\n",
        ["plan.yaml:7: task 't': agents: unknown agent 'ghost'"],
    ),
    "bad duration": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: t\n    estimate: 5 minutes\n",
        ["plan.yaml:7: task 't': estimate: invalid duration '5 minutes' (use 500ms, 30s, 2m, 1h or a number of seconds)"],
    ),
    "bad settings duration": (
        "sprint: s\nsettings:\n  heartbeat_timeout: soon\n" + AGENT,
        ["plan.yaml:3: settings: heartbeat_timeout: invalid duration 'soon' (use 500ms, 30s, 2m, 1h or a number of seconds)"],
    ),
    "bad size": (
        "sprint: s\nagents:\n  - id: a\n    max_memory_usage: lots\n",
        ["plan.yaml:4: agent 'a': max_memory_usage: invalid size 'lots' (use 512MB, 1GB, 100KB or a number of bytes)"],
    ),
    "bad priority": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: t\n    priority: urgent\n",
        ["plan.yaml:7: task 't': priority: should be 'low', 'medium', 'high' or 'critical', got 'urgent'"],
    ),
    "bad kind": (
        "sprint: s\nagents:\n  - id: a\n    kind: robot\n",
        ["plan.yaml:4: agent 'a': kind: should be 'simulated', 'shell', 'external' or 'claude', got 'robot'"],
    ),
    "bad lock mode": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: t\n    resources:\n      - {path: a.py, mode: rw}\n",
        ["plan.yaml:8: task 't': resources[0].mode: should be 'read', 'write' or 'exclusive', got 'rw'"],
    ),
    "failure rate above 1": (
        "sprint: s\nagents:\n  - id: a\n    failure_rate: 1.5\n",
        ["plan.yaml:4: agent 'a': failure_rate: should be less than or equal to 1, got 1.5"],
    ),
    "failure rate below 0": (
        "sprint: s\nagents:\n  - id: a\n    failure_rate: -0.1\n",
        ["plan.yaml:4: agent 'a': failure_rate: should be greater than or equal to 0, got -0.1"],
    ),
    "path leaves the workspace": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: t\n    resources:\n      - ok/../../secret\n",
        ["plan.yaml:8: task 't': resources[0].path: resource 'ok/../../secret' leaves the workspace"],
    ),
    "absolute path": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: t\n    resources:\n      - x.py\n      - {path: /etc/passwd, mode: read}\n",
        ["plan.yaml:9: task 't': resources[1].path: resource '/etc/passwd' is an absolute path; use a path inside the workspace"],
    ),
    "shared resource leaves the workspace": (
        "sprint: s\n" + AGENT + "tasks:\n  - id: t\n    agents: [worker]\n    shared_resources: [a.ts, ../b.ts]\n",
        ["plan.yaml:8: task 't': shared_resources[1]: resource '../b.ts' leaves the workspace"],
    ),
    "top level is a list": ("- sprint: s\n", ["plan.yaml:1: a plan must be a mapping with sprint, agents and tasks, got a list"]),
    "top level is a scalar": ("hello\n", ["plan.yaml:1: a plan must be a mapping with sprint, agents and tasks, got 'hello'"]),
    "empty file": ("", ["plan.yaml:1: the plan is empty (expected a mapping with sprint, agents and tasks)"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_mistake_is_reported_with_its_line(tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    assert [line.replace(str(tmp_path) + "/", "") for line in problems(path)] == expected


def test_named_resources_and_inner_dots_are_fine(tmp_path: Path) -> None:
    plan = load_plan(
        write(
            tmp_path,
            """\
            sprint: s
            agents: [{id: a}]
            tasks:
              - id: t
                resources: ["db:schema", ./src//x/../y.py, {path: "queue:jobs", mode: read}]
            """,
        )
    )
    assert [r.path for r in plan.task("t").resources] == ["db:schema", "src/y.py", "queue:jobs"]


def test_yaml_syntax_error_gives_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sprint: s\nagents:\n  - id: a\n    capabilities: [x\ntasks: []\n")
    (message,) = problems(path)
    assert message.startswith(f"{path}:5: YAML syntax error: ")
    assert "flow sequence on line 4" in message


def test_missing_file(tmp_path: Path) -> None:
    assert problems(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}:1: file not found"]


def test_binary_junk(tmp_path: Path) -> None:
    path = tmp_path / "junk.yaml"
    path.write_bytes(b"sprint: s\n\xff\xfe\x00garbage")
    assert problems(path) == [f"{path}:2: not UTF-8 text (byte 0xff)"]


def test_every_problem_is_reported_in_line_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sprint: s
        agents:
          - id: builder
            capabilities: [build]
          - id: builder
            kind: robot
        tasks:
          - id: compile
            requires: [gpu]
            estimate: later
          - id: link
            depends_on: [compile, assemble]
            priority: urgent
          - id: loop
            depends_on: [loop]
        """,
    )
    assert [line.split(": ", 1)[1] for line in problems(path)] == [
        "duplicate agent id 'builder' (first defined on line 3)",
        "agent 'builder': kind: should be 'simulated', 'shell', 'external' or 'claude', got 'robot'",
        "task 'compile': no agent can perform it: requires [gpu]; no agent has 'gpu'",
        "task 'compile': estimate: invalid duration 'later' (use 500ms, 30s, 2m, 1h or a number of seconds)",
        "task 'link': depends on unknown task 'assemble'",
        "task 'link': priority: should be 'low', 'medium', 'high' or 'critical', got 'urgent'",
        "task 'loop': dependency cycle: loop -> loop (each task depends on the next)",
    ]
    assert [int(line.split(":")[1]) for line in problems(path)] == [5, 6, 9, 10, 12, 13, 15]


def test_broken_task_does_not_hide_its_dependency_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "sprint: s\nagents: [{id: a}]\ntasks:\n  - id: t\n    estimate: never\n    depends_on: [ghost]\n")
    assert [line.split(": ", 1)[1] for line in problems(path)] == [
        "task 't': estimate: invalid duration 'never' (use 500ms, 30s, 2m, 1h or a number of seconds)",
        "task 't': depends on unknown task 'ghost'",
    ]


def test_json_plan_problems_have_lines() -> None:
    path = SAMPLES / "invalid" / "several_problems.json"
    assert [line.removeprefix(f"{path}:") for line in problems(path)] == [
        "5: agent 'builder': kind: should be 'simulated', 'shell', 'external' or 'claude', got 'robot'",
        "5: duplicate agent id 'builder' (first defined on line 4)",
        "8: task 'compile': no agent can perform it: requires [gpu]; no agent has 'gpu'",
        "9: task 'link': priority: should be 'low', 'medium', 'high' or 'critical', got 'urgent'",
        "9: task 'link': depends on unknown task 'assemble'",
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cycle.yaml", ["6: task 'plan': dependency cycle: plan -> check -> build -> plan (each task depends on the next)"]),
        ("unknown_dependency.yaml", ["9: task 'deploy': depends on unknown task 'tset'"]),
        ("unknown_key.yaml", ["8: task 'deploy': unknown key 'depend_on' (did you mean 'depends_on'?)"]),
        (
            "bad_duration.yaml",
            [
                "3: settings: lock_ttl: invalid duration 'soon' (use 500ms, 30s, 2m, 1h or a number of seconds)",
                "8: task 'build': estimate: invalid duration '5 minutes' (use 500ms, 30s, 2m, 1h or a number of seconds)",
            ],
        ),
        (
            "path_escape.yaml",
            [
                "8: task 'steal': resources[0].path: resource '../../etc/passwd' leaves the workspace",
                "9: task 'steal': resources[1].path: resource '/etc/shadow' is an absolute path; use a path inside the workspace",
            ],
        ),
    ],
)
def test_invalid_samples(name: str, expected: list[str]) -> None:
    path = SAMPLES / "invalid" / name
    assert [line.removeprefix(f"{path}:") for line in problems(path)] == expected


def test_plan_error_lists_problems() -> None:
    error = PlanError([Problem("p.yaml", 3, "one"), Problem("p.yaml", 7, "two")])
    assert str(error) == "p.yaml:3: one\np.yaml:7: two"
    assert error.problems[1].to_dict() == {"file": "p.yaml", "line": 7, "message": "two"}


# ---------------------------------------------------------------- never a traceback

JUNK = {
    "empty.yaml": b"",
    "blank.yaml": b"\n\n   \n",
    "scalar.yaml": b"42",
    "list.yaml": b"- a\n- b\n",
    "binary.yaml": bytes(range(256)) * 4,
    "nul.yaml": b"sprint: \x00\n",
    "tabs.yaml": b"sprint: s\nagents:\n\t- id: a\n",
    "deep.yaml": b"[" * 20000,
    "deep_block.yaml": b"".join(b"  " * i + b"a:\n" for i in range(3000)),
    "python_tag.yaml": b"sprint: !!python/object/apply:os.system [echo hi]\nagents: [{id: a}]\n",
    "two_documents.yaml": b"sprint: a\n---\nsprint: b\n",
    "alias_loop.yaml": b"a: &a [*a]\n",
    "unhashable_key.yaml": b"? [a, b]\n: c\n",
    "numeric_keys.yaml": b"1: 2\nnull: 3\n",
    "tasks_wrong.yaml": b"sprint: s\nagents: {id: a}\ntasks: 7\nsettings: [1]\n",
    "items_wrong.yaml": b"sprint: [x]\nagents: [1, null, [a]]\ntasks: [1, 'x', {}]\nworkspace: 3\n",
}


@pytest.mark.parametrize("name", list(JUNK))
def test_junk_is_reported_not_raised(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(JUNK[name])
    found = problems(path)
    assert found and all(line.startswith(f"{path}:") for line in found)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_random_bytes_never_raise_anything_else(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    try:
        load_plan(path)
    except PlanError as error:
        assert error.problems


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=len(VALID)), junk=st.sampled_from(["", ":", "- ", "[", "\n  x: 1\n", "'", "{", "&a *b"]))
def test_damaged_plans_never_raise_anything_else(tmp_path: Path, cut: int, junk: str) -> None:
    path = tmp_path / "damaged.yaml"
    path.write_text(VALID[:cut] + junk + VALID[cut + len(junk) :])
    try:
        assert isinstance(load_plan(path), Plan)
    except PlanError as error:
        assert all(problem.line >= 1 for problem in error.problems)


# ---------------------------------------------------------------- the command line


def test_cli_valid_plan_exits_0() -> None:
    result = run_cli("validate", "sample_sprints/webrtc/plan.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sample_sprints/webrtc/plan.yaml: ok (4 agents, 10 tasks)\n"
    assert result.stderr == ""


def test_cli_invalid_plan_exits_2_with_plan_as_typed() -> None:
    result = run_cli("validate", "./sample_sprints/invalid/bad_duration.yaml")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "./sample_sprints/invalid/bad_duration.yaml:3: settings: lock_ttl: invalid duration 'soon' (use 500ms, 30s, 2m, 1h or a number of seconds)",
        "./sample_sprints/invalid/bad_duration.yaml:8: task 'build': estimate: invalid duration '5 minutes' (use 500ms, 30s, 2m, 1h or a number of seconds)",
    ]


def test_cli_json_output() -> None:
    bad = run_cli("validate", "sample_sprints/invalid/unknown_dependency.yaml", "--json")
    assert bad.returncode == 2
    assert json.loads(bad.stdout) == {
        "valid": False,
        "problems": [
            {
                "file": "sample_sprints/invalid/unknown_dependency.yaml",
                "line": 9,
                "message": "task 'deploy': depends on unknown task 'tset'",
            }
        ],
    }
    good = run_cli("validate", "sample_sprints/flaky/plan.yaml", "--json")
    assert good.returncode == 0
    assert json.loads(good.stdout) == {"valid": True, "problems": []}


@pytest.mark.parametrize("name", ["empty.yaml", "binary.yaml", "deep.yaml", "python_tag.yaml", "items_wrong.yaml"])
def test_cli_never_prints_a_traceback(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(JUNK[name])
    for args in (["validate", str(path)], ["validate", str(path), "--json"], ["export", str(path), "--format", "dot"]):
        result = run_cli(*args)
        assert result.returncode == 2
        assert "Traceback" not in result.stdout + result.stderr


def test_cli_missing_file() -> None:
    result = run_cli("validate", "no/such/plan.yaml")
    assert result.returncode == 2
    assert result.stderr == "no/such/plan.yaml:1: file not found\n"
