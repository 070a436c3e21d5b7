"""Agent processes' lifecycle, with real processes: `serve`, `sprintdeck agent`, kill -9, SIGSTOP.

* a killed agent's command dies with it (grandchildren of `sh -c` included) and writes nothing
  later, and its work moves on after the disconnect grace, not the heartbeat timeout;
* a stopped agent's command that writes under the new holder's lock is a conflict naming the
  superseded attempt, and the agent kills that command when it resumes, before anything else;
* `serve --spawn` starts the external agents and restarts one that dies (`agent_restarted`);
* a task whose agents keep dying under it fails with the reason after `max_task_deaths`.

Waits are on what the processes print, journal or leave on disk; nothing asserts a time.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from conftest import write_plan

from engine.agents.remote import whole_lines_on_stderr
from test_serve import Proc, agent, finish_all, listening_on, records_of, run_dir, serve, wait_for  # noqa: F401

SETTINGS = {"heartbeat_interval": "100ms", "heartbeat_timeout": "1s", "lock_ttl": "5s", "lock_delay": "200ms",
            "disconnect_grace": "300ms", "max_retries": 0}


def two_agent_plan(directory: Path, command: str, **settings: object) -> Path:
    """Agents a and b can both do the one task, which locks data.txt (and its marker) for writing."""
    write_plan(directory, {
        "sprint": "lifecycle",
        "settings": {**SETTINGS, **settings},
        "agents": [{"id": agent_id, "kind": "external", "capabilities": ["work"]} for agent_id in ("a", "b")],
        "tasks": [{"id": "job", "requires": ["work"], "command": command, "resources": ["data.txt", "first.done"]}],
    })
    return directory / "plan.yaml"


def first_attempt_then_second(first: str, second: str) -> str:
    """A command whose first attempt does `first` and any later one `second` (a marker file tells)."""
    return f"if [ -e first.done ]; then {second}; else touch first.done; {first}; fi"


def processes_with(needle: str, *, exact: bool = True) -> list[int]:
    """Live processes whose command line is `needle` (or contains it, not `exact`)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if (command == needle if exact else needle in command) and state != "Z":
            found.append(int(entry.name))
    return found


def runner_of(journal: Path, attempt: int) -> str:
    assigned = [r for r in records_of(journal, "task_assigned") if r["attempt"] == attempt]
    return assigned[0]["agents"][0] if assigned else ""


def start_served(directory: Path, plan: Path, *extra: str) -> tuple[Proc, Path, Path]:
    journal, workspace = directory / "run.jsonl", directory / "ws"
    server = serve(plan, f"unix:{directory}/s.sock", directory, "--record", str(journal),
                   "--workspace", str(workspace), *extra)
    return server, journal, workspace


def start_pair(directory: Path, plan: Path) -> tuple[Proc, dict[str, Proc], Path, Path]:
    server, journal, workspace = start_served(directory, plan)
    address = listening_on(server)
    agents = {agent_id: agent(address, agent_id, directory / "run.tokens", directory) for agent_id in ("a", "b")}
    return server, agents, journal, workspace


def test_kill_9_of_an_agent_kills_its_command_tree_and_its_task_moves_on(run_dir: Path) -> None:
    marker = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"  # a sleep of its own, to find its processes
    late = "(sleep 1.5; echo orphan > late.txt) &"
    command = first_attempt_then_second(f"{late} sleep {marker}", "echo second > data.txt")
    plan = two_agent_plan(run_dir, command)
    server, agents, journal, workspace = start_pair(run_dir, plan)
    try:
        wait_for(lambda: (workspace / "first.done").exists() and bool(processes_with(f"sleep {marker}")),
                 "the first attempt's command", server.process)
        victim = runner_of(journal, 1)
        agents[victim].process.send_signal(signal.SIGKILL)
        agents[victim].process.wait()
        wait_for(lambda: not processes_with(f"sleep {marker}"), "the killed agent's command to die")
        result = server.finish()
    finally:
        server.kill()
        finish_all(list(agents.values()))
    assert result.returncode == 0, result.stderr
    deaths = records_of(journal, "agent_dead")
    assert [d["agentId"] for d in deaths] == [victim]
    assert "connection closed and not back within 0.3s (disconnect_grace)" in deaths[0]["reason"]
    other = "b" if victim == "a" else "a"
    assert runner_of(journal, 2) == other
    assert (workspace / "data.txt").read_text() == "second\n"
    time.sleep(2.0)  # past the moment the killed attempt's background job would have written
    assert not (workspace / "late.txt").exists()
    assert not processes_with(f"sleep {marker}")
    assert not [c for c in records_of(journal, "file_changed") if c.get("conflict")]


def test_a_stopped_agents_command_writing_under_the_new_holders_lock_is_a_conflict_naming_the_old_attempt(
    run_dir: Path,
) -> None:
    marker = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"
    first = f"(sleep 2.5; echo stale > data.txt) & sleep {marker}"
    command = first_attempt_then_second(first, "while [ ! -e go ]; do sleep 0.05; done; echo second > data.txt")
    plan = two_agent_plan(run_dir, command)
    server, agents, journal, workspace = start_pair(run_dir, plan)
    try:
        wait_for(lambda: (workspace / "first.done").exists(), "the first attempt's command", server.process)
        victim = runner_of(journal, 1)
        agents[victim].process.send_signal(signal.SIGSTOP)
        wait_for(lambda: [r for r in records_of(journal, "file_changed") if r["path"] == "data.txt"],
                 "the stale write to be judged", server.process)
        stale = [r for r in records_of(journal, "file_changed") if r["path"] == "data.txt"][0]
        agents[victim].process.send_signal(signal.SIGCONT)
        wait_for(lambda: not processes_with(f"sleep {marker}"), "the resumed agent to kill its superseded command")
        # The resumed agent's first word reaches the manager (a dead agent heard again is ready).
        wait_for(lambda: _back(journal, victim), "the resumed agent to be heard from", server.process)
        (workspace / "go").touch()  # now the new holder writes
        result = server.finish()
    finally:
        for proc in agents.values():
            if proc.process.poll() is None:
                proc.process.send_signal(signal.SIGCONT)
        server.kill()
        finish_all(list(agents.values()))
    other = "b" if victim == "a" else "a"
    assert runner_of(journal, 2) == other
    conflict = stale["conflict"]
    assert stale["status"] == "conflict" and stale["modifiedBy"] is None
    assert conflict["reason"] == "superseded_holder"
    assert f"{victim}'s write lock" in conflict["detail"] and "attempt 1 of task job" in conflict["detail"]
    assert f"{other} holds it now" in conflict["detail"]
    assert conflict["holders"][0]["agentId"] == victim and conflict["holders"][0]["taskId"] == "job"
    later = [r for r in records_of(journal, "file_changed") if r["path"] == "data.txt"][-1]
    assert later["modifiedBy"] == other and later["status"] == "modified"  # credited once the old one is over


def test_serve_spawn_starts_the_agents_and_restarts_one_killed(run_dir: Path) -> None:
    marker = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"
    command = first_attempt_then_second(f"sleep {marker}", "echo second > data.txt")
    plan = two_agent_plan(run_dir, command)
    server, journal, workspace = start_served(run_dir, plan, "--spawn")
    try:
        wait_for(lambda: bool(processes_with(f"sleep {marker}")), "the first attempt's command", server.process)
        victim = runner_of(journal, 1)
        [pid] = [p for p in processes_with(f"--id {victim} ", exact=False) if _parent(p) == server.process.pid]
        os.kill(pid, signal.SIGKILL)
        result = server.finish()
    finally:
        server.kill()
    assert result.returncode == 0, result.stderr
    [restart] = records_of(journal, "agent_restarted")
    assert restart["agentId"] == victim and restart["restart"] == 1 and restart["reason"] == "killed by SIGKILL"
    assert restart["pid"] != pid
    assert (workspace / "data.txt").read_text() == "second\n"
    assert not processes_with("--token-file " + str(run_dir), exact=False)  # the spawned agents ended with the sprint


def test_spawned_agents_lines_stay_whole_on_serves_stderr(run_dir: Path) -> None:
    """Four agents share serve's stderr and say the sprint finished at once: each line stays whole."""
    plan = Path(__file__).parent.parent / "sample_sprints" / "remote" / "plan.yaml"
    server = serve(plan, f"unix:{run_dir}/s.sock", run_dir, "--record", str(run_dir / "run.jsonl"), "--spawn")
    try:
        result = server.finish()
    finally:
        server.kill()
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "sprintdeck agent " in line]
    finished = [line for line in lines if "the sprint has finished" in line]
    assert len(finished) == 4, lines
    assert all(line.startswith("sprintdeck agent ") and line.count("sprintdeck agent ") == 1 for line in lines), lines


class _Writes(io.RawIOBase):
    """A raw stream that remembers each write the OS would have been handed."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[no-untyped-def, override]
        self.writes.append(bytes(data))
        return len(data)


def test_an_agent_process_hands_each_stderr_line_to_the_os_in_one_write(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    raw = _Writes()
    # Python's stderr when it is not a terminal: unbuffered, writing through (`print` = two writes).
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(raw, encoding="utf-8", write_through=True))  # type: ignore[arg-type]
    whole_lines_on_stderr()
    print("sprintdeck agent a: the sprint has finished", file=sys.stderr)
    print("sprintdeck agent a: bye", file=sys.stderr)
    assert raw.writes == [b"sprintdeck agent a: the sprint has finished\n", b"sprintdeck agent a: bye\n"]


def test_a_task_whose_agent_keeps_dying_fails_naming_the_deaths(run_dir: Path) -> None:
    plan = two_agent_plan(run_dir, "kill -9 $PPID; sleep 30", max_task_deaths=2)
    server, journal, _ = start_served(run_dir, plan, "--spawn")
    try:
        result = server.finish()
    finally:
        server.kill()
    assert result.returncode == 1
    [failed] = records_of(journal, "task_failed")
    assert failed["error"] == "agent died 2 times running it (max_task_deaths: 2)"
    assert len(records_of(journal, "agent_dead")) == 2
    assert len(records_of(journal, "agent_restarted")) >= 1


def _back(journal: Path, agent_id: str) -> bool:
    """Whether the manager heard from `agent_id` after its death with more than a handshake (the
    word that ends its paths' contest: an agent kills superseded commands before it)."""
    from engine.journal import read_journal

    _, records, _ = read_journal(journal)
    dead = [r["seq"] for r in records if r["type"] == "agent_dead" and r["data"].get("agentId") == agent_id]
    return bool(dead) and any(
        r["type"] == "message" and r["seq"] > dead[-1] and r["data"]["message"].get("from") == agent_id
        and r["data"]["message"].get("type") != "agent_ready"
        for r in records
    )


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[1])
    except OSError:
        return 0


class CuttableProxy:
    """A loopback TCP proxy in front of the server whose connections the test can cut (a network
    failure the agent survives), refusing new ones until `mend`."""

    def __init__(self, target: str) -> None:
        import socket
        import threading

        host, port = target.removeprefix("tcp:").rsplit(":", 1)
        self._target = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp:127.0.0.1:{self._listener.getsockname()[1]}"
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._open = True
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._open:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source, sink) -> None:  # noqa: ANN001
        import socket

        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):  # shut down before closing: a close while the other thread
            try:                      # still reads the socket would send no FIN
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def cut(self) -> None:
        import socket

        self._open = False
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            for end in (upstream, client):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def mend(self) -> None:
        self._open = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


def test_an_agent_back_after_it_was_declared_dead_kills_its_superseded_command_first(run_dir: Path) -> None:
    marker = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"
    # The signal file is outside the workspace: a file the test wrote there unlocked would be left
    # in conflict, and a conflict left unresolved makes `serve` exit 1.
    go = run_dir / "go"
    command = first_attempt_then_second(f"sleep {marker}", f"while [ ! -e {go} ]; do sleep 0.05; done; echo second > data.txt")
    plan = two_agent_plan(run_dir, command, heartbeat_timeout="5s")  # only the closed connection kills here
    journal, workspace = run_dir / "run.jsonl", run_dir / "ws"
    server = serve(plan, "tcp:127.0.0.1:0", run_dir, "--record", str(journal), "--workspace", str(workspace))
    proxies: list[CuttableProxy] = []
    agents: dict[str, Proc] = {}
    try:
        address = listening_on(server)
        proxies = [CuttableProxy(address) for _ in ("a", "b")]
        agents = {agent_id: agent(proxy.address, agent_id, run_dir / "run.tokens", run_dir)
                  for agent_id, proxy in zip(("a", "b"), proxies)}
        wait_for(lambda: bool(processes_with(f"sleep {marker}")), "the first attempt's command", server.process)
        victim = runner_of(journal, 1)
        proxy = proxies[0 if victim == "a" else 1]
        proxy.cut()  # the network fails: the victim's process lives on, its command too
        wait_for(lambda: [d for d in records_of(journal, "agent_dead") if d["agentId"] == victim],
                 "the victim declared dead after disconnect_grace", server.process)
        assert processes_with(f"sleep {marker}")  # still running while the agent is cut off
        proxy.mend()
        wait_for(lambda: "declared dead meanwhile: stopping job" in agents[victim].stderr(),
                 "the victim to learn of its death", agents[victim].process)
        wait_for(lambda: not processes_with(f"sleep {marker}"), "its superseded command to die")
        wait_for(lambda: _back(journal, victim), "the victim heard from again", server.process)
        go.touch()
        result = server.finish()
    finally:
        server.kill()
        finish_all(list(agents.values()))
        for proxy in proxies:
            proxy.close()
    assert result.returncode == 0, result.stderr
    [death] = records_of(journal, "agent_dead")
    assert death["reason"] == "connection closed and not back within 0.3s (disconnect_grace)"
    other = "b" if victim == "a" else "a"
    [change] = [r for r in records_of(journal, "file_changed") if r["path"] == "data.txt"]
    assert change["modifiedBy"] == other and change["status"] == "modified"


def test_kill_9_of_run_takes_its_embedded_shell_agents_commands_with_it(run_dir: Path) -> None:
    marker = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"
    write_plan(run_dir, {
        "sprint": "embedded",
        "agents": [{"id": "sh", "kind": "shell"}],
        "tasks": [{"id": "job", "command": f"(sleep 1.5; echo orphan > late.txt) & sleep {marker}"}],
    })
    workspace = run_dir / "ws"
    run = Proc.start(["run", str(run_dir / "plan.yaml"), "--headless", "--workspace", str(workspace),
                      "--record", str(run_dir / "run.jsonl")], "run", run_dir)
    try:
        wait_for(lambda: bool(processes_with(f"sleep {marker}")), "the command", run.process)
        run.process.send_signal(signal.SIGKILL)
        run.process.wait()
        wait_for(lambda: not processes_with(f"sleep {marker}"), "the command to die with `run`")
    finally:
        run.kill()
    time.sleep(2.0)  # past the moment the background job would have written
    assert not (workspace / "late.txt").exists()
