"""Support for the watcher tests (no tests here): a running manager over a real workspace, lock helpers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from conftest import write_plan
from engine.events import Event
from engine.journal import JournalWriter, read_journal
from engine.locks import Grant
from engine.manager import SprintManager
from engine.protocol import MANAGER_ID, MessageType, make_message
from engine.reducer import fold

AGENTS = ("alice", "bob", "carol")


class Engine:
    """A started SprintManager with external agents `alice`, `bob`, `carol` and no tasks."""

    def __init__(self, tmp_path: Path, files: dict[str, str | bytes] | None = None, *, journal_dir: Path | None = None):
        self.workspace = tmp_path / "ws"
        self.workspace.mkdir()
        for path, content in (files or {}).items():
            self.write(path, content)
        plan = write_plan(
            tmp_path,
            {
                "sprint": "watch-test",
                "settings": {"heartbeat_timeout": "60s", "lock_ttl": "60s"},
                "agents": [{"id": agent, "kind": "external"} for agent in AGENTS],
                "tasks": [],
            },
        )
        self.journal_path = (journal_dir or tmp_path / "journal") / "journal.jsonl"
        self.journal_path.parent.mkdir(parents=True, exist_ok=True)
        self.journal = JournalWriter.create(self.journal_path, {"sprint": plan.sprint, "planDigest": plan.digest})
        self.manager = SprintManager(plan, workspace=self.workspace, journal=self.journal)
        self.events: list[Event] = []
        self.manager.subscribe(self.events.append)

    async def __aenter__(self) -> Engine:
        await self.manager.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.manager.stop()
        self.journal.close()

    # ------------------------------------------------------------ files

    def write(self, path: str, content: str | bytes, mode: str = "w") -> Path:
        target = self.workspace / path
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        with open(target, mode + "b") as handle:
            handle.write(data)
        return target

    def file(self, path: str):
        return self.manager.state.files.get(path)

    async def until(self, condition: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
        """Wait for the watcher: poll `condition` until true (never a fixed sleep)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = condition()
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what or condition}")
            await asyncio.sleep(0.005)

    async def settled(self, sentinel: str = "zz-sentinel.txt") -> None:
        """Every change made before this call has been seen: write a sentinel and wait for it."""
        marker = f"{len(self.events)}"
        self.write(sentinel, marker)
        await self.until(
            lambda: self.file(sentinel) is not None and self.file(sentinel).size == len(marker), what="sentinel"
        )

    # ------------------------------------------------------------ locks and reports

    async def lock(self, agent: str, path: str, mode: str = "write") -> Grant:
        message = make_message(MessageType.RESOURCE_LOCK, agent, MANAGER_ID, {"resourceId": path, "lockType": mode})
        await self.manager.handle_ipc_message(message)
        grants = [g for g in self.manager.locks.grants_of(agent) if g.resource_id == path.rstrip("/")]
        assert grants, f"{agent} did not get {mode} on {path}"
        return grants[-1]

    async def unlock(self, agent: str, grant: Grant) -> None:
        payload = {"resourceId": grant.resource_id, "lockId": grant.lock_id}
        await self.manager.handle_ipc_message(make_message(MessageType.RESOURCE_UNLOCK, agent, MANAGER_ID, payload))

    async def report(self, agent: str, grant: Grant, path: str, checksum: str) -> None:
        payload = {"path": path, "checksum": checksum, "lockId": grant.lock_id, "token": grant.token}
        await self.manager.handle_ipc_message(make_message(MessageType.STATE_UPDATE, agent, MANAGER_ID, payload))

    # ------------------------------------------------------------ replay

    def replayed_files(self) -> dict[str, Any]:
        self.journal.flush_sync()
        _, records, _ = read_journal(self.journal_path)
        state = fold(Event.from_record(r) for r in records)
        return json.loads(json.dumps(state.model_dump(mode="json")["files"]))

    def live_files(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.manager.state.model_dump(mode="json")["files"]))

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]
