"""MessageStore: compact columns for a million messages, summaries per type, incremental filters."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from engine.events import Event
from engine.message_filter import Filter, FilteredView, Matcher
from engine.message_store import MessageStore, iso_from_micros
from engine.message_summary import summarize
from engine.protocol import MESSAGE_CLASSES, MessageType

BASE_MICROS = 1_795_000_000_000_000  # 2026-11-18T11:06:40Z, a fixed clock for deterministic data
AGENTS = ("backend", "frontend", "tester")
PRIORITIES = ("low", "medium", "high", "critical")


def make_message(i: int) -> dict[str, Any]:
    """A valid wire message (as the manager journals it), cycling through a few types."""
    agent = AGENTS[i % len(AGENTS)]
    kind, payload = [
        ("task_assign", {"taskId": f"task_{i % 97}", "attempt": 1 + i % 3, "title": "Implement the API"}),
        ("resource_lock", {"resourceId": "server/routes.ts", "lockType": "write"}),
        ("task_update", {"taskId": f"task_{i % 97}", "attempt": 1, "progress": 0.5, "message": "compiling"}),
        ("heartbeat", {"tasks": [f"task_{i % 97}"], "load": 1}),
        ("task_complete", {"taskId": f"task_{i % 97}", "attempt": 1, "result": "ok"}),
    ][i % 5]
    sender, recipient = ("sprint_manager", agent) if kind == "task_assign" else (agent, "sprint_manager")
    return {
        "id": f"{i:032x}",
        "type": kind,
        "from": sender,
        "to": recipient,
        "timestamp": iso_from_micros(BASE_MICROS + i * 1_000),
        "payload": payload,
        "priority": PRIORITIES[i % 4],
        "requiresResponse": kind == "resource_lock",
    }


def fill(store: MessageStore, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        store.append(i + 1, make_message(i))


# ---------------------------------------------------------------- appending and reading


def test_append_round_trips_every_message_exactly() -> None:
    store = MessageStore()
    fill(store, 50)
    assert len(store) == 50
    for i in range(50):
        assert store.message(i) == make_message(i)
        assert list(store.message(i)) == list(make_message(i))  # wire key order kept
        assert store.seq(i) == i + 1


def test_append_event_takes_message_events_only() -> None:
    store = MessageStore()
    assert store.append_event(Event.from_record({"seq": 7, "ts": "2026-01-01T00:00:00Z", "type": "message", "data": {"message": make_message(0)}}))
    assert not store.append_event(Event.from_record({"seq": 8, "ts": "2026-01-01T00:00:00Z", "type": "task_ready", "data": {"taskId": "a"}}))
    assert len(store) == 1 and store.seq(0) == 7


def test_append_events_takes_a_batch_and_counts_its_messages() -> None:
    """What both dashboards call with a live batch or a replay chunk."""
    ts = "2026-01-01T00:00:00Z"
    batch = [
        Event.decode(7, ts, "message", {"message": make_message(0)}),
        Event.decode(8, ts, "task_ready", {"taskId": "a"}),
        Event.decode(9, ts, "message", {"message": make_message(1)}),
    ]
    store = MessageStore()
    assert store.append_events(batch) == 2
    assert [store.seq(i) for i in range(len(store))] == [7, 9]
    assert store.append_events([]) == 0


def test_message_from_the_protocol_round_trips() -> None:
    """A message exactly as the manager journals it (pydantic model_dump) comes back equal."""
    cls = MESSAGE_CLASSES[MessageType.RESOURCE_LOCK]
    wire = cls.model_validate(
        {"from": "backend", "to": "sprint_manager", "type": "resource_lock", "correlationId": "c1",
         "payload": {"resourceId": "a.ts", "lockType": "read", "ttl": 500}}
    ).model_dump(mode="json", exclude_none=True)
    store = MessageStore()
    store.append(1, wire)
    assert store.message(0) == wire
    assert store.summary(0).summary_text == "↩ a.ts read"


def test_odd_envelopes_are_kept_verbatim() -> None:
    """Values the columns cannot hold exactly stay in the JSON bytes; nothing is lost."""
    odd = {"id": "x", "type": "broadcast_info", "from": "a", "timestamp": "2026-01-01T00:00:00+00:00",
           "payload": {"info": "hi"}, "priority": 3, "requiresResponse": "yes", "extra": [1]}
    store = MessageStore()
    store.append(1, odd)
    assert store.message(0) == odd
    assert store.recipient(0) == "" and store.time(0) == pytest.approx(1767225600.0)


def test_summary_columns() -> None:
    store = MessageStore()
    fill(store, 5)
    row = store.summary(0)
    assert (row.seq, row.type, row.sender, row.recipient, row.priority) == (
        1, "task_assign", "sprint_manager", "backend", "low")
    assert row.time == pytest.approx(BASE_MICROS / 1e6)
    assert store.summary(1).summary_text == "server/routes.ts write"


@pytest.mark.parametrize(
    ("kind", "payload", "text"),
    [
        ("task_assign", {"taskId": "implement_api", "attempt": 2}, "implement_api #2"),
        ("task_assign", {"taskId": "pair", "attempt": 1, "agents": ["a", "b"]}, "pair #1 with a, b"),
        ("task_complete", {"taskId": "api", "attempt": 1}, "api #1 done"),
        ("task_failed", {"taskId": "api", "attempt": 3, "error": "boom", "retryable": False}, "api #3 (final): boom"),
        ("task_update", {"taskId": "api", "attempt": 1, "progress": 0.25, "message": "x", "stream": "stdout"},
         "api #1 25% stdout: x"),
        ("task_cancel", {"taskId": "api", "attempt": 1, "reason": "operator"}, "api #1: operator"),
        ("resource_lock", {"resourceId": "server/routes.ts", "lockType": "write"}, "server/routes.ts write"),
        ("resource_lock", {"resourceId": "a", "lockType": "read", "lockId": "L1", "token": 4}, "a read granted token 4"),
        ("resource_unlock", {"resourceId": "a", "released": True}, "a released"),
        ("resource_conflict", {"resourceId": "a", "lockType": "write", "holder": "fe", "holderMode": "read",
                               "holderTask": "ui"}, "a write held by fe (read, ui)"),
        ("state_update", {"path": "a.ts", "checksum": "0123456789abcdef"}, "a.ts 01234567"),
        ("state_request", {"sections": ["files", "locks"]}, "files, locks"),
        ("state_sync", {"version": 12, "state": {}}, "version 12"),
        ("agent_ready", {"capabilities": ["api", "db"]}, "api, db"),
        ("agent_busy", {"taskId": "api", "reason": "full"}, "api full"),
        ("agent_error", {"error": "unknown field", "field": "payload.x"}, "payload.x: unknown field"),
        ("request_assistance", {"topic": "schema", "taskId": "api"}, "schema [api]"),
        ("broadcast_info", {"info": "two\nlines"}, "two lines"),
        ("heartbeat", {"tasks": ["a", "b"], "load": 2}, "load 2 a, b"),
        ("mystery", {"k": 1}, '{"k":1}'),
    ],
)
def test_summary_text_per_type(kind: str, payload: dict[str, Any], text: str) -> None:
    assert summarize(kind, payload) == text


def test_summary_is_short() -> None:
    assert len(summarize("broadcast_info", {"info": "x" * 1000})) <= 160


def test_index_of_seq() -> None:
    store = MessageStore()
    for i in range(10):
        store.append(100 + 3 * i, make_message(i))
    assert store.index_of_seq(112) == 4
    assert store.index_of_seq(113) is None
    assert store.index_of_seq(1) is None


# ---------------------------------------------------------------- filters


def expected(store: MessageStore, keep) -> list[int]:
    return [i for i in range(len(store)) if keep(store.message(i))]


@pytest.mark.parametrize(
    ("filter", "keep"),
    [
        (Filter(agent="frontend"), lambda m: "frontend" in (m["from"], m["to"])),
        (Filter(type="heartbeat"), lambda m: m["type"] == "heartbeat"),
        (Filter(priority="critical"), lambda m: m["priority"] == "critical"),
        (Filter(text="ROUTES"), lambda m: False),  # smart case: upper case is case-sensitive
        (Filter(text="routes"), lambda m: "routes" in str(m["payload"])),
        (Filter(text="Implement"), lambda m: "Implement" in str(m["payload"])),
        (Filter(text="tester"), lambda m: "tester" in (m["from"], m["to"])),
        (Filter(agent="backend", type="task_update", text="task_1"),
         lambda m: m["from"] == "backend" and m["type"] == "task_update" and "task_1" in m["payload"]["taskId"]),
        (Filter(agent="nobody"), lambda m: False),
    ],
)
def test_filter_matches_a_full_scan(filter: Filter, keep) -> None:
    store = MessageStore()
    fill(store, 600)
    view = FilteredView(store, filter)
    assert [view[row] for row in range(len(view))] == expected(store, keep)


def test_filtered_view_updates_incrementally() -> None:
    store = MessageStore()
    fill(store, 100)
    view = FilteredView(store, Filter(agent="tester"))
    before = len(view)
    fill(store, 30, start=100)
    added = view.update()
    assert added == len(view) - before > 0
    assert [view[r] for r in range(len(view))] == _rows(FilteredView(store, Filter(agent="tester")))
    assert view.update() == 0


def test_filter_on_a_name_not_seen_yet_picks_it_up_later() -> None:
    store = MessageStore()
    fill(store, 10)
    view = FilteredView(store, Filter(agent="newcomer", text="hello"))
    assert len(view) == 0
    message = make_message(10) | {"from": "newcomer", "payload": {"info": "hello"}, "type": "broadcast_info"}
    store.append(11, message)
    assert view.update() == 1 and view[0] == 10
    assert store.agents == ["sprint_manager", "backend", "frontend", "tester", "newcomer"]


def test_unfiltered_view_is_the_identity() -> None:
    store = MessageStore()
    fill(store, 5)
    view = FilteredView(store)
    assert len(view) == 5 and view[-1] == 4 and view.row_of(3) == 3
    fill(store, 2, start=5)
    assert view.update() == 2 and len(view) == 7


def test_row_of_and_nearest_row() -> None:
    store = MessageStore()
    fill(store, 30)
    view = FilteredView(store, Filter(type="heartbeat"))  # indices 3, 8, 13, ...
    assert view.row_of(8) == 1 and view.row_of(9) is None
    assert view.nearest_row(12) == 1


# ---------------------------------------------------------------- memory


def test_memory_per_message_measured_with_tracemalloc() -> None:
    """Everything the store allocates while taking 100,000 messages, scaled to a million."""
    messages = [make_message(i) for i in range(1000)]
    tracemalloc.start()
    try:
        store = MessageStore()
        for i in range(100_000):
            store.append(i + 1, messages[i % 1000])
        traced, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_million = traced * 10
    assert per_million < 250 * 1024 * 1024, f"{per_million / 2**20:.0f} MiB per million messages"


def test_a_million_messages_fit_the_budget() -> None:
    """The allocated sizes (growth slack included) of a real 1,000,000-message store."""
    messages = [make_message(i) for i in range(1000)]
    store = MessageStore()
    for i in range(1_000_000):
        store.append(i + 1, messages[i % 1000])
    assert len(store) == 1_000_000
    assert store.memory_bytes() < 250 * 1024 * 1024
    assert store.summary(999_999).seq == 1_000_000


def test_text_scan_across_chunk_boundaries(monkeypatch) -> None:
    """The buffer is scanned a few MiB at a time; a match cut by a chunk edge is still found."""
    store = MessageStore()
    fill(store, 300)
    whole = [_rows(FilteredView(store, Filter(text=text))) for text in ("routes", "Implement", "task_1")]
    monkeypatch.setattr(Matcher, "CHUNK", 7)
    chunked = [_rows(FilteredView(store, Filter(text=text))) for text in ("routes", "Implement", "task_1")]
    assert chunked == whole and all(whole)
    assert whole[0] == expected(store, lambda m: "routes" in str(m["payload"]))


def _rows(view: FilteredView) -> list[int]:
    """The store indices a view shows, in order (through its public indexing)."""
    view.update()
    return [view[row] for row in range(len(view))]
