"""`serve --listen nats://` and `agent --connect nats://`: real processes through a real nats-server.

The seed's webrtc sample with every agent external, each one a `sprintdeck agent` process of its
own, talking to the manager only through NATS; a client that has the NATS account but the wrong
agent token is refused and the refusal journaled.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from conftest import ROOT
from engine.events import Event, EventType
from engine.journal import read_journal
from engine.reducer import fold
from nats_server import NatsServer, nats_server  # noqa: F401 (a fixture)
from test_serve import Proc, agent, finish_all, listening_on, records_of, run_dir, serve  # noqa: F401 (run_dir is a fixture)

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
