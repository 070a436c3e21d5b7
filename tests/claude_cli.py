"""Run the real Claude Code CLI in tests, headless, against a `FakeModel` (tests/fake_model.py).

    with FakeModel(script) as model:
        run = run_claude(project, model, allowed_tools=["Read", "Edit"])
    assert run.exit_code == 0 and not run.json["is_error"]

Each run gets its own HOME and CLAUDE_CONFIG_DIR (a fresh temporary directory unless the test
passes `home`), so the developer's own `~/.claude` settings, hooks, MCP servers and sessions can
neither steer a test nor be written to by one; the project's `.claude/settings.json` in the run's
directory still applies, as it does for a user. Variables that steer the CLI or name a sprint
agent (`ANTHROPIC_*`, `CLAUDE*`, `SPRINTDECK_*`) are dropped from the inherited environment;
a test passes the ones it means in `env`.

The CLI is found by `find_claude`. A missing CLI fails the test with how to install it: the tests
that use it are the proof that Claude Code agents really work, so they are never skipped.

Standard library only (and pytest, to fail a test).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fake_model import FakeModel

ROOT = Path(__file__).resolve().parents[1]
LOCAL_CLAUDE = Path(".cache/npm/node_modules/.bin/claude")
INSTALL_HINT = ("install it with `npm install --prefix .cache/npm @anthropic-ai/claude-code` in the "
                "repository, or run `.ci/run`, which does that")
DEFAULT_TOOLS = ("Read", "Write", "Edit", "Bash")
DEFAULT_TIMEOUT = 60.0
# Inherited variables that would change what the CLI does, or who a sprint agent thinks it is.
DROPPED_PREFIXES = ("ANTHROPIC_", "CLAUDE", "SPRINTDECK_")


class ClaudeNotFound(Exception):
    """No Claude Code CLI where the tests look for one."""


class ClaudeTimedOut(AssertionError):
    """A run outlived its timeout; the message carries what the CLI printed so far."""


def find_claude(environ: Mapping[str, str] = os.environ, root: Path = ROOT) -> str:
    """The CLI to run: `SPRINTDECK_CLAUDE` (a path or a command name), else the repository's own
    `.cache/npm` install (the one `.ci/run` makes), else `claude` on PATH."""
    override = environ.get("SPRINTDECK_CLAUDE")
    if override:
        found = shutil.which(override, path=environ.get("PATH"))
        if found is None:
            raise ClaudeNotFound(f"SPRINTDECK_CLAUDE={override} names no executable file: point "
                                 f"it at a `claude` binary, or unset it and {INSTALL_HINT}")
        return found
    local = root / LOCAL_CLAUDE
    if os.access(local, os.X_OK):
        return str(local)
    found = shutil.which("claude", path=environ.get("PATH"))
    if found is None:
        raise ClaudeNotFound(f"the Claude Code CLI is not installed (looked at SPRINTDECK_CLAUDE, "
                             f"{local}, `claude` on PATH): {INSTALL_HINT}")
    return found


def claude_binary() -> str:
    """`find_claude`, failing the calling test (never skipping it) when there is no CLI."""
    try:
        return find_claude()
    except ClaudeNotFound as missing:
        pytest.fail(str(missing), pytrace=False)


def claude_env(model: FakeModel, home: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The run's environment: ours without the steering variables, the fake model's address,
    the run's own HOME and config directory, then the test's `env` over all of that. A test
    whose sprint manager starts `claude` itself gives the manager this environment (and
    SPRINTDECK_CLAUDE=claude_binary()), so each CLI it starts talks to `model`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(DROPPED_PREFIXES)}
    no_proxy = ",".join(filter(None, [inherited.get("NO_PROXY"), "127.0.0.1", "localhost"]))
    return {
        **inherited,
        "NO_PROXY": no_proxy,  # a CI machine's HTTP proxy must not sit between CLI and model
        "no_proxy": no_proxy,
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        **model.env(),
        **(env or {}),
    }


def claude_command(prompt: str, allowed_tools: Sequence[str] = DEFAULT_TOOLS,
                   args: Sequence[str] = ()) -> list[str]:
    """`claude -p PROMPT --output-format json`, allowed to use `allowed_tools` without asking
    (running as root, the CLI refuses `--dangerously-skip-permissions`)."""
    command = [claude_binary(), "-p", prompt, "--output-format", "json"]
    if allowed_tools:
        command += ["--allowedTools", " ".join(allowed_tools)]
    return command + list(args)


@dataclass
class ClaudeRun:
    """How one `claude -p` run ended."""

    command: list[str]
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def json(self) -> dict[str, Any]:
        """The CLI's JSON result (`is_error`, `result`, `session_id`, `num_turns`,
        `total_cost_usd`, `usage`, `permission_denials`, ...); fails loudly when there is none."""
        try:
            parsed = json.loads(self.stdout)
        except json.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise AssertionError(f"claude printed no JSON result (exit {self.exit_code})\n"
                                 f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}")
        return parsed


class ClaudeProcess:
    """A `claude -p` started by `start_claude`: `finish` it, or `kill` it first to play a crash."""

    def __init__(self, process: asyncio.subprocess.Process, command: list[str],
                 scratch: tempfile.TemporaryDirectory[str] | None) -> None:
        self.process = process
        self.command = command
        self._scratch = scratch
        self._started = time.monotonic()
        self._orphans: list[int] = []  # what a `kill` left running, for `finish` to remove

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the CLI alone, as a crash would. Its MCP servers see their stdin close and
        must notice on their own; its Bash commands run on. `finish` removes whatever is still
        left, so check what a crash leaves before calling it."""
        if self.process.returncode is None:
            self._orphans = _descendants(self.pid)
            self.process.kill()

    async def finish(self, timeout: float = DEFAULT_TIMEOUT) -> ClaudeRun:
        """Wait for the run to end (killing it past `timeout`), then clean up whatever it left
        running and its scratch HOME."""
        try:
            out, err = await asyncio.wait_for(self.process.communicate(), timeout)
        except TimeoutError:
            _kill_tree(self.pid)
            out, err = await self.process.communicate()
            raise ClaudeTimedOut(_timeout_message(self.command, timeout, out, err)) from None
        finally:
            _kill(self._orphans)
            _kill_group(self.pid)
            if self._scratch is not None:
                self._scratch.cleanup()
        assert self.process.returncode is not None  # communicate() returns once it has exited
        return ClaudeRun(self.command, self.process.returncode, out.decode(), err.decode(),
                         time.monotonic() - self._started)


async def start_claude(workdir: Path, model: FakeModel, prompt: str = "Do the task.", *,
                       allowed_tools: Sequence[str] = DEFAULT_TOOLS, args: Sequence[str] = (),
                       env: Mapping[str, str] | None = None,
                       home: Path | None = None) -> ClaudeProcess:
    """Start `claude -p` in `workdir` against `model` without waiting for it (see `run_claude`)."""
    command = claude_command(prompt, allowed_tools, args)
    scratch, home = _home(home)
    process = await asyncio.create_subprocess_exec(
        *command, cwd=workdir, env=claude_env(model, home, env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    return ClaudeProcess(process, command, scratch)


async def run_claude_async(workdir: Path, model: FakeModel, prompt: str = "Do the task.", *,
                           timeout: float = DEFAULT_TIMEOUT, **options: Any) -> ClaudeRun:
    """`run_claude` for asyncio tests, so several CLIs (and a server) can run at once."""
    process = await start_claude(workdir, model, prompt, **options)
    return await process.finish(timeout)


def run_claude(workdir: Path, model: FakeModel, prompt: str = "Do the task.", *,
               allowed_tools: Sequence[str] = DEFAULT_TOOLS, args: Sequence[str] = (),
               env: Mapping[str, str] | None = None, home: Path | None = None,
               timeout: float = DEFAULT_TIMEOUT) -> ClaudeRun:
    """Run `claude -p PROMPT` in `workdir` against `model` to the end and return how it ended.

    `allowed_tools` run without asking; `args` are appended (e.g. `--mcp-config FILE`); `env`
    is added last; `home` keeps the run's HOME (config, transcripts) for the test to read."""
    command = claude_command(prompt, allowed_tools, args)
    scratch, home = _home(home)
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=workdir, env=claude_env(model, home, env),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_tree(process.pid)
        out, err = process.communicate()
        raise ClaudeTimedOut(_timeout_message(command, timeout, out, err)) from None
    finally:
        _kill_group(process.pid)
        if scratch is not None:
            scratch.cleanup()
    return ClaudeRun(command, process.returncode, out.decode(), err.decode(),
                     time.monotonic() - started)


def _home(home: Path | None) -> tuple[tempfile.TemporaryDirectory[str] | None, Path]:
    """The run's HOME: the test's, or a scratch directory removed when the run ends."""
    scratch = None
    if home is None:
        scratch = tempfile.TemporaryDirectory(prefix="claude-home-")
        home = Path(scratch.name)
    (home / ".claude").mkdir(parents=True, exist_ok=True)
    return scratch, home


def _kill_tree(pid: int) -> None:
    """SIGKILL a CLI that overran and everything it started."""
    _kill([pid, *_descendants(pid)])
    _kill_group(pid)


def _kill_group(pid: int) -> None:
    """SIGKILL whatever is left of the run's process group (its MCP servers, its hooks)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _kill(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, through /proc (Linux; elsewhere none). The CLI starts each
    Bash command in a session of its own, so its process group does not reach them, and even
    SIGTERM leaves them running."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def _timeout_message(command: list[str], timeout: float, out: bytes, err: bytes) -> str:
    return (f"claude did not finish within {timeout:g} s: {' '.join(command[:3])} ...\n"
            f"stdout: {out.decode()[-2000:]}\nstderr: {err.decode()[-2000:]}")
