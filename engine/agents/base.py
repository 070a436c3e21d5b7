"""LocalAgent: an agent that runs in the manager's process but talks only through the transport.

It goes through exactly the protocol an external agent uses (agent_ready, heartbeat, task_update,
task_complete/task_failed carrying its attempt and lock tokens), so the in-process run exercises
the same manager paths as a distributed one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.plan import AgentSpec
from engine.payloads import TaskAssignPayload
from engine.protocol import IPCMessage, MANAGER_ID, MessageType, ProtocolError, make_message, reply_to
from engine.transports.base import Transport, TransportError

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    ok: bool
    result: str | dict[str, Any] | None = None
    error: str = ""
    retryable: bool = True
    usage: dict[str, Any] | None = None  # what a language-model run spent (the seed's costUsd, tokens)
    agent_died: str | None = None  # why the agent itself is gone (its Claude Code process was killed)
    exit_code: int | None = None  # the command's exit status, when one ran (kept on the attempt)


class LocalAgent:
    def __init__(
        self, spec: AgentSpec, transport: Transport, *, workspace: Path, heartbeat_interval: float
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.transport = transport
        self.workspace = workspace
        self.heartbeat_interval = heartbeat_interval
        self.inbox = transport.subscribe(spec.id)
        self._running: dict[str, tuple[int, asyncio.Task[None]]] = {}  # task -> (attempt, execution)
        self.notes: dict[str, str] = {}  # task -> how its last attempt here ended: what it can tell a peer
        self._loops: list[asyncio.Task[None]] = []
        self.alive = False
        self.last_beat = 0.0  # the loop time of the last heartbeat sent
        #: Told (agent, how it ended) when the agent's own loop dies of an error: a crash, which a
        #: supervisor answers by recording the death and starting the agent again (engine/supervisor.py).
        self.on_crash: Callable[[LocalAgent, str], None] | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.alive = True
        self._loops = [
            loop.create_task(self._serve(), name=f"agent-{self.id}"),
            loop.create_task(self._heartbeat(), name=f"agent-{self.id}-heartbeat"),
        ]
        for task in self._loops:
            task.add_done_callback(self._loop_ended)
        loop.create_task(self.send(MessageType.AGENT_READY, self._announcement()))

    def restart(self) -> None:
        """Start again after `stop` (a supervisor's restart): a fresh inbox, a fresh agent_ready."""
        self.inbox = self.transport.subscribe(self.id)
        self.start()

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None or not self.alive:
            return
        error = task.exception()
        if isinstance(error, TransportError):  # its transport closed (the sprint is over): no crash
            return
        log.error("agent %s crashed: %r", self.id, error)
        self.alive = False  # silent from now on, as a dead process is
        if self.on_crash is not None:
            self.on_crash(self, f"crashed: {error!r}")

    def _announcement(self) -> dict[str, Any]:
        return {
            "capabilities": self.spec.capabilities,
            "specializations": self.spec.specializations,
            "maxConcurrentTasks": self.spec.max_concurrent_tasks,
        }

    async def stop(self) -> None:
        """Stop serving; running executions are cancelled (shell processes are killed)."""
        self.alive = False
        tasks = self._loops + [execution for _, execution in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
        self.transport.unsubscribe(self.id)

    async def crash(self) -> None:
        """Stop without a word, as a killed process would: no more heartbeats or replies."""
        await self.stop()

    # ------------------------------------------------------------ messages

    async def send(self, kind: MessageType, payload: dict[str, Any], *, priority: str = "medium") -> None:
        if not self.alive:
            return
        try:
            await self.transport.send(make_message(kind, self.id, MANAGER_ID, payload, priority=priority))
        except (TransportError, ProtocolError) as exc:
            log.warning("agent %s could not send %s: %s", self.id, kind, exc)

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.send(MessageType.HEARTBEAT, {"tasks": sorted(self._running), "load": len(self._running)})
            self.last_beat = loop.time()
            await asyncio.sleep(self.heartbeat_interval)

    def kill_now(self, task_ids: list[str]) -> None:
        """Stop these attempts at once and without a word (they were superseded: an outcome would
        be refused).  A shell agent kills their process groups before this returns."""
        for task_id in task_ids:
            running = self._running.pop(task_id, None)
            if running is not None:
                running[1].cancel()

    async def _serve(self) -> None:
        while True:
            message = await self.inbox.get()
            self.handle(message)

    def handle(self, message: IPCMessage) -> None:
        if message.type == MessageType.TASK_ASSIGN:
            assign: TaskAssignPayload = message.payload
            execution = asyncio.get_running_loop().create_task(self._run_task(assign))
            self._running[assign.task_id] = (assign.attempt, execution)
        elif message.type == MessageType.TASK_CANCEL:
            running = self._running.get(message.payload.task_id)
            if running is not None and running[0] == message.payload.attempt:
                running[1].cancel()
        elif message.type == MessageType.REQUEST_ASSISTANCE:
            asyncio.get_running_loop().create_task(self._help(message))

    async def _help(self, request: IPCMessage) -> None:
        """Asked for help (the manager forwards a peer's request): what this agent knows of the
        task or topic, from the attempts it ran; `helped: false` when it knows nothing of it."""
        payload = request.payload
        note = self.notes.get(payload.task_id or payload.topic)
        details = note or f"{self.id} has run nothing for {payload.task_id or payload.topic!r}"
        answer = {"topic": payload.topic, "taskId": payload.task_id, "details": details, "helped": note is not None}
        try:
            await self.transport.send(reply_to(request, MessageType.PROVIDE_ASSISTANCE, answer, sender=self.id))
        except (TransportError, ProtocolError) as exc:
            log.warning("agent %s could not answer a request for help: %s", self.id, exc)

    #: Whether `execute` stops itself at `time_limit` (a shell agent kills its process group and
    #: says so); otherwise `_run_task` cancels it there.
    enforces_time_limit = False

    def time_limit(self, assign: TaskAssignPayload) -> float | None:
        """The attempt's max_execution_time in seconds (the assignment's, else the agent's), or None."""
        return assign.max_execution_time or self.spec.max_execution_time

    async def _execute_in_time(self, assign: TaskAssignPayload) -> Outcome:
        limit = self.time_limit(assign)
        if limit is None or self.enforces_time_limit:
            return await self.execute(assign)
        try:
            return await asyncio.wait_for(self.execute(assign), timeout=limit)
        except TimeoutError:
            return Outcome(ok=False, error=f"exceeded max_execution_time of {limit:g}s and was stopped")

    async def _run_task(self, assign: TaskAssignPayload) -> None:
        base = {"taskId": assign.task_id, "attempt": assign.attempt}
        try:
            outcome = await self._execute_in_time(assign)
        except asyncio.CancelledError:
            return
        except Exception as exc:  # an agent bug fails the attempt instead of hanging it
            log.exception("agent %s crashed on %s", self.id, assign.task_id)
            outcome = Outcome(ok=False, error=f"agent error: {exc!r}")
        finally:
            current = self._running.get(assign.task_id)
            if current is not None and current[0] == assign.attempt:
                del self._running[assign.task_id]
        if outcome.agent_died is not None:
            await self._died(outcome.agent_died)
            return
        self.notes[assign.task_id] = _note(assign, outcome)
        if outcome.usage is not None:
            base["usage"] = outcome.usage
        if outcome.ok:
            # The assignment's LockRef models go back as they are: pydantic keeps a model instance
            # it is handed, where a dump would be validated into a new one.
            locks = list(assign.locks)
            await self.send(MessageType.TASK_COMPLETE, {**base, "result": outcome.result, "locks": locks})
        else:
            failed = {**base, "error": outcome.error, "retryable": outcome.retryable}
            if outcome.exit_code is not None:
                failed["exitCode"] = outcome.exit_code
            await self.send(MessageType.TASK_FAILED, failed)

    async def _died(self, reason: str) -> None:
        """What stood for the agent is gone: the manager records its death (its locks held back,
        its work requeued), then the agent is back, as a supervisor restarts a process."""
        for _, execution in list(self._running.values()):
            execution.cancel()
        await self.send(MessageType.AGENT_LEAVE, {"reason": reason, "crashed": True}, priority="critical")
        await self.send(MessageType.AGENT_READY, self._announcement(), priority="critical")

    async def execute(self, assign: TaskAssignPayload) -> Outcome:
        raise NotImplementedError

    async def report_start(self, assign: TaskAssignPayload) -> None:
        """Tell the manager the attempt is under way, which moves the task from assigned to running.

        Each kind of agent calls it where its work really begins (a shell agent once its command
        is spawned).  An attempt that ends at once does not: its completion alone starts and ends
        it, as it does for any agent that never reports a start, and a start message arriving with
        its completion would only be one more message to build, deliver and journal per task.
        """
        started = {"taskId": assign.task_id, "attempt": assign.attempt, "progress": 0.0}
        await self.send(MessageType.TASK_UPDATE, started)


def _note(assign: TaskAssignPayload, outcome: Outcome) -> str:
    """One line on how an attempt ended, for a peer that asks for help with the task."""
    if not outcome.ok:
        return f"task {assign.task_id} attempt {assign.attempt} failed: {outcome.error}"
    result = outcome.result
    last = result.get("lastLine") if isinstance(result, dict) else result
    return f"task {assign.task_id} attempt {assign.attempt} completed" + (f"; its last output: {last}" if last else "")
