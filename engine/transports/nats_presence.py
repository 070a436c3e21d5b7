"""Which agents are still there over NATS, from the NATS server's own bookkeeping.

NATS tells a client nothing when another client goes away, but the server knows at once which
subscriptions are gone: each agent takes its messages through its durable consumer
(`agent-<id>`), and the server reports that consumer as bound (`push_bound`) exactly while a
connection subscribes to it.  A killed agent process's connection closes, the consumer is unbound,
and the manager hears of it here within `CONFIRM + CHECK` seconds instead of the heartbeat timeout.

Being unbound for a moment is not being gone: nats-py resubscribes after its own reconnect, and
every consumer is unbound while the NATS server restarts.  So an agent counts as gone only once
its consumer has stayed unbound for `CONFIRM` seconds while the manager's own connection is up and
has been for `SETTLE` seconds; a wrong guess costs one handshake (the agent binds again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from nats.aio.client import Client
from nats.errors import Error as NatsError

from engine.transports.nats_link import Subjects

log = logging.getLogger(__name__)

CHECK = 0.25  # seconds between two looks at the agents' consumers
CONFIRM = 1.0  # seconds an agent's consumer stays unbound before the agent counts as gone
SETTLE = 5.0  # seconds after the manager's connection came back before absences count again
PAGE = 256  # consumers the server lists at once


def agent_consumer(agent_id: str) -> str:
    """The durable consumer an agent takes its own messages through (engine/transports/nats_client.py)."""
    return f"agent-{agent_id}"


class Presence:
    """Tells `gone(agent_id)` when a bound agent's consumer has been unbound for `CONFIRM` seconds."""

    def __init__(self, connection: Callable[[], Client | None], subjects: Subjects,
                 bound: Callable[[], Iterable[str]], gone: Callable[[str], None]) -> None:
        self._connection = connection
        self._subjects = subjects
        self._bound = bound
        self._gone = gone
        self._settled_at = 0.0  # an agent subscribes before it binds: no settling at the start
        self._absent: dict[str, float] = {}  # agent id -> since when its consumer is unbound

    def reconnected(self) -> None:
        """The manager's connection came back: the agents are reconnecting too."""
        self._settled_at = 0.0  # an agent subscribes before it binds: no settling at the start
        self._absent.clear()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK)
            nc, bound = self._connection(), set(self._bound())
            if nc is None or not nc.is_connected or time.monotonic() < self._settled_at or not bound:
                self._absent.clear()
                continue
            try:
                present = await self._present(nc)
            except (NatsError, TimeoutError, OSError) as exc:
                log.debug("could not list the agents' consumers: %s", exc)
                continue
            self._look(bound, present)

    def _look(self, bound: set[str], present: set[str]) -> None:
        now = time.monotonic()
        for agent_id in bound:
            if agent_consumer(agent_id) in present:
                self._absent.pop(agent_id, None)
            elif now - self._absent.setdefault(agent_id, now) >= CONFIRM:
                del self._absent[agent_id]
                log.info("agent %s: its NATS subscription is gone (its connection closed)", agent_id)
                self._gone(agent_id)

    async def _present(self, nc: Client) -> set[str]:
        """The consumers of the sprint's stream that a connection subscribes to right now."""
        jsm, present, offset = nc.jsm(), set[str](), 0
        while True:
            page = await jsm.consumers_info(self._subjects.stream, offset=offset)
            present.update(info.name for info in page if info.push_bound and info.name)
            if len(page) < PAGE:
                return present
            offset += len(page)
