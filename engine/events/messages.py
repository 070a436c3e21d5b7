"""Messages as they travelled, refused messages, and the operator's actions."""

from __future__ import annotations

from dataclasses import dataclass

from engine.events.base import ABSENT, Absent, EventBody, EventType, Json, event_kind


# ---------------------------------------------------------------- messages and operators


@event_kind(EventType.MESSAGE)
@dataclass(slots=True, kw_only=True)
class MessageRecorded(EventBody):
    """Every IPC message as it travelled; `latency_ms` on a reply, measured from its request."""

    message: Json
    latency_ms: float | Absent = ABSENT


@event_kind(EventType.MESSAGE_REJECTED)
@dataclass(slots=True, kw_only=True)
class MessageRejected(EventBody):
    """A refused message or line; the transport's refusals also say where it came from."""

    from_: str = ""
    message_id: str | None = None
    field: str = ""
    reason: str = ""
    transport: str | Absent = ABSENT
    security: bool | Absent = ABSENT
    claimed_from: str | Absent = ABSENT
    count: int | Absent = ABSENT  # a burst recorded once: how many refusals it stands for


@event_kind(EventType.OPERATOR_ACTION)
@dataclass(slots=True, kw_only=True)
class OperatorAction(EventBody):
    """The operator's intent (its effects follow as their own events); only the keys it names."""

    action: str = ""
    by: str = ""
    task_id: str | Absent = ABSENT
    agent_id: str | Absent = ABSENT
    priority: str | Absent = ABSENT
    lock_id: str | Absent = ABSENT
    resource_id: str | Absent = ABSENT
    holder: str | Absent = ABSENT
    path: str | Absent = ABSENT
    note: str | None | Absent = ABSENT

    @property
    def subject(self) -> str:
        for value in (self.task_id, self.path, self.agent_id, self.resource_id):
            if isinstance(value, str):
                return value
        return ""
