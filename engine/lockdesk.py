"""The lock desk: every lock request, grant, wait and release of a sprint goes through here.

It owns the lock manager (who may hold what), the bookkeeping of what each holder holds the locks
*for* - a task's live attempt, or an agent's own `resource_lock` - the queued requests with whom
to tell when they are decided, the lease timer, and the file guard's hooks around hand-overs.

Every change follows one order, written once:

* a grant: decide (`LockManager.decide`, pure) -> the file guard settles the paths and keeps their
  content -> `lock_granted` recorded -> commit.  If anything fails before the commit, nothing was
  granted: grants already recorded are recorded as released again, the refusal is recorded
  (`lock_refused`) and the requester told, so the desk, `ProjectState.locks` and the journal agree.
* a release (unlock, task end, expiry, force-release, death, restart): the file guard settles what
  changed under the lock while it is still held -> the release is recorded -> commit -> the queued
  requests the release lets in are granted, each by the grant sequence above.

Resume rebuilds the desk by folding the journal's lock events (`restore`), never by writing into it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, Protocol

from engine.events import (
    AgentDead,
    Event,
    LockGranted,
    LockItem,
    LockQueued,
    LockRefused,
    LockReleased,
    LockRenewed,
    WaiterRemoved,
)
from engine.lock_records import AcquireResult, Conflict, Grant
from engine.locks import LockManager
from engine.payloads import LockType
from engine.protocol import MANAGER_ID
from engine.recorder import Recorder
from engine.resources import LockError, normalise_resource

Granted = Callable[[list[Grant], float], None]  # the grants, and how long the request waited
Refused = Callable[[str, Conflict | None], None]  # why, and who stood in the way (if anybody)
GRANT_FAILED = "grant_failed"


class FileHooks(Protocol):
    """What the desk asks of the file guard around hand-overs (engine/conflicts.py)."""

    def before_grants(self, grants: Iterable[Grant]) -> None: ...
    def before_release(self, grants: Iterable[Grant]) -> None: ...
    def after_release(self) -> None: ...
    def forget_grants(self, grants: Iterable[Grant]) -> None: ...
    def leases_expired(self, grants: Iterable[Grant]) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """A request's immediate answer; a queued one is answered later through its callbacks."""

    status: Literal["granted", "queued", "refused"]
    grants: list[Grant]
    conflict: Conflict | None = None
    reason: str = ""


@dataclass(slots=True)
class _Waiting:
    """A queued request and whom to tell when it is decided."""

    owner: str
    since: float
    claim: str | None  # the task whose attempt the grants serve; None: the agent's own locks
    subject: str  # the path a refusal names
    granted: Granted
    refused: Refused
    wait_ms: int | None = None
    timer: asyncio.TimerHandle | None = None
    conflict: Conflict | None = None  # who stood in the way when it queued (named if the wait runs out)


class LockDesk:
    def __init__(self, locks: LockManager, files: FileHooks, recorder: Recorder, *,
                 undefer: Callable[[], None], canonical: Callable[[str], str] = normalise_resource) -> None:
        self._locks = locks
        # Every resource id that enters the desk is made canonical here (engine/resources.py):
        # resolved through the workspace's symlinks, so two names of one file are one lock.
        self.canonical = canonical
        self._files = files
        self._recorder = recorder
        self._emit = recorder.emit
        self._undefer = undefer  # tasks held back by refused locks may be placed again
        self.after_timer: Callable[[], None] = _nothing  # what a timer's change is followed by
        self._attempt_grants: dict[str, list[str]] = {}  # task -> lock ids its live attempt holds
        self._own: set[str] = set()  # lock ids agents asked for themselves (resource_lock)
        self._waiting: dict[str, _Waiting] = {}  # request id -> queued request
        self._attempt_request: dict[str, str] = {}  # task -> its attempt's queued request id
        self._lease_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ asking

    def request(self, owner: str, requests: Sequence[tuple[str, LockType]], *, request_id: str,
                claim: str | None, task_id: str | None, granted: Granted, refused: Refused,
                ttl: float | None = None, wait_ms: int | None = None, wait: bool = False) -> Outcome:
        """Decide a request now: granted, queued (answered later through `granted`/`refused`), or
        refused.  `claim` names the task whose attempt the grants are for (None: the agent's own);
        `task_id` is what the grants are tagged with.  Raises LockError for a malformed request."""
        wait = wait or bool(wait_ms)
        requests = [(self.canonical(resource_id), mode) for resource_id, mode in requests]
        decision = self._locks.decide(owner, requests, ttl=ttl, wait=wait, request_id=request_id, task_id=task_id)
        subject = decision.conflict.resource_id if decision.conflict else self._first_path(requests)
        if decision.status == "refused":
            reason = decision.conflict.reason if decision.conflict else "refused"
            self._emit(LockRefused(resource_id=subject, agent_id=owner, reason=reason))
            return Outcome("refused", [], decision.conflict, reason)
        if decision.status == "queued":
            self._queue(decision, _Waiting(owner, self._recorder.clock(), claim, subject, granted, refused, wait_ms,
                                           conflict=decision.conflict))
            return Outcome("queued", decision.grants, decision.conflict)
        try:
            grants = self._grant(decision, claim)
        except Exception as exc:
            reason = f"could not grant the lock: {exc}"
            self._emit(LockRefused(resource_id=subject, agent_id=owner, reason=reason))
            return Outcome("refused", [], None, reason)
        return Outcome("granted", grants)

    def _first_path(self, requests: Sequence[tuple[str, LockType]]) -> str:
        return requests[0][0] if requests else ""

    def _queue(self, decision: AcquireResult, waiting: _Waiting) -> None:
        assert decision.queued is not None and decision.request_id is not None
        request_id = decision.request_id
        items: list[LockItem] = [{"resourceId": i.path, "lockType": i.mode} for i in decision.queued.items]
        self._emit(LockQueued(request_id=request_id, agent_id=waiting.owner, task_id=decision.queued.task_id,
                              resources=items))
        self._locks.commit(decision)
        self._waiting[request_id] = waiting
        if waiting.claim is not None:
            self._attempt_grants[waiting.claim] = [g.lock_id for g in decision.grants]  # re-asked, held
            self._attempt_request[waiting.claim] = request_id
        if waiting.wait_ms:
            loop = asyncio.get_running_loop()
            waiting.timer = loop.call_later(waiting.wait_ms / 1000, self._wait_expired, request_id)

    def _grant(self, decision: AcquireResult, claim: str | None) -> list[Grant]:
        """Settle, record, commit: the one way a grant takes effect (see the module docstring)."""
        grants = decision.grants
        recorded: list[Grant] = []
        try:
            self._files.before_grants(grants)
            for grant in grants:
                self._emit(self._granted_event(grant))
                recorded.append(grant)
        except BaseException:
            self._undo(recorded, decision.fresh)
            raise
        self._locks.commit(decision)
        ids = [g.lock_id for g in grants]
        if claim is None:
            self._own.update(ids)
        else:
            self._attempt_grants.setdefault(claim, []).extend(ids)
        self._arm_lease_timer()
        return grants

    def _granted_event(self, grant: Grant) -> LockGranted:
        return LockGranted(
            lock_id=grant.lock_id, resource_id=grant.resource_id, lock_type=grant.mode, agent_id=grant.owner,
            task_id=grant.task_id, token=grant.token, ttl=int(round(grant.ttl * 1000)),
            expires_at=self._recorder.wall_at(grant.expires_at), request_id=grant.request_id,
        )

    def _undo(self, recorded: list[Grant], fresh: list[Grant]) -> None:
        """A grant that failed half-way: what was recorded of its new grants is recorded as released."""
        new = {g.lock_id for g in fresh}
        for grant in recorded:
            if grant.lock_id in new:
                self._emit(LockReleased(lock_id=grant.lock_id, reason=GRANT_FAILED, by=MANAGER_ID))
        self._files.forget_grants(fresh)

    # ------------------------------------------------------------ letting go

    def release(self, owner: str, lock_id: str, *, reason: str, by: str, operator: bool = False) -> Grant:
        """One lock, released by its holder (or an operator); LockError if that is not allowed."""
        grant = self._locks.releasable(owner, lock_id, operator=operator)
        self._end([grant], lambda: self._emit(LockReleased(lock_id=lock_id, reason=reason, by=by)))
        self._wake([grant.resource_id])
        return grant

    def end_attempt(self, task_id: str) -> None:
        """Give back everything a task's current attempt holds or waits for, and the locks its
        agent took for it itself (a Claude Code hook tags each lock with the agent's task)."""
        request_id = self._attempt_request.pop(task_id, None)
        lock_ids = self._attempt_grants.pop(task_id, []) + self._own_for(task_id)
        if request_id is None and not lock_ids:
            return  # nothing held or asked for: nothing to wake, no kept content to drop
        paths: list[str] = []
        if request_id is not None:
            paths += self._withdraw(request_id, "attempt ended")
        for lock_id in lock_ids:
            grant = self._locks.get(lock_id)
            if grant is None or self._still_used(lock_id):
                continue
            self._end([grant], partial(self._emit, LockReleased(lock_id=lock_id, reason="task_end", by=grant.owner)))
            paths.append(grant.resource_id)
        self._wake(paths)

    def end_agent(self, agent_id: str, tasks: list[str], record: Callable[[list[str], list[str]], None], *,
                  hold_back: bool = True) -> None:
        """An agent gone: its locks released (held back for lock-delay unless it left in good order),
        its waits and its tasks' waits withdrawn.

        `record(released lock ids, cancelled request ids)` records the death (one event).
        """
        cancelled = [r for r in (self._attempt_request.pop(t, None) for t in tasks) if r is not None]
        for task_id in tasks:
            self._attempt_grants.pop(task_id, None)
        cancelled += [r for r, w in self._waiting.items() if w.owner == agent_id and w.claim is None]
        grants = self._locks.grants_of(agent_id)
        cancelled += [r for r in self._locks.requests_of(agent_id) if r not in cancelled]
        paths = [g.resource_id for g in grants]
        self._end(grants, lambda: record([g.lock_id for g in grants], cancelled), hold_back=hold_back)
        for request_id in cancelled:
            paths += self._forget_request(request_id)
        self._wake(paths)

    def _end(self, grants: list[Grant], record: Callable[[], object], *, hold_back: bool = False) -> None:
        """Settle, record, commit: the one way locks end (see the module docstring)."""
        self._files.before_release(grants)
        record()
        for grant in grants:
            self._locks.drop(grant, hold_back=hold_back)
            self._forget(grant.lock_id)
        if hold_back and grants:
            self._arm_lease_timer()  # the hold-back may end before any lease does

    def _withdraw(self, request_id: str, reason: str) -> list[str]:
        """Record that a queued request no longer waits, and take it out; the paths it waited on."""
        self._emit(WaiterRemoved(request_id=request_id, reason=reason))
        return self._forget_request(request_id)

    def _forget_request(self, request_id: str) -> list[str]:
        waiting = self._waiting.pop(request_id, None)
        if waiting is not None and waiting.timer is not None:
            waiting.timer.cancel()
        if waiting is not None and waiting.claim is not None:
            self._attempt_request.pop(waiting.claim, None)
        return self._locks.withdraw(request_id)

    def _own_for(self, task_id: str) -> list[str]:
        """The agents' own locks tagged with `task_id`, no longer their own once it ends."""
        tagged = sorted(lock_id for lock_id in self._own if (g := self._locks.get(lock_id)) and g.task_id == task_id)
        self._own.difference_update(tagged)
        return tagged

    def _still_used(self, lock_id: str) -> bool:
        """A re-asked (reentrant) grant is shared: it stays while another task or the agent uses it."""
        return lock_id in self._own or any(lock_id in ids for ids in self._attempt_grants.values())

    def _forget(self, lock_id: str) -> None:
        """A lock ended: nobody holds it for anything any more."""
        self._own.discard(lock_id)
        for lock_ids in self._attempt_grants.values():
            if lock_id in lock_ids:
                lock_ids.remove(lock_id)
                return

    # ------------------------------------------------------------ waking

    def _wake(self, paths: list[str]) -> None:
        """Grant the queued requests the last change let in, each by the grant sequence, in order."""
        for decision in self._locks.wakeups(paths):
            assert decision.request_id is not None
            waiting = self._waiting.pop(decision.request_id)
            if waiting.timer is not None:
                waiting.timer.cancel()
            if waiting.claim is not None:
                self._attempt_request.pop(waiting.claim, None)
            try:
                grants = self._grant(decision, waiting.claim)
            except Exception as exc:
                self._withdraw(decision.request_id, GRANT_FAILED)
                self._refuse(waiting, f"could not grant the lock: {exc}", None)
                continue
            waiting.granted(grants, round(self._recorder.clock() - waiting.since, 6))
        self._files.after_release()
        self._undefer()

    def _refuse(self, waiting: _Waiting, reason: str, conflict: Conflict | None) -> None:
        self._emit(LockRefused(resource_id=waiting.subject, agent_id=waiting.owner, reason=reason))
        waiting.refused(reason, conflict)

    def _wait_expired(self, request_id: str) -> None:
        waiting = self._waiting.get(request_id)
        if waiting is None:
            return
        paths = self._withdraw(request_id, "waitMs elapsed")
        self._refuse(waiting, f"not granted within waitMs={waiting.wait_ms}", waiting.conflict)
        self._wake(paths)
        self.after_timer()

    # ------------------------------------------------------------ leases

    def renew(self, agent_id: str) -> None:
        """A heartbeat: every lease of the agent runs a full TTL from now."""
        renewed = self._locks.renewal(agent_id)
        if not renewed:
            return
        expiries = {grant.lock_id: self._recorder.wall_at(grant.expires_at) for grant in renewed}
        self._emit(LockRenewed(agent_id=agent_id, expires_at=expiries))
        self._locks.store_renewal(renewed)
        self._arm_lease_timer()

    def _arm_lease_timer(self) -> None:
        deadline = self._locks.next_deadline()
        if self._lease_timer is not None:
            self._lease_timer.cancel()
            self._lease_timer = None
        if deadline is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not running yet (a resumed manager): `start` arms it
        delay = max(0.0, deadline - self._recorder.clock()) + 0.001
        self._lease_timer = loop.call_later(delay, self.expire)

    def expire(self) -> None:
        """Leases that ran out end (their paths held back for lock-delay); ended hold-backs lift."""
        self._lease_timer = None
        expired, ended = self._locks.due()
        paths = [g.resource_id for g in expired] + [d.path for d in ended]
        if expired:
            self._end(expired, lambda: [self._emit(LockReleased(lock_id=g.lock_id, reason="expired", by=MANAGER_ID))
                                        for g in expired], hold_back=True)
            self._files.leases_expired(expired)  # a silent holder's commands may still write
        for delay in ended:
            self._locks.end_delay(delay)
        self._wake(paths)
        self._arm_lease_timer()
        self.after_timer()

    def start(self) -> None:
        """On the running loop: arm the lease timer (recovered leases expire too)."""
        self._arm_lease_timer()

    def stop(self) -> None:
        if self._lease_timer is not None:
            self._lease_timer.cancel()
            self._lease_timer = None
        for waiting in self._waiting.values():
            if waiting.timer is not None:
                waiting.timer.cancel()

    # ------------------------------------------------------------ questions

    def get(self, lock_id: str) -> Grant | None:
        return self._locks.get(lock_id)

    def grants(self) -> list[Grant]:
        return self._locks.grants()

    def grants_of(self, owner: str) -> list[Grant]:
        return self._locks.grants_of(owner)

    def covering(self, resource_id: str) -> list[Grant]:
        return self._locks.covering(resource_id)

    def attempt_grants(self, task_id: str) -> list[Grant]:
        """The live grants a task's attempt holds, in the order they were granted."""
        return [g for g in map(self._locks.get, self._attempt_grants.get(task_id, [])) if g is not None]

    def find(self, owner: str, resource_id: str) -> str | None:
        """The id of `owner`'s lock on exactly `resource_id`, if it holds one."""
        try:
            resource_id = self.canonical(resource_id)
        except LockError:
            return None  # no lock can be held on an id that is refused
        for grant in self._locks.grants_of(owner):
            if grant.resource_id == resource_id:
                return grant.lock_id
        return None

    # ------------------------------------------------------------ after a restart

    def restore(self, events: Iterable[Event]) -> None:
        """Rebuild the locks a journal's events leave held, leased again for a full TTL
        (LockManager.restore); then `adopt` says what each is held for."""
        now = self._recorder.clock()
        held: dict[str, Grant] = {}
        next_token = 1
        for event in events:
            body = event.body
            if isinstance(body, LockGranted):
                held[body.lock_id] = Grant(body.lock_id, body.token, body.agent_id, body.resource_id,
                                           _mode(body.lock_type), body.ttl / 1000, now, now, body.task_id)
                next_token = max(next_token, body.token + 1)  # never reused, released or not
            elif isinstance(body, LockReleased):
                held.pop(body.lock_id, None)
            elif isinstance(body, AgentDead):
                for lock_id in body.released_locks:
                    held.pop(lock_id, None)
        self._locks.restore(held.values(), next_token)

    def adopt(self, live_attempts: Iterable[str]) -> None:
        """After a restart: each lock still held serves the live attempt of its task, else its agent."""
        live = set(live_attempts)
        for grant in self._locks.grants():
            if grant.task_id is not None and grant.task_id in live:
                self._attempt_grants.setdefault(grant.task_id, []).append(grant.lock_id)
            else:
                self._own.add(grant.lock_id)
        for task_id in live:
            self._attempt_grants.setdefault(task_id, [])


def _mode(lock_type: str) -> LockType:
    if lock_type not in ("read", "write", "exclusive"):
        raise ValueError(f"lock type {lock_type!r} is not read, write or exclusive")
    return lock_type  # type: ignore[return-value]


def _nothing() -> None:
    return None
