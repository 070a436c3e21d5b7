"""Where the dashboard's state comes from: a running engine, or a fixed recorded history.

Both look the same to the App (state, events, journal, whether operations apply): `StateSource`
names that shape, which the replay dashboard's cursor source has too, so the same widgets serve the
live dashboard, snapshot tests and replay, and the App never asks which one it has (except to
operate: only a live source has a manager).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # `run`'s first frame is drawn before the engine (pydantic, the manager) is imported
    from engine.events import Event
    from engine.manager import SprintManager
    from engine.models import ProjectState
    from engine.plan import Plan
    from engine.supervisor import ProcessSupervisor
    from engine.transports.nats import NatsTransport  # nats-py with aiohttp: a third of a second
    from engine.transports.socket import SocketTransport


class StateSource(Protocol):
    """Read-only to the App: the state, its events, and where they come from."""

    @property
    def live(self) -> bool:
        """A running engine is behind it, so operations apply and quitting stops the sprint."""
        ...

    @property
    def mode(self) -> str:
        """`live`, `recorded` or `replay`: the header says which."""
        ...

    @property
    def transport(self) -> str: ...

    @property
    def journal(self) -> str | None: ...

    @property
    def state(self) -> ProjectState: ...

    @property
    def finished(self) -> bool: ...

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        """Call `listener` with every new event (a recording never has one)."""
        ...

    def history(self) -> list[Event]:
        """The events that came before the App subscribed, drawn at first paint."""
        ...

    def how_to_start(self, agent_id: str) -> str | None:
        """How the user starts this agent (an external agent of `serve`), for its details; None when
        nothing is for the user to do."""
        ...

    async def run(self) -> None: ...

    async def stop(self) -> None: ...


class LiveSource:
    live = True
    mode = "live"

    def __init__(self, manager: SprintManager, *, journal: str | None, transport: str = "in-process") -> None:
        self.manager = manager
        self.journal = journal
        self.transport = transport

    @property
    def state(self) -> ProjectState:
        return self.manager.state

    @property
    def finished(self) -> bool:
        return self.manager.finished

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self.manager.subscribe(listener)

    def history(self) -> list[Event]:
        return []

    def how_to_start(self, agent_id: str) -> str | None:
        return None  # every agent of `run` is started by the sprint itself

    async def run(self) -> None:
        """Run the sprint; afterwards the engine keeps watching files until `stop` (the user quits)."""
        await self.manager.execute_sprint(keep_watching=True)

    async def stop(self) -> None:
        await self.manager.stop()


class ServedSource(LiveSource):
    """The live source with a socket server started and ended around the sprint (`serve`, and
    `run` when Claude Code runs' hooks and MCP servers must reach the manager)."""

    def __init__(self, manager: SprintManager, server: SocketTransport | NatsTransport, *, journal: str,
                 spawned: ProcessSupervisor | None = None,
                 how_to_start: Callable[[str], str | None] | None = None) -> None:
        super().__init__(manager, journal=journal, transport=str(server.address))
        self.server = server
        self.spawned = spawned  # `serve --spawn`: the external agents' processes
        self._how_to_start = how_to_start  # `serve`: the command each external agent starts with

    def how_to_start(self, agent_id: str) -> str | None:
        return self._how_to_start(agent_id) if self._how_to_start is not None else None

    async def run(self) -> None:
        await self.server.start()
        if self.spawned is not None:
            await self.spawned.start()
        await self.manager.execute_sprint(keep_watching=True)
        await self.server.finish()

    async def stop(self) -> None:
        if self.spawned is not None:
            await self.spawned.stop()
        await self.manager.stop()
        await self.server.close()


class StartingSource:
    """`run`'s live source before its engine exists: the plan is known, so the dashboard's first
    frame shows its tasks and agents; the engine (the manager and everything it imports, pydantic's
    models among them: most of a third of a second) is built by `started`, which the App calls once
    that frame is on screen.  Asking for anything the engine knows builds it at that moment too.

    A failure to build it is kept and raised again by `started`, so `run` reports it after the
    screen is gone, as it did when the engine was built before the App.
    """

    live = True
    mode = "live"

    def __init__(self, plan: Plan, start: Callable[[], LiveSource], *, journal: str) -> None:
        self.plan = plan
        self.journal = journal
        self._start = start
        self._source: LiveSource | None = None
        self._failure: BaseException | None = None

    def started(self) -> LiveSource:
        """The live source, its engine built on the first call."""
        if self._failure is not None:
            raise self._failure
        if self._source is None:
            try:
                self._source = self._start()
            except Exception as exc:
                self._failure = exc
                raise
        return self._source

    @property
    def transport(self) -> str:
        return self.started().transport

    @property
    def state(self) -> ProjectState:
        return self.started().state

    @property
    def finished(self) -> bool:
        return self.started().finished

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self.started().subscribe(listener)

    def history(self) -> list[Event]:
        return self.started().history()

    def how_to_start(self, agent_id: str) -> str | None:
        return self.started().how_to_start(agent_id)

    async def run(self) -> None:
        await self.started().run()

    async def stop(self) -> None:
        await self.started().stop()


@dataclass
class RecordedSource:
    """A recorded history folded once: read-only, deterministic (snapshot tests use it).

    `push` appends one more event through the reducer and tells subscribers, so a benchmark,
    a test or a replay cursor can feed it step by step.
    """

    events: list[Event]
    journal: str | None = None
    transport: str = "recorded"
    state: ProjectState = field(init=False)
    listeners: list[Callable[[Event], None]] = field(init=False, default_factory=list)
    live = False
    mode = "recorded"

    def __post_init__(self) -> None:
        from engine.reducer import fold

        self.state = fold(self.events)

    @classmethod
    def from_events(cls, events: Iterable[Event], **kwargs) -> RecordedSource:
        return cls(list(events), **kwargs)

    @property
    def finished(self) -> bool:
        return self.state.meta.finished_at is not None

    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self.listeners.append(listener)

    def push(self, event: Event) -> None:
        from engine.reducer import apply

        apply(self.state, event)
        self.events.append(event)
        for listener in self.listeners:
            listener(event)

    def history(self) -> list[Event]:
        return list(self.events)

    def how_to_start(self, agent_id: str) -> str | None:
        return None  # a recording's agents are long gone

    async def run(self) -> None:
        return None

    async def stop(self) -> None:
        return None
