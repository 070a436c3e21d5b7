"""The in-process transport: delivery order, broadcast, request/reply, errors, tap, size limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.protocol import (
    BROADCAST,
    MANAGER_ID,
    MAX_MESSAGE_BYTES,
    IPCMessage,
    ProtocolError,
    make_message,
    reply_to,
)
from engine.transports.base import (
    DEFAULT_RESPONSE_TIMEOUT_MS,
    ResponseTimeout,
    TransportClosed,
    TransportError,
    UnknownRecipient,
    _message_bound,
    wire_size,
)
from engine.transports.inproc import InProcessTransport


def update(sender: str, to: str = MANAGER_ID, text: str = "", **envelope: Any) -> IPCMessage:
    return make_message(
        "task_update", sender, to, {"taskId": "T1", "attempt": 1, "message": text}, **envelope
    )


def lock_request(sender: str = "agent-a", **envelope: Any) -> IPCMessage:
    return make_message(
        "resource_lock", sender, MANAGER_ID, {"resourceId": "src/a.py", "lockType": "write"}, **envelope
    )


def grant(request: IPCMessage) -> IPCMessage:
    return reply_to(
        request, "resource_lock", {"resourceId": "src/a.py", "lockType": "write", "lockId": "L1", "token": 1}
    )


def drain(inbox: Any) -> list[IPCMessage]:
    messages = []
    while (message := inbox.get_nowait()) is not None:
        messages.append(message)
    return messages


@pytest.fixture
async def bus() -> Any:
    transport = InProcessTransport()
    yield transport
    await transport.close()


# ---------------------------------------------------------------- order


async def test_priority_order_then_fifo(bus: InProcessTransport) -> None:
    inbox = bus.subscribe(MANAGER_ID)
    sent = [
        update("a", text=f"{priority}-{n}", priority=priority)
        for n in range(3)
        for priority in ("low", "medium", "critical", "high")
    ]
    for message in sent:
        await bus.send(message)
    assert len(inbox) == 12
    texts = [message.payload.message for message in drain(inbox)]
    assert texts == [
        f"{priority}-{n}" for priority in ("critical", "high", "medium", "low") for n in range(3)
    ]
    assert len(inbox) == 0


async def test_waiting_reader_is_woken(bus: InProcessTransport) -> None:
    inbox = bus.subscribe(MANAGER_ID)
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    message = update("a")
    await bus.send(message)
    assert await asyncio.wait_for(reader, 1) is message


async def test_cancelled_reader_loses_nothing(bus: InProcessTransport) -> None:
    inbox = bus.subscribe(MANAGER_ID)
    first = asyncio.create_task(inbox.get())
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    message = update("a")
    await bus.send(message)  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs: the wake-up passes to `second`
    assert await asyncio.wait_for(second, 1) is message


async def test_async_for_ends_on_unsubscribe(bus: InProcessTransport) -> None:
    inbox = bus.subscribe("agent-b")
    await bus.send(update("a", to="agent-b", text="one"))
    await bus.send(update("a", to="agent-b", text="two"))
    bus.unsubscribe("agent-b")
    assert [message.payload.message async for message in inbox] == ["one", "two"]
    with pytest.raises(TransportClosed):
        await inbox.get()
    with pytest.raises(UnknownRecipient):
        await bus.send(update("a", to="agent-b"))


# ---------------------------------------------------------------- routing


async def test_broadcast_reaches_everyone_but_the_sender(bus: InProcessTransport) -> None:
    inboxes = {agent: bus.subscribe(agent) for agent in (MANAGER_ID, "a", "b", "c")}
    info = make_message("broadcast_info", MANAGER_ID, BROADCAST, {"info": "pause"})
    await bus.send(info)
    assert {agent: drain(inbox) for agent, inbox in inboxes.items()} == {
        MANAGER_ID: [],
        "a": [info],
        "b": [info],
        "c": [info],
    }


async def test_unknown_recipient_raises_and_delivers_nothing(bus: InProcessTransport) -> None:
    inbox = bus.subscribe(MANAGER_ID)
    seen: list[IPCMessage] = []
    bus.tap(seen.append)
    with pytest.raises(UnknownRecipient) as caught:
        await bus.send(update(MANAGER_ID, to="ghost"))
    assert caught.value.agent_id == "ghost"
    assert "'ghost'" in str(caught.value)
    assert seen == [] and len(inbox) == 0


async def test_subscribing_twice_is_refused(bus: InProcessTransport) -> None:
    bus.subscribe("a")
    with pytest.raises(TransportError, match="already subscribed"):
        bus.subscribe("a")
    with pytest.raises(TransportError, match="reserved"):
        bus.subscribe(BROADCAST)
    bus.unsubscribe("a")
    bus.subscribe("a")  # after unsubscribing, the id is free again
    assert bus.subscribers == ["a"]


async def test_tap_sees_every_delivered_message_once(bus: InProcessTransport) -> None:
    manager = bus.subscribe(MANAGER_ID)
    bus.subscribe("a")
    bus.subscribe("b")
    seen: list[IPCMessage] = []
    bus.tap(seen.append)

    async def answer() -> None:
        request = await manager.get()
        await bus.send(grant(request))

    sent = [update("a"), make_message("broadcast_info", MANAGER_ID, BROADCAST, {"info": "hi"})]
    for message in sent:
        await bus.send(message)
    drain(manager)
    answering = asyncio.create_task(answer())
    reply = await bus.request(lock_request("a"), timeout=1)
    await answering
    assert [message.type for message in seen] == [
        "task_update",
        "broadcast_info",
        "resource_lock",
        "resource_lock",
    ]
    assert seen[:2] == sent
    assert seen[3] is reply


async def test_raising_observer_stops_delivery(bus: InProcessTransport) -> None:
    inbox = bus.subscribe(MANAGER_ID)

    def journal_full(message: IPCMessage) -> None:
        raise OSError("disk full")

    bus.tap(journal_full)
    with pytest.raises(OSError, match="disk full"):
        await bus.send(update("a"))
    assert len(inbox) == 0


# ---------------------------------------------------------------- request / reply


async def serve_once(bus: InProcessTransport, inbox: Any, replies: int = 1) -> IPCMessage:
    request = await inbox.get()
    for _ in range(replies):
        await bus.send(grant(request))
    return request


async def test_request_gets_its_reply_not_the_inbox(bus: InProcessTransport) -> None:
    manager = bus.subscribe(MANAGER_ID)
    mine = bus.subscribe("agent-a")
    server = asyncio.create_task(serve_once(bus, manager))
    request = lock_request()
    reply = await bus.request(request, timeout=1)
    received = await server
    assert reply.correlation_id == request.id == received.id
    assert reply.payload.lock_id == "L1"
    assert received.requires_response is True
    assert received.response_timeout == 1000
    assert len(mine) == 0


async def test_requester_needs_no_inbox(bus: InProcessTransport) -> None:
    manager = bus.subscribe(MANAGER_ID)
    server = asyncio.create_task(serve_once(bus, manager))
    reply = await bus.request(lock_request("hook-client"), timeout=1)
    await server
    assert reply.to == "hook-client"


async def test_duplicate_reply_goes_to_the_inbox(bus: InProcessTransport) -> None:
    manager = bus.subscribe(MANAGER_ID)
    mine = bus.subscribe("agent-a")
    server = asyncio.create_task(serve_once(bus, manager, replies=2))
    reply = await bus.request(lock_request(), timeout=1)
    await server
    duplicates = drain(mine)
    assert len(duplicates) == 1
    assert duplicates[0] is not reply
    assert duplicates[0].correlation_id == reply.correlation_id


async def test_reply_to_someone_else_does_not_resolve(bus: InProcessTransport) -> None:
    manager = bus.subscribe(MANAGER_ID)
    other = bus.subscribe("agent-b")
    requesting = asyncio.create_task(bus.request(lock_request("agent-a"), timeout=0.05))
    request = await manager.get()
    stolen = grant(request).model_copy(update={"to": "agent-b"})
    await bus.send(stolen)
    assert drain(other) == [stolen]
    with pytest.raises(ResponseTimeout):
        await requesting


async def test_timeout_uses_response_timeout_ms(bus: InProcessTransport) -> None:
    manager = bus.subscribe(MANAGER_ID)
    mine = bus.subscribe("agent-a")
    request = lock_request(response_timeout=60)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(5):  # guard: the test must not hang on the 30 s default
        with pytest.raises(ResponseTimeout) as caught:
            await bus.request(request)
    assert loop.time() - started >= 0.055
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert error.message_id == request.id
    assert error.message_type == "resource_lock"
    assert request.id in str(error) and "resource_lock" in str(error) and "60 ms" in str(error)
    # A reply after the timeout is an ordinary message for the asker.
    late = grant(await manager.get())
    await bus.send(late)
    assert drain(mine) == [late]


async def test_explicit_timeout_wins_and_is_sent_along(bus: InProcessTransport) -> None:
    manager = bus.subscribe(MANAGER_ID)
    async with asyncio.timeout(5):
        with pytest.raises(ResponseTimeout) as caught:
            await bus.request(lock_request(response_timeout=60_000), timeout=0.02)
    assert caught.value.timeout == 0.02
    assert (await manager.get()).response_timeout == 20


async def test_default_timeout_without_response_timeout(bus: InProcessTransport) -> None:
    manager = bus.subscribe(MANAGER_ID)
    requesting = asyncio.create_task(bus.request(lock_request()))
    assert (await manager.get()).response_timeout == DEFAULT_RESPONSE_TIMEOUT_MS
    requesting.cancel()


async def test_request_to_unknown_recipient_raises_at_once(bus: InProcessTransport) -> None:
    request = lock_request().model_copy(update={"to": "ghost"})
    with pytest.raises(UnknownRecipient):
        await bus.request(request, timeout=5)
    with pytest.raises(UnknownRecipient):  # not "already waiting": nothing was left waiting for a reply
        await bus.request(request, timeout=5)


async def test_broadcast_request_is_refused(bus: InProcessTransport) -> None:
    with pytest.raises(TransportError, match="one recipient"):
        await bus.request(make_message("broadcast_info", MANAGER_ID, BROADCAST, {"info": "?"}))


async def test_close_fails_pending_requests_and_later_sends() -> None:
    bus = InProcessTransport()
    bus.subscribe(MANAGER_ID)
    requesting = asyncio.create_task(bus.request(lock_request(), timeout=5))
    await asyncio.sleep(0)
    await bus.close()
    with pytest.raises(TransportClosed):
        await requesting
    with pytest.raises(TransportClosed):
        await bus.send(update("a"))
    with pytest.raises(TransportClosed):
        bus.subscribe("a")


# ---------------------------------------------------------------- size limit


async def test_oversize_message_is_refused(bus: InProcessTransport) -> None:
    inbox = bus.subscribe(MANAGER_ID)
    big = update("a", text="x" * MAX_MESSAGE_BYTES)
    with pytest.raises(ProtocolError) as caught:
        await bus.send(big)
    assert f"exceeds the {MAX_MESSAGE_BYTES} byte limit" in caught.value.reason
    assert caught.value.message_id == big.id
    assert len(inbox) == 0


async def test_oversize_nested_data_is_refused(bus: InProcessTransport) -> None:
    bus.subscribe("a")
    data = {f"file-{n}": {"checksum": "0" * 64, "modifiedBy": None} for n in range(12_000)}
    with pytest.raises(ProtocolError):
        await bus.send(make_message("broadcast_info", MANAGER_ID, BROADCAST, {"info": "state", "data": data}))


async def test_escaped_characters_count_at_their_wire_size(bus: InProcessTransport) -> None:
    bus.subscribe(MANAGER_ID)
    # 200,000 characters, but each is written as a six-byte \u0001 escape on the wire.
    with pytest.raises(ProtocolError):
        await bus.send(update("a", text="\x01" * 200_000))


async def test_big_but_legal_message_is_delivered(bus: InProcessTransport) -> None:
    inbox = bus.subscribe(MANAGER_ID)
    # Its cheap bound is over the limit, so the transport measures it exactly, and it fits.
    message = update("a", text="x" * (MAX_MESSAGE_BYTES - 1000))
    assert _message_bound(message) > MAX_MESSAGE_BYTES >= wire_size(message)
    await bus.send(message)
    assert inbox.get_nowait() is message


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(),
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=5),
    sender=st.text(min_size=1, max_size=30),
    timeout=st.none() | st.integers(min_value=1),
)
def test_size_bound_is_never_below_the_wire_size(
    text: str, data: dict[str, Any], sender: str, timeout: int | None
) -> None:
    for message in (
        make_message(
            "broadcast_info", sender, BROADCAST, {"info": text, "data": data}, response_timeout=timeout
        ),
        update(sender, text=text, correlation_id=text or None),
        make_message("heartbeat", sender, MANAGER_ID, {"tasks": [text, sender], "load": 3}),
    ):
        assert _message_bound(message) >= wire_size(message)
