"""The wire protocol: every message type round-trips, and every malformed message names its field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.protocol import (
    BROADCAST,
    MANAGER_ID,
    MAX_MESSAGE_BYTES,
    IPCMessage,
    MessageType,
    ProtocolError,
    make_message,
    parse_message,
    reply_to,
)

# A realistic payload for every message type, in wire (camelCase) form, with who sends it to whom.
SAMPLES: dict[MessageType, tuple[str, str, dict[str, Any]]] = {
    MessageType.TASK_ASSIGN: (
        MANAGER_ID,
        "backend-1",
        {
            "taskId": "api-auth",
            "attempt": 2,
            "title": "Add token auth to the API",
            "command": "pytest tests/test_auth.py",
            "estimate": 120.0,
            "agents": ["backend-1", "reviewer"],
            "locks": [{"resourceId": "src/auth.py", "lockType": "write", "lockId": "L7", "token": 41}],
            "maxExecutionTime": 900.0,
        },
    ),
    MessageType.TASK_COMPLETE: (
        "backend-1",
        MANAGER_ID,
        {
            "taskId": "api-auth",
            "attempt": 2,
            "result": {"tests": 14, "failed": 0},
            "locks": [{"resourceId": "src/auth.py", "lockType": "write", "lockId": "L7", "token": 41}],
        },
    ),
    MessageType.TASK_FAILED: (
        "backend-1",
        MANAGER_ID,
        {"taskId": "api-auth", "attempt": 2, "error": "exit code 1", "retryable": False},
    ),
    MessageType.TASK_UPDATE: (
        "backend-1",
        MANAGER_ID,
        {
            "taskId": "api-auth",
            "attempt": 2,
            "progress": 0.5,
            "message": "3 of 6 tests pass",
            "stream": "stdout",
        },
    ),
    MessageType.TASK_CANCEL: (
        MANAGER_ID,
        "backend-1",
        {"taskId": "api-auth", "attempt": 2, "reason": "operator"},
    ),
    MessageType.RESOURCE_LOCK: (
        "backend-1",
        MANAGER_ID,
        {
            "resourceId": "src/auth.py",
            "lockType": "write",
            "ttl": 30000,
            "waitMs": 500,
            "taskId": "api-auth",
            "also": [{"resourceId": "src/users.py", "lockType": "read"}],
        },
    ),
    MessageType.RESOURCE_UNLOCK: ("backend-1", MANAGER_ID, {"resourceId": "src/auth.py", "lockId": "L7"}),
    MessageType.RESOURCE_CONFLICT: (
        MANAGER_ID,
        "frontend-1",
        {
            "resourceId": "src/auth.py",
            "lockType": "exclusive",
            "holder": "backend-1",
            "holderMode": "write",
            "holderTask": "api-auth",
            "reason": "held",
        },
    ),
    MessageType.STATE_UPDATE: (
        "backend-1",
        MANAGER_ID,
        {
            "path": "src/auth.py",
            "checksum": "sha256:9f86d081884c7d65",
            "lockId": "L7",
            "token": 41,
            "attempt": 2,
            "taskId": "api-auth",
        },
    ),
    MessageType.STATE_REQUEST: ("dashboard", MANAGER_ID, {"sections": ["tasks", "locks"]}),
    MessageType.STATE_SYNC: (
        MANAGER_ID,
        "dashboard",
        {"version": 57, "state": {"tasks": {"api-auth": {"status": "running", "owner": None}}}},
    ),
    MessageType.AGENT_READY: (
        "backend-1",
        MANAGER_ID,
        {
            "capabilities": ["python", "sql"],
            "specializations": ["api"],
            "maxConcurrentTasks": 2,
            "token": "s3cret",
        },
    ),
    MessageType.AGENT_BUSY: ("backend-1", MANAGER_ID, {"taskId": "api-auth", "reason": "at capacity"}),
    MessageType.AGENT_ERROR: (
        MANAGER_ID,
        "backend-1",
        {"error": "missing", "field": "payload.resourceId", "refMessageId": "m-17"},
    ),
    MessageType.REQUEST_ASSISTANCE: (
        "frontend-1",
        MANAGER_ID,
        {"topic": "auth header name", "taskId": "login-form", "details": "Bearer or X-Token?"},
    ),
    MessageType.PROVIDE_ASSISTANCE: (
        "backend-1",
        "frontend-1",
        {"topic": "auth header name", "taskId": "login-form", "details": "Authorization: Bearer"},
    ),
    MessageType.BROADCAST_INFO: (
        MANAGER_ID,
        BROADCAST,
        {"info": "sprint paused", "data": {"by": "operator", "resumeAt": None}},
    ),
    MessageType.HEARTBEAT: ("backend-1", MANAGER_ID, {"tasks": ["api-auth"], "load": 1}),
    MessageType.TASK_CLAIM: ("claude-1", MANAGER_ID, {"taskId": "api-auth"}),
    MessageType.AGENT_LEAVE: ("claude-1", MANAGER_ID, {"reason": "the Claude Code session ended"}),
}


def sample(kind: MessageType, **envelope: Any) -> IPCMessage:
    sender, to, payload = SAMPLES[kind]
    return make_message(kind, sender, to, payload, **envelope)


def lock_request_wire() -> dict[str, Any]:
    return json.loads(sample(MessageType.RESOURCE_LOCK, requires_response=True, response_timeout=500).wire())


def test_every_message_type_has_a_sample() -> None:
    assert set(SAMPLES) == set(MessageType)


@pytest.mark.parametrize("kind", list(MessageType), ids=lambda kind: kind.value)
def test_round_trip(kind: MessageType) -> None:
    message = sample(kind, priority="high", requires_response=True, response_timeout=2500)
    wire = message.wire()
    parsed = parse_message(wire)
    assert parsed == message
    assert type(parsed) is type(message)
    assert parsed.wire() == wire
    from_bytes = parse_message(wire.encode())  # as off a socket: pydantic's own JSON parser
    assert from_bytes == message and type(from_bytes) is type(message)
    # The payload survives as the wire form we wrote, camelCase keys included.
    assert {key: value for key, value in json.loads(wire)["payload"].items() if key in SAMPLES[kind][2]} == (
        SAMPLES[kind][2]
    )


def test_wire_keys_are_the_seeds() -> None:
    request = sample(MessageType.RESOURCE_LOCK, requires_response=True, response_timeout=500)
    reply = reply_to(request, MessageType.RESOURCE_CONFLICT, SAMPLES[MessageType.RESOURCE_CONFLICT][2])
    wire = json.loads(reply.wire())
    assert {
        "id",
        "type",
        "from",
        "to",
        "timestamp",
        "payload",
        "priority",
        "requiresResponse",
        "correlationId",
    } <= set(wire)
    assert "from_" not in wire and "correlation_id" not in wire
    assert json.loads(request.wire())["responseTimeout"] == 500
    assert json.loads(request.wire())["requiresResponse"] is True
    payload = json.loads(request.wire())["payload"]
    assert payload["resourceId"] == "src/auth.py" and payload["lockType"] == "write"
    assert "resource_id" not in payload
    assert wire["timestamp"].endswith("Z")


def test_parse_accepts_bytes_and_dicts() -> None:
    message = sample(MessageType.HEARTBEAT)
    assert parse_message(message.wire().encode()) == message
    assert parse_message(json.loads(message.wire())) == message


def test_reply_to_sets_correlation_and_recipient() -> None:
    request = sample(
        MessageType.RESOURCE_LOCK, priority="critical", requires_response=True, response_timeout=500
    )
    grant = reply_to(
        request,
        "resource_lock",
        {
            "resourceId": "src/auth.py",
            "lockType": "write",
            "lockId": "L8",
            "token": 42,
            "expiresAt": "2030-01-01T00:00:00Z",
        },
    )
    assert grant.correlation_id == request.id
    assert grant.to == "backend-1"
    assert grant.from_ == MANAGER_ID
    assert grant.priority == "critical"
    assert grant.id != request.id
    assert json.loads(grant.wire())["correlationId"] == request.id
    assert parse_message(grant.wire()) == grant


def mutate(change: Any) -> dict[str, Any]:
    wire = lock_request_wire()
    change(wire)
    return wire


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        (lambda w: w["payload"].pop("resourceId"), "payload.resourceId", "missing"),
        (lambda w: w["payload"].update(resourceId=7), "payload.resourceId", "string"),
        (
            lambda w: w["payload"].update(lockType="shared"),
            "payload.lockType",
            "'read', 'write' or 'exclusive'",
        ),
        (lambda w: w["payload"].update(ttl=0), "payload.ttl", "greater than 0"),
        (lambda w: w["payload"]["also"][0].pop("resourceId"), "payload.also.0.resourceId", "missing"),
        (lambda w: w["payload"].update(colour="red"), "payload.colour", "unknown field"),
        (lambda w: w.update(colour="red"), "colour", "unknown field"),
        (lambda w: w.pop("from"), "from", "missing"),
        (lambda w: w.pop("payload"), "payload", "missing"),
        (lambda w: w.update(priority="urgent"), "priority", "'low', 'medium', 'high' or 'critical'"),
        (lambda w: w.update(requiresResponse="maybe"), "requiresResponse", "boolean"),
        (lambda w: w.update(responseTimeout=-5), "responseTimeout", "greater than 0"),
        (lambda w: w.update(payload=["src/auth.py"]), "payload", "dictionary"),
        (lambda w: w.update(type="resource_grab"), "type", "unknown message type 'resource_grab'"),
        (lambda w: w.pop("type"), "type", "missing"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["text", "bytes"])
def test_malformed_message_names_the_field(change: Any, field: str, reason: str, as_bytes: bool) -> None:
    wire = mutate(change)
    text = json.dumps(wire)
    with pytest.raises(ProtocolError) as caught:
        parse_message(text.encode() if as_bytes else text)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{field}: ")
    if "id" in wire:
        assert caught.value.message_id == wire["id"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("[1, 2]", "must be a JSON object"),
        ('"hello"', "must be a JSON object"),
        ("{not json", "not JSON"),
        ("", "not JSON"),
        (b"\xff\xfe{", "not UTF-8"),
        ('{"id": NaN}', "NaN is not a JSON number"),
        ("[" * 50_000, "nested too deeply"),
        (b'{"id":"x1","type":"broadcast_info","from":"a","to":"b","timestamp":"2026-01-01T00:00:00Z",'
         b'"payload":{"info":"i","data":{"v":NaN}}}', "NaN is not a JSON number"),  # valid but for the NaN
        (b'{"id":"x1","type":"broadcast_info","from":"a","to":"b","timestamp":"2026-01-01T00:00:00Z",'
         b'"payload":{"info":"i","data":{"v":-Infinity}}}', "Infinity is not a JSON number"),
    ],
)
def test_undecodable_input_is_a_protocol_error(raw: str | bytes, reason: str) -> None:
    for given in (raw, raw.encode()) if isinstance(raw, str) else (raw,):  # bytes: as off a socket
        with pytest.raises(ProtocolError) as caught:
            parse_message(given)
        assert caught.value.field == ""
        assert reason in caught.value.reason


def test_oversize_message_is_refused_before_decoding() -> None:
    wire = lock_request_wire()
    wire["payload"]["taskId"] = "x" * MAX_MESSAGE_BYTES
    text = json.dumps(wire)
    with pytest.raises(ProtocolError) as caught:
        parse_message(text)
    assert f"{len(text)} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit" in caught.value.reason
    with pytest.raises(ProtocolError):
        parse_message(text.encode())


def test_message_just_under_the_limit_is_accepted() -> None:
    wire = lock_request_wire()
    wire["payload"]["taskId"] = ""
    padding = MAX_MESSAGE_BYTES - len(json.dumps(wire, separators=(",", ":")))
    wire["payload"]["taskId"] = "x" * padding
    text = json.dumps(wire, separators=(",", ":"))
    assert len(text) == MAX_MESSAGE_BYTES
    assert parse_message(text).payload.task_id == "x" * padding
