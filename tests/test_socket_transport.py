"""The socket transport over real sockets (Unix and loopback TCP) in temporary directories.

The in-process bus's contract (tests/test_bus.py) where it applies across a connection: priority
order, request/reply by correlationId with timeouts, unknown recipients, the size limit, broadcast;
then what only a socket has: binding a connection with a token, refusing a spoofed sender, a
malformed or oversize line answered and the connection kept, inboxes that wait for a reconnect.
Waiting loops have generous guards so that a bug fails instead of hanging; nothing asserts a time.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from engine.protocol import BROADCAST, MANAGER_ID, WELCOME, MAX_MESSAGE_BYTES, IPCMessage, ProtocolError, make_message, parse_message, reply_to
from engine.transports.address import Address, AddressError, bound_address, listen, parse_address
from engine.transports.base import ResponseTimeout, TransportClosed, UnknownRecipient
from engine.transports.client import HandshakeRefused, SocketClient
from engine.transports.framing import LineFramer, Oversize, encode
from engine.refusal import Refusal
from engine.transports.socket import SocketTransport
from engine.transports.tokens import ensure_tokens, read_token, tokens_dir_for

from test_bus import drain  # the same helper for both transports
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

TOKENS = {"agent-a": "token-of-a", "agent-b": "token-of-b"}
GUARD = 10.0  # seconds before a wait is a failure rather than a hang


def update(sender: str, to: str = MANAGER_ID, text: str = "", **envelope: Any) -> IPCMessage:
    return make_message("task_update", sender, to, {"taskId": "T1", "attempt": 1, "message": text}, **envelope)


def lock_request(sender: str = "agent-a", **envelope: Any) -> IPCMessage:
    return make_message("resource_lock", sender, MANAGER_ID, {"resourceId": "src/a.py", "lockType": "write"}, **envelope)


def grant(request: IPCMessage) -> IPCMessage:
    return reply_to(request, "resource_lock", {"resourceId": "src/a.py", "lockType": "write", "lockId": "L1", "token": 1})


async def until(condition: Callable[[], bool], what: str) -> None:
    async with asyncio.timeout(GUARD):
        while not condition():
            await asyncio.sleep(0.005)


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def short_dir() -> Any:
    """Unix socket paths are limited to 107 bytes: pytest's tmp_path can be longer."""
    directory = Path(tempfile.mkdtemp(prefix="sd-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Bus:
    transport: SocketTransport
    address: Address
    refusals: list[Refusal] = field(default_factory=list)
    manager: Any = None  # the manager's inbox, when start_bus opened it
    client_class: ClassVar[Any] = SocketClient  # the NATS suite's bus connects NatsClients

    @asynccontextmanager
    async def client(self, agent_id: str, token: str | None = None) -> AsyncIterator[Any]:
        """A connected client for `agent_id`, reading (and reconnecting) in the background."""
        client = self.client_class(self.address, agent_id, token=lambda: token or TOKENS[agent_id], give_up_after=GUARD)
        await asyncio.wait_for(client.connect(), GUARD)
        reading = asyncio.create_task(client.run())
        try:
            yield client
        finally:
            await client.close()
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)


def welcome(transport: SocketTransport, message: IPCMessage) -> None:
    """What the manager does with an agent_ready (the transport only binds once it is answered)."""
    if message.type == "agent_ready" and message.requires_response:
        data = {"agentId": message.from_, "heartbeatInterval": 0.05}
        answer = reply_to(message, "broadcast_info", {"info": WELCOME, "data": data}, priority="critical")
        asyncio.get_running_loop().create_task(transport.send(answer))


def make_address(kind: str, directory: Path) -> Address:
    text = f"unix:{directory}/sock/bus.sock" if kind == "unix" else "tcp:127.0.0.1:0"
    return parse_address(text, listening=True)


async def start_bus(address: Address, *, manager: bool = False) -> Bus:
    """A listening SocketTransport; with `manager`, the manager's inbox opens before anyone connects."""
    listener, _ = listen(address)
    address = bound_address(address, listener)
    bus = Bus(transport=None, address=address)  # type: ignore[arg-type]
    bus.transport = SocketTransport(
        listener,
        address,
        tokens=TOKENS,
        on_refused=bus.refusals.append,
    )
    bus.transport.tap(lambda message: welcome(bus.transport, message))
    if manager:
        bus.manager = bus.transport.subscribe(MANAGER_ID)
    await bus.transport.start()
    return bus


@pytest.fixture(params=["unix", "tcp"])
async def net(request: Any, short_dir: Path) -> Any:
    """A started socket transport with two external agents, agent-a and agent-b."""
    net = await start_bus(make_address(request.param, short_dir))
    yield net
    await net.transport.close()


@pytest.fixture
async def bus(short_dir: Path) -> Any:
    """For tests/test_bus.py's suite: the socket transport with nobody connected is the in-process bus."""
    address = make_address("unix", short_dir)
    listener, _ = listen(address)
    transport = SocketTransport(listener, address, tokens={})
    await transport.start()
    yield transport
    await transport.close()


class Raw:
    """A hand-written peer: exact bytes on the wire, what a buggy or hostile agent would send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, address: Address) -> Raw:
        if address.kind == "unix":
            return cls(*await asyncio.open_unix_connection(address.path, limit=4 * MAX_MESSAGE_BYTES))
        return cls(*await asyncio.open_connection(address.host, address.port, limit=4 * MAX_MESSAGE_BYTES))

    async def send(self, data: bytes | IPCMessage) -> None:
        self.writer.write(encode(data) if isinstance(data, IPCMessage) else data)
        await self.writer.drain()

    async def receive(self) -> IPCMessage:
        line = await asyncio.wait_for(self.reader.readline(), GUARD)
        assert line, "the server closed the connection"
        return parse_message(line)

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), GUARD) == b""

    async def hello(self, agent_id: str = "agent-a", token: str | None = None) -> IPCMessage:
        await self.send(make_message("agent_ready", agent_id, MANAGER_ID, {"token": token or TOKENS[agent_id]}))
        return await self.receive()

    def close(self) -> None:
        self.writer.close()


# ---------------------------------------------------------------- order


async def test_priority_order_then_fifo_to_an_agent_that_connects_later(net: Bus) -> None:
    net.transport.subscribe(MANAGER_ID)
    sent = [
        update(MANAGER_ID, to="agent-a", text=f"{priority}-{n}", priority=priority)
        for n in range(3)
        for priority in ("low", "medium", "critical", "high")
    ]
    for message in sent:  # agent-a is not connected: its inbox keeps them
        await net.transport.send(message)
    async with net.client("agent-a") as client:
        inbox = client.subscribe("agent-a")
        await until(lambda: len(inbox) == 12, "12 messages")
        texts = [message.payload.message for message in drain(inbox)]
    assert texts == [f"{priority}-{n}" for priority in ("critical", "high", "medium", "low") for n in range(3)]


async def test_priority_order_then_fifo_from_an_agent(net: Bus) -> None:
    manager = net.transport.subscribe(MANAGER_ID)
    async with net.client("agent-a") as client:
        for n in range(3):
            for priority in ("low", "medium", "critical", "high"):
                await client.send(update("agent-a", text=f"{priority}-{n}", priority=priority))
        await until(lambda: len(manager) >= 13, "agent_ready and 12 updates")
    received = drain(manager)
    assert received[0].type == "agent_ready"  # critical, and first
    assert [m.payload.message for m in received[1:]] == [
        f"{priority}-{n}" for priority in ("critical", "high", "medium", "low") for n in range(3)
    ]


async def test_a_message_sent_as_an_agent_is_welcomed_comes_after_what_waited_for_it(net: Bus) -> None:
    """Sent in the turn its connection is bound, before its pump has run: not written at once,
    past the messages its inbox kept while it was away."""
    net.transport.subscribe(MANAGER_ID)
    for n in range(5):  # agent-a is not connected: its inbox keeps them
        await net.transport.send(update(MANAGER_ID, to="agent-a", text=f"kept-{n}"))

    def right_after_the_welcome(message: IPCMessage) -> None:
        if message.type == "agent_ready":  # this task runs just after the one that welcomes it
            last = update(MANAGER_ID, to="agent-a", text="sent-at-the-welcome")
            asyncio.get_running_loop().create_task(net.transport.send(last))

    net.transport.tap(right_after_the_welcome)
    async with net.client("agent-a") as client:
        inbox = client.subscribe("agent-a")
        await until(lambda: len(inbox) == 6, "6 messages")
        texts = [message.payload.message for message in drain(inbox)]
    assert texts == [f"kept-{n}" for n in range(5)] + ["sent-at-the-welcome"]


async def test_messages_to_a_connected_agent_keep_their_order_when_its_socket_backs_up(net: Bus) -> None:
    """A message for an idle connection is written at once, the others go through its inbox and
    pump: big messages fill the socket, so both ways are taken, and the agent gets them in order."""
    net.transport.subscribe(MANAGER_ID)
    async with net.client("agent-a") as client:
        inbox = client.subscribe("agent-a")
        for n in range(40):
            await net.transport.send(update(MANAGER_ID, to="agent-a", text=f"{n:02d}" + "x" * 200_000))
            await asyncio.sleep(0.01 if n % 7 == 0 else 0)  # a turn for the pump; now and then, time to catch up
        await until(lambda: len(inbox) == 40, "40 messages")
        texts = [message.payload.message[:2] for message in drain(inbox)]
    assert texts == [f"{n:02d}" for n in range(40)]


# ---------------------------------------------------------------- request / reply


async def serve_once(net: Bus, inbox: Any) -> IPCMessage:
    while (request := await inbox.get()).type != "resource_lock":
        pass
    await net.transport.send(grant(request))
    return request


async def test_a_remote_request_gets_its_reply_not_the_inbox(net: Bus) -> None:
    manager = net.transport.subscribe(MANAGER_ID)
    async with net.client("agent-a") as client:
        mine = client.subscribe("agent-a")
        server = asyncio.create_task(serve_once(net, manager))
        request = lock_request()
        reply = await client.request(request, timeout=GUARD)
        received = await server
        assert reply.correlation_id == request.id == received.id
        assert reply.payload.lock_id == "L1"
        assert received.requires_response is True and received.response_timeout == GUARD * 1000
        assert len(mine) == 0


async def test_manager_side_request_to_a_remote_agent(net: Bus) -> None:
    net.transport.subscribe(MANAGER_ID)
    async with net.client("agent-a") as client:
        mine = client.subscribe("agent-a")

        async def answer() -> None:
            request = await mine.get()
            await client.send(reply_to(request, "state_update", {"path": "a.txt", "checksum": "c"}, sender="agent-a"))

        answering = asyncio.create_task(answer())
        question = make_message("state_request", MANAGER_ID, "agent-a", {})
        reply = await net.transport.request(question, timeout=GUARD)
        await answering
    assert reply.correlation_id == question.id and reply.from_ == "agent-a"


async def test_request_timeout_then_a_late_reply_is_an_ordinary_message(net: Bus) -> None:
    manager = net.transport.subscribe(MANAGER_ID)
    async with net.client("agent-a") as client:
        mine = client.subscribe("agent-a")
        request = lock_request(response_timeout=60)
        with pytest.raises(ResponseTimeout) as caught:
            await asyncio.wait_for(client.request(request), GUARD)
        assert request.id in str(caught.value) and "60 ms" in str(caught.value)
        messages: list[IPCMessage] = []
        await until(lambda: request.id in [m.id for m in drain_into(manager, messages)], "the request")
        await net.transport.send(grant(request))
        late = await asyncio.wait_for(mine.get(), GUARD)
    assert late.correlation_id == request.id


def drain_into(inbox: Any, into: list[IPCMessage]) -> list[IPCMessage]:
    into.extend(drain(inbox))
    return into


# ---------------------------------------------------------------- routing and limits


async def test_unknown_recipient_is_refused_both_ways(net: Bus) -> None:
    net.transport.subscribe(MANAGER_ID)
    with pytest.raises(UnknownRecipient):
        await net.transport.send(update(MANAGER_ID, to="ghost"))
    async with net.client("agent-a") as client:
        mine = client.subscribe("agent-a")
        message = make_message("request_assistance", "agent-a", "ghost", {"topic": "help"})  # agent-to-agent traffic
        await client.send(message)
        error = await asyncio.wait_for(mine.get(), GUARD)
    assert error.type == "agent_error" and error.payload.field == "to" and "'ghost'" in error.payload.error
    assert error.correlation_id == message.id
    (refusal,) = net.refusals
    assert (refusal.field, refusal.sender, refusal.security) == ("to", "agent-a", False)


async def test_broadcast_reaches_local_and_remote_subscribers_but_not_the_sender(net: Bus) -> None:
    manager = net.transport.subscribe(MANAGER_ID)
    local = net.transport.subscribe("local-sim")
    tapped: list[IPCMessage] = []
    net.transport.tap(tapped.append)
    async with net.client("agent-a") as a, net.client("agent-b") as b:
        inbox_a, inbox_b = a.subscribe("agent-a"), b.subscribe("agent-b")
        info = make_message("broadcast_info", "agent-a", BROADCAST, {"info": "pause"})
        await a.send(info)
        got_b = await asyncio.wait_for(inbox_b.get(), GUARD)
        await until(lambda: len(local) == 1, "the local subscriber's copy")
        assert got_b.id == info.id and local.get_nowait().id == info.id
        assert [m.id for m in drain(manager) if m.type == "broadcast_info"] == [info.id]
        assert len(inbox_a) == 0  # not to the sender
    assert [m.id for m in tapped if m.type == "broadcast_info" and m.payload.info == "pause"] == [info.id]  # once


async def test_oversize_is_refused_by_the_client_and_by_the_server(net: Bus) -> None:
    manager = net.transport.subscribe(MANAGER_ID)
    async with net.client("agent-a") as client:
        with pytest.raises(ProtocolError, match=f"exceeds the {MAX_MESSAGE_BYTES} byte limit"):
            await client.send(update("agent-a", text="x" * MAX_MESSAGE_BYTES))
    raw = await Raw.open(net.address)
    await raw.hello()
    await raw.send(b'{"id":"big","pad":"' + b"x" * (MAX_MESSAGE_BYTES + 10) + b'"}\n')
    error = await raw.receive()
    assert error.type == "agent_error" and f"exceeds the {MAX_MESSAGE_BYTES} byte limit" in error.payload.error
    after = update("agent-a", text="still here")
    await raw.send(after)  # the connection goes on
    messages: list[IPCMessage] = []
    await until(lambda: after.id in [m.id for m in drain_into(manager, messages)], "the next message")
    (refusal,) = net.refusals
    assert refusal.field == "" and refusal.bound == "agent-a" and not refusal.security
    raw.close()


# ---------------------------------------------------------------- binding and refusals


async def test_a_wrong_token_is_refused_and_the_connection_closed(net: Bus) -> None:
    net.transport.subscribe(MANAGER_ID)
    raw = await Raw.open(net.address)
    error = await raw.hello("agent-a", token="guess")
    assert error.type == "agent_error" and error.payload.field == "payload.token"
    assert error.payload.error == "wrong token for agent 'agent-a'"
    assert await raw.closed_by_server()
    client = SocketClient(net.address, "agent-b", token=lambda: "wrong", give_up_after=GUARD)
    with pytest.raises(HandshakeRefused, match="payload.token: wrong token for agent 'agent-b'"):
        await asyncio.wait_for(client.connect(), GUARD)
    await client.close()
    assert [(r.field, r.claimed, r.security) for r in net.refusals] == [
        ("payload.token", "agent-a", True),
        ("payload.token", "agent-b", True),
    ]
    assert net.transport.connected == []


async def test_the_first_message_must_be_agent_ready_of_a_known_agent(net: Bus) -> None:
    raw = await Raw.open(net.address)
    await raw.send(update("agent-a"))
    error = await raw.receive()
    assert error.payload.field == "type" and "first message" in error.payload.error
    assert await raw.closed_by_server()
    raw = await Raw.open(net.address)
    error = await raw.hello("mallory", token="x")
    assert error.payload.field == "from" and "no external agent 'mallory'" in error.payload.error
    assert await raw.closed_by_server()


async def test_a_spoofed_sender_is_refused_and_the_connection_goes_on(net: Bus) -> None:
    manager = net.transport.subscribe(MANAGER_ID)
    raw = await Raw.open(net.address)
    welcome = await raw.hello("agent-a")
    assert welcome.type == "broadcast_info" and welcome.payload.info == "welcome"
    assert welcome.payload.data == {"agentId": "agent-a", "heartbeatInterval": 0.05}
    spoofed = update("agent-b", text="I am b")
    await raw.send(spoofed)
    error = await raw.receive()
    assert error.type == "agent_error" and error.payload.field == "from" and error.correlation_id == spoofed.id
    assert "bound to agent 'agent-a'" in error.payload.error and "'agent-b'" in error.payload.error
    forged = make_message("task_assign", "agent-a", "agent-b", {"taskId": "T1", "attempt": 1})
    await raw.send(forged)
    error = await raw.receive()
    assert error.payload.field == "type" and "sprint manager only" in error.payload.error
    genuine = update("agent-a", text="I am a")
    await raw.send(genuine)
    messages: list[IPCMessage] = []
    await until(lambda: genuine.id in [m.id for m in drain_into(manager, messages)], "the genuine message")
    assert [m.type for m in messages] == ["agent_ready", "task_update"]
    assert "token" not in messages[0].wire()  # the token stays on the wire, out of the journal
    spoof, forge = net.refusals
    assert (spoof.field, spoof.bound, spoof.claimed, spoof.security) == ("from", "agent-a", "agent-b", True)
    assert (forge.field, forge.security) == ("type", True)
    raw.close()


@pytest.mark.parametrize(
    "line, field_name, reason",
    [
        (b"{not json", "", "not JSON"),
        (b"[1, 2]", "", "a message must be a JSON object"),
        (json.dumps({"type": "task_update", "from": "agent-a", "to": MANAGER_ID, "payload": {"attempt": 1}}).encode(),
         "payload.taskId", "missing"),
        (json.dumps({"type": "teleport", "from": "agent-a", "to": MANAGER_ID, "payload": {}}).encode(),
         "type", "unknown message type 'teleport'"),
    ],
)
async def test_a_malformed_line_gets_an_error_naming_the_field(net: Bus, line: bytes, field_name: str, reason: str) -> None:
    manager = net.transport.subscribe(MANAGER_ID)
    raw = await Raw.open(net.address)
    await raw.hello("agent-a")
    await raw.send(line + b"\n")
    error = await raw.receive()
    assert error.type == "agent_error" and reason in error.payload.error
    assert (error.payload.field or "") == field_name
    after = update("agent-a", text="next")
    await raw.send(after)
    messages: list[IPCMessage] = []
    await until(lambda: after.id in [m.id for m in drain_into(manager, messages)], "the next message")
    (refusal,) = net.refusals
    assert refusal.field == field_name and reason in refusal.reason and refusal.bound == "agent-a"
    raw.close()


# ---------------------------------------------------------------- disconnects and reconnects


async def test_messages_wait_in_the_inbox_while_the_agent_is_away(net: Bus) -> None:
    net.transport.subscribe(MANAGER_ID)
    async with net.client("agent-a"):
        await until(lambda: net.transport.connected == ["agent-a"], "agent-a connected")
    await until(lambda: net.transport.connected == [], "agent-a gone")
    away = update(MANAGER_ID, to="agent-a", text="while you were away")
    await net.transport.send(away)  # no error: the inbox keeps it
    async with net.client("agent-a") as client:
        inbox = client.subscribe("agent-a")
        assert (await asyncio.wait_for(inbox.get(), GUARD)).id == away.id


async def test_an_agent_declared_dead_does_not_get_its_old_messages(net: Bus) -> None:
    net.transport.subscribe(MANAGER_ID)
    for n in range(2):
        await net.transport.send(update(MANAGER_ID, to="agent-a", text=f"stale {n}"))
    assert net.transport.discard_queued("agent-a") == 2  # what serve does on agent_dead
    fresh = update(MANAGER_ID, to="agent-a", text="after coming back")
    await net.transport.send(fresh)
    async with net.client("agent-a") as client:
        inbox = client.subscribe("agent-a")
        assert (await asyncio.wait_for(inbox.get(), GUARD)).id == fresh.id


async def test_an_agent_reconnects_to_a_restarted_server(short_dir: Path) -> None:
    """What `serve --resume` relies on: the agent comes back on its own and sends what waited."""
    address = make_address("unix", short_dir)
    first = await start_bus(address, manager=True)
    connections: list[bool] = []
    client = SocketClient(address, "agent-a", token=lambda: TOKENS["agent-a"], give_up_after=GUARD)
    client.events.connected = connections.append
    await asyncio.wait_for(client.connect(), GUARD)
    inbox = client.subscribe("agent-a")
    reading = asyncio.create_task(client.run())
    try:
        await first.transport.close()  # the server goes away
        await until(lambda: not client.connected, "the client notices")
        waited = update("agent-a", text="sent while the server was down")
        await client.send(waited)  # kept for the next connection
        await client.send(make_message("heartbeat", "agent-a", MANAGER_ID, {}))  # dropped: stale by then
        second = await start_bus(address, manager=True)
        manager = second.manager
        messages: list[IPCMessage] = []
        await until(lambda: waited.id in [m.id for m in drain_into(manager, messages)], "the kept message")
        assert [m.type for m in messages] == ["agent_ready", "task_update"]
        assert connections == [False, True]
        hello = update(MANAGER_ID, to="agent-a", text="welcome back")
        await second.transport.send(hello)
        assert (await asyncio.wait_for(inbox.get(), GUARD)).id == hello.id
        await second.transport.finish()  # the sprint is over: the client's run ends
        await asyncio.wait_for(reading, GUARD)
        assert client.finished
    finally:
        reading.cancel()
        await client.close()


async def test_close_fails_pending_requests_and_later_sends_and_removes_the_socket(short_dir: Path) -> None:
    net = await start_bus(make_address("unix", short_dir), manager=True)
    question = make_message("state_request", MANAGER_ID, "agent-a", {})  # agent-a is not connected
    requesting = asyncio.create_task(net.transport.request(question, timeout=GUARD))
    await asyncio.sleep(0)
    await net.transport.close()
    with pytest.raises(TransportClosed):
        await requesting
    with pytest.raises(TransportClosed):
        await net.transport.send(update(MANAGER_ID, to="agent-a"))
    assert not Path(net.address.path).exists()


# ---------------------------------------------------------------- framing, addresses, tokens


def test_framer_skips_an_oversize_line_and_reads_the_next() -> None:
    framer = LineFramer(limit=10)
    assert framer.feed(b"short\r\n\n0123456") == [b"short"]
    assert framer.feed(b"789abcdef") == []  # over the limit: skipped as it arrives
    assert framer.feed(b"gh\nok\nlast") == [Oversize(18), b"ok"]
    assert framer.finish() == [b"last"]


def test_addresses_are_checked_with_clear_messages(short_dir: Path) -> None:
    assert str(parse_address("tcp:127.0.0.1:0", listening=True)) == "tcp:127.0.0.1:0"
    assert parse_address(f"unix:{short_dir}/x.sock") == Address("unix", path=f"{short_dir}/x.sock")
    nats = parse_address("nats://nats.example.org:4222/webrtc")  # any host: NATS brings its own auth and TLS
    assert nats == Address("nats", host="nats.example.org", port=4222, sprint="webrtc")
    assert str(nats) == "nats://nats.example.org:4222/webrtc"
    for text, words in [
        ("nats://127.0.0.1", "nats needs HOST:PORT"),
        ("nats://127.0.0.1:0", "not a number from 1 to 65535"),
        ("nats://127.0.0.1:4222/a.b", "letters, digits, '_' and '-' only"),
        ("127.0.0.1:80", "unknown scheme"),
        ("tcp:127.0.0.1", "tcp needs HOST:PORT"),
        ("tcp:127.0.0.1:http", "not a number"),
        ("tcp:10.1.2.3:7000", "loopback only"),
        ("tcp:127.0.0.1:0", "not 0"),
        ("unix:/" + "d" * 120, "at most 107"),
        ("carrier-pigeon", "not an address"),
    ]:
        with pytest.raises(AddressError, match=words):
            parse_address(text)


def test_a_live_unix_socket_is_not_taken_over_but_a_stale_one_is(short_dir: Path) -> None:
    address = make_address("unix", short_dir)
    first, _ = listen(address)
    directory = Path(address.path).parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(address.path).stat().st_mode) == 0o600
    with pytest.raises(AddressError, match="in use"):
        listen(address)
    first.close()  # the socket file stays, as after a kill -9
    second, _ = listen(address)
    second.close()


def test_tokens_are_private_and_reused_on_resume(short_dir: Path) -> None:
    directory = tokens_dir_for(short_dir / "run.jsonl")
    assert directory == short_dir / "run.tokens"
    first = ensure_tokens(directory, ["a", "b"], reuse=False)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((directory / "a.token").stat().st_mode) == 0o600
    assert read_token(directory / "a.token", "a") == first["a"] and first["a"] != first["b"]
    assert ensure_tokens(directory, ["a", "b"], reuse=True) == first
    assert ensure_tokens(directory, ["a"], reuse=False)["a"] != first["a"]
