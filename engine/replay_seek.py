"""What the replay dashboard's `:seek` accepts, and the pace it plays at.

The scrubber shows *elapsed* sprint time, so `:seek` reads the same thing back: `2:30` is two
minutes thirty into the recording, never a time of day (which silently landed on event 0 for every
value before the sprint's start).  A bare number is an event seq, as before.  A value that cannot be
read is an error naming what was typed and what is accepted; one outside the recording is clamped
to its start or end and the landing says so (`SeekLanding.note`), so nothing is ever silent.

Playing follows the journal's timestamps by default (×1 is the recorded pace, ×10 ten times
faster: idle stretches stay proportionally idle); a fixed number of events per second remains as
the other mode, for recordings whose timestamps are too bunched or too sparse to watch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

ACCEPTED = ("an event number (120), an elapsed time (2:30, 1:02:30, 90s, 2m30s) "
            "or a step in time (+30s, -10s)")

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_CLOCK = re.compile(r"(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)")
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


class SeekSyntaxError(ValueError):
    """`:seek` got a value it cannot read; the message names it and what is accepted."""


@dataclass(frozen=True)
class SeekRequest:
    """A parsed `:seek` value: an event seq, seconds since the start, or seconds from the cursor."""

    kind: Literal["event", "elapsed", "relative"]
    value: float
    typed: str


@dataclass(frozen=True)
class SeekLanding:
    """Where a seek lands, and a sentence for the user when it was clamped (else None)."""

    seq: int
    note: str | None


class Timeline(Protocol):
    """What resolving a seek needs of a `ReplayCursor` (kept narrow so it is easy to reason about)."""

    total: int
    start_time: datetime
    end_time: datetime

    def time_of(self, seq: int) -> datetime: ...

    def seq_at_time(self, when: datetime) -> int: ...


def _seconds(text: str) -> float | None:
    """`2:30`, `1:02:30`, `90s`, `2m30s`, `1h` as seconds; None when `text` is none of those."""
    clock = _CLOCK.fullmatch(text)
    if clock:
        hours, minutes, seconds = clock.groups()
        if float(seconds) >= 60 or (hours is not None and int(minutes) >= 60):
            return None
        return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    duration = _DURATION.fullmatch(text)
    if duration and any(duration.groups()):
        return sum(float(part) * _UNITS[unit] for part, unit in zip(duration.groups(), "hms") if part)
    return None


def parse_seek(text: str) -> SeekRequest:
    """Read a `:seek` value; `SeekSyntaxError` names what was typed and what is accepted."""
    typed = text.strip()
    if typed.isdigit():
        return SeekRequest("event", int(typed), typed)
    sign = typed[:1] if typed[:1] in "+-" else ""
    seconds = _seconds(typed[len(sign):].lower()) if typed else None
    if seconds is None:
        hint = " (a step needs a unit: +30s, -2m)" if sign and typed[1:].isdigit() else ""
        raise SeekSyntaxError(f"cannot read {typed!r} as a place to seek to{hint}; :seek takes {ACCEPTED}")
    if sign:
        return SeekRequest("relative", seconds if sign == "+" else -seconds, typed)
    return SeekRequest("elapsed", seconds, typed)


def format_elapsed(seconds: float) -> str:
    """Elapsed sprint time as `:seek` reads it: `02:30.0` under an hour, `1:02:30` from one on."""
    seconds = max(0.0, seconds)
    if seconds >= 3600:
        whole = int(seconds)
        return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:04.1f}"


def elapsed_at(timeline: Timeline, seq: int) -> float:
    """Seconds from the first event to event `seq` (0 before the first event)."""
    return (timeline.time_of(seq) - timeline.start_time).total_seconds() if seq else 0.0


def resolve_seek(timeline: Timeline, request: SeekRequest, current: int) -> SeekLanding:
    """The seq a request lands on from event `current`, clamped to the recording with a note."""
    total = timeline.total
    if request.kind == "event":
        seq = int(request.value)
        if seq > total:
            return SeekLanding(total, f"#{seq} is past the end: went to the last event #{total}")
        return SeekLanding(seq, None)
    duration = (timeline.end_time - timeline.start_time).total_seconds()
    target = request.value
    origin = ""
    if request.kind == "relative":
        base = elapsed_at(timeline, current)
        target += base
        origin = f" from {format_elapsed(base)}"
    if target < 0:
        return SeekLanding(0, f"{request.typed}{origin} is before the start: went to the start")
    if target > duration:
        return SeekLanding(total, f"{request.typed}{origin} is past the end of the recording "
                                  f"({format_elapsed(duration)}): went to the last event #{total}")
    return SeekLanding(timeline.seq_at_time(timeline.start_time + timedelta(seconds=target)), None)



REALTIME_MULTIPLES = (0.5, 1, 2, 5, 10, 20, 50, 100, 1000)
EVENT_RATES = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


@dataclass
class Pace:
    """How fast playing goes: a multiple of the recorded pace (the default, ×1) or events per second.

    Both settings are kept, so switching modes and back returns to the speed chosen before.
    """

    realtime: bool = True
    multiple: float = 1
    rate: int = 10

    def change(self, steps: int) -> None:
        """Faster (`steps` > 0) or slower along the current mode's ladder, stopping at its ends."""
        ladder: tuple[float, ...] = REALTIME_MULTIPLES if self.realtime else EVENT_RATES
        current = self.multiple if self.realtime else self.rate
        index = min(range(len(ladder)), key=lambda i: abs(ladder[i] - current))
        chosen = ladder[max(0, min(len(ladder) - 1, index + steps))]
        if self.realtime:
            self.multiple = chosen
        else:
            self.rate = int(chosen)

    @property
    def label(self) -> str:
        """`×2 real time` or `50 ev/s`: what the scrubber shows."""
        return f"×{self.multiple:g} real time" if self.realtime else f"{self.rate} ev/s"
