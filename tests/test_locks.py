"""Unit tests for engine.locks: every rule of DESIGN §4, on a fake clock."""

from __future__ import annotations

import itertools

import networkx as nx
import pytest

from engine.locks import Grant, LockError, LockManager, normalise_resource


class FakeClock:
    """A monotonic clock the test moves by hand, so lease boundaries are exact."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def lm(clock: FakeClock) -> LockManager:
    return LockManager(clock, default_ttl=10.0, lock_delay=2.0)


def grant(lm: LockManager, owner: str, path: str, mode: str = "write", **kw) -> Grant:
    result = lm.acquire(owner, [(path, mode)], **kw)
    assert result.status == "granted", result
    return result.grants[0]


def refused(lm: LockManager, owner: str, path: str, mode: str = "write"):
    result = lm.acquire(owner, [(path, mode)])
    assert result.status == "refused", result
    assert result.grants == []
    return result.conflict


def queue(lm: LockManager, owner: str, path: str, mode: str = "write", **kw) -> str:
    result = lm.acquire(owner, [(path, mode)], wait=True, **kw)
    assert result.status == "queued", result
    return result.request_id


# ---------------------------------------------------------------- resource ids


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("src/a.ts", "src/a.ts"),
        ("src\\a.ts", "src/a.ts"),
        ("src//a.ts", "src/a.ts"),
        ("./src/./a.ts", "src/a.ts"),
        ("src/x/../a.ts", "src/a.ts"),
        ("src/", "src"),
        ("src\\x\\", "src/x"),
        ("db:schema", "db:schema"),
        ("db:a/../b/", "db:a/../b/"),  # a name is verbatim, never a path
        ("cache_2-x:k", "cache_2-x:k"),
    ],
)
def test_normalise_accepts_and_canonicalises(raw: str, expected: str) -> None:
    assert normalise_resource(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("/etc/passwd", "absolute"),
        ("\\server\\share", "absolute"),
        ("C:\\work\\x", "absolute"),
        ("c:/work/x", "absolute"),
        ("../x", "leaves the workspace"),
        ("a/../../x", "leaves the workspace"),
        ("src/../..", "leaves the workspace"),
        (".", "workspace root"),
        ("a/..", "workspace root"),
        ("db:", "names nothing"),
        ("./db:x", "named resource"),
    ],
)
def test_normalise_refuses_with_id_and_reason(raw: str, reason: str) -> None:
    with pytest.raises(LockError) as caught:
        normalise_resource(raw)
    assert repr(raw) in str(caught.value)
    assert reason in str(caught.value)


def test_acquire_refuses_a_bad_id_with_lock_error(lm: LockManager) -> None:
    with pytest.raises(LockError, match=r"'\.\./secret'.*leaves the workspace"):
        lm.acquire("a", [("src/ok", "read"), ("../secret", "read")])
    assert lm.grants() == []  # nothing half-granted


@pytest.mark.parametrize("bad", [[], [("src", "append")]])
def test_acquire_refuses_empty_or_unknown_mode(lm: LockManager, bad) -> None:
    with pytest.raises(LockError):
        lm.acquire("a", bad)


@pytest.mark.parametrize("ttl", [0, -1.0, float("inf"), float("nan")])
def test_acquire_refuses_a_bad_ttl(lm: LockManager, ttl: float) -> None:
    with pytest.raises(LockError, match="ttl"):
        lm.acquire("a", [("src", "read")], ttl=ttl)


def test_acquire_refuses_an_empty_owner(lm: LockManager) -> None:
    with pytest.raises(LockError, match="owner"):
        lm.acquire("", [("src", "read")])


def test_equivalent_spellings_are_one_lock(lm: LockManager) -> None:
    grant(lm, "a", "src/a.ts")
    assert refused(lm, "b", ".\\src\\x\\..\\a.ts/").holder == "a"


# ---------------------------------------------------------------- compatibility


@pytest.mark.parametrize(
    ("held", "asked", "ok"),
    [
        ("read", "read", True),
        ("read", "write", True),
        ("write", "read", True),
        ("write", "write", False),
        ("read", "exclusive", False),
        ("write", "exclusive", False),
        ("exclusive", "read", False),
        ("exclusive", "write", False),
        ("exclusive", "exclusive", False),
    ],
)
def test_compatibility_table(lm: LockManager, held: str, asked: str, ok: bool) -> None:
    first = grant(lm, "a", "src/a.ts", held, task_id="T1")
    result = lm.acquire("b", [("src/a.ts", asked)])
    assert (result.status == "granted") is ok
    if not ok:
        conflict = result.conflict
        assert (conflict.holder, conflict.holder_mode, conflict.holder_task) == ("a", held, "T1")
        assert (conflict.resource_id, conflict.mode) == ("src/a.ts", asked)
        assert first.lock_id in conflict.reason


def test_same_owner_never_conflicts_with_itself(lm: LockManager) -> None:
    grant(lm, "a", "src", "exclusive")
    inner = grant(lm, "a", "src/a.ts", "exclusive")
    assert inner.resource_id == "src/a.ts"
    assert refused(lm, "b", "src/b.ts", "read").holder == "a"


# ---------------------------------------------------------------- directories and names


def test_directory_lock_blocks_file_below(lm: LockManager) -> None:
    grant(lm, "a", "src", "write")
    assert refused(lm, "b", "src/a.ts", "write").holder == "a"
    assert refused(lm, "b", "src/x/y", "exclusive").holder == "a"


def test_file_lock_blocks_directory_above(lm: LockManager) -> None:
    grant(lm, "a", "src/x/y.ts", "write")
    conflict = refused(lm, "b", "src", "write")
    assert (conflict.holder, conflict.resource_id) == ("a", "src")
    assert refused(lm, "b", "src/x", "exclusive").holder == "a"


def test_directory_does_not_cover_a_sibling_with_a_shared_prefix(lm: LockManager) -> None:
    grant(lm, "a", "src", "exclusive")
    grant(lm, "b", "srcfoo", "exclusive")
    grant(lm, "b", "srcfoo/a", "exclusive")
    grant(lm, "b", "sr", "exclusive")


def test_directory_and_file_share_compatible_modes(lm: LockManager) -> None:
    grant(lm, "a", "src", "read")
    grant(lm, "b", "src/a.ts", "write")
    grant(lm, "c", "src/b.ts", "read")


def test_named_resources_are_compared_verbatim(lm: LockManager) -> None:
    grant(lm, "a", "db:schema", "exclusive")
    assert refused(lm, "b", "db:schema", "read").holder == "a"
    grant(lm, "b", "db:schema/users", "exclusive")  # not below db:schema: names have no hierarchy
    grant(lm, "b", "db", "exclusive")  # the directory db/ is another resource
    grant(lm, "b", "db:other", "exclusive")


# ---------------------------------------------------------------- leases


def test_lease_expires_exactly_at_its_ttl_not_before(lm: LockManager, clock: FakeClock) -> None:
    held = grant(lm, "a", "src/a.ts", ttl=5.0)
    assert held.expires_at == held.granted_at + 5.0 == clock.now + 5.0
    clock.advance(4.999)
    assert lm.tick() == ([], [])
    assert lm.get(held.lock_id) == held
    clock.advance(0.001)
    expired, woken = lm.tick()
    assert [g.lock_id for g in expired] == [held.lock_id]
    assert woken == [] and lm.get(held.lock_id) is None


def test_default_ttl_applies(lm: LockManager, clock: FakeClock) -> None:
    held = grant(lm, "a", "src")
    assert (held.ttl, held.expires_at) == (10.0, clock.now + 10.0)


def test_renew_extends_every_lease_of_the_owner_by_its_ttl(lm: LockManager, clock: FakeClock) -> None:
    first = grant(lm, "a", "src/a", ttl=5.0)
    second = grant(lm, "a", "src/b", ttl=8.0)
    other = grant(lm, "b", "src/c", ttl=5.0)
    clock.advance(4.0)
    renewed = lm.renew("a")
    assert [(g.lock_id, g.token, g.expires_at) for g in renewed] == [
        (first.lock_id, first.token, clock.now + 5.0),
        (second.lock_id, second.token, clock.now + 8.0),
    ]
    clock.advance(1.0)  # first's original expiry
    expired, _ = lm.tick()
    assert [g.lock_id for g in expired] == [other.lock_id]
    assert lm.get(first.lock_id).expires_at == clock.now + 4.0
    assert lm.renew("nobody") == []


def test_lock_delay_after_expiry_covers_the_path_and_its_relatives(lm: LockManager, clock: FakeClock) -> None:
    held = grant(lm, "a", "src/x/a.ts", ttl=5.0, task_id="T9")
    clock.advance(5.0)
    lm.tick()
    for path in ("src/x/a.ts", "src", "src/x/a.ts/deeper"):
        conflict = refused(lm, "b", path, "read")
        assert "lock-delay" in conflict.reason and held.lock_id in conflict.reason
        assert (conflict.holder, conflict.holder_task) == ("a", "T9")
    refused(lm, "a", "src/x/a.ts")  # the late holder too: it may still be writing
    grant(lm, "b", "src/x/b.ts")  # a sibling is unaffected
    assert lm.next_deadline() == clock.now + 2.0
    clock.advance(1.999)
    lm.tick()
    refused(lm, "b", "src/x/a.ts")
    clock.advance(0.001)
    lm.tick()
    grant(lm, "b", "src/x/a.ts")


def test_no_lock_delay_after_an_explicit_release(lm: LockManager) -> None:
    held = grant(lm, "a", "src/a.ts")
    lm.release("a", held.lock_id)
    grant(lm, "b", "src/a.ts")


def test_release_owner_applies_lock_delay_only_when_asked(lm: LockManager, clock: FakeClock) -> None:
    dead = [grant(lm, "dead", "src/a"), grant(lm, "dead", "db:x")]
    released, woken = lm.release_owner("dead", delay=True)
    assert released == dead and woken == []
    assert "lock-delay" in refused(lm, "b", "src/a").reason
    grant(lm, "gone", "docs")
    lm.release_owner("gone", delay=False)
    grant(lm, "b", "docs")
    clock.advance(2.0)
    lm.tick()
    grant(lm, "b", "src/a")


def test_waiter_on_an_expired_path_is_woken_when_the_lock_delay_ends(lm: LockManager, clock: FakeClock) -> None:
    held = grant(lm, "a", "src/a", ttl=5.0)
    request_id = queue(lm, "b", "src/a", task_id="T2")
    clock.advance(5.0)
    expired, woken = lm.tick()
    assert (expired, woken) == ([held], [])
    assert lm.next_deadline() == clock.now + 2.0
    clock.advance(2.0)
    expired, woken = lm.tick()
    assert expired == []
    assert [(g.owner, g.request_id, g.task_id) for g in woken] == [("b", request_id, "T2")]
    assert woken[0].granted_at == clock.now


def test_next_deadline_tracks_the_earliest_live_lease(lm: LockManager, clock: FakeClock) -> None:
    assert lm.next_deadline() is None
    early = grant(lm, "a", "a", ttl=3.0)
    grant(lm, "a", "b", ttl=7.0)
    assert lm.next_deadline() == clock.now + 3.0
    lm.release("a", early.lock_id)
    assert lm.next_deadline() == clock.now + 7.0
    clock.advance(1.0)
    lm.renew("a")
    assert lm.next_deadline() == clock.now + 7.0


# ---------------------------------------------------------------- fencing tokens


def test_tokens_strictly_increase_and_are_never_reused(lm: LockManager, clock: FakeClock) -> None:
    tokens, lock_ids = [], set()
    for i in range(5):
        held = grant(lm, "a", f"f{i}")
        tokens.append(held.token)
        lock_ids.add(held.lock_id)
        lm.release("a", held.lock_id)
    expiring = grant(lm, "a", "f0", ttl=1.0)
    clock.advance(1.0)
    lm.tick()
    after = grant(lm, "b", "other")
    tokens += [expiring.token, after.token]
    lock_ids |= {expiring.lock_id, after.lock_id}
    assert tokens == sorted(set(tokens)) and len(lock_ids) == len(tokens)


# ---------------------------------------------------------------- fairness


def test_reader_is_not_let_past_a_waiting_exclusive_request(lm: LockManager) -> None:
    # With DESIGN's table a waiting `write` does not block readers (they may share), so the
    # starvation case is a would-be exclusive holder behind a stream of readers.
    first = grant(lm, "r1", "src/a", "read")
    exclusive = queue(lm, "x", "src/a", "exclusive")
    conflict = refused(lm, "r2", "src/a", "read")  # compatible with the reader, not with the waiter
    assert conflict.holder == "x" and exclusive in conflict.reason and "overtaken" in conflict.reason
    late_reader = queue(lm, "r2", "src/a", "read")
    woken = lm.release("r1", first.lock_id)
    assert [(g.owner, g.request_id) for g in woken] == [("x", exclusive)]
    woken = lm.release("x", woken[0].lock_id)
    assert [(g.owner, g.request_id) for g in woken] == [("r2", late_reader)]


def test_writers_are_woken_one_at_a_time_in_arrival_order(lm: LockManager) -> None:
    held = grant(lm, "a", "src/a")
    second = queue(lm, "b", "src/a")
    third = queue(lm, "c", "src/a")
    assert [w.request_id for w in lm.waiters("src/a")] == [second, third]
    woken = lm.release("a", held.lock_id)
    assert [g.request_id for g in woken] == [second]
    woken = lm.release("b", woken[0].lock_id)
    assert [g.request_id for g in woken] == [third]


def test_release_wakes_only_the_compatible_front_of_the_queue(lm: LockManager) -> None:
    held = grant(lm, "a", "f", "exclusive")
    r1 = queue(lm, "b", "f", "read")
    r2 = queue(lm, "c", "f", "read")
    x = queue(lm, "d", "f", "exclusive")
    r3 = queue(lm, "e", "f", "read")  # compatible with the readers, but behind the exclusive waiter
    woken = lm.release("a", held.lock_id)
    assert [g.request_id for g in woken] == [r1, r2]
    assert [w.request_id for w in lm.waiters()] == [x, r3]


def test_a_waiter_on_a_directory_holds_back_later_requests_below_it(lm: LockManager) -> None:
    held = grant(lm, "a", "src/a", "write")
    dir_request = queue(lm, "b", "src", "exclusive")
    conflict = refused(lm, "c", "src/b", "write")  # src/b is free, but b asked first for all of src
    assert conflict.holder == "b" and dir_request in conflict.reason
    grant(lm, "c", "docs/b", "write")
    woken = lm.release("a", held.lock_id)
    assert [g.request_id for g in woken] == [dir_request]


def test_a_blocked_waiter_does_not_hold_back_a_compatible_later_waiter(lm: LockManager) -> None:
    # Later waiters are held back by earlier *conflicting* ones only: a newcomer in the same spot
    # would be granted, so a queued request must not be worse off.
    grant(lm, "a", "f", "write")
    writer = queue(lm, "b", "f", "write")
    other = grant(lm, "c", "g", "exclusive")
    reader = lm.acquire("d", [("f", "read"), ("g", "read")], wait=True).request_id
    woken = lm.release("c", other.lock_id)
    assert [g.request_id for g in woken] == [reader, reader]
    assert [w.request_id for w in lm.waiters()] == [writer]


def test_granting_a_waiter_wakes_later_waiters_it_was_holding_back(lm: LockManager) -> None:
    # A's queued upgrade on y is judged as exclusive while it waits, so it holds back c's read;
    # once granted it is a plain write, which c's read may share.  The release was on x, not y.
    grant(lm, "a", "y", "read")
    held = grant(lm, "h", "x", "exclusive")
    upgrade = lm.acquire("a", [("x", "write"), ("y", "write")], wait=True).request_id
    reader = queue(lm, "c", "y", "read")
    woken = lm.release("h", held.lock_id)
    assert [(g.request_id, g.resource_id) for g in woken] == [(upgrade, "x"), (upgrade, "y"), (reader, "y")]


# ---------------------------------------------------------------- reentrancy, downgrade, upgrade


@pytest.mark.parametrize(
    ("held", "asked"), [("read", "read"), ("write", "write"), ("write", "read"), ("exclusive", "write")]
)
def test_reasking_for_a_held_or_weaker_mode_returns_the_existing_grant(lm: LockManager, held: str, asked: str) -> None:
    first = grant(lm, "a", "src/a", held)
    again = grant(lm, "a", "src/a/", asked, ttl=99.0)
    assert again == first
    assert lm.grants() == [first]


def test_reasking_prefers_the_grant_in_the_asked_mode(lm: LockManager) -> None:
    reader = grant(lm, "a", "f", "read")
    writer = grant(lm, "a", "f", "write")  # upgrade as sole holder
    assert grant(lm, "a", "f", "read") == reader
    assert grant(lm, "a", "f", "write") == writer


def test_downgrade_is_in_place_and_wakes_waiters(lm: LockManager) -> None:
    held = grant(lm, "a", "f", "exclusive")
    reader = queue(lm, "b", "f", "read")
    writer = queue(lm, "c", "f", "write")
    weaker, woken = lm.downgrade("a", held.lock_id, "read")
    assert (weaker.lock_id, weaker.token, weaker.expires_at) == (held.lock_id, held.token, held.expires_at)
    assert weaker.mode == "read"
    assert lm.get(held.lock_id) == weaker
    assert [g.request_id for g in woken] == [reader, writer]  # read+read, read+write both fit


def test_downgrade_refuses_upgrades_strangers_and_unknown_ids(lm: LockManager) -> None:
    held = grant(lm, "a", "f", "write")
    assert lm.downgrade("a", held.lock_id, "write") == (held, [])
    with pytest.raises(LockError, match="acquire to upgrade"):
        lm.downgrade("a", held.lock_id, "exclusive")
    with pytest.raises(LockError, match=f"{held.lock_id}.*held by 'a'"):
        lm.downgrade("b", held.lock_id, "read")
    with pytest.raises(LockError, match="L999"):
        lm.downgrade("a", "L999", "read")


def test_upgrade_granted_to_the_sole_holder_as_a_new_grant(lm: LockManager) -> None:
    reader = grant(lm, "a", "f", "read")
    writer = grant(lm, "a", "f", "write")
    assert writer.lock_id != reader.lock_id and writer.token > reader.token
    assert {g.mode for g in lm.grants_of("a")} == {"read", "write"}
    lm.release("a", writer.lock_id)
    assert lm.grants_of("a") == [reader]


def test_upgrade_refused_while_another_reader_holds_the_path(lm: LockManager) -> None:
    grant(lm, "a", "f", "read")
    other = grant(lm, "b", "f", "read")
    result = lm.acquire("a", [("f", "write")])
    assert result.status == "refused" and result.conflict.holder == "b"
    assert "sole holder" in result.conflict.reason
    request_id = queue(lm, "a", "f", "write")
    woken = lm.release("b", other.lock_id)
    assert [(g.owner, g.mode, g.request_id) for g in woken] == [("a", "write", request_id)]


def test_upgrade_refused_while_someone_waits(lm: LockManager) -> None:
    grant(lm, "a", "src/a", "read")
    grant(lm, "b", "src/b", "exclusive")
    waiting = queue(lm, "c", "src", "read")  # waits for b's exclusive lock, overlaps src/a
    conflict = refused(lm, "a", "src/a", "write")
    assert conflict.holder == "c" and waiting in conflict.reason


# ---------------------------------------------------------------- multi-path


def test_multi_path_is_all_or_nothing(lm: LockManager) -> None:
    blocker = grant(lm, "a", "src/b")
    result = lm.acquire("b", [("src/a", "write"), ("src/b", "write"), ("db:x", "read")])
    assert result.status == "refused" and result.grants == [] and result.conflict.resource_id == "src/b"
    assert lm.grants() == [blocker]
    grant(lm, "c", "src/a")  # the free path was not taken in passing


def test_multi_path_queues_as_one_unit_and_is_granted_at_once(lm: LockManager) -> None:
    blocker = grant(lm, "a", "src/b")
    result = lm.acquire("b", [("src/a", "write"), ("src/b", "write"), ("db:x", "read")], wait=True, task_id="T")
    assert result.status == "queued" and result.grants == []
    assert [(w.request_id, w.resource_id) for w in lm.waiters()] == [
        (result.request_id, "src/a"),
        (result.request_id, "src/b"),
        (result.request_id, "db:x"),
    ]
    assert lm.grants_of("b") == []
    woken = lm.release("a", blocker.lock_id)
    assert [(g.resource_id, g.mode, g.request_id, g.task_id) for g in woken] == [
        ("src/a", "write", result.request_id, "T"),
        ("src/b", "write", result.request_id, "T"),
        ("db:x", "read", result.request_id, "T"),
    ]
    assert lm.waiters() == []


def test_multi_path_merges_repeated_paths_into_the_strongest_mode(lm: LockManager) -> None:
    result = lm.acquire("a", [("f", "read"), ("./f", "exclusive"), ("g", "read")])
    assert [(g.resource_id, g.mode) for g in result.grants] == [("f", "exclusive"), ("g", "read")]


def test_multi_path_mixes_reentrant_and_new_paths(lm: LockManager) -> None:
    held = grant(lm, "a", "f", "write")
    result = lm.acquire("a", [("f", "read"), ("g", "write")])
    assert result.status == "granted"
    assert result.grants[0] == held and result.grants[1].resource_id == "g"


# ---------------------------------------------------------------- deadlock


def test_two_owner_deadlock_is_refused_naming_the_cycle(lm: LockManager) -> None:
    x = grant(lm, "A", "x")
    y = grant(lm, "B", "y")
    queue(lm, "A", "y")
    result = lm.acquire("B", [("x", "write")], wait=True)
    assert result.status == "refused"
    assert "deadlock" in result.conflict.reason and "B -> A -> B" in result.conflict.reason
    assert result.conflict.holder == "A"
    assert lm.grants() == [x, y]  # nothing revoked
    assert nx.is_directed_acyclic_graph(lm.wait_for_graph())
    assert [w.owner for w in lm.waiters()] == ["A"]


def test_three_owner_deadlock_is_refused_naming_the_cycle(lm: LockManager) -> None:
    for owner, path in (("A", "x"), ("B", "y"), ("C", "z")):
        grant(lm, owner, path)
    queue(lm, "A", "y")
    queue(lm, "B", "z")
    result = lm.acquire("C", [("x", "write")], wait=True)
    assert result.status == "refused"
    assert "deadlock" in result.conflict.reason and "C -> A -> B -> C" in result.conflict.reason
    assert len(lm.grants()) == 3
    assert sorted(lm.wait_for_graph().edges) == [("A", "B"), ("B", "C")]


def test_deadlock_through_an_earlier_waiter_is_refused(lm: LockManager) -> None:
    grant(lm, "A", "src/a")
    queue(lm, "B", "src")  # B waits on A's file below src
    result = lm.acquire("A", [("src/b", "write")], wait=True)  # A would wait behind B's earlier request
    assert result.status == "refused" and "A -> B -> A" in result.conflict.reason


def test_upgrade_deadlock_between_two_readers_is_refused(lm: LockManager) -> None:
    grant(lm, "A", "f", "read")
    grant(lm, "B", "f", "read")
    queue(lm, "A", "f", "write")
    result = lm.acquire("B", [("f", "write")], wait=True)
    assert result.status == "refused" and "B -> A -> B" in result.conflict.reason


def test_no_false_deadlock_for_a_chain(lm: LockManager) -> None:
    grant(lm, "A", "x")
    grant(lm, "B", "y")
    queue(lm, "A", "y")
    queue(lm, "C", "x")  # C waits on A who waits on B: a chain, not a cycle


# ---------------------------------------------------------------- release and cancel


def test_only_the_holder_may_release(lm: LockManager) -> None:
    held = grant(lm, "a", "f")
    with pytest.raises(LockError) as caught:
        lm.release("b", held.lock_id)
    assert held.lock_id in str(caught.value) and "'a'" in str(caught.value)
    assert lm.get(held.lock_id) == held


def test_operator_may_release_anyones_lock_at_once(lm: LockManager) -> None:
    held = grant(lm, "a", "f")
    waiting = queue(lm, "b", "f")
    woken = lm.release("operator", held.lock_id, operator=True)
    assert [g.request_id for g in woken] == [waiting]
    assert lm.get(held.lock_id) is None


def test_releasing_an_unknown_or_released_lock_raises(lm: LockManager) -> None:
    with pytest.raises(LockError, match="L42"):
        lm.release("a", "L42")
    held = grant(lm, "a", "f")
    lm.release("a", held.lock_id)
    with pytest.raises(LockError, match=held.lock_id):
        lm.release("a", held.lock_id)


def test_release_owner_withdraws_queued_requests(lm: LockManager) -> None:
    held = grant(lm, "a", "f", "exclusive")
    dead = queue(lm, "dead", "f", "exclusive")
    reader = queue(lm, "c", "f", "read")
    lm.release_owner("dead", delay=False)
    assert [w.owner for w in lm.waiters()] == ["c"]
    assert lm.cancel(dead) == []  # the caller may still cancel it: a no-op
    assert [g.request_id for g in lm.release("a", held.lock_id)] == [reader]


def test_cancel_withdraws_a_request_and_wakes_those_behind_it(lm: LockManager) -> None:
    grant(lm, "a", "f", "read")
    blocking = queue(lm, "b", "f", "exclusive")
    reader = queue(lm, "c", "f", "read")
    woken = lm.cancel(blocking)
    assert [g.request_id for g in woken] == [reader]
    assert [w.request_id for w in lm.waiters()] == []


def test_cancel_is_a_no_op_for_a_request_no_longer_queued(lm: LockManager) -> None:
    held = grant(lm, "a", "f")
    granted = queue(lm, "b", "f")
    lm.release("a", held.lock_id)
    assert lm.cancel(granted) == []  # already granted: the grant stays
    assert [g.owner for g in lm.grants()] == ["b"]
    assert lm.cancel("never-queued") == []


def test_duplicate_request_id_is_refused(lm: LockManager) -> None:
    grant(lm, "a", "f")
    queue(lm, "b", "f", request_id="req-1")
    with pytest.raises(LockError, match="req-1"):
        lm.acquire("c", [("g", "read")], wait=True, request_id="req-1")


# ---------------------------------------------------------------- queries


def test_covering_grants_are_on_the_path_or_a_directory_above(lm: LockManager) -> None:
    above = grant(lm, "a", "src", "read")
    exact = grant(lm, "b", "src/x", "read")
    grant(lm, "c", "src/x/y", "read")  # below: it does not cover src/x
    grant(lm, "d", "src/z", "read")
    assert lm.covering("src/x/") == [above, exact]
    assert lm.covering("src/x/y") == [above, exact, lm.grants_of("c")[0]]
    assert lm.grants_of("b") == [exact]
    assert [g.owner for g in lm.grants()] == ["a", "b", "c", "d"]


# ---------------------------------------------------------------- restore


def test_restore_extends_leases_and_continues_tokens(clock: FakeClock) -> None:
    old = LockManager(clock, default_ttl=10.0)
    kept = [grant(old, "a", "src/a", ttl=5.0), grant(old, "b", "db:x", "read")]
    clock.advance(4.0)  # a's lease has 1 s left when the manager "dies"

    clock.advance(100.0)
    fresh = LockManager(clock, default_ttl=10.0)
    fresh.restore(kept, next_token=50)
    assert [(g.lock_id, g.token, g.expires_at) for g in fresh.grants()] == [
        (kept[0].lock_id, kept[0].token, clock.now + 5.0),
        (kept[1].lock_id, kept[1].token, clock.now + 10.0),
    ]
    assert refused(fresh, "c", "src/a").holder == "a"
    assert grant(fresh, "c", "other").token == 50
    fresh.release("a", kept[0].lock_id)


def test_restore_never_reuses_a_token_even_with_a_low_next_token(clock: FakeClock) -> None:
    lm = LockManager(clock)
    high = Grant("L77", 77, "a", "f", "write", 10.0, clock.now, clock.now + 10.0, None, None)
    lm.restore([high], next_token=3)
    assert grant(lm, "b", "g").token == 78


def test_restore_refuses_conflicting_or_unnormalised_grants(clock: FakeClock) -> None:
    lm = LockManager(clock)
    one = Grant("L1", 1, "a", "src", "write", 10.0, 0.0, 10.0, None, None)
    two = Grant("L2", 2, "b", "src/a", "write", 10.0, 0.0, 10.0, None, None)
    with pytest.raises(LockError, match="L2.*conflicts"):
        lm.restore([one, two], next_token=3)
    with pytest.raises(LockError, match="non-normalised"):
        lm.restore([Grant("L1", 1, "a", "src/", "write", 10.0, 0.0, 10.0, None, None)], next_token=3)


# ---------------------------------------------------------------- a small exhaustive cross-check


def test_two_owners_on_every_path_pair_and_mode_pair(lm: LockManager) -> None:
    """Exhaustive over a small universe: conflict iff paths overlap and modes are incompatible."""
    paths = ["src", "src/a", "src/a/b", "srcx", "db:x", "db:x/y"]
    overlapping = {("src", "src/a"), ("src", "src/a/b"), ("src/a", "src/a/b")}
    modes = ["read", "write", "exclusive"]
    ok = {("read", "read"), ("read", "write"), ("write", "read")}
    for p, q, m, n in itertools.product(paths, paths, modes, modes):
        held = grant(lm, "a", p, m)
        result = lm.acquire("b", [(q, n)])
        overlap = p == q or (p, q) in overlapping or (q, p) in overlapping
        assert (result.status == "granted") == (not overlap or (m, n) in ok), (p, m, q, n)
        lm.release_owner("a", delay=False)
        lm.release_owner("b", delay=False)
        assert held not in lm.grants()


def test_a_queued_unit_waits_only_for_paths_it_does_not_already_hold(lm: LockManager, clock: FakeClock) -> None:
    """Found by the state machine: a re-asked path must not put the asker behind a later waiter."""
    docs = grant(lm, "a", "docs", "read")
    lm.release_owner("a", delay=True)  # docs is now held back by the lock-delay
    held = grant(lm, "a", "src", "read")
    assert lm.acquire("b", [("src", "exclusive")], wait=True).status == "queued"
    result = lm.acquire("a", [("src", "read"), ("docs", "read")], wait=True)
    assert result.status == "queued", result.conflict
    assert result.grants == [held]  # src: the grant a already holds
    assert [w.resource_id for w in lm.waiters() if w.request_id == result.request_id] == ["docs"]
    clock.advance(2.0)  # the fixture's lock-delay
    _, woken = lm.tick()
    assert [(g.owner, g.resource_id) for g in woken] == [("a", "docs")]
    assert docs.lock_id != woken[0].lock_id
