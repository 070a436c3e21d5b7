"""`sprintdeck watch nats://HOST:PORT/SPRINT`: watchers attached to a real `serve` through a real
nats-server.

Headless watch processes end with exactly the final state `serve --json` prints; a watcher with
the operator token reassigns a task and the journal names the operator, while a read-only watcher
follows; a wrong operator token is refused saying why, and journaled; a watcher that falls behind
(its queue overflows: messages are dropped) notices the gap by the sequence numbers, asks for a
fresh snapshot and still ends with serve's final state.
Waits are on what the processes print, journal or send, with generous guards; nothing asserts a time.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from engine.protocol import MANAGER_ID, SPRINT_FINISHED, MessageType, make_message
from engine.transports.address import parse_address
from engine.transports.nats_watcher import NatsWatchWire
from nats_server import NatsServer, nats_server  # noqa: F401 (a fixture)
from test_serve import GUARD, listening_on, records_of, run_dir, serve, wait_for  # noqa: F401 (fixture)
from test_watch_command import journal_records, operator_reassigns_t1, watch, rebuilt_state, watched_plan, watchers_end_as_served


def test_headless_watchers_over_nats_end_with_the_same_final_state_as_serve_json(run_dir: Path, nats_server: NatsServer) -> None:
    server = serve(watched_plan(run_dir), nats_server.url, run_dir, "--record", str(run_dir / "run.jsonl"), "--speed", "10")
    address = listening_on(server)
    assert address == f"{nats_server.url}/watched"
    watchers_end_as_served(server, address, run_dir)


def test_operator_watcher_over_nats_reassigns_a_task_and_a_wrong_token_is_refused_and_journaled(
        run_dir: Path, nats_server: NatsServer) -> None:
    journal = run_dir / "run.jsonl"
    server = serve(watched_plan(run_dir, tasks=2, estimate="3s"), nats_server.url, run_dir,
                   "--record", str(journal), "--speed", "1")
    address = listening_on(server)
    reader = watch(address, run_dir, "--json", name="reader")  # a read-only watcher all along
    wrong = run_dir / "wrong-token"
    wrong.write_text("not-the-operator-token\n")
    refused = watch(address, run_dir, "--token-file", str(wrong), "--name", "mallory", name="wrong").finish()
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert f"{address} refused to be watched: wrong operator token" in refused.stderr

    other, status = asyncio.run(asyncio.wait_for(operator_reassigns_t1(address, run_dir), GUARD))
    assert status == "completed"
    served = server.finish()
    assert served.returncode == 0, served.stderr
    assert records_of(journal, "operator_action") == [
        {"action": "reassign", "by": "alice", "taskId": "t1", "agentId": other}]
    read_only = reader.finish()
    assert read_only.returncode == 0, read_only.stderr
    assert json.loads(read_only.stdout) == json.loads(served.stdout)
    assert json.loads(read_only.stdout)["state"]["tasks"]["t1"]["agent"] == other
    refusals = [r for r in records_of(journal, "message_rejected") if "wrong operator token" in r.get("reason", "")]
    assert [(r["from"], r["field"], r["security"]) for r in refusals] == [("mallory", "payload.token", True)]
    assert refusals[0]["transport"] == "nats:sprintdeck.watched.manager"


def test_a_nats_watcher_that_falls_behind_asks_for_a_fresh_snapshot_and_ends_with_serves_state(
        run_dir: Path, nats_server: NatsServer) -> None:
    """It keeps at most 20 messages unread; it reads its snapshot, then none while thousands of events happen, so
    what comes after is dropped, the sequence numbers show the gap, and the manager sends a fresh
    snapshot.  The sprint does not wait for it."""
    journal = run_dir / "run.jsonl"
    server = serve(watched_plan(run_dir, tasks=600, estimate="1s"), nats_server.url, run_dir,
                   "--record", str(journal), "--speed", "50")
    address = parse_address(listening_on(server))

    async def sleepy() -> tuple[list, int]:
        wire = await NatsWatchWire.open(address, "sleepy", max_queued=20)
        await wire.send(make_message(MessageType.AGENT_READY, "sleepy", MANAGER_ID, {"channel": "watch"},
                                     requires_response=True))
        messages = [await wire.receive()]  # the snapshot, then nothing for a while
        started = journal_records(journal)
        while journal_records(journal) < started + 1_000:
            await asyncio.sleep(0.05)
        while (message := await wire.receive()) is not None:
            messages.append(message)
        await wire.close()
        return messages, wire.gaps

    messages, gaps = asyncio.run(asyncio.wait_for(sleepy(), GUARD))
    served = server.finish()
    assert served.returncode == 0, served.stderr
    assert gaps >= 1
    snapshots = [m for m in messages if m.type == MessageType.STATE_SYNC]
    assert snapshots[0] is messages[0] and snapshots[0].correlation_id is not None
    assert len(snapshots) >= 2, "no fresh snapshot"
    assert messages[-1].payload.info == SPRINT_FINISHED
    assert rebuilt_state(messages[:-1]) == json.loads(served.stdout)["state"]
