"""Hypothesis state machine for engine.locks: random traffic against an independent model.

The model below re-derives, from nothing but the values the lock manager returned, what must be
true after every step: who holds what, which paths are held back, who waits in which order.  It
predicts every acquire's outcome and checks the invariants of DESIGN §4 (no incompatible holders,
increasing tokens, no overtaking, no silent lease loss, no wait-for cycle, no waiter left blocked
for no reason).
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from engine.locks import Grant, LockError, LockManager, normalise_resource

OWNERS = ["a", "b", "c", "d"]
PATHS = ["src", "src/a", "src/b", "src/b/c", "docs", "db:x", "./src/b/"]
MODES = ["read", "write", "exclusive"]
RANK = {"read": 0, "write": 1, "exclusive": 2}
TTL = 2.0
LOCK_DELAY = 0.5
SHARE = {("read", "read"), ("read", "write"), ("write", "read")}  # DESIGN §4's table, restated


def compatible(a: str, b: str) -> bool:
    return (a, b) in SHARE


def overlaps(p: str, q: str) -> bool:
    """Restated independently of the engine: `name:` ids are opaque, paths nest by component."""
    if ":" in p or ":" in q:
        return p == q
    return p == q or q.startswith(p + "/") or p.startswith(q + "/")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Request:
    """The model's view of a queued request: items are (path, mode, mode conflicts are judged by)."""

    arrival: int
    owner: str
    items: list[tuple[str, str, str]]


class LockMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.clock = FakeClock()
        self.lm = LockManager(self.clock, default_ttl=TTL, lock_delay=LOCK_DELAY)
        self.live: dict[str, Grant] = {}  # every grant the manager told us about, minus releases
        self.delays: list[tuple[str, float]] = []  # (path, until)
        self.queued: dict[str, Request] = {}
        self.arrivals = 0
        self.last_token = 0
        self.made: list[tuple[Grant, int]] = []  # grants made in this step, with their request's arrival

    # ------------------------------------------------------------ the model

    def own_standing(self, owner: str, path: str, mode: str) -> str | None:
        """'reentrant', 'upgrade' or None, from the owner's live grants on exactly this path."""
        own = [g for g in self.live.values() if g.owner == owner and g.resource_id == path]
        if any(RANK[g.mode] >= RANK[mode] for g in own):
            return "reentrant"
        return "upgrade" if own else None

    def blockers(self, owner: str, items, arrival: int) -> list[str | None]:
        """Owners in the way of `items` (None for a lock-delay), per DESIGN's fairness rule."""
        found: list[str | None] = []
        for path, _, check in items:
            found += [
                g.owner
                for g in self.live.values()
                if g.owner != owner and overlaps(g.resource_id, path) and not compatible(g.mode, check)
            ]
            found += [None for held_back, _ in self.delays if overlaps(held_back, path)]
            for request in self.queued.values():
                if request.arrival < arrival and request.owner != owner:
                    found += [
                        request.owner
                        for q_path, _, q_check in request.items
                        if overlaps(q_path, path) and not compatible(q_check, check)
                    ]
        return found

    def graph(self) -> nx.DiGraph:
        graph = nx.DiGraph()
        for request in self.queued.values():
            for blocker in self.blockers(request.owner, request.items, request.arrival):
                if blocker is not None:
                    graph.add_edge(request.owner, blocker)
        return graph

    def took(self, grants: list[Grant], arrival: int) -> None:
        """Record grants the manager just made: fresh tokens, in increasing order."""
        for grant in grants:
            assert grant.token > self.last_token, (grant, self.last_token)
            assert grant.lock_id not in self.live
            assert grant.expires_at == self.clock.now + grant.ttl
            self.last_token = grant.token
            self.live[grant.lock_id] = grant
            self.made.append((grant, arrival))

    def took_woken(self, woken: list[Grant]) -> None:
        """Woken grants: each woken request granted whole, in one go."""
        by_request: dict[str, list[Grant]] = {}
        for grant in woken:
            by_request.setdefault(grant.request_id, []).append(grant)
        for request_id, grants in by_request.items():
            request = self.queued.pop(request_id)
            assert [(g.owner, g.resource_id, g.mode) for g in grants] == [
                (request.owner, path, mode) for path, mode, _ in request.items
            ]
            self.took(grants, request.arrival)

    def forget(self, grants: list[Grant]) -> None:
        for grant in grants:
            assert self.live.pop(grant.lock_id) == grant

    # ------------------------------------------------------------ rules

    @rule(
        owner=st.sampled_from(OWNERS),
        asked=st.lists(st.tuples(st.sampled_from(PATHS), st.sampled_from(MODES)), min_size=1, max_size=3),
        wait=st.booleans(),
        ttl=st.sampled_from([None, 1.0, 3.0]),
    )
    def acquire(self, owner: str, asked: list[tuple[str, str]], wait: bool, ttl: float | None) -> None:
        self.check_acquire(owner, asked, wait, ttl)

    @rule(owner=st.sampled_from(OWNERS), path=st.sampled_from(PATHS), mode=st.sampled_from(MODES))
    def acquire_one_and_wait(self, owner: str, path: str, mode: str) -> None:
        """The common agent request; a rule of its own so that queues build up often."""
        self.check_acquire(owner, [(path, mode)], True, None)

    @rule(
        path=st.sampled_from(PATHS),
        crowd=st.lists(st.tuples(st.sampled_from(OWNERS), st.sampled_from(MODES)), min_size=2, max_size=4),
    )
    def crowd_one_path(self, path: str, crowd: list[tuple[str, str]]) -> None:
        """Several owners line up on one path, so releases and cancels have queues to work on."""
        for owner, mode in crowd:
            self.check_acquire(owner, [(path, mode)], True, None)

    @precondition(lambda self: self.live)
    @rule(data=st.data(), mode=st.sampled_from(MODES), wait=st.booleans())
    def reask_or_upgrade(self, data, mode: str, wait: bool) -> None:
        """Targets the rare cases: the holder asks again on its own path, same, weaker or stronger."""
        grant = data.draw(st.sampled_from(sorted(self.live.values(), key=lambda g: g.token)))
        self.check_acquire(grant.owner, [(grant.resource_id, mode)], wait, None)

    def check_acquire(self, owner: str, asked: list[tuple[str, str]], wait: bool, ttl: float | None) -> None:
        """Predict the outcome from the model, then compare with what the manager did."""
        merged: dict[str, str] = {}
        for raw, mode in asked:
            path = normalise_resource(raw)
            if path not in merged or RANK[mode] > RANK[merged[path]]:
                merged[path] = mode
        standing = {path: self.own_standing(owner, path, mode) for path, mode in merged.items()}
        items = [(p, m, "exclusive" if standing[p] == "upgrade" else m) for p, m in merged.items()]
        fresh = [item for item in items if standing[item[0]] != "reentrant"]
        arrival = self.arrivals + 1  # a newcomer comes after every waiter
        in_the_way = self.blockers(owner, fresh, arrival)
        upgrade = " upgrade" if "upgrade" in standing.values() else ""
        event(f"acquire: {'blocked' if in_the_way else 'free'}{upgrade}")  # coverage, see --hypothesis-show-statistics

        result = self.lm.acquire(owner, asked, wait=wait, ttl=ttl)

        if not in_the_way:
            assert result.status == "granted", result
            assert [g.resource_id for g in result.grants] == list(merged)
            reused = [g for g in result.grants if standing[g.resource_id] == "reentrant"]
            for grant in reused:
                assert self.live[grant.lock_id] == grant
            self.took([g for g in result.grants if g not in reused], arrival)
            return
        assert result.conflict is not None
        if not wait:
            assert result.status == "refused" and result.grants == []
            return
        graph = self.graph()
        graph.add_edges_from((owner, b) for b in in_the_way if b is not None)
        if nx.is_directed_acyclic_graph(graph):
            assert result.status == "queued", result
            # Re-asked paths are held already: they come back now, and the unit waits for the rest.
            reused = [p for p, _, _ in items if standing[p] == "reentrant"]
            assert [g.resource_id for g in result.grants] == reused
            for grant in result.grants:
                assert self.live[grant.lock_id] == grant
            self.arrivals = arrival
            self.queued[result.request_id] = Request(arrival, owner, fresh)
        else:
            assert result.status == "refused" and "deadlock" in result.conflict.reason, result
            assert result.grants == []

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def release_by_holder(self, data) -> None:
        grant = data.draw(st.sampled_from(sorted(self.live.values(), key=lambda g: g.token)))
        woken = self.lm.release(grant.owner, grant.lock_id)
        self.forget([grant])
        self.took_woken(woken)

    @rule(data=st.data())
    def refusals(self, data) -> None:
        """Releases by a non-holder or of an unknown lock raise; cancelling an unknown request does nothing."""
        if self.live:
            grant = data.draw(st.sampled_from(sorted(self.live.values(), key=lambda g: g.token)))
            stranger = data.draw(st.sampled_from([o for o in OWNERS if o != grant.owner]))
            with pytest.raises(LockError) as caught:
                self.lm.release(stranger, grant.lock_id)
            assert grant.lock_id in str(caught.value) and grant.owner in str(caught.value)
        with pytest.raises(LockError):
            self.lm.release("a", data.draw(st.sampled_from(["L0", "L999999", "nope"])), operator=True)
        assert self.lm.cancel("no-such-request") == []

    @precondition(lambda self: self.live)
    @rule(data=st.data())
    def operator_release(self, data) -> None:
        grant = data.draw(st.sampled_from(sorted(self.live.values(), key=lambda g: g.token)))
        woken = self.lm.release("operator", grant.lock_id, operator=True)
        self.forget([grant])
        self.took_woken(woken)

    @rule(owner=st.sampled_from(OWNERS), delay=st.booleans())
    def release_owner(self, owner: str, delay: bool) -> None:
        released, woken = self.lm.release_owner(owner, delay=delay)
        assert sorted(g.lock_id for g in released) == sorted(g.lock_id for g in self.live.values() if g.owner == owner)
        self.forget(released)
        if delay:
            self.delays += [(g.resource_id, self.clock.now + LOCK_DELAY) for g in released]
        for request_id in [r for r, q in self.queued.items() if q.owner == owner]:
            del self.queued[request_id]
        self.took_woken(woken)

    @rule(owner=st.sampled_from(OWNERS))
    def renew(self, owner: str) -> None:
        renewed = self.lm.renew(owner)
        assert sorted(g.lock_id for g in renewed) == sorted(g.lock_id for g in self.live.values() if g.owner == owner)
        for grant in renewed:
            before = self.live[grant.lock_id]
            assert grant.token == before.token and grant.expires_at == self.clock.now + before.ttl
            self.live[grant.lock_id] = grant

    @precondition(lambda self: self.live)
    @rule(data=st.data(), mode=st.sampled_from(MODES))
    def downgrade(self, data, mode: str) -> None:
        grant = data.draw(st.sampled_from(sorted(self.live.values(), key=lambda g: g.token)))
        if RANK[mode] > RANK[grant.mode]:
            try:
                self.lm.downgrade(grant.owner, grant.lock_id, mode)
            except LockError:
                return
            raise AssertionError("downgrade to a stronger mode was accepted")
        weaker, woken = self.lm.downgrade(grant.owner, grant.lock_id, mode)
        assert (weaker.lock_id, weaker.token, weaker.mode) == (grant.lock_id, grant.token, mode)
        self.live[grant.lock_id] = weaker
        self.took_woken(woken)

    @rule(seconds=st.sampled_from([0.25, 0.5, 1.0, 2.5]))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def tick(self) -> None:
        now = self.clock.now
        due = sorted(g.lock_id for g in self.live.values() if g.expires_at <= now)
        expired, woken = self.lm.tick()
        assert sorted(g.lock_id for g in expired) == due  # all due leases, and never one early
        self.forget(expired)
        self.delays = [(p, until) for p, until in self.delays if until > now]
        self.delays += [(g.resource_id, now + LOCK_DELAY) for g in expired]
        self.took_woken(woken)

    @precondition(lambda self: self.queued)
    @rule(data=st.data())
    def cancel(self, data) -> None:
        request_id = data.draw(st.sampled_from(sorted(self.queued)))
        woken = self.lm.cancel(request_id)
        event(f"cancel woke {bool(woken)}")
        del self.queued[request_id]
        self.took_woken(woken)

    @rule()
    def restart(self) -> None:
        """The manager restarts from its journal: grants survive with a full ttl, queues do not."""
        restored = LockManager(self.clock, default_ttl=TTL, lock_delay=LOCK_DELAY)
        restored.restore(self.lm.grants(), next_token=self.last_token + 1)
        self.lm = restored
        self.live = {g.lock_id: g for g in restored.grants()}
        assert all(g.expires_at == self.clock.now + g.ttl for g in self.live.values())
        self.queued.clear()
        self.delays.clear()

    # ------------------------------------------------------------ invariants

    @invariant()
    def grants_are_exactly_those_reported(self) -> None:
        """No lease disappears (or appears) without the manager saying so."""
        assert {g.lock_id: g for g in self.lm.grants()} == self.live
        assert [g.token for g in self.lm.grants()] == sorted(g.token for g in self.live.values())

    @invariant()
    def no_incompatible_holders(self) -> None:
        grants = list(self.live.values())
        for i, g in enumerate(grants):
            for h in grants[i + 1 :]:
                if g.owner != h.owner and overlaps(g.resource_id, h.resource_id):
                    assert compatible(g.mode, h.mode), (g, h)

    @invariant()
    def queue_matches_the_model(self) -> None:
        waiting = self.lm.waiters()
        expected = [
            (request_id, path, mode)
            for request_id, request in sorted(self.queued.items(), key=lambda kv: kv[1].arrival)
            for path, mode, _ in request.items
        ]
        assert [(w.request_id, w.resource_id, w.mode) for w in waiting] == expected

    @invariant()
    def no_waiter_was_overtaken(self) -> None:
        """A grant made this step never conflicts with an earlier request that still waits."""
        for grant, arrival in self.made:
            for request in self.queued.values():
                if request.arrival < arrival and request.owner != grant.owner:
                    for path, mode, _ in request.items:
                        clash = overlaps(path, grant.resource_id) and not compatible(mode, grant.mode)
                        assert not clash, (grant, request)
        self.made.clear()

    @invariant()
    def no_waiter_is_left_blocked_for_nothing(self) -> None:
        for request in self.queued.values():
            assert self.blockers(request.owner, request.items, request.arrival), request

    @invariant()
    def wait_for_graph_is_acyclic(self) -> None:
        assert nx.is_directed_acyclic_graph(self.lm.wait_for_graph())
        assert nx.is_directed_acyclic_graph(self.graph())

    @invariant()
    def next_deadline_is_the_earliest_pending_event(self) -> None:
        times = [g.expires_at for g in self.live.values()] + [until for _, until in self.delays]
        assert self.lm.next_deadline() == min(times, default=None)


LockMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
TestLockMachine = LockMachine.TestCase
