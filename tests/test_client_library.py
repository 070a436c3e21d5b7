"""The client library (engine/agents/client.py) as a user meets it: the README's example agent,
run as it is printed there, in processes of its own against a real `sprintdeck serve`.

The script is taken out of README.md (and must be docs/examples/example_agent.py byte for byte),
written to a file and started twice, as the pair sample's two agents.  The sprint must complete
with the work on disk (the command line it wrote runs), the help one agent gave the other in the
file it wrote, and the journal showing the fenced file reports, the extra lock taken and released
and the assistance messages.  The same script fails a task it does not know, and exits 2 for a
token the server refuses.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES, write_plan
from test_serve import ENV, GUARD, Proc, finish_all, listening_on, records_of, run_dir, serve, wait_for  # noqa: F401

EXAMPLE = ROOT / "docs/examples/example_agent.py"


def readme_script() -> str:
    """The README's example agent: the python block that defines the agent class."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    scripts = [block for block in blocks if "(Agent):" in block]
    assert len(scripts) == 1, "README.md should hold exactly one example agent script"
    return scripts[0]


@pytest.fixture
def script(run_dir: Path) -> Path:  # noqa: F811
    path = run_dir / "example_agent.py"
    path.write_text(readme_script())
    return path


def start_agent(script: Path, address: str, agent_id: str, token_file: Path, directory: Path) -> Proc:
    out, err = directory / f"{agent_id}.out", directory / f"{agent_id}.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), "--connect", address, "--id", agent_id, "--token-file", str(token_file)],
            cwd=directory, env=ENV, stdout=stdout, stderr=stderr,
        )
    return Proc(process, out, err)


def test_the_readme_script_is_the_example_file() -> None:
    assert readme_script() == EXAMPLE.read_text()


def test_the_readme_agent_completes_the_pair_sprint_with_its_work_on_disk_and_in_the_journal(
    run_dir: Path, script: Path,  # noqa: F811
) -> None:
    journal, workspace = run_dir / "run.jsonl", run_dir / "ws"
    server = serve(SAMPLES / "pair/plan.yaml", f"unix:{run_dir}/sock/deck.sock", run_dir,
                   "--record", str(journal), "--workspace", str(workspace))
    agents: list[Proc] = []
    try:
        address = listening_on(server)
        tokens = run_dir / "run.tokens"
        agents.append(start_agent(script, address, "backend", tokens / "backend.token", run_dir))
        wait_for(lambda: "connected to" in agents[0].stderr(), "backend connected", agents[0].process)
        agents.append(start_agent(script, address, "frontend", tokens / "frontend.token", run_dir))
        out = server.finish()
    finally:
        server.kill()
        done = finish_all(agents)
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout)["state"]
    assert {tid: (t["status"], t["agent"]) for tid, t in state["tasks"].items()} == {
        "library": ("completed", "backend"), "command": ("completed", "frontend")}
    for proc in done:
        assert proc.returncode == 0, proc.stderr
        assert "the sprint has finished" in proc.stderr and "Traceback" not in proc.stderr

    # The work on disk: the command line runs, and says what the backend told the frontend.
    cli = workspace / "src/cli.py"
    assert "# greet(name: str) -> str, from src/greet.py" in cli.read_text()
    ran = subprocess.run([sys.executable, str(cli), "Ada"], capture_output=True, text=True, timeout=GUARD)
    assert ran.stdout == "Hello, Ada!\n", ran.stderr
    assert sorted((workspace / "CHANGES.md").read_text().splitlines()) == [
        "- command: src/cli.py by frontend", "- library: src/greet.py by backend"]
    assert {path: f["status"] for path, f in state["files"].items() if path.startswith(("src/", "CHANGES"))} == \
        dict.fromkeys(["src/greet.py", "src/cli.py", "CHANGES.md"], "modified")

    # The journal: fenced file reports, the extra lock taken and given back, the help asked and given.
    reports = {(r["path"], r["agentId"]) for r in records_of(journal, "file_reported") if r["lockId"]}
    assert reports == {("src/greet.py", "backend"), ("src/cli.py", "frontend"),
                       ("CHANGES.md", "backend"), ("CHANGES.md", "frontend")}
    grants = {g["lockId"]: g for g in records_of(journal, "lock_granted") if g["resourceId"] == "CHANGES.md"}
    assert sorted(g["agentId"] for g in grants.values()) == ["backend", "frontend"]
    released = [r for r in records_of(journal, "lock_released") if r["lockId"] in grants]
    assert sorted((r["by"], r["reason"]) for r in released) == [("backend", "released"), ("frontend", "released")]
    messages = [m["message"] for m in records_of(journal, "message")]
    asked = [m for m in messages if m["type"] == "request_assistance"]
    assert len(asked) == 1 and asked[0]["from"] == "frontend" and asked[0]["to"] == "backend"
    answers = [m for m in messages if m["type"] == "provide_assistance"]
    assert len(answers) == 1 and answers[0]["correlationId"] == asked[0]["id"] and answers[0]["from"] == "backend"
    assert records_of(journal, "message_rejected") == [] and records_of(journal, "completion_refused") == []
    progress = {(p["taskId"], p["output"]) for p in records_of(journal, "task_progress")}
    assert {("library", "writing src/greet.py"), ("command", "writing src/cli.py"), ("command", "done")} <= progress
    beating = {m["from"] for m in messages if m["type"] == "heartbeat"}
    assert beating == {"backend", "frontend"}  # the library heartbeats by itself

    # And the activity log tells the same story.
    logged = subprocess.run([*(sys.executable, "-m", "app.cli"), "log", str(journal), "--json", "--agent", "frontend"],
                            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=GUARD)
    entries = [json.loads(line) for line in logged.stdout.splitlines()]
    assert any(e["action"] == "assistance_requested" and e["taskId"] == "command" for e in entries)
    hold = next(e for e in entries if e["action"] == "lock_released" and e["resourceId"] == "CHANGES.md")
    assert hold["taskId"] == "command" and hold["duration"] > 0 and hold["success"] is True


def test_a_task_the_agent_cannot_do_fails_with_its_reason_over_tcp(run_dir: Path, script: Path) -> None:  # noqa: F811
    plan = write_plan(run_dir, {
        "sprint": "mystery",
        "settings": {"heartbeat_interval": "200ms", "heartbeat_timeout": "20s", "max_retries": 3},
        "agents": [{"id": "backend", "kind": "external", "capabilities": ["lib"]}],
        "tasks": [{"id": "mystery", "requires": ["lib"], "resources": ["src/mystery.py"]}],
    })
    journal = run_dir / "run.jsonl"
    server = serve(run_dir / "plan.yaml", "tcp:127.0.0.1:0", run_dir, "--record", str(journal),
                   "--workspace", str(run_dir / "ws"))
    agents: list[Proc] = []
    try:
        address = listening_on(server)
        agents.append(start_agent(script, address, "backend", run_dir / "run.tokens/backend.token", run_dir))
        out = server.finish()
    finally:
        server.kill()
        done = finish_all(agents)
    assert plan.sprint == "mystery"
    assert out.returncode == 1, out.stderr  # the sprint ran; its task failed
    failures = records_of(journal, "task_failed")
    assert [(f["taskId"], f["error"], f["willRetry"]) for f in failures] == [
        ("mystery", "backend does not know how to do mystery", False)]  # retryable=False: no second attempt
    assert done[0].returncode == 0, done[0].stderr


def test_a_refused_token_and_a_bad_address_exit_2_with_a_sentence(run_dir: Path, script: Path) -> None:  # noqa: F811
    server = serve(SAMPLES / "pair/plan.yaml", f"unix:{run_dir}/sock/deck.sock", run_dir,
                   "--record", str(run_dir / "run.jsonl"), "--workspace", str(run_dir / "ws"))
    try:
        address = listening_on(server)
        wrong = run_dir / "wrong.token"
        wrong.write_text("not-the-token\n")
        wrong.chmod(0o600)
        refused = start_agent(script, address, "backend", wrong, run_dir).finish()
        assert refused.returncode == 2
        assert "the server refused agent 'backend'" in refused.stderr and "Traceback" not in refused.stderr
        bad = start_agent(script, "http://example.com", "backend", wrong, run_dir).finish()
        assert bad.returncode == 2 and "http://example.com" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        server.kill()


PROBE = '''
import asyncio

from engine.agents.client import Agent, AssistanceRequest, IPCMessage, Lock, LockRefused, Task, TaskResult


class Probe(Agent):
    """`holder` keeps its task's lock on shared.txt until `prober` says it has looked."""

    looked = asyncio.Event()
    refused = asyncio.Event()

    async def execute_task(self, task: Task) -> TaskResult:
        if task.id == "hold":
            (self.workspace / "shared.txt").write_text("mine")
            await asyncio.wait_for(self.looked.wait(), 30)
            return TaskResult(result="held until asked to let go")
        lock = await self.request_resource_lock("shared.txt", "write", task=task)
        try:
            async with self.lock("shared.txt", "exclusive", task=task, wait=0.2):
                pass
            queued = "granted"
        except LockRefused as refused:
            queued = str(refused)
        forged = Lock("shared.txt", "write", True, lock_id="L999", token=999)
        await self.report_file("shared.txt", forged, task)  # refused: the agent's log says so
        await asyncio.wait_for(self.refused.wait(), 10)
        answer = await self.request_assistance("done", "you may let go", to="holder", task=task, timeout=10)
        return TaskResult(result={"granted": bool(lock), "holder": lock.holder, "holderMode": lock.holder_mode,
                                  "holderTask": lock.holder_task, "queued": queued, "answer": answer.details})

    async def on_message(self, message: IPCMessage) -> None:
        await super().on_message(message)  # logs a refusal
        if message.type == "agent_error":
            self.refused.set()

    async def provide_assistance(self, request: AssistanceRequest) -> str | None:
        self.looked.set()
        return "letting go"


if __name__ == "__main__":
    raise SystemExit(Probe.main())
'''


def test_a_refused_lock_is_false_and_names_its_holder_and_task(run_dir: Path) -> None:  # noqa: F811
    write_plan(run_dir, {
        "sprint": "probe",
        "settings": {"heartbeat_interval": "200ms", "heartbeat_timeout": "20s"},
        "agents": [{"id": "holder", "kind": "external", "capabilities": ["hold"]},
                   {"id": "prober", "kind": "external", "capabilities": ["probe"]}],
        "tasks": [{"id": "hold", "requires": ["hold"], "resources": ["shared.txt"]},
                  {"id": "look", "requires": ["probe"]}],
    })
    script = run_dir / "probe.py"
    script.write_text(PROBE)
    journal = run_dir / "run.jsonl"
    server = serve(run_dir / "plan.yaml", f"unix:{run_dir}/sock/deck.sock", run_dir, "--record", str(journal),
                   "--workspace", str(run_dir / "ws"))
    agents: list[Proc] = []
    try:
        address = listening_on(server)
        tokens = run_dir / "run.tokens"
        agents.append(start_agent(script, address, "holder", tokens / "holder.token", run_dir))
        wait_for(lambda: any(g["taskId"] == "hold" for g in records_of(journal, "lock_granted")), "hold's lock",
                 agents[0].process)
        agents.append(start_agent(script, address, "prober", tokens / "prober.token", run_dir))
        out = server.finish()
    finally:
        server.kill()
        done = finish_all(agents)
    assert out.returncode == 0, out.stderr
    assert all(proc.returncode == 0 for proc in done), [proc.stderr for proc in done]
    result = next(m["message"]["payload"]["result"] for m in records_of(journal, "message")
                  if m["message"]["type"] == "task_complete" and m["message"]["payload"]["taskId"] == "look")
    assert result["granted"] is False
    assert (result["holder"], result["holderMode"], result["holderTask"]) == ("holder", "write", "hold")
    # the wait of 0.2 s ran out, naming who stood in the way
    assert result["queued"] == ("no exclusive lock on shared.txt: not granted within waitMs=200 "
                                "(held by holder: write, task hold)")
    assert result["answer"] == "letting go"
    assert "sprint_manager refused a message: payload.token: stale or foreign lock L999 for shared.txt" in done[1].stderr
    refusals = records_of(journal, "message_rejected")
    assert [(r["from"], r["field"]) for r in refusals] == [("prober", "payload.token")]


SLOW = '''
import asyncio

from engine.agents.client import Agent, Task, TaskResult


class Slow(Agent):
    async def execute_task(self, task: Task) -> TaskResult:
        await self.report_progress(task, 0.1, "started")
        await asyncio.sleep(1.5)  # the server is killed and resumed meanwhile
        path = self.workspace / "out" / f"{task.id}.txt"
        path.parent.mkdir(exist_ok=True)
        with open(path, "a") as out:
            out.write(f"{task.id} attempt {task.attempt}\\n")
        return TaskResult(result=str(path.name))


if __name__ == "__main__":
    raise SystemExit(Slow.main())
'''


def test_a_library_agent_reconnects_to_a_resumed_server_and_its_task_completes_once(run_dir: Path) -> None:  # noqa: F811
    plan = write_plan(run_dir, {
        "sprint": "resumed",
        "settings": {"heartbeat_interval": "100ms", "heartbeat_timeout": "20s"},
        "agents": [{"id": "worker", "kind": "external", "capabilities": ["work"]}],
        "tasks": [{"id": "slow", "requires": ["work"], "resources": ["out/slow.txt"]}],
    })
    script = run_dir / "slow.py"
    script.write_text(SLOW)
    journal, listen, workspace = run_dir / "run.jsonl", f"unix:{run_dir}/s/deck.sock", run_dir / "ws"
    server = serve(run_dir / "plan.yaml", listen, run_dir, "--record", str(journal), "--workspace", str(workspace))
    agents: list[Proc] = []
    resumed = None
    try:
        address = listening_on(server)
        agents.append(start_agent(script, address, "worker", run_dir / "run.tokens/worker.token", run_dir))
        wait_for(lambda: b'"type":"task_started"' in journal.read_bytes(), "the task's start", server.process)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(timeout=GUARD)
        resumed = serve(run_dir / "plan.yaml", listen, run_dir, "--resume", str(journal), "--workspace",
                        str(workspace), name="resumed")
        out = resumed.finish()
    finally:
        server.kill()
        if resumed is not None:
            resumed.kill()
        done = finish_all(agents)
    assert plan.sprint == "resumed"
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"]["tasks"]["slow"]["status"] == "completed"
    assert done[0].returncode == 0 and "reconnected" in done[0].stderr, done[0].stderr
    assert (workspace / "out/slow.txt").read_text() == "slow attempt 1\n"  # run once, by the first attempt
    assert len(records_of(journal, "task_completed")) == 1
