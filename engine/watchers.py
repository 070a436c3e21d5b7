"""Watchers: people attached to a running sprint (`sprintdeck watch`), fed a snapshot then events.

The watch protocol is made of ordinary `IPCMessage`s, so that any transport that carries agents'
messages carries it too (a socket connection, or NATS subjects: engine/transports/nats_watch.py):

- the watcher says `agent_ready` with `channel: "watch"`, `from` its name, and the operator token
  when it has one (`serve` writes it beside the agents' tokens);
- the manager answers with a `state_sync` (the whole state and its version) correlated to it, or
  an `agent_error` saying why it refused (a wrong operator token);
- then `broadcast_info` messages with `info: "events"` carry the events since, in order, in
  batches (`data.events`: each `{"seq", "ts", "type", "data"}` as the journal records them);
- an operator watcher asks for an action with `broadcast_info` `info: "operator"`
  (`data: {"action", ...}`) and `requiresResponse`; the answer is `broadcast_info`
  `info: "operator_done"` or an `agent_error` with the refusal, correlated to it.  The action is
  journaled with the watcher's name as the operator (`operator_action.by`).

A watcher never slows the manager: the manager's event listener only appends to the watcher's
bounded list of pending events.  A watcher whose list overflows (`MAX_WATCHER_EVENTS`, it is not
reading) loses it and is sent a fresh snapshot when it reads again (`resyncs` counts them), as is
one that asks for it (`resync`: over NATS, the watcher notices what was dropped on the way); one
that takes nothing at all is disconnected by the transport's backlog checks (limits.py).
"""

from __future__ import annotations

import asyncio
import hmac
import time
from datetime import datetime
from collections.abc import Callable
from typing import Any

from pydantic.alias_generators import to_camel

from engine.events import Event, SprintFinished
from engine.events.base import decode_body
from engine.identifiers import MAX_ID_LENGTH, shown, text_problem
from engine.manager import SprintManager
from engine.models import AttemptRecord, ProjectState, SprintMeta
from engine.operators import OperatorError
from engine.protocol import MANAGER_ID, IPCMessage, MessageType, make_message
from engine.transports.watching import Sink, WatchLink

EVENTS_INFO = "events"
OPERATOR_INFO = "operator"
OPERATOR_DONE = "operator_done"
MAX_WATCHER_EVENTS = 2_000  # events pending for one watcher before it is resynchronised instead
BATCH_EVENTS = 256  # events in one message at most
STUCK_SECONDS = 0.5  # a watcher whose write has waited this long is not waited for at the end


def event_wire(event: Event) -> dict[str, Any]:
    """An event as a watcher receives it: the journal record without its clock and crc."""
    return {"seq": event.seq, "ts": event.ts, "type": str(event.type), "data": event.data}


def wire_event(record: dict[str, Any]) -> Event:
    """The watcher's side of `event_wire`."""
    return Event(int(record["seq"]), str(record["ts"]), decode_body(str(record["type"]), record["data"]),
                 data=record["data"])


def snapshot(state: ProjectState) -> dict[str, Any]:
    """The whole state for a watcher: its JSON, plus what that leaves out (the sprint's meta, each
    task's attempts), so the watcher's metrics are the manager's."""
    return {"state": state.model_dump(mode="json"), "meta": state.meta.model_dump(mode="json"),
            "attempts": {task_id: [a.as_json() for a in task.attempts]
                         for task_id, task in state.tasks.items() if task.attempts}}


def restore(data: dict[str, Any]) -> ProjectState:
    """The watcher's side of `snapshot`."""
    state = ProjectState.model_validate(data["state"])
    state.meta = SprintMeta.model_validate(data["meta"])
    for task_id, attempts in data["attempts"].items():
        state.tasks[task_id].attempts = [_attempt(a) for a in attempts]
    return state


def _attempt(data: dict[str, Any]) -> AttemptRecord:
    """`AttemptRecord.as_json` read back (it leaves None out, and writes times as ISO text)."""
    values = {name: data[to_camel(name)] for name in AttemptRecord.__slots__ if to_camel(name) in data}
    for name in ("assigned_at", "started_at", "ended_at"):
        if name in values:
            values[name] = datetime.fromisoformat(values[name])
    return AttemptRecord(**values)


def watcher_name_problem(name: str) -> str | None:
    """Why `name` cannot name a watcher (it is journaled as the operator, shown in the log), or None."""
    problem = text_problem(name, max_length=MAX_ID_LENGTH)
    return None if problem is None else f"watcher name {shown(name)} {problem}"


class Watcher:
    """One attached watcher: its name, whether it may operate, and what waits for it."""

    def __init__(self, name: str, operator: bool, sink: Sink) -> None:
        self.name = name
        self.operator = operator
        self.sink = sink
        self.pending: list[Event] = []
        self.resync = False
        self.resyncs = 0
        self.finished = False
        self.writing_since: float | None = None  # when the write under way began (None: not writing)
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class WatchHub:
    """The manager's side: who watches, their pending events, and the operator requests."""

    def __init__(self, manager: SprintManager, operator_token: str | None) -> None:
        self.manager = manager
        self._token = operator_token
        self.watchers: list[Watcher] = []
        manager.subscribe(self._on_event)

    # ------------------------------------------------------------ joining

    def refusal(self, hello: IPCMessage) -> tuple[str, str] | None:
        """The field at fault and why a watcher's hello is refused (a name that cannot be shown, a
        token that is not the operator token), else None."""
        problem = watcher_name_problem(hello.from_)
        if problem is not None:
            return "from", problem
        token = hello.payload.token
        if token is not None and (self._token is None or not hmac.compare_digest(token.encode(), self._token.encode())):
            return "payload.token", ("wrong operator token: use the operator-token file that serve wrote beside "
                                     "the agents' tokens")
        return None

    def attach(self, hello: IPCMessage, sink: Sink) -> Watcher:
        """A watcher whose hello was accepted: its snapshot goes first, then the events."""
        watcher = Watcher(hello.from_, hello.payload.token is not None, sink)
        watcher.resync = True  # the first snapshot
        watcher.wake.set()
        watcher.task = asyncio.get_running_loop().create_task(self._feed(watcher, hello.id), name=f"watch-{hello.from_}")
        self.watchers.append(watcher)
        return watcher

    def resync(self, link: WatchLink) -> None:
        """The watcher saw a gap in what reached it: what is pending is dropped for a fresh snapshot."""
        watcher = _watcher(link)
        if not watcher.resync:
            watcher.pending.clear()
            watcher.resync = True
            watcher.resyncs += 1
        watcher.wake.set()

    def detach(self, link: WatchLink) -> None:
        watcher = _watcher(link)
        if watcher in self.watchers:
            self.watchers.remove(watcher)
        if watcher.task is not None and watcher.task is not asyncio.current_task():
            watcher.task.cancel()

    # ------------------------------------------------------------ feeding

    def _on_event(self, event: Event) -> None:
        """On the manager's path: one append per watcher, never a wait."""
        for watcher in self.watchers:
            if watcher.resync:
                pass  # a snapshot is on its way: it will hold this event
            elif len(watcher.pending) >= MAX_WATCHER_EVENTS:
                watcher.pending.clear()
                watcher.resync = True
                watcher.resyncs += 1
            else:
                watcher.pending.append(event)
            watcher.wake.set()
        if isinstance(event.body, SprintFinished):
            for watcher in self.watchers:
                watcher.finished = True

    async def _feed(self, watcher: Watcher, hello_id: str) -> None:
        correlation: str | None = hello_id
        try:
            while True:
                await watcher.wake.wait()
                watcher.wake.clear()
                if watcher.resync:
                    watcher.resync, watcher.pending = False, []
                    state = self.manager.state
                    await self._write(watcher, make_message(MessageType.STATE_SYNC, MANAGER_ID, watcher.name,
                                                    {"version": state.version, "state": snapshot(state)},
                                                    correlation_id=correlation))
                    correlation = None
                while watcher.pending and not watcher.resync:
                    batch, watcher.pending = watcher.pending[:BATCH_EVENTS], watcher.pending[BATCH_EVENTS:]
                    await self._write(watcher, make_message(MessageType.BROADCAST_INFO, MANAGER_ID, watcher.name,
                                                    {"info": EVENTS_INFO, "data": {"events": [event_wire(e) for e in batch]}}))
        except (ConnectionError, OSError):
            self.detach(watcher)

    @staticmethod
    async def _write(watcher: Watcher, message: IPCMessage) -> None:
        watcher.writing_since = time.monotonic()
        await watcher.sink(message)
        watcher.writing_since = None

    async def finish(self, timeout: float) -> None:
        """The sprint is over: let the watchers that are reading take what is pending (up to
        `timeout`); one stuck on a write for `STUCK_SECONDS` is not waited for."""

        def waited_for(watcher: Watcher) -> bool:
            stuck = watcher.writing_since is not None and time.monotonic() - watcher.writing_since > STUCK_SECONDS
            return (bool(watcher.pending) or watcher.resync or watcher.writing_since is not None) and not stuck

        try:
            async with asyncio.timeout(timeout):
                while any(waited_for(w) for w in self.watchers):
                    await asyncio.sleep(0.01)
        except TimeoutError:
            pass
        for watcher in list(self.watchers):
            self.detach(watcher)

    # ------------------------------------------------------------ operating

    def operate(self, link: WatchLink, request: IPCMessage) -> IPCMessage:
        """Carry out an operator request; the reply says it was done or why not."""
        watcher = _watcher(link)
        data = request.payload.data if request.payload.info == OPERATOR_INFO else {}
        try:
            if not watcher.operator:
                raise OperatorError("this watcher is read-only: operator actions need "
                                    "`sprintdeck watch --token-file` with the operator-token file serve wrote")
            done = self._apply(watcher.name, data)
        except OperatorError as exc:
            return make_message(MessageType.AGENT_ERROR, MANAGER_ID, watcher.name, {"error": str(exc)},
                                correlation_id=request.id)
        return make_message(MessageType.BROADCAST_INFO, MANAGER_ID, watcher.name,
                            {"info": OPERATOR_DONE, "data": {"done": done}}, correlation_id=request.id)

    def _apply(self, name: str, data: dict[str, Any]) -> str:
        manager, action = self.manager, str(data.get("action", ""))
        operations: dict[str, Callable[[], object]] = {
            "reassign": lambda: manager.op_reassign(data["taskId"], data["agentId"]),
            "retry": lambda: manager.op_retry(data["taskId"]),
            "cancel": lambda: manager.op_cancel(data["taskId"]),
            "priority": lambda: manager.op_set_priority(data["taskId"], data["priority"]),
            "pause_agent": lambda: manager.op_pause_agent(data["agentId"], bool(data.get("paused", True))),
            "pause_sprint": lambda: manager.op_pause_sprint(bool(data.get("paused", True))),
            "force_release": lambda: manager.op_force_release(data["lockId"]),
            "resolve_file": lambda: manager.op_resolve_file(data["path"], data["how"], by=name),
        }
        operation = operations.get(action)
        if operation is None:
            raise OperatorError(f"unknown operator action {action!r}; one of {', '.join(operations)}")
        try:
            with manager.operators.acting(name):
                operation()
        except KeyError as exc:
            raise OperatorError(f"operator action {action!r} needs {exc.args[0]!r}") from None
        return action


def _watcher(link: WatchLink) -> Watcher:
    """The transport hands back what `attach` gave it."""
    assert isinstance(link, Watcher)
    return link
