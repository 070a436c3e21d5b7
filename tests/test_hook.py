"""`sprintdeck hook EVENT` as Claude Code runs it: a new process per event, JSON on stdin, against
a real `sprintdeck serve`.

The inputs are shaped as Claude Code sends them (tests/hook_inputs/, one per event and tool).  Each
test reads what the user would see: what the hook printed (a deny and its reason, or nothing), and
what the manager journaled (the grant, the refusal, the fenced checksum, the agent's status).
Waits have generous guards; nothing asserts a time.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.hook_link import Deadline, Identity, Link
from conftest import ROOT, write_plan
from engine.events import Event
from engine.journal import read_journal
from engine.reducer import fold
from test_serve import ENV, GUARD, SPRINTDECK, Proc, listening_on, records_of, run_dir, wait_for  # noqa: F401

INPUTS = Path(__file__).parent / "hook_inputs"


# ---------------------------------------------------------------- the hook as Claude Code runs it


def hook_input(name: str, workspace: Path, session: str = "S-alpha", **changes: Any) -> dict[str, Any]:
    """A fixture of tests/hook_inputs with this run's workspace and session filled in."""
    text = (INPUTS / f"{name}.json").read_text()
    text = text.replace("{workspace}", str(workspace)).replace("{session}", session).replace("{home}", "/home/u")
    return {**json.loads(text), **changes}


@dataclass
class Hooked:
    """What one hook process did."""

    code: int
    out: str
    err: str

    @property
    def decision(self) -> dict[str, Any] | None:
        return json.loads(self.out) if self.out.strip() else None

    @property
    def denied(self) -> str:
        """The deny reason (fails when the hook did not deny)."""
        output = (self.decision or {}).get("hookSpecificOutput", {})
        assert output.get("permissionDecision") == "deny", f"not denied: {self.out!r} {self.err!r}"
        return str(output["permissionDecisionReason"])

    @property
    def context(self) -> str:
        return str((self.decision or {}).get("hookSpecificOutput", {}).get("additionalContext", ""))


def hook(event: str, stdin: dict[str, Any] | bytes, env: dict[str, str]) -> Hooked:
    data = stdin if isinstance(stdin, bytes) else json.dumps(stdin).encode()
    done = subprocess.run([*SPRINTDECK, "hook", event], input=data, env={**ENV, **env}, cwd=ROOT,
                          capture_output=True, timeout=GUARD)
    return Hooked(done.returncode, done.stdout.decode(), done.stderr.decode())


# ---------------------------------------------------------------- a served sprint


@dataclass
class Sprint:
    server: Proc
    address: str
    journal: Path
    workspace: Path
    tokens: Path

    def env(self, agent: str, **more: str) -> dict[str, str]:
        return {"SPRINTDECK_AGENT_ID": agent, "SPRINTDECK_CONNECT": self.address,
                "SPRINTDECK_TOKEN_FILE": str(self.tokens), "CLAUDE_PROJECT_DIR": str(self.workspace),
                "TMPDIR": str(self.tokens.parent), **more}

    def records(self, kind: str) -> list[dict[str, Any]]:
        return records_of(self.journal, kind)

    def wait_for(self, kind: str, what: str, **data: Any) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def journaled() -> bool:
            found[:] = [r for r in self.records(kind) if all(r.get(k) == v for k, v in data.items())]
            return bool(found)

        wait_for(journaled, what, self.server.process)
        return found[-1]

    def state(self) -> Any:
        _, records, _ = read_journal(self.journal)
        return fold([Event.from_record(r) for r in records])

    def link(self, agent: str, session: str) -> Link:
        token = json.loads(self.tokens.read_text())[agent]
        return Link.open(Identity(agent, self.address, token), Deadline(int(GUARD * 1000)), session=session)


@pytest.fixture
def sprint(run_dir: Path) -> Iterator[Sprint]:
    """alpha, beta and gamma are Claude Code agents, each with a task of its own that only it ends."""
    workspace = run_dir / "ws"
    (workspace / "src").mkdir(parents=True)
    (workspace / "notebooks").mkdir()
    (workspace / "src" / "shared.py").write_text("x = 1\n")
    write_plan(run_dir, {
        "sprint": "hooked",
        "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "120s", "lock_ttl": "120s"},
        "agents": [{"id": agent, "kind": "external", "capabilities": ["code"], "role": f"the {agent} specialist"}
                   for agent in ("alpha", "beta", "gamma")],
        "tasks": [{"id": f"t-{agent}", "title": f"{agent.title()}'s work", "agent": agent, "requires": ["code"]}
                  for agent in ("alpha", "beta", "gamma")],
    })
    journal, tokens = run_dir / "journal.jsonl", run_dir / "tokens.json"
    server = Proc.start(["serve", str(run_dir / "plan.yaml"), "--listen", f"unix:{run_dir}/sock/deck.sock",
                         "--headless", "--workspace", str(workspace), "--record", str(journal),
                         "--token-file", str(tokens)], "serve", run_dir)
    try:
        served = Sprint(server, listening_on(server), journal, workspace, tokens)
        served.wait_for("files_scanned", "the watcher armed")  # changes from here on are seen as changes
        yield served
    finally:
        server.kill()


def edit(sprint: Sprint, agent: str, name: str = "pre-edit", **changes: Any) -> Hooked:
    return hook("pre-tool-use", hook_input(name, sprint.workspace, f"S-{agent}", **changes), sprint.env(agent))


# ---------------------------------------------------------------- locks before edits


def test_an_edit_of_a_file_another_agent_holds_is_denied_naming_it_until_the_holder_completes(sprint: Sprint) -> None:
    first = edit(sprint, "alpha")
    assert (first.code, first.out) == (0, "")  # granted: nothing printed, never "allow"
    granted = sprint.wait_for("lock_granted", "alpha's lock", resourceId="src/shared.py")
    assert (granted["agentId"], granted["taskId"]) == ("alpha", "t-alpha")

    second = edit(sprint, "beta")
    reason = second.denied
    assert "src/shared.py" in reason and "alpha" in reason and "t-alpha" in reason
    assert "acquire_lock" in reason and "send_message" in reason  # what to do instead
    refused = sprint.wait_for("lock_refused", "beta's refusal", agentId="beta")
    assert refused["resourceId"] == "src/shared.py"

    with sprint.link("alpha", "S-alpha") as link:
        link.tell("task_complete", {"taskId": "t-alpha", "attempt": 1})
    sprint.wait_for("task_completed", "alpha's completion", taskId="t-alpha")
    retry = edit(sprint, "beta")
    assert (retry.code, retry.out) == (0, "")
    sprint.wait_for("lock_granted", "beta's lock", agentId="beta", resourceId="src/shared.py")


@pytest.mark.parametrize(("fixture", "path"), [
    ("pre-write", "src/new_module.py"),
    ("pre-multiedit", "src/multi.py"),
    ("pre-notebookedit", "notebooks/explore.ipynb"),
    ("pre-edit-subagent", "src/sub.py"),  # a subagent's relative path, from the session's cwd
])
def test_each_edit_tool_locks_its_file_for_the_agent(sprint: Sprint, fixture: str, path: str) -> None:
    assert edit(sprint, "alpha", fixture).out == ""
    sprint.wait_for("lock_granted", f"alpha's lock on {path}", agentId="alpha", resourceId=path)
    assert path in edit(sprint, "beta", fixture).denied


def test_bash_asks_nothing_before_it_runs(sprint: Sprint) -> None:
    done = hook("pre-tool-use", hook_input("pre-bash", sprint.workspace), sprint.env("alpha"))
    assert (done.code, done.out, done.err) == (0, "", "")
    assert edit(sprint, "beta").out == ""  # a later call of beta's is journaled; alpha's Bash was not
    sprint.wait_for("lock_granted", "beta's lock", agentId="beta")
    assert not [m for m in sprint.records("message") if m["message"]["from"] == "alpha"]


def test_paths_outside_the_workspace_are_denied_and_so_is_a_symlink_out_of_it(sprint: Sprint, run_dir: Path) -> None:
    outside = edit(sprint, "alpha", "pre-write", tool_input={"file_path": "/etc/hostname", "content": ""})
    assert "/etc/hostname is outside the sprint's workspace" in outside.denied
    (run_dir / "elsewhere.py").write_text("")
    (sprint.workspace / "src" / "link.py").symlink_to(run_dir / "elsewhere.py")
    linked = edit(sprint, "alpha", "pre-edit", tool_input={"file_path": str(sprint.workspace / "src" / "link.py")})
    assert "outside the sprint's workspace" in linked.denied


def test_a_wrong_token_is_denied_and_journaled_as_a_security_event(sprint: Sprint) -> None:
    done = hook("pre-tool-use", hook_input("pre-edit", sprint.workspace, "S-beta"),
                sprint.env("beta", SPRINTDECK_TOKEN="stolen"))
    assert "wrong token for agent 'beta'" in done.denied
    rejected = sprint.wait_for("message_rejected", "the refusal", field="payload.token")
    assert rejected["security"] is True and rejected["from"] == "beta"


def test_a_second_session_as_the_same_agent_is_refused_while_the_first_lives(sprint: Sprint) -> None:
    assert edit(sprint, "alpha").out == ""
    other = hook("session-start", hook_input("session-start", sprint.workspace, "S-intruder"), sprint.env("alpha"))
    assert "refused this Claude Code session" in other.context and "S-alpha" in other.context
    denied = hook("pre-tool-use", hook_input("pre-write", sprint.workspace, "S-intruder"), sprint.env("alpha"))
    assert "S-alpha" in denied.denied
    assert sprint.state().agents["alpha"].session == "S-alpha"


# ---------------------------------------------------------------- after the tool


def test_after_an_edit_the_checksum_is_reported_fenced_and_the_change_is_the_agents(sprint: Sprint) -> None:
    assert edit(sprint, "alpha").out == ""
    (sprint.workspace / "src" / "shared.py").write_text("x = 2\n")  # what Claude Code's Edit does
    after = hook("post-tool-use", hook_input("post-edit", sprint.workspace), sprint.env("alpha"))
    assert (after.code, after.out) == (0, "")
    report = sprint.wait_for("file_reported", "alpha's report", path="src/shared.py")
    assert report["agentId"] == "alpha" and report["checksum"].startswith("sha256:") and report["token"] >= 1
    wait_for(lambda: (f := sprint.state().files.get("src/shared.py")) is not None and f.modified_by == "alpha",
             "the change attributed to alpha", sprint.server.process)
    assert sprint.state().files["src/shared.py"].status != "conflict"


def test_after_bash_the_model_is_told_once_of_files_changed_without_a_lock(sprint: Sprint) -> None:
    (sprint.workspace / "src" / "untracked.py").write_text("changed\n")  # what the Bash command did
    sprint.wait_for("file_changed", "the watcher's conflict", path="src/untracked.py", status="conflict")
    told = hook("post-tool-use", hook_input("post-bash", sprint.workspace), sprint.env("alpha"))
    assert "src/untracked.py" in told.context and "without the write lock" in told.context
    again = hook("post-tool-use", hook_input("post-bash", sprint.workspace), sprint.env("alpha"))
    assert again.out == ""  # told already: not repeated every tool call


# ---------------------------------------------------------------- the session's life


def test_session_start_tells_the_model_its_role_its_task_and_how_to_work(sprint: Sprint) -> None:
    done = hook("session-start", hook_input("session-start", sprint.workspace), sprint.env("alpha"))
    context = done.context
    assert "agent alpha" in context and "the alpha specialist" in context
    assert "task t-alpha" in context and "Alpha's work" in context and "complete_task" in context
    sprint.wait_for("agent_session", "the session bound", agentId="alpha", session="S-alpha")


def test_a_notification_shows_the_agent_waiting_for_a_human(sprint: Sprint) -> None:
    done = hook("notification", hook_input("notification", sprint.workspace), sprint.env("alpha"))
    assert (done.code, done.out) == (0, "")
    status = sprint.wait_for("agent_status", "alpha waiting", agentId="alpha", status="waiting")
    assert status["reason"] == "waiting for a human: Claude needs your permission to use Bash"


def test_stop_is_blocked_once_while_the_agent_holds_an_unfinished_task(sprint: Sprint) -> None:
    blocked = hook("stop", hook_input("stop", sprint.workspace), sprint.env("alpha")).decision
    assert blocked is not None and blocked["decision"] == "block"
    assert "t-alpha" in blocked["reason"] and "complete_task" in blocked["reason"] and "fail_task" in blocked["reason"]
    active = hook("stop", hook_input("stop", sprint.workspace, stop_hook_active=True), sprint.env("alpha"))
    assert (active.code, active.out) == (0, "")  # the second stop goes through


def test_session_end_releases_the_agents_locks_and_hands_back_its_task(sprint: Sprint) -> None:
    assert edit(sprint, "alpha").out == ""
    done = hook("session-end", hook_input("session-end", sprint.workspace), sprint.env("alpha"))
    assert (done.code, done.out) == (0, "")
    dead = sprint.wait_for("agent_dead", "alpha gone", agentId="alpha")
    assert dead["reason"] == "left: Claude Code session prompt_input_exit" and dead["requeuedTasks"] == ["t-alpha"]
    assert edit(sprint, "beta").out == ""  # alpha's file is free at once


# ---------------------------------------------------------------- when the manager does not answer


@pytest.fixture
def silent_manager(run_dir: Path) -> Iterator[str]:
    """A socket that accepts connections and never answers."""
    path = str(run_dir / "silent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"unix:{path}"
    listener.close()
    for connection in accepted:
        connection.close()


def lone_env(connect: str, run_dir: Path, **more: str) -> dict[str, str]:
    return {"SPRINTDECK_AGENT_ID": "alpha", "SPRINTDECK_CONNECT": connect, "SPRINTDECK_TOKEN": "t",
            "CLAUDE_PROJECT_DIR": str(run_dir), "SPRINTDECK_HOOK_DEADLINE_MS": "400", **more}


def test_an_unreachable_or_silent_manager_denies_within_the_deadline_unless_fail_open(run_dir: Path, silent_manager: str) -> None:
    stdin = hook_input("pre-edit", run_dir)
    unreachable = hook("pre-tool-use", stdin, lone_env(f"unix:{run_dir}/nobody.sock", run_dir))
    assert "not reachable" in unreachable.denied and "SPRINTDECK_FAIL_OPEN=1" in unreachable.denied
    silent = hook("pre-tool-use", stdin, lone_env(silent_manager, run_dir))
    assert "no answer from the sprint manager" in silent.denied and "within 400 ms" in silent.denied
    for connect in (f"unix:{run_dir}/nobody.sock", silent_manager):
        opened = hook("pre-tool-use", stdin, lone_env(connect, run_dir, SPRINTDECK_FAIL_OPEN="1"))
        assert (opened.code, opened.out) == (0, "")


def test_an_agent_that_is_not_configured_is_denied_saying_what_to_set(run_dir: Path) -> None:
    done = hook("pre-tool-use", hook_input("pre-edit", run_dir), {"CLAUDE_PROJECT_DIR": str(run_dir)})
    assert "SPRINTDECK_AGENT_ID and SPRINTDECK_CONNECT not set" in done.denied


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(("event", "stdin", "says"), [
    ("pre-tool-use", b"", "no hook input on stdin"),
    ("pre-tool-use", b'{"tool_name": "Edit",', "not JSON (line 1"),
    ("stop", b"[1, 2]", "should be a JSON object, not list"),
    ("session-start", b"\xff\xfe", "not UTF-8"),
    ("frobnicate", b"{}", "unknown event 'frobnicate'"),
])
def test_bad_input_is_one_line_on_stderr_and_exit_1(run_dir: Path, event: str, stdin: bytes, says: str) -> None:
    done = hook(event, stdin, {"CLAUDE_PROJECT_DIR": str(run_dir)})
    assert done.code == 1 and done.out == ""
    assert says in done.err and done.err.count("\n") == 1 and "Traceback" not in done.err


def test_a_bad_deadline_setting_denies_an_edit_naming_the_variable(run_dir: Path) -> None:
    done = hook("pre-tool-use", hook_input("pre-edit", run_dir),
                lone_env("unix:/nowhere", run_dir, SPRINTDECK_HOOK_DEADLINE_MS="soon"))
    assert "SPRINTDECK_HOOK_DEADLINE_MS='soon' should be a whole number" in done.denied


def test_the_hook_imports_only_the_standard_library() -> None:
    heavy = ("engine", "pydantic", "textual", "yaml", "networkx", "rich", "watchfiles", "mcp")
    probe = ("import sys\nfrom app.cli import main\nmain(['hook', 'frobnicate'])\n"
             f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))")
    done = subprocess.run([sys.executable, "-c", probe], env={**ENV}, cwd=ROOT, capture_output=True, text=True, timeout=GUARD)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    assert "unknown event" in done.stderr  # the hook did run


def test_with_a_wait_an_edit_queues_for_the_file_and_goes_ahead_when_the_holder_lets_go(sprint: Sprint) -> None:
    assert edit(sprint, "alpha").out == ""
    env = sprint.env("beta", SPRINTDECK_HOOK_WAIT_MS="20000", SPRINTDECK_HOOK_DEADLINE_MS="30000")
    stdin = json.dumps(hook_input("pre-edit", sprint.workspace, "S-beta")).encode()
    waiting = subprocess.Popen([*SPRINTDECK, "hook", "pre-tool-use"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**ENV, **env}, cwd=ROOT)
    assert waiting.stdin is not None and waiting.stdout is not None and waiting.stderr is not None
    waiting.stdin.write(stdin)
    waiting.stdin.close()
    sprint.wait_for("lock_queued", "beta queued for the file", agentId="beta")
    with sprint.link("alpha", "S-alpha") as link:
        link.tell("task_complete", {"taskId": "t-alpha", "attempt": 1})
    waiting.wait(timeout=GUARD)
    out, err = waiting.stdout.read(), waiting.stderr.read()
    assert (waiting.returncode, out, err) == (0, b"", b"")  # granted once alpha let go: the edit goes ahead
    sprint.wait_for("lock_granted", "beta's lock", agentId="beta", resourceId="src/shared.py")


def test_a_wait_that_runs_out_is_a_deny_naming_the_holder(sprint: Sprint) -> None:
    assert edit(sprint, "alpha").out == ""
    done = hook("pre-tool-use", hook_input("pre-edit", sprint.workspace, "S-beta"),
                sprint.env("beta", SPRINTDECK_HOOK_WAIT_MS="300"))
    assert "alpha" in done.denied and "src/shared.py" in done.denied
