"""PaneTable: the keyed, virtualised table every list pane uses (Tasks, Agents, Locks, Files).

A line-API ScrollView: it renders only the visible lines, and updating a row by key repaints that
one line.  Textual's DataTable was the first choice, but every cell update there invalidates an
index over all rows, so a 10,000-task sprint paid O(rows) per change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = Text | str
GAP = 2  # spaces between columns


class PaneTable(ScrollView, can_focus=True):
    """Rows keyed by id, a sticky header line, a row cursor, vim movement keys."""

    COMPONENT_CLASSES = {"pane-table--header", "pane-table--cursor"}
    DEFAULT_CSS = """
    PaneTable {
        overflow-x: hidden;
        overflow-y: auto;
        & > .pane-table--header { text-style: bold; color: $foreground; background: $panel; }
        & > .pane-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
        }
        &:focus > .pane-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """
    BINDINGS = [
        Binding("j,down", "cursor(1)", "Down", show=False, id="pane.down"),
        Binding("k,up", "cursor(-1)", "Up", show=False, id="pane.up"),
        Binding("g,home", "cursor_to(0)", "Top", show=False, id="pane.top"),
        Binding("G,end", "cursor_to(-1)", "Bottom", show=False, id="pane.bottom"),
        Binding("ctrl+d,pagedown", "half_page(1)", "Half page down", show=False, id="pane.half_down"),
        Binding("ctrl+u,pageup", "half_page(-1)", "Half page up", show=False, id="pane.half_up"),
    ]

    class Highlighted(Message):
        """The cursor moved to the row with this key (None: the table is empty)."""

        def __init__(self, table: PaneTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> PaneTable:
            return self.table

    COLUMNS: list[tuple[str, str]] = []  # (key, label); a subclass names its columns
    # Columns hidden, first to last, while the rows are wider than the pane: decorative ones, so the
    # key columns (an id, a holder, a reason) are never cut before them.  Unlisted columns stay.
    DROP_ORDER: list[str] = []

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._columns: list[str] = [key for key, _ in self.COLUMNS]
        self._labels: list[str] = [label for _, label in self.COLUMNS]
        self._widths: list[int] = [len(label) for label in self._labels]
        # Per column, how many rows have a cell of each width: a column narrows again when its
        # widest cell goes (a long reason once shown must not keep other columns off screen).
        self._width_counts: list[Counter[int]] = [Counter() for _ in self._labels]
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._row_cells: dict[str, list[Text]] = {}
        self._cursor = 0

    # ------------------------------------------------------------ data

    @property
    def rows(self) -> dict[str, list[Text]]:
        return self._row_cells

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_row(self) -> int:
        return self._cursor

    def keys(self) -> list[str]:
        """Row keys in display order."""
        return list(self._order)

    def get_row(self, key: str) -> list[Text]:
        return self._row_cells[key]

    def get_cell(self, key: str, column: str) -> Text:
        return self._row_cells[key][self._columns.index(column)]

    def add_row(self, *cells: Cell, key: str) -> None:
        self._index[key] = len(self._order)
        self._order.append(key)
        self._row_cells[key] = self._texts(cells)
        self._sync_size(self._count(self._row_cells[key], 1))
        if len(self._order) == 1:
            self.post_message(self.Highlighted(self, key))

    def upsert(self, key: str, cells: Sequence[Cell], columns: list[str] | None = None) -> None:
        """Add the row, or replace it and repaint just its line (no rebuild per event)."""
        if key not in self._row_cells:
            self.add_row(*cells, key=key)
            return
        texts = self._texts(cells)
        old = self._row_cells[key]
        if texts == old:
            return
        self._row_cells[key] = texts
        widened = self._count(texts, 1)  # in before out: a cell of the same width changes nothing
        if self._count(old, -1) or widened:
            self._sync_size(True)
        else:
            self._refresh_row(self._index[key])

    def update_cell(self, key: str, column: str, value: Cell) -> None:
        row = list(self._row_cells[key])
        row[self._columns.index(column)] = value if isinstance(value, Text) else Text(value)
        self.upsert(key, row)

    def remove_row(self, key: str) -> None:
        position = self._index.pop(key)
        self._count(self._row_cells.pop(key), -1)
        del self._order[position]
        for later in self._order[position:]:
            self._index[later] -= 1
        self._cursor = min(self._cursor, max(0, len(self._order) - 1))
        self._sync_size(False)
        self.refresh()

    def clear(self) -> None:
        self._order.clear()
        self._index.clear()
        self._row_cells.clear()
        self._widths = [len(label) for label in self._labels]
        self._width_counts = [Counter() for _ in self._labels]
        self._sync_size(True)

    def selected_key(self) -> str | None:
        """The key of the highlighted row, or None when the table is empty."""
        return self._order[self._cursor] if self._order else None

    def move_cursor(self, *, row: int) -> None:
        if not self._order:
            return
        row = max(0, min(row, len(self._order) - 1))
        previous, self._cursor = self._cursor, row
        self._refresh_row(previous)
        self._refresh_row(row)
        self._scroll_to_row(row)
        if previous != row:
            self.post_message(self.Highlighted(self, self._order[row]))

    @staticmethod
    def _texts(cells: Iterable[Cell]) -> list[Text]:
        return [cell if isinstance(cell, Text) else Text(str(cell)) for cell in cells]

    def _count(self, texts: list[Text], step: int) -> bool:
        """Count a row's cells in (step 1) or out (-1) of the column widths; True if a width changed."""
        changed = False
        for position, text in enumerate(texts[: len(self._widths)]):
            width, counts = text.cell_len, self._width_counts[position]
            counts[width] += step
            if step > 0 and width > self._widths[position]:
                self._widths[position] = width
                changed = True
            elif step < 0 and counts[width] <= 0:
                del counts[width]
                if width == self._widths[position]:
                    self._widths[position] = max([len(self._labels[position]), *counts])
                    changed = changed or self._widths[position] != width
        return changed

    # ------------------------------------------------------------ geometry

    def _sync_size(self, full_refresh: bool) -> None:
        """Grow the scroll range; a screen layout only when the scrollbar appears or goes."""
        size = Size(sum(self._widths) + GAP * len(self._widths), len(self._order) + 1)
        if size != self.virtual_size:
            height = self.scrollable_content_region.height
            if (size.height > height) != (self.virtual_size.height > height):
                self.virtual_size = size
            else:
                self.set_reactive(PaneTable.virtual_size, size)
                self._scroll_update(size)
        if full_refresh:
            self.refresh()
        elif self._order:
            self._refresh_row(len(self._order) - 1)

    def _refresh_row(self, row: int) -> None:
        y = row - self.scroll_offset.y + 1
        if 1 <= y < self.scrollable_content_region.height:
            self.refresh(Region(0, y, self.scrollable_content_region.width, 1))

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _scroll_to_row(self, row: int) -> None:
        top = self.scroll_offset.y
        if row < top:
            self.scroll_to(y=row, animate=False)
        elif row >= top + self._page():
            self.scroll_to(y=row - self._page() + 1, animate=False)

    # ------------------------------------------------------------ rendering

    def shown_columns(self, width: int | None = None) -> list[str]:
        """The columns drawn at `width` (default: the pane's): all that fit, decorative ones
        (`DROP_ORDER`) left out first."""
        return [self._columns[i] for i in self._fitting(self.scrollable_content_region.width if width is None else width)]

    def _fitting(self, width: int) -> list[int]:
        shown = list(range(len(self._columns)))
        total = sum(self._widths) + GAP * len(self._widths)
        for key in self.DROP_ORDER:
            if total - GAP <= width:
                break
            position = self._columns.index(key)
            shown.remove(position)
            total -= self._widths[position] + GAP
        return shown

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if y == 0:
            return self._strip(list(map(Text, self._labels)), self.get_component_rich_style("pane-table--header"), width)
        row = self.scroll_offset.y + y - 1
        if row >= len(self._order):
            return Strip.blank(width, self.rich_style)
        key = self._order[row]
        style = self.get_component_rich_style("pane-table--cursor") if row == self._cursor else None
        return self._strip(self._row_cells[key], style, width)

    def _strip(self, texts: list[Text], style: Style | None, width: int) -> Strip:
        line = Text(no_wrap=True, overflow="crop")
        for position in self._fitting(width):
            cell = texts[position].copy() if position < len(texts) else Text()
            cell.truncate(self._widths[position], pad=True)
            line.append_text(cell)
            line.append(" " * GAP)
        line.rstrip()
        line.truncate(width, overflow="ellipsis", pad=True)
        if style is not None:
            line.stylize(style)
        segments = list(line.render(self.app.console))
        return Strip(segments, width).apply_style(self.rich_style)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self.refresh()

    # ------------------------------------------------------------ keys and mouse

    def action_cursor(self, step: int) -> None:
        self.move_cursor(row=self._cursor + step)

    def action_cursor_to(self, row: int) -> None:
        self.move_cursor(row=row if row >= 0 else len(self._order) - 1)

    def action_half_page(self, direction: int) -> None:
        self.move_cursor(row=self._cursor + direction * max(1, self._page() // 2))

    def on_click(self, event: events.Click) -> None:
        if event.y >= 1:
            self.move_cursor(row=self.scroll_offset.y + event.y - 1)

