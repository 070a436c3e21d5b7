"""A refused message: one record, journaled one way, answered one way, wherever it was refused.

The manager refuses what contradicts the sprint (an unknown sender, a manager-only type, a stale
lock); a transport refuses what never became a message or came from the wrong peer (a bad token,
a spoofed sender, a malformed or oversize line).  Both build a `Refusal`: its `event` is the
`message_rejected` the journal records, its `reply` the `agent_error` the sender gets, naming the
field and the reason.  A transport refusal also says where the line came from (`transport`),
whether it was about identity (`security`) and whom it claimed to be.  A burst of refusals from one
source is recorded once with its `count` (engine/transports/digest.py), and a peer the transport
disconnects (it stopped reading, flooded, never said who it was) is recorded the same way, with
the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.events import ABSENT, MessageRejected
from engine.protocol import MANAGER_ID, IPCMessage, MessageType, make_message, reply_to


@dataclass(frozen=True, slots=True)
class Refusal:
    field: str  # the wire field at fault ("" for the line as a whole)
    reason: str
    message_id: str | None = None
    claimed: str | None = None  # the `from` the message claimed, when it could be read that far
    bound: str | None = None  # the agent the connection is bound to (transport refusals)
    transport: str | None = None  # "unix" or "tcp:HOST:PORT" when a transport refused it
    security: bool = False  # about identity (token, sender, manager-only type), not form
    count: int = 1  # how many refusals this record stands for (a collapsed burst: more than one)

    @classmethod
    def of(cls, field: str, reason: str, message: IPCMessage | None, *, message_id: str | None = None,
           bound: str | None, transport: str, security: bool = False) -> Refusal:
        """A transport's refusal of `message` (or of the line whose id it read, when there is none)."""
        return cls(field=field, reason=reason, message_id=message.id if message is not None else message_id,
                   claimed=message.from_ if message is not None else None, bound=bound, transport=transport,
                   security=security)

    @property
    def sender(self) -> str:
        """Whom it is attributed to: the bound agent, else who it claimed to be ("" unknown)."""
        return self.bound or self.claimed or ""

    def event(self) -> MessageRejected:
        """The journal's record of it (a transport's refusals say more: where, and whether about identity)."""
        sender = self.sender
        if self.transport is None:
            return MessageRejected(from_=sender, message_id=self.message_id, field=self.field, reason=self.reason)
        claimed = self.claimed if self.claimed and self.claimed != sender else ABSENT
        return MessageRejected(from_=sender, message_id=self.message_id, field=self.field, reason=self.reason,
                               transport=self.transport, security=self.security, claimed_from=claimed,
                               count=self.count if self.count > 1 else ABSENT)

    def reply(self, refused: IPCMessage | None = None) -> IPCMessage:
        """The `agent_error` its sender gets: a reply to the refused message when it came from them."""
        payload = {"error": self.reason, "field": self.field or None, "refMessageId": self.message_id}
        if refused is not None and refused.from_ == self.sender:
            return reply_to(refused, MessageType.AGENT_ERROR, payload)
        return make_message(MessageType.AGENT_ERROR, MANAGER_ID, self.sender or "unknown", payload,
                            priority="high", correlation_id=self.message_id)


def refusal_of(message: IPCMessage, field: str, reason: str) -> Refusal:
    """The manager's refusal of a message it received."""
    return Refusal(field=field, reason=reason, message_id=message.id, claimed=message.from_)
