"""`serve --listen nats://` and `agent --connect nats://`: real processes through a real nats-server.

The seed's webrtc sample with every agent external, each one a `sprintdeck agent` process of its
own, talking to the manager only through NATS; a client that has the NATS account but the wrong
agent token is refused and the refusal journaled.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import nats
import pytest
from nats.js.errors import NotFoundError

from conftest import ROOT, write_plan
from engine.events import Event, EventType
from engine.journal import read_journal
from engine.reducer import fold
from test_watch_command import watch
from test_agent_lifecycle import SETTINGS, first_attempt_then_second, runner_of
from nats_server import NatsServer, nats_server  # noqa: F401 (a fixture)
from test_serve import GUARD, Proc, agent, finish_all, listening_on, records_of, run_dir, serve, wait_for  # noqa: F401 (run_dir is a fixture)

WEBRTC = ROOT / "sample_sprints/webrtc"


def external_webrtc(directory: Path) -> tuple[Path, list[str]]:
    """The webrtc sample with its agents external (so each runs in a process of its own)."""
    text = (WEBRTC / "plan.yaml").read_text()
    agents = re.findall(r"^  - id: (\S+)\n    kind: simulated", text, flags=re.M)
    (directory / "plan.yaml").write_text(text.replace("kind: simulated", "kind: external"))
    shutil.copytree(WEBRTC / "workspace", directory / "workspace")
    return directory / "plan.yaml", agents


def test_the_webrtc_sample_completes_with_every_agent_a_process_over_nats(run_dir: Path, nats_server: NatsServer) -> None:
    plan, agent_ids = external_webrtc(run_dir)
    assert len(agent_ids) == 4
    journal = run_dir / "run.jsonl"
    server = serve(plan, nats_server.url, run_dir, "--record", str(journal), "--workspace", str(run_dir / "ws"))
    agents: list[Proc] = []
    try:
        address = listening_on(server)
        assert address == f"{nats_server.url}/webrtc-signaling"  # the sprint names the subjects
        tokens = run_dir / "run.tokens"
        (run_dir / "wrong.token").write_text("not-the-token\n")
        intruder = Proc.start(["agent", "--connect", address, "--id", "backend", "--token-file",
                               str(run_dir / "wrong.token")], "intruder", run_dir).finish()
        agents = [agent(address, agent_id, tokens, run_dir, "--simulate") for agent_id in agent_ids]
        out = server.finish()
    finally:
        server.kill()
        done = finish_all(agents)
    assert intruder.returncode == 2, intruder.stderr
    assert "refused agent 'backend': payload.token: wrong token for agent 'backend'" in intruder.stderr
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    result = json.loads(out.stdout)
    assert {task["status"] for task in result["state"]["tasks"].values()} == {"completed"}
    assert {task["agent"] for task in result["state"]["tasks"].values()} <= set(agent_ids)
    for proc in done:
        assert proc.returncode == 0, proc.stderr
        assert "the sprint has finished" in proc.stderr and "Traceback" not in proc.stderr
    rejected = records_of(journal, EventType.MESSAGE_REJECTED)
    assert [(r["from"], r["field"], r["security"]) for r in rejected] == [("backend", "payload.token", True)]
    assert rejected[0]["transport"] == "nats:sprintdeck.webrtc-signaling.manager"
    _, records, _ = read_journal(journal)
    assert fold(Event.from_record(r) for r in records).model_dump(mode="json") == result["state"]
    raw = journal.read_text()
    for token_file in (run_dir / "run.tokens").iterdir():
        assert token_file.read_text().strip() not in raw, "a token reached the journal"


# ---------------------------------------------------------------- NATS credentials, passed through


def solo_plan(directory: Path) -> Path:
    write_plan(directory, {
        "sprint": "creds",
        "settings": {"heartbeat_interval": "100ms", "heartbeat_timeout": "20s"},
        "agents": [{"id": "solo", "kind": "external"}],
        "tasks": [{"id": "only", "command": "echo ran >> ran.txt", "resources": ["ran.txt"]}],
    })
    return directory / "plan.yaml"


def make_certificates(directory: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, with openssl."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=sprintdeck test CA")
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        (directory / f"{name}.ext").write_text(extension + "\n")
        run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")
    return {name: directory / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.mark.parametrize("scheme", ["user", "token", "tls"])
def test_nats_credentials_reach_the_server_and_wrong_ones_are_named(run_dir: Path, scheme: str) -> None:
    """serve and agent log in with the --nats-* options; without them the NATS server refuses
    them, and they say so (exit 2, no journal) instead of waiting."""
    if scheme == "user":
        server_args, ours = ["--user", "deck", "--pass", "s3cret"], ["--nats-user", "deck", "--nats-password", "s3cret"]
    elif scheme == "token":
        server_args, ours = ["--auth", "t0ken"], ["--nats-token", "t0ken"]
    else:
        certs = make_certificates(run_dir)
        server_args = ["--tlsverify", "--tlscert", str(certs["server.pem"]), "--tlskey", str(certs["server.key"]),
                       "--tlscacert", str(certs["ca.pem"])]
        ours = ["--nats-tls-ca", str(certs["ca.pem"]), "--nats-tls-cert", str(certs["client.pem"]),
                "--nats-tls-key", str(certs["client.key"])]
    store = run_dir / "nats"
    store.mkdir()
    nats = NatsServer(store, *server_args).start()
    plan, journal = solo_plan(run_dir), run_dir / "run.jsonl"
    try:
        refused = serve(plan, nats.url, run_dir, "--record", str(journal), name="refused").finish()
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        why = "certificate verify failed" if scheme == "tls" else "refused the connection: Authorization Violation"
        assert f"sprintdeck: --listen " in refused.stderr and why in refused.stderr, refused.stderr
        assert not journal.exists()
        server = serve(plan, nats.url, run_dir, "--record", str(journal), "--workspace", str(run_dir / "ws"), *ours)
        solo: Proc | None = None
        try:
            address = listening_on(server)
            stranger = agent(address, "solo", run_dir / "run.tokens", run_dir, "--give-up-after", "5").finish()
            assert stranger.returncode in (1, 2) and "Traceback" not in stranger.stderr, stranger.stderr
            assert f"NATS server at {nats.url}" in stranger.stderr and why in stranger.stderr, stranger.stderr
            solo = agent(address, "solo", run_dir / "run.tokens", run_dir, *ours)
            out = server.finish()
            done = solo.finish()
        finally:
            server.kill()
            if solo is not None:
                solo.kill()
    finally:
        nats.stop()
    assert out.returncode == 0, out.stderr
    assert done.returncode == 0, done.stderr
    assert json.loads(out.stdout)["state"]["tasks"]["only"]["status"] == "completed"
    assert (run_dir / "ws/ran.txt").read_text() == "ran\n"


def test_missing_nats_credential_files_are_named(run_dir: Path, nats_server: NatsServer) -> None:
    plan, journal = solo_plan(run_dir), run_dir / "run.jsonl"
    out = serve(plan, nats_server.url, run_dir, "--record", str(journal), "--nats-creds", str(run_dir / "none.creds")).finish()
    assert out.returncode == 2 and f"--nats-creds {run_dir}/none.creds: no such file" in out.stderr, out.stderr
    assert not journal.exists()
    (run_dir / "a.token").write_text("x\n")
    out = Proc.start(["agent", "--connect", f"{nats_server.url}/creds", "--id", "solo", "--token-file",
                      str(run_dir / "a.token"), "--nats-password", "p"], "agent", run_dir).finish()
    assert out.returncode == 2 and "--nats-password needs --nats-user" in out.stderr, out.stderr
    out = Proc.start(["agent", "--connect", nats_server.url, "--id", "solo", "--token-file",
                      str(run_dir / "a.token")], "agent2", run_dir).finish()
    assert out.returncode == 2 and "name the sprint as serve prints it, nats://HOST:PORT/SPRINT" in out.stderr


def test_a_nats_server_without_jetstream_is_named(run_dir: Path) -> None:
    store = run_dir / "nats"
    store.mkdir()
    nats = NatsServer(store, jetstream=False).start()
    try:
        out = serve(solo_plan(run_dir), nats.url, run_dir, "--record", str(run_dir / "run.jsonl")).finish()
    finally:
        nats.stop()
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"the NATS server at {nats.url} has no JetStream (start it with -js)" in out.stderr
    assert not (run_dir / "run.jsonl").exists()


# ---------------------------------------------------------------- the NATS server dies mid-sprint


def test_kill_9_of_nats_server_mid_sprint_loses_nothing_and_applies_nothing_twice(run_dir: Path) -> None:
    """JetStream keeps what was acknowledged on disk; serve and the agents reconnect to the server
    restarted on the same port and store, messages not acknowledged come again (once applied).  A
    watcher reconnects too, asks for a fresh snapshot (what was published meanwhile is lost) and
    ends with serve's final state."""
    plan, agent_ids = external_webrtc(run_dir)
    store = run_dir / "nats"
    store.mkdir()
    nats = NatsServer(store).start()
    journal = run_dir / "run.jsonl"
    server = serve(plan, nats.url, run_dir, "--record", str(journal), "--workspace", str(run_dir / "ws"),
                   "--speed", "4")
    agents: list[Proc] = []
    try:
        address = listening_on(server)
        agents = [agent(address, agent_id, run_dir / "run.tokens", run_dir, "--simulate") for agent_id in agent_ids]
        watcher = watch(address, run_dir, "--json")
        wait_for(lambda: journal.exists() and journal.read_text().count('"task_completed"') >= 2,
                 "two tasks completed", server.process)
        nats.kill()
        time.sleep(0.5)  # the sprint goes on inside serve and the agents; messages wait
        nats.start()  # the same port and store directory
        out = server.finish()
    finally:
        server.kill()
        done = finish_all(agents)
        nats.stop()
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    for proc in done:
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
    assert any("NATS server" in proc.stderr for proc in done), "no agent noticed the server going away"
    result = json.loads(out.stdout)
    assert {task["status"] for task in result["state"]["tasks"].values()} == {"completed"}
    _, records, _ = read_journal(journal)
    completed = [r["data"]["taskId"] for r in records if r["type"] == EventType.TASK_COMPLETED]
    assert sorted(completed) == sorted(result["state"]["tasks"]), "a task completed twice, or never"
    assert records_of(journal, EventType.MESSAGE_REJECTED) == []  # no duplicate reached the manager's checks
    assert fold(Event.from_record(r) for r in records).model_dump(mode="json") == result["state"]
    watched = watcher.finish()
    assert watched.returncode == 0 and "Traceback" not in watched.stderr, watched.stderr
    assert "resynchronised" in watched.stderr  # it noticed what it missed
    assert json.loads(watched.stdout) == result


def test_spawn_over_nats_hands_the_credentials_on_but_not_on_the_command_line(run_dir: Path) -> None:
    """serve --spawn's agents log in as serve did; the password travels in their environment
    (SPRINTDECK_NATS_PASSWORD), never in a command line that /proc shows every user."""
    store = run_dir / "nats"
    store.mkdir()
    nats = NatsServer(store, "--user", "deck", "--pass", "s3cret").start()
    plan, journal = solo_plan(run_dir), run_dir / "run.jsonl"
    try:
        server = Proc.start(["serve", str(plan), "--listen", nats.url, "--headless", "--json", "--record", str(journal),
                             "--workspace", str(run_dir / "ws"), "--spawn", "--nats-user", "deck"], "serve", run_dir,
                            env={"SPRINTDECK_NATS_PASSWORD": "s3cret"})
        try:
            out = server.finish()
        finally:
            server.kill()
    finally:
        nats.stop()
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"]["tasks"]["only"]["status"] == "completed"
    assert "s3cret" not in out.stderr
    restarted = records_of(journal, EventType.AGENT_RESTARTED)
    assert restarted == [], restarted  # the spawned agent got in the first time


def test_the_printed_agent_command_names_the_secret_variable_not_the_secret(run_dir: Path) -> None:
    store = run_dir / "nats"
    store.mkdir()
    nats = NatsServer(store, "--auth", "t0ken").start()
    try:
        server = serve(solo_plan(run_dir), nats.url, run_dir, "--record", str(run_dir / "run.jsonl"),
                       "--workspace", str(run_dir / "ws"), "--nats-token", "t0ken")
        try:
            listening_on(server)
            wait_for(lambda: "agent --connect" in server.stderr(), "the agent command", server.process)
            printed = next(line for line in server.stderr().splitlines() if "agent --connect" in line)
            watching = next(line for line in server.stderr().splitlines() if "watch it with" in line)
        finally:
            server.kill()
    finally:
        nats.stop()
    assert printed.startswith("sprintdeck: SPRINTDECK_NATS_TOKEN=... ") and "t0ken" not in printed
    assert watching.startswith(f"sprintdeck: watch it with: SPRINTDECK_NATS_TOKEN=... sprintdeck watch {nats.url}/creds ")
    assert "t0ken" not in watching


# ---------------------------------------------------------------- one manager per sprint on a NATS server


def test_a_second_serve_of_the_same_sprint_on_one_nats_server_is_refused_naming_it(
        run_dir: Path, nats_server: NatsServer) -> None:
    """Both would use the same subjects (and the second would empty the first one's stream): the
    second exits 2 naming the sprint and what to do, with no journal, and the first goes on."""
    plan, journal = solo_plan(run_dir), run_dir / "run.jsonl"
    first = serve(plan, nats_server.url, run_dir, "--record", str(journal), "--workspace", str(run_dir / "ws"))
    solo: Proc | None = None
    try:
        address = listening_on(first)
        asyncio.run(asyncio.wait_for(_until_consumed(nats_server.url, "creds"), GUARD))
        second = serve(plan, nats_server.url, run_dir, "--record", str(run_dir / "second.jsonl"), name="second").finish()
        assert second.returncode == 2 and "Traceback" not in second.stderr, second.stderr
        assert (f"sprint 'creds' is already served on the NATS server at {nats_server.url} by another serve: stop that "
                f"one first, or serve this one under another name (--listen {nats_server.url}/OTHER)") in second.stderr
        assert not (run_dir / "second.jsonl").exists()
        solo = agent(address, "solo", run_dir / "run.tokens", run_dir)
        out = first.finish()
        assert solo.finish().returncode == 0
    finally:
        first.kill()
        if solo is not None:
            solo.kill()
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["state"]["tasks"]["only"]["status"] == "completed"


async def _until_consumed(url: str, sprint: str) -> None:
    """Until a manager consumes the sprint's subject (serve prints its address a moment before)."""
    nc = await nats.connect(url)
    try:
        while True:
            try:
                if (await nc.jetstream().consumer_info(f"SPRINTDECK_{sprint}", "manager")).push_bound:
                    return
            except NotFoundError:
                pass
            await asyncio.sleep(0.05)
    finally:
        await nc.close()


# ---------------------------------------------------------------- an agent's process dies


def test_kill_9_of_an_agent_over_nats_is_a_disconnection_not_a_heartbeat_timeout(run_dir: Path, nats_server: NatsServer) -> None:
    """The NATS server unbinds the killed agent's consumer at once: the manager declares it
    disconnected, then dead after disconnect_grace (1s), long before its heartbeats (30s) would
    have timed out, and its task moves on to the other agent."""
    write_plan(run_dir, {  # the killed agent's command goes on (no pid over NATS): the second attempt writes nothing
        "sprint": "presence",
        "settings": {**SETTINGS, "heartbeat_timeout": "30s", "disconnect_grace": "1s"},
        "agents": [{"id": agent_id, "kind": "external", "capabilities": ["work"]} for agent_id in ("a", "b")],
        "tasks": [{"id": "job", "requires": ["work"], "resources": ["first.done"],
                   "command": first_attempt_then_second("sleep 120", "echo second")}],
    })
    plan = run_dir / "plan.yaml"
    journal, workspace = run_dir / "run.jsonl", run_dir / "ws"
    server = serve(plan, nats_server.url, run_dir, "--record", str(journal), "--workspace", str(workspace))
    agents: dict[str, Proc] = {}
    try:
        address = listening_on(server)
        agents = {agent_id: agent(address, agent_id, run_dir / "run.tokens", run_dir) for agent_id in ("a", "b")}
        wait_for(lambda: (workspace / "first.done").exists(), "the first attempt's command", server.process)
        victim = runner_of(journal, 1)
        agents[victim].process.send_signal(signal.SIGKILL)
        agents[victim].process.wait()
        result = server.finish()
    finally:
        server.kill()
        finish_all(list(agents.values()))
    assert result.returncode == 0, result.stderr
    [death] = records_of(journal, "agent_dead")
    assert death["agentId"] == victim
    assert death["reason"] == "connection closed and not back within 1s (disconnect_grace)"
    disconnected = [r for r in records_of(journal, "agent_status") if r.get("reason") == "disconnected"]
    assert [r["agentId"] for r in disconnected] == [victim]
    assert runner_of(journal, 2) == ("b" if victim == "a" else "a")
    assert json.loads(result.stdout)["state"]["tasks"]["job"]["status"] == "completed"
