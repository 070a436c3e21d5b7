"""The client library for agents written in Python: the seed's Agent base class, over a socket.

Subclass `Agent`, write `execute_task`, and run it; everything else is the library's:

    class Builder(Agent):
        async def execute_task(self, task: Task) -> TaskResult:
            async with self.lock("CHANGES.md", "write", task=task) as lock:
                ...                                   # the file is yours until the block ends
            return TaskResult(result="built")

    if __name__ == "__main__":
        raise SystemExit(Builder.main())          # --connect ADDR --id ID --token-file F

`run` connects (the `unix:`/`tcp:` addresses `sprintdeck agent --connect` takes), binds with the
agent's token (`--token-file`, `SPRINTDECK_TOKEN` or `SPRINTDECK_TOKEN_FILE`, as `sprintdeck
agent`), heartbeats in the background, hands each assignment to `execute_task` and sends its
outcome: a returned `TaskResult` (or None) completes the task, `TaskResult(success=False)` or a
raised exception fails it (`TaskFailed(retryable=False)` says a retry cannot help).  It reconnects
when the connection drops and agrees with the manager afterwards, so an assignment runs once.

That machinery is the one `sprintdeck agent` runs on (engine/agents/remote.py: the connection is
a `SocketClient`, the assignments are `LocalAgent`'s); this module is its public face: the seed's
`execute_task`, `send_message` and `request_resource_lock`, and the rest of what an agent does
(release, progress, file reports, asking for and giving help).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from engine.agents.base import Outcome
from engine.agents.client_values import (
    AgentRequestError, Assistance, AssistanceRequest, Lock, LockRefused, Task, TaskFailed, TaskResult,
)
from engine.agents.remote import (
    EXIT_BAD_INPUT,
    RemoteAgentError,
    RemoteBehaviour,
    serve_agent,
    until_the_sprint_ends,
    whole_lines_on_stderr,
)
from engine.file_index import checksum_bytes
from engine.payloads import LockType, Priority, TaskAssignPayload
from engine.plan import AgentSpec
from engine.plan_specs import read_agent_spec
from engine.protocol import MANAGER_ID, IPCMessage, MessageType, make_message, reply_to
from engine.transports.address import AddressError, parse_address
from engine.transports.base import ResponseTimeout, TransportError
from engine.transports.client import ClientEvents, SocketClient
from engine.transports.tokens import TokenError, token_source

__all__ = ["Agent", "AgentRequestError", "Assistance", "AssistanceRequest", "IPCMessage", "Lock", "LockRefused",
           "MANAGER_ID", "MessageType", "Task", "TaskFailed", "TaskResult"]
log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 30.0  # seconds for the manager's answer to a lock, unlock or state request
DEFAULT_HEARTBEAT = 1.0


class Agent(ABC):
    """The seed's Agent base class for an agent in a process of its own (see the module docstring).

    Override `execute_task`; optionally `provide_assistance` (answer another agent's request for
    help) and `on_message` (everything else addressed to this agent: broadcasts, state pushes).
    """

    def __init__(
        self,
        agent_id: str,
        *,
        connect: str,
        token: str | None = None,
        token_file: str | Path | None = None,
        capabilities: Sequence[str] = (),
        specializations: Sequence[str] = (),
        workspace: str | Path | None = None,
        give_up_after: float | None = 300.0,
    ) -> None:
        """Raises `ValueError` (an `AddressError` or `TokenError`) for an unusable address or token."""
        self.agent_id = agent_id
        self._address = parse_address(connect)
        self._token = (lambda: token) if token else token_source(agent_id, str(token_file) if token_file else None)
        self._config: dict[str, Any] = {"agentId": agent_id}
        if capabilities:
            self._config["capabilities"] = list(capabilities)
        if specializations:
            self._config["specializations"] = list(specializations)
        self._workspace = Path(workspace).resolve() if workspace is not None else None
        self._give_up_after = give_up_after
        self._client: SocketClient | None = None
        self._runner: _Runner | None = None

    # ------------------------------------------------------------ what a subclass writes

    @abstractmethod
    async def execute_task(self, task: Task) -> TaskResult | None:
        """Do the task; return its result (None: done, nothing to say) or raise to fail it."""

    async def provide_assistance(self, request: AssistanceRequest) -> str | None:
        """An answer to another agent's request for help, or None to leave it to others."""
        return None

    async def on_message(self, message: IPCMessage) -> None:
        """Any other message addressed to this agent (broadcasts, state pushes, late replies).

        By default a refusal of something sent without waiting for its answer (a file report, a
        progress update) is logged, so that it is never lost silently; the rest is ignored.
        """
        if message.type == MessageType.AGENT_ERROR:
            where = f"{message.payload.field}: " if message.payload.field else ""
            log.warning("%s refused a message: %s%s", message.from_, where, message.payload.error)

    # ------------------------------------------------------------ running

    @property
    def workspace(self) -> Path:
        """Where the sprint's files are (the server's workspace, or `workspace=` given here)."""
        if self._runner is None:
            raise RuntimeError("the agent is not connected yet: the workspace comes with the server's welcome")
        return self._runner.workspace

    async def run(self) -> list[str]:
        """Connect, serve assignments until the sprint ends, then return the tasks finished here.

        Raises `HandshakeRefused` (a wrong token or id), `ServerUnreachable` (no server for
        `give_up_after` seconds) or `RemoteAgentError` (the workspace does not exist here).
        """
        client = SocketClient(self._address, self.agent_id, token=self._token, give_up_after=self._give_up_after,
                              events=_events(str(self._address)))
        self._client = client
        await client.send(make_message(MessageType.AGENT_READY, self.agent_id, MANAGER_ID, self._config))
        try:
            runner = await serve_agent(client, simulate=False, workspace=self._workspace, build=self._build)
        finally:
            await client.close()
        return [] if runner is None else runner.finished_tasks

    def _build(self, client: SocketClient, welcome: dict[str, Any]) -> RemoteBehaviour:
        where = self._workspace or (Path(welcome["workspace"]) if welcome.get("workspace") else None)
        if where is None or not where.is_dir():
            raise RemoteAgentError(f"workspace {where or '(none named)'} does not exist here; pass workspace=DIR")
        spec = _spec(self.agent_id, welcome)
        interval = float(welcome.get("heartbeatInterval") or DEFAULT_HEARTBEAT)
        self._runner = _Runner(self, spec, client, workspace=where, heartbeat_interval=interval)
        return self._runner

    @classmethod
    def main(cls, argv: Sequence[str] | None = None) -> int:
        """Run as a command: `--connect ADDR --id ID [--token-file F] [--workspace DIR]`, the options
        of `sprintdeck agent`; exit 0 when the sprint ends, 1 after giving up, 2 on bad input."""
        args = _parser(cls.__name__).parse_args(argv)
        whole_lines_on_stderr()
        logging.basicConfig(level=logging.INFO, format=f"{args.id}: %(message)s", stream=sys.stderr)
        try:
            agent = cls(args.id, connect=args.connect, token_file=args.token_file, workspace=args.workspace,
                        give_up_after=args.give_up_after or None)
        except (AddressError, TokenError) as exc:
            print(f"{args.id}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        return asyncio.run(_main(agent))

    # ------------------------------------------------------------ the seed's messages

    async def send_message(
        self,
        type: MessageType | str,
        payload: dict[str, Any],
        *,
        to: str = MANAGER_ID,
        priority: Priority = "medium",
        requires_response: bool = False,
        response_timeout: float | None = None,
    ) -> IPCMessage | None:
        """Send a message in this agent's name (the seed's sendMessage: `from` and `timestamp` are
        filled in); with `requires_response`, wait for its one reply (`ResponseTimeout` after
        `response_timeout` seconds) and return it."""
        message = make_message(type, self.agent_id, to, payload, priority=priority)
        client = self._connected()
        if requires_response:
            return await client.request(message, timeout=response_timeout or REQUEST_TIMEOUT)
        await client.send(message)
        return None

    async def request_resource_lock(
        self, resource_id: str, lock_type: LockType = "write", *, task: Task | None = None,
        wait: float | None = None, ttl: float | None = None,
    ) -> Lock:
        """Ask for a lock (the seed's requestResourceLock); the answer is true when granted.

        `wait` seconds: queue behind the holders that long instead of being refused at once.
        `task`: the lock belongs to that attempt and goes with it when it ends.  `ttl` seconds:
        the lease (heartbeats renew it).  A malformed request raises `AgentRequestError`.
        """
        payload: dict[str, Any] = {"resourceId": resource_id, "lockType": lock_type}
        if task is not None:
            payload["taskId"] = task.id
        if wait:
            payload["waitMs"] = int(wait * 1000)
        if ttl:
            payload["ttl"] = int(ttl * 1000)
        reply = await self._ask(MessageType.RESOURCE_LOCK, payload, (wait or 0) + REQUEST_TIMEOUT, priority="high")
        answer = reply.payload
        if reply.type == MessageType.RESOURCE_LOCK:
            expires = answer.expires_at.isoformat() if answer.expires_at else None
            return Lock(answer.resource_id, answer.lock_type, True, answer.lock_id, answer.token, expires)
        return Lock(resource_id, lock_type, False, holder=answer.holder, holder_mode=answer.holder_mode,
                    holder_task=answer.holder_task, reason=answer.reason or f"held by {answer.holder}")

    async def release_resource_lock(self, lock: Lock) -> None:
        """Give a granted lock back (the seed's RESOURCE_UNLOCK); the path is free at once."""
        if not lock.granted:
            raise ValueError(f"the {lock.lock_type} lock on {lock.resource_id} was never granted")
        await self._ask(MessageType.RESOURCE_UNLOCK, {"resourceId": lock.resource_id, "lockId": lock.lock_id})

    @asynccontextmanager
    async def lock(self, resource_id: str, lock_type: LockType = "write", *, task: Task | None = None,
                   wait: float | None = 30.0) -> AsyncIterator[Lock]:
        """Hold a lock for the block (released after it, unless it is the task's own); `LockRefused`
        when it cannot be had within `wait` seconds."""
        held = await self.request_resource_lock(resource_id, lock_type, task=task, wait=wait)
        if not held:
            raise LockRefused(held)
        owned_by_task = task is not None and any(own.lock_id == held.lock_id for own in task.locks)
        try:
            yield held
        finally:
            if not owned_by_task:  # the task's own lock fences its completion: it stays until the end
                await self.release_resource_lock(held)

    async def report_progress(self, task: Task, progress: float | None = None, message: str | None = None) -> None:
        """How far the attempt is (0.0-1.0) and what it does now; the dashboard shows it."""
        payload: dict[str, Any] = {"taskId": task.id, "attempt": task.attempt}
        if progress is not None:
            payload["progress"] = progress
        if message is not None:
            payload["message"] = message
        await self.send_message(MessageType.TASK_UPDATE, payload)

    async def report_file(self, path: str, lock: Lock, task: Task | None = None) -> None:
        """Tell the manager the new content of `path` (its checksum, now), fenced by the write lock
        it was written under: the watcher then credits the change to this agent."""
        checksum = checksum_bytes((self.workspace / path).read_bytes())
        payload: dict[str, Any] = {"path": path, "checksum": checksum, "lockId": lock.lock_id, "token": lock.token}
        if task is not None:
            payload |= {"taskId": task.id, "attempt": task.attempt}
        await self.send_message(MessageType.STATE_UPDATE, payload, priority="high")

    async def report_busy(self, reason: str, task: Task | None = None) -> None:
        """The agent waits (for a person, say): no new work comes until it acts again."""
        payload = {"reason": reason} | ({"taskId": task.id} if task is not None else {})
        await self.send_message(MessageType.AGENT_BUSY, payload)

    async def request_assistance(
        self, topic: str, details: str = "", *, task: Task | None = None, to: str = MANAGER_ID, timeout: float = 30.0,
    ) -> Assistance:
        """Ask for help: the manager finds a capable agent (or ask one by id with `to`); the first
        answer within `timeout` seconds comes back, or `answered=False` saying why there is none."""
        payload = {"topic": topic, "details": details} | ({"taskId": task.id} if task is not None else {})
        try:
            reply = await self._ask(MessageType.REQUEST_ASSISTANCE, payload, timeout, to=to)
        except ResponseTimeout:
            return Assistance(False, None, topic, f"nobody answered within {timeout:g}s")
        except AgentRequestError as exc:
            return Assistance(False, None, topic, str(exc))
        if reply.type != MessageType.PROVIDE_ASSISTANCE:
            return Assistance(False, reply.from_, topic, f"{reply.type}: {reply.payload}")
        # Relayed by the manager, the answer names its helper, and says when nobody could help.
        answer = reply.payload
        return Assistance(answer.helped is not False, answer.agent_id or reply.from_, answer.topic or topic, answer.details)

    async def state(self, *sections: str) -> dict[str, Any]:
        """The manager's ProjectState now (`state_request`), or only the named sections
        (`files`, `tasks`, `agents`, `locks`)."""
        reply = await self._ask(MessageType.STATE_REQUEST, {"sections": list(sections)}, priority="low")
        state: dict[str, Any] = reply.payload.state
        return state

    # ------------------------------------------------------------ internals

    def _connected(self) -> SocketClient:
        if self._client is None:
            raise RuntimeError("the agent is not running: call run() (or main()) first")
        return self._client

    async def _ask(self, kind: MessageType, payload: dict[str, Any], timeout: float = REQUEST_TIMEOUT, *,
                   to: str = MANAGER_ID, priority: Priority = "medium") -> IPCMessage:
        reply = await self.send_message(kind, payload, to=to, priority=priority, requires_response=True,
                                        response_timeout=timeout)
        assert reply is not None  # a request always has its reply (or raised)
        if reply.type == MessageType.AGENT_ERROR:
            where = f"{reply.payload.field}: " if reply.payload.field else ""
            raise AgentRequestError(f"{kind} refused: {where}{reply.payload.error}")
        return reply

    async def _run_assignment(self, assign: TaskAssignPayload) -> Outcome:
        """One attempt: `execute_task` within the time limit, its result or exception as the outcome."""
        task = Task.of(assign)
        try:
            async with asyncio.timeout(task.max_execution_time) as limit:
                result = await self.execute_task(task)
        except TaskFailed as exc:
            return Outcome(ok=False, error=str(exc), retryable=exc.retryable)
        except TimeoutError as exc:
            if limit.expired():
                return Outcome(ok=False, error=f"exceeded max_execution_time of {task.max_execution_time:g}s")
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # the agent's own bug fails the attempt, with what went wrong
            log.exception("%s failed", task.id)
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
        if result is None:
            return Outcome(ok=True)
        return Outcome(ok=result.success, result=result.result, error=result.error or "failed",
                       retryable=result.retryable)

    async def _incoming(self, message: IPCMessage) -> None:
        if message.type != MessageType.REQUEST_ASSISTANCE:
            await self.on_message(message)
            return
        payload = message.payload
        asked = AssistanceRequest(payload.requester or message.from_, payload.topic, payload.details, payload.task_id, message)
        answer = await self.provide_assistance(asked)
        if answer is not None:
            data = {"topic": payload.topic, "details": answer} | ({"taskId": payload.task_id} if payload.task_id else {})
            await self._connected().send(reply_to(message, MessageType.PROVIDE_ASSISTANCE, data, sender=self.agent_id))


class _Runner(RemoteBehaviour):
    """The assignment machinery of `sprintdeck agent`, doing the work through the `Agent`'s methods."""

    def __init__(self, owner: Agent, spec: AgentSpec, client: SocketClient, *, workspace: Path,
                 heartbeat_interval: float) -> None:
        super().__init__(spec, client, workspace=workspace, heartbeat_interval=heartbeat_interval)
        self.owner = owner
        self._chores: set[asyncio.Task[None]] = set()

    async def execute(self, assign: TaskAssignPayload) -> Outcome:
        await self.report_start(assign)
        return await self.owner._run_assignment(assign)

    def handle(self, message: IPCMessage) -> None:
        if message.type in (MessageType.TASK_ASSIGN, MessageType.TASK_CANCEL):
            super().handle(message)
            return
        chore = asyncio.get_running_loop().create_task(self._safely(message))
        self._chores.add(chore)
        chore.add_done_callback(self._chores.discard)

    async def _safely(self, message: IPCMessage) -> None:
        try:
            await self.owner._incoming(message)
        except (TransportError, RuntimeError, ValueError) as exc:
            log.warning("could not handle %s from %s: %s", message.type, message.from_, exc)
        except Exception:
            log.exception("handling %s from %s failed", message.type, message.from_)

    async def stop(self) -> None:
        for chore in list(self._chores):
            chore.cancel()
        await super().stop()


def _spec(agent_id: str, welcome: dict[str, Any]) -> AgentSpec:
    """The agent's plan entry, as the server's welcome describes it."""
    raw = welcome.get("agent")
    try:
        return read_agent_spec(raw)
    except ValueError:  # no entry, or one this version cannot read: the defaults do
        return AgentSpec(id=agent_id, kind="external")


def _events(address: str) -> ClientEvents:
    """Status lines through logging: one per connection and loss (not one per retry)."""
    return ClientEvents(
        connected=lambda again: log.info("%s to %s", "reconnected" if again else "connected", address),
        lost=lambda reason: log.info("connection lost (%s); reconnecting", reason),
        retrying=lambda error, delay: log.debug("waiting for the server at %s (%s)", address, error),
    )


def _parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=name, description="One external agent of a sprint `sprintdeck serve` runs.")
    parser.add_argument("--connect", required=True, metavar="ADDR", help="unix:PATH or tcp:HOST:PORT, as serve printed")
    parser.add_argument("--id", required=True, help="the agent id in the plan")
    parser.add_argument("--token-file", metavar="F", help="the token file serve wrote (or set SPRINTDECK_TOKEN[_FILE])")
    parser.add_argument("--workspace", metavar="DIR", help="the sprint's files (default: the server's workspace)")
    parser.add_argument("--give-up-after", type=float, default=300.0, metavar="SECONDS",
                        help="stop when no server answers for this long (default 300; 0 never)")
    return parser


async def _main(agent: Agent) -> int:
    """`Agent.main`'s loop: the same endings and exit codes as `sprintdeck agent`."""
    return await until_the_sprint_ends(agent.agent_id, agent.run())
