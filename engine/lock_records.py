"""What the lock manager hands out and keeps: grants, waiters, decisions, and why one is refused.

The public records (`Grant`, `Conflict`, `Waiter`, `AcquireResult`) travel out of the lock
manager; the queue's records (`Item`, `QueuedRequest`, `QueuedItem`, `HoldBack`) stay with it.
`explain` turns whatever stands in a request's way into the sentence a refusal carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from engine.payloads import LockType
from engine.resources import LockError, normalise_resource

MODE_RANK: dict[str, int] = {"read": 0, "write": 1, "exclusive": 2}
COMPATIBLE = frozenset({("read", "read"), ("read", "write"), ("write", "read")})


def compatible(held: LockType, asked: LockType) -> bool:
    """DESIGN §4's table: read shares with read and write; write excludes write; exclusive excludes all."""
    return (held, asked) in COMPATIBLE


@dataclass(frozen=True)
class Grant:
    """A lease on one resource; `token` fences stale holders, times are on the manager's monotonic clock."""

    lock_id: str
    token: int
    owner: str
    resource_id: str
    mode: LockType
    ttl: float
    granted_at: float
    expires_at: float
    task_id: str | None = None
    request_id: str | None = None


def mint_grant(
    lock_id: str,
    token: int,
    owner: str,
    resource_id: str,
    mode: LockType,
    ttl: float,
    granted_at: float,
    expires_at: float,
    task_id: str | None,
    request_id: str | None,
) -> Grant:
    """Build a Grant without the frozen dataclass __init__.

    That __init__ pays one object.__setattr__ per field: about 1.2 us on the reference machine,
    a fifth of a whole uncontended acquire+release.  Filling __dict__ directly gives an equal object.
    """
    grant = object.__new__(Grant)
    grant.__dict__.update(
        lock_id=lock_id,
        token=token,
        owner=owner,
        resource_id=resource_id,
        mode=mode,
        ttl=ttl,
        granted_at=granted_at,
        expires_at=expires_at,
        task_id=task_id,
        request_id=request_id,
    )
    return grant


@dataclass(frozen=True, slots=True)
class Conflict:
    """Why a request was not granted, naming whoever stands in the way (a holder or an earlier waiter)."""

    resource_id: str
    mode: LockType
    holder: str
    holder_mode: LockType
    holder_task: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Waiter:
    """One path of a queued request; a multi-path request shows as several waiters with one request id."""

    request_id: str
    owner: str
    resource_id: str
    mode: LockType
    since: float
    task_id: str | None = None


class Item(NamedTuple):
    """One path of a request, as the lock manager judges it."""

    path: str
    mode: LockType
    check: LockType  # the mode conflicts are judged by: exclusive for an upgrade, else `mode`


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    seq: int
    request_id: str
    owner: str
    items: tuple[Item, ...]
    ttl: float
    task_id: str | None
    since: float


class QueuedItem(NamedTuple):
    request: QueuedRequest
    item: Item


@dataclass(frozen=True, slots=True)
class HoldBack:
    """A path held back after its holder vanished (the lock-delay)."""

    path: str
    until: float
    ended: Grant  # the lease whose loss caused the hold-back, named in conflicts


Obstacle = Grant | QueuedItem | HoldBack  # what can stand in a request's way


@dataclass(slots=True)
class AcquireResult:
    """A decision on a request: `granted` (with every path's grant), `queued` or `refused`.

    `LockManager.decide` returns one without changing anything; `LockManager.commit` carries it
    out.  `grants` of a granted result are all the request's grants; `fresh` the new ones among
    them (the rest were already held: re-asked).  A queued result carries `queued`, the request to
    enqueue, and in `grants` the re-asked grants it holds already.
    """

    status: Literal["granted", "queued", "refused"]
    grants: list[Grant] = field(default_factory=list)
    conflict: Conflict | None = None
    request_id: str | None = None
    fresh: list[Grant] = field(default_factory=list)
    queued: QueuedRequest | None = None


def merge_requests(owner: str, requests: Sequence[tuple[str, LockType]]) -> dict[str, LockType]:
    """Each asked path once, normalised, in request order, with the strongest mode asked for it."""
    merged: dict[str, LockType] = {}
    for resource_id, mode in requests:
        if mode not in MODE_RANK:
            raise LockError(f"lock mode {mode!r} for {resource_id!r} is not one of read, write, exclusive")
        path = normalise_resource(resource_id)
        if path not in merged or MODE_RANK[mode] > MODE_RANK[merged[path]]:
            merged[path] = mode
    if not merged:
        raise LockError(f"{owner!r} asked for no resources")
    return merged


def owner_of(obstacle: Obstacle) -> str | None:
    """Whom an obstacle makes the asker wait on; nobody for a lock-delay, which ends by itself."""
    if isinstance(obstacle, Grant):
        return obstacle.owner
    if isinstance(obstacle, QueuedItem):
        return obstacle.request.owner
    return None


def explain(item: Item, obstacle: Obstacle) -> Conflict:
    if isinstance(obstacle, Grant):
        return _held_conflict(item, obstacle)
    if isinstance(obstacle, QueuedItem):
        return _queued_conflict(item, obstacle)
    return _delay_conflict(item, obstacle)


def _held_conflict(item: Item, grant: Grant) -> Conflict:
    reason = f"{grant.resource_id!r} is held in {grant.mode} mode by {grant.owner!r} (lock {grant.lock_id})"
    if item.check != item.mode:
        reason += "; an upgrade needs the asker to be the sole holder"
    return Conflict(item.path, item.mode, grant.owner, grant.mode, grant.task_id, reason)


def _queued_conflict(item: Item, queued: QueuedItem) -> Conflict:
    ahead = queued.request
    reason = (
        f"{ahead.owner!r} queued earlier for {queued.item.mode} on {queued.item.path!r} "
        f"(request {ahead.request_id}) and may not be overtaken"
    )
    return Conflict(item.path, item.mode, ahead.owner, queued.item.mode, ahead.task_id, reason)


def _delay_conflict(item: Item, delay: HoldBack) -> Conflict:
    ended = delay.ended
    reason = (
        f"{delay.path!r} is held back until t={delay.until:.3f} (lock-delay after {ended.owner!r} "
        f"lost lock {ended.lock_id} without releasing it)"
    )
    return Conflict(item.path, item.mode, ended.owner, ended.mode, ended.task_id, reason)
