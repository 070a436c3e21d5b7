"""What every transport that takes agents from other processes shares (the socket and NATS ones).

Each external agent of the plan has an inbox from the start (its messages wait there while it is
away); a message taken from an inbox but not yet known to be written is `_unsent`; `_bound` holds
the agents bound right now; at the sprint's end inbound traffic stops and `finish` waits, bounded,
for the bound agents to take what is queued.  An agent binds by `hello_problem`, the one check of
its token, and a refusal is recorded one way (`_record`), whichever transport refused it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Generic, TypeVar

from engine.protocol import MANAGER_ID, SPRINT_FINISHED, IPCMessage, MessageType, make_message
from engine.refusal import Refusal
from engine.transports.address import Address
from engine.transports.inproc import InProcessTransport

log = logging.getLogger(__name__)

DRAIN_TIMEOUT = 5.0  # seconds `finish` waits for bound agents to receive what is queued for them
Binding = TypeVar("Binding")  # what a bound agent is reached by: its connection, or its session key


class ExternalAgentsTransport(InProcessTransport, Generic[Binding]):
    """In-process inboxes for local parties, and the bookkeeping of agents in other processes."""

    def __init__(self, address: Address, *, tokens: Mapping[str, str], local: Collection[str],
                 on_refused: Callable[[Refusal], None] | None) -> None:
        super().__init__()
        self.address = address
        self.on_refused = on_refused
        #: Called with (agent id, peer pid or None) when an agent's own connection closes mid-sprint.
        self.on_disconnected: Callable[[str, int | None], None] | None = None
        self._tokens = dict(tokens)
        self._local = frozenset(local)  # agents of this process (kind: claude) whose runs open side channels
        self._bound: dict[str, Binding] = {}
        self._unsent: dict[str, IPCMessage] = {}  # taken from an inbox, not known to be written
        self._inbound = True
        for agent_id in self._tokens:
            if agent_id not in self._local:
                self.subscribe(agent_id)

    @property
    def connected(self) -> list[str]:
        """The external agents bound right now."""
        return sorted(self._bound)

    def discard_queued(self, agent_id: str) -> int:
        """Drop what waits for an agent the manager declared dead: its assignments went elsewhere,
        and running them on its return would do the work twice.  Returns how many were dropped."""
        inbox = self._inboxes.get(agent_id)
        if inbox is None or agent_id not in self._tokens:
            return 0
        dropped = int(self._unsent.pop(agent_id, None) is not None)
        while inbox.get_nowait() is not None:
            dropped += 1
        if dropped:
            log.info("dropped %d messages queued for %s, declared dead", dropped, agent_id)
        return dropped

    def _waiting_for(self, agent_id: str) -> int:
        """Messages not yet written to an agent: its inbox, and the one its writer has taken."""
        inbox = self._inboxes.get(agent_id)
        return (len(inbox) if inbox is not None else 0) + (agent_id in self._unsent)

    def stop_inbound(self) -> None:
        """The sprint is over: nothing more from agents is taken (or journaled); sending goes on."""
        self._inbound = False

    async def _until_taken(self, timeout: float) -> None:
        """End of sprint: wait (bounded) until the bound agents took what is queued for them."""
        try:
            async with asyncio.timeout(timeout):
                while any(self._waiting_for(a) for a in self._bound):
                    await asyncio.sleep(0.01)
        except TimeoutError:
            log.warning("agents %s did not take all their messages before the end", ", ".join(self.connected))

    def _record(self, refusal: Refusal) -> None:
        """The log and the journal (`on_refused`) of a refusal."""
        log.warning("refused on %s from %s: %s%s", refusal.transport, refusal.sender or "?",
                    f"{refusal.field}: " if refusal.field else "", refusal.reason)
        if self.on_refused is not None:
            try:
                self.on_refused(refusal)
            except Exception:
                log.exception("could not record a refused message")


def hello_problem(message: IPCMessage, tokens: Mapping[str, str], local: Collection[str]) -> tuple[str, str] | None:
    """Why `message` cannot bind its sender (field, reason), or None: the one check of an agent's
    token, for every transport that takes agents from other processes (socket, NATS)."""
    if message.type != MessageType.AGENT_READY:
        return "type", f"the first message on a connection must be agent_ready with the agent's token, not {message.type}"
    claimed = message.payload.agent_id
    if claimed is not None and claimed != message.from_:
        return "payload.agentId", f"{claimed!r} must equal the message's from ({message.from_!r})"
    expected = tokens.get(message.from_)
    if expected is None:
        known = ", ".join(sorted(tokens)) or "none"
        return "from", f"no external agent {message.from_!r} in this sprint (external agents: {known})"
    token = message.payload.token
    if not token:
        return "payload.token", f"missing: agent {message.from_!r} must send its token"
    if not hmac.compare_digest(token.encode(), expected.encode()):
        return "payload.token", f"wrong token for agent {message.from_!r}"
    if message.from_ in local and message.payload.channel != "requests":
        return "payload.channel", f"agent {message.from_!r} runs in the manager's process: join with channel requests"
    return None



def finished_notice(agent_id: str) -> IPCMessage:
    """The last word an agent gets: the sprint is over."""
    return make_message(MessageType.BROADCAST_INFO, MANAGER_ID, agent_id, {"info": SPRINT_FINISHED})
