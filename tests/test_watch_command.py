"""`sprintdeck watch ADDR` attached to a real `sprintdeck serve` process, over real sockets.

A headless watcher ends with exactly the final state and metrics `serve --json` prints, over Unix
and TCP, with another watcher attached at the same time; a watcher holding the operator token
reassigns a task and the journal names the operator; a read-only watcher's request, a wrong token
and a missing token file are refused saying why; a watcher that stops reading is resynchronised
from a fresh snapshot while the sprint goes on to its end; the dashboard shows a served sprint's
panes and says why the operator keys do nothing without the token.
Waits are on what the processes print, journal or send, with generous guards; nothing asserts a time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from app.dashboard import SprintDeckApp
from app.watch_source import READ_ONLY, WatchedSource, WatchRefused
from conftest import write_plan
from engine.protocol import MANAGER_ID, IPCMessage, MessageType, make_message, parse_message
from engine.transports.address import parse_address
from engine.transports.framing import LineFramer, encode
from engine.watchers import MAX_WATCHER_EVENTS, restore, wire_event
from engine.reducer import apply
from test_dashboard import screen_text, select_task
from test_serve import GUARD, Proc, listening_on, records_of, run_dir, serve, wait_for  # noqa: F401 (fixture)


def watched_plan(directory: Path, *, tasks: int = 4, estimate: str = "20s") -> Path:
    """Simulated agents embedded in serve: nobody has to connect for the sprint to run."""
    write_plan(directory, {
        "sprint": "watched",
        "settings": {"heartbeat_interval": "100ms", "heartbeat_timeout": "20s"},
        "agents": [{"id": "alpha", "capabilities": ["x"], "max_concurrent_tasks": 2},
                   {"id": "beta", "capabilities": ["x"]}],
        "tasks": [{"id": f"t{n}", "requires": ["x"], "estimate": estimate} for n in range(1, tasks + 1)],
    })
    return directory / "plan.yaml"


def watch(address: str, directory: Path, *extra: str, name: str = "watch") -> Proc:
    return Proc.start(["watch", address, "--headless", *extra], name, directory)


def operator_token(directory: Path) -> Path:
    return directory / "run.tokens" / "operator-token"


async def operator_reassigns_t1(address: str, run_dir: Path) -> tuple[str, str]:
    """alice, with the operator token, moves t1 to the other agent once it runs and watches the
    effect come back; (the agent it went to, t1's status when the sprint ends)."""
    token = operator_token(run_dir).read_text().strip()
    source = await WatchedSource.connect(parse_address(address), "alice", token)
    run = asyncio.create_task(source.run())
    while source.state.tasks["t1"].status != "running":
        await asyncio.sleep(0.02)
    other = "beta" if source.state.tasks["t1"].agent == "alpha" else "alpha"
    reply = await source.request({"action": "reassign", "taskId": "t1", "agentId": other})
    assert reply.type == MessageType.BROADCAST_INFO, reply.payload
    while source.state.tasks["t1"].agent != other:  # the watcher sees the effect come back
        await asyncio.sleep(0.02)
    await run
    return other, source.state.tasks["t1"].status


@pytest.mark.parametrize("kind", ["unix", "tcp"])
def test_headless_watchers_end_with_the_same_final_state_as_serve_json(run_dir: Path, kind: str) -> None:
    listen = f"unix:{run_dir}/s/sock" if kind == "unix" else "tcp:127.0.0.1:0"
    server = serve(watched_plan(run_dir), listen, run_dir, "--record", str(run_dir / "run.jsonl"), "--speed", "10")
    watchers_end_as_served(server, listening_on(server), run_dir)


def watchers_end_as_served(server: Proc, address: str, run_dir: Path) -> None:
    """Two headless read-only watchers of `server` end with the final state its `--json` prints."""
    assert f"sprintdeck watch {address}" in server.stderr()  # serve says how to watch it
    watchers = [watch(address, run_dir, "--json", name=f"watch-{n}") for n in range(2)]  # two at once
    served = server.finish()
    assert served.returncode == 0, served.stderr
    for watcher in watchers:
        watched = watcher.finish()
        assert watched.returncode == 0, watched.stderr
        assert "(read-only)" in watched.stderr and "finished · 4/4 done" in watched.stderr
        assert "Traceback" not in watched.stderr
        assert json.loads(watched.stdout) == json.loads(served.stdout)  # state and metrics alike


def test_operator_watcher_reassigns_a_task_and_the_journal_names_the_operator(run_dir: Path) -> None:
    journal = run_dir / "run.jsonl"
    server = serve(watched_plan(run_dir, tasks=2, estimate="3s"), f"unix:{run_dir}/s/sock", run_dir,
                   "--record", str(journal), "--speed", "1")
    address = listening_on(server)
    reader = watch(address, run_dir, "--json", name="reader")  # a read-only watcher all along

    other, status = asyncio.run(asyncio.wait_for(operator_reassigns_t1(address, run_dir), GUARD))
    assert status == "completed"
    assert server.finish().returncode == 0
    assert records_of(journal, "operator_action") == [
        {"action": "reassign", "by": "alice", "taskId": "t1", "agentId": other}]
    read_only = reader.finish()
    assert json.loads(read_only.stdout)["state"]["tasks"]["t1"]["agent"] == other, read_only.stderr


def test_read_only_watcher_wrong_token_and_missing_token_file_are_refused_saying_why(run_dir: Path) -> None:
    journal = run_dir / "run.jsonl"
    server = serve(watched_plan(run_dir, tasks=1, estimate="20s"), f"unix:{run_dir}/s/sock", run_dir,
                   "--record", str(journal), "--speed", "2")
    address = listening_on(server)
    wrong = run_dir / "wrong-token"
    wrong.write_text("not-the-operator-token\n")
    refused = watch(address, run_dir, "--token-file", str(wrong), name="wrong").finish()
    assert refused.returncode == 2
    assert f"{address} refused to be watched: wrong operator token" in refused.stderr
    assert "Traceback" not in refused.stderr
    missing = watch(address, run_dir, "--token-file", str(run_dir / "nope"), name="missing").finish()
    assert missing.returncode == 2
    assert f"--token-file: token file {run_dir / 'nope'} does not exist" in missing.stderr
    agents_tokens = run_dir / "agents.json"
    agents_tokens.write_text('{"alpha": "x"}')
    confused = watch(address, run_dir, "--token-file", str(agents_tokens), name="confused").finish()
    assert confused.returncode == 2 and "holds the agents' tokens" in confused.stderr

    async def ask_without_token() -> str:
        source = await WatchedSource.connect(parse_address(address), "bob", None)
        run = asyncio.create_task(source.run())
        reply = await source.request({"action": "cancel", "taskId": "t1"})
        await source.stop()
        run.cancel()
        return str(reply.payload.error) if reply.type == MessageType.AGENT_ERROR else ""

    named = watch(address, run_dir, "--name", "eve\x1b[2J", name="named").finish()
    assert named.returncode == 2 and "--name: watcher name 'eve\\x1b[2J' contains the control character" in named.stderr

    async def connect_as(name: str) -> str:
        try:
            await WatchedSource.connect(parse_address(address), name, None)
        except WatchRefused as exc:
            return str(exc)
        return ""

    said = asyncio.run(asyncio.wait_for(connect_as("eve\n"), GUARD))  # a client of its own: the server checks
    assert said == f"{address} refused to be watched: watcher name 'eve\\n' contains the control character '\\n'"
    said = asyncio.run(asyncio.wait_for(ask_without_token(), GUARD))
    assert said.startswith("this watcher is read-only: operator actions need `sprintdeck watch --token-file`")
    assert server.finish().returncode == 0  # t1 was not cancelled
    assert records_of(journal, "operator_action") == []
    refusals = records_of(journal, "message_rejected")
    assert any("wrong operator token" in r.get("reason", "") for r in refusals), refusals


def test_a_watcher_that_stops_reading_is_resynchronised_and_the_sprint_goes_on(run_dir: Path) -> None:
    """It says hello and reads nothing while more events than its bound happen; the sprint does not
    wait for it.  When it reads again it gets a fresh snapshot, and ends with serve's final state."""
    journal = run_dir / "run.jsonl"
    server = serve(watched_plan(run_dir, tasks=1500, estimate="1s"), f"unix:{run_dir}/s/sock", run_dir,
                   "--record", str(journal), "--speed", "50")
    address = parse_address(listening_on(server))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # what it does not read stays with the server
    sock.connect(address.path)
    sock.sendall(encode(make_message(MessageType.AGENT_READY, "sleepy", MANAGER_ID, {"channel": "watch"},
                                     requires_response=True)))
    started = journal_records(journal)
    wait_for(lambda: journal_records(journal) > started + 3 * MAX_WATCHER_EVENTS, "events while it sleeps", server.process)
    messages = read_all(sock)
    served = server.finish()
    assert served.returncode == 0, served.stderr
    snapshots = [m for m in messages if m.type == MessageType.STATE_SYNC]
    assert snapshots[0].correlation_id is not None and len(snapshots) >= 2, "no resync"
    assert all(s.correlation_id is None for s in snapshots[1:])
    assert rebuilt_state(messages) == json.loads(served.stdout)["state"]


def rebuilt_state(messages: list[IPCMessage]) -> dict[str, Any]:
    """The state a watcher rebuilds from what it was sent: its first snapshot, batches of events
    applied in order, and a fresh snapshot wherever it was resynchronised (as JSON)."""
    state = restore(messages[0].payload.state)
    for message in messages[1:]:
        if message.type == MessageType.STATE_SYNC:
            state = restore(message.payload.state)
        else:
            for record in message.payload.data["events"]:
                apply(state, wire_event(record))
    return state.model_dump(mode="json")


def journal_records(journal: Path) -> int:
    try:
        return journal.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def read_all(sock: socket.socket) -> list:
    """Every message until the server closes the connection."""
    framer, messages = LineFramer(limit=256 * 1024 * 1024), []
    sock.settimeout(GUARD)
    while data := sock.recv(1 << 20):
        messages += [parse_message(line) for line in framer.feed(data)]
    return messages


async def test_the_watch_dashboard_shows_the_served_sprint_and_says_why_operator_keys_do_nothing(run_dir: Path) -> None:
    server = serve(watched_plan(run_dir, tasks=3, estimate="20s"), f"unix:{run_dir}/s/sock", run_dir,
                   "--record", str(run_dir / "run.jsonl"), "--speed", "4")
    try:
        source = await WatchedSource.connect(parse_address(listening_on(server)), "carol", None)
        run = asyncio.create_task(source.run())
        app = SprintDeckApp(source, config_file=run_dir / "config.json")
        async with app.run_test(size=(140, 40), notifications=True) as pilot:
            deadline = time.monotonic() + GUARD
            while "finished · 3/3 done" not in screen_text(app):  # the events arrive and are drawn
                assert time.monotonic() < deadline, screen_text(app)
                await pilot.pause(0.1)
            shown = screen_text(app)
            assert "watch" in shown and "t1" in shown and "alpha" in shown
            await pilot.press("2", "p")  # pause the selected agent: not from a read-only watcher
            await pilot.pause(0.1)
            assert READ_ONLY in [str(n.message) for n in app._notifications]
            assert "Watching read-only" in screen_text(app)
        await run
    finally:
        server.finish()


async def test_with_the_operator_token_the_watch_dashboard_reassigns_and_says_the_managers_refusal(run_dir: Path) -> None:
    journal = run_dir / "run.jsonl"
    write_plan(run_dir, {
        "sprint": "operated",
        "settings": {"heartbeat_interval": "100ms", "heartbeat_timeout": "20s", "max_retries": 0},
        "agents": [{"id": agent, "capabilities": ["x"]} for agent in ("alpha", "beta", "gamma")],
        # Long enough that t2 still runs (its agent full) when the second reassign is tried, on a loaded machine too.
        "tasks": [{"id": f"t{n}", "requires": ["x"], "estimate": "60s"} for n in (1, 2)],
    })
    server = serve(run_dir / "plan.yaml", f"unix:{run_dir}/s/sock", run_dir, "--record", str(journal), "--speed", "1")
    try:
        token = operator_token(run_dir)
        wait_for(token.exists, "operator token", server.process)
        source = await WatchedSource.connect(parse_address(listening_on(server)), "dave", token.read_text().strip())
        run = asyncio.create_task(source.run())
        app = SprintDeckApp(source, config_file=run_dir / "config.json")
        async with app.run_test(size=(140, 40), notifications=True) as pilot:
            deadline = time.monotonic() + GUARD
            while not all(t.status == "running" for t in source.state.tasks.values()):
                assert time.monotonic() < deadline
                await pilot.pause(0.05)
            state = source.state
            idle = next(a for a in ("alpha", "beta", "gamma") if not state.agents[a].current_tasks)
            full = state.tasks["t2"].agent
            await select_task(pilot, app, "t1")
            await pilot.press("r", "enter")  # the chooser offers the idle agent only
            while source.state.tasks["t1"].agent != idle:
                assert time.monotonic() < deadline
                await pilot.pause(0.05)
            while "the manager did it: reassign" not in [str(n.message) for n in app._notifications]:
                assert time.monotonic() < deadline
                await pilot.pause(0.05)
            await pilot.press("colon", *f"reassign t1 {full}", "enter")  # the manager refuses: said here
            refusal = f"{full} is full: 1 of 1 tasks running (max_concurrent_tasks 1)"
            while refusal not in [str(n.message) for n in app._notifications]:
                assert time.monotonic() < deadline, [str(n.message) for n in app._notifications]
                await pilot.pause(0.05)
            assert refusal in screen_text(app)
        await source.stop()
        run.cancel()
    finally:
        server.kill()
    assert records_of(journal, "operator_action") == [{"action": "reassign", "by": "dave", "taskId": "t1", "agentId": idle}]


def test_a_watcher_that_takes_nothing_is_disconnected_with_the_reason_journaled_and_the_sprint_ends(run_dir: Path) -> None:
    """Its snapshot and events (long task titles: megabytes) fill what the system buffers for it; it never
    reads: the server drops it once it has taken nothing for the stall limit, says why in the
    journal, and the sprint runs to its end meanwhile."""
    journal = run_dir / "run.jsonl"
    write_plan(run_dir, {
        "sprint": "stalled",
        "settings": {"heartbeat_interval": "100ms", "heartbeat_timeout": "60s"},
        "agents": [{"id": "alpha", "capabilities": ["x"]}, {"id": "beta", "capabilities": ["x"]}],
        "tasks": [{"id": f"t{n}", "title": f"{n:4} " + "words " * 160, "requires": ["x"], "estimate": "0.05s"}
                  for n in range(1000)],
    })
    server = serve(run_dir / "plan.yaml", f"unix:{run_dir}/s/sock", run_dir, "--record", str(journal), "--speed", "1")
    address = parse_address(listening_on(server))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(address.path)
    sock.sendall(encode(make_message(MessageType.AGENT_READY, "sleepy", MANAGER_ID, {"channel": "watch"},
                                     requires_response=True)))
    try:
        served = server.finish()
    finally:
        sock.close()
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout)["metrics"]["completedTasks"] == 1000
    dropped = [r for r in records_of(journal, "message_rejected") if r.get("from") == "watch:sleepy"]
    assert dropped and dropped[0]["reason"].startswith("disconnected: it took nothing for 20 s"), dropped


def test_with_serve_token_file_the_operator_token_is_written_beside_it_private(run_dir: Path) -> None:
    tokens = run_dir / "tokens.json"
    server = serve(watched_plan(run_dir, tasks=1, estimate="30s"), f"unix:{run_dir}/s/sock", run_dir,
                   "--record", str(run_dir / "run.jsonl"), "--token-file", str(tokens), "--speed", "10")
    address = listening_on(server)
    operator = run_dir / "tokens.json.operator"
    assert f"(operator token in {operator})" in server.stderr()
    assert oct(operator.stat().st_mode & 0o777) == "0o600"
    watched = watch(address, run_dir, "--token-file", str(operator), "--name", "frank").finish()
    assert watched.returncode == 0 and "watching" in watched.stderr and "read-only" not in watched.stderr, watched.stderr
    assert server.finish().returncode == 0


def test_a_headless_watcher_whose_server_dies_says_so_and_exits_1(run_dir: Path) -> None:
    server = serve(watched_plan(run_dir, tasks=2, estimate="60s"), f"unix:{run_dir}/s/sock", run_dir,
                   "--record", str(run_dir / "run.jsonl"), "--speed", "1")
    watcher = watch(listening_on(server), run_dir, "--json")
    wait_for(lambda: "watching" in watcher.stderr(), "the watcher attached", watcher.process)
    server.kill()
    watched = watcher.finish()
    assert watched.returncode == 1 and watched.stdout == ""
    assert "the server closed before the sprint finished · 0/2 done" in watched.stderr, watched.stderr
