"""The recorder: the one way a running sprint's state changes.

Every decision the manager makes becomes an event: `emit(body)` numbers it, journals it, folds it
into `ProjectState` with the reducer (the recorder is the only caller of the reducer in a live
sprint) and then tells the listeners (the dashboard, `serve`, the manager's own bookkeeping).

Journal and state never disagree: the record is appended to the journal's buffer first, and taken
back if the reducer refuses the event, so an event is either in both or in neither.  Nothing is
acknowledged to anyone until the journal has flushed (the post office, `engine/mail.py`, sees to
that).  Every so often a `state_digest` is journaled, so that a replay can prove it folds the
state the live manager had; digests are spaced by the sprint's size, since one costs O(state).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from engine.events import Event, EventBody, SprintFinished, StateDigest, iso_utc
from engine.journal import JournalWriter
from engine.models import ProjectState
from engine.reducer import apply, state_digest

log = logging.getLogger(__name__)

DIGEST_EVERY = 500  # state_digest at every seq that is a multiple of this, at least (docs/journal.md)
DIGEST_EVENTS_PER_TASK = 10  # ... and at most one per 10 events per task, since a digest is O(state)

Listener = Callable[[Event], None]
Emit = Callable[[EventBody], Event]


class Recorder:
    """Owns the sprint's `ProjectState`; `emit` is how it changes (see the module docstring)."""

    def __init__(self, journal: JournalWriter | None, *, clock: Callable[[], float],
                 wall: Callable[[], float]) -> None:
        self.state = ProjectState()
        self.journal = journal
        self.clock = clock  # the manager's monotonic clock: leases, heartbeats, latencies
        self.wall = wall  # Unix time: event timestamps
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call `listener` with every event after it is applied (a listener that raises is logged)."""
        self._listeners.append(listener)

    def emit(self, body: EventBody) -> Event:
        """Journal and apply one event; raises (and records nothing) if either refuses it."""
        state = self.state
        seq = state.version + 1
        if not isinstance(body, StateDigest) and (
            isinstance(body, SprintFinished) or seq % max(DIGEST_EVERY, DIGEST_EVENTS_PER_TASK * len(state.tasks)) == 0
        ):
            self.emit(StateDigest(digest=state_digest(state), of=state.version))
            seq = state.version + 1
        event = Event(seq, iso_utc(self.wall()), body, self.clock(), body.wire())
        self._record(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a listener failed on event %d (%s)", event.seq, event.type)
        return event

    def _record(self, event: Event) -> None:
        journal = self.journal
        if journal is not None:
            journal.append(event.seq, event.type.value, event.data, event.ts, event.mono)
        try:
            apply(self.state, event)
        except BaseException:
            if journal is not None:
                journal.retract(event.seq)
            raise

    def replay(self, events: Iterable[Event]) -> None:
        """Fold events already in the journal (a resumed sprint's), without journaling them again."""
        for event in events:
            apply(self.state, event)

    def wall_at(self, mono: float) -> str:
        """The wall time, as an event timestamp, of a moment on the monotonic clock (a lease's end)."""
        return iso_utc(self.wall() + (mono - self.clock()))
