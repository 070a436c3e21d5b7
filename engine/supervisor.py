"""Agents kept alive: a crashed agent is recorded dead and started again (the seed's "restart
agent if possible"), with exponential back-off, up to `settings.max_agent_restarts` per agent.

Two kinds of agent are supervised the same way:

* embedded agents (`LocalSupervisor`): an agent whose own loop dies of an error is dead at once
  (its attempts are requeued; it ran in this process, so nothing of it outlives it), then started
  again;
* the plan's external agents under `serve --spawn` (`ProcessSupervisor`): each is a
  `sprintdeck agent` process; one that exits before the sprint is over is reported to the manager
  as gone (its work moves on after `disconnect_grace`) and started again.

Every restart is journaled as `agent_restarted` (agent, count, how the last run ended, back-off).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
from collections.abc import Callable, Sequence

from engine.agents.base import LocalAgent
from engine.events import AgentRestarted, EventBody

log = logging.getLogger(__name__)

RESTART_BASE = 0.25  # seconds before the first restart; doubled for each one after
RESTART_CAP = 8.0
STOP_GRACE = 3.0  # seconds a spawned agent gets to end by itself at the end, and again after SIGTERM
EXIT_BAD_INPUT = 2  # `sprintdeck agent` refused (bad token, no workspace): starting it again cannot help
EXIT_FINISHED = 0


class Restarts:
    """How many times each agent has been restarted, and the back-off before the next time."""

    def __init__(self, emit: Callable[[EventBody], object], limit: int, finished: Callable[[], bool]) -> None:
        self._emit = emit
        self.limit = limit
        self._finished = finished
        self.count: dict[str, int] = {}

    def next_delay(self, agent_id: str) -> float | None:
        """The back-off before restarting `agent_id`, or None when the limit is reached or the sprint is over."""
        done = self.count.get(agent_id, 0)
        if self._finished() or done >= self.limit:
            if done >= self.limit:
                log.warning("agent %s is not restarted again: it has been restarted %d times", agent_id, done)
            return None
        return min(RESTART_CAP, RESTART_BASE * 2.0**done)

    def record(self, agent_id: str, reason: str, delay: float, pid: int | None = None) -> None:
        self.count[agent_id] = self.count.get(agent_id, 0) + 1
        restart = AgentRestarted(agent_id=agent_id, restart=self.count[agent_id], reason=reason, delay=delay)
        if pid is not None:
            restart.pid = pid
        self._emit(restart)


class LocalSupervisor:
    """Restarts embedded agents whose loop crashed; `died(agent id, reason)` records the death."""

    def __init__(self, restarts: Restarts, died: Callable[[str, str], None]) -> None:
        self._restarts = restarts
        self._died = died
        self._pending: set[asyncio.Task[None]] = set()

    def watch(self, agents: Sequence[LocalAgent]) -> None:
        for agent in agents:
            agent.on_crash = self._crashed

    def _crashed(self, agent: LocalAgent, reason: str) -> None:
        self._died(agent.id, reason)
        delay = self._restarts.next_delay(agent.id)
        if delay is None:
            return
        task = asyncio.get_running_loop().create_task(self._restart(agent, reason, delay))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _restart(self, agent: LocalAgent, reason: str, delay: float) -> None:
        await agent.stop()
        await asyncio.sleep(delay)
        if self._restarts.next_delay(agent.id) is None:
            return
        self._restarts.record(agent.id, reason, delay)
        agent.restart()

    async def stop(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)


class ProcessSupervisor:
    """`serve --spawn`: one `sprintdeck agent` process per external agent, restarted when it dies.

    `command(agent id)` is the process's argv; `exited(agent id, pid)` tells the manager a process
    is gone (it need not wait for the socket, e.g. over TCP).
    """

    def __init__(self, agent_ids: Sequence[str], command: Callable[[str], list[str]], restarts: Restarts,
                 exited: Callable[[str, int], None]) -> None:
        self._agent_ids = list(agent_ids)
        self._command = command
        self._restarts = restarts
        self._exited = exited
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for agent_id in self._agent_ids:
            await self._spawn(agent_id)
            self._tasks.append(asyncio.get_running_loop().create_task(self._keep(agent_id), name=f"spawn-{agent_id}"))

    async def _spawn(self, agent_id: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(*self._command(agent_id), stdin=subprocess.DEVNULL,
                                                       stdout=subprocess.DEVNULL)
        self.processes[agent_id] = process
        return process

    async def _keep(self, agent_id: str) -> None:
        while True:
            process = self.processes[agent_id]
            code = await process.wait()
            if code in (EXIT_FINISHED, EXIT_BAD_INPUT):
                return
            reason = _ended(code)
            self._exited(agent_id, process.pid)
            delay = self._restarts.next_delay(agent_id)
            if delay is None:
                return
            await asyncio.sleep(delay)
            if self._restarts.next_delay(agent_id) is None:
                return
            process = await self._spawn(agent_id)
            self._restarts.record(agent_id, reason, delay, pid=process.pid)

    async def stop(self) -> None:
        """The sprint is over: agents that have not ended by themselves are asked to, then killed."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        running = [p for p in self.processes.values() if p.returncode is None]
        with contextlib.suppress(TimeoutError):  # told the sprint is over, they end by themselves
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), timeout=STOP_GRACE)
        running = [p for p in running if p.returncode is None]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                await asyncio.wait_for(process.wait(), timeout=STOP_GRACE)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


def _ended(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"
