"""The replay transport bar: a scrubber drawn with eighth-block glyphs, and where the replay is.

Line one is the bar (click to seek); line two says position/total, sprint time, speed, playing or
paused, and the current event.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget

from engine.replay_seek import format_elapsed

EIGHTHS = " ▏▎▍▌▋▊▉"


def bar(fraction: float, width: int) -> str:
    """A bar `width` cells wide filled to `fraction`, with eighth-cell resolution."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (EIGHTHS[part] if part and full < width else "")
    return text.ljust(width)


@dataclass(frozen=True)
class TransportState:
    position: int
    total: int
    sprint_time: float  # seconds since the sprint started, at the current event
    speed: str  # how fast playing goes: `×2 real time` or `50 ev/s`
    playing: bool
    event: str  # a short description of the current event


class Scrubber(Widget):
    DEFAULT_CSS = """
    Scrubber { height: 2; background: $panel; color: $foreground; padding: 0 1; }
    """

    class Seek(Message):
        """The user clicked on the bar: go to this event."""

        def __init__(self, seq: int) -> None:
            super().__init__()
            self.seq = seq

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.transport = TransportState(0, 0, 0.0, "×1 real time", False, "")

    def show(self, transport: TransportState) -> None:
        if transport != self.transport:
            self.transport = transport
            self.refresh()

    def render(self) -> Text:
        t = self.transport
        width = max(10, self.content_region.width)
        fraction = t.position / t.total if t.total else 0.0
        state = "▶ playing" if t.playing else "‖ paused"
        text = Text(bar(fraction, width), style="bold")
        text.append("\n")
        text.append(f"{t.position}/{t.total} events · {format_elapsed(t.sprint_time)} · "
                    f"{t.speed} · {state} · {t.event}")
        text.truncate(width * 2 + 1)
        return text

    def on_click(self, event: events.Click) -> None:
        width = max(1, self.content_region.width)
        if event.y == 0 and self.transport.total:
            x = min(max(0, event.x - self.styles.padding.left), width)
            self.post_message(self.Seek(round(x / width * self.transport.total)))
