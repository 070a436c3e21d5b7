"""The state source: what a dashboard reads a sprint from (DESIGN §2).

The running engine and a recorded history (`app/source.py`) and a replay cursor
(`app/replay_dashboard.py`) look the same to the App; this names that shape, so the type checker
holds each of them to it and the App never asks which one it has (except to operate: only a live
source has a manager).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from engine.events import Event
from engine.models import ProjectState


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

    async def run(self) -> None: ...

    async def stop(self) -> None: ...
