"""What one sender may cost the manager over NATS: the socket transport's reading limits
(engine/transports/limits.py) applied to the messages on the sprint's manager subject.

Over a socket the manager slows a client by not reading its connection.  Over NATS every sender's
messages come through one subscription, so they are first sorted into lanes, one per sender - a
bound agent (whichever of its sessions sent it), else the sender's reply subject (one per
connection) - each a bounded queue taken at the pace of its own `Budget`.  The subscription's
callback only sorts, so a flood in one lane never holds up another.

- A bound agent's messages come through a consumer of its own that delivers at most
  `LANE_MESSAGES` unacknowledged (engine/transports/nats.py): the rest of a flood waits in the
  stream, not in the manager, which spends on it only what its budget allows.
- A lane that holds `LANE_MESSAGES` (another sender's) drops what comes (acknowledged, so JetStream does not deliver
  it again) and the sender is told; a refused message costs `REFUSED_LINE_COST` lines, as over a
  socket.  Refusals and drops are journaled through one `RefusalDigest`: a burst is the first few
  records, then one record with a count.
- A sender whose lane stays full (`FULL` of it at least) for `FLOOD_SECONDS` is disconnected (`flooded`: a bound agent
  loses its session), and an agent that binds again before it paused is refused
  (`still_flooding`).  Its lane being full, not its budget, is the sign: the manager may be
  slower than the budget (all of NATS's deliveries go through its one loop), and a sender that
  outruns the manager that long floods it whatever the figures.
- At most `MAX_LANES` lanes: senders beyond share one (a client inventing reply subjects gets
  one lane, not thousands).  A lane idle for `LANE_IDLE` seconds is let go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from engine.refusal import Refusal
from engine.transports.digest import RefusalDigest
from engine.transports.limits import FLOOD_SECONDS, REFUSED_LINE_COST, YIELD_EVERY, Budget

log = logging.getLogger(__name__)

JS_ACK_PREFIX = "$JS.ACK."  # the reply subject of a message a JetStream consumer delivered
LANE_MESSAGES = 64  # messages waiting in one sender's lane before what it sends is dropped
MAX_LANES = 256  # senders with a lane of their own; the rest share CROWD
LANE_IDLE = 10.0  # seconds a lane waits for its sender's next message before it is let go
FULL, EMPTY = 0.75, 0.25  # a lane this full is behind; one below EMPTY caught up again
PAUSE = 1.0  # seconds a sender disconnected for flooding must be quiet before its agent binds again
CROWD = "crowd"  # the lane of senders beyond MAX_LANES and of messages without a reply subject


@dataclass
class Lane:
    """One sender's queue and budget."""

    key: str
    budget: Budget = field(default_factory=Budget)
    queue: deque[Msg] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    taken: int = 0
    full_since: float | None = None  # when the lane last began dropping what its sender sends
    flooded_at: float | None = None  # when its sender was last disconnected for flooding
    arrived_at: float = 0.0  # when its sender's last message came
    quiet: float = 0.0  # how long its sender was quiet before that message
    busy: bool = False  # one of its messages is being handled (by its task, or in its sender's turn)
    done: asyncio.Event = field(default_factory=asyncio.Event)  # set whenever such a handling ends
    resume_at: float = 0.0  # its budget's debt: none of its messages is handled before then

    def idle(self) -> bool:
        """Nothing waiting, nothing being handled, nothing owed: a message may be taken at once."""
        return not self.queue and not self.busy and time.monotonic() >= self.resume_at

    def arrived(self) -> float:
        now = time.monotonic()
        self.quiet, self.arrived_at = now - self.arrived_at, now
        return now


class Intake:
    """Sorts the manager's messages into lanes and hands each lane's to `handle`, at its pace."""

    def __init__(self, handle: Callable[[Msg], Awaitable[None]], record: Callable[[Refusal], None],
                 flooded: Callable[[str, str, Msg], None]) -> None:
        """`flooded(key, why, msg)`: the sender `key` kept its lane full for FLOOD_SECONDS (`msg`: its last)."""
        self._handle = handle
        self._flooded = flooded
        self.digest = RefusalDigest(record)
        self._lanes: dict[str, Lane] = {}

    def take(self, key: str, msg: Msg, *, room: int = LANE_MESSAGES) -> Refusal | None:
        """Queue `msg` in its sender's lane (never waits); the refusal to answer when it is dropped
        because `room` messages wait there already."""
        lane = self._lane(key)
        now = lane.arrived()
        if len(lane.queue) >= FULL * LANE_MESSAGES:
            if lane.full_since is None:
                lane.full_since = now
            elif now - lane.full_since >= FLOOD_SECONDS:
                self._flood(lane, msg)
        if len(lane.queue) >= room:
            return Refusal(field="", reason=f"dropped: more than {LANE_MESSAGES} messages waiting from this sender; "
                           f"send at most {lane.budget.describe()}", transport="")
        lane.queue.append(msg)
        lane.wake.set()
        return None

    async def take_now(self, key: str, msg: Msg) -> Refusal | None:
        """`take`, except that a message finding its lane idle is handled in the caller's turn: a
        request and its reply do not wait for the lane's task to be scheduled (a loop turn, a
        tenth of a NATS round trip).  The budget is charged alike; what it owes delays the next."""
        lane = self._lane(key)
        if not lane.idle():
            return self.take(key, msg)
        lane.arrived()
        await self._take_one(lane, msg)
        return None

    def refused(self, key: str) -> None:
        """A message of `key`'s was refused: it costs the lane `REFUSED_LINE_COST` lines in all."""
        lane = self._lanes.get(key)
        if lane is not None:
            lane.budget.charge(REFUSED_LINE_COST - 1)

    def still_flooding(self, key: str) -> str | None:
        """Why `key` may not bind now (it was disconnected for flooding and has not paused), or None.
        Asked while its hello is taken: the pause is the one before the hello (or since it, when
        the hello came on another lane)."""
        lane = self._lanes.get(key)
        if lane is None or lane.flooded_at is None:
            return None
        if max(lane.quiet, time.monotonic() - lane.arrived_at) >= PAUSE:
            lane.flooded_at = None
            return None
        return f"agent {key!r} keeps sending faster than {lane.budget.describe()}: pause, then join again"

    async def close(self) -> None:
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._lanes.clear()
        self.digest.flush()

    # ------------------------------------------------------------ lanes

    def _lane(self, key: str) -> Lane:
        lane = self._lanes.get(key)
        if lane is None:
            if len(self._lanes) >= MAX_LANES and key != CROWD:
                return self._lane(CROWD)
            lane = self._lanes[key] = Lane(key)
            lane.task = asyncio.get_running_loop().create_task(self._run(lane), name=f"nats-lane-{key}")
        return lane

    async def _run(self, lane: Lane) -> None:
        """Take the lane's messages at its budget's pace; let the lane go once its sender is quiet."""
        while True:
            if not lane.queue:
                lane.wake.clear()
                try:
                    async with asyncio.timeout(LANE_IDLE):
                        await lane.wake.wait()
                except TimeoutError:
                    if lane.idle() and time.monotonic() - lane.arrived_at >= LANE_IDLE:
                        self._lanes.pop(lane.key, None)
                        return
                    continue
            while lane.busy:  # one taken in its sender's turn is still being handled
                lane.done.clear()
                await lane.done.wait()
            if (owed := lane.resume_at - time.monotonic()) > 0:
                lane.taken = 0
                await asyncio.sleep(owed)
            if not lane.queue:
                continue
            msg = lane.queue.popleft()
            if len(lane.queue) < EMPTY * LANE_MESSAGES:
                lane.full_since = None  # it is keeping up again
            await self._take_one(lane, msg)
            if (taken := lane.taken + 1) >= YIELD_EVERY:
                taken = 0
                await asyncio.sleep(0)  # one lane's chunk does not hold up the others
            lane.taken = taken

    async def _take_one(self, lane: Lane, msg: Msg) -> None:
        """Handle one message of the lane and charge its budget (what it owes delays the next)."""
        lane.busy = True
        try:
            await self._handle(msg)
        except Exception:  # a bug must not stop the lane; this message is lost
            log.exception("a message from %s could not be taken", lane.key)
        finally:
            lane.busy = False
            lane.done.set()
        wait = lane.budget.charge(1, len(msg.data))
        if wait:
            lane.resume_at = time.monotonic() + wait

    def _flood(self, lane: Lane, last: Msg) -> None:
        """Disconnect the sender; what it left in its lane is dropped."""
        lane.full_since, lane.flooded_at = None, time.monotonic()
        dropped = len(lane.queue)
        for msg in lane.queue:
            asyncio.get_running_loop().create_task(ack(msg))  # taken (not applied): not delivered again
        lane.queue.clear()
        why = f"it kept sending faster than {lane.budget.describe()} for {FLOOD_SECONDS:g} s"
        log.warning("%s: %s; %d waiting messages dropped", lane.key, why, dropped)
        self._flooded(lane.key, why, last)


async def ack(msg: Msg) -> None:
    """Acknowledge a message taken or dropped, so JetStream does not deliver it again (one that
    came on core NATS, a request, has nothing to acknowledge)."""
    if not msg.reply.startswith(JS_ACK_PREFIX):
        return
    try:
        await msg.ack()
    except (NatsError, OSError):
        pass  # the server is away: it delivers the message again, and `Seen` drops it
