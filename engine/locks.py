"""The lock manager: who may hold which resource, in which mode, and until when.

Pure decision logic (no asyncio, no I/O, no wall clock) on an injected monotonic clock, so every
decision is reproducible in tests.  Every change is split in two, so that the lock desk can
journal a decision before it takes effect: `decide` says what a request would get and changes
nothing; `commit` carries it out.  Likewise `wakeups` yields, one at a time, the queued requests
a release made grantable, each committed (or withdrawn) before the next is judged.  `acquire`,
`release`, `tick` ... compose those steps, for callers with nothing to record in between.

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
* A queued request is one unit: woken, all its paths are checked and get fresh grants (its id).
* A waiter is granted once compatible with the holders and every *earlier* waiter on an
  overlapping path (a newcomer's test), so a blocked waiter holds back only conflicting ones.
* `release_owner` also withdraws the owner's queued requests: a dead agent must not be granted.
  `withdraw` of a request that is no longer queued is a no-op, so callers may withdraw again.
* Lock-delays and expiries take effect only when asked (`due`, `tick`), as all that depends on time.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.deadlock import deadlock_if_queued, wait_for_graph
from engine.leases import Leases
from engine.lock_holders import Holders
from engine.lock_queue import WaitQueue
from engine.lock_records import (
    COMPATIBLE,
    MODE_RANK,
    AcquireResult,
    Conflict,
    Grant,
    HoldBack,
    Item,
    Obstacle,
    QueuedRequest,
    Waiter,
    compatible,
    explain,
    mint_grant,
    merge_requests,
    owner_of,
)
from engine.payloads import LockType
from engine.resources import LockError, normalise_resource, overlaps

if TYPE_CHECKING:
    from networkx import DiGraph

__all__ = ["AcquireResult", "Conflict", "Grant", "LockError", "LockManager", "Waiter", "normalise_resource"]


class LockManager:
    """Grants, queues and refuses lock requests; see the module docstring for the rules."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, default_ttl: float = 30.0,
                 lock_delay: float = 1.0) -> None:
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
        self._holders = Holders()
        self._leases = Leases()
        self._queue = WaitQueue()

    # ------------------------------------------------------------ deciding a request

    def decide(self, owner: str, requests: Sequence[tuple[str, LockType]], *, ttl: float | None = None,
               wait: bool = False, request_id: str | None = None, task_id: str | None = None) -> AcquireResult:
        """What the request gets - every path at once, a place in the queue (`wait`), or a refusal -
        without changing anything; `commit` carries it out.

        Re-asking for a mode already held (or a weaker one) returns the existing grant unchanged;
        it does not renew it.  A queued result carries those re-asked grants in `grants`; the
        grants made when it is woken cover only the other paths.  Raises LockError for a request
        that cannot be considered at all (a bad id or mode, an id already queued).
        """
        _check_owner(owner)
        ttl = self._lease_ttl(ttl)
        if request_id is not None and self._queue.holds(request_id):
            raise LockError(f"request id {request_id!r} is already queued")
        items, reused = self._items(owner, requests)
        fresh = [item for item in items if item.path not in reused]
        conflict = self._first_conflict(owner, fresh, before=None)
        if conflict is None:
            return self._granted(owner, items, reused, ttl, task_id, request_id)
        if not wait:
            return AcquireResult("refused", [], conflict, request_id)
        # Paths already held (re-asked) are satisfied now: the unit waits only for the others, and
        # the held grants come back at once so the caller keeps counting on them.
        result = self._queue_or_refuse(owner, fresh, ttl, task_id, request_id, conflict)
        if result.status == "queued":
            result.grants = [reused[item.path] for item in items if item.path in reused]
        return result

    def _granted(self, owner: str, items: list[Item], reused: dict[str, Grant], ttl: float,
                 task_id: str | None, request_id: str | None) -> AcquireResult:
        now = self._clock()
        token = self._next_token
        grants, fresh = [], []
        for item in items:
            grant = reused.get(item.path)
            if grant is None:
                grant = self._mint(owner, item, ttl, now, task_id, request_id, token)
                token += 1
                fresh.append(grant)
            grants.append(grant)
        return AcquireResult("granted", grants, None, request_id, fresh)

    def _mint(self, owner: str, item: Item, ttl: float, now: float, task_id: str | None,
              request_id: str | None, token: int) -> Grant:
        lock_id = f"L{token}"
        while lock_id in self._holders.by_id:  # only after restoring ids minted elsewhere
            lock_id += "'"
        return mint_grant(lock_id, token, owner, item.path, item.mode, ttl, now, now + ttl, task_id, request_id)

    def _items(self, owner: str, requests: Sequence[tuple[str, LockType]]) -> tuple[list[Item], dict[str, Grant]]:
        """Normalise and merge the asked paths; find those already held (reentrant) and upgrades.

        Returns the items in request order and, per reentrant path, the existing grant to return.
        """
        merged = merge_requests(owner, requests)
        items: list[Item] = []
        reused: dict[str, Grant] = {}
        for path, mode in merged.items():
            held = self._holders.at(path)
            own = [g for g in held.values() if g.owner == owner] if held else None
            if not own:
                items.append(Item(path, mode, mode))
                continue
            enough = sorted((g for g in own if MODE_RANK[g.mode] >= MODE_RANK[mode]), key=_mode_rank)
            if enough:  # re-asking: the weakest grant that satisfies it
                reused[path] = enough[0]
            items.append(Item(path, mode, mode if enough else "exclusive"))
        return items, reused

    def _queue_or_refuse(self, owner: str, items: list[Item], ttl: float, task_id: str | None,
                         request_id: str | None, conflict: Conflict) -> AcquireResult:
        """A place in the queue, unless waiting would close a wait-for cycle; then a refusal."""
        seq = self._queue.next_seq
        queued_id = request_id or self._queue.new_request_id(seq)
        request = QueuedRequest(seq, queued_id, owner, tuple(items), ttl, task_id, self._clock())
        deadlock = deadlock_if_queued(request, self._queue, self._blocking_owners, self._may_be_waited_on(owner))
        if deadlock is not None:
            return AcquireResult("refused", [], deadlock, request_id)
        return AcquireResult("queued", [], conflict, queued_id, queued=request)

    # ------------------------------------------------------------ carrying a decision out

    def commit(self, result: AcquireResult) -> None:
        """Carry out a decision of `decide` or `wakeups`, which must be the latest one made.

        A decision taken on a state that has changed since (another commit in between) is
        refused with LockError rather than carried out on assumptions that no longer hold.
        """
        if result.status == "queued" and result.queued is not None:
            self._queue.put(result.queued)
        if result.status != "granted":
            return
        fresh = result.fresh
        if fresh and fresh[0].token != self._next_token:
            raise LockError(f"a stale decision: token {fresh[0].token} was decided, {self._next_token} is next")
        woken = result.queued
        if woken is not None:  # a queued request granted by `wakeups`: it leaves the queue
            if self._queue.get(woken.seq) is not woken:
                raise LockError(f"a stale decision: request {woken.request_id} is no longer queued")
            self._queue.remove(woken)
        holders, leases = self._holders, self._leases
        for grant in fresh:
            holders.add(grant)
            leases.track(grant, holders.by_id)
        if fresh:
            self._next_token = fresh[-1].token + 1

    def acquire(self, owner: str, requests: Sequence[tuple[str, LockType]], *, ttl: float | None = None,
                wait: bool = False, request_id: str | None = None, task_id: str | None = None) -> AcquireResult:
        """`decide` and `commit` in one step: grant every path at once, queue the request, or refuse it."""
        result = self.decide(owner, requests, ttl=ttl, wait=wait, request_id=request_id, task_id=task_id)
        self.commit(result)
        return result

    # ------------------------------------------------------------ conflicts

    def _first_conflict(self, owner: str, items: Iterable[Item], before: int | None) -> Conflict | None:
        for item, obstacle in self._obstacles(owner, items, before):
            return explain(item, obstacle)
        return None

    def _obstacles(self, owner: str, items: Iterable[Item], before: int | None) -> Iterator[tuple[Item, Obstacle]]:
        """Everything standing in the way of `items`, unexplained (formatting a reason costs more than finding it).

        An obstacle is a conflicting holder, a lock-delay, or an earlier conflicting waiter of
        another owner.  `before` limits the waiters considered to those queued before that
        sequence number; None means all of them (a newcomer comes after every waiter).
        """
        for item in items:
            for grant in self._holders.overlapping(item.path):
                if grant.owner != owner and (grant.mode, item.check) not in COMPATIBLE:
                    yield item, grant
            if self._leases.holding:
                for delay in self._leases.holding_back(item.path):
                    yield item, delay
            if self._queue.requests:
                for queued in self._queue.overlapping(item.path):
                    ahead = queued.request
                    if (
                        (before is None or ahead.seq < before)
                        and ahead.owner != owner
                        and (queued.item.check, item.check) not in COMPATIBLE
                    ):
                        yield item, queued

    def _blocking_owners(self, owner: str, items: Iterable[Item], before: int | None) -> dict[str, tuple[Item, Obstacle]]:
        """The owners `items` would wait on, each with its first obstacle (a lock-delay waits on nobody)."""
        found: dict[str, tuple[Item, Obstacle]] = {}
        for item, obstacle in self._obstacles(owner, items, before):
            blocker = owner_of(obstacle)
            if blocker is not None and blocker not in found:
                found[blocker] = (item, obstacle)
        return found

    # ------------------------------------------------------------ deadlock

    def wait_for_graph(self) -> DiGraph[str]:
        """Owner -> owner it waits on (a conflicting holder or an earlier conflicting waiter)."""
        return wait_for_graph(self._queue, self._blocking_owners, (request.owner for request in self._queue))

    def _may_be_waited_on(self, owner: str) -> bool:
        return self._holders.holds_any(owner) or owner in self._queue.owners()

    # ------------------------------------------------------------ grants, queue, hold-backs

    def drop(self, grant: Grant, *, hold_back: bool = False) -> None:
        """End a grant (commit a release); `hold_back` keeps its path from others for lock_delay.

        Nobody is woken: `wakeups` (or `wake`) over the grant's path does that.
        """
        self._holders.remove(grant)
        if hold_back and self._lock_delay > 0:
            self._leases.hold_back(grant, self._clock() + self._lock_delay)

    def withdraw(self, request_id: str) -> list[str]:
        """Take a queued request out of the queue; the paths it waited on ([] if it was not queued).

        Nobody is woken: `wakeups` over those paths does that.
        """
        return self._queue.withdraw(request_id)

    def wakeups(self, paths: Iterable[str]) -> Iterator[AcquireResult]:
        """In arrival order, a granted decision for each queued request on these paths that has
        become grantable; each must be committed or withdrawn before the next is asked for.

        A waiter is examined only after every earlier one, and granting or removing one can only
        unblock later waiters on overlapping paths, which are then examined too.
        """
        if not self._queue.requests:
            return
        pending = sorted({q.request.seq for path in set(paths) for q in self._queue.overlapping(path)})
        seen = set(pending)
        while pending:
            seq = heapq.heappop(pending)
            request = self._queue.get(seq)
            if request is None or self._first_conflict(request.owner, request.items, before=seq) is not None:
                continue
            now, token = self._clock(), self._next_token
            grants = []
            for item in request.items:
                grants.append(self._mint(request.owner, item, request.ttl, now, request.task_id, request.request_id, token))
                token += 1
            yield AcquireResult("granted", grants, None, request.request_id, list(grants), request)
            if self._queue.get(seq) is not None:
                raise LockError(f"wake-up of request {request.request_id} was neither committed nor withdrawn")
            for item in request.items:
                for queued in list(self._queue.overlapping(item.path)):
                    later = queued.request.seq
                    if later > seq and later not in seen:
                        seen.add(later)
                        heapq.heappush(pending, later)

    def wake(self, paths: Iterable[str]) -> list[Grant]:
        """Commit every wake-up over these paths; the grants made."""
        woken: list[Grant] = []
        if not self._queue.requests:
            return woken
        for result in self.wakeups(paths):
            self.commit(result)
            woken += result.grants
        return woken

    # ------------------------------------------------------------ release, renew, expire

    def releasable(self, owner: str, lock_id: str, *, operator: bool = False) -> Grant:
        """The grant `owner` may release (anyone, as `operator`); LockError saying why not."""
        grant = self._holders.get(lock_id)
        if grant is None:
            raise LockError(f"lock id {lock_id!r} is not held")
        if grant.owner != owner and not operator:
            raise LockError(f"{owner!r} may not release lock {lock_id!r}: it is held by {grant.owner!r}")
        return grant

    def release(self, owner: str, lock_id: str, *, operator: bool = False) -> list[Grant]:
        """Free a lock at once (no lock-delay); only its holder may, unless `operator` says otherwise.

        Returns the grants made to waiters woken by the release.
        """
        grant = self.releasable(owner, lock_id, operator=operator)
        self.drop(grant)
        return self.wake([grant.resource_id])

    def requests_of(self, owner: str) -> list[str]:
        """The ids of `owner`'s queued requests, in arrival order."""
        return self._queue.requests_of(owner)

    def release_owner(self, owner: str, *, delay: bool) -> tuple[list[Grant], list[Grant]]:
        """Free everything `owner` holds and withdraw its queued requests: (released, woken).

        `delay=True` (a dead or vanished agent, which may still be writing) holds each path back
        for lock_delay; `delay=False` (an orderly exit) frees them at once.
        """
        released = self.grants_of(owner)
        paths = [grant.resource_id for grant in released]
        for grant in released:
            self.drop(grant, hold_back=delay)
        for request_id in self.requests_of(owner):
            paths += self.withdraw(request_id)
        return released, self.wake(paths)

    def renewal(self, owner: str) -> list[Grant]:
        """Every lease of `owner` extended to its ttl from now, not yet stored (`store_renewal`)."""
        now = self._clock()
        return [replace(grant, expires_at=now + grant.ttl) for grant in self._holders.of(owner)]

    def store_renewal(self, renewed: Iterable[Grant]) -> None:
        for grant in renewed:
            if grant.lock_id in self._holders:
                self._holders.update(grant)
                self._leases.track(grant, self._holders.by_id)

    def renew(self, owner: str) -> list[Grant]:
        """Extend every lease of `owner` to its ttl from now (a heartbeat); returns the renewed grants."""
        renewed = self.renewal(owner)
        self.store_renewal(renewed)
        return renewed

    def downgrade(self, owner: str, lock_id: str, mode: LockType) -> tuple[Grant, list[Grant]]:
        """Weaken a held lock in place (same lock id and token) and wake whoever that lets in.

        Atomic: the path is never unlocked in between, so nobody can slip in ahead of the holder.
        Returns (the changed grant, grants made to woken waiters).
        """
        grant = self._holders.get(lock_id)
        if grant is None:
            raise LockError(f"lock id {lock_id!r} is not held")
        if grant.owner != owner:
            raise LockError(f"{owner!r} may not downgrade lock {lock_id!r}: it is held by {grant.owner!r}")
        if mode not in MODE_RANK or MODE_RANK[mode] > MODE_RANK[grant.mode]:
            raise LockError(f"cannot downgrade lock {lock_id!r} from {grant.mode} to {mode!r}; acquire to upgrade")
        if mode == grant.mode:
            return grant, []
        weaker = replace(grant, mode=mode)
        self._holders.update(weaker)
        return weaker, self.wake([weaker.resource_id])

    def due(self) -> tuple[list[Grant], list[HoldBack]]:
        """Leases that have run out (expires_at <= now, never earlier) and lock-delays that have
        ended, without changing anything; `drop` and `end_delay` carry them out."""
        now = self._clock()
        return self._leases.expired(now, self._holders.by_id), self._leases.ended(now)

    def end_delay(self, delay: HoldBack) -> None:
        self._leases.end(delay)

    def tick(self) -> tuple[list[Grant], list[Grant]]:
        """Expire due leases, end due lock-delays, wake waiters: (expired, woken).

        An expired path is held back for lock_delay before anyone is woken.
        """
        expired, ended = self.due()
        for grant in expired:
            self.drop(grant, hold_back=True)
        for delay in ended:
            self.end_delay(delay)
        return expired, self.wake([g.resource_id for g in expired] + [d.path for d in ended])

    def cancel(self, request_id: str) -> list[Grant]:
        """Withdraw a queued request (e.g. its waitMs ran out); returns grants to waiters it held back.

        Idempotent: a request that is no longer queued (granted, cancelled, or withdrawn by
        `release_owner`) is left alone and [] returned, so a caller tidying up after a dead agent
        need not know which of its requests `release_owner` already withdrew.
        """
        return self.wake(self.withdraw(request_id))

    def next_deadline(self) -> float | None:
        """When `tick` next has work: the earliest lease expiry or lock-delay end, or None."""
        return self._leases.next_deadline(self._holders.by_id)

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
            renewed = replace(grant, expires_at=now + grant.ttl)
            self._holders.add(renewed)
            self._leases.track(renewed, self._holders.by_id)

    def _check_restorable(self, grant: Grant) -> None:
        if normalise_resource(grant.resource_id) != grant.resource_id:
            raise LockError(f"restored lock {grant.lock_id!r} has a non-normalised resource id {grant.resource_id!r}")
        if grant.lock_id in self._holders:
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
            for request in self._queue
            for item in request.items
            if path is None or overlaps(path, item.path)
        ]

    def grants(self) -> list[Grant]:
        """Every live grant, in token order."""
        return list(self._holders.by_id.values())

    def grants_of(self, owner: str) -> list[Grant]:
        """The live grants of one owner, in token order."""
        return self._holders.of(owner)

    def get(self, lock_id: str) -> Grant | None:
        """The live grant with this id, or None (released, expired or never granted)."""
        return self._holders.get(lock_id)

    def _lease_ttl(self, ttl: float | None) -> float:
        if ttl is None:
            return self._default_ttl
        if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
            raise LockError(f"lease ttl must be a positive number of seconds, not {ttl!r}")
        return float(ttl)


def _mode_rank(grant: Grant) -> int:
    return MODE_RANK[grant.mode]


def _check_owner(owner: str) -> None:
    if not isinstance(owner, str) or not owner:
        raise LockError(f"lock owner {owner!r} must be a non-empty string")
