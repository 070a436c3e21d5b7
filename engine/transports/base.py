"""The transport interface every message bus implements (in-process, Unix socket, TCP, NATS).

A transport moves `IPCMessage`s between agent ids.  The guarantees of DESIGN §3 are stated here once
so that every implementation, and the shared conformance tests, hold to the same contract:

- `send` delivers to one subscribed agent id, or to `BROADCAST` (every subscriber except the
  sender).  An id that nobody subscribed raises `UnknownRecipient`; nothing is dropped silently.
- An inbox hands out `critical` before `high` before `medium` before `low`, FIFO within a priority.
- `request` sends with `requiresResponse` set and waits for the one reply whose `correlationId` is the
  request's id; after `responseTimeout` ms it raises `ResponseTimeout`.  That reply resolves the
  waiting future instead of entering the requester's inbox; a later duplicate is an ordinary message.
- A message whose wire JSON exceeds `MAX_MESSAGE_BYTES` is refused with `ProtocolError`.
- Tap observers see every delivered message once, synchronously, in send order (the manager
  journals them).  A broadcast is one message and is tapped once, not once per recipient.

The request/reply bookkeeping (`PendingReplies`), the observers and the size check live here because
they are the same for every transport; a transport only decides how bytes or objects travel.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from operator import itemgetter
from types import NoneType, UnionType
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel

from engine.protocol import BROADCAST, MAX_MESSAGE_BYTES, IPCMessage, ProtocolError

Observer = Callable[[IPCMessage], None]

#: Used by `request` when neither a timeout nor the message's `responseTimeout` is given, so that no
#: request can wait forever on an agent that died.
DEFAULT_RESPONSE_TIMEOUT_MS = 30_000


# ---------------------------------------------------------------- errors


class TransportError(Exception):
    """Something the bus could not do; the message was not delivered."""


class UnknownRecipient(TransportError):
    """The message names an agent id that nobody subscribed."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"no agent subscribed as {agent_id!r}")
        self.agent_id = agent_id


class TransportClosed(TransportError):
    """The transport (or this inbox) was closed; nothing more will arrive."""


class ResponseTimeout(TransportError, TimeoutError):
    """No reply to a request arrived within its response timeout."""

    def __init__(self, message: IPCMessage, timeout: float) -> None:
        super().__init__(
            f"no reply to {message.type} {message.id} (to {message.to!r}) within {timeout * 1000:.0f} ms"
        )
        self.message_id = message.id
        self.message_type = str(message.type)
        self.timeout = timeout


# ---------------------------------------------------------------- interface


class Inbox(ABC):
    """One agent's queue of incoming messages, in delivery order (priority, then FIFO).

    `async for message in inbox` yields until the inbox is closed (unsubscribe or transport close)
    and drained.
    """

    @abstractmethod
    async def get(self) -> IPCMessage:
        """The next message, waiting for one; raises `TransportClosed` once closed and empty."""

    @abstractmethod
    def get_nowait(self) -> IPCMessage | None:
        """The next message if one is waiting, else None (never raises for an empty inbox)."""

    @abstractmethod
    def __len__(self) -> int: ...

    def __aiter__(self) -> AsyncIterator[IPCMessage]:
        return self

    async def __anext__(self) -> IPCMessage:
        try:
            return await self.get()
        except TransportClosed:
            raise StopAsyncIteration from None


class Transport(ABC):
    """The bus between the manager and the agents.  See the module docstring for the contract.

    Subscribing an id that is already subscribed raises `TransportError`: silently replacing an
    inbox would lose the messages queued in it, so a restarting agent unsubscribes first.
    Subclasses call `super().__init__()` and, on delivery, `self._pending.awaits/resolve` for
    replies and `self._notify` for the observers.
    """

    def __init__(self) -> None:
        self._observers: list[Observer] = []
        self._pending = PendingReplies()

    def joining(self, agent_id: str) -> tuple[str, str] | None:
        """How another process joins as `agent_id` (a Claude Code run's hook and MCP server): the
        address and the agent's token; None when this transport takes no connections."""
        return None

    @abstractmethod
    def subscribe(self, agent_id: str) -> Inbox:
        """Open the inbox of `agent_id`; raises `TransportError` if it is already open."""

    @abstractmethod
    def unsubscribe(self, agent_id: str) -> None:
        """Close the inbox of `agent_id` (its reader sees the end); unknown ids are ignored."""

    @abstractmethod
    async def send(self, message: IPCMessage) -> None:
        """Deliver to `message.to` or, for `BROADCAST`, to every subscriber but the sender."""

    async def request(self, message: IPCMessage, timeout: float | None = None) -> IPCMessage:
        """Send `message` and wait for its reply.

        `timeout` is in seconds; without it the message's `responseTimeout` (ms) applies, and
        without that `DEFAULT_RESPONSE_TIMEOUT_MS`.  The message travels with `requiresResponse`
        set and `responseTimeout` filled in, so the receiver knows how long the asker waits.
        """
        if message.to == BROADCAST:
            raise TransportError("a request needs one recipient, not a broadcast")
        if timeout is None:
            timeout = (message.response_timeout or DEFAULT_RESPONSE_TIMEOUT_MS) / 1000
        message = message.model_copy(
            update={"requires_response": True, "response_timeout": max(1, round(timeout * 1000))}
        )
        future = self._pending.expect(message)
        try:
            await self.send(message)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise ResponseTimeout(message, timeout) from None
        finally:
            self._pending.forget(message.id)

    def tap(self, observer: Observer) -> None:
        """Call `observer(message)` synchronously for every delivered message, in send order.

        Observers run before the message is queued, so a raising observer (say, a journal that
        cannot write) stops the delivery and the sender sees the error.
        """
        self._observers.append(observer)

    @abstractmethod
    async def close(self) -> None:
        """Close every inbox and fail every pending request with `TransportClosed`."""

    def _notify(self, message: IPCMessage) -> None:
        for observer in self._observers:
            observer(message)


# ---------------------------------------------------------------- shared machinery


class PendingReplies:
    """Requests waiting for their reply, by request id.

    A reply resolves the request only if it is addressed to the asker; exactly one reply resolves
    it (the entry is removed on the first), so a duplicate falls through to the inbox.
    """

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[str, asyncio.Future[IPCMessage]]] = {}

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def expect(self, request: IPCMessage) -> asyncio.Future[IPCMessage]:
        if request.id in self._waiting:
            raise TransportError(f"a request with id {request.id} is already waiting")
        future: asyncio.Future[IPCMessage] = asyncio.get_running_loop().create_future()
        self._waiting[request.id] = (request.from_, future)
        return future

    def awaits(self, reply: IPCMessage) -> bool:
        """Whether `reply` is the reply a request of its recipient is waiting for."""
        entry = self._waiting.get(reply.correlation_id)  # type: ignore[arg-type]
        return entry is not None and entry[0] == reply.to and not entry[1].done()

    def resolve(self, reply: IPCMessage) -> bool:
        """Hand `reply` to its waiting request; False (and nothing done) if it is not awaited."""
        if not self.awaits(reply):
            return False
        _, future = self._waiting.pop(reply.correlation_id)  # type: ignore[arg-type]
        future.set_result(reply)
        return True

    def forget(self, request_id: str) -> None:
        self._waiting.pop(request_id, None)

    def fail_all(self, error: Exception) -> None:
        for _, future in self._waiting.values():
            if not future.done():
                future.set_exception(error)
        self._waiting.clear()


# The size limit without serialising every message: JSON writes one character of a string as at most
# 6 bytes (`\u00XX`) and a number, bool, null or timestamp in a bounded number of bytes, so an upper
# bound summed over the message's values decides the common case cheaply; only a message whose bound
# reaches the limit (or that holds a value the walk does not know) is serialised to measure it.
_MAX_CHAR_BYTES = 6
_FIELD_BYTES = 48  # a field name with quotes, colon and comma (the longest is ~20)
_SCALAR_BYTES = 40  # a float, small int, bool, null or ISO timestamp
_SMALL_INT = 10**30
_SCALARS = frozenset({float, bool, type(None), datetime})
_UNKNOWN = MAX_MESSAGE_BYTES + 1  # forces the exact measurement
# Every envelope key with quotes, colon and comma, the type, priority, timestamp and flag values,
# the four id strings' quotes and the payload's braces.
_ENVELOPE_BYTES = 512


def _size_bound(value: Any) -> int:
    """An upper bound on the JSON bytes of `value`; `_UNKNOWN` when the walk cannot tell."""
    kind = value.__class__
    if kind is str:
        return _MAX_CHAR_BYTES * len(value) + 2
    if kind in _SCALARS:
        return _SCALAR_BYTES
    if kind is int:
        return _SCALAR_BYTES if -_SMALL_INT < value < _SMALL_INT else _UNKNOWN
    if kind is list or kind is tuple:
        return 2 + sum([_size_bound(item) + 1 for item in value])
    if kind is dict:
        return 2 + sum([_size_bound(str(key)) + _size_bound(item) + 2 for key, item in value.items()])
    if isinstance(value, BaseModel):
        return _model_bound(value)
    if isinstance(value, str):  # a StrEnum member
        return _MAX_CHAR_BYTES * len(value) + 2
    return _UNKNOWN


def _model_bound(model: BaseModel) -> int:
    """`_size_bound` of a pydantic model (payloads, nested lock references)."""
    total = 2
    for value in model.__dict__.values():
        total += _size_bound(value) + _FIELD_BYTES
    return total


class _PayloadPlan(NamedTuple):
    """How to bound one payload class: which fields to measure, what the rest cost at most."""

    strings: Callable[[dict[str, Any]], tuple[Any, ...]]  # fields typed `str` or `str | None`
    others: Callable[[dict[str, Any]], tuple[Any, ...]]  # ints, lists, dicts, models: walked
    fixed: int  # the envelope, braces and keys, and every value bounded by its type


_PLANS: dict[type, _PayloadPlan] = {}


def _field_kind(annotation: Any) -> str:
    """'bounded', 'str' or 'other': how a field of this type is bounded."""
    origin = get_origin(annotation)
    if origin is Literal or annotation in _SCALARS:
        return "bounded"
    if annotation is str:
        return "str"
    if origin is Union or origin is UnionType:
        kinds = {_field_kind(arg) for arg in get_args(annotation) if arg is not NoneType}
        return kinds.pop() if len(kinds) == 1 else "other"
    return "other"


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) > 1:
        return itemgetter(*names)
    if names:
        name = names[0]
        return lambda fields: (fields[name],)
    return lambda fields: ()


def _plan_for(payload_class: type) -> _PayloadPlan | None:
    """Classify the fields of a payload model once; None for anything that is not a model."""
    if not issubclass(payload_class, BaseModel):
        return None
    kinds: dict[str, list[str]] = {"bounded": [], "str": [], "other": []}
    for name, info in payload_class.model_fields.items():
        kinds[_field_kind(info.annotation)].append(name)
    # Every field's key, every bounded field's value and every walked int's value (an int that
    # is not small makes the bound unknown instead); strings and the walk add the rest.
    fixed = _ENVELOPE_BYTES + 2 + len(payload_class.model_fields) * (_FIELD_BYTES + _SCALAR_BYTES)
    plan = _PayloadPlan(_getter(kinds["str"]), _getter(kinds["other"]), fixed)
    _PLANS[payload_class] = plan
    return plan


def _message_bound(message: IPCMessage) -> int:
    """`_size_bound` of a whole message, specialised per payload class: this runs on every send.

    The envelope's only free-size values are its ids and `responseTimeout`; `type`, `priority` and
    `timestamp` are bounded by their types.  A payload's string fields are measured, its ints,
    lists, dicts and models walked, and every other field counted at its type's maximum.
    """
    fields = message.__dict__
    correlation_id = fields["correlation_id"]
    chars = len(fields["id"]) + len(fields["from_"]) + len(fields["to"])
    if correlation_id is not None:
        chars += len(correlation_id)
    timeout = fields["response_timeout"]
    if timeout is not None and not -_SMALL_INT < timeout < _SMALL_INT:
        return _UNKNOWN
    payload = fields["payload"]
    plan = _PLANS.get(payload.__class__) or _plan_for(payload.__class__)
    if plan is None:  # not a payload model: a message built by hand around a dict, say
        return _ENVELOPE_BYTES + _size_bound(payload) + _MAX_CHAR_BYTES * chars
    strings, others, total = plan
    values = payload.__dict__
    for text in strings(values):
        if text:
            chars += len(text)
    for value in others(values):
        if value.__class__ is int:
            if not -_SMALL_INT < value < _SMALL_INT:
                return _UNKNOWN
        elif value is not None:
            total += _size_bound(value)
    return total + _MAX_CHAR_BYTES * chars


def wire_size(message: IPCMessage) -> int:
    """The exact size in bytes of the message's wire JSON (this serialises it)."""
    return len(message.wire().encode())


def check_size(message: IPCMessage) -> None:
    """Raise `ProtocolError` if the message's wire JSON exceeds `MAX_MESSAGE_BYTES`.

    Serialising costs more than routing an in-process message, so the exact size is computed only
    when a cheap upper bound (`_message_bound`) says the message might be too big: the limit holds
    exactly, and ordinary messages pay 0.6 us for the bound instead of 2.3 us for serialising.
    The bound trusts the field types the message was validated with when it was built (a string
    field holds a string); a message mutated after construction is outside the contract anyway.
    """
    if _message_bound(message) <= MAX_MESSAGE_BYTES:
        return
    size = wire_size(message)
    if size > MAX_MESSAGE_BYTES:
        raise ProtocolError(
            "", f"message of {size} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit", message.id
        )
