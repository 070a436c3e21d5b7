"""A read-only view of one record (a task, a lock) as JSON."""

from __future__ import annotations

import json
from typing import Any

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


class DetailsScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close", id="details.close")]

    def __init__(self, title: str, record: dict[str, Any]) -> None:
        super().__init__()
        self.title_text = title
        self.record = record

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details-dialog", classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield Static(Syntax(json.dumps(self.record, indent=2), "json", theme="ansi_dark", word_wrap=True))
