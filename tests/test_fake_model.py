"""The harness for end-to-end tests with Claude Code: the real CLI, with the language model
replaced by a scripted server (tests/fake_model.py, tests/claude_cli.py).

These tests pin down what the sprint's Claude Code agents rely on: scripted tool calls really
happen, project hooks can deny an edit and the model reads the reason, the JSON result carries
cost and usage, hooks and MCP servers inherit the CLI's environment (that is how they learn
which sprint agent they serve), and the developer's own Claude Code configuration stays out."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest

from claude_cli import (LOCAL_CLAUDE, ClaudeNotFound, ClaudeProcess, ClaudeTimedOut, find_claude,
                        run_claude, run_claude_async, start_claude)
from fake_model import Block, FakeModel, Request, ToolCall

DENY_REASON = "notes.txt is locked by agent backend (task api); edit other files meanwhile"


def project(tmp_path: Path, files: dict[str, str] | None = None) -> Path:
    """A directory for the CLI to work in, with `files` in it."""
    root = tmp_path / "project"
    root.mkdir()
    for name, text in (files or {}).items():
        (root / name).write_text(text)
    return root


def add_pre_tool_use_hook(root: Path, matcher: str, script: str, args: Sequence[str] = ()) -> None:
    """Write `script` as a Python hook and register it in the project's .claude/settings.json."""
    hook = root / ".claude" / "hook.py"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(script)
    command = shlex.join([sys.executable, str(hook), *args])
    settings = {"hooks": {"PreToolUse": [
        {"matcher": matcher, "hooks": [{"type": "command", "command": command, "timeout": 10}]}]}}
    (root / ".claude" / "settings.json").write_text(json.dumps(settings))


# -- the real CLI -----------------------------------------------------------------------------

def test_a_scripted_write_creates_the_file_and_the_model_sees_its_result(tmp_path: Path) -> None:
    root = project(tmp_path)
    target = root / "hello.txt"
    with FakeModel([[ToolCall("Write", {"file_path": str(target), "content": "hi\n"})]],
                   final_text="Wrote it.") as model:
        run = run_claude(root, model, "Write hello.txt.", allowed_tools=["Write"])

    assert run.exit_code == 0, run.stderr
    assert target.read_text() == "hi\n"
    [result] = model.results("Write")
    assert not result.is_error and "hello.txt" in result.content
    assert run.json["result"] == "Wrote it."
    assert run.json["num_turns"] == 2


def test_a_read_then_an_edit_changes_an_existing_file(tmp_path: Path) -> None:
    root = project(tmp_path, {"notes.txt": "draft\n"})
    notes = str(root / "notes.txt")
    script = [[ToolCall("Read", {"file_path": notes})],
              [ToolCall("Edit", {"file_path": notes, "old_string": "draft", "new_string": "final"})]]
    with FakeModel(script) as model:
        run = run_claude(root, model, allowed_tools=["Read", "Edit"])

    assert run.exit_code == 0, run.stderr
    assert (root / "notes.txt").read_text() == "final\n"
    assert "draft" in model.results("Read")[0].content
    assert not model.results("Edit")[0].is_error


def test_a_project_hook_that_denies_an_edit_leaves_the_file_and_tells_the_model(tmp_path: Path) -> None:
    root = project(tmp_path, {"notes.txt": "draft\n"})
    deny = {"hookSpecificOutput": {"hookEventName": "PreToolUse", "permissionDecision": "deny",
                                   "permissionDecisionReason": DENY_REASON}}
    add_pre_tool_use_hook(root, "Edit", f"import json\nprint(json.dumps({deny!r}))\n")
    notes = str(root / "notes.txt")
    edit = ToolCall("Edit", {"file_path": notes, "old_string": "draft", "new_string": "final"})
    with FakeModel([[ToolCall("Read", {"file_path": notes})], [edit]]) as model:
        run = run_claude(root, model, allowed_tools=["Read", "Edit"])

    assert run.exit_code == 0, run.stderr
    assert (root / "notes.txt").read_text() == "draft\n"
    [result] = model.results("Edit")
    assert result.is_error and DENY_REASON in result.content
    [denial] = run.json["permission_denials"]
    assert denial["tool_name"] == "Edit" and denial["tool_input"]["file_path"] == notes


def test_the_result_reports_the_cost_and_the_tokens_the_model_reported(tmp_path: Path) -> None:
    root = project(tmp_path)
    with FakeModel([["Thinking it over."]]) as model:
        run = run_claude(root, model)

    assert run.json["total_cost_usd"] > 0
    usage = run.json["usage"]
    assert usage["input_tokens"] == model.usage()["input_tokens"] > 0
    assert usage["output_tokens"] == model.usage()["output_tokens"] > 0
    assert run.json["session_id"]


def test_hooks_and_mcp_servers_inherit_the_cli_environment(tmp_path: Path) -> None:
    """The hook and the MCP server learn their sprint agent from SPRINTDECK_AGENT_ID in the CLI's
    environment. The "MCP server" here only records its environment and exits: the CLI carries on
    without it, and what matters is what it was started with."""
    root = project(tmp_path)
    seen = tmp_path / "seen"
    seen.mkdir()
    record_env = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    add_pre_tool_use_hook(root, "Write", record_env, args=[str(seen / "hook")])
    mcp_config = tmp_path / "mcp.json"
    mcp_config.write_text(json.dumps({"mcpServers": {"probe": {
        "command": sys.executable, "args": ["-c", record_env, str(seen / "mcp")]}}}))
    write = ToolCall("Write", {"file_path": str(root / "a.txt"), "content": "a\n"})
    with FakeModel([[write]]) as model:
        run = run_claude(root, model, allowed_tools=["Write"], args=["--mcp-config", str(mcp_config)],
                         env={"SPRINTDECK_AGENT_ID": "backend"})

    assert run.exit_code == 0, run.stderr
    hook_env = json.loads((seen / "hook").read_text())
    mcp_env = json.loads((seen / "mcp").read_text())
    assert hook_env["SPRINTDECK_AGENT_ID"] == mcp_env["SPRINTDECK_AGENT_ID"] == "backend"
    assert hook_env["CLAUDE_PROJECT_DIR"] == str(root)


def test_the_developers_own_claude_config_stays_out(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer whose own settings deny every Write, and whose shell names a model and an
    agent: none of it reaches the run, and nothing is written to their config directory."""
    own = tmp_path / "developer" / ".claude"
    own.mkdir(parents=True)
    deny_all = {"permissions": {"deny": ["Write"]}}
    (own / "settings.json").write_text(json.dumps(deny_all))
    for name, value in {"HOME": str(own.parent), "CLAUDE_CONFIG_DIR": str(own),
                        "ANTHROPIC_MODEL": "claude-from-the-shell",
                        "SPRINTDECK_AGENT_ID": "someone"}.items():
        monkeypatch.setenv(name, value)
    root = project(tmp_path)
    with FakeModel([[ToolCall("Write", {"file_path": str(root / "a.txt"), "content": "a\n"})]]) as model:
        run = run_claude(root, model, allowed_tools=["Write"], home=tmp_path / "run-home")

    assert (root / "a.txt").read_text() == "a\n"
    assert run.json["permission_denials"] == []
    assert model.turns[0].body["model"] != "claude-from-the-shell"
    assert sorted(p.name for p in own.iterdir()) == ["settings.json"]
    assert any((tmp_path / "run-home" / ".claude" / "projects").iterdir())


async def test_several_clis_run_at_once_each_against_its_own_model(tmp_path: Path) -> None:
    root = project(tmp_path)
    names = ["a.txt", "b.txt", "c.txt"]
    models = [FakeModel([[ToolCall("Write", {"file_path": str(root / n), "content": n})]])
              for n in names]
    for model in models:
        model.start()
    try:
        runs = await asyncio.gather(*(run_claude_async(root, m, allowed_tools=["Write"])
                                      for m in models))
    finally:
        for model in models:
            model.stop()

    assert [r.exit_code for r in runs] == [0, 0, 0]
    assert [(root / n).read_text() for n in names] == names
    assert len({r.json["session_id"] for r in runs}) == 3


async def test_one_model_serves_several_clis_a_script_for_each_conversation(tmp_path: Path) -> None:
    """As when the sprint manager starts the CLIs itself, all with one environment: each
    conversation gets the script its prompt asks for, from the start."""
    root = project(tmp_path)

    def script_for(first: Request) -> list[list[Block]]:
        name = first.prompt.split()[-1]  # "Write a.txt" -> "a.txt"
        return [[ToolCall("Write", {"file_path": str(root / name), "content": name})]]

    names = ["a.txt", "b.txt", "c.txt"]
    with FakeModel(script_for) as model:
        runs = await asyncio.gather(*(run_claude_async(root, model, f"Write {n}",
                                                       allowed_tools=["Write"]) for n in names))

    assert [r.exit_code for r in runs] == [0, 0, 0]
    assert [(root / n).read_text() for n in names] == names
    assert {r.session_id for r in model.turns} == {r.json["session_id"] for r in runs}


def running(pid: int) -> bool:
    """Whether `pid` still runs (a zombie nobody has reaped yet does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def start_a_long_command(root: Path, model: FakeModel,
                               pid_file: Path) -> tuple[ClaudeProcess, int]:
    """Start a CLI whose Bash command writes its shell's pid and sleeps; return once it runs."""
    claude = await start_claude(root, model, allowed_tools=["Bash"])
    for _ in range(600):
        if pid_file.exists() and pid_file.read_text().strip():
            return claude, int(pid_file.read_text())
        await asyncio.sleep(0.05)
    raise AssertionError(f"the Bash command never started; the model saw {model.requests}")


def sleeping_command(pid_file: Path) -> list[ToolCall]:
    return [ToolCall("Bash", {"command": f"echo $$ > {pid_file}; sleep 60", "description": "Wait."})]


async def test_a_killed_cli_leaves_its_bash_command_until_finish_removes_it(tmp_path: Path) -> None:
    """The crash the sprint manager must survive: the CLI dies mid-command. Its Bash command
    runs in a session of its own and outlives it; `finish` cleans it up."""
    root, pid_file = project(tmp_path), tmp_path / "bash.pid"
    with FakeModel([sleeping_command(pid_file)]) as model:
        claude, bash = await start_a_long_command(root, model, pid_file)
        claude.kill()
        await claude.process.wait()
        assert running(bash)
        run = await claude.finish()

    assert run.exit_code == -signal.SIGKILL
    assert not running(bash)


async def test_a_run_past_its_timeout_fails_saying_so_and_leaves_no_process(tmp_path: Path) -> None:
    root, pid_file = project(tmp_path), tmp_path / "bash.pid"
    with FakeModel([sleeping_command(pid_file)]) as model:
        claude, bash = await start_a_long_command(root, model, pid_file)
        with pytest.raises(ClaudeTimedOut, match="did not finish within 0.5 s"):
            await claude.finish(timeout=0.5)

    assert not running(bash)


def test_a_turn_can_act_on_what_the_previous_turn_returned(tmp_path: Path) -> None:
    root = project(tmp_path, {"source.txt": "copy me\n"})

    def copy_what_was_read(request: Request) -> list[ToolCall]:
        [read] = request.tool_results
        text = read.content.split("\t", 1)[1]  # the Read tool numbers lines: "1\tcopy me"
        return [ToolCall("Write", {"file_path": str(root / "copy.txt"), "content": text})]

    script = [[ToolCall("Read", {"file_path": str(root / "source.txt")})], copy_what_was_read]
    with FakeModel(script) as model:
        run = run_claude(root, model, allowed_tools=["Read", "Write"])

    assert run.exit_code == 0, run.stderr
    assert (root / "copy.txt").read_text().startswith("copy me")
    assert [c.name for c in model.tool_calls] == ["Read", "Write"]


# -- the fake model on its own ----------------------------------------------------------------

def post(model: FakeModel, body: dict[str, object]) -> tuple[str, bytes]:
    request = urllib.request.Request(f"{model.base_url}/v1/messages?beta=true",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers["Content-Type"], response.read()


def events(stream: bytes) -> list[dict[str, object]]:
    return [json.loads(line[len(b"data: "):]) for line in stream.splitlines()
            if line.startswith(b"data: ")]


TURN = {"model": "claude-x", "stream": True, "tools": [{"name": "Write"}],
        "messages": [{"role": "user", "content": "go"}]}


def test_the_stream_is_a_tool_call_then_the_final_text_once_the_script_is_done() -> None:
    call = ToolCall("Write", {"file_path": "/tmp/x", "content": "x"})
    with FakeModel([[call]], final_text="All done.") as model:
        first = events(post(model, TURN)[1])
        second = events(post(model, TURN)[1])

    assert [e["type"] for e in first] == [
        "message_start", "ping", "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop", "message_delta", "message_stop"]
    arguments = "".join(e["delta"]["partial_json"] for e in first  # type: ignore[index]
                        if e["type"] == "content_block_delta")
    assert json.loads(arguments) == call.input
    assert first[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert {"type": "text_delta", "text": "All done."} in [e.get("delta") for e in second]
    assert second[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}


def test_a_side_request_gets_short_text_and_leaves_the_script_where_it_was() -> None:
    with FakeModel([["first turn"]]) as model:
        content_type, side = post(model, {"model": "claude-x", "max_tokens": 50,
                                          "messages": [{"role": "user", "content": "title?"}]})
        turn = events(post(model, TURN)[1])

    assert content_type == "application/json"
    assert json.loads(side)["content"] == [{"type": "text", "text": "OK"}]
    assert {"type": "text_delta", "text": "first turn"} in [e.get("delta") for e in turn]
    assert [r.kind for r in model.requests] == ["side", "turn"]


def test_a_script_that_raises_ends_the_conversation_and_fails_the_test() -> None:
    def broken(request: Request) -> list[str]:
        raise ValueError("the script's own bug")

    replies = []
    with pytest.raises(ValueError, match="the script's own bug"), \
            FakeModel([broken], final_text="Stopped.") as model:
        replies.append(events(post(model, TURN)[1]))
    assert {"type": "text_delta", "text": "Stopped."} in [e.get("delta") for e in replies[0]]


# -- finding the CLI --------------------------------------------------------------------------

def test_a_missing_cli_says_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(ClaudeNotFound, match=r"npm install --prefix \.cache/npm @anthropic-ai/claude-code"):
        find_claude({"PATH": str(tmp_path)}, root=tmp_path)


def test_sprintdeck_claude_wins_and_a_wrong_one_is_named(tmp_path: Path) -> None:
    local = tmp_path / LOCAL_CLAUDE
    local.parent.mkdir(parents=True)
    local.write_text("#!/bin/sh\n")
    local.chmod(0o755)
    assert find_claude({"PATH": ""}, root=tmp_path) == str(local)
    assert find_claude({"PATH": "", "SPRINTDECK_CLAUDE": str(local)}, root=tmp_path) == str(local)
    with pytest.raises(ClaudeNotFound, match="SPRINTDECK_CLAUDE=/nowhere/claude"):
        find_claude({"PATH": "", "SPRINTDECK_CLAUDE": "/nowhere/claude"}, root=tmp_path)
