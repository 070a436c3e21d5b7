"""The headless progress line on stderr (`run --headless`, `serve --headless`).

It says what an operator without a dashboard needs to see: how far the sprint is and whether it
is going badly — failed and cancelled tasks, retried attempts, files in conflict, dead agents.
On a terminal it is redrawn in place; in a log (stderr piped to a file or CI) it is printed at
most once a second, so a 10,000-task sprint does not write 10,000 lines, and once more at the
end when something changed since.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TextIO

from engine.events import (
    AgentDead,
    ConflictResolved,
    Event,
    FileChanged,
    FileDeleted,
    TaskCancelled,
    TaskCompleted,
    TaskFailed,
    TaskReset,
)
from engine.models import ProjectState

TERMINAL_INTERVAL = 0.1  # seconds between in-place redraws
LOG_INTERVAL = 1.0  # seconds between printed lines when stderr is not a terminal


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


class ProgressLine:
    """Counts kept from the event stream (a redraw never scans every task) and drawn throttled.

    It reads the manager's live `state` only for the files an event names, to follow their
    conflict status exactly as the reducer decided it (merges with markers, renames, rescans).
    """

    WIDTH = 30

    def __init__(self, stream: TextIO, state: ProjectState, total: int) -> None:
        self.stream = stream
        self.state = state  # empty until the sprint starts, unless it is resumed
        self.total = total
        self.tty = stream.isatty()
        self.interval = TERMINAL_INTERVAL if self.tty else LOG_INTERVAL
        self.started = time.monotonic()
        self._last_draw = -math.inf
        self._pending = False  # a count changed since the last line drawn
        self._timer: asyncio.TimerHandle | None = None  # the draw waiting for the interval to pass
        self._width = 0  # length of the last in-place line, to blank what a shorter one leaves
        self.done = self.failed = self.cancelled = self.retries = 0
        self._recount_tasks()  # a resumed sprint starts from its recorded counts
        self.deaths = sum(agent.status == "dead" for agent in state.agents.values())
        self.conflicts = {path for path, file in state.files.items() if file.status == "conflict"}

    def on_event(self, event: Event) -> None:
        """Count what the event changes; draw now if the interval has passed, else when it has."""
        if self._count(event):
            self._pending = True
            self._draw_when_due()

    def finish(self) -> None:
        """End the line: on a terminal, the last redraw; in a log, the last counts if not yet printed."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.tty or self._pending:
            self._draw(end="\n")

    def _draw_when_due(self) -> None:
        """Draw, or, within the interval, once it has passed: a change is never held back until
        the next event, which in a sprint waiting on one long task may be minutes away."""
        wait = self._last_draw + self.interval - time.monotonic()
        if wait <= 0:
            self._draw(end="\r" if self.tty else "\n")
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(wait, self._when_due)
            except RuntimeError:  # no event loop (a caller outside the sprint): finish() draws it
                pass

    def _when_due(self) -> None:
        self._timer = None
        if self._pending:
            self._draw_when_due()

    def counts(self) -> str:
        """`4/10 done · 1 failed · 2 retries · 1 conflict · 1 agent died`: zero counts are left out."""
        parts = [f"{self.done}/{self.total} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        if self.retries:
            parts.append(_count(self.retries, "retry", "retries"))
        if self.conflicts:
            parts.append(_count(len(self.conflicts), "conflict", "conflicts"))
        if self.deaths:
            parts.append(_count(self.deaths, "agent died", "agents died"))
        return " · ".join(parts)

    def _count(self, event: Event) -> bool:
        """Update the counts from one applied event; whether the line changed."""
        body = event.body
        if isinstance(body, TaskCompleted):
            self.done += 1
        elif isinstance(body, TaskCancelled):
            self.cancelled += 1
        elif isinstance(body, TaskFailed):
            if body.will_retry:
                self.retries += 1
            else:
                self.failed += 1
        elif isinstance(body, TaskReset):
            self._recount_tasks()
        elif isinstance(body, AgentDead):
            self.deaths += 1
        elif isinstance(body, (FileChanged, FileDeleted, ConflictResolved)):
            paths = [body.path] + ([body.renamed_from] if isinstance(body, FileChanged) and body.renamed_from else [])
            return self._follow_conflicts(paths)
        else:
            return False
        return True

    def _recount_tasks(self) -> None:
        """The task counts from the state, as `sprint_metrics` takes them: at the start, and after
        an operator's retry (`TaskReset`) takes a task out of `failed` or `cancelled`."""
        tasks = self.state.tasks.values()
        self.done = sum(task.status == "completed" for task in tasks)
        self.failed = sum(task.status == "failed" for task in tasks)
        self.cancelled = sum(task.status == "cancelled" for task in tasks)
        self.retries = sum(task.failures - (task.status == "failed") for task in tasks)

    def _follow_conflicts(self, paths: list[str]) -> bool:
        before = len(self.conflicts)
        for path in paths:
            file = self.state.files.get(path)
            if file is not None and file.status == "conflict":
                self.conflicts.add(path)
            else:
                self.conflicts.discard(path)
        return len(self.conflicts) != before

    def _draw(self, *, end: str) -> None:
        finished = self.done + self.failed + self.cancelled
        filled = min(self.WIDTH, int(self.WIDTH * finished / self.total)) if self.total else self.WIDTH
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        counts = self.counts()
        text = f"[{bar}] {counts} · {time.monotonic() - self.started:.1f}s"
        if self.tty:
            text, self._width = text.ljust(self._width), len(text)
        self._last_draw, self._pending = time.monotonic(), False
        self.stream.write(text + end)
        self.stream.flush()
