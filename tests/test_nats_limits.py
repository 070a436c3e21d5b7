"""No NATS client is trusted with the manager either: a real `sprintdeck serve` on a real nats-server.

An agent with a valid token publishes garbage under its session as fast as NATS takes it: on its
own subject (the rest of the flood waits in the stream), on its subject of requests (core NATS) or
on the subject of hellos (the rest is dropped).  The manager takes it at the agent's own pace (engine/transports/nats_intake.py),
disconnects the flooder after FLOOD_SECONDS, and journals the burst as a few records with a count,
while an honest agent's lock round trips go on.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nats
import pytest

from conftest import write_plan
from engine.protocol import MANAGER_ID, make_message
from engine.transports.address import parse_address
from engine.transports.limits import FLOOD_SECONDS, REFUSALS_IN_FULL, Budget
from engine.transports.nats_client import NatsClient
from engine.transports.nats_intake import LANE_MESSAGES, PAUSE
from engine.transports.nats_link import REPLY_HEADER, SESSION_HEADER, Subjects, consume
from nats_server import NatsServer, nats_server  # noqa: F401 (a fixture)
from test_client_limits import rejected
from test_serve import GUARD, listening_on, run_dir, serve, wait_for  # noqa: F401 (run_dir is a fixture)

GARBAGE = b'{"type": "heartbeat", oops'


def limits_plan(directory: Path) -> Path:
    """A sprint that stays open: its one task waits for an agent that never comes."""
    write_plan(directory, {
        "sprint": "limits",
        "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "600s", "lock_ttl": "60s", "disconnect_grace": "60s"},
        "agents": [{"id": agent_id, "kind": "external", "capabilities": [agent_id]}
                   for agent_id in ("honest", "flooder", "worker")],
        "tasks": [{"id": "later", "requires": ["worker"], "command": "true"}],
    })
    return directory / "plan.yaml"


async def flood(url: str, sprint: str, token: str, seconds: float, where: str) -> tuple[int, list[str], bool]:
    """As flooder: bind with the right token, then publish garbage under the session for `seconds`
    (`where`: on its own subject, as a bound agent sends; on its subject of requests, core NATS; or on
    the subject of hellos), pause, and bind
    again on its own subject as `NatsClient` does; how many were sent, the errors the manager sent
    back, and whether it was welcomed again."""
    subjects, nc = Subjects(sprint), await nats.connect(url)
    inbox, told, welcomes = nc.new_inbox(), [], asyncio.Queue()

    async def answer(msg) -> None:
        if (msg.headers or {}).get(SESSION_HEADER):
            welcomes.put_nowait(msg.headers[SESSION_HEADER])
        else:
            told.append(json.loads(msg.data)["payload"].get("error", ""))

    await nc.subscribe(inbox, cb=answer)
    await consume(nc.jetstream(), subjects.agent("flooder"), "agent-flooder", ignore)  # as agents do
    hello = make_message("agent_ready", "flooder", MANAGER_ID, {"token": token}, requires_response=True)
    await nc.jetstream().publish(subjects.manager, hello.wire().encode(), headers={REPLY_HEADER: inbox})
    headers = {REPLY_HEADER: inbox, SESSION_HEADER: await asyncio.wait_for(welcomes.get(), GUARD)}
    subject = {"own": subjects.sent_by("flooder"), "ask": subjects.asked_by("flooder"), "hello": subjects.manager}[where]
    sent, until = 0, time.monotonic() + seconds
    while time.monotonic() < until:
        for _ in range(200):
            await nc.publish(subject, GARBAGE, headers=headers)
        sent += 200
        await nc.flush()
    await asyncio.sleep(PAUSE + 0.5)
    welcomed = False
    for _ in range(15):  # a hello its lane purged with the flood's rest is said again, as NatsClient does
        hello = make_message("agent_ready", "flooder", MANAGER_ID, {"token": token}, requires_response=True)
        await nc.jetstream().publish(subjects.sent_by("flooder"), hello.wire().encode(), headers={REPLY_HEADER: inbox})
        try:
            welcomed = bool(await asyncio.wait_for(welcomes.get(), 2.0))
            break
        except TimeoutError:
            pass
    await nc.close()
    return sent, told, welcomed


async def ignore(msg) -> None:
    await msg.ack()


async def round_trips(client: NatsClient, count: int) -> int:
    granted = 0
    for _ in range(count):
        grant = await client.request(make_message("resource_lock", "honest", MANAGER_ID,
                                                  {"resourceId": "src/honest.py", "lockType": "write"}), timeout=GUARD)
        granted += grant.type == "resource_lock" and grant.payload.lock_id is not None
        await client.request(make_message("resource_unlock", "honest", MANAGER_ID,
                                          {"resourceId": "src/honest.py", "lockId": grant.payload.lock_id}), timeout=GUARD)
    return granted


@pytest.mark.parametrize("where", ["own", "ask", "hello"], ids=["its-own-subject", "its-requests-subject", "the-hello-subject"])
def test_a_nats_agent_flooding_garbage_is_disconnected_and_journaled_as_a_few_records_with_a_count(
        run_dir: Path, nats_server: NatsServer, where: str) -> None:
    journal = run_dir / "run.jsonl"
    server = serve(limits_plan(run_dir), nats_server.url, run_dir, "--record", str(journal),
                   "--workspace", str(run_dir / "ws"))
    try:
        address = listening_on(server)
        tokens = {a: (run_dir / "run.tokens" / f"{a}.token").read_text().strip() for a in ("honest", "flooder")}

        async def scenario() -> tuple[int, int, list[str], bool]:
            honest = NatsClient(parse_address(address), "honest", token=lambda: tokens["honest"])
            await honest.connect()
            flooding = asyncio.create_task(flood(nats_server.url, "limits", tokens["flooder"], FLOOD_SECONDS + 3, where))
            granted = 0
            while not flooding.done():  # the honest agent works all through the flood
                granted += await round_trips(honest, 10)
            sent, told, welcomed = await flooding
            granted += await round_trips(honest, 10)
            await honest.close()
            return granted, sent, told, welcomed

        # By design the scenario may take 40 s (the flood, the pause, up to 15 hellos of 2 s while
        # the manager chews through what the flood left stored); a lost request still fails on
        # its own GUARD, so the whole gets two.
        granted, sent, told, welcomed = asyncio.run(asyncio.wait_for(scenario(), 2 * GUARD))
        wait_for(lambda: any(r.get("count") for r in rejected(journal, "flooder")), "the flood's counted record",
                 server.process)
        records = rejected(journal, "flooder")
    finally:
        server.kill()
    disconnected = f"disconnected: it kept sending faster than {Budget().describe()} for {FLOOD_SECONDS:g} s"
    assert granted >= 20
    assert disconnected in told  # the flooder was told why
    assert welcomed, told[-3:]  # after a pause it binds again
    reasons = [r["reason"] for r in records]
    assert len(records) <= 2 * REFUSALS_IN_FULL + 4, reasons  # not one per message
    assert all(reason.startswith(("not JSON", f"dropped: more than {LANE_MESSAGES} messages waiting from this sender"))
               for reason in reasons[:REFUSALS_IN_FULL]), reasons
    assert disconnected in reasons
    counted = [r for r in records if r.get("count")]
    assert counted and all(r["reason"].startswith(f"refused {r['count']:,} more lines from agent 'flooder' in ")
                           for r in counted), reasons
    assert 300 < sum(r["count"] for r in counted) + REFUSALS_IN_FULL <= sent
    status = [r for r in _records(journal, "agent_status") if r["agentId"] == "flooder"]
    assert "disconnected" in [r.get("reason") for r in status]  # an agent that disconnected, until it bound again
    assert "Traceback" not in server.stderr()


def _records(journal: Path, kind: str) -> list[dict]:
    lines = journal.read_bytes().split(b"\n")[1:-1]
    return [json.loads(line)["data"] for line in lines if json.loads(line)["type"] == kind]
