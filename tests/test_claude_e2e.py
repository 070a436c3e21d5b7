"""The real Claude Code CLI as a sprint agent: its edits bound by the sprint's locks, a `kind: claude`
sprint run to the end with what each agent spent, and a killed `claude` process as a dead agent.

Only the language model is replaced, by a scripted Messages-API server (tests/fake_model.py); the
CLI, its hooks (`sprintdeck hook`, installed by `sprintdeck init-claude`), the manager and the
journal are real.  The CLI comes from `.cache/npm` (`.ci/run` installs it); a missing CLI fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from claude_cli import claude_binary, claude_env, run_claude_async
from conftest import ROOT, write_plan
from fake_model import FakeModel, Request, ToolCall
from test_hook import Sprint, sprint  # noqa: F401 (a fixture: a served sprint of alpha, beta and gamma)
from test_serve import ENV, GUARD, SPRINTDECK, Proc, records_of, run_dir, wait_for  # noqa: F401


def init_claude(workspace: Path) -> None:
    """What a user does once in the checkout: sprintdeck's hooks into .claude/settings.json."""
    done = subprocess.run([*SPRINTDECK, "init-claude", "--dir", str(workspace)], cwd=ROOT, env={**ENV},
                          capture_output=True, text=True, timeout=GUARD)
    assert done.returncode == 0, done.stderr


def edit_script(path: Path, old: str, new: str, *, after: FakeModel | None = None) -> list[Any]:
    """Read the file (the CLI edits only what it has read), then edit it; with `after`, read only
    once that model's Edit is done, so that this Edit comes while the other agent holds the file
    (an Edit of a file changed since it was read is refused by the CLI itself, before any hook)."""
    def read(request: Request) -> list[ToolCall]:
        if after is not None:
            wait_for(lambda: bool(after.results("Edit")), "the other agent's edit")
        return [ToolCall("Read", {"file_path": str(path)})]

    return [read, [ToolCall("Edit", {"file_path": str(path), "old_string": old, "new_string": new})]]


def staying_until(script: list[Any], other: list[FakeModel]) -> list[Any]:
    """The script, then a last turn once the other model's Edit is done: a session that ends lets
    go of its locks (SessionEnd), and this one must hold its file while the other tries it."""
    def last(request: Request) -> list[str]:
        wait_for(lambda: bool(other and other[0].results("Edit")), "the other agent's edit")
        return ["Changed x."]

    return [*script, last]


async def both_edit(sprint: Sprint, path: Path) -> dict[str, Any]:
    """alpha and beta as two Claude Code processes at once, each editing `path` in its session."""
    later: list[FakeModel] = []
    first = FakeModel(staying_until(edit_script(path, "x = 1", 'x = "alpha"'), later))
    later.append(FakeModel(edit_script(path, 'x = "alpha"', 'x = "beta"', after=first)))
    models = {"alpha": first, "beta": later[0]}
    for model in models.values():
        model.start()
    try:
        runs = await asyncio.gather(*(
            run_claude_async(sprint.workspace, model, "Change x.", allowed_tools=["Read", "Edit"],
                             env=sprint.env(agent), timeout=GUARD)
            for agent, model in models.items()))
    finally:
        for model in models.values():
            model.stop()
    return {agent: (run, models[agent].results("Edit")[0]) for agent, run in zip(models, runs, strict=True)}


def test_two_claude_processes_edit_one_file_and_exactly_one_edit_lands(sprint: Sprint) -> None:
    init_claude(sprint.workspace)
    path = sprint.workspace / "src" / "shared.py"
    outcomes = asyncio.run(both_edit(sprint, path))

    landed = [agent for agent, (_, edit) in outcomes.items() if not edit.is_error]
    assert landed == ["alpha"], {agent: edit for agent, (_, edit) in outcomes.items()}
    winner, loser = "alpha", "beta"
    denial = outcomes[loser][1]
    assert f"locked for writing by agent {winner} for task t-{winner}" in denial.content
    assert path.read_text() == f'x = "{winner}"\n'
    run = outcomes[loser][0]
    assert run.exit_code == 0 and [d["tool_name"] for d in run.json["permission_denials"]] == ["Edit"]

    granted = sprint.wait_for("lock_granted", "the winner's grant", agentId=winner, resourceId="src/shared.py")
    assert granted["taskId"] == f"t-{winner}"
    assert sprint.wait_for("lock_refused", "the loser's refusal", agentId=loser)["resourceId"] == "src/shared.py"
    sprint.wait_for("file_reported", "the winner's checksum", agentId=winner, path="src/shared.py")
    wait_for(lambda: (f := sprint.state().files.get("src/shared.py")) is not None and f.modified_by == winner,
             "the change attributed to the winner", sprint.server.process)
    assert sprint.state().files["src/shared.py"].status != "conflict"
    assert not [c for c in sprint.records("file_changed") if c["path"] == "src/shared.py" and c["status"] == "conflict"]


# ---------------------------------------------------------------- kind: claude


FILES = {"schema": "db/schema.sql", "api": "server/api.py", "ui": "web/app.js"}


def task_of(request: Request) -> str:
    found = re.search(r"Your task is (\S+) \(attempt (\d+)\)", request.prompt)
    assert found, request.prompt[:500]
    return found.group(1)


def write_for_task(workspace: Path, files: dict[str, str] = FILES) -> Any:
    """Each conversation writes its task's file: the script is picked from the prompt's task."""
    def script(first: Request) -> list[list[Any]]:
        task = task_of(first)
        return [[ToolCall("Write", {"file_path": str(workspace / files[task]), "content": f"-- {task}\n"})],
                [f"Wrote {files[task]}."]]
    return script


def claude_plan(directory: Path, tasks: list[dict[str, Any]]) -> Path:
    write_plan(directory, {
        "sprint": "claude-sprint",
        "settings": {"heartbeat_interval": "500ms", "heartbeat_timeout": "30s", "lock_ttl": "60s"},
        "agents": [
            {"id": "backend", "kind": "claude", "capabilities": ["api", "db"],
             "role": "You are the backend specialist: APIs and the database."},
            {"id": "frontend", "kind": "claude", "capabilities": ["ui"], "role": "You are the frontend specialist."},
        ],
        "tasks": tasks,
    })
    return directory / "plan.yaml"


def run_with_claude(plan: Path | str, workspace: Path, journal: Path, script: Any) -> tuple[subprocess.CompletedProcess[str], FakeModel]:
    """`sprintdeck run PLAN --headless --json` whose claude agents talk to a model playing `script`;
    the model is returned stopped, with what the CLIs sent it."""
    with FakeModel(script) as model, tempfile.TemporaryDirectory() as home:
        env = claude_env(model, Path(home), {"SPRINTDECK_CLAUDE": claude_binary(), "PYTHONPATH": str(ROOT)})
        done = subprocess.run([*SPRINTDECK, "run", str(plan), "--headless", "--json", "--workspace", str(workspace),
                               "--record", str(journal)], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=4 * GUARD)
    return done, model


def test_a_claude_sprint_runs_to_completion_with_what_each_agent_spent(run_dir: Path) -> None:
    workspace = run_dir / "ws"
    workspace.mkdir()
    plan = claude_plan(run_dir, [
        {"id": "schema", "title": "Schema", "description": "Write the schema.", "requires": ["db"],
         "resources": ["db/schema.sql"]},
        {"id": "api", "title": "API", "requires": ["api"], "depends_on": ["schema"], "resources": ["server/api.py"]},
        {"id": "ui", "title": "UI", "requires": ["ui"], "depends_on": ["schema"], "resources": ["web/app.js"]},
    ])
    done, model = run_with_claude(plan, workspace, run_dir / "journal.jsonl", write_for_task(workspace))
    spent = model.usage()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    state, metrics = result["state"], result["metrics"]
    assert {task: state["tasks"][task]["status"] for task in FILES} == dict.fromkeys(FILES, "completed")
    for task, file in FILES.items():
        assert (workspace / file).read_text() == f"-- {task}\n"
        assert state["files"][file]["modifiedBy"] == ("frontend" if task == "ui" else "backend")
    agents = {agent: state["agents"][agent]["metrics"] for agent in ("backend", "frontend")}
    assert all(m["costUsd"] > 0 and m["inputTokens"] > 0 and m["outputTokens"] > 0 for m in agents.values())
    assert metrics["costUsd"] == round(sum(m["costUsd"] for m in agents.values()), 6)
    assert metrics["inputTokens"] == sum(m["inputTokens"] for m in agents.values()) == spent["input_tokens"]
    assert metrics["outputTokens"] == spent["output_tokens"]
    usage = records_of(run_dir / "journal.jsonl", "usage_recorded")
    assert sorted(u["taskId"] for u in usage) == sorted(FILES)


def claude_processes(parent: int) -> list[int]:
    """The `claude` runs `parent` started (they carry the task they are for in their environment)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"SPRINTDECK_TASK_ID=" in environ:
            found.append(int(entry.name))
    return found


def sleepers(marker: str) -> list[int]:
    """The processes whose command line holds `marker` (the Bash command a run started)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if marker in command:
            found.append(int(entry.name))
    return found


def test_killing_a_claude_process_mid_task_makes_the_agent_dead_and_the_task_runs_again(run_dir: Path) -> None:
    workspace = run_dir / "ws"
    workspace.mkdir()
    plan = claude_plan(run_dir, [{"id": "schema", "title": "Schema", "requires": ["db"], "resources": ["db/schema.sql"]}])
    sleeping = f"sleep 97.5; echo {run_dir.name}"  # a long tool call, to kill the CLI in the middle of

    def script(first: Request) -> list[list[Any]]:
        if "(attempt 1)" in first.prompt:
            return [[ToolCall("Bash", {"command": sleeping, "description": "wait"})]]
        return write_for_task(workspace)(first)

    journal = run_dir / "journal.jsonl"
    with FakeModel(script) as model, tempfile.TemporaryDirectory() as home:
        env = claude_env(model, Path(home), {"SPRINTDECK_CLAUDE": claude_binary(), "PYTHONPATH": str(ROOT)})
        runner = Proc.start(["run", str(plan), "--headless", "--json", "--workspace", str(workspace),
                             "--record", str(journal)], "run", run_dir, env=env)
        try:
            wait_for(lambda: bool(sleepers(sleeping)), "the first run in its Bash call", runner.process)
            [claude] = claude_processes(runner.process.pid)
            os.kill(claude, 9)
            done = runner.finish()
        finally:
            runner.kill()
            for pid in [*claude_processes(runner.process.pid), *sleepers(sleeping)]:  # whatever a failure left
                with contextlib.suppress(OSError):
                    os.kill(pid, 9)
    assert done.returncode == 0, done.stderr
    [dead] = records_of(journal, "agent_dead")
    assert dead["agentId"] == "backend" and f"claude process {claude} was killed (SIGKILL)" in dead["reason"]
    assert dead["requeuedTasks"] == ["schema"]
    completed = records_of(journal, "task_completed")
    assert [(c["taskId"], c["attempt"]) for c in completed] == [("schema", 2)]
    assert (workspace / "db" / "schema.sql").read_text() == "-- schema\n"
    assert sleepers(sleeping) == []  # what the killed run had started is gone too


def test_the_sample_claude_sprint_runs_its_four_specialists(run_dir: Path) -> None:
    workspace = run_dir / "ws"
    shutil.copytree(ROOT / "sample_sprints" / "claude" / "workspace", workspace)
    files = {"schema": "db/schema.sql", "api": "server/api.py", "page": "web/index.html", "tests": "tests/test_api.py"}
    done, model = run_with_claude("sample_sprints/claude/plan.yaml", workspace, run_dir / "journal.jsonl",
                                  write_for_task(workspace, files))
    prompts = {task_of(r): r for r in model.turns if "Your task is" in r.prompt}
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)["state"]
    owners = {"schema": "database", "api": "backend", "page": "frontend", "tests": "testing"}
    for task, file in files.items():
        assert state["tasks"][task]["status"] == "completed" and state["tasks"][task]["agent"] == owners[task]
        assert state["files"][file]["modifiedBy"] == owners[task]
        assert state["agents"][owners[task]]["metrics"]["costUsd"] > 0
    system = json.dumps(prompts["api"].body.get("system"))
    assert "You are the backend specialist" in system  # the role, as its appended system prompt
    assert "GET /notes" in prompts["api"].prompt and "server/api.py (write)" in prompts["api"].prompt


def test_a_claude_run_reaches_the_sprint_through_its_mcp_server(run_dir: Path) -> None:
    """The run's model asks whoami, does the work and completes the task itself with complete_task;
    the run's own result then completes the same attempt once, and nothing is refused."""
    workspace = run_dir / "ws"
    workspace.mkdir()
    plan = claude_plan(run_dir, [{"id": "schema", "title": "Schema", "requires": ["db"], "resources": ["db/schema.sql"]}])
    script = [[ToolCall("mcp__sprintdeck__whoami", {})],
              [ToolCall("Write", {"file_path": str(workspace / "db/schema.sql"), "content": "-- schema\n"})],
              [ToolCall("mcp__sprintdeck__complete_task", {"summary": "wrote the schema"})],
              ["Wrote the schema."]]
    journal = run_dir / "journal.jsonl"
    done, model = run_with_claude(plan, workspace, journal, script)
    whoami = model.results("mcp__sprintdeck__whoami")
    completed = model.results("mcp__sprintdeck__complete_task")
    assert done.returncode == 0, done.stderr
    assert whoami and not whoami[0].is_error and "backend" in whoami[0].content and "schema" in whoami[0].content
    assert completed and not completed[0].is_error, completed
    assert [(c["taskId"], c["attempt"]) for c in records_of(journal, "task_completed")] == [("schema", 1)]
    assert records_of(journal, "completion_refused") == []
    assert records_of(journal, "agent_dead") == []  # the run's MCP server ending is not the agent leaving


def test_a_claude_run_that_calls_fail_task_fails_its_attempt_with_the_models_reason(run_dir: Path) -> None:
    workspace = run_dir / "ws"
    workspace.mkdir()
    plan = claude_plan(run_dir, [{"id": "schema", "title": "Schema", "requires": ["db"], "max_retries": 0}])
    script = [[ToolCall("mcp__sprintdeck__fail_task", {"error": "the schema needs a decision on ids", "retryable": False})],
              ["I could not do it."]]
    journal = run_dir / "journal.jsonl"
    done, _ = run_with_claude(plan, workspace, journal, script)
    assert done.returncode == 1, done.stderr  # the sprint ran; a task failed
    [failed] = records_of(journal, "task_failed")
    assert failed["taskId"] == "schema" and "the schema needs a decision on ids" in failed["error"]
    assert records_of(journal, "usage_recorded")[0]["costUsd"] > 0  # what the run spent is kept all the same
