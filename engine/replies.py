"""Exactly one reply to every request (DESIGN §3), whatever the handler had to say.

A message to the manager with `requiresResponse` is answered by its handler (a grant, a welcome,
the state), by its refusal (`agent_error`), or later by something the handler set going (a
queued lock's grant or refusal, a helper's answer).  One that none of these answers - a
heartbeat, a progress report, a completion - is acknowledged with a `broadcast_info` "received"
naming it, so a client waiting on any request gets its answer instead of a timeout.
"""

from __future__ import annotations

from engine.mail import Post
from engine.protocol import MANAGER_ID, RECEIVED, IPCMessage, MessageType, reply_to


class OneReply:
    """Watches what the handlers post while one message is decided; `post` goes through it."""

    def __init__(self, post: Post) -> None:
        self._post = post
        self._waiting: str | None = None  # the id of the request being decided, when it wants a reply
        self._answered = False

    def post(self, message: IPCMessage) -> None:
        if self._waiting is not None and message.correlation_id == self._waiting:
            self._answered = True
        self._post(message)

    def begin(self, message: IPCMessage) -> None:
        self._waiting = message.id if message.requires_response and message.to == MANAGER_ID else None
        self._answered = False

    def answered(self) -> None:
        """The request has its answer without one posted now: it comes after this step (a queued
        lock, brokered help), or there is nobody to give one to (a refused unknown sender)."""
        self._answered = True

    def end(self, message: IPCMessage) -> None:
        if self._waiting is not None and not self._answered:
            data = {"type": str(message.type), "id": message.id}
            self._post(reply_to(message, MessageType.BROADCAST_INFO, {"info": RECEIVED, "data": data}))
        self._waiting = None
