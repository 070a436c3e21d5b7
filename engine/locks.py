"""The lock manager: who may hold which resource, in which mode, and until when.

Pure decision logic (no asyncio, no I/O, no wall clock): the sprint manager calls it synchronously
from its one event loop and journals what each call returns, so every method returns what changed.
Time comes from an injected monotonic clock, which makes every decision reproducible in tests.

The semantics follow two well-understood systems rather than inventing new ones:

* PostgreSQL's lock manager: a mode compatibility table, a FIFO wait queue per resource in which a
  newcomer may not jump an earlier conflicting waiter (so writers do not starve), locks of one owner
  never conflicting with each other, and a wait-for graph checked for deadlocks.
* etcd leases: every grant is a lease with a TTL the holder must renew, a fencing token taken from
  one global counter (so a stale holder's late write can be refused downstream), and a lock-delay
  that holds a path back for a moment after a holder vanished without releasing.

Resources are workspace-relative paths (a directory lock covers everything below it) or opaque
`name:` resources such as `db:schema`, compared verbatim.  DESIGN.md §4 is the contract.

Choices the contract leaves open, made here:

* Downgrade is its own method, `downgrade(owner, lock_id, mode)`; it keeps the lock id and token.
* An upgrade (the owner holds a weaker mode on the exact path) adds a *new* grant in the stronger
  mode beside the weaker one, as PostgreSQL does; releasing one leaves the other held.  While it
  is pending an upgrade behaves like `exclusive`, because it needs the asker to be the sole holder.
* A queued request is one unit whose paths are all checked when it is woken, including paths the
  owner already holds, and every path then gets a fresh grant carrying the request's id, so the
  caller can answer the request completely from the grants of one wake-up.
* A waiter is granted as soon as it is compatible with the holders and with every *earlier* waiter
  on an overlapping path - the same test a newcomer must pass - so a blocked waiter holds back
  exactly the later requests that conflict with it, never compatible ones.
* `release_owner` also withdraws the owner's queued requests: a dead agent must not be granted.
  `cancel` of a request that is no longer queued is a no-op, so callers may cancel them again.
* Lock-delays and expiries only take effect in `tick`, like everything else that depends on time.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Generic, Literal, NamedTuple, TypeVar

import networkx as nx

from engine.protocol import LockType
from engine.resources import LockError, _ancestors, normalise_resource, overlaps

__all__ = [
    "AcquireResult",
    "Conflict",
    "Grant",
    "LockError",
    "LockManager",
    "LockType",
    "Waiter",
    "compatible",
    "normalise_resource",
    "overlaps",
]

MODE_RANK: dict[str, int] = {"read": 0, "write": 1, "exclusive": 2}
_COMPATIBLE = frozenset({("read", "read"), ("read", "write"), ("write", "read")})


def compatible(held: LockType, asked: LockType) -> bool:
    """DESIGN §4's table: read shares with read and write; write excludes write; exclusive excludes all."""
    return (held, asked) in _COMPATIBLE


# ---------------------------------------------------------------- public records


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


@dataclass(slots=True)
class AcquireResult:
    """`granted` carries the grants (one per distinct path); `queued` and `refused` carry the conflict."""

    status: Literal["granted", "queued", "refused"]
    grants: list[Grant] = field(default_factory=list)
    conflict: Conflict | None = None
    request_id: str | None = None


# ---------------------------------------------------------------- internal records


class _Item(NamedTuple):
    path: str
    mode: LockType
    check: LockType  # the mode conflicts are judged by: exclusive for an upgrade, else `mode`


@dataclass(frozen=True, slots=True)
class _Request:
    seq: int
    request_id: str
    owner: str
    items: tuple[_Item, ...]
    ttl: float
    task_id: str | None
    since: float


class _Queued(NamedTuple):
    request: _Request
    item: _Item


@dataclass(frozen=True, slots=True)
class _Delay:
    path: str
    until: float
    ended: Grant  # the lease whose loss caused the hold-back, named in conflicts


_Obstacle = Grant | _Queued | _Delay  # what can stand in a request's way

K = TypeVar("K")
V = TypeVar("V")


class _PathIndex(Generic[K, V]):
    """Entries per resource id, plus for every directory the ids below it that have entries.

    This turns "what overlaps `p`" into dictionary look-ups along `p`'s ancestors and one set of
    descendants, instead of a scan over every lock.
    """

    def __init__(self) -> None:
        self._at: dict[str, dict[K, V]] = {}
        self._below: dict[str, set[str]] = {}

    def at(self, path: str) -> dict[K, V] | None:
        return self._at.get(path)

    def put(self, path: str, key: K, value: V) -> None:
        bucket = self._at.get(path)
        if bucket is None:
            bucket = self._at[path] = {}
            for ancestor in _ancestors(path):
                below = self._below.get(ancestor)
                if below is None:
                    below = self._below[ancestor] = set()
                below.add(path)
        bucket[key] = value

    def pop(self, path: str, key: K) -> None:
        bucket = self._at[path]
        del bucket[key]
        if bucket:
            return
        del self._at[path]
        for ancestor in _ancestors(path):
            below = self._below[ancestor]
            below.discard(path)
            if not below:
                del self._below[ancestor]

    def covering(self, path: str) -> list[V]:
        """Entries on `path` and on the directories above it (not those below)."""
        at = self._at
        if not at:
            return []
        found = list(at[path].values()) if path in at else []
        for ancestor in _ancestors(path):
            bucket = at.get(ancestor)
            if bucket:
                found.extend(bucket.values())
        return found

    def overlapping(self, path: str) -> list[V]:
        """Entries on `path`, on the directories above it and on the paths below it."""
        at = self._at
        found: list[V] = []
        if not at:
            return found
        bucket = at.get(path)
        if bucket:
            found.extend(bucket.values())
        for ancestor in _ancestors(path):
            bucket = at.get(ancestor)
            if bucket:
                found.extend(bucket.values())
        for below in self._below.get(path, ()):
            found.extend(at[below].values())
        return found


# ---------------------------------------------------------------- the manager


class LockManager:
    """Grants, queues and refuses lock requests; see the module docstring for the rules."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        default_ttl: float = 30.0,
        lock_delay: float = 1.0,
    ) -> None:
        if not (math.isfinite(default_ttl) and default_ttl > 0):
            raise ValueError(f"default_ttl must be a positive number of seconds, not {default_ttl!r}")
        if not (math.isfinite(lock_delay) and lock_delay >= 0):
            raise ValueError(f"lock_delay must be zero or more seconds, not {lock_delay!r}")
        self._clock = clock
        self._default_ttl = float(default_ttl)
        self._lock_delay = float(lock_delay)
        self._next_token = 1
        self._reset()

    def _reset(self) -> None:
        self._grants: dict[str, Grant] = {}  # lock id -> grant, in token order
        self._holders: _PathIndex[str, Grant] = _PathIndex()
        self._by_owner: dict[str, dict[str, None]] = {}  # owner -> its lock ids (an ordered set)
        self._deadlines: list[tuple[float, int, str]] = []  # lease expiries, stale entries skipped
        self._delays: _PathIndex[str, _Delay] = _PathIndex()
        self._delay_of: dict[str, _Delay] = {}  # ended lock id -> its hold-back
        self._queue: dict[int, _Request] = {}  # seq -> request, in arrival order
        self._waiting: _PathIndex[tuple[int, int], _Queued] = _PathIndex()
        self._request_seq: dict[str, int] = {}
        self._next_seq = 1

    # ------------------------------------------------------------ acquire

    def acquire(
        self,
        owner: str,
        requests: Sequence[tuple[str, LockType]],
        *,
        ttl: float | None = None,
        wait: bool = False,
        request_id: str | None = None,
        task_id: str | None = None,
    ) -> AcquireResult:
        """Grant every path at once, or queue the request as one unit (`wait`), or refuse it.

        Re-asking for a mode already held (or a weaker one) returns the existing grant unchanged;
        it does not renew it.  A queued result carries those re-asked grants in `grants`; the
        grants made when it is woken cover only the other paths.
        """
        _check_owner(owner)
        ttl = self._lease_ttl(ttl)
        if request_id is not None and request_id in self._request_seq:
            raise LockError(f"request id {request_id!r} is already queued")
        items, reused = self._items(owner, requests)
        fresh = [item for item in items if item.path not in reused]
        conflict = self._first_conflict(owner, fresh, before=None)
        if conflict is None:
            now = self._clock()
            grants = [
                reused.get(item.path) or self._grant(owner, item, ttl, now, task_id, request_id) for item in items
            ]
            return AcquireResult("granted", grants, None, request_id)
        if not wait:
            return AcquireResult("refused", [], conflict, request_id)
        # Paths already held (re-asked) are satisfied now: the unit waits only for the others, and
        # the held grants come back at once so the caller keeps counting on them.
        result = self._enqueue(owner, fresh, ttl, task_id, request_id, conflict)
        if result.status == "queued":
            result.grants = [reused[item.path] for item in items if item.path in reused]
        return result

    def _items(self, owner: str, requests: Sequence[tuple[str, LockType]]) -> tuple[list[_Item], dict[str, Grant]]:
        """Normalise and merge the asked paths; find those already held (reentrant) and upgrades.

        Returns the items in request order and, per reentrant path, the existing grant to return.
        """
        merged: dict[str, LockType] = {}
        for resource_id, mode in requests:
            if mode not in MODE_RANK:
                raise LockError(f"lock mode {mode!r} for {resource_id!r} is not one of read, write, exclusive")
            path = normalise_resource(resource_id)
            if path not in merged or MODE_RANK[mode] > MODE_RANK[merged[path]]:
                merged[path] = mode
        if not merged:
            raise LockError(f"{owner!r} asked for no resources")
        items: list[_Item] = []
        reused: dict[str, Grant] = {}
        for path, mode in merged.items():
            held = self._holders.at(path)
            own = [g for g in held.values() if g.owner == owner] if held else None
            if not own:
                items.append(_Item(path, mode, mode))
                continue
            enough = sorted((g for g in own if MODE_RANK[g.mode] >= MODE_RANK[mode]), key=_mode_rank)
            if enough:  # re-asking: the weakest grant that satisfies it
                reused[path] = enough[0]
            items.append(_Item(path, mode, mode if enough else "exclusive"))
        return items, reused

    def _enqueue(
        self,
        owner: str,
        items: list[_Item],
        ttl: float,
        task_id: str | None,
        request_id: str | None,
        conflict: Conflict,
    ) -> AcquireResult:
        """Queue the request unless waiting would close a wait-for cycle; then refuse it instead."""
        seq = self._next_seq
        queued_id = request_id or self._new_request_id(seq)
        request = _Request(seq, queued_id, owner, tuple(items), ttl, task_id, self._clock())
        deadlock = self._deadlock_if_queued(request)
        if deadlock is not None:
            return AcquireResult("refused", [], deadlock, request_id)
        self._next_seq += 1
        self._queue[seq] = request
        self._request_seq[queued_id] = seq
        for index, item in enumerate(request.items):
            self._waiting.put(item.path, (seq, index), _Queued(request, item))
        return AcquireResult("queued", [], conflict, queued_id)

    def _new_request_id(self, seq: int) -> str:
        request_id = f"R{seq}"
        while request_id in self._request_seq:
            request_id += "'"
        return request_id

    # ------------------------------------------------------------ conflicts

    def _first_conflict(self, owner: str, items: Iterable[_Item], before: int | None) -> Conflict | None:
        for item, obstacle in self._obstacles(owner, items, before):
            return _explain(item, obstacle)
        return None

    def _obstacles(self, owner: str, items: Iterable[_Item], before: int | None) -> Iterator[tuple[_Item, _Obstacle]]:
        """Everything standing in the way of `items`, unexplained (formatting a reason costs more than finding it).

        An obstacle is a conflicting holder, a lock-delay, or an earlier conflicting waiter of
        another owner.  `before` limits the waiters considered to those queued before that
        sequence number; None means all of them (a newcomer comes after every waiter).
        """
        for item in items:
            for grant in self._holders.overlapping(item.path):
                if grant.owner != owner and (grant.mode, item.check) not in _COMPATIBLE:
                    yield item, grant
            if self._delay_of:
                for delay in self._delays.overlapping(item.path):
                    yield item, delay
            if self._queue:
                for queued in self._waiting.overlapping(item.path):
                    ahead = queued.request
                    if (
                        (before is None or ahead.seq < before)
                        and ahead.owner != owner
                        and (queued.item.check, item.check) not in _COMPATIBLE
                    ):
                        yield item, queued

    def _blocking_owners(
        self, owner: str, items: Iterable[_Item], before: int | None
    ) -> dict[str, tuple[_Item, _Obstacle]]:
        """The owners `items` would wait on, each with its first obstacle (a lock-delay waits on nobody)."""
        found: dict[str, tuple[_Item, _Obstacle]] = {}
        for item, obstacle in self._obstacles(owner, items, before):
            blocker = _owner_of(obstacle)
            if blocker is not None and blocker not in found:
                found[blocker] = (item, obstacle)
        return found

    # ------------------------------------------------------------ deadlock

    def wait_for_graph(self) -> nx.DiGraph:
        """Owner -> owner it waits on (a conflicting holder or an earlier conflicting waiter)."""
        return self._wait_for_graph(request.owner for request in self._queue.values())

    def _wait_for_graph(self, start: Iterable[str]) -> nx.DiGraph:
        """The part of the wait-for graph reachable from the `start` owners (all of it if all waiters)."""
        waiting: dict[str, list[_Request]] = {}
        for request in self._queue.values():
            waiting.setdefault(request.owner, []).append(request)
        graph = nx.DiGraph()
        frontier = deque(dict.fromkeys(start))
        seen = set(frontier)
        while frontier:
            owner = frontier.popleft()
            for request in waiting.get(owner, ()):
                for blocker, (item, _) in self._blocking_owners(owner, request.items, request.seq).items():
                    graph.add_edge(owner, blocker, resource_id=item.path)
                    if blocker not in seen:
                        seen.add(blocker)
                        frontier.append(blocker)
        return graph

    def _deadlock_if_queued(self, request: _Request) -> Conflict | None:
        """The refusal to give if queueing `request` would close a cycle, else None.

        The graph is acyclic before (every queueing is checked and grants never add a wait), so a
        new cycle must run through the asker: it exists when the asker can be reached from an
        owner it would wait on.  Only that reachable part is built, and only when a request is
        about to queue; nothing is built when the asker holds nothing and waits for nothing.
        """
        blockers = self._blocking_owners(request.owner, request.items, None)
        if not blockers or not self._may_be_waited_on(request.owner):
            return None
        graph = self._wait_for_graph(blockers)
        if request.owner not in graph:
            return None
        for blocker, (item, obstacle) in blockers.items():
            if blocker in graph and nx.has_path(graph, blocker, request.owner):
                cycle = [request.owner, *nx.shortest_path(graph, blocker, request.owner)]
                conflict = _explain(item, obstacle)
                reason = f"deadlock: waiting would close the wait-for cycle {' -> '.join(cycle)}; " + conflict.reason
                return replace(conflict, reason=reason)
        return None

    def _may_be_waited_on(self, owner: str) -> bool:
        return owner in self._by_owner or any(request.owner == owner for request in self._queue.values())

    # ------------------------------------------------------------ grants and wake-ups

    def _grant(
        self,
        owner: str,
        item: _Item,
        ttl: float,
        now: float,
        task_id: str | None,
        request_id: str | None,
    ) -> Grant:
        token = self._next_token
        self._next_token += 1
        lock_id = f"L{token}"
        while lock_id in self._grants:  # only after restoring ids minted elsewhere
            lock_id += "'"
        grant = _mint_grant(lock_id, token, owner, item.path, item.mode, ttl, now, now + ttl, task_id, request_id)
        self._store(grant)
        owned = self._by_owner.get(owner)
        if owned is None:
            owned = self._by_owner[owner] = {}
        owned[lock_id] = None
        return grant

    def _store(self, grant: Grant) -> None:
        """Record a new or changed grant and its deadline."""
        self._grants[grant.lock_id] = grant
        self._holders.put(grant.resource_id, grant.lock_id, grant)
        heapq.heappush(self._deadlines, (grant.expires_at, grant.token, grant.lock_id))
        if len(self._deadlines) > 2 * len(self._grants) + 64:
            self._deadlines = [(g.expires_at, g.token, g.lock_id) for g in self._grants.values()]
            heapq.heapify(self._deadlines)

    def _drop(self, grant: Grant) -> None:
        del self._grants[grant.lock_id]
        self._holders.pop(grant.resource_id, grant.lock_id)
        owned = self._by_owner[grant.owner]
        del owned[grant.lock_id]
        if not owned:
            del self._by_owner[grant.owner]

    def _dequeue(self, request: _Request) -> None:
        del self._queue[request.seq]
        del self._request_seq[request.request_id]
        for index, item in enumerate(request.items):
            self._waiting.pop(item.path, (request.seq, index))

    def _hold_back(self, ended: Grant, now: float) -> None:
        if self._lock_delay > 0:
            delay = _Delay(ended.resource_id, now + self._lock_delay, ended)
            self._delays.put(ended.resource_id, ended.lock_id, delay)
            self._delay_of[ended.lock_id] = delay

    def _wake(self, paths: Iterable[str]) -> list[Grant]:
        """Grant, in arrival order, every waiter on these paths that has become grantable.

        A waiter is examined only after every earlier one, and granting or removing one can only
        unblock later waiters on overlapping paths, which are then examined too.
        """
        if not self._queue:
            return []
        pending = sorted({q.request.seq for path in set(paths) for q in self._waiting.overlapping(path)})
        seen = set(pending)
        woken: list[Grant] = []
        now = self._clock()
        while pending:
            seq = heapq.heappop(pending)
            request = self._queue[seq]
            if self._first_conflict(request.owner, request.items, before=seq) is not None:
                continue
            self._dequeue(request)
            for item in request.items:
                woken.append(self._grant(request.owner, item, request.ttl, now, request.task_id, request.request_id))
            for item in request.items:
                for queued in list(self._waiting.overlapping(item.path)):
                    later = queued.request.seq
                    if later > seq and later not in seen:
                        seen.add(later)
                        heapq.heappush(pending, later)
        return woken

    # ------------------------------------------------------------ release, renew, expire

    def release(self, owner: str, lock_id: str, *, operator: bool = False) -> list[Grant]:
        """Free a lock at once (no lock-delay); only its holder may, unless `operator` says otherwise.

        Returns the grants made to waiters woken by the release.
        """
        grant = self._grants.get(lock_id)
        if grant is None:
            raise LockError(f"lock id {lock_id!r} is not held")
        if grant.owner != owner and not operator:
            raise LockError(f"{owner!r} may not release lock {lock_id!r}: it is held by {grant.owner!r}")
        self._drop(grant)
        return self._wake([grant.resource_id])

    def release_owner(self, owner: str, *, delay: bool) -> tuple[list[Grant], list[Grant]]:
        """Free everything `owner` holds and withdraw its queued requests: (released, woken).

        `delay=True` (a dead or vanished agent, which may still be writing) holds each path back
        for lock_delay; `delay=False` (an orderly exit) frees them at once.
        """
        now = self._clock()
        released = [self._grants[lock_id] for lock_id in list(self._by_owner.get(owner, ()))]
        for grant in released:
            self._drop(grant)
            if delay:
                self._hold_back(grant, now)
        withdrawn = [request for request in self._queue.values() if request.owner == owner]
        for request in withdrawn:
            self._dequeue(request)
        paths = [g.resource_id for g in released] + [i.path for r in withdrawn for i in r.items]
        return released, self._wake(paths)

    def renew(self, owner: str) -> list[Grant]:
        """Extend every lease of `owner` to its ttl from now (a heartbeat); returns the renewed grants."""
        now = self._clock()
        renewed = []
        for lock_id in self._by_owner.get(owner, ()):
            grant = self._grants[lock_id]
            grant = replace(grant, expires_at=now + grant.ttl)
            self._store(grant)
            renewed.append(grant)
        return renewed

    def downgrade(self, owner: str, lock_id: str, mode: LockType) -> tuple[Grant, list[Grant]]:
        """Weaken a held lock in place (same lock id and token) and wake whoever that lets in.

        Atomic: the path is never unlocked in between, so nobody can slip in ahead of the holder.
        Returns (the changed grant, grants made to woken waiters).
        """
        grant = self._grants.get(lock_id)
        if grant is None:
            raise LockError(f"lock id {lock_id!r} is not held")
        if grant.owner != owner:
            raise LockError(f"{owner!r} may not downgrade lock {lock_id!r}: it is held by {grant.owner!r}")
        if mode not in MODE_RANK or MODE_RANK[mode] > MODE_RANK[grant.mode]:
            raise LockError(f"cannot downgrade lock {lock_id!r} from {grant.mode} to {mode!r}; acquire to upgrade")
        if mode == grant.mode:
            return grant, []
        weaker = replace(grant, mode=mode)
        self._grants[lock_id] = weaker
        self._holders.put(weaker.resource_id, lock_id, weaker)
        return weaker, self._wake([weaker.resource_id])

    def tick(self) -> tuple[list[Grant], list[Grant]]:
        """Expire due leases (expires_at <= now, never earlier), end due lock-delays, wake waiters.

        Returns (expired, woken).  An expired path is held back for lock_delay before anyone is woken.
        """
        now = self._clock()
        expired: list[Grant] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            due, _, lock_id = heapq.heappop(self._deadlines)
            grant = self._grants.get(lock_id)
            if grant is not None and grant.expires_at == due:
                self._drop(grant)
                self._hold_back(grant, now)
                expired.append(grant)
        ended = [d for d in self._delay_of.values() if d.until <= now]
        for delay in ended:
            del self._delay_of[delay.ended.lock_id]
            self._delays.pop(delay.path, delay.ended.lock_id)
        return expired, self._wake([g.resource_id for g in expired] + [d.path for d in ended])

    def cancel(self, request_id: str) -> list[Grant]:
        """Withdraw a queued request (e.g. its waitMs ran out); returns grants to waiters it held back.

        Idempotent: a request that is no longer queued (granted, cancelled, or withdrawn by
        `release_owner`) is left alone and [] returned, so a caller tidying up after a dead agent
        need not know which of its requests `release_owner` already withdrew.
        """
        seq = self._request_seq.get(request_id)
        if seq is None:
            return []
        request = self._queue[seq]
        self._dequeue(request)
        return self._wake([item.path for item in request.items])

    def next_deadline(self) -> float | None:
        """When `tick` next has work: the earliest lease expiry or lock-delay end, or None."""
        while self._deadlines and self._is_stale(self._deadlines[0]):
            heapq.heappop(self._deadlines)
        times = [d.until for d in self._delay_of.values()]
        if self._deadlines:
            times.append(self._deadlines[0][0])
        return min(times, default=None)

    def _is_stale(self, entry: tuple[float, int, str]) -> bool:
        grant = self._grants.get(entry[2])
        return grant is None or grant.expires_at != entry[0]

    # ------------------------------------------------------------ restart

    def restore(self, grants: Iterable[Grant], next_token: int) -> None:
        """Rebuild the held locks after a restart, extending each lease by a full ttl from now.

        The TTL is a lower bound, so a holder must not lose a lock because the manager was down.
        Queues and lock-delays are not restored (waiters re-ask).  Tokens continue above both
        `next_token` and every restored token, so none is ever reused.
        """
        now = self._clock()
        restored = sorted(grants, key=lambda g: g.token)
        self._next_token = max(self._next_token, next_token, *(g.token + 1 for g in restored))
        self._reset()
        for grant in restored:
            self._check_restorable(grant)
            self._store(replace(grant, expires_at=now + grant.ttl))
            self._by_owner.setdefault(grant.owner, {})[grant.lock_id] = None

    def _check_restorable(self, grant: Grant) -> None:
        if normalise_resource(grant.resource_id) != grant.resource_id:
            raise LockError(f"restored lock {grant.lock_id!r} has a non-normalised resource id {grant.resource_id!r}")
        if grant.lock_id in self._grants:
            raise LockError(f"restored lock id {grant.lock_id!r} appears twice")
        for other in self._holders.overlapping(grant.resource_id):
            if other.owner != grant.owner and not compatible(other.mode, grant.mode):
                raise LockError(
                    f"restored lock {grant.lock_id!r} conflicts with {other.lock_id!r} held by {other.owner!r}"
                )

    # ------------------------------------------------------------ queries

    def covering(self, resource_id: str) -> list[Grant]:
        """Grants whose lock covers `resource_id`: on it or on a directory above it."""
        path = normalise_resource(resource_id)
        return sorted(self._holders.covering(path), key=lambda g: g.token)

    def waiters(self, resource_id: str | None = None) -> list[Waiter]:
        """Queued paths in queue order, all of them or those overlapping `resource_id`."""
        path = None if resource_id is None else normalise_resource(resource_id)
        return [
            Waiter(request.request_id, request.owner, item.path, item.mode, request.since, request.task_id)
            for request in self._queue.values()
            for item in request.items
            if path is None or overlaps(path, item.path)
        ]

    def grants(self) -> list[Grant]:
        """Every live grant, in token order."""
        return list(self._grants.values())

    def grants_of(self, owner: str) -> list[Grant]:
        """The live grants of one owner, in token order."""
        return [self._grants[lock_id] for lock_id in self._by_owner.get(owner, ())]

    def get(self, lock_id: str) -> Grant | None:
        """The live grant with this id, or None (released, expired or never granted)."""
        return self._grants.get(lock_id)

    def _lease_ttl(self, ttl: float | None) -> float:
        if ttl is None:
            return self._default_ttl
        if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
            raise LockError(f"lease ttl must be a positive number of seconds, not {ttl!r}")
        return float(ttl)


# ---------------------------------------------------------------- helpers


def _mint_grant(
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


def _mode_rank(grant: Grant) -> int:
    return MODE_RANK[grant.mode]


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner:
        raise LockError(f"lock owner {owner!r} must be a non-empty string")


def _owner_of(obstacle: _Obstacle) -> str | None:
    """Whom an obstacle makes the asker wait on; nobody for a lock-delay, which ends by itself."""
    if isinstance(obstacle, Grant):
        return obstacle.owner
    if isinstance(obstacle, _Queued):
        return obstacle.request.owner
    return None


def _explain(item: _Item, obstacle: _Obstacle) -> Conflict:
    if isinstance(obstacle, Grant):
        return _held_conflict(item, obstacle)
    if isinstance(obstacle, _Queued):
        return _queued_conflict(item, obstacle)
    return _delay_conflict(item, obstacle)


def _held_conflict(item: _Item, grant: Grant) -> Conflict:
    reason = f"{grant.resource_id!r} is held in {grant.mode} mode by {grant.owner!r} (lock {grant.lock_id})"
    if item.check != item.mode:
        reason += "; an upgrade needs the asker to be the sole holder"
    return Conflict(item.path, item.mode, grant.owner, grant.mode, grant.task_id, reason)


def _queued_conflict(item: _Item, queued: _Queued) -> Conflict:
    ahead = queued.request
    reason = (
        f"{ahead.owner!r} queued earlier for {queued.item.mode} on {queued.item.path!r} "
        f"(request {ahead.request_id}) and may not be overtaken"
    )
    return Conflict(item.path, item.mode, ahead.owner, queued.item.mode, ahead.task_id, reason)


def _delay_conflict(item: _Item, delay: _Delay) -> Conflict:
    ended = delay.ended
    reason = (
        f"{delay.path!r} is held back until t={delay.until:.3f} (lock-delay after {ended.owner!r} "
        f"lost lock {ended.lock_id} without releasing it)"
    )
    return Conflict(item.path, item.mode, ended.owner, ended.mode, ended.task_id, reason)
