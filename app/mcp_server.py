"""`sprintdeck mcp`: the stdio MCP server through which a Claude Code session is a sprint agent.

Built on the official `mcp` SDK (2.x), the one module of sprintdeck that imports it: the SDK
speaks the protocol Claude Code expects (framing, handshake, capability negotiation), so this
module only says what the tools are.  Each tool's docstring is what the model reads to decide when
to call it; each answer is a short sentence or a small JSON object; a refusal is an MCP tool error
whose text says what to do instead (app/mcp_actions.py), never a traceback.

Who the agent is comes from the environment (app/mcp_identity.py).  The process holds the agent's
connection to the manager and heartbeats on it for as long as it lives (app/mcp_agent.py); when
Claude Code closes its stdin (the session ended) it tells the manager the agent leaves, so its
locks and work go back at once.  stdout is the MCP stream: logs go to stderr only.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from app import mcp_actions as act
from app.mcp_agent import AgentLink, ToolProblem
from app.mcp_identity import identity_from

log = logging.getLogger(__name__)

TOOL_NAMES = ("whoami", "list_tasks", "claim_task", "acquire_lock", "release_lock", "report_progress",
              "complete_task", "fail_task", "send_message", "read_inbox", "request_assistance")
LEAVING_ON_EOF = "Claude Code closed its MCP server"
LEAVING_ON_SIGTERM = "Claude Code stopped its MCP server"
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports it
INSTRUCTIONS = (
    "sprintdeck coordinates several coding agents working on one repository. Call whoami first: it "
    "says which agent you are, your tasks and how to work with the others (lock files before editing, "
    "complete or fail each task)."
)

TaskId = Annotated[str | None, Field(description="the task id; leave it out when you have exactly one task")]
Paths = Annotated[list[str], Field(description="workspace-relative paths, e.g. ['src/api.py']; a directory covers everything below it")]


async def _answer(work: Awaitable[str | dict[str, Any]]) -> str:
    """The tool's answer as text; a refusal becomes a tool error the model can act on."""
    try:
        result = await work
    except ToolProblem as problem:
        raise ToolError(str(problem)) from None
    except Exception as exc:  # a bug here must not reach the model as a traceback
        log.exception("tool failed")
        raise ToolError(f"sprintdeck mcp hit an internal error ({type(exc).__name__}: {exc}); "
                        "its log on stderr has the details; try again, or carry on without this tool") from None
    return result if isinstance(result, str) else json.dumps(result, indent=1)


def build_server(link: AgentLink) -> MCPServer:
    """The MCP server whose tools act as `link`'s agent."""
    server: MCPServer = MCPServer("sprintdeck", instructions=INSTRUCTIONS, version=_version(), log_level="WARNING")
    tool = server.tool(structured_output=False)

    @tool
    async def whoami() -> str:
        """Who you are in this sprint: your agent id, the sprint, your role and capabilities, the tasks
        assigned to you, the locks you hold, and how to work with the other agents. Call it first."""
        return await _answer(act.whoami(link))

    @tool
    async def list_tasks() -> str:
        """Every task of the sprint with its status, owner, dependencies and what it waits for
        (unfinished dependencies, locks held by others). Tasks marked youCanClaim are ready and yours
        for the asking with claim_task."""
        return await _answer(act.list_tasks(link))

    @tool
    async def claim_task(task_id: Annotated[str, Field(description="the id of a ready task, from list_tasks")]) -> str:
        """Take a ready task you can do. Use it when you have no task (or room for another); the
        answer says why not when the task is taken, not ready, or needs other capabilities."""
        return await _answer(act.claim_task(link, task_id))

    @tool
    async def acquire_lock(
        paths: Paths,
        mode: Annotated[act.Mode, Field(description="write to edit; read to keep others from changing what you read; "
                                                    "exclusive to keep everyone else out")] = "write",
        wait_seconds: Annotated[float, Field(ge=0, description="how long to queue when another agent holds it; "
                                                               "0 answers at once")] = 0,
        task_id: TaskId = None,
    ) -> str:
        """Lock files before you change them, so that no other agent edits them meanwhile. Several
        paths are granted all at once or not at all. When another agent holds one, the answer names
        it and its task: work on other files, queue with wait_seconds, or send_message to it."""
        return await _answer(act.acquire_lock(link, paths, mode, wait_seconds, task_id))

    @tool
    async def release_lock(paths: Paths) -> str:
        """Release locks you no longer need, so other agents can have them. complete_task and
        fail_task release the locks you took for that task by themselves."""
        return await _answer(act.release_lock(link, paths))

    @tool
    async def report_progress(
        message: Annotated[str, Field(description="one line on what you are doing or have done")],
        fraction: Annotated[float | None, Field(description="how much is done, from 0 to 1")] = None,
        task_id: TaskId = None,
    ) -> str:
        """Tell the sprint how your task is going (shown on the operator's dashboard). Call it at
        milestones, not after every edit."""
        return await _answer(act.report_progress(link, message, fraction, task_id))

    @tool
    async def complete_task(
        summary: Annotated[str, Field(description="what you did: files changed, decisions, anything left open")],
        task_id: TaskId = None,
    ) -> str:
        """Report a task done when its work is finished and saved. The manager checks that your locks
        are still valid, records the result, releases the locks you took for the task and starts the
        tasks that were waiting on it."""
        return await _answer(act.complete_task(link, summary, task_id))

    @tool
    async def fail_task(
        error: Annotated[str, Field(description="what went wrong, for whoever retries it")],
        retryable: Annotated[bool, Field(description="false when retrying cannot help")] = True,
        task_id: TaskId = None,
    ) -> str:
        """Give a task up when you cannot finish it. The manager retries it (perhaps with another
        agent) unless retryable is false, and releases the locks you took for it."""
        return await _answer(act.fail_task(link, error, retryable, task_id))

    @tool
    async def send_message(
        to: Annotated[str, Field(description="an agent id, or 'broadcast' for every agent")],
        text: Annotated[str, Field(description="the message")],
        task_id: TaskId = None,
    ) -> str:
        """Send a message to another agent (or all of them): ask a lock holder when it will be done,
        answer a request for help, announce an interface change."""
        return await _answer(act.send_message(link, to, text, task_id))

    @tool
    async def read_inbox() -> str:
        """The messages that arrived since you last looked: from other agents (messages, requests
        for help) and from the manager (new assignments, tasks taken back). Check it between steps."""
        return await _answer(act.read_inbox(link))

    @tool
    async def request_assistance(
        topic: Annotated[str, Field(description="what you need help with, in a few words")],
        details: Annotated[str, Field(description="what you tried and what you need")] = "",
        to: Annotated[str, Field(description="an agent id, or 'broadcast' to ask everyone")] = "broadcast",
        task_id: TaskId = None,
    ) -> str:
        """Ask other agents for help (an interface you depend on, a file they own, a question about
        their work). Their answers arrive in read_inbox."""
        return await _answer(act.request_assistance(link, topic, details, to, task_id))

    return server


# ---------------------------------------------------------------- the command


def main(args: argparse.Namespace) -> int:
    """`sprintdeck mcp`: serve the tools on stdin/stdout until Claude Code closes them."""
    _log_to_stderr(os.environ.get("SPRINTDECK_AGENT_ID", "").strip())
    return asyncio.run(serve_stdio())


async def serve_stdio() -> int:
    """Until stdin closes (the session ended) or SIGTERM; either way the agent leaves in good order."""
    link = AgentLink(identity_from(os.environ))
    server = build_server(link)
    link.start()
    loop = asyncio.get_running_loop()
    goodbye: list[asyncio.Task[None]] = []
    loop.add_signal_handler(signal.SIGTERM, lambda: goodbye.append(loop.create_task(_terminated(link))))
    try:
        await server.run_stdio_async()
        log.info("stdin closed: the Claude Code session ended")
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await link.stop(leaving=LEAVING_ON_EOF)
    return 0


async def _terminated(link: AgentLink) -> None:
    """SIGTERM: leave in good order, then exit at once.  The SDK reads stdin in a worker thread
    blocked in read(), which nothing interrupts; waiting for it would hang until stdin closes."""
    await link.stop(leaving=LEAVING_ON_SIGTERM)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_TERMINATED)


def _version() -> str:
    try:
        return importlib.metadata.version("sprintdeck")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "0"


def _log_to_stderr(agent_id: str) -> None:
    """stdout carries the MCP stream, so every log line goes to stderr (which Claude Code keeps)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"sprintdeck mcp {agent_id or '(no agent)'}: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("mcp").setLevel(logging.WARNING)  # the SDK logs every tool error at INFO
