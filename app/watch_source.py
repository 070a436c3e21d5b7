"""The dashboard's state from a running `serve` it is attached to (`sprintdeck watch ADDR`).

`WatchedSource` speaks the watch protocol (engine/watchers.py) over a `WatchWire` - a socket
(`SocketWire`, here) or NATS (engine/transports/nats_watcher.py): its hello, the snapshot that
answers it, then batches of events, each applied through the same reducer as the
journal's, so the panes are those of the live dashboard.  A later snapshot (the manager resyncs a
watcher that fell behind) replaces the state; the dashboard redraws everything once a second.

Operating needs the operator token: then `operator` is a `RemoteOperator`, which the operator
actions (app/operator_actions.py) use as they use a live manager, each action a request to the
manager, refused there (and said here) when it cannot apply.  Without it `operator` is None and
`read_only` says why the keys do nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from engine.events import Event
from engine.models import TERMINAL_TASK_STATUSES, AgentState, ProjectState
from engine.operators import OperatorError, ReassignTarget
from engine.protocol import MANAGER_ID, SPRINT_FINISHED, IPCMessage, MessageType, make_message, parse_message
from engine.reducer import apply
from engine.scheduler import PLACEABLE_AGENT_STATUSES
from engine.transports.address import Address
from engine.transports.base import TransportError
from engine.transports.framing import Oversize, encode, read_lines
from engine.transports.watching import WATCH_CHANNEL, WatchWire
from engine.watchers import EVENTS_INFO, OPERATOR_INFO, restore, wire_event

if TYPE_CHECKING:
    from engine.transports.nats_link import NatsCredentials

SNAPSHOT_LIMIT = 512 * 1024 * 1024  # a watcher reads the whole state as one line
HELLO_TIMEOUT = 20.0  # seconds for the manager to answer the hello with the sprint's state
READ_ONLY = ("Watching read-only: operator keys need the operator token "
             "(sprintdeck watch ADDR --token-file JOURNAL.tokens/operator-token; serve printed where it is).")


class WatchRefused(Exception):
    """The server refused or ended the watch before a snapshot; the message says why."""


class WatchedSource:
    live = False  # quitting leaves the sprint running
    mode = "watch"
    journal: str | None = None

    def __init__(self, address: Address, name: str, wire: WatchWire, state: ProjectState, operator: bool) -> None:
        self.transport = str(address)
        self.name = name
        self.state = state
        self.resyncs = 0  # snapshots after the first: the manager found this watcher behind
        self.ended = False  # the server closed the connection
        self._wire = wire
        self._listeners: list[Callable[[Event], None]] = []
        self.operator = RemoteOperator(self) if operator else None
        self.read_only = READ_ONLY
        self._replies: dict[str, asyncio.Future[IPCMessage]] = {}

    @classmethod
    async def connect(cls, address: Address, name: str, token: str | None,
                      credentials: NatsCredentials | None = None) -> WatchedSource:
        """Say hello and take the snapshot; `WatchRefused` when the server will not be watched."""
        wire = await open_wire(address, name, credentials)
        hello = make_message(MessageType.AGENT_READY, name, MANAGER_ID, {"channel": WATCH_CHANNEL, "token": token},
                             requires_response=True)
        try:
            if not await wire.send(hello):
                raise WatchRefused(f"{address} did not take the hello (is serve running there?)")
            async with asyncio.timeout(HELLO_TIMEOUT):
                first = await wire.receive()
        except TimeoutError:
            await wire.close()
            raise WatchRefused(f"{address} did not answer within {HELLO_TIMEOUT:g} s with the sprint's state") from None
        except WatchRefused:
            await wire.close()
            raise
        if first is None:
            raise WatchRefused(f"{address} closed the connection before sending the sprint's state")
        if first.type != MessageType.STATE_SYNC:
            await wire.close()
        if first.type == MessageType.AGENT_ERROR:
            raise WatchRefused(f"{address} refused to be watched: {first.payload.error}")
        if first.type == MessageType.BROADCAST_INFO and first.payload.info == SPRINT_FINISHED:
            raise WatchRefused(f"the sprint at {address} is over: watch it with `sprintdeck replay JOURNAL`")
        if first.type != MessageType.STATE_SYNC:
            raise WatchRefused(f"{address} answered {first.type} instead of the sprint's state")
        return cls(address, name, wire, restore(first.payload.state), token is not None)

    # ------------------------------------------------------------ StateSource

    @property
    def finished(self) -> bool:
        return self.state.meta.finished_at is not None

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def history(self) -> list[Event]:
        return []  # the snapshot holds what came before

    def how_to_start(self, agent_id: str) -> str | None:
        return None  # the terminal running serve says it

    async def run(self) -> None:
        """Apply what the manager sends until it closes the connection (the sprint is over)."""
        while (message := await self._wire.receive()) is not None:
            self._take(message)
        self.ended = True
        for future in self._replies.values():
            if not future.done():
                future.set_exception(OperatorError("the connection to the manager closed"))

    def _take(self, message: IPCMessage) -> None:
        if message.correlation_id is not None and message.correlation_id in self._replies:
            self._replies.pop(message.correlation_id).set_result(message)
        elif message.type == MessageType.STATE_SYNC:
            self.state = restore(message.payload.state)
            self.resyncs += 1
        elif message.type == MessageType.BROADCAST_INFO and message.payload.info == EVENTS_INFO:
            for record in message.payload.data["events"]:
                event = wire_event(record)
                apply(self.state, event)
                for listener in self._listeners:
                    listener(event)

    async def stop(self) -> None:
        """Leave the sprint running: only this connection ends."""
        await self._wire.close()

    # ------------------------------------------------------------ operating

    async def request(self, data: dict[str, Any]) -> IPCMessage:
        """Ask the manager for an operator action; its reply (done, or `agent_error` saying why)."""
        message = make_message(MessageType.BROADCAST_INFO, self.name, MANAGER_ID,
                               {"info": OPERATOR_INFO, "data": data}, requires_response=True)
        future: asyncio.Future[IPCMessage] = asyncio.get_running_loop().create_future()
        self._replies[message.id] = future
        if not await self._wire.send(message):
            self._replies.pop(message.id, None)
            raise OperatorError("the request did not reach the manager (the connection is down)")
        return await future


async def open_wire(address: Address, name: str, credentials: NatsCredentials | None) -> WatchWire:
    """The watcher's end of the transport `address` names; `WatchRefused` saying why there is none."""
    if address.kind == "nats":
        # Imported here: nats-py (with aiohttp) cost every dashboard's first paint 120 ms.
        from engine.transports.nats_watcher import NatsWatchWire

        try:
            return await NatsWatchWire.open(address, name, credentials)
        except TransportError as exc:
            raise WatchRefused(str(exc)) from None
    try:
        if address.kind == "unix":
            reader, writer = await asyncio.open_unix_connection(address.path, limit=SNAPSHOT_LIMIT)
        else:
            reader, writer = await asyncio.open_connection(address.host, address.port, limit=SNAPSHOT_LIMIT)
    except OSError as exc:
        raise WatchRefused(f"cannot connect to {address}: {exc.strerror or exc} (is serve running there?)") from None
    return SocketWire(read_lines(reader, SNAPSHOT_LIMIT), writer)


class SocketWire:
    """The watcher's end of a socket: one message a line each way."""

    def __init__(self, lines: AsyncIterator[bytes | Oversize], writer: asyncio.StreamWriter) -> None:
        self._lines = lines
        self._writer = writer

    async def receive(self) -> IPCMessage | None:
        """The next message from the manager; None once it closed the connection."""
        while True:
            try:
                line = await anext(self._lines)
            except StopAsyncIteration:
                return None
            if not isinstance(line, Oversize):
                return parse_message(line)

    async def send(self, message: IPCMessage) -> bool:
        if self._writer.is_closing():
            return False
        self._writer.write(encode(message))
        return True

    async def close(self) -> None:
        self._writer.close()


class RemoteOperator:
    """The manager's operator methods, as requests: each sent at once, its refusal told when it
    comes back (`tell`, set by the dashboard).  Checks that need only the state are made here,
    so the dashboard's confirmations read as they do live."""

    def __init__(self, source: WatchedSource) -> None:
        self._source = source
        self.tell: Callable[[str, bool], None] = lambda text, done: None  # the manager's answer, when it comes

    @property
    def state(self) -> ProjectState:
        return self._source.state

    def _send(self, **data: Any) -> None:
        async def ask() -> None:
            try:
                reply = await self._source.request(data)
            except OperatorError as exc:
                self.tell(str(exc), False)
                return
            if reply.type == MessageType.AGENT_ERROR:
                self.tell(str(reply.payload.error), False)
            else:
                self.tell(f"the manager did it: {reply.payload.data.get('done', '')}", True)

        asyncio.get_running_loop().create_task(ask())

    def check_reassign(self, task_id: str) -> list[ReassignTarget]:
        task = self.state.tasks.get(task_id)
        if task is None:
            raise OperatorError(f"unknown task {task_id!r}")
        if task.status in TERMINAL_TASK_STATUSES:
            raise OperatorError(f"task {task_id} is {task.status}; only unfinished tasks can be reassigned")
        owners = set(task.owners) if task.in_flight else set()
        return [ReassignTarget(a.id, _refusal(a)) for a in self.state.agents.values()
                if a.id not in owners and set(task.requires) <= set(a.capabilities)]

    def op_reassign(self, task_id: str, agent_id: str) -> None:
        self._send(action="reassign", taskId=task_id, agentId=agent_id)

    def op_retry(self, task_id: str) -> None:
        self._send(action="retry", taskId=task_id)

    def op_cancel(self, task_id: str) -> None:
        self._send(action="cancel", taskId=task_id)

    def op_set_priority(self, task_id: str, priority: str) -> None:
        self._send(action="priority", taskId=task_id, priority=priority)

    def op_pause_agent(self, agent_id: str, paused: bool = True) -> None:
        self._send(action="pause_agent", agentId=agent_id, paused=paused)

    def op_pause_sprint(self, paused: bool = True) -> None:
        self._send(action="pause_sprint", paused=paused)

    def force_release_consequences(self, lock_id: str) -> str:
        return "Its holder's task fails when it reports: the lock it relies on is gone."

    def op_force_release(self, lock_id: str) -> None:
        self._send(action="force_release", lockId=lock_id)

    def op_resolve_file(self, path: str, how: str) -> None:
        self._send(action="resolve_file", path=path, how=how)

    def op_escalate_file(self, path: str) -> None:
        self._send(action="resolve_file", path=path, how="escalate")

    def conflict_diff(self, path: str) -> str:
        return "(the diff is on the manager's machine: resolve it there, or choose here without it)"


def _refusal(agent: AgentState) -> str | None:
    """Why an agent cannot take one more task, as the manager would say (it checks again)."""
    if agent.status not in PLACEABLE_AGENT_STATUSES:
        return agent.status
    running, limit = len(agent.current_tasks), agent.max_concurrent_tasks
    return f"full: {running} of {limit} tasks running (max_concurrent_tasks {limit})" if running >= limit else None
