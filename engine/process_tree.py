"""Ending a process and everything it started, including what left its process group.

Claude Code starts each Bash command in a session of its own, so killing the CLI's process group
leaves those commands running (a test server, a watcher), and once the CLI is gone they are
orphans that no parent link leads to.  So each run is marked with an environment variable its
descendants inherit, and ending the run ends every process that carries the mark (found through
/proc on Linux; elsewhere only the process group is reached).

`CommandGuard` is the other half: a command whose agent is killed (kill -9 included) dies with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable
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


# ---------------------------------------------------------------- commands that die with their agent

#: The watchdog's whole program.  It reads "+PGID"/"-PGID" lines from a pipe whose write end only
#: the agent holds; the pipe reaches EOF when the agent is gone however it went (kill -9 included,
#: since the kernel closes a dead process's descriptors), and then every group still registered is
#: killed.  Standard library only, and started once per agent process.
_WATCHDOG = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
fd, groups, rest = int(sys.argv[1]), set(), b""
while chunk := os.read(fd, 4096):
    *lines, rest = (rest + chunk).split(b"\\n")
    for line in lines:
        if line[:1] == b"+":
            groups.add(int(line[1:]))
        elif line[:1] == b"-":
            groups.discard(int(line[1:]))
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""
PR_SET_PDEATHSIG = 1


class CommandGuard:
    """Makes every command this process starts die with it, grandchildren included.

    A command runs in a process group of its own (so a cancel kills all it started).  That group
    would outlive a killed agent, re-parented to PID 1: so the child registers its group with a
    watchdog process before it execs the command, and the watchdog kills the group when the agent's
    end of their pipe closes.  The shell itself also gets a parent-death signal (PR_SET_PDEATHSIG),
    which ends it even before the watchdog acts.  Elsewhere than Linux only the group is used.
    """

    def __init__(self) -> None:
        self._write_fd: int | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._libc: ctypes.CDLL | None = None
        self._pid = os.getpid()

    def _start(self) -> int:
        if self._write_fd is not None and self._pid == os.getpid():
            if self._watchdog is None or self._watchdog.poll() is None:
                return self._write_fd
            os.close(self._write_fd)  # the watchdog was killed: start another
        read_fd, write_fd = os.pipe()
        self._watchdog = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(read_fd)],
            pass_fds=(read_fd,), stdin=subprocess.DEVNULL, start_new_session=True,
        )
        os.close(read_fd)
        self._write_fd, self._pid = write_fd, os.getpid()
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError):
                self._libc = ctypes.CDLL(None, use_errno=True)
        return write_fd

    def preexec(self, *, memory_limit: int | None = None) -> Callable[[], None]:
        """The `preexec_fn` of a command's child (started with `start_new_session=True`): it
        registers its group, asks for a parent-death signal, and caps its address space."""
        write_fd = self._start()
        libc, parent = self._libc, os.getpid()

        def in_child() -> None:
            if libc is not None:
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
                if os.getppid() != parent:  # the agent died before the signal was armed
                    os._exit(137)
            with contextlib.suppress(OSError):  # no watchdog: the group and the signal still hold
                os.write(write_fd, b"+%d\n" % os.getpid())
            if memory_limit is not None:
                resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

        return in_child

    def forget(self, pgid: int) -> None:
        """The group's command has ended: no need to kill it later (its id may be reused)."""
        if self._write_fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                os.write(self._write_fd, b"-%d\n" % pgid)


GUARD = CommandGuard()
