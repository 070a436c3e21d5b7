"""Simulated agents: deterministic workers for demos, tests and benchmarks.

Every decision (how long an attempt takes, whether it fails) comes from a random generator seeded
with (seed, agent, task, attempt), so a given seed gives the same decisions whatever order the
event loop happens to run things in.  They change real files: each attempt appends a line to every
file it holds a write or exclusive lock on.

`settings.rogue_edits: N` makes the simulation misbehave on purpose, N times in a sprint: the first
attempt of a few tasks (chosen by the seed, tasks holding read locks first) also appends to a file
it holds no write lock on - a file it only reads, else any other file - which is exactly the
unnoticed overwrite the file watcher exists to catch (engine/conflicts.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
from pathlib import Path

from engine.agents.base import LocalAgent, Outcome
from engine.plan import AgentSpec, Plan
from engine.payloads import TaskAssignPayload
from engine.protocol import MessageType
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
        rogue_tasks: dict[str, int] | None = None,
    ) -> None:
        super().__init__(spec, transport, workspace=workspace, heartbeat_interval=heartbeat_interval)
        self.seed = seed
        self.speed = speed
        self.rogue_tasks = rogue_tasks or {}  # task id -> unlocked edits its first attempt makes

    async def execute(self, assign: TaskAssignPayload) -> Outcome:
        jitter, chance = seeded_fractions(f"{self.seed}:{self.id}:{assign.task_id}:{assign.attempt}", 2)
        duration = (1.0 if assign.estimate is None else assign.estimate) * (0.8 + 0.4 * jitter) / self.speed
        fails = chance < self.spec.failure_rate
        # Short attempts report no intermediate progress: it would be noise, not information.
        steps = PROGRESS_STEPS if duration >= MIN_PROGRESS_DURATION else 1
        if duration > 0:  # a zero-length attempt has no running phase to show
            await self.report_start(assign)
        for step in range(1, steps + 1):
            if duration > 0:  # a zero-length attempt does not give the loop an extra turn
                await asyncio.sleep(duration / steps)
            if step == 1 and assign.attempt == 1:
                self._rogue_edits(assign)
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
        line = f"// {self.id}: {assign.task_id} attempt {assign.attempt}\n".encode()
        for ref in assign.locks:
            if ref.lock_type == "read" or is_named(ref.resource_id):
                continue
            relative = ref.resource_id
            target = os.path.join(self.workspace, relative)
            if _is_directory(target):
                relative = f"{relative}/{assign.task_id}.notes"
                target = os.path.join(target, f"{assign.task_id}.notes")
            _append(target, line)
            written.append(relative)
        return written

    def _rogue_edits(self, assign: TaskAssignPayload) -> list[str]:
        """Append to files this attempt holds no write lock on (settings.rogue_edits)."""
        count = self.rogue_tasks.get(assign.task_id, 0)
        if not count:
            return []
        rng = random.Random(f"{self.seed}:{self.id}:{assign.task_id}:rogue")
        targets = _rogue_targets(self.workspace, assign)
        edited = []
        for _ in range(count):
            if not targets:
                break
            target = targets[rng.randrange(len(targets))]
            with (self.workspace / target).open("a", encoding="utf-8") as handle:
                handle.write(f"// {self.id}: unlocked edit during {assign.task_id}\n")
            edited.append(target)
        return edited


def _rogue_targets(workspace: Path, assign: TaskAssignPayload) -> list[str]:
    """Files the attempt only reads; failing those, any workspace file outside its write locks."""
    read = [
        ref.resource_id
        for ref in assign.locks
        if ref.lock_type == "read" and not is_named(ref.resource_id) and (workspace / ref.resource_id).is_file()
    ]
    if read:
        return sorted(read)
    written = [ref.resource_id for ref in assign.locks if ref.lock_type != "read"]
    return sorted(
        path.relative_to(workspace).as_posix()
        for path in workspace.rglob("*")
        if path.is_file()
        and not path.is_symlink()
        and not path.relative_to(workspace).parts[0].startswith(".")
        and not any(_under(path.relative_to(workspace).as_posix(), lock) for lock in written)
    )


def _under(path: str, resource: str) -> bool:
    return path == resource or path.startswith(resource.rstrip("/") + "/")


def rogue_edit_plan(plan: Plan, seed: int) -> dict[str, int]:
    """Spread `settings.rogue_edits` over tasks simulated agents run, deterministically for the seed.

    Tasks holding a read lock on a file go first (editing what one only reads is the classic
    mistake); among each group the order is a seeded shuffle.
    """
    edits = plan.settings.rogue_edits
    simulated = {agent.id for agent in plan.agents if agent.kind == "simulated"}
    everyone_simulated = len(simulated) == len(plan.agents)
    candidates = [
        task
        for task in plan.tasks
        if task.coordination != "collaborative" and (everyone_simulated or task.agent in simulated)
    ]
    if not edits or not candidates:
        return {}
    rng = random.Random(f"{seed}:rogue_edits")
    readers = [t.id for t in candidates if any(r.mode == "read" and not is_named(r.path) for r in t.resources)]
    others = [t.id for t in candidates if t.id not in readers]
    rng.shuffle(readers)
    rng.shuffle(others)
    order = readers + others
    counts: dict[str, int] = {}
    for index in range(edits):
        task_id = order[index % len(order)]
        counts[task_id] = counts.get(task_id, 0) + 1
    return counts


def seeded_fractions(key: str, count: int) -> list[float]:
    """`count` (at most 8) uniform numbers in [0, 1), fixed by `key` alone.

    An attempt needs two numbers; seeding a Mersenne Twister from a string to draw them cost
    5 µs per attempt, a blake2b digest cut into 53-bit fractions costs 1 µs.
    """
    digest = hashlib.blake2b(key.encode(), digest_size=8 * count).digest()
    return [(int.from_bytes(digest[i : i + 8]) >> 11) * 2.0**-53 for i in range(0, 8 * count, 8)]


def _append(target: str, line: bytes) -> None:
    """Append with one open and one write: what an editor's save costs, without Python's text layer."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    try:
        fd = os.open(target, flags, 0o666)
    except FileNotFoundError:  # its directory is not there yet
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd = os.open(target, flags, 0o666)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _is_directory(target: str) -> bool:
    """A locked path is a directory when it is one, or (not there yet) when it has no extension."""
    if os.path.isdir(target):
        return True
    return not os.path.splitext(target)[1] and not os.path.exists(target)
