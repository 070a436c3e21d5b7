"""A conflict escalated to the operator: the diff from the last good content, and the choices."""

from __future__ import annotations

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class ConflictScreen(ModalScreen[str | None]):
    """Dismisses with the chosen resolution (accept, revert, merge) or None to leave it."""

    BINDINGS = [
        Binding("a", "choose('accept')", "Accept current", id="conflict.accept"),
        Binding("v", "choose('revert')", "Revert to last good", id="conflict.revert"),
        Binding("m", "choose('merge')", "Three-way merge", id="conflict.merge"),
        Binding("escape,q", "choose(None)", "Leave it", id="conflict.close"),
    ]

    def __init__(self, path: str, reason: str, diff: str) -> None:
        super().__init__()
        self.path = path
        self.reason = reason
        self.diff = diff

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="conflict-dialog", classes="dialog"):
            yield Static(f"Conflict on {self.path}", classes="dialog-title")
            yield Static(self.reason)
            yield Static(Syntax(self.diff or "(no difference from the last good content)", "diff",
                                theme="ansi_dark", word_wrap=True))
            yield Static("a: accept current · v: revert to last good · m: merge · escape: leave it",
                         classes="dialog-hint")

    def action_choose(self, how: str | None) -> None:
        self.dismiss(how)
