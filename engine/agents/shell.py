"""Shell agents: run a task's `command` in the workspace; the exit status decides.

The command runs in its own process group so that a cancel or a timeout kills everything it
started (a test runner's children included), not just the shell; and that group dies with the
agent's process however it ends (engine/process_tree.py's `CommandGuard`), so no command of a
killed agent goes on writing files for work that has moved elsewhere.  `max_memory_usage` caps each
command's address space (RLIMIT_AS); `max_execution_time` its wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from typing import Any

from engine.agents.base import LocalAgent, Outcome
from engine.process_tree import GUARD
from engine.payloads import TaskAssignPayload
from engine.protocol import MessageType

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
MAX_LINE = 2000


class ShellAgent(LocalAgent):
    enforces_time_limit = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._groups: dict[str, int] = {}  # task -> the process group of its running command

    def kill_now(self, task_ids: list[str]) -> None:
        for task_id in task_ids:
            group = self._groups.pop(task_id, None)
            if group is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)
        super().kill_now(task_ids)

    async def execute(self, assign: TaskAssignPayload) -> Outcome:
        if not assign.command:
            return Outcome(ok=False, error=f"task {assign.task_id} has no command to run", retryable=False)
        process = await self._spawn(assign.command)
        self._groups[assign.task_id] = process.pid
        try:
            return await self._watch(process, assign)
        finally:
            if self._groups.get(assign.task_id) == process.pid:
                del self._groups[assign.task_id]
            GUARD.forget(process.pid)

    async def _spawn(self, command: str) -> asyncio.subprocess.Process:
        """Start `command` in a process group of its own.

        asyncio forks the command at once and connects its pipes over the next loop turns.  A cancel
        landing in between would have asyncio kill only the shell and then wait for pipes its children
        still hold; so the spawn is shielded, and a cancel waits for it and kills the whole group.
        """
        spawning = asyncio.ensure_future(asyncio.create_subprocess_shell(
            command,
            cwd=self.workspace,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=GUARD.preexec(memory_limit=self.spec.max_memory_usage),
        ))
        try:
            return await asyncio.shield(spawning)
        except asyncio.CancelledError:
            with contextlib.suppress(OSError):
                process = await spawning
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
                GUARD.forget(process.pid)
            raise

    async def _watch(self, process: asyncio.subprocess.Process, assign: TaskAssignPayload) -> Outcome:
        """Stream the command's output until it ends, its time runs out or the attempt is cancelled."""
        tail: list[str] = []
        streams = asyncio.gather(
            self._stream(process.stdout, "stdout", assign, tail),
            self._stream(process.stderr, "stderr", assign, tail),
        )
        limit = self.time_limit(assign)
        try:
            await self.report_start(assign)  # inside the try: a cancel here still kills the group
            await asyncio.wait_for(asyncio.shield(streams), timeout=limit)
            code = await process.wait()
        except TimeoutError:
            await _kill_group(process)
            streams.cancel()
            return Outcome(ok=False, error=f"exceeded max_execution_time of {limit:g}s; its process group was killed")
        except asyncio.CancelledError:
            await _kill_group(process)
            streams.cancel()
            raise
        last = tail[-1] if tail else ""
        if code == 0:
            return Outcome(ok=True, result={"exitCode": 0, "lastLine": last})
        return Outcome(ok=False, error=self._exit_reason(code, tail), exit_code=code)

    def _exit_reason(self, code: int, tail: list[str]) -> str:
        """`exit status N: last line`, saying so when the memory cap is what most likely ended it."""
        last = tail[-1] if tail else ""
        reason = f"exit status {code}" + (f": {last}" if last else "")
        cap = self.spec.max_memory_usage
        if cap is not None and any(_OUT_OF_MEMORY.search(line) for line in tail):
            return f"exceeded max_memory_usage of {_size(cap)} (RLIMIT_AS): {reason}"
        return reason

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


_OUT_OF_MEMORY = re.compile(r"MemoryError|[Cc]annot allocate memory|[Oo]ut of memory|std::bad_alloc|memory exhausted")


def _size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"


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
