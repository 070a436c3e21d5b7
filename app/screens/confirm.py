"""A yes/no question; dismisses with True or False.

Enter answers the focused button: No unless `enter_confirms` (a question whose warning is the point,
like a force-release's, where the operator has read what happens and Enter means "do it")."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, question: str, *, enter_confirms: bool = False) -> None:
        super().__init__()
        self.question = question
        self.enter_confirms = enter_confirms

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog", classes="dialog"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Yes (enter, y)" if self.enter_confirms else "Yes (y)", id="yes", variant="error")
                yield Button("No (esc, n)" if self.enter_confirms else "No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#yes" if self.enter_confirms else "#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
