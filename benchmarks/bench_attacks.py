"""An honest agent's lock round trip while another client attacks the server (issue 14, defect 5).

Run by hand:  PYTHONPATH=. .venv/bin/python benchmarks/bench_attacks.py  [--seconds 5] [--tcp]

Whole processes, as in production: one `sprintdeck serve` on a Unix socket (or loopback TCP), one honest agent
process doing write-lock acquire + release round trips on its own connection, and one attacker
process at a time:

- `reader`: a bound agent that fires lock requests and never reads a reply;
- `flood`: a bound agent that writes garbage lines as fast as it can (and reads nothing),
  reconnecting whenever it is disconnected;
- `unauth`: connections that never authenticate, as fast as it can open them: half send a wrong
  token, half hold the connection open and say nothing.

For each phase it prints the honest agent's acquire round trip p50/p99/max and pairs/s, next to
the unloaded figures measured first in the same run (the ratio is the figure to judge: target
p50 within 2x), and what the attack cost the server: the journal records it caused (every record
of the phase but the honest agent's own), the server's RSS growth, and what the attacker saw
(connections made, lines sent, connections the server closed).  It never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.protocol import MANAGER_ID, make_message  # noqa: E402

PLAN = """\
sprint: attacks
settings: {heartbeat_interval: 1s, heartbeat_timeout: 3600s, lock_ttl: 60s}
agents:
  - {id: honest, kind: external, capabilities: [honest]}
  - {id: hog, kind: external, capabilities: [hog]}
  - {id: flooder, kind: external, capabilities: [flood]}
  - {id: worker, kind: external, capabilities: [work]}
tasks:
  - {id: never, requires: [work], command: "true"}
"""
ATTACKS = ("reader", "flood", "unauth")


# ---------------------------------------------------------------- the wire, by hand


def connect(address: str) -> socket.socket:
    """`unix:PATH` or `tcp:HOST:PORT`, as `serve` prints it."""
    kind, _, rest = address.partition(":")
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(rest)
    else:
        host, _, port = rest.rpartition(":")
        sock = socket.create_connection((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def line(kind: str, sender: str, payload: dict, **envelope: object) -> tuple[str, bytes]:
    message = make_message(kind, sender, MANAGER_ID, payload, **envelope)
    return message.id, message.wire().encode() + b"\n"


def hello(sock: socket.socket, agent_id: str, token: str) -> None:
    _, data = line("agent_ready", agent_id, {"token": token}, requires_response=True)
    sock.sendall(data)


class Replies:
    """Lines from a socket, and the reply to a given request id."""

    def __init__(self, sock: socket.socket) -> None:
        self.file = sock.makefile("rb")

    def reply_to(self, request_id: str) -> dict:
        needle = f'"correlationId":"{request_id}"'.encode()
        while True:
            raw = self.file.readline()
            if not raw:
                raise ConnectionError("the server closed the connection")
            if needle in raw:
                return json.loads(raw)


# ---------------------------------------------------------------- the honest agent


def honest(path: str, token: str, seconds: float) -> None:
    """Acquire + release round trips for `seconds`; prints the acquire round trips (ms) as JSON."""
    sock = connect(path)
    replies = Replies(sock)
    request_id, data = line("agent_ready", "honest", {"token": token}, requires_response=True)
    sock.sendall(data)
    replies.reply_to(request_id)
    acquires: list[float] = []
    pairs = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        request_id, data = line("resource_lock", "honest", {"resourceId": "src/honest.py", "lockType": "write"},
                                requires_response=True)
        start = time.perf_counter()
        sock.sendall(data)
        grant = replies.reply_to(request_id)
        acquires.append((time.perf_counter() - start) * 1000)
        request_id, data = line("resource_unlock", "honest",
                                {"resourceId": "src/honest.py", "lockId": grant["payload"]["lockId"]},
                                requires_response=True)
        sock.sendall(data)
        replies.reply_to(request_id)
        pairs += 1
    sock.close()
    print(json.dumps({"acquires": acquires, "pairs": pairs, "seconds": seconds}))


# ---------------------------------------------------------------- the attackers


def attack_reader(path: str, token: str, stop: threading.Event, seen: dict) -> None:
    """Lock and unlock requests, whose replies it never reads; reconnect when thrown out."""
    while not stop.is_set():
        sock = connect(path)
        seen["connections"] = seen.get("connections", 0) + 1
        try:
            hello(sock, "hog", token)
            while not stop.is_set():
                for kind, payload in (("resource_lock", {"resourceId": "hog.py", "lockType": "read"}),
                                      ("resource_unlock", {"resourceId": "hog.py"})):
                    sock.sendall(line(kind, "hog", payload, requires_response=True)[1])
                seen["sent"] = seen.get("sent", 0) + 2
        except OSError:
            seen["closed"] = seen.get("closed", 0) + 1
        finally:
            sock.close()
        time.sleep(0.05)


def attack_flood(path: str, token: str, stop: threading.Event, seen: dict) -> None:
    """Garbage lines as fast as the socket takes them, replies unread; reconnect when thrown out."""
    garbage = b'{"type": "heartbeat", oops this is not json\n' * 512
    while not stop.is_set():
        sock = connect(path)
        seen["connections"] = seen.get("connections", 0) + 1
        try:
            hello(sock, "flooder", token)
            while not stop.is_set():
                sock.sendall(garbage)
                seen["sent"] = seen.get("sent", 0) + 512
        except OSError:
            seen["closed"] = seen.get("closed", 0) + 1
        finally:
            sock.close()
        time.sleep(0.05)


def attack_unauth(path: str, token: str, stop: threading.Event, seen: dict) -> None:
    """New connections as fast as they open: a wrong token, or silence (kept open)."""
    held: list[socket.socket] = []
    n = 0
    while not stop.is_set():
        try:
            sock = connect(path)
        except OSError:
            seen["connect_failed"] = seen.get("connect_failed", 0) + 1
            time.sleep(0.001)
            continue
        n += 1
        seen["connections"] = n
        if n % 2:
            try:
                hello(sock, "honest", "not-the-token")
            except OSError:
                pass
            sock.close()
        else:
            held.append(sock)
            if len(held) > 800:  # stay under the file descriptor limit; the oldest go
                held.pop(0).close()
    for sock in held:
        sock.close()


def attacker(kind: str, path: str, token: str, seconds: float) -> None:
    stop, seen = threading.Event(), {}
    attack = {"reader": attack_reader, "flood": attack_flood, "unauth": attack_unauth}[kind]
    thread = threading.Thread(target=attack, args=(path, token, stop, seen), daemon=True)
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(timeout=2)
    print(json.dumps(seen))


# ---------------------------------------------------------------- the run


def rss_kb(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    return 0


def attack_records(journal: Path, offset: int) -> int:
    """Journal records written since `offset` that are not the honest agent's own traffic."""
    with journal.open("rb") as file:
        file.seek(offset)
        rows = file.read().splitlines()
    return sum(1 for row in rows if b'"honest"' not in row or b'"message_rejected"' in row)


def me(token: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SD_BENCH_TOKEN": token}
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, env=env)


def figures(out: dict) -> dict:
    acquires = sorted(out["acquires"])
    return {
        "p50": statistics.median(acquires),
        "p99": acquires[min(len(acquires) - 1, int(len(acquires) * 0.99))],
        "max": acquires[-1],
        "pairs_s": out["pairs"] / out["seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--tcp", action="store_true", help="listen on loopback TCP instead of a Unix socket")
    parser.add_argument("--honest", metavar="SOCKET", help=argparse.SUPPRESS)
    parser.add_argument("--attack", nargs=2, metavar=("KIND", "SOCKET"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    token = os.environ.get("SD_BENCH_TOKEN", "")  # not an argument: a token may begin with "-"
    if args.honest:
        honest(args.honest, token, args.seconds)
        return
    if args.attack:
        attacker(*args.attack, token, args.seconds + 1.0)
        return
    run(args.seconds, args.tcp)


def run(seconds: float, tcp: bool) -> None:
    directory = Path(tempfile.mkdtemp(prefix="sd-attack-", dir="/tmp"))
    (directory / "plan.yaml").write_text(PLAN)
    journal = directory / "run.jsonl"
    listen = "tcp:127.0.0.1:0" if tcp else f"unix:{directory / 's' / 'deck.sock'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", str(directory / "plan.yaml"), "--listen", listen,
         "--headless", "--record", str(journal), "--workspace", str(directory / "ws")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=(directory / "serve.err").open("wb"),
    )
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in (directory / "serve.err").read_text():
            assert time.monotonic() < deadline and server.poll() is None, (directory / "serve.err").read_text()
            time.sleep(0.05)
        path = (directory / "serve.err").read_text().split("listening on ", 1)[1].split()[0]
        token = {a: (directory / "run.tokens" / f"{a}.token").read_text().strip() for a in ("honest", "hog", "flooder")}
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; {seconds:g} s a phase; {path.split(':')[0]}")
        print(f"{'phase':<10} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'pairs/s':>8} {'p50 x':>6} "
              f"{'max x':>6} {'records':>8} {'RSS +MB':>8}  attacker")
        base: dict | None = None
        for phase in ("unloaded", *ATTACKS):
            offset, rss = journal.stat().st_size, rss_kb(server.pid)
            attack = None
            if phase != "unloaded":
                agent = {"reader": "hog", "flood": "flooder", "unauth": "honest"}[phase]
                attack = me(token[agent], "--seconds", str(seconds), "--attack", phase, path)
                time.sleep(0.5)
            out = me(token["honest"], "--seconds", str(seconds), "--honest", path).communicate()[0]
            seen = json.loads(attack.communicate()[0] or "{}") if attack else {}
            time.sleep(0.5)
            row = figures(json.loads(out))
            base = base or row
            added = attack_records(journal, offset)
            grown = (rss_kb(server.pid) - rss) / 1024
            print(f"{phase:<10} {row['p50']:8.2f} {row['p99']:8.2f} {row['max']:8.2f} {row['pairs_s']:8.0f} "
                  f"{row['p50'] / base['p50']:6.2f} {row['max'] / base['max']:6.2f} {added:8d} {grown:8.1f}  {seen}")
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
