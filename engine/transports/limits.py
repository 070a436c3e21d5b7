"""What one client may cost the server (DESIGN §9: every per-connection buffer is bounded; a client
that floods, stalls or stops reading is slowed or disconnected with a recorded reason).

Three budgets, one home for their figures:

- **Reading** (`Budget`): each connection's lines and bytes are read through a token bucket.  A
  connection over its rate is *slowed* - its lines wait in the kernel, so the sender blocks - never
  dropped; a refused line costs `REFUSED_LINE_COST` lines, so garbage is slowed far sooner than
  valid traffic.  One held at its rate for `FLOOD_SECONDS` is a flooder and is disconnected.
- **Writing** (`Backlog`): what waits for a peer - its inbox while it is connected, and the bytes
  the socket has not taken - is bounded.  A peer that falls behind (over `MAX_QUEUED_MESSAGES`
  and not catching up, or `MAX_QUEUED_BYTES` unread, or nothing taken for `STALL_SECONDS` while
  messages wait) is disconnected; its agent is then an agent that disconnected.
- **Joining**: at most `MAX_UNBOUND` connections wait for their handshake at once (a newcomer
  over the cap pushes out the oldest, so held-open connections cannot lock honest agents out),
  each for at most `HANDSHAKE_SECONDS`, and connections are accepted at `ACCEPT_RATE` a second.

The line rate is far above what an agent needs (a heartbeat a second, a lock request per file) and
above what a client doing lock round trips back to back sends (~1,500 lines a second from another
process).  It is also what one agent may make the manager do: an agent pipelining valid lock
requests at this rate over TCP lifts an honest agent's round trip p50 1.2-1.7x
(benchmarks/bench_attacks.py, benchmarks/BENCHMARKS.md).  The bursts are small for the same
reason: 400 lines let at once into the manager's inbox were a 100-200 ms stall for everyone else.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.protocol import MAX_MESSAGE_BYTES

# ---------------------------------------------------------------- reading
LINE_RATE = 2_000.0  # lines a second one agent (all its connections) is read at, sustained
LINE_BURST = 32.0  # lines it may send at once before it is slowed
BYTE_RATE = 8.0 * 1024 * 1024  # bytes a second
BYTE_BURST = 2.0 * MAX_MESSAGE_BYTES + 64 * 1024  # two messages of the largest size at once
REFUSED_LINE_COST = 10  # a refused line uses the budget of this many lines
FLOOD_SECONDS = 5.0  # held at its rate this long without a pause: disconnected as a flooder
YIELD_EVERY = 32  # lines read from one connection before the others get their turn

# ---------------------------------------------------------------- writing
MAX_QUEUED_MESSAGES = 1_000  # messages waiting for a connected agent before it must catch up
MAX_QUEUED_BYTES = 4 * MAX_MESSAGE_BYTES  # bytes written to a connection and not yet taken by it
SEND_BUFFER = 256 * 1024  # the system's send buffer of a connection (TCP's own grows to megabytes)
STALL_SECONDS = 20.0  # a connected agent that takes nothing this long while messages wait for it
BACKLOG_CHECK = 0.25  # seconds between two looks at every connection's backlog

# ---------------------------------------------------------------- joining
MAX_UNBOUND = 64  # connections waiting for their handshake at once
HANDSHAKE_SECONDS = 10.0  # a connection that has not said who it is by then is closed
ACCEPT_RATE = 200.0  # connections accepted a second, sustained
ACCEPT_BURST = 20.0

# ---------------------------------------------------------------- recording refusals
REFUSALS_IN_FULL = 5  # refusals of one burst journaled one by one; the rest in one counted record
BURST_GAP = 1.0  # seconds without a refusal that end a burst
LONGEST_BURST = 30.0  # a burst still going is recorded (and a new one begun) this often

Clock = Callable[[], float]


class Budget:
    """A token bucket over lines and bytes: `charge` says how long to wait before reading on.

    Tokens may go negative (the line is already read); the wait is what pays the debt back.  The
    bucket also notices a sender that never lets it refill: `flooding` is true once it has been
    short for `flood_seconds` without refilling to half its burst in between.
    """

    def __init__(
        self,
        lines: float = LINE_RATE,
        line_burst: float = LINE_BURST,
        nbytes: float = BYTE_RATE,
        byte_burst: float = BYTE_BURST,
        *,
        flood_seconds: float = FLOOD_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self._rates = (lines, nbytes)
        self._bursts = (line_burst, byte_burst)
        self._lines, self._bytes = line_burst, byte_burst
        self._flood_seconds = flood_seconds
        self._clock = clock
        self._at = clock()
        self.short_since: float | None = None

    def charge(self, lines: float, nbytes: int = 0) -> float:
        """Take `lines` and `nbytes` from the bucket; the seconds to wait before the next read."""
        now = self._clock()
        elapsed, self._at = now - self._at, now
        (line_rate, byte_rate), (line_burst, byte_burst) = self._rates, self._bursts
        self._lines = min(line_burst, self._lines + elapsed * line_rate) - lines
        self._bytes = min(byte_burst, self._bytes + elapsed * byte_rate) - nbytes
        wait = max(-self._lines / line_rate, -self._bytes / byte_rate, 0.0)
        if wait > 0:
            if self.short_since is None:
                self.short_since = now
        elif self._lines >= line_burst / 2 and self._bytes >= byte_burst / 2:
            self.short_since = None
        return wait

    def flooding(self) -> bool:
        """Whether the sender has kept the bucket short for `flood_seconds`."""
        return self.short_since is not None and self._clock() - self.short_since >= self._flood_seconds

    def describe(self) -> str:
        line_rate, byte_rate = self._rates
        return f"{line_rate:,.0f} lines or {byte_rate / 1024 / 1024:g} MiB a second"


class Backlog:
    """What waits for one connected peer, looked at every `BACKLOG_CHECK` seconds.

    `verdict` is None while the peer keeps up, else why it is disconnected.  Over
    `MAX_QUEUED_MESSAGES` is falling behind only if the backlog did not shrink since the last look,
    so an agent that reconnects to a long inbox and reads it is not thrown out for its length.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self.progress_at = clock()  # when the peer last took what was written to it
        self._last = (0, 0)

    def took(self) -> None:
        self.progress_at = self._clock()

    def verdict(self, messages: int, unread_bytes: int) -> str | None:
        (last, last_unread), self._last = self._last, (messages, unread_bytes)
        if messages < last or unread_bytes < last_unread:
            self.took()
        if unread_bytes > MAX_QUEUED_BYTES:
            return f"it left {unread_bytes:,} bytes unread (limit {MAX_QUEUED_BYTES:,})"
        if messages > MAX_QUEUED_MESSAGES and messages >= last:
            return f"it fell behind: {messages:,} messages wait for it (limit {MAX_QUEUED_MESSAGES:,}) and it is not catching up"
        idle = self._clock() - self.progress_at
        if (messages or unread_bytes) and idle >= STALL_SECONDS:
            return f"it took nothing for {idle:.0f} s while {messages:,} messages and {unread_bytes:,} bytes waited for it"
        if not messages and not unread_bytes:
            self.progress_at = self._clock()  # nothing waits: nothing to be late with
        return None
