"""Every message of the seed does its job, between real processes over a real socket.

A client written from the protocol alone (sample_sprints/remote/seed_agent.py: JSON lines, the
standard library, no sprintdeck code) joins `sprintdeck serve` with the seed's AgentConfig and
works beside `sprintdeck agent` processes; the run's journal holds every message type of the
seed.  Raw socket clients then check the rules one by one: an agent_ready that contradicts the
plan is refused naming the plan's value; a state_update is fenced and answered exactly once;
agents cannot send each other the manager's notices; help is brokered, and answered "nobody
could help" when nobody does; the state is pushed to subscribers at a bounded rate.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from conftest import ROOT, write_plan
from engine.events import Event, EventType
from engine.journal import read_journal
from engine.protocol import MessageType
from engine.state_push import PUSH_INTERVAL
from test_serve import ENV, GUARD, Proc, agent, finish_all, listening_on, records_of, run_dir, serve  # noqa: F401

SAMPLE = ROOT / "sample_sprints" / "remote"
SEED_AGENT = SAMPLE / "seed_agent.py"
SEED_TYPES = {
    "task_assign", "task_complete", "task_failed", "task_update", "resource_lock", "resource_unlock",
    "resource_conflict", "state_update", "state_request", "state_sync", "agent_ready", "agent_busy",
    "agent_error", "request_assistance", "provide_assistance", "broadcast_info",
}
QUIET = 0.5  # seconds a raw client listens to be sure that nothing (more) arrives


def seed_agent(address: str, agent_id: str, tokens: Path, directory: Path, *extra: str) -> subprocess.Popen[bytes]:
    """The seed-written client, run by a bare interpreter: nothing of sprintdeck on its path."""
    err = (directory / f"seed-{agent_id}.err").open("wb")
    return subprocess.Popen([sys.executable, "-I", str(SEED_AGENT), "--connect", address, "--id", agent_id,
                             "--token-file", str(tokens / f"{agent_id}.token"), *extra],
                            cwd=directory, env={"PATH": ENV["PATH"]}, stdout=subprocess.DEVNULL, stderr=err)


def message_records(journal: Path) -> list[dict[str, Any]]:
    return [message["message"] for message in records_of(journal, EventType.MESSAGE)]


# ---------------------------------------------------------------- the whole sample


def test_the_remote_sample_with_a_seed_written_client_journals_every_seed_message_type(run_dir: Path) -> None:
    journal, workspace = run_dir / "run.jsonl", run_dir / "ws"
    server = serve(SAMPLE / "plan.yaml", f"unix:{run_dir}/s/deck.sock", run_dir, "--record", str(journal))
    agents: list[Proc] = []
    reviewer = None
    try:
        address = listening_on(server)
        tokens = run_dir / "run.tokens"
        reviewer = seed_agent(address, "reviewer", tokens, run_dir, "--fail-first")
        agents = [agent(address, "builder", tokens, run_dir), agent(address, "tester", tokens, run_dir),
                  agent(address, "writer", tokens, run_dir, "--simulate")]
        out = server.finish()
        assert reviewer.wait(timeout=GUARD) == 0, (run_dir / "seed-reviewer.err").read_text()
    finally:
        server.kill()
        finish_all(agents)
        if reviewer is not None and reviewer.poll() is None:
            reviewer.kill()
    assert out.returncode == 0, out.stderr
    state = json.loads(out.stdout)["state"]
    assert {task_id: task["status"] for task_id, task in state["tasks"].items()} == dict.fromkeys(
        ["version", "build", "test", "docs", "review", "changelog"], "completed")
    assert state["tasks"]["review"]["agent"] == "reviewer" and state["tasks"]["review"]["attempt"] == 2
    workspace = Path(next(line.split("workspace ", 1)[1] for line in out.stderr.splitlines() if "workspace " in line))
    assert "reviewed by reviewer, attempt 2" in (workspace / "build" / "review.txt").read_text()

    messages = message_records(journal)
    assert SEED_TYPES <= {m["type"] for m in messages}, SEED_TYPES - {m["type"] for m in messages}
    hello = next(m for m in messages if m["type"] == "agent_ready" and m["from"] == "reviewer")
    assert hello["payload"]["agentId"] == "reviewer" and hello["payload"]["resourceLimits"] == {"maxConcurrentTasks": 1}
    conflict = next(m for m in messages if m["type"] == "resource_conflict")
    assert (conflict["to"], conflict["payload"]["holder"], conflict["payload"]["holderMode"]) == ("reviewer", "builder", "write")
    help_ = next(m for m in messages if m["type"] == "provide_assistance" and m["to"] == "reviewer")
    assert help_["from"] == "sprint_manager" and help_["payload"]["agentId"] == "builder" and help_["payload"]["helped"]
    assert "task build attempt 1 completed" in help_["payload"]["details"]
    asked = next(m for m in messages if m["type"] == "request_assistance" and m["from"] == "reviewer")
    assert help_["correlationId"] == asked["id"]  # the one reply to the request
    reported = [r for r in records_of(journal, EventType.FILE_REPORTED) if r["agentId"] == "reviewer"]
    assert [r["path"] for r in reported] == ["build/review.txt"] and reported[0]["lockId"]
    statuses = [(r["status"], r.get("reason")) for r in records_of(journal, EventType.AGENT_STATUS) if r["agentId"] == "reviewer"]
    assert ("waiting", "waiting for builder's build") in statuses
    assert ("error", "first attempt of review fails on purpose (--fail-first)") in statuses
    news = [m["payload"]["info"] for m in messages if m["type"] == "broadcast_info" and m["to"] == "broadcast"]
    assert news.count("sprint_started") == 1 and news.count("agent_joined") == 4
    _agents_pane_shows_the_error(journal)


def _agents_pane_shows_the_error(journal: Path) -> None:
    """The journal replayed into the dashboard up to the reviewer's error: its row says so."""
    import asyncio

    from app.dashboard import SprintDeckApp
    from app.source import RecordedSource
    from widgets.agents import AgentsPane

    _, records, _ = read_journal(journal)
    events = [Event.from_record(r) for r in records]
    cut = next(i for i, e in enumerate(events) if e.type == "agent_status" and e.data["status"] == "error")
    source = RecordedSource.from_events(events[: cut + 1], journal=str(journal))
    frozen = datetime.fromisoformat(events[cut].ts)

    async def look() -> dict[str, str]:
        app = SprintDeckApp(source, clock=lambda: frozen, config_file=journal.parent / "config.json")
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.pause(0.1)
            pane = app.query_one(AgentsPane)
            return dict(zip([key for key, _ in pane.COLUMNS], map(str, pane.get_row("reviewer")), strict=True))

    row = asyncio.run(look())
    assert row["status"] == "! error" and "first attempt of review fails on purpose" in row["task"]


# ---------------------------------------------------------------- raw clients


class Raw:
    """One agent over a raw socket, as a client in any language would be: JSON lines."""

    def __init__(self, path: str, agent_id: str) -> None:
        self.id = agent_id
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(GUARD)
        self.sock.connect(path)
        self.buffer = b""

    def send(self, kind: str, payload: dict[str, Any], *, to: str = "sprint_manager", reply: bool = False,
             timeout_ms: int = 5000, **envelope: Any) -> str:
        message = {"id": str(uuid.uuid4()), "type": kind, "from": self.id, "to": to,
                   "timestamp": "2026-01-01T00:00:00Z", "payload": payload, "priority": "medium", **envelope}
        if reply:
            message |= {"requiresResponse": True, "responseTimeout": timeout_ms}
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        return str(message["id"])

    def read(self, timeout: float = GUARD) -> dict[str, Any] | None:
        """The next message, or None when none comes within `timeout` or the server closed."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return dict(json.loads(line))

    def reply_to(self, request_id: str) -> dict[str, Any]:
        """The reply to `request_id`; what arrives before it (the manager's news) is skipped."""
        while (message := self.read()) is not None:
            if message.get("correlationId") == request_id:
                return message
        raise AssertionError(f"the connection ended before the reply to {request_id}")

    def replies_to(self, request_id: str, quiet: float = QUIET) -> list[dict[str, Any]]:
        """Every reply to `request_id` that arrives until the line is quiet for `quiet` seconds."""
        found = []
        while (message := self.read(quiet)) is not None:
            if message.get("correlationId") == request_id:
                found.append(message)
        return found

    def join(self, token: str, **config: Any) -> dict[str, Any]:
        return self.reply_to(self.send("agent_ready", {"agentId": self.id, "token": token, **config}, reply=True))

    def close(self) -> None:
        self.sock.close()


def two_agent_plan(directory: Path) -> Path:
    """Agents alpha and beta (external); one task for a third agent that never comes keeps the sprint open."""
    write_plan(directory, {
        "sprint": "raw",
        "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "60s"},
        "agents": [{"id": "alpha", "kind": "external", "capabilities": ["code"]},
                   {"id": "beta", "kind": "external", "capabilities": ["review"], "max_execution_time": "30s"},
                   {"id": "idle", "kind": "external", "capabilities": ["never"]}],
        "tasks": [{"id": "open", "requires": ["never"]}],
    })
    return directory / "plan.yaml"


@contextmanager
def served(run_dir: Path) -> Iterator[tuple[str, Path, Path]]:
    """A server of the two-agent plan: (socket path, tokens directory, journal)."""
    journal = run_dir / "run.jsonl"
    server = serve(two_agent_plan(run_dir), f"unix:{run_dir}/s/deck.sock", run_dir, "--record", str(journal),
                   "--workspace", str(run_dir / "ws"))
    try:
        yield listening_on(server).removeprefix("unix:"), run_dir / "run.tokens", journal
    finally:
        server.process.terminate()
        server.process.wait(timeout=GUARD)


def token(tokens: Path, agent_id: str) -> str:
    return (tokens / f"{agent_id}.token").read_text().strip()


def test_an_agent_ready_that_contradicts_the_plan_is_refused_naming_the_plans_value(run_dir: Path) -> None:
    with served(run_dir) as (path, tokens, journal):
        wrong = subprocess.run([sys.executable, "-I", str(SEED_AGENT), "--connect", f"unix:{path}", "--id", "alpha",
                                "--token-file", str(tokens / "alpha.token"), "--capabilities", "docs"],
                               capture_output=True, text=True, timeout=GUARD, env={"PATH": ENV["PATH"]})
        assert wrong.returncode == 2
        assert "payload.capabilities: ['docs'] contradicts the plan, where agent 'alpha' has capabilities ['code']" in wrong.stderr
        beta = Raw(path, "beta")
        refused = beta.join(token(tokens, "beta"), resourceLimits={"maxConcurrentTasks": 1, "maxExecutionTime": 60})
        assert refused["type"] == "agent_error" and refused["payload"]["field"] == "payload.resourceLimits.maxExecutionTime"
        assert "60.0 contradicts the plan, where agent 'beta' has max_execution_time 30.0" in refused["payload"]["error"]
        assert beta.read() is None  # refused: the connection is closed
        beta = Raw(path, "beta")  # the seed's whole AgentConfig, agreeing with the plan, is welcome
        welcome = beta.join(token(tokens, "beta"), capabilities=["review"], specializations=[], dependencies=[],
                            resourceLimits={"maxConcurrentTasks": 1, "maxMemoryUsage": 10**9, "maxExecutionTime": 30})
        assert welcome["type"] == "broadcast_info" and welcome["payload"]["info"] == "welcome"
    rejected = records_of(journal, EventType.MESSAGE_REJECTED)
    assert [r["field"] for r in rejected] == ["payload.capabilities", "payload.resourceLimits.maxExecutionTime"]


def test_a_state_update_is_fenced_and_answered_exactly_once(run_dir: Path) -> None:
    with served(run_dir) as (path, tokens, journal):
        alpha = Raw(path, "alpha")
        alpha.join(token(tokens, "alpha"))
        unfenced = alpha.send("state_update", {"path": "notes.txt", "checksum": "sha256:00"}, reply=True)
        (refused,) = alpha.replies_to(unfenced)
        assert refused["type"] == "agent_error" and refused["payload"]["field"] == "payload.lockId"
        assert "alpha holds no write lock on notes.txt" in refused["payload"]["error"]
        grant = alpha.reply_to(alpha.send("resource_lock", {"resourceId": "notes.txt", "lockType": "write"}, reply=True))
        assert grant["type"] == "resource_lock"
        seed_style = alpha.send("state_update", {"path": "notes.txt", "checksum": "sha256:01"}, reply=True)
        (answer,) = alpha.replies_to(seed_style)  # no lockId: fenced with the lock alpha holds
        assert answer["type"] == "state_sync" and answer["payload"]["state"]["version"] == answer["payload"]["version"] > 0
        fenced = alpha.send("state_update", {"path": "notes.txt", "checksum": "sha256:02", "lockId": grant["payload"]["lockId"],
                                             "token": grant["payload"]["token"]}, reply=True)
        assert [m["type"] for m in alpha.replies_to(fenced)] == ["state_sync"]
    reports = records_of(journal, EventType.FILE_REPORTED)
    assert [(r["checksum"], r["lockId"]) for r in reports] == [("sha256:01", grant["payload"]["lockId"]),
                                                               ("sha256:02", grant["payload"]["lockId"])]
    assert [r["field"] for r in records_of(journal, EventType.MESSAGE_REJECTED)] == ["payload.lockId"]


def test_every_request_to_the_manager_gets_exactly_one_reply(run_dir: Path) -> None:
    requests = [  # (type, payload, the reply's type)
        ("heartbeat", {"tasks": []}, "broadcast_info"),
        ("agent_busy", {"reason": "thinking"}, "broadcast_info"),
        ("task_update", {"taskId": "open", "attempt": 1, "progress": 0.5}, "agent_error"),  # not its task
        ("resource_unlock", {"resourceId": "nothing.txt"}, "agent_error"),
        ("state_request", {"sections": ["agents"]}, "state_sync"),
        ("resource_lock", {"resourceId": "a.txt", "lockType": "write"}, "resource_lock"),
        ("agent_error", {"error": "my disk is full"}, "broadcast_info"),
    ]
    with served(run_dir) as (path, tokens, journal):
        alpha = Raw(path, "alpha")
        alpha.join(token(tokens, "alpha"))
        for kind, payload, reply in requests:
            answers = alpha.replies_to(alpha.send(kind, payload, reply=True))
            assert [m["type"] for m in answers] == [reply], (kind, answers)
            if reply == "broadcast_info":
                assert answers[0]["payload"] == {"info": "received", "data": {"type": kind, "id": answers[0]["correlationId"]}}
    statuses = [(r["status"], r.get("reason")) for r in records_of(journal, EventType.AGENT_STATUS) if r["agentId"] == "alpha"]
    assert ("waiting", "thinking") in statuses and statuses[-1] == ("error", "my disk is full")


def test_agents_cannot_send_each_other_the_managers_notices(run_dir: Path) -> None:
    forged = [
        ("agent_error", {"error": "you are fired"}, "beta", "to"),
        ("broadcast_info", {"info": "welcome", "data": {"workspace": "/"}}, "beta", "payload.info"),
        ("broadcast_info", {"info": "sprint_finished"}, "broadcast", "payload.info"),
        ("task_update", {"taskId": "open", "attempt": 1, "progress": 1.0}, "beta", "to"),
        ("heartbeat", {"tasks": []}, "broadcast", "to"),
    ]
    with served(run_dir) as (path, tokens, journal):
        alpha, beta = Raw(path, "alpha"), Raw(path, "beta")
        alpha.join(token(tokens, "alpha"))
        beta.join(token(tokens, "beta"))
        for kind, payload, to, field in forged:
            refusal = alpha.reply_to(alpha.send(kind, payload, to=to))
            assert refusal["type"] == "agent_error" and refusal["payload"]["field"] == field, refusal
        alpha.send("broadcast_info", {"info": "lunch at noon"}, to="beta")  # news in its own name passes
        alpha.send("request_assistance", {"topic": "a review"}, to="beta")
        got = []
        while (message := beta.read(QUIET)) is not None:
            if message["from"] == "alpha":
                got.append((message["type"], message["payload"].get("info") or message["payload"].get("topic")))
        assert got == [("broadcast_info", "lunch at noon"), ("request_assistance", "a review")]
    rejected = records_of(journal, EventType.MESSAGE_REJECTED)
    assert [(r["from"], r["field"], r["security"]) for r in rejected] == [("alpha", field, True) for *_, field in forged]


def test_help_is_brokered_to_a_capable_agent_and_nobody_helping_is_an_answer(run_dir: Path) -> None:
    with served(run_dir) as (path, tokens, journal):
        alpha, beta = Raw(path, "alpha"), Raw(path, "beta")
        alpha.join(token(tokens, "alpha"))
        beta.join(token(tokens, "beta"))
        asked = alpha.send("request_assistance", {"topic": "is this safe?", "capability": "review"}, reply=True)
        while (forwarded := beta.read())["type"] != "request_assistance":
            pass
        assert (forwarded["from"], forwarded["payload"]["requester"]) == ("sprint_manager", "alpha")
        beta.send("provide_assistance", {"topic": "is this safe?", "details": "yes, ship it"}, correlationId=forwarded["id"])
        (answer,) = alpha.replies_to(asked)
        assert answer["type"] == "provide_assistance" and answer["payload"]["details"] == "yes, ship it"
        assert answer["payload"]["agentId"] == "beta" and answer["payload"]["helped"] is True
        silent = alpha.send("request_assistance", {"topic": "again?", "agentId": "beta"}, reply=True, timeout_ms=1000)
        (timeout,) = alpha.replies_to(silent, quiet=2.0)  # beta reads it and says nothing
        assert timeout["payload"]["helped"] is False and timeout["payload"]["details"] == "beta gave no answer within 800 ms"
        declined = alpha.send("request_assistance", {"topic": "and now?", "agentId": "beta"}, reply=True)
        while (forwarded := beta.read())["type"] != "request_assistance" or forwarded["payload"]["topic"] != "and now?":
            pass
        beta.send("agent_error", {"error": "I only review"}, correlationId=forwarded["id"])
        (no,) = alpha.replies_to(declined)
        assert no["payload"]["helped"] is False and no["payload"]["details"] == "beta could not help: I only review"
        nobody = alpha.send("request_assistance", {"topic": "compile?", "capability": "rust"}, reply=True)
        (none,) = alpha.replies_to(nobody)
        assert none["payload"] == {"topic": "compile?", "details": "no live agent with rust other than alpha can help now",
                                   "helped": False}
        ghost = alpha.reply_to(alpha.send("request_assistance", {"topic": "x", "agentId": "ghost"}, reply=True))
        assert ghost["type"] == "agent_error" and ghost["payload"]["field"] == "payload.agentId"
    types = [m["type"] for m in message_records(journal) if m["type"] in ("request_assistance", "provide_assistance")]
    assert types.count("provide_assistance") == 5  # beta's answer, and one reply to each of alpha's requests
    beta_statuses = [r["status"] for r in records_of(journal, EventType.AGENT_STATUS) if r["agentId"] == "beta"]
    assert "error" not in beta_statuses  # declining to help is not an error of its own


def test_state_is_pushed_to_a_subscriber_after_changes_at_a_bounded_rate(run_dir: Path) -> None:
    with served(run_dir) as (path, tokens, journal):
        alpha, beta = Raw(path, "alpha"), Raw(path, "beta")
        alpha.join(token(tokens, "alpha"))
        beta.join(token(tokens, "beta"))
        first = alpha.reply_to(alpha.send("state_request", {"sections": ["locks"], "subscribe": True}, reply=True))
        assert first["type"] == "state_sync" and first["payload"]["state"]["locks"] == {}
        started = time.monotonic()
        cycles = 100
        for n in range(cycles):  # 200 changes of the lock table, as fast as beta can make them
            grant = beta.reply_to(beta.send("resource_lock", {"resourceId": f"f{n}.txt", "lockType": "write"}, reply=True))
            beta.reply_to(beta.send("resource_unlock", {"resourceId": f"f{n}.txt", "lockId": grant["payload"]["lockId"]}, reply=True))
        elapsed = time.monotonic() - started
        pushes = []
        while (message := alpha.read(3 * PUSH_INTERVAL + QUIET)) is not None:
            if message["type"] == "state_sync" and "correlationId" not in message:
                pushes.append(message)
        assert 1 <= len(pushes) <= elapsed / PUSH_INTERVAL + 2, (len(pushes), elapsed)
        assert pushes[-1]["payload"]["state"]["locks"] == {} and set(pushes[-1]["payload"]["state"]) == {"version", "locks"}
        versions = [p["payload"]["version"] for p in pushes]
        assert versions == sorted(set(versions)) and versions[0] > first["payload"]["version"]
        alpha.reply_to(alpha.send("state_request", {"sections": ["locks"], "subscribe": False}, reply=True))
        beta.reply_to(beta.send("resource_lock", {"resourceId": "after.txt", "lockType": "write"}, reply=True))
        assert all(m["type"] != "state_sync" for m in iter(lambda: alpha.read(3 * PUSH_INTERVAL), None))


def test_the_managers_news_reaches_every_agent_and_an_agent_process_prints_a_death(run_dir: Path) -> None:
    with served(run_dir) as (path, tokens, journal):
        alpha = agent(f"unix:{path}", "alpha", tokens, run_dir)
        try:
            beta = Raw(path, "beta")
            beta.join(token(tokens, "beta"))
            beta.send("agent_leave", {"reason": "its process was killed", "crashed": True})
            deadline = time.monotonic() + GUARD
            while "the manager says: agent_died" not in alpha.stderr():
                assert time.monotonic() < deadline and alpha.process.poll() is None, alpha.stderr()
                time.sleep(0.05)
        finally:
            alpha.kill()
    line = next(line for line in alpha.stderr().splitlines() if "agent_died" in line)
    assert '"agentId": "beta", "reason": "its process was killed"' in line
    news = [(m["payload"]["info"], m["payload"]["data"].get("agentId")) for m in message_records(journal)
            if m["type"] == "broadcast_info" and m["to"] == "broadcast"]
    assert ("sprint_started", None) in news
    assert ("agent_joined", "beta") in news and ("agent_died", "beta") in news


HELPER = '''
from engine.agents.client import Agent, AssistanceRequest, Task


class Helper(Agent):
    async def execute_task(self, task: Task) -> None:
        return None

    async def provide_assistance(self, request: AssistanceRequest) -> str | None:
        return f"{request.requester} asked about {request.topic}: looks fine"


Helper.main()
'''


def test_the_client_library_answers_help_the_manager_brokers(run_dir: Path) -> None:
    """A library agent is found by its capability and answers the asker it is told of."""
    (run_dir / "helper.py").write_text(HELPER)
    with served(run_dir) as (path, tokens, journal):
        env = {**ENV, "PYTHONPATH": str(ROOT)}
        err = (run_dir / "helper.err").open("wb")
        helper = subprocess.Popen([sys.executable, str(run_dir / "helper.py"), "--connect", f"unix:{path}", "--id", "beta",
                                   "--token-file", str(tokens / "beta.token")], env=env, stderr=err)
        try:
            alpha = Raw(path, "alpha")
            alpha.join(token(tokens, "alpha"))
            deadline = time.monotonic() + GUARD
            while not any(r["agentId"] == "beta" for r in records_of(journal, EventType.AGENT_STATUS)):
                assert time.monotonic() < deadline and helper.poll() is None, (run_dir / "helper.err").read_text()
                time.sleep(0.05)
            (answer,) = alpha.replies_to(alpha.send("request_assistance", {"topic": "the plan", "capability": "review"},
                                                    reply=True), quiet=2.0)
        finally:
            helper.terminate()
            helper.wait(timeout=GUARD)
    assert answer["payload"] == {"topic": "the plan", "details": "alpha asked about the plan: looks fine",
                                 "agentId": "beta", "helped": True}
