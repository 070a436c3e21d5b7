"""Keeping core NATS's fast answers behind the stored messages sent before them (DESIGN §9).

A request (an agent's message that waits for a reply) and its reply travel on core NATS: one hop
through the server each way, as in NATS's own request/reply, instead of a store in the sprint's
stream, a consumer's delivery and an acknowledgement on each side.  What else the two sides send
each other stays in the stream, so that it survives the server.  The two paths must not reorder
what one side sent: a lock request must not overtake the release its agent sent just before it,
nor a reply the cancel the manager sent first.

So the sender says, in the `Sprintdeck-After` header, the stream sequence of the last stored
message it sent on the same way (the server's `PubAck` tells it), and the receiver holds the fast
message in a `SequenceGate` until its consumer has delivered that sequence.  A fast message is sent
only when none of the sender's stored messages is still on its way to the server, so the sequence
it names is its last one.  A message held longer than `HOLD_LIMIT` (its predecessor was purged
with a flooder's backlog, say) is let through, so nothing waits for good.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from nats.aio.msg import Msg
from nats.errors import Error as NatsError

log = logging.getLogger(__name__)

AFTER_HEADER = "Sprintdeck-After"  # the stream sequence a fast message must not overtake
HOLD_LIMIT = 1.0  # seconds a fast message waits for the stored ones before it, at most
HELD_LIMIT = 1_024  # fast messages held at once; beyond, they go through unordered
ASKED_LIMIT = 4_096  # fast requests remembered until answered (the oldest are answered the stored way)


def after_of(headers: Mapping[str, str] | None) -> int:
    """The stream sequence a fast message was sent after (0: none, or a header that is not one)."""
    text = (headers or {}).get(AFTER_HEADER, "")
    return int(text) if text.isdigit() and len(text) < 20 else 0


def stream_sequence(msg: Msg) -> int:
    """A stored message's sequence in the stream (0 for a message that did not come from one)."""
    try:
        return int(msg.metadata.sequence.stream)
    except (NatsError, AttributeError, ValueError):
        return 0


class SequenceGate:
    """Lets a fast message through once the stored messages sent before it have come."""

    def __init__(self, release: Callable[[Msg], None]) -> None:
        """`release(msg)` takes a held message on once the sequence it waits for has come."""
        self._release = release
        self.seen = 0  # the last stored sequence delivered on this way
        self._held: list[tuple[int, Msg]] = []

    def stored(self, sequence: int) -> None:
        """A stored message of this way has come: what waited for it goes on, in order."""
        if sequence <= self.seen:
            return
        self.seen = sequence
        while self._held and self._held[0][0] <= sequence:
            self._release(self._held.pop(0)[1])

    def holds(self, msg: Msg, after: int) -> bool:
        """A fast message: False when what it follows has come (the caller takes it on now), else
        True: held, and released when it has (or after `HOLD_LIMIT`)."""
        if after <= self.seen or len(self._held) >= HELD_LIMIT:
            return False
        self._held.append((after, msg))
        asyncio.get_running_loop().call_later(HOLD_LIMIT, self._expire, msg)
        return True

    def _expire(self, msg: Msg) -> None:
        for index, (after, held) in enumerate(self._held):
            if held is msg:
                del self._held[index]
                log.warning("a fast message waited %gs for stored message %d; it goes on unordered", HOLD_LIMIT, after)
                self._release(msg)
                return


class AskedRequests:
    """The manager's fast requests not answered yet: where each one's reply goes (bounded)."""

    def __init__(self) -> None:
        self._asked: dict[str, tuple[str, str]] = {}  # request id -> (its agent, its reply subject)

    def remember(self, message_id: str, agent_id: str, reply: str) -> None:
        self._asked[message_id] = (agent_id, reply)
        if len(self._asked) > ASKED_LIMIT:
            del self._asked[next(iter(self._asked))]

    def answered(self, correlation_id: str | None) -> tuple[str, str] | None:
        """(agent, reply subject) when `correlation_id` names a fast request, which is then forgotten."""
        return None if correlation_id is None else self._asked.pop(correlation_id, None)
