"""Events about locks: granted, queued, released, renewed, refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from engine.events.base import EventBody, EventType, event_kind


class LockItem(TypedDict):
    resourceId: str
    lockType: str


# ---------------------------------------------------------------- locks


@dataclass(slots=True, kw_only=True)
class LockEvent(EventBody):
    """An event that changes who holds or waits for a lock (the Locks pane redraws)."""


@event_kind(EventType.LOCK_GRANTED)
@dataclass(slots=True, kw_only=True)
class LockGranted(LockEvent):
    lock_id: str
    resource_id: str
    lock_type: str
    agent_id: str
    task_id: str | None = None
    token: int
    ttl: int  # ms
    expires_at: str
    request_id: str | None = None

    @property
    def subject(self) -> str:
        return self.task_id or self.agent_id


@event_kind(EventType.LOCK_QUEUED)
@dataclass(slots=True, kw_only=True)
class LockQueued(LockEvent):
    request_id: str
    agent_id: str
    task_id: str | None = None
    resources: list[LockItem]

    @property
    def subject(self) -> str:
        return self.task_id or self.agent_id


@event_kind(EventType.LOCK_RELEASED)
@dataclass(slots=True, kw_only=True)
class LockReleased(LockEvent):
    lock_id: str
    reason: str = ""
    by: str = ""


@event_kind(EventType.LOCK_RENEWED)
@dataclass(slots=True, kw_only=True)
class LockRenewed(LockEvent):
    agent_id: str = ""
    expires_at: dict[str, str]  # lock id -> new expiry

    @property
    def subject(self) -> str:
        return self.agent_id


@event_kind(EventType.WAITER_REMOVED)
@dataclass(slots=True, kw_only=True)
class WaiterRemoved(LockEvent):
    request_id: str
    reason: str = ""


@event_kind(EventType.LOCK_REFUSED)
@dataclass(slots=True, kw_only=True)
class LockRefused(EventBody):
    resource_id: str
    agent_id: str = ""
    reason: str = ""

    @property
    def subject(self) -> str:
        return self.agent_id or self.resource_id
