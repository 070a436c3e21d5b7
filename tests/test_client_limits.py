"""No client is trusted with the server (issue 14, defect 5): real `sprintdeck serve` processes, real
sockets, attackers written by hand.

- A bound agent that never reads is disconnected with the reason journaled, the server's memory
  stays bounded, and the agent is then an ordinary disconnected agent: it joins again and gets
  what waited for it.
- A flood of garbage lines is slowed, then disconnected, and reaches the journal as a handful of
  records, one of them counting the rest.
- Connections that never authenticate are capped (the oldest pushed out), cut off at the handshake
  deadline, and recorded the same way.

In each, an honest agent does its lock round trips on its own connection during the attack and
every one completes.  How fast they are is measured in benchmarks/bench_attacks.py, not here.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from conftest import write_plan
from engine.protocol import MANAGER_ID, make_message
from engine.transports.limits import (
    FLOOD_SECONDS,
    HANDSHAKE_SECONDS,
    MAX_QUEUED_MESSAGES,
    MAX_UNBOUND,
    REFUSALS_IN_FULL,
    Budget,
)
from test_serve import GUARD, Proc, listening_on, run_dir, serve, wait_for  # noqa: F401 (run_dir is a fixture)

AGENTS = ("honest", "hog", "flooder")


def start(directory: Path) -> tuple[Proc, str, dict[str, str], Path]:
    """A served sprint that stays open (its one task waits for an agent that never comes)."""
    agents = [{"id": agent_id, "kind": "external", "capabilities": [agent_id]} for agent_id in (*AGENTS, "worker")]
    write_plan(directory, {
        "sprint": "limits",
        # A disconnected agent stays so (not dead) for a minute: long enough to see it come back.
        "settings": {"heartbeat_interval": "1s", "heartbeat_timeout": "600s", "lock_ttl": "60s", "disconnect_grace": "60s"},
        "agents": agents,
        "tasks": [{"id": "later", "requires": ["worker"], "command": "true"}],
    })
    journal = directory / "run.jsonl"
    server = serve(directory / "plan.yaml", f"unix:{directory}/s/deck.sock", directory, "--record", str(journal),
                   "--workspace", str(directory / "ws"))
    path = listening_on(server).removeprefix("unix:")
    tokens = {agent_id: (directory / "run.tokens" / f"{agent_id}.token").read_text().strip() for agent_id in AGENTS}
    return server, path, tokens, journal


def wire(kind: str, sender: str, payload: dict, **envelope: object) -> tuple[str, bytes]:
    message = make_message(kind, sender, MANAGER_ID, payload, **envelope)
    return message.id, message.wire().encode() + b"\n"


class Agent:
    """An agent on a raw connection that reads only when it waits for a reply."""

    def __init__(self, path: str, agent_id: str, token: str) -> None:
        self.id = agent_id
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(GUARD)
        self.sock.connect(path)
        self.lines = self.sock.makefile("rb")
        self.welcome = self.ask("agent_ready", {"token": token})

    def ask(self, kind: str, payload: dict) -> dict:
        request_id, data = wire(kind, self.id, payload, requires_response=True)
        self.sock.sendall(data)
        needle = f'"correlationId":"{request_id}"'.encode()
        while True:
            line = self.lines.readline()
            assert line, f"{self.id}: the server closed the connection"
            if needle in line:
                return json.loads(line)

    def round_trips(self, count: int) -> int:
        """Lock and unlock `count` times; how many locks were granted."""
        granted = 0
        for _ in range(count):
            grant = self.ask("resource_lock", {"resourceId": f"src/{self.id}.py", "lockType": "write"})
            granted += grant["type"] == "resource_lock" and grant["payload"]["lockId"] is not None
            self.ask("resource_unlock", {"resourceId": f"src/{self.id}.py", "lockId": grant["payload"]["lockId"]})
        return granted

    def close(self) -> None:
        self.sock.close()


def journaled(journal: Path) -> list[dict]:
    """The journal's complete records so far (it is being written: a torn last line is left out)."""
    lines = journal.read_bytes().split(b"\n")[1:-1]
    return [json.loads(line) for line in lines]


def rejected(journal: Path, sender: str | None = None) -> list[dict]:
    return [r["data"] for r in journaled(journal)
            if r["type"] == "message_rejected" and (sender is None or r["data"]["from"] == sender)]


def refusals_counted(journal: Path) -> int:
    """How many refusals the journal's records stand for (a counted record for its `count`)."""
    return sum(record.get("count", 1) for record in rejected(journal))


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def in_background(work, *args) -> tuple[threading.Thread, dict]:
    """Run `work(*args)` in a thread; its result (or error) lands in the returned dict."""
    out: dict = {}

    def run() -> None:
        try:
            out["result"] = work(*args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test that joins it
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def joined(thread: threading.Thread, out: dict):
    thread.join(GUARD)
    assert not thread.is_alive(), "the background work did not finish"
    if "error" in out:
        raise out["error"]
    return out["result"]


# ---------------------------------------------------------------- a reader that stops reading


def never_read(path: str, token: str) -> int:
    """As hog: lock and unlock requests, replies never read, until the server hangs up."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(GUARD)
    sock.connect(path)
    sock.sendall(wire("agent_ready", "hog", {"token": token}, requires_response=True)[1])
    sent = 0
    try:
        while True:
            for kind, payload in (("resource_lock", {"resourceId": "hog.py", "lockType": "read"}),
                                  ("resource_unlock", {"resourceId": "hog.py"})):
                sock.sendall(wire(kind, "hog", payload, requires_response=True)[1])
                sent += 1
    except (BrokenPipeError, ConnectionResetError):
        return sent
    finally:
        sock.close()


def test_an_agent_that_never_reads_is_disconnected_with_the_reason_and_memory_stays_bounded(run_dir: Path) -> None:
    server, path, tokens, journal = start(run_dir)
    try:
        honest = Agent(path, "honest", tokens["honest"])
        before = rss_mb(server.process.pid)
        hog, hogging = in_background(never_read, path, tokens["hog"])
        granted = honest.round_trips(100)  # while the hog piles up replies
        sent = joined(hog, hogging)
        grown = rss_mb(server.process.pid) - before
        assert granted == 100
        assert sent > 1_000  # it got far enough to matter before it was cut off
        # Journaled with the reason, and the hog marked disconnected (the journal is flushed with
        # the honest agent's next grant).

        def disconnected() -> list[dict]:
            honest.round_trips(1)
            return [r["data"] for r in journaled(journal) if r["type"] == "agent_status" and r["data"]["agentId"] == "hog"
                    and r["data"].get("reason") == "disconnected"]

        wait_for(disconnected, "the hog marked disconnected", server.process)
        [record] = rejected(journal, "hog")
        assert record["reason"].startswith("disconnected: it fell behind: ")
        assert f"messages wait for it (limit {MAX_QUEUED_MESSAGES:,})" in record["reason"] and record["transport"] == "unix"
        assert grown < 20, f"the server grew by {grown:.1f} MB"
        # It is an agent that disconnected, like any other: marked so (above), it joins again, and
        # what waited for it is its.
        assert disconnected()[-1]["status"] == "unresponsive"
        hog_again = Agent(path, "hog", tokens["hog"])
        assert hog_again.welcome["payload"]["info"] == "welcome"
        backlog = 0
        hog_again.sock.settimeout(1.0)
        try:
            while hog_again.lines.readline():
                backlog += 1
        except TimeoutError:
            pass
        assert 500 < backlog < 10_000, backlog  # the replies it had not read, bounded
        assert honest.round_trips(10) == 10
        hog_again.close()
        honest.close()
    finally:
        server.kill()
    assert "Traceback" not in server.stderr()


# ---------------------------------------------------------------- a flood of garbage


def flood(path: str, token: str) -> int:
    """As flooder: garbage lines as fast as the server takes them, replies unread, until it hangs up."""
    garbage = b'{"type": "heartbeat", oops\n' * 256
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(GUARD)
    sock.connect(path)
    sock.sendall(wire("agent_ready", "flooder", {"token": token}, requires_response=True)[1])
    sent = 0
    try:
        while True:
            sock.sendall(garbage)
            sent += 256
    except (BrokenPipeError, ConnectionResetError):
        return sent
    finally:
        sock.close()


def test_a_flood_of_garbage_is_slowed_disconnected_and_journaled_as_a_few_records_with_a_count(run_dir: Path) -> None:
    server, path, tokens, journal = start(run_dir)
    try:
        honest = Agent(path, "honest", tokens["honest"])
        flooder, flooding = in_background(flood, path, tokens["flooder"])
        granted = honest.round_trips(100)
        sent = joined(flooder, flooding)
        assert granted == 100

        def counted() -> list[dict]:
            honest.round_trips(1)  # the journal is flushed with the honest agent's next grant
            return [r for r in rejected(journal, "flooder") if r.get("count")]

        wait_for(counted, "the flood's counted record", server.process)
        records = rejected(journal, "flooder")
        honest.close()
    finally:
        server.kill()
    reasons = [r["reason"] for r in records]
    assert len(records) <= REFUSALS_IN_FULL + 2, reasons  # not one per line
    assert all(reason.startswith("not JSON") for reason in reasons[:REFUSALS_IN_FULL])
    assert f"disconnected: it kept sending faster than {Budget().describe()} for {FLOOD_SECONDS:g} s" in reasons
    [summary] = [r for r in records if r.get("count")]
    assert summary["reason"].startswith(f"refused {summary['count']:,} more lines from agent 'flooder' in ")
    assert "the first: not JSON" in summary["reason"]
    assert 300 < summary["count"] + REFUSALS_IN_FULL <= sent
    assert "Traceback" not in server.stderr()


# ---------------------------------------------------------------- unauthenticated connections


def what_it_was_told(sock: socket.socket) -> str:
    """The agent_error the server sent before it hung up ("" if it hung up without one)."""
    sock.settimeout(GUARD)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return json.loads(data.splitlines()[0])["payload"]["error"] if data else ""


def test_unauthenticated_connections_are_capped_timed_out_and_journaled_in_bounded_records(run_dir: Path) -> None:
    server, path, tokens, journal = start(run_dir)
    held: list[socket.socket] = []
    try:
        honest = Agent(path, "honest", tokens["honest"])
        wrong = []
        for _ in range(200):  # a wrong token each
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(path)
                sock.sendall(wire("agent_ready", "honest", {"token": "not-the-token"}, requires_response=True)[1])
                wrong.append(what_it_was_told(sock))
        for _ in range(MAX_UNBOUND + 100):  # silent: they only hold a place
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            held.append(sock)
        pushed_out = [what_it_was_told(sock) for sock in held[:100]]  # the oldest, by the newer ones
        assert honest.round_trips(50) == 50  # the honest agent went on meanwhile
        timed_out = [what_it_was_told(sock) for sock in held[100:]]  # the deadline ends the rest
        wait_for(lambda: honest.round_trips(1) and refusals_counted(journal) >= 200 + 100 + MAX_UNBOUND,
                 "a journal that counts every refusal", server.process)
        records = rejected(journal)
        honest.close()
    finally:
        for sock in held:
            sock.close()
        server.kill()
    newer = f"disconnected: {MAX_UNBOUND} newer connections were waiting for their handshake"
    assert pushed_out == [newer] * 100
    assert wrong == ["wrong token for agent 'honest'"] * 200
    assert timed_out == [f"disconnected: it sent no agent_ready within {HANDSHAKE_SECONDS:g} s"] * MAX_UNBOUND
    assert len(records) <= 3 * (REFUSALS_IN_FULL + 1), [r["reason"] for r in records]
    summaries = [r for r in records if r.get("count")]
    assert all(r["reason"].startswith("refused ") and "from unauthenticated peers on unix" in r["reason"] for r in summaries)
    assert refusals_counted(journal) == 200 + 100 + MAX_UNBOUND  # every refusal, counted once
    assert "Traceback" not in server.stderr()
