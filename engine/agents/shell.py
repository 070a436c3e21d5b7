"""Shell agents: run a task's `command` in the workspace; the exit status decides.

The command runs in its own process group so that a cancel or a timeout kills everything it
started (a test runner's children included), not just the shell.
"""

from __future__ import annotations

import asyncio
import os
import signal

from engine.agents.base import LocalAgent, Outcome
from engine.payloads import TaskAssignPayload
from engine.protocol import MessageType

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
MAX_LINE = 2000


class ShellAgent(LocalAgent):
    async def execute(self, assign: TaskAssignPayload) -> Outcome:
        if not assign.command:
            return Outcome(ok=False, error=f"task {assign.task_id} has no command to run", retryable=False)
        process = await asyncio.create_subprocess_shell(
            assign.command,
            cwd=self.workspace,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        tail: list[str] = []
        streams = asyncio.gather(
            self._stream(process.stdout, "stdout", assign, tail),
            self._stream(process.stderr, "stderr", assign, tail),
        )
        limit = assign.max_execution_time or self.spec.max_execution_time
        try:
            await self.report_start(assign)  # inside the try: a cancel here still kills the group
            await asyncio.wait_for(asyncio.shield(streams), timeout=limit)
            code = await process.wait()
        except TimeoutError:
            await _kill_group(process)
            streams.cancel()
            return Outcome(ok=False, error=f"exceeded max_execution_time of {limit:g}s; process group killed")
        except asyncio.CancelledError:
            await _kill_group(process)
            streams.cancel()
            raise
        last = tail[-1] if tail else ""
        if code == 0:
            return Outcome(ok=True, result={"exitCode": 0, "lastLine": last})
        return Outcome(ok=False, error=f"exit status {code}" + (f": {last}" if last else ""))

    async def _stream(
        self, reader: asyncio.StreamReader | None, name: str, assign: TaskAssignPayload, tail: list[str]
    ) -> None:
        if reader is None:
            return
        while line := await reader.readline():
            text = line.decode(errors="replace").rstrip("\n")[:MAX_LINE]
            tail[:] = (tail + [text])[-5:]
            await self.send(
                MessageType.TASK_UPDATE,
                {"taskId": assign.task_id, "attempt": assign.attempt, "message": text, "stream": name},
            )


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after a grace period."""
    if process.returncode is not None:
        return
    try:
        pgid = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, KILL_GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        if wait is None:
            break
        try:
            await asyncio.wait_for(process.wait(), timeout=wait)
            return
        except TimeoutError:
            continue
    await process.wait()
