"""The workspace watcher: watchfiles notifications, reconciled in the stat cache, handed on in batches.

`Watcher` runs `watchfiles.awatch` over the workspace and turns each batch of notifications into
`Observation`s (changed, deleted, renamed, unreadable) through the `FileIndex`
(engine/file_index.py), for the sprint manager, which attributes them (engine/conflicts.py).
Paths the ignore rules leave out (engine/ignore_rules.py) are never looked at.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import watchfiles

from engine.file_index import FileIndex, Observation, pair_renames
from engine.ignore_rules import ALWAYS_IGNORED

log = logging.getLogger(__name__)

DEBOUNCE_MS = 50  # watchfiles groups changes for at most this long...
STEP_MS = 3  # ...and yields once nothing new arrived for this long (measured: bench_watch.py)


class Watcher:
    """watchfiles over the workspace, feeding `on_changes` with each batch, on the event loop."""

    def __init__(
        self,
        index: FileIndex,
        on_changes: Callable[[list[Observation]], None],
        *,
        debounce_ms: int = DEBOUNCE_MS,
        step_ms: int = STEP_MS,
    ) -> None:
        self.index = index
        self.on_changes = on_changes
        self.debounce_ms = debounce_ms
        self.step_ms = step_ms
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self.batches = 0

    async def start(self) -> None:
        """Return once the OS watch is in place, so no change after this call can be missed."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sprintdeck-watcher")
        await self._ready.wait()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        changes = watchfiles.awatch(
            self.index.root,
            watch_filter=None,
            debounce=self.debounce_ms,
            step=self.step_ms,
            stop_event=self._stop,
            ignore_permission_denied=True,
        )
        # The generator creates its OS watch before its first await: one step in, it is armed.
        pending = asyncio.ensure_future(changes.__anext__())
        await asyncio.sleep(0)
        self._ready.set()
        try:
            while True:
                batch = await pending
                self.handle(batch)
                pending = asyncio.ensure_future(changes.__anext__())
        except StopAsyncIteration:
            return
        finally:
            self._ready.set()
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
            await changes.aclose()

    def handle(self, batch: Iterable[tuple[watchfiles.Change, str]]) -> None:
        """One notification batch: reconcile each path once, pair renames, hand on what changed."""
        self.batches += 1
        seen: set[str] = set()
        observations: list[Observation] = []
        for _, absolute in sorted(batch, key=lambda item: item[1]):
            rel = self.index.relative(absolute)
            if rel is None or rel in seen or rel.split("/", 1)[0] in ALWAYS_IGNORED:
                continue
            seen.add(rel)
            if rel.endswith(".gitignore"):
                self.index.rules.reload()
            try:
                observations += self.index.reconcile(rel)
            except Exception:  # one bad path must not stop the watcher
                log.exception("watcher could not reconcile %s", rel)
        if observations:
            try:
                self.on_changes(pair_renames(observations))
            except Exception:
                log.exception("watcher could not record %d changes", len(observations))
