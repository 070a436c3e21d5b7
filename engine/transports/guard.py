"""The socket transport's limits, enforced (engine/transports/limits.py says what they are and why).

`Guard` is the one place that decides a client has cost enough: it paces each connection's reading
(its `Budget`; an agent's connections share one), holds back an agent with too much waiting for it,
caps the connections waiting for their handshake, watches every backlog, and ends a connection
with its reason.  Every refusal and disconnection it makes, and every refusal the transport makes,
is answered to the peer and recorded through one `RefusalDigest`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from engine.protocol import IPCMessage
from engine.refusal import Refusal
from engine.transports.connection import Connection
from engine.transports.digest import RefusalDigest
from engine.transports.limits import (
    ACCEPT_BURST,
    ACCEPT_RATE,
    BACKLOG_CHECK,
    FLOOD_SECONDS,
    HANDSHAKE_SECONDS,
    MAX_QUEUED_MESSAGES,
    MAX_UNBOUND,
    REFUSED_LINE_COST,
    YIELD_EVERY,
    Budget,
)

Queued = Callable[[str | None], int]  # messages waiting for an agent's own connection


class Guard:
    def __init__(self, queued: Queued, record: Callable[[Refusal], None]) -> None:
        self._queued = queued
        self._unbound: dict[Connection, None] = {}  # waiting for their handshake, oldest first
        self._budgets: dict[str, Budget] = {}  # each agent's reading budget, shared by its connections
        self._digest = RefusalDigest(record)
        self.accepts = Budget(ACCEPT_RATE, ACCEPT_BURST)

    # ------------------------------------------------------------ joining

    def admit(self, connection: Connection) -> asyncio.TimerHandle:
        """A newcomer waits for its handshake, until the deadline returned.  Over `MAX_UNBOUND`
        waiting, the oldest is pushed out: an honest agent says who it is at once, so connections
        held open cannot keep it out."""
        self._unbound[connection] = None
        if len(self._unbound) > MAX_UNBOUND:
            self.disconnect(next(iter(self._unbound)), f"{MAX_UNBOUND} newer connections were waiting for their handshake")
        return asyncio.get_running_loop().call_later(HANDSHAKE_SECONDS, self._overdue, connection)

    def _overdue(self, connection: Connection) -> None:
        if connection.agent_id is None:
            self.disconnect(connection, f"it sent no agent_ready within {HANDSHAKE_SECONDS:g} s")

    def bind(self, connection: Connection, agent_id: str) -> str | None:
        """The connection is `agent_id`'s (its token was right): it reads on the agent's budget.
        An agent disconnected for flooding joins again only once it has paused: else the reason."""
        budget = self._budgets.get(agent_id)
        if budget is not None:
            budget.charge(0)  # refills what its pause earned
            if budget.flooding():
                return f"agent {agent_id!r} keeps sending faster than {budget.describe()}: pause, then join again"
        connection.budget = self._budgets.setdefault(agent_id, Budget())
        self._unbound.pop(connection, None)
        return None

    def dropped(self, connection: Connection) -> None:
        self._unbound.pop(connection, None)

    # ------------------------------------------------------------ reading

    async def paced(self, connection: Connection, size: int) -> None:
        """After each line read: wait while the agent has too much waiting for it (what it asks
        for would only queue behind), then for the budget (the peer's writes block meanwhile); a
        peer that keeps the budget short for `FLOOD_SECONDS` is disconnected."""
        if self._queued(connection.agent_id) > MAX_QUEUED_MESSAGES:
            while not connection.closing and self._queued(connection.agent_id) > MAX_QUEUED_MESSAGES:
                await asyncio.sleep(BACKLOG_CHECK)
        budget = connection.budget
        wait = budget.charge(1, size)
        if wait and budget.flooding():
            self.disconnect(connection, f"it kept sending faster than {budget.describe()} for {FLOOD_SECONDS:g} s")
        elif wait:
            connection.unyielded = 0
            await asyncio.sleep(wait)
        elif (unyielded := connection.unyielded + 1) >= YIELD_EVERY:
            connection.unyielded = 0
            await asyncio.sleep(0)  # one connection's chunk of lines does not hold up the others
        else:
            connection.unyielded = unyielded

    # ------------------------------------------------------------ writing

    async def wrote(self, connection: Connection) -> None:
        """After each message its pump wrote (and the peer took): a long backlog is written a turn
        at a time, so it does not hold up the other connections either."""
        connection.backlog.took()
        if (written := connection.written + 1) >= YIELD_EVERY:
            written = 0
            await asyncio.sleep(0)
        connection.written = written

    async def watch(self, backlogs: Callable[[], Iterable[tuple[Connection, int]]]) -> None:
        """Every `BACKLOG_CHECK` seconds, disconnect each peer that falls behind with what waits
        for it: `backlogs` gives every open connection with the messages queued for it."""
        while True:
            await asyncio.sleep(BACKLOG_CHECK)
            for connection, queued in list(backlogs()):
                verdict = connection.backlog.verdict(queued, connection.unread)
                if verdict is not None:
                    self.disconnect(connection, verdict)

    # ------------------------------------------------------------ refusing

    def refused(self, connection: Connection, refusal: Refusal, message: IPCMessage | None = None) -> None:
        """Answer the peer (`agent_error` naming the field) and record it, a burst of them once; a
        refused line costs the connection's budget `REFUSED_LINE_COST` lines."""
        connection.write(refusal.reply(message))
        connection.budget.charge(REFUSED_LINE_COST - 1)
        self._digest.add(connection.source, refusal)

    def disconnect(self, connection: Connection, why: str) -> None:
        """End a connection the transport will not serve any longer: the peer is told why, and the
        connection is dropped at once with what it left unread.  Recorded through the digest, apart
        from refused lines, so a peer disconnected again and again is one counted record after the
        first few; its agent is then an agent that disconnected."""
        if connection.closing:
            return
        refusal = Refusal(field="", reason=f"disconnected: {why}", bound=connection.agent_id, transport=connection.peer)
        connection.write(refusal.reply())
        self._digest.add(connection.source, refusal, "connections")
        connection.abort()

    def flush(self) -> None:
        """The transport closes: the counted bursts are recorded now."""
        self._digest.flush()
