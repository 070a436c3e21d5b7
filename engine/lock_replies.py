"""What the manager answers a lock request: the grant (every path's lockId and token, the lease's
expiry on the wall clock), or the refusal naming the holder, its mode and its task (DESIGN §3)."""

from __future__ import annotations

from collections.abc import Callable

from engine.lock_records import Conflict, Grant
from engine.protocol import IPCMessage, MessageType, ResourceLockMessage, reply_to


def grant_reply(request: ResourceLockMessage, grants: list[Grant], wall_at: Callable[[float], str]) -> IPCMessage:
    first = grants[0]
    return reply_to(
        request,
        MessageType.RESOURCE_LOCK,
        {
            "resourceId": first.resource_id,
            "lockType": first.mode,
            "ttl": int(first.ttl * 1000),
            "lockId": first.lock_id,
            "token": first.token,
            "expiresAt": wall_at(first.expires_at),
            "grants": [
                {"resourceId": g.resource_id, "lockType": g.mode, "lockId": g.lock_id, "token": g.token}
                for g in grants
            ],
        },
    )


def conflict_reply(request: ResourceLockMessage, reason: str, conflict: Conflict | None) -> IPCMessage:
    payload = request.payload
    return reply_to(
        request,
        MessageType.RESOURCE_CONFLICT,
        {
            "resourceId": conflict.resource_id if conflict else payload.resource_id,
            "lockType": payload.lock_type,
            "holder": conflict.holder if conflict else None,
            "holderMode": conflict.holder_mode if conflict else None,
            "holderTask": conflict.holder_task if conflict else None,
            "reason": reason,
        },
    )
