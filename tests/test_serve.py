"""`sprintdeck serve` and `sprintdeck agent` as a user runs them: real processes, real sockets.

A sprint whose agents are all external runs to the end with each agent in its own process; a
wrong token, a spoofed sender and a malformed line are refused and journaled while the sprint goes
on; and a server killed with SIGKILL mid-sprint is resumed on its journal, its agents reconnect,
and every task completes exactly once (the checks of `run --resume`, tests/test_resume.py).
Waits are on what the processes print or journal, with generous guards; nothing asserts a time.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT, write_plan
from engine.events import Event, EventType
from engine.journal import read_journal
from engine.protocol import MANAGER_ID, IPCMessage, make_message, parse_message
from engine.reducer import fold
from nats_server import free_port
from test_resume import _check_resumed_run

SPRINTDECK = [sys.executable, "-m", "app.cli"]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
GUARD = 60.0  # seconds before a wait is a failure rather than a hang
AGENTS = ("builder", "tester", "writer")


def plan_for(directory: Path, *, pause: str = "0.1") -> Path:
    """Three external agents; each task's command leaves a trace in the workspace."""
    def task(task_id: str, requires: str, after: list[str], resources: list) -> dict:
        return {
            "id": task_id,
            "requires": [requires],
            "depends_on": after,
            "command": f"sleep {pause}; echo {task_id} >> out/{task_id}.txt; echo did {task_id}",
            "resources": resources,
        }

    write_plan(
        directory,
        {
            "sprint": "served",
            "settings": {"heartbeat_interval": "100ms", "heartbeat_timeout": "20s", "lock_ttl": "30s"},
            "agents": [{"id": agent, "kind": "external", "capabilities": [agent]} for agent in AGENTS],
            "tasks": [
                task("schema", "builder", [], ["out/schema.txt"]),
                task("server", "builder", ["schema"], ["out/server.txt", {"path": "out/schema.txt", "mode": "read"}]),
                task("client", "builder", ["schema"], ["out/client.txt"]),
                task("unit", "tester", ["server"], ["out/unit.txt"]),
                task("e2e", "tester", ["server", "client"], ["out/e2e.txt"]),
                task("guide", "writer", ["schema"], ["out/guide.txt"]),
                task("notes", "writer", ["unit", "e2e", "guide"], ["out/notes.txt"]),
            ],
        },
    )
    return directory / "plan.yaml"


TASKS = ("schema", "server", "client", "unit", "e2e", "guide", "notes")


# ---------------------------------------------------------------- processes


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """Short paths: a Unix socket path may not exceed 107 bytes, and pytest's tmp_path can."""
    directory = Path(tempfile.mkdtemp(prefix="sd-serve-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + GUARD
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended (exit {process.returncode}) while waiting for {what}")
        assert time.monotonic() < deadline, f"no {what} after {GUARD:g} s"
        time.sleep(0.01)


@dataclass
class Proc:
    """A background process whose stdout and stderr go to files (no pipe can fill up and block it)."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    @classmethod
    def start(cls, args: list[str], name: str, directory: Path, env: dict[str, str] | None = None) -> Proc:
        out, err = directory / f"{name}.out", directory / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen([*SPRINTDECK, *args], cwd=ROOT, env={**ENV, **(env or {})}, stdout=stdout, stderr=stderr)
        return cls(process, out, err)

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def finish(self) -> subprocess.CompletedProcess[str]:
        try:
            code = self.process.wait(timeout=GUARD)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"still running after {GUARD:g} s:\n{self.stderr()}") from None
        return subprocess.CompletedProcess(self.process.args, code, self.out.read_text(), self.stderr())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def serve(plan: Path, listen: str, directory: Path, *extra: str, name: str = "serve") -> Proc:
    return Proc.start(["serve", str(plan), "--listen", listen, "--headless", "--json", *extra], name, directory)


def listening_on(server: Proc) -> str:
    """The address the server printed (a tcp port 0 becomes the port it got)."""
    found: list[str] = []

    def printed() -> bool:
        found[:] = [line.split("listening on ", 1)[1] for line in server.stderr().splitlines() if "listening on " in line]
        return bool(found)

    wait_for(printed, "'listening on' line", server.process)
    return found[0]


def agent(address: str, agent_id: str, tokens: Path, directory: Path, *extra: str) -> Proc:
    token_file = tokens / f"{agent_id}.token"
    return Proc.start(
        ["agent", "--connect", address, "--id", agent_id, "--token-file", str(token_file), *extra],
        f"agent-{agent_id}-{len(list(directory.glob(f'agent-{agent_id}-*.err')))}",
        directory,
    )


def finish_all(agents: list[Proc]) -> list[subprocess.CompletedProcess[str]]:
    try:
        return [proc.finish() for proc in agents]
    finally:
        for proc in agents:
            proc.kill()


def records_of(journal: Path, kind: str) -> list[dict]:
    _, records, _ = read_journal(journal)
    return [record["data"] for record in records if record["type"] == kind]


# ---------------------------------------------------------------- a whole sprint


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_external_agents_in_their_own_processes_complete_the_sprint(run_dir: Path, kind: str) -> None:
    plan = plan_for(run_dir)
    journal, workspace = run_dir / "run.jsonl", run_dir / "ws"
    listen = f"unix:{run_dir}/sock/deck.sock" if kind == "unix" else "tcp:127.0.0.1:0"
    server = serve(plan, listen, run_dir, "--record", str(journal), "--workspace", str(workspace))
    agents: list[Proc] = []
    try:
        address = listening_on(server)
        tokens = run_dir / "run.tokens"
        assert f"agent tokens in {tokens}" in server.stderr()
        agents = [agent(address, "builder", tokens, run_dir), agent(address, "tester", tokens, run_dir),
                  agent(address, "writer", tokens, run_dir, "--simulate")]
        out = server.finish()
    finally:
        server.kill()
        done = finish_all(agents)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    result = json.loads(out.stdout)
    assert set(result) == {"state", "metrics"}
    assert {task_id: task["status"] for task_id, task in result["state"]["tasks"].items()} == dict.fromkeys(TASKS, "completed")
    assert result["metrics"]["completedTasks"] == result["metrics"]["totalTasks"] == len(TASKS)
    owners = {task_id: task["agent"] for task_id, task in result["state"]["tasks"].items()}
    assert owners["unit"] == owners["e2e"] == "tester" and owners["guide"] == "writer"
    for proc in done:
        assert proc.returncode == 0, proc.stderr
        assert "the sprint has finished" in proc.stderr and "Traceback" not in proc.stderr
    # The shell agents ran the commands in the server's workspace; the simulated one did not.
    assert (workspace / "out/e2e.txt").read_text() == "e2e\n"
    assert (workspace / "out/guide.txt").read_text() == "// writer: guide attempt 1\n"
    _, records, _ = read_journal(journal)
    assert fold(Event.from_record(r) for r in records).model_dump(mode="json") == result["state"]
    outputs = [r["data"]["output"] for r in records if r["type"] == EventType.TASK_PROGRESS and r["data"]["output"]]
    assert "did e2e" in outputs  # the command's output streamed back as task_update
    raw = journal.read_text()
    for token_file in tokens.iterdir():
        assert token_file.read_text().strip() not in raw, "a token reached the journal"


def test_serve_exits_1_naming_a_file_left_in_conflict(run_dir: Path) -> None:
    """As with `run`: all tasks completed but a file still in conflict is a sprint that did not succeed."""
    plan = ROOT / "sample_sprints/conflict/plan.yaml"
    (run_dir / "sock").mkdir(mode=0o700)
    server = serve(plan, f"unix:{run_dir}/sock/deck.sock", run_dir, "--record", str(run_dir / "run.jsonl"))
    try:
        out = server.finish()
    finally:
        server.kill()
    assert out.returncode == 1, out.stderr
    assert out.stderr.splitlines()[-1] == "sprintdeck: finished · 3/3 done · 1 file left in conflict: src/config.py"
    assert json.loads(out.stdout)["metrics"]["unresolvedConflicts"] == ["src/config.py"]
    progress = [line for line in out.stderr.splitlines() if line.startswith("[")]
    assert progress[-1].startswith("[##############################] 3/3 done · 1 conflict · "), out.stderr


# ---------------------------------------------------------------- refusals


def _raw_session(path: str, token: str) -> list:
    """As agent tester: a message claiming to be writer, then a malformed line; the replies."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(GUARD)
        sock.connect(path)
        lines = sock.makefile("rb")
        def answer() -> IPCMessage:  # the next line that is not the manager's news (broadcast_info)
            while (message := parse_message(lines.readline())).type == "broadcast_info" and message.correlation_id is None:
                pass
            return message

        hello = make_message("agent_ready", "tester", MANAGER_ID, {"token": token})
        sock.sendall(hello.wire().encode() + b"\n")
        welcome = answer()
        spoofed = make_message("task_update", "writer", MANAGER_ID, {"taskId": "guide", "attempt": 1, "progress": 1.0})
        sock.sendall(spoofed.wire().encode() + b"\n")
        refused = answer()
        sock.sendall(b'{"type": "heartbeat", oops\n')
        malformed = answer()
        return [welcome, refused, malformed]


def test_wrong_token_spoofed_sender_and_malformed_line_are_refused_and_journaled(run_dir: Path) -> None:
    plan = plan_for(run_dir, pause="0")
    journal = run_dir / "run.jsonl"
    server = serve(plan, f"unix:{run_dir}/s/deck.sock", run_dir, "--record", str(journal), "--workspace", str(run_dir / "ws"))
    agents: list[Proc] = []
    try:
        address = listening_on(server)
        tokens = run_dir / "run.tokens"
        (run_dir / "wrong.token").write_text("not-the-token\n")
        intruder = Proc.start(["agent", "--connect", address, "--id", "builder", "--token-file",
                               str(run_dir / "wrong.token")], "intruder", run_dir).finish()
        assert intruder.returncode == 2
        assert "refused agent 'builder': payload.token: wrong token for agent 'builder'" in intruder.stderr
        welcome, refused, malformed = _raw_session(address.removeprefix("unix:"), (tokens / "tester.token").read_text().strip())
        assert welcome.payload.info == "welcome" and welcome.payload.data["heartbeatInterval"] == 0.1
        assert refused.type == "agent_error" and refused.payload.field == "from"
        assert "bound to agent 'tester'" in refused.payload.error
        assert malformed.type == "agent_error" and malformed.payload.error.startswith("not JSON")
        agents = [agent(address, agent_id, tokens, run_dir) for agent_id in AGENTS]
        out = server.finish()
    finally:
        server.kill()
        done = finish_all(agents)
    assert out.returncode == 0, out.stderr  # the server went on and the sprint completed
    assert all(proc.returncode == 0 for proc in done), [proc.stderr for proc in done]
    assert all(t["status"] == "completed" for t in json.loads(out.stdout)["state"]["tasks"].values())
    rejected = records_of(journal, EventType.MESSAGE_REJECTED)
    assert [(r["from"], r["field"], r["security"]) for r in rejected] == [
        ("builder", "payload.token", True),
        ("tester", "from", True),
        ("tester", "", False),
    ]
    assert rejected[1]["claimedFrom"] == "writer" and rejected[2]["reason"].startswith("not JSON")
    assert json.loads(out.stdout)["state"]["tasks"]["guide"]["agent"] == "writer"  # the spoof changed nothing


def test_bad_listen_addresses_and_plans_exit_2_without_a_journal(run_dir: Path) -> None:
    plan = plan_for(run_dir)
    journal = run_dir / "run.jsonl"
    cases = [
        (["--listen", f"nats://127.0.0.1:{free_port()}"], "cannot reach the NATS server at nats://127.0.0.1:"),
        (["--listen", f"nats://127.0.0.1:{free_port()}"], "connection refused (is the server running, and on that port?)"),
        (["--listen", "tcp:192.0.2.1:7000"], "loopback only"),
        (["--listen", "unix:/" + "x" * 120], "at most 107"),
    ]
    for args, words in cases:
        out = subprocess.run([*SPRINTDECK, "serve", str(plan), *args, "--headless", "--record", str(journal)],
                             cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=GUARD)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr
        assert "[Errno" not in out.stderr and "Connect call failed" not in out.stderr
        assert not journal.exists()
    (run_dir / "bad.yaml").write_text("sprint: x\nagents:\n  - id: a\n    kind: outer-space\n")
    out = subprocess.run([*SPRINTDECK, "serve", str(run_dir / "bad.yaml"), "--listen", "tcp:127.0.0.1:0"],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=GUARD)
    assert out.returncode == 2 and "bad.yaml:4:" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([*SPRINTDECK, "agent", "--connect", "unix:/nowhere.sock", "--id", "a",
                          "--token-file", str(run_dir / "missing.token")],
                         cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=GUARD)
    assert out.returncode == 2 and "missing.token does not exist" in out.stderr


# ---------------------------------------------------------------- kill -9, then serve --resume


def _completions(journal: Path) -> int:
    try:
        return journal.read_bytes().count(b'"type":"task_completed"')
    except FileNotFoundError:
        return 0


def test_kill_9_of_serve_then_resume_with_reconnecting_agents_completes_every_task_once(run_dir: Path) -> None:
    plan = plan_for(run_dir, pause="0.3")
    done_at_crash = []
    for crash_after in (0, 2, 4):  # completions in the journal when the server is killed
        case = run_dir / f"crash-{crash_after}"
        case.mkdir()
        journal, listen = case / "run.jsonl", f"unix:{case}/s/deck.sock"
        server = serve(plan, listen, case, "--record", str(journal), "--workspace", str(case / "ws"))
        agents: list[Proc] = []
        resumed = None
        try:
            address = listening_on(server)
            agents = [agent(address, agent_id, case / "run.tokens", case) for agent_id in AGENTS]
            for proc in agents:
                wait_for(lambda: "connected to" in proc.stderr(), "the agent's connection", proc.process)
            if crash_after == 0:
                wait_for(lambda: b'"type":"task_assigned"' in journal.read_bytes(), "a first assignment", server.process)
            else:
                wait_for(lambda: _completions(journal) >= crash_after, f"{crash_after} completions", server.process)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(timeout=GUARD)
            crashed = journal.read_bytes()
            resumed = serve(plan, listen, case, "--resume", str(journal), name="resumed")
            out = resumed.finish()
        finally:
            server.kill()
            if resumed is not None:
                resumed.kill()
            done = finish_all(agents)
        try:
            done_at_crash.append(_check_resumed_run(crashed, journal, out))
            assert "resuming" in out.stderr and f"listening on {address}" in out.stderr
            for proc in done:
                assert proc.returncode == 0, proc.stderr
                assert "reconnected" in proc.stderr and "Traceback" not in proc.stderr
        except AssertionError as exc:
            raise AssertionError(f"server killed after {crash_after} completions: {exc}") from exc
    assert done_at_crash[0] == 0 and done_at_crash[-1] >= 4, done_at_crash
