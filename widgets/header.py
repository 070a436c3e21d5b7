"""The header line: sprint, elapsed time, progress, state version, transport and journal."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text

from engine.models import ProjectState
from widgets.text_line import TextLines


class SprintHeader(TextLines):
    """One line that changes on every batch (the version moves) but never changes size."""

    def show(self, state: ProjectState, now: datetime, *, transport: str, journal: str | None, mode: str) -> None:
        meta = state.meta
        started = meta.started_at
        elapsed = ((meta.finished_at or now) - started).total_seconds() if started else 0.0
        done = sum(1 for t in state.tasks.values() if t.status == "completed")
        minutes, seconds = divmod(int(elapsed), 60)
        text = Text()
        text.append(" sprintdeck ", style="bold reverse")
        text.append(f" {meta.sprint or '—'} ", style="bold")
        text.append(f"· {mode} · ⏱ {minutes:02d}:{seconds:02d} · {done}/{len(state.tasks)} done · v{state.version}")
        text.append(f" · {transport} · journal {journal or '—'}")
        if meta.paused:
            text.append("  ‖ PAUSED", style="bold")
        if meta.finished_at is not None:
            failed = sum(1 for t in state.tasks.values() if t.status in ("failed", "cancelled"))
            text.append(f"  ✔ sprint finished: {done} done, {failed} failed or cancelled", style="bold")
        self.set_text(text)
