"""Resource ids are canonical: symlinks below the workspace resolved, ways out refused, no control characters.

Real files and symlinks in a real workspace.  Over the wire: `sprintdeck serve` and two raw socket
clients asking for locks as agents would (the hook and the MCP server send the same
`resource_lock`).  In plans: `sprintdeck validate` against the plan's workspace, and a sprint whose
tasks name one file by two names, or a link out of the workspace.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_sprint, write_plan
from test_agent_sessions import served, short_dir
from test_mcp_server import environment, session, sprint
from test_serve import ENV, GUARD, SPRINTDECK, listening_on, serve

from engine.events import EventType
from engine.journal import read_journal
from engine.plan import load_plan
from engine.protocol import MANAGER_ID, IPCMessage, make_message, parse_message
from engine.resources import ResourceError, canonical_resource, resource_ids_in

__all__ = ["short_dir"]  # the fixture, used by name


def make_workspace(root: Path) -> Path:
    """a.txt, alias.txt -> a.txt, docs -> real_docs (inside); etc_link -> /etc, pw_link -> /etc/passwd (outside)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "a.txt").write_text("one file\n")
    (root / "real_docs").mkdir()
    (root / "real_docs" / "guide.md").write_text("# guide\n")
    os.symlink("a.txt", root / "alias.txt")
    os.symlink("real_docs", root / "docs")
    os.symlink("/etc", root / "etc_link")
    os.symlink("/etc/passwd", root / "pw_link")
    os.symlink("..", root / "up")
    return root


@pytest.fixture
def run_dir() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="sd-ids-", dir="/tmp"))  # short: a socket path is at most 107 bytes
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------- the rule itself


def test_two_names_of_one_file_are_one_id_and_ways_out_are_refused(tmp_path: Path) -> None:
    canonical = resource_ids_in(make_workspace(tmp_path / "ws"))
    assert canonical("alias.txt") == canonical("./a.txt") == "a.txt"
    assert canonical("docs/guide.md") == "real_docs/guide.md"
    assert canonical("docs/not/yet/made.md") == "real_docs/not/yet/made.md"  # a lock before the file exists
    assert canonical("db:schema") == "db:schema"
    root = os.path.realpath(tmp_path / "ws")
    for resource, leads_to in [("etc_link/passwd", "/etc/passwd"), ("pw_link", "/etc/passwd"),
                               ("up/secret", os.path.join(os.path.dirname(root), "secret"))]:
        with pytest.raises(ResourceError) as refused:
            canonical(resource)
        assert str(refused.value) == (f"resource '{resource}' leads to '{leads_to}' through a symlink, "
                                      f"outside the workspace '{root}'")


@pytest.mark.parametrize(("resource", "shown"), [
    ("a.txt\n", r"'a.txt\n'"),
    ("\x1b[31mred.txt", r"'\x1b[31mred.txt'"),
    ("db:x\r", r"'db:x\r'"),
    ("evil\u202etxt.exe", r"'evil\u202etxt.exe'"),
])
def test_control_characters_are_refused_naming_the_id_escaped(tmp_path: Path, resource: str, shown: str) -> None:
    with pytest.raises(ResourceError) as refused:
        canonical_resource(resource, str(tmp_path))
    assert str(refused.value).startswith(f"resource id {shown} contains the control character")


def test_an_absurdly_long_id_is_refused_and_quoted_short(tmp_path: Path) -> None:
    with pytest.raises(ResourceError) as refused:
        canonical_resource("x" * 100_000, str(tmp_path))
    message = str(refused.value)
    assert len(message) < 200 and "(100,000 characters)" in message and "at most 4,096" in message


# ---------------------------------------------------------------- over the wire: serve and two socket clients


class Client:
    """A raw agent connection: the handshake, then requests answered by correlationId."""

    def __init__(self, path: str, agent_id: str, token: str) -> None:
        self.agent_id = agent_id
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(GUARD)
        self.sock.connect(path)
        self.lines = self.sock.makefile("rb")
        welcome = self.ask("agent_ready", {"token": token})
        assert welcome.type == "broadcast_info", welcome

    def ask(self, kind: str, payload: dict[str, Any]) -> IPCMessage:
        request = make_message(kind, self.agent_id, MANAGER_ID, payload, requiresResponse=True)
        self.sock.sendall(request.wire().encode() + b"\n")
        while True:
            reply = parse_message(self.lines.readline())
            if reply.correlation_id == request.id:
                return reply

    def tell(self, kind: str, payload: dict[str, Any]) -> None:
        self.sock.sendall(make_message(kind, self.agent_id, MANAGER_ID, payload).wire().encode() + b"\n")

    def close(self) -> None:
        self.lines.close()
        self.sock.close()


def external_plan(directory: Path) -> Path:
    write_plan(directory, {
        "sprint": "symlinks",
        "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "60s", "lock_ttl": "60s"},
        "agents": [{"id": "alpha", "kind": "external"}, {"id": "beta", "kind": "external"}],
        "tasks": [{"id": "hold", "agent": "alpha"}],  # never completed: the sprint stays up
    })
    return directory / "plan.yaml"


def test_locks_over_the_socket_are_canonical(run_dir: Path) -> None:
    workspace, journal = make_workspace(run_dir / "ws"), run_dir / "run.jsonl"
    server = serve(external_plan(run_dir), f"unix:{run_dir}/s/deck.sock", run_dir,
                   "--record", str(journal), "--workspace", str(workspace))
    try:
        path = listening_on(server).removeprefix("unix:")
        tokens = run_dir / "run.tokens"
        alpha = Client(path, "alpha", (tokens / "alpha.token").read_text().strip())
        beta = Client(path, "beta", (tokens / "beta.token").read_text().strip())
        held = alpha.ask("resource_lock", {"resourceId": "a.txt", "lockType": "exclusive"})
        by_alias = beta.ask("resource_lock", {"resourceId": "alias.txt", "lockType": "exclusive"})
        newline = beta.ask("resource_lock", {"resourceId": "a.txt\n", "lockType": "exclusive"})
        escapes = [beta.ask("resource_lock", {"resourceId": resource, "lockType": "read"})
                   for resource in ("etc_link/passwd", "pw_link")]
        lock = {"lockId": held.payload.lock_id, "token": held.payload.token}
        alpha.tell("state_update", {"path": "alias.txt", "checksum": "sha256:" + "0" * 64, **lock})
        released = alpha.ask("resource_unlock", {"resourceId": "alias.txt"})  # released by its other name
        after = beta.ask("resource_lock", {"resourceId": "alias.txt", "lockType": "exclusive"})
        alpha.close()
        beta.close()
    finally:
        server.kill()
    assert held.type == "resource_lock" and held.payload.resource_id == "a.txt"
    # One file, one lock: the second exclusive request through the symlink is refused, naming the file.
    assert by_alias.type == "resource_conflict"
    assert (by_alias.payload.resource_id, by_alias.payload.holder) == ("a.txt", "alpha")
    assert newline.type == "agent_error" and newline.payload.field == "payload.resourceId"
    assert newline.payload.error == r"resource id 'a.txt\n' contains the control character '\n'"
    for reply, resource in zip(escapes, ("etc_link/passwd", "pw_link"), strict=True):
        assert reply.type == "agent_error" and reply.payload.field == "payload.resourceId"
        assert reply.payload.error.startswith(f"resource '{resource}' leads to '/etc/passwd' through a symlink, "
                                              "outside the workspace")
    assert released.type == "resource_unlock" and released.payload.released
    assert after.type == "resource_lock" and after.payload.resource_id == "a.txt"
    _, records, _ = read_journal(journal)
    # A file report through the alias is fenced by the lock on a.txt, and recorded for the file.
    assert [r["data"]["path"] for r in records if r["type"] == EventType.FILE_REPORTED] == ["a.txt"]
    granted = [r["data"]["resourceId"] for r in records if r["type"] == EventType.LOCK_GRANTED]
    assert granted == ["a.txt", "a.txt"]  # the journal (and so replay) names the file, never the alias
    assert not any("/etc" in r["data"].get("resourceId", "") for r in records)
    rejected = [r["data"] for r in records if r["type"] == EventType.MESSAGE_REJECTED]
    assert [r["field"] for r in rejected[:3]] == ["payload.resourceId"] * 3
    assert "'pw_link' leads to '/etc/passwd'" in rejected[2]["reason"]


# ---------------------------------------------------------------- plans


def test_validate_refuses_plan_resources_that_leave_the_workspace_through_symlinks(tmp_path: Path) -> None:
    make_workspace(tmp_path / "ws")
    (tmp_path / "plan.yaml").write_text(
        "sprint: s\nworkspace: ws\nagents: [{id: a}]\ntasks:\n  - id: t\n    resources:\n"
        "      - alias.txt\n      - etc_link/passwd\n      - {path: pw_link, mode: read}\n"
        "  - id: u\n    agents: [a]\n    shared_resources: [docs/guide.md, up/x]\n")
    out = subprocess.run([*SPRINTDECK, "validate", "plan.yaml"], cwd=tmp_path, env=ENV,
                         capture_output=True, text=True, timeout=GUARD)
    root = os.path.realpath(tmp_path / "ws")
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        f"plan.yaml:8: task 't': resources[1].path: resource 'etc_link/passwd' leads to '/etc/passwd' "
        f"through a symlink, outside the workspace '{root}'",
        f"plan.yaml:9: task 't': resources[2].path: resource 'pw_link' leads to '/etc/passwd' "
        f"through a symlink, outside the workspace '{root}'",
        f"plan.yaml:12: task 'u': shared_resources[1]: resource 'up/x' leads to '{os.path.dirname(root)}/x' "
        f"through a symlink, outside the workspace '{root}'",
    ]


async def test_two_tasks_naming_one_file_by_two_names_never_hold_it_together(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, {
        "sprint": "two-names",
        "settings": {"heartbeat_interval": "50ms", "max_retries": 0},
        "agents": [{"id": "sh1", "kind": "shell"}, {"id": "sh2", "kind": "shell"}],
        "tasks": [
            {"id": "direct", "agent": "sh1", "resources": [{"path": "a.txt", "mode": "exclusive"}],
             "command": "echo direct >> a.txt; sleep 0.3"},
            {"id": "aliased", "agent": "sh2", "resources": [{"path": "alias.txt", "mode": "exclusive"}],
             "command": "echo aliased >> alias.txt; sleep 0.3"},
        ],
    })
    run = await run_sprint(plan, tmp_path, setup=lambda manager: make_workspace(manager.workspace))
    assert run.result.succeeded
    held: set[str] = set()
    for event in run.events:  # at no moment do both tasks hold the file
        if event.type == EventType.LOCK_GRANTED:
            assert event.data["resourceId"] == "a.txt"
            assert not held, f"{event.data['taskId']} got a.txt while {held} held it"
            held.add(event.data["lockId"])
        elif event.type == EventType.LOCK_RELEASED:
            held.discard(event.data["lockId"])
    # The edit through the alias is the lock holder's: no conflict on the file it reaches, and the
    # watcher, which follows linked directories (`up` -> ..), records the file under its own name only.
    files = run.result.state.files
    assert files["a.txt"].status == "modified" and files["a.txt"].modified_by in ("sh1", "sh2")
    assert not [path for path, file in files.items() if file.status == "conflict"]
    assert not [path for path in files if path.startswith(("up/", "docs/", "etc_link/"))]
    assert sorted((run.workspace / "a.txt").read_text().split()) == ["aliased", "direct", "file", "one"]


async def test_a_task_whose_resource_leaves_the_workspace_fails_with_the_reason(tmp_path: Path) -> None:
    plan = write_plan(tmp_path, {
        "sprint": "escape",
        "settings": {"heartbeat_interval": "50ms", "max_retries": 0},
        "agents": [{"id": "sh", "kind": "shell"}],
        "tasks": [{"id": "steal", "resources": ["pw_link"], "command": "cat pw_link > stolen.txt"},
                  {"id": "fine", "resources": ["a.txt"], "command": "true"}],
    })
    # The plan has no workspace of its own: only the sprint's workspace shows where pw_link leads.
    run = await run_sprint(plan, tmp_path, setup=lambda manager: make_workspace(manager.workspace))
    steal, fine = run.result.state.tasks["steal"], run.result.state.tasks["fine"]
    assert steal.status == "failed" and fine.status == "completed"
    assert steal.error.startswith("cannot lock its resources: resource 'pw_link' leads to '/etc/passwd'")
    assert not (run.workspace / "stolen.txt").exists()
    granted = {r.data["resourceId"] for r in run.events if r.type == EventType.LOCK_GRANTED}
    assert granted == {"a.txt"}
    assert json.dumps([e.data for e in run.events]).count("/etc/passwd") >= 1  # the reason is journaled


def test_the_repository_sample_of_symlinks_validates_as_documented() -> None:
    out = subprocess.run([*SPRINTDECK, "validate", "sample_sprints/invalid/symlink_escape.yaml"], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, timeout=GUARD)
    assert out.returncode == 2
    assert [line.split(": resource ")[0] for line in out.stderr.splitlines()] == [
        "sample_sprints/invalid/symlink_escape.yaml:9: task 'steal': resources[1].path",
        "sample_sprints/invalid/symlink_escape.yaml:10: task 'steal': resources[2].path",
    ]
    assert "'etc_link/passwd' leads to '/etc/passwd' through a symlink" in out.stderr


async def test_a_scratch_copy_keeps_absolute_links_into_the_sample_inside_the_copy(tmp_path: Path) -> None:
    sample = make_workspace(tmp_path / "sample")
    os.symlink(sample / "a.txt", sample / "absolute_alias.txt")  # absolute, into the sample itself
    (tmp_path / "plan.yaml").write_text(
        "sprint: s\nworkspace: sample\nsettings: {heartbeat_interval: 50ms, max_retries: 0}\n"
        "agents: [{id: sh, kind: shell}]\n"
        "tasks: [{id: t, resources: [absolute_alias.txt], command: 'echo more >> absolute_alias.txt'}]\n")
    plan = load_plan(tmp_path / "plan.yaml")  # validates: the link stays inside the sample
    run = await run_sprint(plan, tmp_path)  # on a scratch copy of the sample
    assert run.result.succeeded, run.result.state.tasks["t"].error
    assert os.readlink(run.workspace / "absolute_alias.txt") == "a.txt"
    assert (run.workspace / "a.txt").read_text() == "one file\nmore\n"
    assert (sample / "a.txt").read_text() == "one file\n"  # the sample stays pristine
    assert [e.data["resourceId"] for e in run.events if e.type == EventType.LOCK_GRANTED] == ["a.txt"]


# ---------------------------------------------------------------- the MCP tools, through the same socket


async def test_mcp_tools_lock_one_file_by_either_name_and_refuse_a_way_out(short_dir: Path) -> None:
    async with served(short_dir, sprint()) as deck:
        make_workspace(short_dir / "ws")
        async with session(environment(deck, "backend")) as backend, session(environment(deck, "frontend")) as frontend:
            granted = await backend.call("acquire_lock", paths=["alias.txt"])
            taken = await frontend.refused("acquire_lock", paths=["a.txt"])
            escape = await frontend.refused("acquire_lock", paths=["etc_link/passwd"])
            released = await backend.call("release_lock", paths=["alias.txt"])
            after = await frontend.call("acquire_lock", paths=["./a.txt"])
    assert granted.startswith("Granted: write lock on a.txt")
    assert "a.txt is locked for writing by backend" in taken
    assert "resource 'etc_link/passwd' leads to '/etc/passwd' through a symlink, outside the workspace" in escape
    assert released == "Released alias.txt."
    assert after.startswith("Granted: write lock on a.txt")
