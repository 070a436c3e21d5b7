"""One short conversation with the sprint manager, for `sprintdeck hook`: standard library only.

Claude Code runs a hook as a new process for every tool call, so this module is what that process
costs: a socket, a handshake, one or two requests, never past a deadline.  It speaks the wire
protocol of DESIGN §3 and §9 by hand (newline-delimited JSON envelopes) rather than through
engine/protocol.py, whose pydantic models would triple the start-up time of every edit.

The hook joins on a side channel (`channel: requests`, see engine/transports/socket.py): the
manager answers its requests on this connection, while the agent's own connection (its MCP
server) keeps receiving its assignments.
"""

from __future__ import annotations

import json
import os
import socket
import time

TYPE_CHECKING = False  # typing, dataclasses and datetime would add a third to the hook's start-up
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

MANAGER_ID = "sprint_manager"
AGENT_ID_ENV = "SPRINTDECK_AGENT_ID"
CONNECT_ENV = "SPRINTDECK_CONNECT"
TOKEN_ENV = "SPRINTDECK_TOKEN"
TOKEN_FILE_ENV = "SPRINTDECK_TOKEN_FILE"
MAX_LINE = 4 * 1024 * 1024  # the manager's messages are at most 1 MiB; anything longer is not it


class NotConfigured(Exception):
    """The environment does not say which agent this is or where its manager listens."""


class Unreachable(Exception):
    """No answer from the manager: nothing listening, a broken connection, or past the deadline."""


class Refused(Exception):
    """The manager answered no (a wrong token, another live session of this agent...)."""


class Deadline:
    """The time a hook may still take; every wait on the socket is bounded by what is left."""

    def __init__(self, ms: int) -> None:
        self.ms = ms
        self._end = time.monotonic() + ms / 1000

    def left(self) -> float:
        return self._end - time.monotonic()

    def left_ms(self) -> int:
        return max(0, int(self.left() * 1000))


class Identity:
    """Which agent this is, where its manager listens, and its token."""

    def __init__(self, agent_id: str, connect: str, token: str) -> None:
        self.agent_id, self.connect, self.token = agent_id, connect, token


def identity_from(environ: Mapping[str, str]) -> Identity:
    """Who this Claude Code instance is in the sprint, from its environment (DESIGN §10)."""
    agent_id = environ.get(AGENT_ID_ENV, "").strip()
    connect = environ.get(CONNECT_ENV, "").strip()
    missing = [name for name, value in ((AGENT_ID_ENV, agent_id), (CONNECT_ENV, connect)) if not value]
    if missing:
        raise NotConfigured(f"{' and '.join(missing)} not set; start Claude Code as a sprint agent "
                            f"({AGENT_ID_ENV}=ID {CONNECT_ENV}=ADDR claude; `sprintdeck init-claude` prints the command)")
    return Identity(agent_id, connect, _token(environ, agent_id))


def _token(environ: Mapping[str, str], agent_id: str) -> str:
    token = environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = environ.get(TOKEN_FILE_ENV, "").strip()
    if not path:
        raise NotConfigured(f"no token: set {TOKEN_ENV} or {TOKEN_FILE_ENV} (serve prints where the tokens are)")
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(64 * 1024)
    except OSError as exc:
        raise NotConfigured(f"{TOKEN_FILE_ENV}: cannot read {path}: {exc.strerror}") from None
    if not text.lstrip().startswith("{"):
        if not text.strip():
            raise NotConfigured(f"{TOKEN_FILE_ENV}: {path} is empty")
        return text.strip()
    try:
        tokens = json.loads(text)
    except ValueError:
        raise NotConfigured(f"{TOKEN_FILE_ENV}: {path} is not valid JSON") from None
    mine: object = tokens.get(agent_id) if isinstance(tokens, dict) else None
    if not isinstance(mine, str) or not mine:
        raise NotConfigured(f"{TOKEN_FILE_ENV}: {path} has no token for agent {agent_id!r}")
    return mine


def _now() -> str:
    """UTC now in ISO 8601, as the envelope's timestamp (without importing datetime)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def _envelope(kind: str, sender: str, payload: dict[str, Any], deadline: Deadline | None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": os.urandom(12).hex(),  # the manager routes replies by id: unique across every hook process
        "type": kind,
        "from": sender,
        "to": MANAGER_ID,
        "timestamp": _now(),
        "priority": "high",
        "payload": payload,
    }
    if deadline is not None:
        message["requiresResponse"] = True
        message["responseTimeout"] = max(1, deadline.left_ms())
    return message


class Link:
    """A side channel of the agent, open for the length of one hook call."""

    def __init__(self, sock: socket.socket, identity: Identity, deadline: Deadline) -> None:
        self._sock = sock
        self._identity = identity
        self._deadline = deadline
        self._buffer = b""
        self.welcome: dict[str, Any] = {}

    @classmethod
    def open(cls, identity: Identity, deadline: Deadline, *, session: str | None) -> Link:
        """Connect and join; raises Unreachable (no answer in time) or Refused (the manager said no)."""
        link = cls(_connect(identity.connect, deadline), identity, deadline)
        try:
            payload: dict[str, Any] = {"agentId": identity.agent_id, "token": identity.token, "channel": "requests"}
            if session:
                payload["session"] = session
            answer = link.ask("agent_ready", payload)
        except BaseException:
            link.close()
            raise
        if answer.get("type") == "agent_error":
            link.close()
            raise Refused(str(answer.get("payload", {}).get("error", "refused")))
        link.welcome = answer.get("payload", {}).get("data") or {}
        return link

    def ask(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return the manager's reply to it (other lines are not for us)."""
        message = _envelope(kind, self._identity.agent_id, payload, self._deadline)
        self._write(message)
        while True:
            reply = self._read()
            if reply.get("correlationId") == message["id"]:
                return reply

    def tell(self, kind: str, payload: dict[str, Any]) -> None:
        """Send a message that needs no answer (the manager reads it before it sees us close)."""
        self._write(_envelope(kind, self._identity.agent_id, payload, None))

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ bytes

    def _write(self, message: dict[str, Any]) -> None:
        line = json.dumps(message, separators=(",", ":")).encode() + b"\n"
        try:
            self._sock.settimeout(max(0.001, self._deadline.left()))
            self._sock.sendall(line)
        except (TimeoutError, socket.timeout):
            raise Unreachable(self._late()) from None
        except OSError as exc:
            raise Unreachable(f"the connection to the sprint manager at {self._identity.connect} broke: {exc.strerror or exc}") from None

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            if self._deadline.left() <= 0:
                raise Unreachable(self._late())
            try:
                self._sock.settimeout(self._deadline.left())
                chunk = self._sock.recv(65536)
            except (TimeoutError, socket.timeout):
                raise Unreachable(self._late()) from None
            except OSError as exc:
                raise Unreachable(f"the connection to the sprint manager broke: {exc.strerror or exc}") from None
            if not chunk:
                raise Unreachable(f"the sprint manager at {self._identity.connect} closed the connection")
            self._buffer += chunk
            if len(self._buffer) > MAX_LINE:
                raise Unreachable("the sprint manager sent a line longer than any message")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError:
            raise Unreachable("the sprint manager sent a line that is not JSON") from None
        return message if isinstance(message, dict) else {}

    def _late(self) -> str:
        return f"no answer from the sprint manager at {self._identity.connect} within {self._deadline.ms} ms"


def _connect(address: str, deadline: Deadline) -> socket.socket:
    kind, _, rest = address.partition(":")
    try:
        if kind == "unix" and rest:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: Any = rest
        elif kind == "tcp" and ":" in rest:
            host, _, port = rest.rpartition(":")
            host = host.strip("[]")
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            target = (host, int(port))
        else:
            raise NotConfigured(f"{CONNECT_ENV}={address!r} should be unix:PATH or tcp:HOST:PORT")
    except ValueError:
        raise NotConfigured(f"{CONNECT_ENV}={address!r}: the port should be a number") from None
    try:
        sock.settimeout(max(0.001, deadline.left()))
        sock.connect(target)
    except (TimeoutError, socket.timeout):
        sock.close()
        raise Unreachable(f"no answer from the sprint manager at {address} within {deadline.ms} ms") from None
    except OSError as exc:
        sock.close()
        raise Unreachable(f"the sprint manager at {address} is not reachable: {exc.strerror or exc}") from None
    return sock
