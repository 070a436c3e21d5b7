"""README "Use with Claude Code", command by command: two real Claude Code CLIs on one repository.

The section's shell block is read from README.md and run as written, with `$SPRINT` in a temporary
directory: the copy, `init-claude` (whose printed start commands must be the README's), `serve`,
and each agent's `claude` line - run headless (`-p`, the MCP server passed with `--mcp-config`)
against a scripted model, since a test cannot type into an interactive session.  The backend's
edit of its file lands; the frontend's edit of that file is denied naming the backend and its task;
both complete their tasks through the MCP server and the sprint ends.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from claude_cli import claude_binary, claude_env
from conftest import ROOT
from fake_model import FakeModel, Request, ToolCall
from test_serve import GUARD, records_of, run_dir, wait_for  # noqa: F401 (run_dir is a fixture)

TOOLS = "Read Edit mcp__sprintdeck"


def readme_block(title: str) -> list[str]:
    """The first ```sh block under `## title`, as commands (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"no sh block under {title}"
    joined = block.group(1).replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def bash(command: str, env: dict[str, str], **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=GUARD, **options)


def wait_then(model_of: dict[str, FakeModel], other: str, tool: str, blocks: list[Any]) -> Any:
    """A turn played once `other`'s model has the result of its `tool` call."""
    def turn(request: Request) -> list[Any]:
        wait_for(lambda: bool(model_of[other].results(tool)), f"{other}'s {tool}")
        return blocks
    return turn


def scripts(repo: Path, model_of: dict[str, FakeModel]) -> dict[str, list[Any]]:
    greet, cli = str(repo / "src" / "greet.py"), str(repo / "src" / "cli.py")
    done = "mcp__sprintdeck__complete_task"
    return {
        "backend": [
            [ToolCall("Read", {"file_path": greet})],
            [ToolCall("Edit", {"file_path": greet, "old_string": '"Hi " + name', "new_string": 'f"Hello, {name}!"'})],
            wait_then(model_of, "frontend", "Edit", [ToolCall(done, {"summary": "greet says hello"})]),
            ["greet() says hello."],
        ],
        "frontend": [
            wait_then(model_of, "backend", "Edit", [ToolCall("Read", {"file_path": greet})]),
            [ToolCall("Edit", {"file_path": greet, "old_string": "Hello", "new_string": "Hey"})],  # backend's file
            wait_then(model_of, "backend", done, [ToolCall("Read", {"file_path": cli})]),
            [ToolCall("Edit", {"file_path": cli, "old_string": "print(greet(sys.argv[1]))",
                               "new_string": "print(greet(sys.argv[1] if len(sys.argv) > 1 else 'world'))"})],
            [ToolCall(done, {"summary": "the command line greets the world by default"})],
            ["Done."],
        ],
    }


async def run_agents(lines: dict[str, str], env: dict[str, str]) -> dict[str, subprocess.CompletedProcess[bytes]]:
    async def one(agent: str) -> subprocess.CompletedProcess[bytes]:
        headless = f" -p {shlex.quote('Do your task.')} --output-format json --mcp-config .mcp.json --allowedTools {shlex.quote(TOOLS)}"
        process = await asyncio.create_subprocess_exec("bash", "-c", lines[agent] + headless, cwd=ROOT, env=env[agent],
                                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 2 * GUARD)
        return subprocess.CompletedProcess(lines[agent], process.returncode or 0, out, err)

    results = await asyncio.gather(*(one(agent) for agent in lines))
    return dict(zip(lines, results, strict=True))


def test_the_readme_runs_two_claude_code_sessions_on_one_repository(run_dir: Path, tmp_path: Path) -> None:
    copy, init, serve, *agent_lines = readme_block("Use with Claude Code")[1:]  # [0] exports SPRINT: set here
    env = {**os.environ, "SPRINT": str(run_dir), "PATH": f"{Path(claude_binary()).parent}:{os.environ['PATH']}"}
    repo = run_dir / "repo"

    assert bash(copy, env).returncode == 0
    printed = bash(init, env)
    assert printed.returncode == 0, printed.stderr
    lines = {re.search(r"SPRINTDECK_AGENT_ID=(\w+)", line).group(1): line for line in agent_lines}  # type: ignore[union-attr]
    expanded = {agent: line.replace("$SPRINT", str(run_dir)) for agent, line in lines.items()}
    for agent, line in expanded.items():  # init-claude printed the README's command for each agent
        assert line.removeprefix(f"cd {repo} && ") in printed.stdout + printed.stderr, (line, printed.stderr)

    server = subprocess.Popen(["bash", "-c", serve], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (run_dir / "sock" / "deck.sock").exists() and (run_dir / "tokens.json").exists(),
                 "serve listening", server)
        model_of: dict[str, FakeModel] = {}
        for agent, script in scripts(repo, model_of).items():
            model_of[agent] = FakeModel(script).start()
        homes = {agent: tmp_path / agent for agent in lines}
        agent_env = {agent: {**claude_env(model_of[agent], homes[agent], {"SPRINT": str(run_dir)}),
                             "PATH": env["PATH"]} for agent in lines}
        for home in homes.values():
            (home / ".claude").mkdir(parents=True)
        runs = asyncio.run(run_agents(lines, agent_env))
        out, err = server.communicate(timeout=GUARD)
    finally:
        for model in model_of.values():
            model.stop()
        if server.poll() is None:
            server.kill()
    for agent, run in runs.items():
        assert run.returncode == 0, (agent, run.stderr.decode()[-2000:])
    assert server.returncode == 0, err.decode()[-2000:]

    backend_edit, = model_of["backend"].results("Edit")
    assert not backend_edit.is_error
    denied, frontend_edit = model_of["frontend"].results("Edit")
    assert denied.is_error and "locked for writing by agent backend for task library" in denied.content
    assert not frontend_edit.is_error
    assert (repo / "src" / "greet.py").read_text() == 'def greet(name):\n    return f"Hello, {name}!"\n'
    assert "else 'world'" in (repo / "src" / "cli.py").read_text()
    journal = run_dir / "journal.jsonl"
    assert sorted(c["taskId"] for c in records_of(journal, "task_completed")) == ["command", "library"]
    sessions = {s["agentId"] for s in records_of(journal, "agent_session")}
    assert sessions == {"backend", "frontend"}
