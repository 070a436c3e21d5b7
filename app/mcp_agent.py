"""The agent side of `sprintdeck mcp`: one connection to the manager, and what the agent knows.

A Claude Code session is an external agent of the sprint.  Its MCP server process holds the
agent's main connection (a `SocketClient` on the `agent` channel) for as long as the process lives,
and heartbeats on it, so a session that is closed or killed stops heartbeating and the manager
declares the agent dead (its locks released, its work requeued), as for any agent.

What the model asks through the tools is answered from what this module keeps:
- the assignments the manager sent (`task_assign`, `task_cancel`), agreed with the manager's own
  state after every handshake, since either side may have missed something while disconnected;
- the locks granted to the agent, as granted: a completion carries them as its fencing, so a lock
  that lapsed meanwhile makes the manager refuse the completion instead of accepting stale work;
- the messages other agents sent (`read_inbox`), in a bounded buffer.

Messages from the manager arrive in the client's inbox; every tool call first folds what waits
there (`catch_up`), so an answer never misses an assignment that arrived before it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.mcp_identity import Identity, Unidentified
from engine.models import ResourceLock, TaskState
from engine.payloads import TaskAssignPayload
from engine.protocol import MANAGER_ID, IPCMessage, MessageType, ProtocolError, make_message
from engine.transports.base import Inbox, ResponseTimeout, TransportClosed, TransportError
from engine.transports.client import ClientEvents, HandshakeRefused, SocketClient

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT = 1.0  # seconds, when the welcome names no interval
REQUEST_TIMEOUT = 15.0  # seconds a tool waits for the manager's answer
INBOX_LIMIT = 200  # messages kept for read_inbox (the oldest go first)
REFUSALS_KEPT = 256  # refusals of fire-and-forget messages remembered for the barrier that follows them
#: What the manager tells everyone (welcome, sprint finished, claims): not mail for read_inbox.
AGENT_TALK = frozenset({MessageType.REQUEST_ASSISTANCE, MessageType.PROVIDE_ASSISTANCE, MessageType.BROADCAST_INFO})


class ToolProblem(Exception):
    """A sentence for the model: what went wrong and what it can do about it."""


@dataclass
class Assignment:
    """A task attempt the manager gave this agent."""

    task_id: str
    attempt: int
    title: str = ""
    agents: list[str] = field(default_factory=list)


@dataclass
class Held:
    """A lock as it was granted: what a fenced completion names."""

    resource_id: str
    lock_type: str
    lock_id: str
    token: int
    task_id: str | None = None

    def ref(self) -> dict[str, Any]:
        return {"resourceId": self.resource_id, "lockType": self.lock_type, "lockId": self.lock_id, "token": self.token}


@dataclass
class Note:
    """One message for read_inbox."""

    sender: str
    kind: str
    text: str
    task_id: str | None = None
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def as_dict(self) -> dict[str, Any]:
        note = {"from": self.sender, "type": self.kind, "text": self.text, "at": self.at}
        return note | ({"taskId": self.task_id} if self.task_id else {})


class AgentLink:
    """The agent's connection to the manager and what it knows; every tool goes through it."""

    def __init__(self, who: Identity | Unidentified, *, give_up_after: float | None = None) -> None:
        self.identity = who if isinstance(who, Identity) else None
        self.problem = who.problem if isinstance(who, Unidentified) else None  # why no tool can work
        self.assignments: dict[str, Assignment] = {}
        self.locks: dict[str, Held] = {}  # lock id -> grant
        self.notes: deque[Note] = deque(maxlen=INBOX_LIMIT)
        self._cancelled: set[tuple[str, int]] = set()  # a cancel may overtake its assignment
        self._refusals: OrderedDict[str, str] = OrderedDict()  # message id -> the manager's refusal
        self._inbox: Inbox | None = None
        self._loops: list[asyncio.Task[None]] = []
        self.client: SocketClient | None = None
        if isinstance(who, Identity):
            events = ClientEvents(connected=self._connected, lost=self._lost, retrying=self._retrying)
            self.client = SocketClient(who.address, who.agent_id, token=who.token, give_up_after=give_up_after,
                                       events=events, session=who.session, channel=who.channel)
        self._waiting_logged = False

    @property
    def agent_id(self) -> str:
        return self.identity.agent_id if self.identity else "(unknown agent)"

    @property
    def speaks_for_agent(self) -> bool:
        """On the agent's own channel this process is the agent: it heartbeats, and its end is the
        agent leaving.  On a side channel (a run the manager started) it only asks."""
        return self.identity is not None and self.identity.channel == "agent"

    @property
    def welcome(self) -> dict[str, Any]:
        return self.client.welcome if self.client else {}

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Connect in the background: the MCP server answers the model while the manager is away."""
        if self.problem is not None:
            log.error("%s", self.problem)
        if self.client is not None:
            self._loops.append(asyncio.get_running_loop().create_task(self._live(), name="mcp-agent-link"))

    async def stop(self, leaving: str | None = None) -> None:
        """Close the connection; with `leaving`, first tell the manager the agent leaves (and why)."""
        client = self.client
        if not self.speaks_for_agent:
            leaving = None  # the agent lives on in the manager's process; this run's end is not its end
        if leaving and client is not None and client.connected and not client.finished:
            try:
                await client.send(make_message(MessageType.AGENT_LEAVE, self.agent_id, MANAGER_ID, {"reason": leaving}))
                log.info("left the sprint: %s", leaving)
            except (TransportError, ProtocolError) as exc:
                log.warning("could not say goodbye to the manager: %s", exc)
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if client is not None:
            await client.close()

    async def _live(self) -> None:
        assert self.client is not None
        client = self.client
        try:
            await client.connect()
            if client.finished:
                return
            self._inbox = client.subscribe(self.agent_id)
            loop = asyncio.get_running_loop()
            self._loops += [loop.create_task(self._read(), name="mcp-agent-read"),
                            loop.create_task(self.reconcile(), name="mcp-agent-reconcile")]
            if self.speaks_for_agent:
                self._loops.append(loop.create_task(self._heartbeat(), name="mcp-agent-heartbeat"))
            await client.run()  # the reader: replies (the reconcile's too) arrive through it
            log.info("the sprint has finished")
        except HandshakeRefused as exc:
            hint = "" if "payload.session" in str(exc) else "; check the agent id and its token (SPRINTDECK_TOKEN or SPRINTDECK_TOKEN_FILE)"
            self.problem = f"{exc}{hint}"
            log.error("%s", self.problem)
        except TransportError as exc:  # closed while connecting, or (with give_up_after) no server
            if not isinstance(exc, TransportClosed):
                self.problem = f"cannot reach the sprint manager: {exc}"
                log.error("%s", self.problem)

    def _connected(self, reconnected: bool) -> None:
        self._waiting_logged = False
        log.info("%s to the sprint manager at %s as %s", "reconnected" if reconnected else "connected",
                 self.client.address if self.client else "?", self.agent_id)
        if reconnected:
            self._loops = [loop for loop in self._loops if not loop.done()]
            self._loops.append(asyncio.get_running_loop().create_task(self.reconcile(), name="mcp-agent-reconcile"))

    def _lost(self, reason: str) -> None:
        log.warning("connection to the sprint manager lost (%s); reconnecting", reason)

    def _retrying(self, error: str, delay: float) -> None:
        if not self._waiting_logged:
            self._waiting_logged = True
            log.warning("waiting for the sprint manager at %s (%s)", self.client.address if self.client else "?", error)

    async def _heartbeat(self) -> None:
        """Beat at the welcome's interval while the process lives: its silence is how the manager
        learns that the session is gone."""
        assert self.client is not None
        while not self.client.finished:
            await asyncio.sleep(float(self.welcome.get("heartbeatInterval") or DEFAULT_HEARTBEAT))
            if self.client.connected:
                tasks = sorted(self.assignments)
                beat = make_message(MessageType.HEARTBEAT, self.agent_id, MANAGER_ID, {"tasks": tasks, "load": len(tasks)})
                try:
                    await self.client.send(beat)
                except TransportError as exc:
                    log.warning("heartbeat not sent: %s", exc)

    async def _read(self) -> None:
        assert self._inbox is not None
        async for message in self._inbox:
            self.fold(message)

    # ------------------------------------------------------------ what arrives

    def catch_up(self) -> None:
        """Fold every message already waiting, so an answer reflects all that has arrived."""
        if self._inbox is None:
            return
        while (message := self._inbox.get_nowait()) is not None:
            self.fold(message)

    def fold(self, message: IPCMessage) -> None:
        kind, sender = message.type, message.from_
        if kind == MessageType.TASK_ASSIGN and sender == MANAGER_ID:
            self._assigned(message.payload)
        elif kind == MessageType.TASK_CANCEL and sender == MANAGER_ID:
            payload = message.payload
            self._cancelled.add((payload.task_id, payload.attempt))
            if self._drop_assignment(payload.task_id, payload.attempt):
                self.note(MANAGER_ID, "task_cancel", f"the manager took task {payload.task_id} back: "
                          f"{payload.reason or 'cancelled'}; stop working on it", payload.task_id)
        elif kind == MessageType.AGENT_ERROR:
            self._refused(message)
        elif kind == MessageType.RESOURCE_LOCK and message.payload.lock_id:
            self.keep_grant(message, None)  # granted after its asker stopped waiting: held all the same
            self.note(MANAGER_ID, "resource_lock", f"you now hold the {message.payload.lock_type} lock on "
                      f"{message.payload.resource_id} you queued for; release_lock it if you no longer need it")
        elif kind in AGENT_TALK and sender != MANAGER_ID:
            self._mail(message)

    def _assigned(self, payload: TaskAssignPayload) -> None:
        known = self.assignments.get(payload.task_id)
        if (payload.task_id, payload.attempt) in self._cancelled or (known and known.attempt > payload.attempt):
            return
        self.assignments[payload.task_id] = Assignment(payload.task_id, payload.attempt, payload.title, list(payload.agents))
        for ref in payload.locks:
            if ref.lock_id is not None and ref.token is not None:
                self.locks[ref.lock_id] = Held(ref.resource_id, ref.lock_type, ref.lock_id, ref.token, payload.task_id)
        if known is None or known.attempt != payload.attempt:
            self.note(MANAGER_ID, "task_assign", f"the manager assigned you task {payload.task_id} "
                      f"(attempt {payload.attempt}): {payload.title or payload.task_id}", payload.task_id)

    def _drop_assignment(self, task_id: str, attempt: int | None = None) -> bool:
        known = self.assignments.get(task_id)
        if known is None or (attempt is not None and known.attempt != attempt):
            return False
        del self.assignments[task_id]
        return True

    def _refused(self, message: IPCMessage) -> None:
        error = message.payload.error
        if message.correlation_id:
            self._refusals[message.correlation_id] = error
            while len(self._refusals) > REFUSALS_KEPT:
                self._refusals.popitem(last=False)
        log.warning("the manager refused a message: %s", error)

    def _mail(self, message: IPCMessage) -> None:
        payload = message.payload
        if message.type == MessageType.BROADCAST_INFO:
            extra = {key: value for key, value in payload.data.items() if key != "taskId"}
            text = payload.info + (f" {json.dumps(extra)}" if extra else "")
            self.note(message.from_, "message", text, payload.data.get("taskId"))
        else:
            text = payload.topic + (f": {payload.details}" if payload.details else "")
            kind = "request_assistance" if message.type == MessageType.REQUEST_ASSISTANCE else "provide_assistance"
            self.note(message.from_, kind, text, payload.task_id)

    def note(self, sender: str, kind: str, text: str, task_id: str | None = None) -> None:
        self.notes.append(Note(sender, kind, text, task_id))

    def keep_grant(self, reply: IPCMessage, task_id: str | None) -> list[Held]:
        """Remember the locks a `resource_lock` grant names (every path of a multi-path grant),
        as taken for `task_id` (the grant does not repeat the request's task)."""
        payload = reply.payload
        refs = payload.grants or [payload]
        held = [Held(r.resource_id, r.lock_type, r.lock_id, r.token, task_id) for r in refs
                if r.lock_id is not None and r.token is not None]
        for grant in held:
            self.locks[grant.lock_id] = grant
        return held

    # ------------------------------------------------------------ asking the manager

    def ready(self) -> SocketClient:
        """The connected client, or a ToolProblem saying why the manager cannot be asked now."""
        if self.problem is not None:
            raise ToolProblem(self.problem)
        assert self.client is not None
        if self.client.finished:
            raise ToolProblem(f"sprint {self.welcome.get('sprint', '')} has finished: there is nothing more to coordinate")
        if not self.client.connected:
            raise ToolProblem(f"not connected to the sprint manager at {self.client.address} (sprintdeck keeps "
                              "retrying); try again in a few seconds, and if this persists check that "
                              "`sprintdeck serve` is running there")
        self.catch_up()
        return self.client

    def message(self, kind: MessageType, payload: dict[str, Any], to: str = MANAGER_ID) -> IPCMessage:
        return make_message(kind, self.agent_id, to, payload)

    async def ask(self, kind: MessageType, payload: dict[str, Any], *, timeout: float = REQUEST_TIMEOUT) -> IPCMessage:
        """One request to the manager and its reply; never a traceback."""
        client = self.ready()
        try:
            reply = await client.request(self.message(kind, payload), timeout=timeout)
        except ResponseTimeout:
            raise ToolProblem(f"the sprint manager did not answer within {timeout:.0f} s; try again") from None
        except (TransportError, ProtocolError) as exc:
            raise ToolProblem(f"could not reach the sprint manager: {exc}") from None
        self.catch_up()
        return reply

    async def tell(self, message: IPCMessage, sections: list[str]) -> dict[str, Any]:
        """Send a message the manager does not answer, then the state `sections` once it was decided.

        The state request goes after the message on the same connection, at the same priority, so
        its reply comes after the manager decided the message (and after any refusal of it, which
        is raised here as the sentence the manager gave).
        """
        client = self.ready()
        try:
            await client.send(message)
        except (TransportError, ProtocolError) as exc:
            raise ToolProblem(f"could not send {message.type}: {exc}") from None
        state = await self.state(sections)
        refusal = self._refusals.pop(message.id, None)
        if refusal is not None:
            raise ToolProblem(refusal)
        return state

    async def state(self, sections: list[str]) -> dict[str, Any]:
        reply = await self.ask(MessageType.STATE_REQUEST, {"sections": sections})
        if reply.type != MessageType.STATE_SYNC:
            raise ToolProblem(f"the sprint manager answered the state request with {reply.type}")
        state: dict[str, Any] = reply.payload.state
        return state

    # ------------------------------------------------------------ agreeing with the manager

    async def reconcile(self) -> None:
        """After a handshake: agree with the manager (it may have assigned or taken work meanwhile)."""
        try:
            await self.agree()
        except ToolProblem as exc:
            log.warning("could not compare notes with the manager: %s", exc)

    async def agree(self) -> dict[str, Any]:
        """Take up the attempts the manager's state gives this agent and drop those it took away;
        returns that state (tasks and locks).  Locks are only added: one that lapsed stays in the
        fencing of a completion, which the manager then refuses, as it should."""
        state = await self.state(["tasks", "locks"])
        for raw in state.get("tasks", {}).values():
            task = TaskState.model_validate(raw)
            mine = self.agent_id in task.owners and task.in_flight
            known = self.assignments.get(task.id)
            if mine and (known is None or known.attempt != task.attempt):
                self.assignments[task.id] = Assignment(task.id, task.attempt, task.title, task.owners)
            elif not mine and known is not None:
                del self.assignments[task.id]
                owner = f", now with {task.agent}" if task.agent and task.agent != self.agent_id else ""
                self.note(MANAGER_ID, "task_cancel", f"task {task.id} is no longer yours (it is {task.status}{owner}); "
                          "stop working on it", task.id)
        for raw in state.get("locks", {}).values():
            lock = ResourceLock.model_validate(raw)
            if lock.agent_id == self.agent_id and lock.lock_id not in self.locks:
                self.locks[lock.lock_id] = Held(lock.resource_id, lock.lock_type, lock.lock_id, lock.token, lock.task_id)
        return state

    def assignment(self, task_id: str | None) -> Assignment:
        """The assignment a tool names, or the agent's only one when it names none."""
        self.ready()
        if task_id:
            known = self.assignments.get(task_id)
            if known is None:
                raise ToolProblem(f"task {task_id} is not assigned to you ({self._yours()}); "
                                  "call list_tasks to see who has it, or claim_task to take a ready one")
            return known
        if len(self.assignments) == 1:
            return next(iter(self.assignments.values()))
        raise ToolProblem(f"say which task: {self._yours()}")

    def _yours(self) -> str:
        if not self.assignments:
            return "you have no task; call list_tasks and claim_task to take a ready one"
        return "your tasks: " + ", ".join(sorted(self.assignments))

    def finished(self, task_id: str) -> None:
        """The task's attempt ended here: forget it and the grants that came with it."""
        self._drop_assignment(task_id)
        for lock_id in [lock_id for lock_id, held in self.locks.items() if held.task_id == task_id]:
            del self.locks[lock_id]
