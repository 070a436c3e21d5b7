"""The NATS transport over a real nats-server (Debian's, started by the test on a free port).

The same contract as the other transports: tests/test_bus.py's suite on a `NatsTransport` with
nobody bound, and tests/test_socket_transport.py's cross-process behaviours (priority order both
ways, request/reply with timeouts, unknown recipients, broadcast, inboxes that wait for an agent)
with `NatsClient`s in place of socket clients.  Then what is NATS's own: binding by token and
session key, so that a NATS account alone does not make a client an agent, and a client that binds
again after the NATS server was killed and restarted.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from engine.protocol import MANAGER_ID, IPCMessage, make_message, parse_message
from engine.transports.address import Address, parse_address
from engine.transports.client import HandshakeRefused
from engine.transports.nats import NatsTransport
from engine.transports.nats_client import NatsClient
from engine.transports.nats_link import REPLY_HEADER, SESSION_HEADER, Subjects
from engine.transports.nats_order import AFTER_HEADER, HOLD_LIMIT
from nats_server import NatsServer
from test_bus import drain

from test_bus import (  # noqa: F401  tests/test_bus.py's suite, run again here on the `bus` fixture below
    test_async_for_ends_on_unsubscribe,
    test_big_but_legal_message_is_delivered,
    test_broadcast_reaches_everyone_but_the_sender,
    test_broadcast_request_is_refused,
    test_cancelled_reader_loses_nothing,
    test_default_timeout_without_response_timeout,
    test_duplicate_reply_goes_to_the_inbox,
    test_escaped_characters_count_at_their_wire_size,
    test_explicit_timeout_wins_and_is_sent_along,
    test_oversize_message_is_refused,
    test_oversize_nested_data_is_refused,
    test_priority_order_then_fifo,
    test_raising_observer_stops_delivery,
    test_reply_to_someone_else_does_not_resolve,
    test_request_gets_its_reply_not_the_inbox,
    test_request_to_unknown_recipient_raises_at_once,
    test_requester_needs_no_inbox,
    test_subscribing_twice_is_refused,
    test_tap_sees_every_delivered_message_once,
    test_timeout_uses_response_timeout_ms,
    test_unknown_recipient_raises_and_delivers_nothing,
    test_waiting_reader_is_woken,
)
from test_socket_transport import (  # noqa: F401  the cross-process suite, run here on the `net` fixture below
    GUARD,
    TOKENS,
    Bus,
    drain_into,
    grant,
    lock_request,
    test_a_remote_request_gets_its_reply_not_the_inbox,
    test_an_agent_declared_dead_does_not_get_its_old_messages,
    test_broadcast_reaches_local_and_remote_subscribers_but_not_the_sender,
    test_manager_side_request_to_a_remote_agent,
    test_priority_order_then_fifo_from_an_agent,
    test_priority_order_then_fifo_to_an_agent_that_connects_later,
    test_request_timeout_then_a_late_reply_is_an_ordinary_message,
    test_unknown_recipient_is_refused_both_ways,
    until,
    update,
    welcome,
)

_sprints = itertools.count()


@pytest.fixture(scope="module")
def nats_url() -> Iterator[str]:
    """One nats-server for the module's tests; each test uses a sprint (subjects) of its own."""
    store = Path(tempfile.mkdtemp(prefix="sd-nats-", dir="/tmp"))
    server = NatsServer(store).start()
    yield server.url
    server.stop()
    shutil.rmtree(store, ignore_errors=True)


def sprint_address(url: str) -> Address:
    return parse_address(f"{url}/t{next(_sprints)}")


class NatsBus(Bus):
    """tests/test_socket_transport.py's `Bus`, its clients `NatsClient`s."""

    client_class = NatsClient


async def start_nats_bus(address: Address, *, manager: bool = False) -> NatsBus:
    bus = NatsBus(transport=None, address=address)  # type: ignore[arg-type]
    transport = NatsTransport(address, tokens=TOKENS, on_refused=bus.refusals.append)
    bus.transport = transport  # type: ignore[assignment]
    transport.tap(lambda message: welcome(transport, message))  # type: ignore[arg-type]
    if manager:
        bus.manager = transport.subscribe(MANAGER_ID)
    await transport.start()
    return bus


@pytest.fixture
async def net(nats_url: str) -> Any:
    """A started NATS transport with two external agents, agent-a and agent-b."""
    net = await start_nats_bus(sprint_address(nats_url))
    yield net
    await net.transport.close()


@pytest.fixture
async def bus(nats_url: str) -> Any:
    """For tests/test_bus.py's suite: the NATS transport with nobody bound is the in-process bus."""
    transport = NatsTransport(sprint_address(nats_url), tokens={})
    await transport.start()
    yield transport
    await transport.close()


class Raw:
    """A hand-written NATS client: what a client with the NATS account but not the agent's token,
    or a buggy agent, would publish."""

    def __init__(self, nc: Any, subjects: Subjects) -> None:
        self.nc, self.subjects = nc, subjects
        self.replies: asyncio.Queue[tuple[IPCMessage, str | None]] = asyncio.Queue()
        self.inbox = nc.new_inbox()

    @classmethod
    async def open(cls, address: Address) -> Raw:
        raw = cls(await nats.connect(f"nats://{address.host}:{address.port}"), Subjects(address.sprint))

        async def take(msg: Any) -> None:
            await raw.replies.put((parse_message(msg.data), (msg.headers or {}).get(SESSION_HEADER)))

        await raw.nc.subscribe(raw.inbox, cb=take)
        return raw

    async def send(self, data: bytes | IPCMessage, session: str | None = None) -> None:
        body = data.wire().encode() if isinstance(data, IPCMessage) else data
        headers = {REPLY_HEADER: self.inbox, **({SESSION_HEADER: session} if session else {})}
        await self.nc.publish(self.subjects.manager, body, headers=headers)  # core NATS: the stream takes it

    async def receive(self) -> tuple[IPCMessage, str | None]:
        return await asyncio.wait_for(self.replies.get(), GUARD)

    async def hello(self, agent_id: str = "agent-a", token: str | None = None) -> tuple[IPCMessage, str | None]:
        await self.send(make_message("agent_ready", agent_id, MANAGER_ID, {"token": token or TOKENS[agent_id]}))
        return await self.receive()

    async def close(self) -> None:
        await self.nc.close()


# ---------------------------------------------------------------- binding and refusals


async def test_a_wrong_token_is_refused_with_the_field_and_recorded(net: NatsBus) -> None:
    net.transport.subscribe(MANAGER_ID)
    raw = await Raw.open(net.address)
    error, session = await raw.hello("agent-a", token="guess")
    assert error.type == "agent_error" and error.payload.field == "payload.token" and session is None
    assert error.payload.error == "wrong token for agent 'agent-a'"
    await raw.close()
    client = NatsClient(net.address, "agent-b", token=lambda: "wrong", give_up_after=GUARD)
    with pytest.raises(HandshakeRefused, match="payload.token: wrong token for agent 'agent-b'"):
        await asyncio.wait_for(client.connect(), GUARD)
    await client.close()
    assert [(r.field, r.claimed, r.security) for r in net.refusals] == [
        ("payload.token", "agent-a", True),
        ("payload.token", "agent-b", True),
    ]
    assert net.transport.connected == []


async def test_without_the_session_key_a_nats_client_cannot_act_as_an_agent(net: NatsBus) -> None:
    """The NATS account lets anyone publish on the manager's subject; only the key makes an agent."""
    manager = net.transport.subscribe(MANAGER_ID)
    raw = await Raw.open(net.address)
    unbound = update("agent-a", text="no hello")
    await raw.send(unbound)
    error, _ = await raw.receive()
    assert error.payload.field == "type" and "must be agent_ready" in error.payload.error
    forged = update("agent-a", text="made-up key")
    await raw.send(forged, session="not-a-key")
    error, _ = await raw.receive()
    assert error.payload.field == "session" and error.correlation_id == forged.id
    messages: list[IPCMessage] = []
    await asyncio.sleep(0.2)
    assert drain_into(manager, messages) == []  # nothing reached the manager
    assert [(r.field, r.claimed, r.security) for r in net.refusals] == [
        ("type", "agent-a", True),
        ("session", "agent-a", True),
    ]
    await raw.close()


async def test_a_spoofed_sender_is_refused_and_the_session_goes_on(net: NatsBus) -> None:
    manager = net.transport.subscribe(MANAGER_ID)
    raw = await Raw.open(net.address)
    hello, session = await raw.hello("agent-a")
    assert hello.type == "broadcast_info" and hello.payload.info == "welcome" and session
    spoofed = update("agent-b", text="I am b")
    await raw.send(spoofed, session)
    error, _ = await raw.receive()
    assert error.payload.field == "from" and error.correlation_id == spoofed.id
    assert "bound to agent 'agent-a'" in error.payload.error and "'agent-b'" in error.payload.error
    forged = make_message("task_assign", "agent-a", "agent-b", {"taskId": "T1", "attempt": 1})
    await raw.send(forged, session)
    error, _ = await raw.receive()
    assert error.payload.field == "type" and "sprint manager only" in error.payload.error
    await raw.send(b"{not json", session)
    error, _ = await raw.receive()
    assert error.type == "agent_error" and "not JSON" in error.payload.error
    genuine = update("agent-a", text="I am a")
    await raw.send(genuine, session)
    messages: list[IPCMessage] = []
    await until(lambda: genuine.id in [m.id for m in drain_into(manager, messages)], "the genuine message")
    assert [m.type for m in messages] == ["agent_ready", "task_update"]
    assert "token" not in messages[0].wire()  # the token stays on the wire, out of the journal
    spoof, forge, malformed = net.refusals
    assert (spoof.field, spoof.bound, spoof.claimed, spoof.security) == ("from", "agent-a", "agent-b", True)
    assert (forge.field, forge.security) == ("type", True)
    assert malformed.reason.startswith("not JSON") and not malformed.security
    await raw.close()


async def test_a_new_handshake_replaces_the_old_session(net: NatsBus) -> None:
    manager = net.transport.subscribe(MANAGER_ID)
    first, second = await Raw.open(net.address), await Raw.open(net.address)
    _, old = await first.hello("agent-a")
    _, new = await second.hello("agent-a")
    assert old and new and old != new
    stale = update("agent-a", text="from the old session")
    await first.send(stale, old)
    error, _ = await first.receive()
    assert error.payload.field == "session"
    fresh = update("agent-a", text="from the new one")
    await second.send(fresh, new)
    messages: list[IPCMessage] = []
    await until(lambda: fresh.id in [m.id for m in drain_into(manager, messages)], "the new session's message")
    assert stale.id not in [m.id for m in messages]
    await first.close()
    await second.close()


# ---------------------------------------------------------------- the NATS server goes away


async def test_the_client_binds_again_after_the_nats_server_was_killed_and_restarted() -> None:
    store = Path(tempfile.mkdtemp(prefix="sd-nats-", dir="/tmp"))
    server = NatsServer(store).start()
    try:
        bus = await start_nats_bus(sprint_address(server.url), manager=True)
        connections: list[bool] = []
        client = NatsClient(bus.address, "agent-a", token=lambda: TOKENS["agent-a"], give_up_after=GUARD)
        client.events.connected = connections.append
        await asyncio.wait_for(client.connect(), GUARD)
        inbox = client.subscribe("agent-a")
        reading = asyncio.create_task(client.run())
        try:
            server.kill()
            server.start()  # the same port and store
            await until(lambda: connections == [False, True], "a second handshake")
            after = update("agent-a", text="after the restart")
            await client.send(after)
            messages: list[IPCMessage] = []
            await until(lambda: after.id in [m.id for m in drain_into(bus.manager, messages)], "the message")
            assert [m.type for m in messages].count("agent_ready") == 2
            back = update(MANAGER_ID, to="agent-a", text="welcome back")
            await bus.transport.send(back)
            assert (await asyncio.wait_for(inbox.get(), GUARD)).id == back.id
            await bus.transport.finish()  # type: ignore[attr-defined]
            await asyncio.wait_for(reading, GUARD)
            assert client.finished
        finally:
            reading.cancel()
            await client.close()
            await bus.transport.close()
    finally:
        server.stop()
        shutil.rmtree(store, ignore_errors=True)


async def test_a_stored_message_survives_kill_9_of_the_server_and_comes_once() -> None:
    """JetStream: what the server acknowledged for an agent that is away waits on disk through a
    kill -9 and restart; once the agent has acknowledged it, it does not come again."""
    store = Path(tempfile.mkdtemp(prefix="sd-nats-", dir="/tmp"))
    server = NatsServer(store).start()
    bus = await start_nats_bus(sprint_address(server.url), manager=True)

    async def agent_a() -> tuple[NatsClient, Any]:
        client = NatsClient(bus.address, "agent-a", token=lambda: TOKENS["agent-a"], give_up_after=GUARD)
        await asyncio.wait_for(client.connect(), GUARD)
        return client, client.subscribe("agent-a")

    try:
        first, _ = await agent_a()
        await first.close()  # the agent's process is gone; the manager cannot tell (no connection)
        kept = update(MANAGER_ID, to="agent-a", text="stored while you were away")
        await bus.transport.send(kept)
        await until(lambda: len(bus.transport._inboxes["agent-a"]) == 0 and not bus.transport._unsent, "stored")  # type: ignore[attr-defined]
        server.kill()
        server.start()
        second, inbox = await agent_a()
        assert (await asyncio.wait_for(inbox.get(), GUARD)).id == kept.id
        await asyncio.sleep(0.2)  # its ack reaches the server
        await second.close()
        server.kill()
        server.start()
        fresh = update(MANAGER_ID, to="agent-a", text="after the second restart")
        third, inbox = await agent_a()
        await bus.transport.send(fresh)
        assert (await asyncio.wait_for(inbox.get(), GUARD)).id == fresh.id  # not `kept` again
        await asyncio.sleep(0.2)
        assert len(inbox) == 0
        await third.close()
    finally:
        await bus.transport.close()
        server.stop()
        shutil.rmtree(store, ignore_errors=True)


# ---------------------------------------------------------------- requests on core NATS


async def stored_on(bus: NatsBus, subject: str) -> int:
    """How many messages the sprint's stream holds on `subject`."""
    info = await bus.transport._js.stream_info(bus.transport.subjects.stream, subjects_filter=subject)  # type: ignore[attr-defined]
    return int((info.state.subjects or {}).get(subject, 0))


async def test_a_request_is_taken_after_everything_its_agent_stored_before_it(nats_url: str) -> None:
    """A request and its reply travel on core NATS, one hop each way, stored nowhere; the manager
    still takes the request after the messages its agent sent before it, though those go through
    the stream and the agent's consumer holds back all but 64 unacknowledged (the manager takes them at the
    agent's budget, 2,000 a second)."""
    bus = await start_nats_bus(sprint_address(nats_url), manager=True)
    try:
        async with bus.client("agent-a") as client:
            # All at once: the stream has them at once, and the agent's consumer holds back all but 64.
            await asyncio.gather(*(client.send(update("agent-a", text=f"before {i}")) for i in range(300)))
            asking = asyncio.create_task(client.request(lock_request(), timeout=GUARD))
            messages: list[IPCMessage] = []
            await until(lambda: any(m.type == "resource_lock" for m in drain_into(bus.manager, messages)), "the request")
            taken = [m.payload.message if m.type == "task_update" else m.type for m in messages if m.type != "agent_ready"]
            assert taken == [f"before {i}" for i in range(300)] + ["resource_lock"]
            request = messages[-1]
            await bus.transport.send(grant(request))
            reply = await asyncio.wait_for(asking, GUARD)
            assert reply.correlation_id == request.id and reply.payload.lock_id == "L1"
            subjects = bus.transport.subjects  # type: ignore[attr-defined]
            assert await stored_on(bus, subjects.asked_by("agent-a")) == 0
            assert await stored_on(bus, subjects.sent_by("agent-a")) == 300
            assert await stored_on(bus, subjects.agent("agent-a")) == 0  # the reply went on core NATS too
    finally:
        await bus.transport.close()


async def test_a_reply_on_core_nats_waits_for_the_stored_message_sent_before_it(nats_url: str) -> None:
    """The manager's reply names the last message it stored for the agent (its stream sequence);
    the client takes the reply only once that message has come through its consumer, so a reply
    never overtakes, say, the cancel the manager sent first.  Here the manager's side is played by
    hand: the reply says it follows a message that the stream gets only later."""
    bus = await start_nats_bus(sprint_address(nats_url), manager=True)
    raw = await nats.connect(nats_url)
    try:
        async with bus.client("agent-a") as client:
            inbox = client.subscribe("agent-a")
            asking = asyncio.create_task(client.request(lock_request(), timeout=GUARD))
            messages: list[IPCMessage] = []
            await until(lambda: any(m.type == "resource_lock" for m in drain_into(bus.manager, messages)), "the request")
            js = raw.jetstream()
            subjects = bus.transport.subjects  # type: ignore[attr-defined]
            following = (await js.stream_info(subjects.stream)).state.last_seq + 1
            await raw.publish(client._reply, grant(messages[-1]).wire().encode(), headers={AFTER_HEADER: str(following)})
            await asyncio.sleep(0.3)
            assert not asking.done(), "the reply was taken before the message it follows"
            first = update(MANAGER_ID, to="agent-a", text="stored before the reply")
            assert (await js.publish(subjects.agent("agent-a"), first.wire().encode())).seq == following
            reply = await asyncio.wait_for(asking, GUARD)
            assert reply.payload.lock_id == "L1"
            assert [m.id for m in drain(inbox)] == [first.id]
    finally:
        await raw.close()
        await bus.transport.close()


async def test_a_reply_naming_a_message_that_never_comes_is_taken_after_the_hold_limit(nats_url: str) -> None:
    bus = await start_nats_bus(sprint_address(nats_url), manager=True)
    raw = await nats.connect(nats_url)
    try:
        async with bus.client("agent-a") as client:
            asking = asyncio.create_task(client.request(lock_request(), timeout=GUARD))
            messages: list[IPCMessage] = []
            await until(lambda: any(m.type == "resource_lock" for m in drain_into(bus.manager, messages)), "the request")
            await raw.publish(client._reply, grant(messages[-1]).wire().encode(), headers={AFTER_HEADER: "999999"})
            await asyncio.sleep(HOLD_LIMIT / 2)
            assert not asking.done()
            assert (await asyncio.wait_for(asking, GUARD)).payload.lock_id == "L1"
    finally:
        await raw.close()
        await bus.transport.close()
