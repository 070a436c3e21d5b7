"""An honest agent's lock round trip over NATS while another agent floods the manager (issue 17).

Run by hand:  PYTHONPATH=. .venv/bin/python benchmarks/bench_nats_attacks.py  [--seconds 5]

Whole processes, as in production: a nats-server with JetStream, one `sprintdeck serve --listen
nats://...`, the honest agent (a `NatsClient` in this process doing write-lock acquire + release
round trips), and a flooder process: an agent with the right token that, once bound, publishes
garbage under its session as fast as nats-py lets it (core publishes: the stream stores them, the
flooder waits for nothing).  Phases, each `--seconds` long: unloaded, flood, then after (the flood
over, while the manager still takes what the stream holds of it).  For each it prints the honest
acquire p50/p99/max and round trips a second, the p50 as a ratio to the unloaded p50 measured first
in the same run (target: within 2x), and what the flood cost: messages sent, the journal records
about the flooder (and the refusals they stand for), and how long after the flood stopped the last
of them was written.  It never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.protocol import MANAGER_ID, make_message  # noqa: E402
from engine.transports.address import parse_address  # noqa: E402
from engine.transports.nats_client import NatsClient  # noqa: E402

PLAN = {
    "sprint": "nats-attacks",
    "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "3600s", "lock_ttl": "60s", "disconnect_grace": "60s"},
    "agents": [{"id": a, "kind": "external", "capabilities": [a]} for a in ("honest", "flooder", "worker")],
    "tasks": [{"id": "never", "requires": ["worker"], "command": "true"}],
}
FLOODER = """
import asyncio, json, sys, time
import nats
sys.path.insert(0, sys.argv[1])
from engine.protocol import MANAGER_ID, make_message
from engine.transports.nats_link import REPLY_HEADER, SESSION_HEADER, Subjects, consume
url, token, seconds = sys.argv[2], sys.argv[3], float(sys.argv[4])
async def main():
    subjects, nc = Subjects("nats-attacks"), await nats.connect(url)
    inbox, welcome = nc.new_inbox(), asyncio.get_running_loop().create_future()
    async def answer(msg):
        if not welcome.done():
            welcome.set_result(msg.headers[SESSION_HEADER])
    async def ignore(msg):
        await msg.ack()
    await nc.subscribe(inbox, cb=answer)
    await consume(nc.jetstream(), subjects.agent("flooder"), "agent-flooder", ignore)
    hello = make_message("agent_ready", "flooder", MANAGER_ID, {"token": token}, requires_response=True)
    await nc.jetstream().publish(subjects.manager, hello.wire().encode(), headers={REPLY_HEADER: inbox})
    headers = {REPLY_HEADER: inbox, SESSION_HEADER: await asyncio.wait_for(welcome, 30)}
    print("bound", flush=True)
    sent, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        for _ in range(200):
            await nc.publish(subjects.sent_by("flooder"), b'{"type": "heartbeat", oops', headers=headers)
        sent += 200
        await nc.flush()
    await nc.close()
    print(sent, flush=True)
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(where: Path) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str, str, Path]:
    port = free_port()
    nats_server = subprocess.Popen([shutil.which("nats-server") or "nats-server", "-js", "-a", "127.0.0.1", "-p",
                                    str(port), "-sd", str(where / "js")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"nats://127.0.0.1:{port}"
    (where / "plan.json").write_text(json.dumps(PLAN))
    (where / "ws").mkdir()
    journal, log = where / "journal.jsonl", where / "serve.log"
    time.sleep(0.5)
    serve = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", str(where / "plan.json"), "--listen", url, "--headless",
         "--token-file", str(where / "tokens.json"), "--workspace", str(where / "ws"), "--record", str(journal)],
        cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)}, stderr=log.open("w"))
    deadline = time.monotonic() + 30
    while "listening on" not in log.read_text() or not (where / "tokens.json").exists():
        if serve.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"serve did not start: {log.read_text()}")
        time.sleep(0.05)
    address = next(line.split("listening on ")[1] for line in log.read_text().splitlines() if "listening on" in line)
    return nats_server, serve, url, address.strip(), journal


async def rounds_for(client: NatsClient, seconds: float) -> list[float]:
    """Acquire round trips (each followed by its release) for `seconds`."""
    acquired: list[float] = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        began = time.perf_counter()
        grant = await client.request(make_message("resource_lock", "honest", MANAGER_ID,
                                                  {"resourceId": "src/honest.py", "lockType": "write"}), timeout=120)
        acquired.append(time.perf_counter() - began)
        await client.request(make_message("resource_unlock", "honest", MANAGER_ID,
                                          {"resourceId": "src/honest.py", "lockId": grant.payload.lock_id}), timeout=120)
    return acquired


def flood_records(journal: Path) -> tuple[int, int, float]:
    """The flooder's journal records, the refusals they stand for, and when (monotonic, the
    journal's clock) the last was journaled."""
    count, refusals, last = 0, 0, 0.0
    for line in journal.read_bytes().split(b"\n")[1:-1]:
        record = json.loads(line)
        data = record["data"]
        if data.get("from") == "flooder" or data.get("agentId") == "flooder":
            count, last = count + 1, max(last, record["mono"])
            refusals += data.get("count", 1) if record["type"] == "message_rejected" else 0
    return count, refusals, last


def row(name: str, samples: list[float], seconds: float, floor: float | None) -> str:
    ms = sorted(1000 * s for s in samples)
    p50, p99 = statistics.median(ms), ms[min(len(ms) - 1, int(0.99 * len(ms)))]
    ratio = f"{p50 / floor:.2f}x" if floor else "1.00x"
    return f"| {name} | {p50:.2f} ({ratio}) | {p99:.2f} | {ms[-1]:.1f} | {len(ms) / seconds:,.0f} |"


async def main(args: argparse.Namespace) -> None:
    where = Path(tempfile.mkdtemp(prefix="sd-nats-attacks-", dir="/tmp"))
    nats_server, serve, url, address, journal = start(where)
    tokens = json.loads((where / "tokens.json").read_text())
    client = NatsClient(parse_address(address), "honest", token=lambda: tokens["honest"])
    try:
        await client.connect()
        await rounds_for(client, 1.0)  # warm-up
        unloaded = await rounds_for(client, args.seconds)
        flooder = subprocess.Popen([sys.executable, "-c", FLOODER, str(ROOT), url, tokens["flooder"], str(args.seconds)],
                                   stdout=subprocess.PIPE, text=True)
        assert flooder.stdout is not None
        flooder.stdout.readline()  # bound
        flooded = await rounds_for(client, args.seconds)
        sent = int(flooder.stdout.readline())
        flooder.wait()
        stopped = time.monotonic()
        after = await rounds_for(client, args.seconds)
        await client.close()
        caused, refused, last = flood_records(journal)
        lag = last - stopped
    finally:
        serve.terminate()
        serve.wait()
        nats_server.terminate()
        nats_server.wait()
        shutil.rmtree(where, ignore_errors=True)
    floor = statistics.median(1000 * s for s in unloaded)
    print("| phase | acquire p50 ms (ratio) | p99 ms | max ms | round trips/s |")
    print("|---|---|---|---|---|")
    print(row("unloaded", unloaded, args.seconds, None))
    print(row("flood", flooded, args.seconds, floor))
    print(row("after the flood", after, args.seconds, floor))
    print(f"flood: {sent:,} messages in {args.seconds:g} s; {caused:,} journal records about the flooder, standing for "
          f"{refused:,} refusals; the last of it journaled {max(lag, 0):.1f} s after it stopped")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main(parser.parse_args()))
