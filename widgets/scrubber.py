"""The replay transport bar: a scrubber drawn with eighth-block glyphs, its marks, and where the replay is.

Line one is the bar (click to seek) with the notable events marked on it, each kind by its own
glyph and colour (✗ failure, ! conflict, † death, ◆ operator action: the glyph alone says which,
for a terminal without colour); line two says position/total, sprint time, speed, playing or
paused, and what `n` / `N` jump to; line three says the current event in words (or where `n`
landed, or that there is no further mark).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual import events
from textual.message import Message
from textual.widget import Widget

from engine.replay_marks import GLYPHS, KINDS, TASK_EVENT, Mark
from engine.replay_seek import format_elapsed

EIGHTHS = " ▏▎▍▌▋▊▉"
MARK_STYLES = {"failures": "bold red", "conflicts": "bold yellow", "deaths": "bold magenta", "operator": "bold cyan",
               TASK_EVENT: "bold green"}
PRECEDENCE = (*KINDS, TASK_EVENT)  # which kind a cell shared by several shows
MARK_LEGEND = ", ".join(f"{GLYPHS[kind]} {word}" for kind, word in zip(
    PRECEDENCE, ("failure", "conflict", "agent death", "operator action", "another event of the followed task")))


def bar(fraction: float, width: int) -> str:
    """A bar `width` cells wide filled to `fraction`, with eighth-cell resolution."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (EIGHTHS[part] if part and full < width else "")
    return text.ljust(width)


def mark_cells(marks: Sequence[Mark], total: int, width: int) -> dict[int, str]:
    """The bar's cell of each mark's kind; where several share a cell, the first in `PRECEDENCE` shows."""
    cells: dict[int, str] = {}
    for mark in marks:
        cell = min(width - 1, mark.seq * width // max(1, total))
        if cell not in cells or PRECEDENCE.index(mark.kind) < PRECEDENCE.index(cells[cell]):
            cells[cell] = mark.kind
    return cells


@dataclass(frozen=True)
class TransportState:
    position: int
    total: int
    sprint_time: float  # seconds since the sprint started, at the current event
    speed: str  # how fast playing goes: `×2 real time` or `50 ev/s`
    playing: bool
    event: str  # the current event in words (or where `n` landed)
    navigation: str = ""  # what `n` / `N` jump to


class Scrubber(Widget):
    DEFAULT_CSS = """
    Scrubber { height: 3; background: $panel; color: $foreground; padding: 0 1; }
    """

    class Seek(Message):
        """The user clicked on the bar: go to this event."""

        def __init__(self, seq: int) -> None:
            super().__init__()
            self.seq = seq

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.transport = TransportState(0, 0, 0.0, "×1 real time", False, "")
        self.marks: tuple[Mark, ...] = ()
        self.marks_total = 0

    def show(self, transport: TransportState) -> None:
        if transport != self.transport:
            self.transport = transport
            self.refresh()

    def set_marks(self, marks: Sequence[Mark], total: int) -> None:
        self.marks, self.marks_total = tuple(marks), total
        self.refresh()

    def render(self) -> Text:
        t = self.transport
        width = max(10, self.content_region.width)
        fraction = t.position / t.total if t.total else 0.0
        state = "▶ playing" if t.playing else "‖ paused"
        cells = mark_cells(self.marks, self.marks_total, width)
        glyphs = list(bar(fraction, width))
        for cell, kind in cells.items():
            glyphs[cell] = GLYPHS[kind]
        text = Text("".join(glyphs), style="bold")
        for cell, kind in cells.items():
            text.stylize(MARK_STYLES[kind], cell, cell + 1)
        status = f"{t.position}/{t.total} events · {format_elapsed(t.sprint_time)} · {t.speed} · {state}"
        if t.navigation:
            status += f" · {t.navigation}"
        if len(status) > width:  # narrow: the words that repeat what the numbers say go first
            status = status.replace(" events", "", 1).replace(" real time", "", 1)
        for line in (status, t.event):
            text.append("\n")
            text.append(line[:width - 1] + "…" if len(line) > width else line)
        return text

    def on_click(self, event: events.Click) -> None:
        width = max(1, self.content_region.width)
        if event.y == 0 and self.transport.total:
            x = min(max(0, event.x - self.styles.padding.left), width)
            self.post_message(self.Seek(round(x / width * self.transport.total)))
