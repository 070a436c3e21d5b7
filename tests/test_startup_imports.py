"""What each quick command imports, in a fresh interpreter: start-up is paid on every invocation.

Budgets are lists of what may be imported: a change that pulls the engine's message classes,
networkx or textual into `validate` (or anything beyond argparse into `--help`) fails here, before
it shows as a slower command in `benchmarks/bench_startup.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE = """
import contextlib, io, json, sys
before = set(sys.modules)
sys.argv = ["sprintdeck", *sys.argv[1:]]
from app.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main()
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"code": code, "modules": sorted(set(sys.modules) - before)}))
"""
HEAVY = {"networkx", "textual", "rich", "asyncio", "xxhash", "watchfiles", "mcp", "pydantic", "yaml"}
VALIDATE_ENGINE = {
    "engine", "engine.collector", "engine.dag", "engine.identifiers", "engine.marked_yaml", "engine.plan", "engine.plan_checks",
    "engine.plan_problems", "engine.plan_schema", "engine.plan_specs", "engine.plan_values", "engine.resources", "engine.vocabulary",
}


def imported_by(*args: str) -> tuple[int, set[str]]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    result = json.loads(out.stdout)
    return result["code"], set(result["modules"])


def roots(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


def test_help_imports_argparse_and_the_cli_only() -> None:
    code, modules = imported_by("--help")
    assert code == 0
    assert {m for m in modules if m.startswith(("engine", "app", "widgets"))} == {"app", "app.cli"}
    assert not roots(modules) & HEAVY


def test_validate_imports_the_plan_checks_and_nothing_of_the_running_engine() -> None:
    code, modules = imported_by("validate", str(ROOT / "sample_sprints/webrtc/plan.yaml"))
    assert code == 0
    engine = {m for m in modules if m.startswith("engine")}
    assert engine <= VALIDATE_ENGINE, f"validate imports more of the engine: {sorted(engine - VALIDATE_ENGINE)}"
    assert not roots(modules) & (HEAVY - {"yaml"})  # the plan's reader only: its parts are read without pydantic
    assert not any(m.startswith(("widgets", "app.dashboard", "textual")) for m in modules)


def test_a_bad_plan_is_reported_within_the_same_budget(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text("sprint: s\nagents: [{id: a}]\ntasks: [{id: x, depends_on: [y]}, {id: y, depends_on: [x]}]\n")
    code, modules = imported_by("validate", str(plan))
    assert code == 2
    assert {m for m in modules if m.startswith("engine")} <= VALIDATE_ENGINE
    assert "networkx" not in roots(modules)


def test_a_headless_run_imports_neither_the_dashboard_nor_networkx(tmp_path: Path) -> None:
    # networkx is for exports.  The deadlock check, which runs as soon as a lock has to wait (the
    # webrtc sample queues two in its first second), walks plain dicts: networkx cost the
    # dashboard's first paint 100 ms.
    code, modules = imported_by("run", str(ROOT / "sample_sprints/webrtc/plan.yaml"), "--headless", "--speed", "100",
                                "--record", str(tmp_path / "j.jsonl"), "--workspace", str(tmp_path / "ws"))
    assert code == 0
    assert '"type":"lock_queued"' in (tmp_path / "j.jsonl").read_text()  # the check ran
    assert not roots(modules) & {"networkx", "textual", "nats", "aiohttp"}
    assert not any(m.startswith(("widgets", "app.dashboard")) for m in modules)


def test_the_dashboard_imports_neither_networkx_nor_nats() -> None:
    # The Tasks pane marks the critical path and a task's neighbours from plain dicts: networkx
    # cost the dashboard's first paint 60 ms (benchmarks/bench_first_paint.py); nats-py, which
    # brings aiohttp, cost it 300 ms although only `serve --listen nats://` uses it.
    probe = ("import sys, app.commands.run, app.dashboard, app.replay_dashboard; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'networkx', 'nats', 'aiohttp'}))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


FIRST_FRAME_PROBE = """
import json, sys
from textual.app import App
from app.cli import main
from app.dashboard import SprintDeckApp

seen = {}
start_engine = SprintDeckApp._start_engine


def _start_engine(self):
    # The first frame is composed and on screen: what it shows, and what had been imported for it.
    seen["modules"] = sorted(sys.modules)
    seen["rows"] = self.tasks.keys()
    seen["header"] = self.header.text.plain
    start_engine(self)
    self.set_interval(0.05, lambda: self.source.finished and self.action_request_quit())


SprintDeckApp._start_engine = _start_engine
run = App.run
App.run = lambda self, **kwargs: run(self, headless=True, size=(120, 40))  # the test has no terminal
code = main(sys.argv[1:])
print(json.dumps({"code": code, **seen}))
"""


def test_the_dashboard_draws_the_plan_before_it_imports_the_engine(tmp_path: Path) -> None:
    # `run`'s first frame shows the plan's tasks, and the engine (its manager, pydantic's state and
    # event models: most of a third of a second) is imported after it: without that, the first
    # paint is ~2.9x an empty Textual app's (benchmarks/bench_first_paint.py), with it ~1.6x.
    plan = ROOT / "sample_sprints/webrtc/plan.yaml"
    out = subprocess.run([sys.executable, "-c", FIRST_FRAME_PROBE, "run", str(plan), "--speed", "100",
                          "--record", str(tmp_path / "j.jsonl"), "--workspace", str(tmp_path / "ws")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["code"] == 0 and "finished · 10/10 done" in out.stderr  # then the sprint ran as before
    assert result["rows"][:3] == ["update_schema", "implement_api", "integrate_api"] and len(result["rows"]) == 10
    assert "webrtc-signaling · starting" in result["header"] and "0/10 done" in result["header"]
    modules = set(result["modules"])
    engine = {m for m in modules if m.startswith("engine")}
    heavy = roots(modules) & {"pydantic", "pydantic_core", "networkx", "nats", "watchfiles", "xxhash"}
    assert not heavy, f"imported before the first frame: {sorted(heavy)}"
    assert not engine & {"engine.manager", "engine.models", "engine.events", "engine.protocol", "engine.reducer"}, \
        sorted(engine)
    assert "sprint_finished" in (tmp_path / "j.jsonl").read_text()
