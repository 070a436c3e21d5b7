"""A modal with one whole message as pretty JSON: the Messages pane shows one line, this shows all."""

from __future__ import annotations

import json
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.highlight import highlight
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.message_store import MessageStore


class MessageDetailsScreen(ModalScreen[None]):
    """The full wire JSON of one message; escape or q closes it."""

    BINDINGS = [
        Binding("escape,q", "dismiss", "Close", id="message_details.close"),
        Binding("j,down", "scroll('down')", "Down", show=False, id="message_details.down"),
        Binding("k,up", "scroll('up')", "Up", show=False, id="message_details.up"),
    ]

    DEFAULT_CSS = """
    MessageDetailsScreen {
        align: center middle;
        & > #message-details {
            width: 90%;
            max-width: 110;
            height: auto;
            max-height: 85%;
            border: round $accent;
            border-title-color: $accent;
            border-subtitle-color: $text-muted;
            background: $surface;
            padding: 0 1;
        }
    }
    """

    def __init__(self, message: dict[str, Any], *, seq: int | None = None) -> None:
        super().__init__()
        self.message = message
        self.seq = seq
        self.json_text = json.dumps(message, indent=2, ensure_ascii=False)

    @classmethod
    def of(cls, store: MessageStore, index: int) -> MessageDetailsScreen:
        """The screen for message `index` of `store`, titled with the event that journaled it."""
        return cls(store.message(index), seq=store.seq(index))

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="message-details") as box:
            box.border_title = self._title()
            box.border_subtitle = "escape/q close"
            yield Static(highlight(self.json_text, language="json"), id="message-details-json")

    def _title(self) -> str:
        kind = self.message.get("type", "message")
        route = f"{self.message.get('from', '?')} → {self.message.get('to', '?')}"
        prefix = f"#{self.seq} " if self.seq is not None else ""
        return f"{prefix}{kind} · {route}"

    def action_scroll(self, direction: str) -> None:
        box = self.query_one("#message-details", VerticalScroll)
        box.scroll_down(animate=False) if direction == "down" else box.scroll_up(animate=False)
