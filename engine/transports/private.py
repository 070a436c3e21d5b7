"""A socket of the sprint's own: how `run` lets its `claude -p` runs' hooks and MCP servers reach it.

`serve` listens where the user says; `run` embeds everything, but a Claude Code run is another
process, so when the plan has `kind: claude` agents `run` listens on a Unix socket in a fresh 0700
directory, with tokens that live only in memory (each run gets its agent's in its environment).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from engine.plan import Plan
from engine.refusal import Refusal
from engine.transports.address import bound_address, listen, parse_address
from engine.transports.socket import SocketTransport
from engine.transports.tokens import claude_agents, new_token


def private_transport(plan: Plan) -> SocketTransport | None:
    """A listening transport for the plan's claude agents (None: the plan has none)."""
    agents = claude_agents(plan)
    if not agents:
        return None
    directory = Path(tempfile.mkdtemp(prefix="sprintdeck-", dir="/tmp"))  # short: a socket path has 107 bytes
    address = parse_address(f"unix:{directory}/deck.sock", listening=True)
    listener, _ = listen(address)
    return SocketTransport(listener, bound_address(address, listener), tokens={a: new_token() for a in agents},
                           local=agents)


@asynccontextmanager
async def serving(transport: SocketTransport | None, on_refused: Callable[[Refusal], None]) -> AsyncIterator[None]:
    """Take connections for the length of the block, then remove the socket's directory."""
    if transport is None:
        yield
        return
    transport.on_refused = on_refused
    await transport.start()
    try:
        yield
    finally:
        await transport.close()
        if transport.address.path:
            shutil.rmtree(Path(transport.address.path).parent, ignore_errors=True)
