"""The shape shared by the task, agent and file views: a titled page of words and tables over one
record, redrawn from the state every second (a live sprint and a playing replay move on), with the
raw JSON one key (`j`) away and Escape to close.

Each view says what it shows in `sections(state, now)`; this class lays the sections out, keeps
them current and swaps to the record's JSON and back.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.models import ProjectState

Section = tuple[str, RenderableType]  # (heading, body): a heading "" shows the body alone


def table(headers: list[str], rows: Sequence[Sequence[str]], empty: str) -> RenderableType:
    """A plain table of words (no box: it reads as text), or `empty` when there are no rows."""
    if not rows:
        return empty
    grid = Table(box=None, show_edge=False, pad_edge=False, expand=False, header_style="bold")
    for header in headers:
        grid.add_column(header, overflow="fold")
    for row in rows:
        grid.add_row(*row)
    return grid


class RecordView(ModalScreen[None]):
    """A page about one record; subclasses give `heading`, `sections` and `record`."""

    DEFAULT_CSS = """
    RecordView { align: center middle; }
    RecordView > #record-view {
        width: 96%; max-width: 150; height: 92%;
        padding: 0 1; background: $surface; border: thick $primary;
    }
    RecordView #view-title { text-style: bold; color: $primary; }
    RecordView .view-hint { color: $foreground-muted; }
    RecordView #view-body { margin-top: 1; }
    """
    BINDINGS = [
        Binding("escape,q", "dismiss", "Close", id="view.close"),
        Binding("j", "toggle_json", "Raw JSON", id="view.json"),
    ]

    def __init__(self, state: Callable[[], ProjectState], clock: Callable[[], datetime]) -> None:
        super().__init__()
        self._state = state
        self._clock = clock
        self.showing_json = False

    # ------------------------------------------------------------ what a view says

    def heading(self, state: ProjectState) -> str:
        raise NotImplementedError

    def sections(self, state: ProjectState, now: datetime) -> list[Section]:
        raise NotImplementedError

    def record(self, state: ProjectState) -> dict[str, Any]:
        raise NotImplementedError

    def head(self) -> ComposeResult:
        """Widgets of the view's own above the sections (none by default)."""
        yield from ()

    def redraw_head(self, state: ProjectState, now: datetime) -> None:
        """Bring `head`'s widgets up to date (called with every redraw)."""

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="record-view"):
            yield Static(id="view-title", markup=False)
            yield Static("Esc close · j raw JSON", classes="view-hint")
            yield from self.head()
            yield Static(id="view-body")

    def on_mount(self) -> None:
        self.redraw()
        self.set_interval(1.0, self.redraw)  # a live sprint moves on, and so does a playing replay

    def redraw(self) -> None:
        state, now = self._state(), self._clock()
        self.query_one("#view-title", Static).update(self.heading(state))
        self.redraw_head(state, now)
        body = self.query_one("#view-body", Static)
        if self.showing_json:
            body.update(Syntax(json.dumps(self.record(state), indent=2), "json", theme="ansi_dark", word_wrap=True))
            return
        parts: list[RenderableType] = []
        for heading, content in self.sections(state, now):
            if heading:
                parts.append(f"[bold]{heading}[/bold]")
            parts.append(content)
            parts.append("")
        body.update(Group(*parts[:-1]))

    def action_toggle_json(self) -> None:
        self.showing_json = not self.showing_json
        self.redraw()
