"""Agents in a process of their own: the shell and simulated agents, run over a `SocketClient`.

The execution code is the embedded agents' own (engine/agents/shell.py and simulated.py); what a
separate process adds is the need to agree with the manager after a connection comes back, since
either side may have lost something while it was down:

* an assignment the manager journaled but never got onto the wire (it crashed first) - the agent
  takes the attempt from the manager's state and runs it;
* an outcome the agent sent that never reached the journal - it is sent again while the manager
  still shows that attempt live (the attempt number fences a duplicate, so nothing completes twice);
* an attempt the manager gave to someone else meanwhile (the agent was declared dead) - the agent
  kills its command before it does anything else (the welcome lists the attempts still its own),
  since its result would be refused and its writes would land under another agent's lock.  An
  agent that finds it was silent for longer than the heartbeat timeout (it was stopped, SIGSTOP)
  knows the manager has declared it dead, and does the same before its next message.

So after every handshake the agent asks for the manager's tasks and locks (`state_request`, at low
priority so that the messages it just re-sent are handled first) and reconciles.  An assignment
that arrives twice (re-sent after a broken write, or adopted and then delivered) runs once.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from engine.agents.base import LocalAgent
from engine.agents.shell import ShellAgent
from engine.agents.simulated import SimulatedAgent
from engine.models import ResourceLock, TaskState
from engine.payloads import LockRef, TaskAssignPayload
from engine.plan import AgentSpec
from engine.plan_specs import read_agent_spec
from engine.protocol import AGENT_DIED, IPCMessage, MANAGER_ID, MessageType, ProtocolError, SPRINT_PAUSED, SPRINT_RESUMED, make_message
from engine.transports.base import TransportError
from engine.transports.client import HandshakeRefused, ServerUnreachable, SocketClient

log = logging.getLogger(__name__)

RECONCILE_TIMEOUT = 30.0  # seconds to wait for the manager's state after a handshake
LIVE = frozenset({"assigned", "running"})  # assigned to its agents (a blocked attempt is not, yet)
#: The manager's news an operator watching this agent's terminal wants to see.
WORTH_A_LINE = frozenset({AGENT_DIED, SPRINT_PAUSED, SPRINT_RESUMED})
DEFAULT_HEARTBEAT = 1.0
DEFAULT_SPEED = 20.0


class RemoteAgentError(ValueError):
    """The agent cannot start with what the server said (e.g. no such workspace here)."""


class RemoteBehaviour(LocalAgent):
    """Put before ShellAgent or SimulatedAgent: dedupes assignments, remembers outcomes, reconciles."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._outcomes: dict[str, tuple[int, MessageType, dict[str, Any]]] = {}  # task -> last outcome
        self._reconciling: asyncio.Task[None] | None = None
        self.silence_limit: float | None = None  # the manager's heartbeat timeout, from the welcome

    # ------------------------------------------------------------ messages

    def handle(self, message: IPCMessage) -> None:
        if message.type in (MessageType.TASK_ASSIGN, MessageType.TASK_CANCEL) and message.from_ != MANAGER_ID:
            log.warning("ignored %s from %s: only the sprint manager assigns work", message.type, message.from_)
            return
        if message.type == MessageType.TASK_ASSIGN and self._has_attempt(message.payload.task_id, message.payload.attempt):
            return
        if message.type == MessageType.BROADCAST_INFO and message.from_ == MANAGER_ID and message.payload.info in WORTH_A_LINE:
            log.info("the manager says: %s %s", message.payload.info, json.dumps(message.payload.data) if message.payload.data else "")
        super().handle(message)

    def _has_attempt(self, task_id: str, attempt: int) -> bool:
        running = self._running.get(task_id)
        outcome = self._outcomes.get(task_id)
        return (running is not None and running[0] == attempt) or (outcome is not None and outcome[0] == attempt)

    async def send(self, kind: MessageType, payload: dict[str, Any], *, priority: str = "medium") -> None:
        self._after_silence()
        if kind in (MessageType.TASK_COMPLETE, MessageType.TASK_FAILED):
            self._outcomes[payload["taskId"]] = (payload["attempt"], MessageType(kind), payload)
        await super().send(kind, payload, priority=priority)

    async def stop(self) -> None:
        if self._reconciling is not None:
            self._reconciling.cancel()
        await super().stop()

    @property
    def finished_tasks(self) -> list[str]:
        """The tasks this process sent an outcome for (completed or failed), in order."""
        return list(self._outcomes)

    # ------------------------------------------------------------ reconciling

    def _after_silence(self) -> None:
        """Silent past the heartbeat timeout (stopped): every attempt here was taken away, so their
        commands die before anything is said; the reconcile takes up any the manager still had."""
        now = asyncio.get_running_loop().time()
        if self.silence_limit is None or not self._running or not self.last_beat:
            return
        if now - self.last_beat > self.silence_limit:
            log.info("silent for %.1fs (more than the heartbeat timeout): stopping %s", now - self.last_beat,
                     ", ".join(sorted(self._running)))
            self.last_beat = now
            self.kill_now(list(self._running))
            self.schedule_reconcile()

    def stop_superseded(self, assignments: list[dict[str, Any]]) -> None:
        """Kill the commands of attempts the manager no longer gives this agent (it was declared dead)."""
        live = {(item.get("taskId"), item.get("attempt")) for item in assignments}
        gone = [task_id for task_id, (attempt, _) in self._running.items() if (task_id, attempt) not in live]
        if gone:
            log.info("declared dead meanwhile: stopping %s", ", ".join(sorted(gone)))
            self.kill_now(gone)

    def schedule_reconcile(self, reconnected: bool = False) -> None:
        """After a handshake: agree with the manager (a newer handshake supersedes an older one)."""
        if reconnected and isinstance(self.transport, SocketClient):
            self.stop_superseded(list(self.transport.welcome.get("assignments") or []))
        if self._reconciling is not None:
            self._reconciling.cancel()
        self._reconciling = asyncio.get_running_loop().create_task(self.reconcile(), name=f"agent-{self.id}-reconcile")

    async def reconcile(self) -> None:
        """Ask the manager for its tasks and locks, then adopt, re-send or stop attempts to match."""
        request = make_message(
            MessageType.STATE_REQUEST, self.id, MANAGER_ID, {"sections": ["tasks", "locks"]}, priority="low"
        )
        try:
            reply = await self.transport.request(request, timeout=RECONCILE_TIMEOUT)
        except (TransportError, ProtocolError) as exc:
            log.warning("could not compare notes with the manager: %s", exc)
            return
        if reply.type != MessageType.STATE_SYNC:
            log.warning("the manager answered the state request with %s: %s", reply.type, reply.payload)
            return
        state = reply.payload.state
        locks = [ResourceLock.model_validate(raw) for raw in state.get("locks", {}).values()]
        for raw in state.get("tasks", {}).values():
            await self._agree_on(TaskState.model_validate(raw), locks)

    async def _agree_on(self, task: TaskState, locks: list[ResourceLock]) -> None:
        live_here = self.id in task.owners and task.status in LIVE
        running = self._running.get(task.id)
        if running is not None and (task.attempt > running[0] or (task.attempt == running[0] and not live_here)):
            log.info("stopping %s attempt %d: the manager has moved on", task.id, running[0])
            running[1].cancel()
            return
        if not live_here:
            return
        outcome = self._outcomes.get(task.id)
        if outcome is not None and outcome[0] == task.attempt:
            log.info("sending the outcome of %s attempt %d again", task.id, task.attempt)
            await self.send(outcome[1], outcome[2])
        elif running is None or running[0] != task.attempt:
            log.info("taking up %s attempt %d, assigned while the connection was down", task.id, task.attempt)
            self.handle(make_message(MessageType.TASK_ASSIGN, MANAGER_ID, self.id, self._assignment(task, locks)))

    def _assignment(self, task: TaskState, locks: list[ResourceLock]) -> TaskAssignPayload:
        """The task_assign payload the manager sent (or would have), rebuilt from its state."""
        return TaskAssignPayload(
            task_id=task.id,
            attempt=task.attempt,
            title=task.title,
            command=task.command,
            estimate=task.estimate,
            agents=list(task.agents) if task.coordination == "collaborative" else [self.id],
            locks=[
                LockRef(resource_id=lock.resource_id, lock_type=lock.lock_type, lock_id=lock.lock_id, token=lock.token)
                for lock in locks
                if lock.task_id == task.id
            ],
            max_execution_time=self.spec.max_execution_time,
        )


class RemoteShellAgent(RemoteBehaviour, ShellAgent):
    """Runs each assignment's command in its workspace, like the embedded shell agent."""


class RemoteSimulatedAgent(RemoteBehaviour, SimulatedAgent):
    """Simulates each assignment, deterministically for the sprint's seed, like the embedded one."""


EXIT_OK, EXIT_GAVE_UP, EXIT_BAD_INPUT, EXIT_TERMINATED = 0, 1, 2, 143  # an agent process's exit codes


async def until_the_sprint_ends(prefix: str, work: Awaitable[list[str] | None]) -> int:
    """An agent process's life and its exit code (`sprintdeck agent` and a library agent's `main`):
    SIGTERM stops it cleanly, and each way of ending says so in one stderr line."""
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    if current is not None:
        loop.add_signal_handler(signal.SIGTERM, current.cancel)
    try:
        finished = await work
    except (HandshakeRefused, RemoteAgentError) as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ServerUnreachable as exc:
        print(f"{prefix}: giving up: {exc}", file=sys.stderr)
        return EXIT_GAVE_UP
    except asyncio.CancelledError:
        print(f"{prefix}: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    done = "" if finished is None else f"; tasks finished here: {', '.join(finished) or 'none'}"
    print(f"{prefix}: the sprint has finished{done}", file=sys.stderr)
    return EXIT_OK


def whole_lines_on_stderr() -> None:
    """Make each line an agent process prints to stderr one write.

    Python's stderr writes through: `print` hands the text and its newline to the OS separately,
    so agents sharing one terminal (`serve --spawn`) interleave their lines mid-line.
    """
    if isinstance(sys.stderr, io.TextIOWrapper):
        sys.stderr.reconfigure(write_through=False, line_buffering=True)


def build_agent(client: SocketClient, welcome: dict[str, Any], *, simulate: bool, workspace: Path | None) -> RemoteBehaviour:
    """The agent the welcome describes (its plan entry, heartbeat interval, seed, workspace)."""
    spec = _spec(client.agent_id, welcome)
    where = workspace or (Path(welcome["workspace"]) if welcome.get("workspace") else None)
    if where is None:
        raise RemoteAgentError("the server did not name a workspace; pass --workspace DIR")
    if not where.is_dir():
        raise RemoteAgentError(f"workspace {where} does not exist here; pass --workspace DIR")
    interval = float(welcome.get("heartbeatInterval") or DEFAULT_HEARTBEAT)
    agent: RemoteBehaviour
    if simulate:
        agent = RemoteSimulatedAgent(
            spec,
            client,
            workspace=where,
            heartbeat_interval=interval,
            seed=int(welcome.get("seed") or 0),
            speed=float(welcome.get("speed") or DEFAULT_SPEED),
        )
    else:
        agent = RemoteShellAgent(spec, client, workspace=where, heartbeat_interval=interval)
    timeout = welcome.get("heartbeatTimeout")
    agent.silence_limit = float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else None
    return agent


def _spec(agent_id: str, welcome: dict[str, Any]) -> AgentSpec:
    raw = welcome.get("agent")
    if isinstance(raw, dict):
        try:
            return read_agent_spec(raw)
        except ValueError as exc:
            log.warning("the server's description of %s is unusable (%s); using defaults", agent_id, exc)
    return AgentSpec(id=agent_id, kind="external")


async def serve_agent(
    client: SocketClient, *, simulate: bool, workspace: Path | None,
    build: Callable[[SocketClient, dict[str, Any]], RemoteBehaviour] | None = None,
) -> RemoteBehaviour | None:
    """Connect, run assignments until the server says the sprint is over, then stop.

    `build` makes the agent from the welcome instead of `build_agent` (the client library's
    agents, engine/agents/client.py).  Raises `HandshakeRefused`, `ServerUnreachable` or
    `RemoteAgentError`; returns the agent (None when the sprint was already over at the first
    connection).
    """
    welcome = await client.connect()
    if client.finished:
        return None
    if build is not None:
        agent = build(client, welcome)
    else:
        agent = build_agent(client, welcome, simulate=simulate, workspace=workspace)
    client.events.connected = _chain(client.events.connected, agent.schedule_reconcile)
    agent.start()
    agent.schedule_reconcile()
    try:
        await client.run()
    finally:
        await agent.stop()
        await client.close()
    return agent


def _chain(first: Any, then: Any) -> Any:
    def both(reconnected: bool) -> None:
        first(reconnected)
        then(reconnected)

    return both
