"""`serve --token-file` and the agents that read it (DESIGN §9): real processes, real sockets.

serve creates the one JSON file of tokens (0600, a token per external agent) when it is absent and
reuses it when it is there; agents join pointed at it with `--token-file` or
`SPRINTDECK_TOKEN_FILE`, each picking its own id's token; a file others may read, or one that is
not an object of tokens, is refused with exit 2 and a sentence naming it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from engine.transports.tokens import TokenError, read_token, token_source
from test_serve import AGENTS, ENV, GUARD, SPRINTDECK, Proc, finish_all, listening_on, plan_for, run_dir, serve  # noqa: F401


def run_sprint_with_token_file(case: Path, tokens: Path, serve_args: list[str]) -> tuple[subprocess.CompletedProcess[str], str]:
    """A whole sprint: builder reads the file by --token-file, tester by SPRINTDECK_TOKEN_FILE."""
    server = serve(case.parent / "plan.yaml", f"unix:{case}/s/d.sock", case, *serve_args, "--token-file", str(tokens))
    agents: list[Proc] = []
    try:
        address = listening_on(server)
        join = ["agent", "--connect", address, "--id"]
        agents = [
            Proc.start([*join, "builder", "--token-file", str(tokens)], "builder", case),
            Proc.start([*join, "tester"], "tester", case, env={"SPRINTDECK_TOKEN_FILE": str(tokens)}),
            Proc.start([*join, "writer", "--token-file", str(tokens), "--simulate"], "writer", case),
        ]
        out = server.finish()
    finally:
        server.kill()
        done = finish_all(agents)
    assert out.returncode == 0, out.stderr
    assert all(task["status"] == "completed" for task in json.loads(out.stdout)["state"]["tasks"].values())
    for proc in done:
        assert proc.returncode == 0 and "the sprint has finished" in proc.stderr, proc.stderr
    assert not (case / "run.tokens").exists()  # no directory of token files beside the journal
    return out, address


def new_case(run_dir: Path, name: str) -> Path:
    case = run_dir / name
    case.mkdir()
    return case


def recording_in(case: Path) -> list[str]:
    return ["--record", str(case / "run.jsonl"), "--workspace", str(case / "ws")]


def test_serve_creates_the_token_file_then_a_second_serve_reuses_it(run_dir: Path) -> None:
    plan_for(run_dir, pause="0")
    tokens = run_dir / "tokens.json"
    first = new_case(run_dir, "first")
    out, address = run_sprint_with_token_file(first, tokens, recording_in(first))
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    created = json.loads(tokens.read_text())
    assert sorted(created) == sorted(AGENTS) and len(set(created.values())) == len(AGENTS)
    assert all(len(token) >= 43 for token in created.values())  # secrets.token_urlsafe(32)
    assert f"sprintdeck: agent tokens in {tokens}\n" in out.stderr
    program = Path(SPRINTDECK[0]).parent / "sprintdeck"  # the virtual environment's, by absolute path
    assert f"sprintdeck: {program} agent --connect {address} --id tester --token-file {tokens}\n" in out.stderr

    before = tokens.read_bytes()
    second = new_case(run_dir, "second")
    run_sprint_with_token_file(second, tokens, recording_in(second))
    assert tokens.read_bytes() == before and stat.S_IMODE(tokens.stat().st_mode) == 0o600


def test_serve_resume_reuses_the_token_file(run_dir: Path) -> None:
    plan_for(run_dir, pause="0")
    tokens, case = run_dir / "tokens.json", new_case(run_dir, "crashed")
    crashed = serve(run_dir / "plan.yaml", f"unix:{case}/s/d.sock", case, *recording_in(case),
                    "--token-file", str(tokens), name="crashed")
    try:
        listening_on(crashed)
    finally:
        crashed.process.send_signal(signal.SIGKILL)
        crashed.process.wait(timeout=GUARD)
    before = tokens.read_bytes()
    out, _ = run_sprint_with_token_file(case, tokens, ["--resume", str(case / "run.jsonl")])
    assert "resuming" in out.stderr and tokens.read_bytes() == before


@pytest.mark.parametrize(
    ("content", "mode", "words"),
    [
        ('{"builder": "a", "tester": "b", "writer": "c"}', 0o644, "has mode 0644, which lets group or others read"),
        ('{"builder": "a", "tester": "b", "writer": "c"}', 0o620, "has mode 0620"),
        ('{"builder": "a",\n "tester": ', 0o600, "is not valid JSON: Expecting value at line 2, column 12"),
        ('["a", "b"]', 0o600, "should hold one JSON object"),
        ('{"builder": "a", "tester": 7, "writer": "c"}', 0o600, "the token for 'tester' should be a non-empty string"),
        ('{"builder": "a", "writer": "c"}', 0o600, "has no token for agent 'tester'"),
    ],
)
def test_serve_refuses_a_token_file_others_may_read_or_that_is_not_an_object_of_tokens(
    run_dir: Path, content: str, mode: int, words: str
) -> None:
    plan = plan_for(run_dir)
    tokens, journal = run_dir / "tokens.json", run_dir / "run.jsonl"
    tokens.write_text(content)
    tokens.chmod(mode)
    out = subprocess.run(
        [*SPRINTDECK, "serve", str(plan), "--listen", f"unix:{run_dir}/d.sock", "--headless",
         "--record", str(journal), "--token-file", str(tokens)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=GUARD,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"token file {tokens} {words}" in out.stderr or f"token file {tokens}: {words}" in out.stderr, out.stderr
    if mode != 0o600:
        assert f"run chmod 600 {tokens}" in out.stderr
    assert not journal.exists() and not (run_dir / "d.sock").exists()
    assert tokens.read_text() == content  # never rewritten


def test_an_agent_whose_id_is_not_in_the_file_is_refused_naming_the_file_and_the_id(run_dir: Path) -> None:
    tokens = run_dir / "tokens.json"
    tokens.write_text('{"builder": "a"}')
    agent = [*SPRINTDECK, "agent", "--connect", f"unix:{run_dir}/d.sock", "--id", "tester"]
    cases = [
        ([*agent, "--token-file", str(tokens)], {}, f"--token-file: token file {tokens} has no token for agent 'tester'"),
        (agent, {"SPRINTDECK_TOKEN_FILE": str(tokens)}, f"SPRINTDECK_TOKEN_FILE: token file {tokens} has no token for agent 'tester'"),
        (agent, {"SPRINTDECK_TOKEN_FILE": str(run_dir / "none.json")}, f"token file {run_dir}/none.json does not exist"),
        (agent, {}, "no token: pass --token-file F, or set SPRINTDECK_TOKEN or SPRINTDECK_TOKEN_FILE"),
    ]
    for args, env, words in cases:
        out = subprocess.run(args, cwd=ROOT, env={**ENV, **env}, capture_output=True, text=True, timeout=GUARD)
        assert out.returncode == 2 and words in out.stderr and "Traceback" not in out.stderr, out.stderr


# ---------------------------------------------------------------- reading, in this process


def test_read_token_takes_a_one_token_file_or_its_own_id_from_an_object(tmp_path: Path) -> None:
    one, many = tmp_path / "a.token", tmp_path / "tokens.json"
    one.write_text("  secret-a\n")
    many.write_text('{"a": "token-a", "b": "token-b"}\n')
    assert read_token(one, "whoever") == "secret-a"
    assert (read_token(many, "a"), read_token(many, "b")) == ("token-a", "token-b")
    with pytest.raises(TokenError, match=f"token file {many} has no token for agent 'c'"):
        read_token(many, "c")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(TokenError, match="is empty"):
        read_token(tmp_path / "empty", "a")


def test_a_token_file_option_comes_first_then_the_token_then_the_token_file_variable(tmp_path: Path) -> None:
    one, many = tmp_path / "a.token", tmp_path / "tokens.json"
    one.write_text("from-option\n")
    many.write_text('{"a": "from-variable-file"}')
    both = {"SPRINTDECK_TOKEN": "from-variable", "SPRINTDECK_TOKEN_FILE": str(many)}
    assert token_source("a", str(one), both)() == "from-option"
    assert token_source("a", None, both)() == "from-variable"
    assert token_source("a", None, {"SPRINTDECK_TOKEN_FILE": str(many)})() == "from-variable-file"
    reread = token_source("a", str(many), {})
    many.write_text('{"a": "rewritten"}')
    assert reread() == "rewritten"  # serve may have written a new file meanwhile
    os.remove(many)
    assert reread() == "rewritten"  # a file that has gone keeps the token that worked
