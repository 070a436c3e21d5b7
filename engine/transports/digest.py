"""Refusals journaled in proportion to what happened, not to how often a peer repeats itself.

A peer that sends 133,000 malformed lines, or opens 8,700 connections with a wrong token, must not
write 133,000 journal records.  Refusals are grouped in bursts by their source (a bound agent, or
the unauthenticated peers of one address) and what was refused (lines, or whole connections, so a
disconnection's reason is not lost among refused lines): the first `REFUSALS_IN_FULL` of a burst
are recorded one by one, as any refusal is, and the rest are counted and recorded once, when it ends
(`BURST_GAP` without one), when `LONGEST_BURST` has passed, or when the transport closes:
"refused 132,995 more lines from agent 'flooder' in 5.0 s; the first: not JSON: …" (its field is
"" - the reason names the first one's - and its `count` says how many it stands for).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.refusal import Refusal
from engine.transports.limits import BURST_GAP, LONGEST_BURST, REFUSALS_IN_FULL, Clock


@dataclass
class _Burst:
    what: str  # what was refused: lines, connections
    started: float
    last: float
    in_full: int = 0
    counted: int = 0
    first: Refusal | None = None  # the first counted refusal: its reason stands for the rest
    security: bool = False


class RefusalDigest:
    """Hands refusals to `record`, collapsing each source's bursts into one counted record."""

    def __init__(self, record: Callable[[Refusal], None], *, clock: Clock = time.monotonic) -> None:
        self._record = record
        self._clock = clock
        self._bursts: dict[tuple[str, str], _Burst] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, source: str, refusal: Refusal, what: str = "lines") -> None:
        """One refusal of `what` ("lines", "connections") from `source` ("agent 'x'")."""
        now, key = self._clock(), (source, what)
        burst = self._bursts.get(key)
        if burst is not None and (now - burst.last >= BURST_GAP or now - burst.started >= LONGEST_BURST):
            self._close(key)
            burst = None
        if burst is None:
            burst = self._bursts[key] = _Burst(what, started=now, last=now)
        burst.last = now
        if burst.in_full < REFUSALS_IN_FULL:
            burst.in_full += 1
            self._record(refusal)
            return
        if burst.first is None:
            burst.first = refusal
        burst.counted += 1
        burst.security = burst.security or refusal.security
        self._arm()

    def flush(self) -> None:
        """Record every counted burst now (the transport is closing)."""
        for key in list(self._bursts):
            self._close(key)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _close(self, key: tuple[str, str]) -> None:
        burst = self._bursts.pop(key)
        if burst.counted and burst.first is not None:
            self._record(_summary(key[0], burst))

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(BURST_GAP, self._tick)

    def _tick(self) -> None:
        """End the bursts that are over; look again while any is still counting."""
        self._timer = None
        now = self._clock()
        for key, burst in list(self._bursts.items()):
            if now - burst.last >= BURST_GAP or now - burst.started >= LONGEST_BURST:
                self._close(key)
        if any(burst.counted for burst in self._bursts.values()):
            self._arm()


def _summary(source: str, burst: _Burst) -> Refusal:
    first = burst.first
    assert first is not None
    reason = (f"refused {burst.counted:,} more {burst.what} from {source} in {burst.last - burst.started:.1f} s; "
              f"the first: {first.field + ': ' if first.field else ''}{first.reason}")
    return dataclasses.replace(first, field="", reason=reason, message_id=None, claimed=None if first.bound is None else first.claimed,
                               security=burst.security, count=burst.counted)
