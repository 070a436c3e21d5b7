"""The HTTP side of `sprintdeck web` (app/commands/web.py): textual-serve's server, with three changes.

- It serves on a socket the command bound already, so that a port in use is said before anything
  else happens, and port 0 can pick a free one.
- Each page's websocket URL is built from the address the page was loaded from, so a page opened
  through any interface (`--host 0.0.0.0`) connects back to where it came from.
- It refuses requests that a browser makes on another site's behalf: a websocket whose `Origin` is
  not the page's own (any site the user visits could otherwise drive the dashboard, with the
  operator token, on localhost), and, when it listens on loopback, a `Host` that is not a loopback
  name (DNS rebinding: a site whose name resolves to 127.0.0.1).

Every page's websocket starts its own process running `command` (a `sprintdeck watch`), which
textual-serve drives through Textual's web driver and stops when the page goes away.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from textual_serve.server import Server

from engine.transports.address import LOOPBACK_NAMES

log = logging.getLogger("sprintdeck.web")
CHILDREN_GRACE = 5.0  # seconds the pages' processes have to quit when the server stops
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DashboardServer(Server):
    """textual-serve's `Server` on a bound socket, refusing cross-site requests (see the module)."""

    def __init__(self, command: str, sock: socket.socket, *, title: str, loopback: bool) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(command, host=host, port=port, title=title)
        self._sock = sock
        self._loopback = loopback
        self._sessions: set[asyncio.Task[Any]] = set()  # each open page's websocket handler

    async def _make_app(self) -> web.Application:
        app = await super()._make_app()
        app.middlewares.append(self._same_site)
        return app

    @web.middleware
    async def _same_site(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        problem = request_problem(request.host, request.headers.get("Origin"), request.scheme,
                                  loopback=self._loopback, websocket=request.path == "/ws")
        if problem is not None:
            log.warning("refused %s %s: %s", request.method, request.path, problem)
            raise web.HTTPForbidden(text=f"sprintdeck web: {problem}\n")
        if request.path != "/ws":
            return await handler(request)
        session = asyncio.current_task()
        assert session is not None
        self._sessions.add(session)
        try:
            return await handler(request)
        finally:
            self._sessions.discard(session)

    async def on_shutdown(self, app: web.Application) -> None:
        """Stopping: cancel each open page's handler, which closes its websocket and tells its
        process to quit (textual-serve does that on cancellation); aiohttp would wait for them."""
        for session in list(self._sessions):
            session.cancel()

    async def handle_index(self, request: web.Request) -> Any:
        """The page, its websocket URL on the address it was loaded from (the Host checked above).
        textual-serve reads `public_url` while it builds the page, before anything else can run."""
        self.public_url = f"{request.scheme}://{request.host}"
        return await super().handle_index(request)

    async def on_startup(self, app: web.Application) -> None:
        """The command printed the URL already; textual-serve's banner would name the wrong one."""

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM; then each page's `watch` process is told to quit, and
        waited for, so none outlives the server."""
        logging.basicConfig(format="sprintdeck: web: %(message)s", level=logging.WARNING)
        asyncio.run(self._run())

    async def _run(self) -> None:
        runner = web.AppRunner(await self._make_app(), handle_signals=False, access_log=None)
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        stop = asyncio.Event()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signal_number, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()  # closes the pages' websockets: textual-serve stops their processes
            await _children_gone(CHILDREN_GRACE)


async def _children_gone(grace: float) -> None:
    """Wait (at most `grace` seconds) until the pages' processes are reaped, so that asyncio's child
    watcher does not report them to a closed loop.  Linux lists a process's children in /proc."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _children():
        await asyncio.sleep(0.05)


def _children() -> bool:
    try:
        return any(p.read_text().strip() for p in Path("/proc/self/task").glob("*/children"))
    except OSError:
        return False

def request_problem(host: str, origin: str | None, scheme: str, *, loopback: bool, websocket: bool) -> str | None:
    """Why a request is refused (a browser sent it for another site), or None."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if loopback and name not in LOOPBACK_NAMES and not name.startswith("127."):
        return f"this server answers to loopback names only, not Host {host!r} (open it as 127.0.0.1 or localhost)"
    if websocket and origin is not None and origin != f"{scheme}://{host}":
        return f"a page from {origin!r} may not open this dashboard's session (it is served as {scheme}://{host})"
    return None
