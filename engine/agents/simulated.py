"""Simulated agents: deterministic workers for demos, tests and benchmarks.

Every decision (how long an attempt takes, whether it fails) comes from a random generator seeded
with (seed, agent, task, attempt), so a given seed gives the same decisions whatever order the
event loop happens to run things in.  They change real files: each attempt appends a line to every
file it holds a write or exclusive lock on.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from engine.agents.base import LocalAgent, Outcome
from engine.plan import AgentSpec
from engine.protocol import MessageType, TaskAssignPayload
from engine.resources import is_named
from engine.transports.base import Transport

PROGRESS_STEPS = 4
MIN_PROGRESS_DURATION = 0.2  # seconds of wall time


class SimulatedAgent(LocalAgent):
    def __init__(
        self,
        spec: AgentSpec,
        transport: Transport,
        *,
        workspace: Path,
        heartbeat_interval: float,
        seed: int,
        speed: float,
    ) -> None:
        super().__init__(spec, transport, workspace=workspace, heartbeat_interval=heartbeat_interval)
        self.seed = seed
        self.speed = speed

    def _rng(self, assign: TaskAssignPayload) -> random.Random:
        return random.Random(f"{self.seed}:{self.id}:{assign.task_id}:{assign.attempt}")

    async def execute(self, assign: TaskAssignPayload) -> Outcome:
        rng = self._rng(assign)
        duration = (1.0 if assign.estimate is None else assign.estimate) * (0.8 + 0.4 * rng.random()) / self.speed
        fails = rng.random() < self.spec.failure_rate
        # Short attempts report no intermediate progress: it would be noise, not information.
        steps = PROGRESS_STEPS if duration >= MIN_PROGRESS_DURATION else 1
        for step in range(1, steps + 1):
            await asyncio.sleep(duration / steps)
            if step < steps:
                await self.send(
                    MessageType.TASK_UPDATE,
                    {"taskId": assign.task_id, "attempt": assign.attempt, "progress": step / steps},
                )
        if fails:
            return Outcome(ok=False, error=f"simulated failure of {assign.task_id} attempt {assign.attempt}")
        written = self._write_files(assign)
        return Outcome(ok=True, result={"files": written})

    def _write_files(self, assign: TaskAssignPayload) -> list[str]:
        """Append one line to each file under a write/exclusive lock (a directory gets a notes file)."""
        written = []
        line = f"// {self.id}: {assign.task_id} attempt {assign.attempt}\n"
        for ref in assign.locks:
            if ref.lock_type == "read" or is_named(ref.resource_id):
                continue
            target = self.workspace / ref.resource_id
            if _is_directory(target):
                target = target / f"{assign.task_id}.notes"
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("a", encoding="utf-8") as handle:
                handle.write(line)
            written.append(target.relative_to(self.workspace).as_posix())
        return written


def _is_directory(target: Path) -> bool:
    """A locked path is a directory when it is one, or (not there yet) when it has no extension."""
    return target.is_dir() or (not target.exists() and not target.suffix)
