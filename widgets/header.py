"""The header line: sprint, where it stands, elapsed time, progress, state version, transport and journal."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from rich.text import Text

from engine.metrics import sprint_metrics, sprint_outcome
from widgets.text_line import TextLines

if TYPE_CHECKING:  # types only: the dashboard's first frame is drawn before pydantic is imported
    from engine.models import ProjectState
    from engine.plan import Plan


def sprint_phase(state: ProjectState) -> str:
    """Where the sprint stands, in words: `running`, `paused`, or `finished · 9/10 done · 1 failed`
    (the outcome, a file left in conflict included, is what a finished sprint is read for)."""
    if state.meta.finished_at is not None:
        return f"finished · {sprint_outcome(sprint_metrics(state), name_files=False)}"
    return "paused" if state.meta.paused else "running"


class SprintHeader(TextLines):
    """One line that changes on every batch (the version moves) but never changes height."""

    def show(self, state: ProjectState, now: datetime, *, transport: str, journal: str | None, mode: str) -> None:
        """`mode` is `live`, `recorded` or `replay`.  A live header says only the phase (`live`
        said nothing once the sprint paused or ended); a recording keeps its mode word and adds
        the recorded sprint's phase when it is not simply running, so it never reads as the
        replay's own play/pause."""
        meta = state.meta
        started = meta.started_at
        elapsed = ((meta.finished_at or now) - started).total_seconds() if started else 0.0
        done = sum(1 for t in state.tasks.values() if t.status == "completed")
        minutes, seconds = divmod(int(elapsed), 60)
        phase = sprint_phase(state)
        steady = phase == "running"  # paused and finished stand out
        if mode != "live":
            phase = mode if steady else f"{mode} · sprint {phase}"
        text = Text()
        text.append(" sprintdeck ", style="bold reverse")
        text.append(f" {meta.sprint or '—'} ", style="bold")
        text.append("· ")
        text.append(phase, style="" if steady else "bold")
        text.append(f" · ⏱ {minutes:02d}:{seconds:02d}")
        if meta.finished_at is None:  # a finished phase states the count already
            text.append(f" · {done}/{len(state.tasks)} done")
        text.append(f" · v{state.version}")
        if transport != mode:  # a replay's or a recording's source is its mode, said once already
            text.append(f" · {transport}")
        text.append(f" · journal {journal or '—'}")
        self.set_text(text)

    def show_plan(self, plan: Plan, *, journal: str | None) -> None:
        """`run`'s first frame, before the engine has a state: the sprint and its size, `starting`."""
        text = Text()
        text.append(" sprintdeck ", style="bold reverse")
        text.append(f" {plan.sprint or '—'} ", style="bold")
        text.append(f"· starting · ⏱ 00:00 · 0/{len(plan.tasks)} done · journal {journal or '—'}")
        self.set_text(text)
