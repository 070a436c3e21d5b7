"""Claude Code agents (`kind: claude`): one headless `claude -p` run per assigned task.

The run gets the task (title, description, the files locked for it) as its prompt and the agent's
`role` as its appended system prompt, and is wired to the sprint like any Claude Code instance:
the sprintdeck hooks through `--settings` (so its edits take the sprint's locks), the MCP server
through `--mcp-config`, and its identity in the environment (engine/claude_wiring.py).  The run's
JSON result decides the attempt and says what it cost; a run killed from outside is the agent
dying, which the manager records as such (locks held back, the task run again).

`SPRINTDECK_CLAUDE` names the binary (default: `claude` on PATH).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from engine.agents.base import LocalAgent, Outcome
from engine.claude_wiring import allowed_tools, mcp_document, settings_document, sprintdeck_executable
from engine.payloads import TaskAssignPayload
from engine.plan import AgentSpec
from engine.process_tree import end_run, new_mark
from engine.transports.base import Transport

CLAUDE_ENV = "SPRINTDECK_CLAUDE"
VERDICT_ENV = "SPRINTDECK_VERDICT_FILE"  # where the run's complete_task/fail_task (MCP) leave their verdict
SUMMARY_LIMIT = 2000  # characters of the run's final answer kept as the task's result
STDERR_LIMIT = 500


class ClaudeAgent(LocalAgent):
    enforces_time_limit = True  # it stops `claude -p` and says so itself

    def __init__(self, spec: AgentSpec, transport: Transport, *, workspace: Path, heartbeat_interval: float,
                 sprint: str) -> None:
        super().__init__(spec, transport, workspace=workspace, heartbeat_interval=heartbeat_interval)
        self.sprint = sprint
        self._wiring: Path | None = None  # a directory with the run's --settings and --mcp-config files

    async def stop(self) -> None:
        await super().stop()
        if self._wiring is not None:
            shutil.rmtree(self._wiring, ignore_errors=True)
            self._wiring = None

    async def execute(self, assign: TaskAssignPayload) -> Outcome:
        try:
            command, env = self._run(assign)
        except CannotRun as exc:
            return Outcome(ok=False, error=str(exc), retryable=False)
        mark = new_mark()
        process = await asyncio.create_subprocess_exec(
            *command, cwd=self.workspace, env={**env, **mark}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
        limit = assign.max_execution_time or self.spec.max_execution_time
        reading = asyncio.create_task(process.communicate())
        try:
            await self.report_start(assign)
            await asyncio.wait_for(process.wait(), timeout=limit)
        except (TimeoutError, asyncio.CancelledError) as stopped:
            await end_run(process, mark)
            reading.cancel()
            if isinstance(stopped, asyncio.CancelledError):
                raise
            return Outcome(ok=False, error=f"claude ran past max_execution_time of {limit:g}s and was stopped")
        # What its Bash commands left running holds the output pipes open: end it, then read to the end.
        await end_run(process, mark)
        out, err = await reading
        outcome = run_outcome(process.pid, process.returncode, out, err, assign.task_id)
        return with_verdict(outcome, _take_verdict(Path(env[VERDICT_ENV])))

    # ------------------------------------------------------------ the command

    def _run(self, assign: TaskAssignPayload) -> tuple[list[str], dict[str, str]]:
        joining = self.transport.joining(self.id)
        if joining is None:
            raise CannotRun("a claude agent needs the manager to listen on a socket for its hook and MCP server")
        binary = os.environ.get(CLAUDE_ENV) or shutil.which("claude")
        if not binary:
            raise CannotRun(f"cannot find the claude command: install Claude Code (npm install "
                            f"@anthropic-ai/claude-code) or set {CLAUDE_ENV}")
        executable = sprintdeck_executable()
        if executable is None:
            raise CannotRun("cannot find the sprintdeck command for the hooks; install sprintdeck in this environment")
        settings, mcp = self._wiring_files(executable)
        address, token = joining
        env = {key: value for key, value in os.environ.items() if not key.startswith("SPRINTDECK_TOKEN")}
        env.update({
            "SPRINTDECK_AGENT_ID": self.id, "SPRINTDECK_CONNECT": address, "SPRINTDECK_TOKEN": token,
            "SPRINTDECK_TASK_ID": assign.task_id, "SPRINTDECK_ATTEMPT": str(assign.attempt),
            "SPRINTDECK_CHANNEL": "requests",  # the agent's own inbox is this process's
            VERDICT_ENV: str(self._wiring_dir() / f"verdict-{assign.task_id}-{assign.attempt}.json"),
        })
        Path(env[VERDICT_ENV]).unlink(missing_ok=True)
        env.setdefault("ENABLE_TOOL_SEARCH", "false")  # the sprint's tools listed, not deferred
        return self.command(binary, assign, settings, mcp), env

    def command(self, binary: str, assign: TaskAssignPayload, settings: Path, mcp: Path) -> list[str]:
        spec = self.spec
        command = [binary, "-p", self.prompt(assign), "--output-format", "json",
                   "--append-system-prompt", spec.role or "", "--settings", str(settings),
                   "--mcp-config", str(mcp), "--allowedTools", " ".join(allowed_tools(spec.allowed_tools))]
        if spec.model:
            command += ["--model", spec.model]
        if spec.max_turns:
            command += ["--max-turns", str(spec.max_turns)]
        return command

    def prompt(self, assign: TaskAssignPayload) -> str:
        lines = [f"Sprint {self.sprint}: you are agent {self.id}. "
                 f"Your task is {assign.task_id} (attempt {assign.attempt}): {assign.title}"]
        if assign.description:
            lines += ["", assign.description.strip()]
        if assign.locks:
            held = ", ".join(f"{lock.resource_id} ({lock.lock_type})" for lock in assign.locks)
            lines += ["", f"Locked for this task: {held}."]
        lines += ["", "Work in this repository (the current directory), on this task only. Every edit takes a "
                  "sprintdeck write lock on its file: if an edit is denied, do what the reason says instead of "
                  "retrying at once. When you are done, answer with a short summary of what you changed; that "
                  "answer completes the task (call fail_task from the sprintdeck tools if it cannot be done)."]
        return "\n".join(lines)

    def _wiring_dir(self) -> Path:
        if self._wiring is None:
            self._wiring = Path(tempfile.mkdtemp(prefix=f"sprintdeck-{self.id}-"))
        return self._wiring

    def _wiring_files(self, executable: str) -> tuple[Path, Path]:
        settings, mcp = self._wiring_dir() / "settings.json", self._wiring_dir() / "mcp.json"
        settings.write_text(json.dumps(settings_document(executable), indent=2))
        mcp.write_text(json.dumps(mcp_document(executable), indent=2))
        return settings, mcp


class CannotRun(Exception):
    """This machine cannot start the run (no claude, no socket): the attempt fails for good."""


# ---------------------------------------------------------------- the run's result


def run_outcome(pid: int, code: int | None, out: bytes, err: bytes, task_id: str) -> Outcome:
    """What one run's exit and JSON result mean for its attempt."""
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        return Outcome(ok=False, agent_died=f"its claude process {pid} was killed ({name}) during task {task_id}")
    result = _result(out)
    stderr = err.decode(errors="replace").strip()[-STDERR_LIMIT:]
    if result is None:
        return Outcome(ok=False, error=f"claude exited {code} without a result" + (f": {stderr}" if stderr else ""),
                       exit_code=code)
    usage = run_usage(result)
    answer = str(result.get("result") or "")[:SUMMARY_LIMIT]
    if code == 0 and not result.get("is_error"):
        summary = {"summary": answer, "sessionId": result.get("session_id"), "turns": result.get("num_turns")}
        return Outcome(ok=True, result=summary, usage=usage)
    why = answer or str(result.get("subtype") or "an error")
    return Outcome(ok=False, error=f"claude ended with {why} (exit {code})", usage=usage, exit_code=code)


def _take_verdict(path: Path) -> dict[str, Any] | None:
    try:
        verdict = json.loads(path.read_text())
        path.unlink()
    except (OSError, ValueError):
        return None
    return verdict if isinstance(verdict, dict) else None


def with_verdict(outcome: Outcome, verdict: dict[str, Any] | None) -> Outcome:
    """The model's own complete_task/fail_task decides over the run's exit (it may have run out of
    turns after finishing, say); a run that died stays the agent dying."""
    if verdict is None or outcome.agent_died is not None:
        return outcome
    if verdict.get("outcome") == "failed":
        return Outcome(ok=False, error=str(verdict.get("error") or "failed"), retryable=bool(verdict.get("retryable", True)),
                       usage=outcome.usage)
    result = outcome.result if isinstance(outcome.result, dict) else {}
    return Outcome(ok=True, result={**result, "summary": str(verdict.get("summary") or "")[:SUMMARY_LIMIT]},
                   usage=outcome.usage)


def run_usage(result: dict[str, Any]) -> dict[str, Any]:
    """Cost and tokens of a run; input counts every input token, cached or not (all were read)."""
    usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
    assert isinstance(usage, dict)
    read = sum(int(usage.get(key) or 0) for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    return {"costUsd": float(result.get("total_cost_usd") or 0.0), "inputTokens": read,
            "outputTokens": int(usage.get("output_tokens") or 0)}


def _result(out: bytes) -> dict[str, Any] | None:
    """The JSON result `--output-format json` prints (the last JSON object on stdout)."""
    for line in reversed(out.decode(errors="replace").strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None
