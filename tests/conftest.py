"""Shared helpers: write plans into temporary directories and run them with a real journal."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.events import Event
from engine.journal import JournalWriter, read_journal
from engine.manager import SprintManager, SprintResult
from engine.plan import Plan, load_plan
from engine.workspace import scratch_copy

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_sprints"


def write_plan(directory: Path, plan: dict[str, Any], name: str = "plan.yaml") -> Plan:
    path = directory / name
    path.write_text(yaml.safe_dump(plan, sort_keys=False))
    return load_plan(path)


@dataclass
class Run:
    manager: SprintManager
    result: SprintResult
    events: list[Event]
    journal: Path
    workspace: Path


async def run_sprint(plan: Plan, tmp_path: Path, *, seed: int = 0, speed: float = 200.0, setup=None) -> Run:
    """Run `plan` to the end with in-process agents, a real journal and a real workspace."""
    workspace = scratch_copy(plan, tmp_path / "workspace")
    journal_path = tmp_path / "journal.jsonl"
    journal = JournalWriter.create(journal_path, {"sprint": plan.sprint, "planDigest": plan.digest})
    manager = SprintManager(plan, workspace=workspace, journal=journal, seed=seed, speed=speed)
    if setup is not None:
        setup(manager)
    result = await asyncio.wait_for(manager.execute_sprint(), timeout=60)
    journal.close()
    _, records, _ = read_journal(journal_path)
    return Run(manager, result, [Event.from_record(r) for r in records], journal_path, workspace)


def simple_plan(**overrides: Any) -> dict[str, Any]:
    plan: dict[str, Any] = {
        "sprint": "test",
        "settings": {"heartbeat_interval": "50ms", "heartbeat_timeout": "2s"},
        "agents": [
            {"id": "backend", "capabilities": ["api"], "max_concurrent_tasks": 2},
            {"id": "frontend", "capabilities": ["ui"]},
        ],
        "tasks": [
            {"id": "schema", "requires": ["api"], "estimate": "1s", "resources": ["shared/schema.ts"]},
            {"id": "api", "requires": ["api"], "depends_on": ["schema"], "resources": ["server/routes.ts"]},
            {"id": "ui", "requires": ["ui"], "depends_on": ["api"], "resources": [{"path": "server/routes.ts", "mode": "read"}]},
        ],
    }
    plan.update(overrides)
    return plan


@pytest.fixture
def samples() -> Path:
    return SAMPLES
