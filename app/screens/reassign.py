"""Pick the agent a task should move to: only agents able to do it, with their current load.

An agent that cannot take it now (full, paused, dead) is listed greyed out with the engine's reason,
so the operator sees why it is not offered; the engine refuses it anyway (engine/operators.py)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


@dataclass(frozen=True)
class Candidate:
    agent_id: str
    status: str
    load: int
    capacity: int
    capabilities: tuple[str, ...]
    refusal: str | None = None  # why it cannot take the task now, as the engine says it

    @property
    def usable(self) -> bool:
        return self.refusal is None and self.status in ("ready", "busy")


class ReassignScreen(ModalScreen[str | None]):
    BINDINGS = [Binding("escape,q", "dismiss_none", "Cancel", id="reassign.cancel")]

    def __init__(self, task_id: str, current: str | None, candidates: list[Candidate]) -> None:
        super().__init__()
        self.task_id = task_id
        self.current = current
        self.candidates = candidates

    def compose(self) -> ComposeResult:
        with Vertical(id="reassign-dialog", classes="dialog"):
            yield Static(f"Reassign [b]{self.task_id}[/b] (now: {self.current or '—'}) to:", id="reassign-title")
            width = max((len(c.agent_id) for c in self.candidates), default=0)
            options = [
                Option(
                    Text(f"{c.agent_id:<{width}}  {c.status:<7} load {c.load}/{c.capacity}  [{', '.join(c.capabilities)}]"
                         + (f"  — {c.refusal}" if c.refusal else "")),  # plain text: "[api]" is no markup
                    id=c.agent_id,
                    disabled=not c.usable or c.agent_id == self.current,
                )
                for c in self.candidates
            ]
            yield OptionList(*options, id="reassign-options")
            yield Static("enter: reassign · escape: cancel", classes="dialog-hint")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
