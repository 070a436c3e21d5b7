"""The wire protocol: the seed's IPCMessage with typed payloads per message type.

A message on the wire is one JSON object with the seed's keys (`id`, `type`, `from`, `to`,
`timestamp`, `payload`, `priority`, `requiresResponse`, `responseTimeout`) plus `correlationId` on
replies.  Each message type has its own payload model and the envelope is a discriminated union on
`type`, so a payload is never `Any`: a malformed message fails validation with the offending field
named (see `ProtocolError`).
"""

from __future__ import annotations

import itertools
import json
import os
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from engine.payloads import (
    AgentBusyPayload,
    AgentErrorPayload,
    AgentLeavePayload,
    AgentReadyPayload,
    BroadcastInfoPayload,
    HeartbeatPayload,
    Priority,
    ProvideAssistancePayload,
    RequestAssistancePayload,
    ResourceConflictPayload,
    ResourceLockPayload,
    ResourceUnlockPayload,
    StateRequestPayload,
    StateSyncPayload,
    StateUpdatePayload,
    TaskAssignPayload,
    TaskCancelPayload,
    TaskClaimPayload,
    TaskCompletePayload,
    TaskFailedPayload,
    TaskUpdatePayload,
    WireModel,
)

MANAGER_ID = "sprint_manager"
BROADCAST = "broadcast"
#: `broadcast_info` notices the manager sends: the answer to an agent's agent_ready, the sprint's end.
WELCOME = "welcome"
SPRINT_FINISHED = "sprint_finished"
#: The sprint-level events the manager announces to every agent (engine/announcements.py).
SPRINT_STARTED = "sprint_started"
SPRINT_PAUSED = "sprint_paused"
SPRINT_RESUMED = "sprint_resumed"
AGENT_JOINED = "agent_joined"
AGENT_DIED = "agent_died"
TASK_CLAIMED = "task_claimed"
RECEIVED = "received"  # the acknowledgement of a request nothing else answers (engine/replies.py)
#: The `info` of a broadcast_info only the manager may send: an agent saying "welcome" or
#: "sprint_finished" would end or confuse another agent's session.
MANAGER_NOTICES = frozenset({WELCOME, SPRINT_FINISHED, SPRINT_STARTED, SPRINT_PAUSED, SPRINT_RESUMED,
                             AGENT_JOINED, AGENT_DIED, TASK_CLAIMED, RECEIVED})
MAX_MESSAGE_BYTES = 1024 * 1024


class MessageType(StrEnum):
    """The seed's message types, plus what a real system needs: `heartbeat`, `task_cancel`,
    `task_claim` (an agent picks a ready task) and `agent_leave` (an agent leaves in good order)."""

    TASK_ASSIGN = "task_assign"
    TASK_COMPLETE = "task_complete"
    TASK_FAILED = "task_failed"
    TASK_UPDATE = "task_update"
    TASK_CANCEL = "task_cancel"
    RESOURCE_LOCK = "resource_lock"
    RESOURCE_UNLOCK = "resource_unlock"
    RESOURCE_CONFLICT = "resource_conflict"
    STATE_UPDATE = "state_update"
    STATE_REQUEST = "state_request"
    STATE_SYNC = "state_sync"
    AGENT_READY = "agent_ready"
    AGENT_BUSY = "agent_busy"
    AGENT_ERROR = "agent_error"
    REQUEST_ASSISTANCE = "request_assistance"
    PROVIDE_ASSISTANCE = "provide_assistance"
    BROADCAST_INFO = "broadcast_info"
    HEARTBEAT = "heartbeat"
    TASK_CLAIM = "task_claim"
    AGENT_LEAVE = "agent_leave"


# ---------------------------------------------------------------- envelope


def utc_now() -> datetime:
    return datetime.now(UTC)


_ID_PREFIX = os.urandom(8).hex()  # this process's random half of every id it makes
_id_counter = itertools.count(1)


def new_id() -> str:
    """A unique message id: 64 random bits per process, then a counter (32 hex digits).

    Unique across processes like a uuid4, without a system call per message.
    """
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


class IPCMessage(WireModel):
    """The seed's envelope; subclasses fix `type` and the payload model.

    Each subclass pins `type` to its `MessageType`'s value as a string literal: pydantic checks
    and writes a string literal in half the time of an enum one, and every message goes through
    both.  A `MessageType` compares equal to its value, so `message.type == MessageType.X` holds.
    """

    id: str = Field(default_factory=new_id, min_length=1)
    type: str
    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)
    timestamp: datetime = Field(default_factory=utc_now)
    payload: Any
    priority: Priority = "medium"
    requires_response: bool = False
    response_timeout: int | None = Field(default=None, gt=0)  # ms
    correlation_id: str | None = None

    def wire(self) -> str:
        """The compact JSON text of this message as it travels."""
        return self.model_dump_json(exclude_none=True)

    def wire_dict(self) -> dict[str, Any]:
        """The message as JSON-ready Python values, as the journal records it.

        `model_dump(mode="json", exclude_none=True)`, minus model_dump's argument handling: the
        manager records every message, and the serializer called directly costs a quarter less.
        """
        wire: dict[str, Any] = self.__pydantic_serializer__.to_python(self, mode="json", exclude_none=True, by_alias=True)
        return wire


# ---------------------------------------------------------------- one class per message type


class TaskAssignMessage(IPCMessage):
    type: Literal["task_assign"]
    payload: TaskAssignPayload


class TaskCompleteMessage(IPCMessage):
    type: Literal["task_complete"]
    payload: TaskCompletePayload


class TaskFailedMessage(IPCMessage):
    type: Literal["task_failed"]
    payload: TaskFailedPayload


class TaskUpdateMessage(IPCMessage):
    type: Literal["task_update"]
    payload: TaskUpdatePayload


class TaskCancelMessage(IPCMessage):
    type: Literal["task_cancel"]
    payload: TaskCancelPayload


class ResourceLockMessage(IPCMessage):
    type: Literal["resource_lock"]
    payload: ResourceLockPayload


class ResourceUnlockMessage(IPCMessage):
    type: Literal["resource_unlock"]
    payload: ResourceUnlockPayload


class ResourceConflictMessage(IPCMessage):
    type: Literal["resource_conflict"]
    payload: ResourceConflictPayload


class StateUpdateMessage(IPCMessage):
    type: Literal["state_update"]
    payload: StateUpdatePayload


class StateRequestMessage(IPCMessage):
    type: Literal["state_request"]
    payload: StateRequestPayload


class StateSyncMessage(IPCMessage):
    type: Literal["state_sync"]
    payload: StateSyncPayload


class AgentReadyMessage(IPCMessage):
    type: Literal["agent_ready"]
    payload: AgentReadyPayload


class AgentBusyMessage(IPCMessage):
    type: Literal["agent_busy"]
    payload: AgentBusyPayload


class AgentErrorMessage(IPCMessage):
    type: Literal["agent_error"]
    payload: AgentErrorPayload


class RequestAssistanceMessage(IPCMessage):
    type: Literal["request_assistance"]
    payload: RequestAssistancePayload


class ProvideAssistanceMessage(IPCMessage):
    type: Literal["provide_assistance"]
    payload: ProvideAssistancePayload


class BroadcastInfoMessage(IPCMessage):
    type: Literal["broadcast_info"]
    payload: BroadcastInfoPayload


class HeartbeatMessage(IPCMessage):
    type: Literal["heartbeat"]
    payload: HeartbeatPayload


class TaskClaimMessage(IPCMessage):
    type: Literal["task_claim"]
    payload: TaskClaimPayload


class AgentLeaveMessage(IPCMessage):
    type: Literal["agent_leave"]
    payload: AgentLeavePayload


MESSAGE_CLASSES: dict[MessageType, type[IPCMessage]] = {
    MessageType.TASK_ASSIGN: TaskAssignMessage,
    MessageType.TASK_COMPLETE: TaskCompleteMessage,
    MessageType.TASK_FAILED: TaskFailedMessage,
    MessageType.TASK_UPDATE: TaskUpdateMessage,
    MessageType.TASK_CANCEL: TaskCancelMessage,
    MessageType.RESOURCE_LOCK: ResourceLockMessage,
    MessageType.RESOURCE_UNLOCK: ResourceUnlockMessage,
    MessageType.RESOURCE_CONFLICT: ResourceConflictMessage,
    MessageType.STATE_UPDATE: StateUpdateMessage,
    MessageType.STATE_REQUEST: StateRequestMessage,
    MessageType.STATE_SYNC: StateSyncMessage,
    MessageType.AGENT_READY: AgentReadyMessage,
    MessageType.AGENT_BUSY: AgentBusyMessage,
    MessageType.AGENT_ERROR: AgentErrorMessage,
    MessageType.REQUEST_ASSISTANCE: RequestAssistanceMessage,
    MessageType.PROVIDE_ASSISTANCE: ProvideAssistanceMessage,
    MessageType.BROADCAST_INFO: BroadcastInfoMessage,
    MessageType.HEARTBEAT: HeartbeatMessage,
    MessageType.TASK_CLAIM: TaskClaimMessage,
    MessageType.AGENT_LEAVE: AgentLeaveMessage,
}
#: Types that carry the manager's decisions: an agent never sends them (the manager and every
#: transport refuse them).
MANAGER_ONLY_TYPES = frozenset(
    {MessageType.TASK_ASSIGN, MessageType.TASK_CANCEL, MessageType.RESOURCE_CONFLICT, MessageType.STATE_SYNC}
)
#: What agents may send one another (DESIGN §9): help asked and given, and news in their own name.
#: Everything else an agent sends goes to the manager, which decides and answers.
AGENT_TALK_TYPES = frozenset(
    {MessageType.REQUEST_ASSISTANCE, MessageType.PROVIDE_ASSISTANCE, MessageType.BROADCAST_INFO}
)


def agent_traffic_refusal(message: IPCMessage) -> tuple[str, str] | None:
    """Why an agent may not send `message` (field, reason), or None when it may.

    One rule for every entry point (a socket connection, the manager's inbox): the manager's
    decisions and notices are the manager's, and agents talk to each other only to ask for help,
    give it, or share news.  That the sender is who it says is the transport's check.
    """
    kind = message.type
    if kind in MANAGER_ONLY_TYPES:
        return "type", f"{kind} is sent by the sprint manager only"
    if kind == MessageType.BROADCAST_INFO and message.payload.info in MANAGER_NOTICES:
        return "payload.info", f"{message.payload.info!r} is a notice only the sprint manager sends"
    if message.to != MANAGER_ID and kind not in AGENT_TALK_TYPES:
        return "to", (f"{kind} goes to the sprint manager only; agents send each other only "
                      "request_assistance, provide_assistance and broadcast_info")
    return None

AnyMessage = Annotated[
    TaskAssignMessage
    | TaskCompleteMessage
    | TaskFailedMessage
    | TaskUpdateMessage
    | TaskCancelMessage
    | ResourceLockMessage
    | ResourceUnlockMessage
    | ResourceConflictMessage
    | StateUpdateMessage
    | StateRequestMessage
    | StateSyncMessage
    | AgentReadyMessage
    | AgentBusyMessage
    | AgentErrorMessage
    | RequestAssistanceMessage
    | ProvideAssistanceMessage
    | BroadcastInfoMessage
    | HeartbeatMessage
    | TaskClaimMessage
    | AgentLeaveMessage,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[IPCMessage] = TypeAdapter(AnyMessage)


_TYPE_NAMES = {kind.value for kind in MessageType}


class ProtocolError(ValueError):
    """A message that cannot be accepted; `field` names where it went wrong."""

    def __init__(self, field: str, reason: str, message_id: str | None = None) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
        self.message_id = message_id


def _first_error(exc: ValidationError) -> tuple[str, str]:
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    # Drop the union tag pydantic inserts ("task_assign") so the path reads payload.taskId.
    if loc and loc[0] in _TYPE_NAMES:
        loc = loc[1:]
    if err["type"] == "union_tag_invalid":
        given = err["input"].get("type") if isinstance(err["input"], dict) else None
        return "type", f"unknown message type {given!r}"
    if err["type"] == "union_tag_not_found":
        return "type", "missing"
    reason = {"missing": "missing", "extra_forbidden": "unknown field"}.get(err["type"], err["msg"])
    return ".".join(loc), reason


def _reject_constant(name: str) -> Any:
    raise ProtocolError("", f"not JSON: {name} is not a JSON number")


def _decode_json(raw: str | bytes) -> Any:
    """Size-check and decode wire text; anything undecodable is a `ProtocolError`, never a crash."""
    try:
        data = raw.encode() if isinstance(raw, str) else raw
        size = len(data)
        if size > MAX_MESSAGE_BYTES:
            raise ProtocolError("", f"message of {size} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit")
        return json.loads(data, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ProtocolError("", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise ProtocolError("", f"not UTF-8 text: {exc.reason} at position {exc.start}") from None
    except RecursionError:
        raise ProtocolError("", "not JSON: nested too deeply") from None


def parse_message(raw: str | bytes | dict[str, Any]) -> IPCMessage:
    """Validate one message from the wire (text, bytes or an already decoded dict).

    Bytes (every message off a socket or NATS) are parsed and validated in one pass by pydantic's
    own JSON parser, half the cost of `json.loads` and then validating the dict (issue 17: a
    round trip over NATS parses two).  Whatever that refuses goes the long way, which names the
    problem exactly as before; so do the `NaN`/`Infinity` constants, which that parser would take.
    """
    if isinstance(raw, bytes) and len(raw) <= MAX_MESSAGE_BYTES and b"NaN" not in raw and b"Infinity" not in raw:
        try:
            return _ADAPTER.validate_json(raw)
        except ValidationError:
            pass
    if isinstance(raw, (str, bytes)):
        raw = _decode_json(raw)
    if not isinstance(raw, dict):
        raise ProtocolError("", "a message must be a JSON object")
    msg_id = raw.get("id") if isinstance(raw.get("id"), str) else None
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        field, reason = _first_error(exc)
        raise ProtocolError(field, reason, msg_id) from None


def make_message(
    kind: MessageType | str,
    sender: str,
    to: str,
    payload: WireModel | dict[str, Any],
    **envelope: Any,
) -> IPCMessage:
    """Build a validated message of `kind`; `envelope` takes the other snake_case fields.

    Envelope and payload are validated in one call (pydantic validates the nested dict itself),
    which costs a third less than building the payload model first: every message goes through here.
    """
    if kind.__class__ is not MessageType:
        kind = MessageType(kind)
    # The class's validator called directly: model_validate's wrapper was a quarter of the cost.
    message: IPCMessage = MESSAGE_CLASSES[kind].__pydantic_validator__.validate_python(
        {"type": kind, "from_": sender, "to": to, "payload": payload, **envelope}
    )
    return message


def reply_to(
    request: IPCMessage,
    kind: MessageType | str,
    payload: WireModel | dict[str, Any],
    sender: str = MANAGER_ID,
    **envelope: Any,
) -> IPCMessage:
    """A reply carrying the request's id as `correlationId`, at the request's priority."""
    envelope.setdefault("priority", request.priority)
    return make_message(kind, sender, request.from_, payload, correlation_id=request.id, **envelope)
