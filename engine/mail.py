"""The post office: what the manager receives and sends, and nothing sent before it is durable.

Messages to agents wait in an outbox until the journal has flushed the events that led to them
(no agent hears of a decision the journal could lose); one flusher task delivers them.  Every
message the transport delivers is recorded as a `message` event, with the reply latency of a reply
to a request the manager received.  The manager's inbox is read in batches: every message already
waiting is decided before work is placed, so placement runs once per batch, not once per message.

Two exceptions keep a lock round trip at one sync (docs/journal.md, "Durability and latency"):
events nobody waits on (a delivered message's own record, a heartbeat) become durable within
`SYNC_SOON`, carried by the next flush someone waits on, instead of syncing at once and making
the next request wait behind that sync; and a batch of release answers only (`EARLY_TYPES`) goes
out without waiting, since it hands nothing to anyone.  And while the disk is fast, the inbox's
reader makes the journal durable and sends the batch's replies itself, in the turn it decided them
(`deliver_here`), instead of waking the flusher; one lock keeps every delivery in order.  When the
journal fails, nothing more is sent and `until` raises the failure, which stops the sprint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from engine.events import Event, MessageRecorded
from engine.journal import JournalFailure
from engine.protocol import MANAGER_ID, IPCMessage, MessageType, ProtocolError
from engine.recorder import Recorder
from engine.transports.base import Inbox, Transport, TransportError

log = logging.getLogger(__name__)

INBOX_BATCH = 256  # messages decided before placement runs and the loop gets a turn
STOP_DELIVERY_TIMEOUT = 2.0  # seconds the stop waits to send replies already decided
SYNC_SOON = 0.005  # seconds within which an event nobody waits on is made durable
# Answers that may go before the events that led to them are durable: a release answer gives its
# agent nothing (the release took a right away, and any grant it caused waits for the sync).
EARLY_TYPES = frozenset({MessageType.RESOURCE_UNLOCK})
Post = Callable[[IPCMessage], None]


class Mail:
    def __init__(self, transport: Transport, recorder: Recorder) -> None:
        self.transport = transport
        self._recorder = recorder
        self._outbox: list[IPCMessage] = []
        self._wake = asyncio.Event()
        self._sync_timer: asyncio.TimerHandle | None = None
        self._failed = asyncio.Event()
        self._sending = asyncio.Lock()
        self.failure: JournalFailure | None = None  # the journal failed: nothing more is sent
        self._requests_seen: dict[str, float] = {}  # request message id -> arrival (for latency)
        transport.tap(self._record)
        self.inbox: Inbox = transport.subscribe(MANAGER_ID)
        recorder.subscribe(self._nudge)

    def post(self, message: IPCMessage) -> None:
        """Send once the events that led to it are durable (the flusher does the sending)."""
        self._outbox.append(message)
        self._wake.set()

    def received(self, message: IPCMessage) -> None:
        """A message reached the manager: remember a request's arrival, to time its reply."""
        if message.requires_response:
            self._requests_seen[message.id] = self._recorder.clock()

    def _nudge(self, event: Event) -> None:
        """Every event is made durable within SYNC_SOON, whether or not a message waits on it."""
        if self._sync_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # before the loop runs (a resumed manager): the flusher's first round
                self._wake.set()
                return
            self._sync_timer = loop.call_later(SYNC_SOON, self._sync_due)

    def _sync_due(self) -> None:
        self._sync_timer = None
        self._wake.set()

    def _record(self, message: IPCMessage) -> None:
        arrived = self._requests_seen.pop(message.correlation_id, None) if message.correlation_id else None
        if arrived is None:
            self._recorder.emit(MessageRecorded(message=message.wire_dict()))
        else:
            latency_ms = round((self._recorder.clock() - arrived) * 1000, 3)
            self._recorder.emit(MessageRecorded(message=message.wire_dict(), latency_ms=latency_ms))

    async def flusher(self) -> None:
        """Deliver whenever woken; ends when the journal fails (`until` then raises it)."""
        while self.failure is None:
            await self._wake.wait()
            self._wake.clear()
            if self._outbox or self._sync_timer is None:  # else: sent already, the timer's sync is not due
                await self.deliver()

    async def until(self, done: asyncio.Event) -> None:
        """Wait for `done`; raise the journal's `JournalFailure` instead if it fails first (or meanwhile)."""
        if self.failure is None and not done.is_set():
            waits = [asyncio.ensure_future(done.wait()), asyncio.ensure_future(self._failed.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        if self.failure is not None:
            raise self.failure

    async def deliver(self) -> None:
        """Make the journal durable first: no agent hears of a decision the journal could lose.

        Cancelled midway (the manager stopping), what was not yet sent goes back to the front of
        the outbox, so `stop` still delivers it instead of losing a reply it already decided.
        """
        async with self._sending:  # one delivery at a time: a later message never overtakes
            outbox, self._outbox = self._outbox, []  # taken first: a message posted mid-flush waits for the next one
            await self._send(outbox, durable=False)

    async def deliver_here(self) -> None:
        """`deliver` in the caller's turn, when the journal can be made durable without waiting
        (no sync running, a fast disk): the inbox's reader sends the replies it decided without
        waking the flusher and its sync (issue 14).  Otherwise the flusher, already woken, does."""
        if self._sending.locked() or not self._outbox or not self._durable_now(self._outbox):
            return
        async with self._sending:
            outbox, self._outbox = self._outbox, []
            await self._send(outbox, durable=True)

    async def _send(self, outbox: list[IPCMessage], *, durable: bool) -> None:
        """Send `outbox`, once the journal is durable for it unless it is already (`durable`)."""
        sent = 0
        try:
            if not durable and not await self._durable_for(outbox):
                return
            for message in outbox:
                try:
                    await self.transport.send(message)
                except (TransportError, ProtocolError) as exc:
                    log.warning("could not deliver %s to %s: %s", message.type, message.to, exc)
                sent += 1
        except asyncio.CancelledError:
            self._outbox[:0] = outbox[sent:]
            raise

    async def _durable_for(self, outbox: list[IPCMessage]) -> bool:
        """Flush the journal unless only early answers wait; False once the journal has failed."""
        journal = self._recorder.journal
        if self._durable_now(outbox):
            return True
        if journal is None or self.failure is not None:
            return False
        try:
            await journal.flush()
        except JournalFailure as failure:
            return self._journal_failed(failure)
        self._all_durable()
        return True

    def _durable_now(self, outbox: list[IPCMessage]) -> bool:
        """True if `outbox` may go now: nothing it announces is still to be synced, or the sync
        was made in this turn (`JournalWriter.flush_now`)."""
        journal = self._recorder.journal
        if self.failure is not None:
            return False  # the journal cannot keep what a message would announce: nothing more is sent
        if journal is None or (outbox and all(message.type in EARLY_TYPES for message in outbox)):
            return True
        try:
            if not journal.flush_now():
                return False
        except JournalFailure as failure:
            return self._journal_failed(failure)
        self._all_durable()
        return True

    def _all_durable(self) -> None:
        journal = self._recorder.journal
        if self._sync_timer is not None and journal is not None and journal.durable_seq == journal.last_seq:
            self._sync_timer.cancel()  # all durable: a timer sync now would only delay the next request
            self._sync_timer = None

    def _journal_failed(self, failure: JournalFailure) -> bool:
        self.failure = failure
        self._failed.set()
        return False

    async def deliver_rest(self) -> None:
        """At stop: send what is decided but unsent, bounded so a peer that never reads cannot hold it."""
        if self._outbox:
            try:
                await asyncio.wait_for(self.deliver(), STOP_DELIVERY_TIMEOUT)
            except TimeoutError:
                log.warning("stopping with %d message(s) undelivered", len(self._outbox))

    async def serve(self, decide: Callable[[IPCMessage], None], placed: Callable[[], None]) -> None:
        """Decide every message already waiting, then place work once for the whole batch.

        A batch is bounded so timers and the flusher still run.
        """
        while True:
            message: IPCMessage | None = await self.inbox.get()
            decided = 0
            while message is not None:
                decide(message)
                decided += 1
                message = self.inbox.get_nowait() if decided < INBOX_BATCH else None
            placed()
            await self.deliver_here()
