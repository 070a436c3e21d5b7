"""Where a transport listens or connects: `unix:PATH`, `tcp:HOST:PORT` or `nats://HOST:PORT[/SPRINT]`
(DESIGN §9, §11).

The server and the agents parse the same text, so one parser names every mistake the same way.
The listening socket is made here, synchronously, so that `serve` finds out that an address is in
use or too long before it touches a journal.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

#: sun_path is 108 bytes on Linux, the last one a NUL: a longer path cannot be bound at all.
MAX_UNIX_PATH_BYTES = 107
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
FORMS = "use unix:PATH, tcp:HOST:PORT or nats://HOST:PORT"


class AddressError(ValueError):
    """An address that cannot be used; the message says which part and why."""


@dataclass(frozen=True)
class Address:
    """A parsed address.  `port` 0 (listening only) lets the system pick a free port."""

    kind: str  # "unix", "tcp" or "nats"
    path: str = ""
    host: str = ""
    port: int = 0
    sprint: str = ""  # nats: the sprint whose subjects an agent uses (serve prints it in the address)

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.kind == "nats":
            return f"nats://{host}:{self.port}" + (f"/{self.sprint}" if self.sprint else "")
        return f"tcp:{host}:{self.port}"


def parse_address(text: str, *, listening: bool = False) -> Address:
    """`unix:PATH` (made absolute), `tcp:HOST:PORT` on loopback or `nats://HOST:PORT[/SPRINT]`;
    `AddressError` otherwise."""
    scheme, sep, rest = text.partition(":")
    if scheme == "nats":
        return _nats(text)
    if not sep or not rest:
        raise AddressError(f"{text!r} is not an address; {FORMS}")
    if scheme == "unix":
        return _unix(rest)
    if scheme == "tcp":
        return _tcp(text, rest, listening)
    raise AddressError(f"{text!r}: unknown scheme {scheme!r}; {FORMS}")


def _unix(raw: str) -> Address:
    path = os.path.abspath(os.path.expanduser(raw))
    size = len(os.fsencode(path))
    if size > MAX_UNIX_PATH_BYTES:
        raise AddressError(
            f"unix socket path {path} is {size} bytes; the system allows at most "
            f"{MAX_UNIX_PATH_BYTES}: use a shorter path"
        )
    return Address("unix", path=path)


def _tcp(text: str, rest: str, listening: bool) -> Address:
    host, sep, port_text = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise AddressError(f"{text!r}: tcp needs HOST:PORT, e.g. tcp:127.0.0.1:7777")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise AddressError(f"{text!r}: port {port_text!r} is not a number from 0 to 65535")
    port = int(port_text)
    if port == 0 and not listening:
        raise AddressError(f"{text!r}: connect to the port the server printed, not 0")
    if not _is_loopback(host):
        raise AddressError(
            f"{text!r}: tcp listens and connects on loopback only (127.0.0.1, ::1, localhost); "
            "messages travel unencrypted"
        )
    return Address("tcp", host=host, port=port)


def _nats(text: str) -> Address:
    """`nats://HOST:PORT[/SPRINT]`: any host (NATS brings its own authentication and TLS).  The
    sprint names the subjects (`sprintdeck.<sprint>.*`); `serve` fills it in from the plan."""
    if not text.startswith("nats://"):
        raise AddressError(f"{text!r}: a NATS address is nats://HOST:PORT, e.g. nats://127.0.0.1:4222")
    server, _, sprint = text.removeprefix("nats://").partition("/")
    host, sep, port_text = server.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise AddressError(f"{text!r}: nats needs HOST:PORT, e.g. nats://127.0.0.1:4222")
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise AddressError(f"{text!r}: port {port_text!r} is not a number from 1 to 65535")
    if sprint and not _SUBJECT_PART.fullmatch(sprint):
        raise AddressError(f"{text!r}: sprint {sprint!r} may hold letters, digits, '_' and '-' only")
    return Address("nats", host=host, port=int(port_text), sprint=sprint)


_SUBJECT_PART = re.compile(r"[A-Za-z0-9_-]+")


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------- listening


def listen(address: Address, backlog: int = 64) -> tuple[socket.socket, str | None]:
    """A bound, listening socket for `address`, and a warning to print (or None).

    Raises `AddressError` when the address is in use or cannot be bound.  A Unix socket goes in a
    directory created 0700 when missing, and the socket file itself is 0600, so only this user
    can connect; a socket file left by a killed server is replaced.
    """
    if address.kind == "unix":
        return _listen_unix(address.path, backlog)
    return _listen_tcp(address, backlog), None


def _listen_tcp(address: Address, backlog: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise AddressError(f"cannot resolve {address.host!r}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise AddressError(f"cannot listen on {address}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _listen_unix(path: str, backlog: int) -> tuple[socket.socket, str | None]:
    directory = Path(path).parent
    warning = _prepare_directory(directory)
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket file is created 0600: no window with wider rights
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise AddressError(f"cannot listen on unix:{path}: {exc.strerror or exc}") from None
    finally:
        os.umask(old_umask)
    sock.setblocking(False)
    return sock, warning


def _prepare_directory(directory: Path) -> str | None:
    """Create the socket's directory 0700; an existing one is used as is, with a warning if open."""
    if not directory.exists():
        try:
            directory.parent.mkdir(parents=True, exist_ok=True)
            directory.mkdir(mode=0o700)
        except OSError as exc:
            raise AddressError(f"cannot create the socket directory {directory}: {exc.strerror or exc}") from None
        return None
    if not directory.is_dir():
        raise AddressError(f"{directory} is not a directory")
    mode = directory.stat().st_mode
    if mode & 0o077:
        return (
            f"socket directory {directory} is open to other users (mode {stat.filemode(mode)}); "
            "the socket itself is 0600, but a directory of its own (created 0700 when missing) is safer"
        )
    return None


def _remove_stale_socket(path: str) -> None:
    """A socket file nobody listens on (a killed server's) is removed; a live one is an error."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise AddressError(f"unix:{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError as exc:
        if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise AddressError(f"cannot use unix:{path}: {exc.strerror or exc}") from None
        os.unlink(path)
        return
    finally:
        probe.close()
    raise AddressError(f"unix:{path} is in use: another server listens there")


def bound_address(address: Address, sock: socket.socket) -> Address:
    """The address as bound: tcp port 0 becomes the port the system picked."""
    if address.kind == "tcp":
        return Address("tcp", host=address.host, port=sock.getsockname()[1])
    return address
