"""`sprintdeck init-claude` as a user runs it, in a scratch checkout through the real command line.

A second run changes no byte; the user's own hooks (on our events and matchers too), settings and
MCP servers stay exactly as they were; a file that is not a JSON object is refused, naming it,
and nothing is written; the printed commands are exactly the ones that start each agent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, write_plan

SPRINTDECK_EXE = str(Path(sys.executable).with_name("sprintdeck"))
EDITS = "Write|Edit|MultiEdit|NotebookEdit"
OUR_EVENTS = {
    "SessionStart": (None, "session-start"),
    "PreToolUse": (EDITS, "pre-tool-use"),
    "PostToolUse": (f"{EDITS}|Bash", "post-tool-use"),
    "Notification": (None, "notification"),
    "Stop": (None, "stop"),
    "SessionEnd": (None, "session-end"),
}
USER_SETTINGS: dict[str, Any] = {
    "permissions": {"allow": ["Bash(npm test)"]},
    "hooks": {
        "PreToolUse": [
            {"matcher": EDITS, "hooks": [{"type": "command", "command": "./lint-guard.sh"}]},
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "./bash-guard.sh", "timeout": 5}]},
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "say done"}]}],
    },
    "model": "sonnet",
}
USER_SERVERS = {"mcpServers": {"github": {"command": "gh-mcp", "args": ["--stdio"], "env": {"X": "1"}}}}


def init_claude(checkout: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "init-claude", *args],
        cwd=checkout, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )


def ours(settings: dict[str, Any], event: str) -> list[dict[str, Any]]:
    """The groups of `event` that run our hook."""
    command = f"{SPRINTDECK_EXE} hook {OUR_EVENTS[event][1]}"
    return [group for group in settings["hooks"][event] if any(h["command"] == command for h in group["hooks"])]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    directory = tmp_path / "repo"
    (directory / ".claude").mkdir(parents=True)
    (directory / ".claude/settings.json").write_text(json.dumps(USER_SETTINGS, indent=4))
    (directory / ".mcp.json").write_text(json.dumps(USER_SERVERS))
    return directory


def test_a_second_run_changes_nothing_and_the_users_entries_are_kept(checkout: Path) -> None:
    settings_path, servers_path = checkout / ".claude/settings.json", checkout / ".mcp.json"
    first = init_claude(checkout)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines()[0] == f"sprintdeck: changed {settings_path} and {servers_path}"
    after_first = settings_path.read_bytes(), servers_path.read_bytes()
    assert after_first[0].endswith(b"}\n") and b'\n  "permissions": {' in after_first[0]  # 2 spaces, a newline

    second = init_claude(checkout)
    assert second.returncode == 0, second.stderr
    assert (settings_path.read_bytes(), servers_path.read_bytes()) == after_first
    assert second.stdout.splitlines()[0] == f"sprintdeck: nothing changed: {settings_path} and {servers_path} were up to date"

    settings = json.loads(after_first[0])
    assert settings["permissions"] == USER_SETTINGS["permissions"] and settings["model"] == "sonnet"
    for event, groups in USER_SETTINGS["hooks"].items():
        assert settings["hooks"][event][: len(groups)] == groups  # the user's groups, untouched, first
    for event, (matcher, name) in OUR_EVENTS.items():
        hook = {"type": "command", "command": f"{SPRINTDECK_EXE} hook {name}",
                "timeout": 60 if event == "PreToolUse" else 10}
        expected = {"hooks": [hook]} if matcher is None else {"matcher": matcher, "hooks": [hook]}
        assert ours(settings, event) == [expected], event
    servers = json.loads(after_first[1])
    assert servers["mcpServers"] == {**USER_SERVERS["mcpServers"],
                                     "sprintdeck": {"command": SPRINTDECK_EXE, "args": ["mcp"]}}


def test_absent_files_are_created_agent_neutral(tmp_path: Path) -> None:
    out = init_claude(tmp_path, "--agent", "backend", "--connect", "tcp:127.0.0.1:7777", "--token-file", "t.json")
    assert out.returncode == 0, out.stderr
    for path in (tmp_path / ".claude/settings.json", tmp_path / ".mcp.json"):
        text = path.read_text()
        assert "backend" not in text and "7777" not in text and "t.json" not in text
    assert set(json.loads((tmp_path / ".claude/settings.json").read_text())["hooks"]) == set(OUR_EVENTS)


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        (".mcp.json", '{"mcpServers": {\n  "a": 1,\n}}', ".mcp.json:3:1: not valid JSON"),
        (".mcp.json", "[]", ".mcp.json: should hold a JSON object, not an array"),
        (".claude/settings.json", '{"hooks": {"Stop": {}}}', ".claude/settings.json: 'hooks.Stop' should be an array, not an object"),
        (".claude/settings.json", "", ".claude/settings.json:1:1: not valid JSON"),
    ],
)
def test_a_file_that_is_not_a_json_object_is_refused_and_nothing_is_written(
    checkout: Path, name: str, content: str, words: str
) -> None:
    (checkout / name).write_text(content)
    before = {path: path.read_bytes() for path in (checkout / ".claude/settings.json", checkout / ".mcp.json")}
    out = init_claude(checkout)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"{checkout}/{words}" in out.stderr, out.stderr
    assert {path: path.read_bytes() for path in before} == before
    assert sorted(p.name for p in checkout.rglob("*")) == [".claude", ".mcp.json", "settings.json"]  # no temp file


def test_the_printed_commands_start_each_external_agent_of_the_plan(tmp_path: Path) -> None:
    write_plan(tmp_path, {
        "sprint": "claude",
        "agents": [{"id": "backend", "kind": "external"}, {"id": "sim"}, {"id": "frontend", "kind": "external"}],
        "tasks": [{"id": "t"}],
    })
    checkout = tmp_path / "repo dir"
    checkout.mkdir()
    out = init_claude(checkout, "--plan", "../plan.yaml", "--connect", "unix:../deck.sock", "--token-file", "../tokens.json")
    assert out.returncode == 0, out.stderr
    env = f"SPRINTDECK_CONNECT=unix:{tmp_path}/deck.sock SPRINTDECK_TOKEN_FILE={tmp_path}/tokens.json"
    assert out.stdout.splitlines()[1:] == [
        f"sprintdeck: start each agent in {checkout} with:",
        f"SPRINTDECK_AGENT_ID=backend {env} claude",
        f"SPRINTDECK_AGENT_ID=frontend {env} claude",
    ]
    one = init_claude(checkout, "--plan", "../plan.yaml", "--agent", "frontend", "--token-file", "../my tokens.json")
    assert one.stdout.splitlines()[1:3] == [
        f"sprintdeck: start each agent in {checkout} with:",
        f"SPRINTDECK_AGENT_ID=frontend SPRINTDECK_TOKEN_FILE='{tmp_path}/my tokens.json' claude",
    ]
    assert "pass --connect ADDR" in one.stdout
    refused = init_claude(checkout, "--plan", "../plan.yaml", "--agent", "sim")
    assert refused.returncode == 2
    assert "--agent 'sim' is not an external agent of ../plan.yaml (its external agents: backend, frontend)" in refused.stderr
    neither = init_claude(checkout)
    assert neither.stdout.splitlines()[-1] == "sprintdeck: pass --agent ID or --plan PLAN to print the command that starts each agent"
