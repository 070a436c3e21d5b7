"""Ending a process and everything it started, including what left its process group.

Claude Code starts each Bash command in a session of its own, so killing the CLI's process group
leaves those commands running (a test server, a watcher), and once the CLI is gone they are
orphans that no parent link leads to.  So each run is marked with an environment variable its
descendants inherit, and ending the run ends every process that carries the mark (found through
/proc on Linux; elsewhere only the process group is reached).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
from pathlib import Path

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
MARK = "SPRINTDECK_RUN"


def new_mark() -> dict[str, str]:
    """The environment entry that marks one run's processes."""
    return {MARK: secrets.token_hex(8)}


def marked(mark: dict[str, str]) -> list[int]:
    """The processes (of this user) whose environment carries `mark`."""
    needle = f"{MARK}={mark[MARK]}".encode()
    found: list[int] = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile, or another user's
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _signal_all(pids: list[int], group: int | None, sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    if group is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, sig)


async def end_run(process: asyncio.subprocess.Process, mark: dict[str, str]) -> None:
    """SIGTERM the run (its process, its group, every marked process); SIGKILL what is left after
    a grace period.  The process must have been started with `start_new_session=True`."""
    if process.returncode is None:
        _signal_all([process.pid, *marked(mark)], process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), timeout=KILL_GRACE)
        except TimeoutError:
            pass
    _signal_all(marked(mark), process.pid if process.returncode is None else None, signal.SIGKILL)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        await process.wait()
