"""`sprintdeck mcp` acquire_lock round trip, next to the same lock over the raw socket (issue 13).

One real manager, a `sprintdeck serve` process (its own process, as in use), serves a plan of two
external agents on a Unix socket.  In the same run:
- MCP: a `sprintdeck mcp` subprocess driven over stdio by the official SDK's client (the legacy
  initialize handshake, as Claude Code does it); one round is `acquire_lock` of a free path, then
  `release_lock` of it: two tool calls, each one request to the manager;
- raw: a `SocketClient` in this process; one round is a `resource_lock` request and a
  `resource_unlock` request of the same kind of path;
- the MCP floor: `read_inbox`, a tool call that never reaches the manager, so what MCP adds to a
  call (pipes, JSON-RPC, the SDK's dispatch and argument validation) is visible on its own.
The three alternate in blocks after a warm-up, so that drift on a shared machine hits all alike.

Figures are printed, never asserted.  Usage:
    .venv/bin/python benchmarks/bench_mcp.py [--rounds 200] [--warmup 50] [--block 25]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mcp import Client, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

from engine.protocol import MANAGER_ID, make_message  # noqa: E402
from interleaved import Round, measure, pct  # noqa: E402  (benchmarks/, the script's own folder)
from engine.transports.address import parse_address  # noqa: E402
from engine.transports.client import SocketClient  # noqa: E402
from engine.transports.tokens import read_token  # noqa: E402

PLAN = {
    "sprint": "bench-mcp",
    "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "60s", "lock_ttl": "60s"},
    "agents": [{"id": "claude", "kind": "external"}, {"id": "raw", "kind": "external"}],
    # A task each, never completed: the sprint stays open for as long as the benchmark runs.
    "tasks": [{"id": "keep-claude-busy", "agent": "claude"}, {"id": "keep-raw-busy", "agent": "raw"}],
}


def start_serve(directory: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    (directory / "plan.json").write_text(json.dumps(PLAN))
    (directory / "ws").mkdir()
    address = f"unix:{directory}/s/deck.sock"
    tokens = directory / "tokens.json"
    serve = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", str(directory / "plan.json"), "--listen", address, "--headless",
         "--token-file", str(tokens), "--workspace", str(directory / "ws"), "--record", str(directory / "journal.jsonl")],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, stderr=(directory / "serve.log").open("w"),
    )
    deadline = time.monotonic() + 30
    while not (directory / "s/deck.sock").exists():
        if serve.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not start: {(directory / 'serve.log').read_text()}")
        time.sleep(0.05)
    return serve, address, tokens


def text_of(result: Any) -> str:
    text = "".join(getattr(block, "text", "") for block in result.content)
    if result.is_error:
        raise SystemExit(f"tool error: {text}")
    return text


async def mcp_ready(client: Client) -> None:
    deadline = time.monotonic() + 30
    while (await client.call_tool("whoami", {})).is_error:
        if time.monotonic() > deadline:
            raise SystemExit("sprintdeck mcp never connected to the manager")
        await asyncio.sleep(0.05)


def mcp_round(client: Client) -> Round:
    async def one(i: int) -> tuple[float, float]:
        path = [f"bench/mcp/f{i % 100}.py"]
        start = time.perf_counter()
        granted = text_of(await client.call_tool("acquire_lock", {"paths": path}))
        acquired = time.perf_counter()
        text_of(await client.call_tool("release_lock", {"paths": path}))
        assert granted.startswith("Granted"), granted
        return acquired - start, time.perf_counter() - start
    return one


def floor_round(client: Client) -> Round:
    async def one(i: int) -> tuple[float, float]:
        start = time.perf_counter()
        text_of(await client.call_tool("read_inbox", {}))
        done = time.perf_counter()
        return done - start, done - start
    return one


def raw_round(raw: SocketClient) -> Round:
    async def one(i: int) -> tuple[float, float]:
        path = f"bench/raw/f{i % 100}.py"
        start = time.perf_counter()
        grant = await raw.request(make_message("resource_lock", "raw", MANAGER_ID,
                                               {"resourceId": path, "lockType": "write"}), timeout=30)
        acquired = time.perf_counter()
        await raw.request(make_message("resource_unlock", "raw", MANAGER_ID,
                                       {"resourceId": path, "lockId": grant.payload.lock_id}), timeout=30)
        assert grant.type == "resource_lock", grant
        return acquired - start, time.perf_counter() - start
    return one


def report(samples: dict[str, list[tuple[float, float]]], args: argparse.Namespace) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    print(f"rounds: {args.rounds} per path after {args.warmup} warm-up, in blocks of {args.block}; "
          "manager: a `sprintdeck serve` process on a Unix socket\n")
    ms = {name: ([a * 1000 for a, _ in s], [r * 1000 for _, r in s]) for name, s in samples.items()}
    print(f"{'measure':44} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
    lines = [("raw socket: resource_lock request", ms["raw"][0]),
             ("raw socket: lock + unlock", ms["raw"][1]),
             ("MCP stdio: acquire_lock tool call", ms["mcp"][0]),
             ("MCP stdio: acquire_lock + release_lock", ms["mcp"][1]),
             ("MCP floor: read_inbox (no manager trip)", ms["floor"][0])]
    for label, values in lines:
        print(f"{label:44} {pct(values, 50):8.3f} {pct(values, 95):8.3f} {pct(values, 99):8.3f}")
    acquire_ratio = pct(ms["mcp"][0], 50) / pct(ms["raw"][0], 50)
    print(f"\nratio MCP acquire_lock / raw resource_lock, p50: {acquire_ratio:.2f}x "
          f"(p95: {pct(ms['mcp'][0], 95) / pct(ms['raw'][0], 95):.2f}x)")
    print(f"MCP's own share of a tool call (floor p50 / acquire_lock p50): "
          f"{pct(ms['floor'][0], 50) / pct(ms['mcp'][0], 50):.0%}")


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bm-", dir="/tmp") as tmp:
        directory = Path(tmp)
        serve, address, tokens = start_serve(directory)
        try:
            raw = SocketClient(parse_address(address), "raw", token=lambda: read_token(tokens, "raw"), give_up_after=30)
            await raw.connect()
            reader = asyncio.create_task(raw.run())
            env = {"SPRINTDECK_AGENT_ID": "claude", "SPRINTDECK_CONNECT": address,
                   "SPRINTDECK_TOKEN_FILE": str(tokens), "PYTHONPATH": str(ROOT)}
            params = StdioServerParameters(command=sys.executable, args=["-m", "app.cli", "mcp"], env=env, cwd=ROOT)
            with (directory / "mcp.log").open("w") as errlog:
                async with Client(stdio_client(params, errlog=errlog), mode="legacy") as client:  # type: ignore[arg-type]
                    await mcp_ready(client)
                    rounds = {"raw": raw_round(raw), "mcp": mcp_round(client), "floor": floor_round(client)}
                    samples = await measure(rounds, args.rounds, args.warmup, args.block)
            await raw.close()
            reader.cancel()
        finally:
            serve.terminate()
            serve.wait(timeout=30)
    report(samples, args)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--block", type=int, default=25)
    asyncio.run(main(parser.parse_args()))
