"""A lock acquire+release from an agent process, over a Unix socket and loopback TCP (issue 14).

Each transport gets its own `sprintdeck serve` process (a plan of one external agent whose task is
never completed, so the sprint stays open) and the agent side is a `SocketClient` in this process,
as `sprintdeck agent` uses it.  One round is a `resource_lock` request answered by a grant, then a
`resource_unlock` request answered by its release.  In the same run, next to it:
- echo: a stdlib echo server in another process, on the same kind of socket, sent a line of the
  lock request's size and read back: what two processes and the socket cost with no manager;
- fsync: what one sync of the served journal costs: an append of the bytes one round adds to the
  journal (measured on the Unix server during the warm-up) and `os.fdatasync`, to a file beside
  the journal (same directory, same filesystem; the live journal itself must not be written by
  another process).
- floor: the least any Python lock server could do, in another process on the same kind of
  socket: an `asyncio.Protocol` that parses the request line (`json.loads`), appends one
  checksummed grant record to a journal beside the served one, `fdatasync`s it in the same
  callback and writes the answer; no validation, authentication, lock table, leases or state.
  It shows how much of the target is left for all that (its client is the echo's).
The target (issue 14) is acquire p50 <= 2 x echo p50 + one fsync p50.  The paths alternate in
blocks after a warm-up, so that drift on a shared machine hits all alike.

Figures are printed, never asserted.  Usage:
    .venv/bin/python benchmarks/bench_remote_locks.py [--rounds 400] [--warmup 50] [--block 50] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.protocol import MANAGER_ID, make_message  # noqa: E402
from interleaved import Round, measure, pct  # noqa: E402  (benchmarks/, the script's own folder)
from engine.transports.address import parse_address  # noqa: E402
from engine.transports.client import SocketClient  # noqa: E402
from engine.transports.framing import encode  # noqa: E402
from engine.transports.tokens import read_token  # noqa: E402

PLAN = {
    "sprint": "bench-remote-locks",
    "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "60s", "lock_ttl": "60s"},
    "agents": [{"id": "agent", "kind": "external"}],
    "tasks": [{"id": "keep-open", "agent": "agent"}],  # never completed: the sprint stays open
}
LISTEN = """
import asyncio, sys
async def listen(start_unix, start_tcp):
    kind, where = sys.argv[1], sys.argv[2]
    if kind == "unix":
        server = await start_unix(where)
    else:
        server = await start_tcp("127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
    print("ready", flush=True)
    await server.serve_forever()
"""
ECHO_SERVER = LISTEN + """
async def echo(reader, writer):
    while line := await reader.readline():
        writer.write(line)
asyncio.run(listen(lambda where: asyncio.start_unix_server(echo, where),
                   lambda host, port: asyncio.start_server(echo, host, port)))
"""

FLOOR_SERVER = LISTEN + """
import json, os, zlib
journal = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
class Floor(asyncio.Protocol):
    seq = 0
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""
    def data_received(self, data):
        self.buffer += data
        while b"\\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\\n", 1)
            request = json.loads(line)
            payload, Floor.seq = request["payload"], Floor.seq + 1
            grant = {"resourceId": payload["resourceId"], "lockType": payload["lockType"], "lockId": f"L{Floor.seq}", "token": Floor.seq}
            record = json.dumps({"seq": Floor.seq, "type": "lock_granted", "data": {**grant, "agentId": request["from"]}})
            os.write(journal, f"{record} {zlib.crc32(record.encode()):08x}\\n".encode())
            os.fdatasync(journal)
            answer = {"id": "a" + request["id"], "type": "resource_lock", "from": request["to"], "to": request["from"],
                      "correlationId": request["id"], "payload": grant}
            self.transport.write(json.dumps(answer).encode() + b"\\n")
async def start_unix(where):
    return await asyncio.get_running_loop().create_unix_server(Floor, where)
async def start_tcp(host, port):
    return await asyncio.get_running_loop().create_server(Floor, host, port)
asyncio.run(listen(start_unix, start_tcp))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_serve(directory: Path, kind: str) -> tuple[subprocess.Popen[bytes], str, Path, Path]:
    """A served sprint listening on `kind` (unix or tcp); returns it, its address, tokens and journal."""
    place = directory / kind
    place.mkdir()
    (place / "plan.json").write_text(json.dumps(PLAN))
    (place / "ws").mkdir()
    address = f"unix:{place}/deck.sock" if kind == "unix" else f"tcp:127.0.0.1:{free_port()}"
    tokens, journal, log = place / "tokens.json", place / "journal.jsonl", place / "serve.log"
    serve = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", str(place / "plan.json"), "--listen", address, "--headless",
         "--token-file", str(tokens), "--workspace", str(place / "ws"), "--record", str(journal)],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, stderr=log.open("w"),
    )
    deadline = time.monotonic() + 30
    while "listening on" not in log.read_text() or not tokens.exists():
        if serve.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not start: {log.read_text()}")
        time.sleep(0.05)
    return serve, address, tokens, journal


def start_echo(directory: Path, kind: str, server: str = ECHO_SERVER,
               name: str = "echo") -> tuple[subprocess.Popen[bytes], Callable[[], Awaitable[Streams]]]:
    """A line server (`server`, the echo unless told) in another process, and how to connect to it."""
    where = str(directory / f"{name}-{kind}.sock")
    echo = subprocess.Popen([sys.executable, "-c", server, kind, where, str(directory / f"{name}-{kind}.jsonl")],
                            stdout=subprocess.PIPE)
    assert echo.stdout is not None
    port = int(echo.stdout.readline()) if kind == "tcp" else 0
    echo.stdout.readline()  # ready

    async def connect() -> Streams:
        if kind == "unix":
            return await asyncio.open_unix_connection(where)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer
    return echo, connect


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def lock_round(client: SocketClient, kind: str) -> Round:
    async def one(i: int) -> tuple[float, float]:
        path = f"bench/{kind}/f{i % 100}.py"
        start = time.perf_counter()
        grant = await client.request(make_message("resource_lock", "agent", MANAGER_ID,
                                                  {"resourceId": path, "lockType": "write"}), timeout=30)
        acquired = time.perf_counter()
        await client.request(make_message("resource_unlock", "agent", MANAGER_ID,
                                          {"resourceId": path, "lockId": grant.payload.lock_id}), timeout=30)
        assert grant.type == "resource_lock" and grant.payload.lock_id, grant
        return acquired - start, time.perf_counter() - start
    return one


def request_line() -> bytes:
    """The lock request a round sends, as it goes on the wire."""
    return encode(make_message("resource_lock", "agent", MANAGER_ID, {"resourceId": "bench/unix/f10.py", "lockType": "write"}))


def request_line_size() -> int:
    """The size on the wire of the lock request a round sends (what the echo sends back and forth)."""
    return len(request_line())


def echo_round(streams: Streams, size: int, line: bytes | None = None) -> Round:
    """Send `line` (else one of `size` bytes) and read a line back, timed."""
    reader, writer = streams
    line = line or b"x" * (size - 1) + b"\n"

    async def one(i: int) -> tuple[float, float]:
        start = time.perf_counter()
        writer.write(line)
        await reader.readline()
        done = time.perf_counter()
        return done - start, done - start
    return one


async def journal_bytes_per_round(lock: Round, journal: Path, rounds: int = 50) -> int:
    """How many bytes one acquire+release adds to the journal: what each of its syncs carries."""
    before = journal.stat().st_size
    for i in range(rounds):
        await lock(i)
    await asyncio.sleep(0.05)  # the last release's records are written with the next sync or soon after
    return max(1, (journal.stat().st_size - before) // rounds)


def fsync_round(path: Path, size: int) -> Round:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    record = b"x" * (size - 1) + b"\n"

    async def one(i: int) -> tuple[float, float]:
        start = time.perf_counter()
        os.write(fd, record)
        os.fdatasync(fd)
        done = time.perf_counter()
        return done - start, done - start
    return one


def report(samples: dict[str, list[tuple[float, float]]], args: argparse.Namespace, where: Path) -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}; journals in {where}")
    print(f"rounds: {args.rounds} per path after {args.warmup} warm-up, in blocks of {args.block}; "
          f"a round adds {args.journal_bytes} bytes to the journal\n")
    ms = {name: ([a * 1000 for a, _ in s], [p * 1000 for _, p in s]) for name, s in samples.items()}
    print(f"{'measure':40} {'p50 ms':>8} {'p99 ms':>8} {'per s':>9}")
    fsync = pct(ms["fsync"][0], 50)
    print(f"{'fsync: a round of journal + fdatasync':40} {fsync:8.3f} {pct(ms['fsync'][0], 99):8.3f}")
    for kind in ("unix", "tcp"):
        echo, acquire, pair = ms[f"echo-{kind}"][0], ms[f"lock-{kind}"][0], ms[f"lock-{kind}"][1]
        print(f"{kind + ': echo of a request-sized line':40} {pct(echo, 50):8.3f} {pct(echo, 99):8.3f}")
        print(f"{kind + ': resource_lock -> grant':40} {pct(acquire, 50):8.3f} {pct(acquire, 99):8.3f}")
        pairs = 1000 / statistics.fmean(pair)
        print(f"{kind + ': acquire + release pair':40} {pct(pair, 50):8.3f} {pct(pair, 99):8.3f} {pairs:9,.0f}")
        floor = ms[f"floor-{kind}"][0]
        print(f"{kind + ': floor (parse, record, sync, answer)':40} {pct(floor, 50):8.3f} {pct(floor, 99):8.3f}")
    print()
    for kind in ("unix", "tcp"):
        echo, acquire = pct(ms[f"echo-{kind}"][0], 50), pct(ms[f"lock-{kind}"][0], 50)
        target = 2 * echo + fsync
        floor = pct(ms[f"floor-{kind}"][0], 50)
        print(f"{kind}: acquire p50 {acquire:.3f} ms = {acquire / echo:.1f}x echo; target 2 x echo + fsync = "
              f"{target:.3f} ms; acquire / target = {acquire / target:.2f}; floor / target = {floor / target:.2f}")


async def main(args: argparse.Namespace) -> None:
    base = Path(args.dir) if args.dir else None
    with tempfile.TemporaryDirectory(prefix="bench-remote-locks-", dir=base) as tmp:
        directory = Path(tmp)
        processes: list[subprocess.Popen[bytes]] = []
        clients: list[SocketClient] = []
        readers: list[asyncio.Task[None]] = []
        rounds: dict[str, Round] = {}
        size = request_line_size()
        try:
            for kind in ("unix", "tcp"):
                serve, address, tokens, journal = start_serve(directory, kind)
                echo, connect = start_echo(directory, kind)
                floor, connect_floor = start_echo(directory, kind, FLOOR_SERVER, "floor")
                processes += [serve, echo, floor]
                client = SocketClient(parse_address(address), "agent",
                                      token=lambda tokens=tokens: read_token(tokens, "agent"), give_up_after=30)
                await client.connect()
                clients.append(client)
                readers.append(asyncio.create_task(client.run()))
                rounds[f"lock-{kind}"] = lock_round(client, kind)
                rounds[f"echo-{kind}"] = echo_round(await connect(), size)
                rounds[f"floor-{kind}"] = echo_round(await connect_floor(), size, request_line())
                if kind == "unix":
                    per_round = await journal_bytes_per_round(rounds["lock-unix"], journal)
                    rounds["fsync"] = fsync_round(journal.with_name("fsync-probe.jsonl"), per_round)
                    args.journal_bytes = per_round
            samples = await measure(rounds, args.rounds, args.warmup, args.block)
        finally:
            for client in clients:
                await client.close()
            for reader in readers:
                reader.cancel()
            for process in processes:
                process.terminate()
                process.wait(timeout=30)
        report(samples, args, directory.parent)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--dir", help="where the journals go (default: the temp dir; put it on the journals' disk)")
    asyncio.run(main(parser.parse_args()))
