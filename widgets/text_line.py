"""TextLines: a fixed-height block of text that repaints without asking for a screen layout.

A Static re-lays out the whole screen on every update (its size could change); the header and the
metrics summary change every second but never change size, so they only need a repaint.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget


class TextLines(Widget):
    DEFAULT_CSS = "TextLines { height: 1; }"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._text = Text()

    def render(self) -> Text:
        return self._text

    @property
    def text(self) -> Text:
        return self._text

    def set_text(self, text: Text | str) -> None:
        text = Text(text) if isinstance(text, str) else text
        if text.plain != self._text.plain or text.spans != self._text.spans:
            self._text = text
            self.refresh()
