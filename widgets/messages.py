"""The Messages pane: every IPC message of the sprint, virtualised over the engine's `MessageStore`.

A sprint can carry a million messages, so the pane never builds a widget (or even a string) per
message: it is a line-API `ScrollView` whose virtual height is the number of visible rows, and
`render_line` decodes just the messages on screen.  Newest messages are at the bottom and the pane
follows the tail until the user scrolls or moves the cursor up; `f` toggles following.

Heartbeats are hidden unless a filter asks for them (`/heartbeats:on`, or `/type:heartbeat`), and
the title says so.  When the pane is narrow, the decorative columns (priority, milliseconds, the
type's full width) give way first, so each line's summary keeps its task id in view.
"""

from __future__ import annotations

from dataclasses import replace

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.message_filter import Filter, FilteredView
from engine.message_store import MessageStore
from engine.message_summary import MessageSummary
from widgets.message_columns import AGENT_MAX, AGENT_MIN, ARROW, column_widths, fit
from widgets.message_columns import clock as _clock  # tests read times as the pane prints them

CURSOR_MARK, HIGHLIGHT_MARK = "▶", "●"


class MessagesPane(ScrollView, can_focus=True, inherit_bindings=False):
    """A scrollable, filterable log of every message, one line each, with a cursor row."""

    BORDER_TITLE = "Messages"

    COMPONENT_CLASSES = {
        "messages--time",
        "messages--type",
        "messages--agents",
        "messages--summary",
        "messages--priority-critical",
        "messages--priority-high",
        "messages--priority-medium",
        "messages--priority-low",
        "messages--cursor",
        "messages--highlight",
    }

    DEFAULT_CSS = """
    MessagesPane {
        border: round $panel;
        border-title-color: $text-muted;
        border-subtitle-color: $text-muted;
        overflow-x: hidden;
        overflow-y: scroll;
        &:focus {
            border: round $accent;
            border-title-color: $accent;
            & > .messages--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
        & > .messages--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        & > .messages--time { color: $text-muted; }
        & > .messages--type { color: $text-accent; }
        & > .messages--agents { color: $text-secondary; }
        & > .messages--summary { color: $foreground; }
        & > .messages--priority-critical { color: $text-error; text-style: bold; }
        & > .messages--priority-high { color: $text-warning; }
        & > .messages--priority-medium { color: $foreground; }
        & > .messages--priority-low { color: $text-muted; }
        & > .messages--highlight { background: $accent 30%; }
    }
    """

    BINDINGS = [
        Binding("j,down", "cursor_down", "Down", show=False, id="messages.down"),
        Binding("k,up", "cursor_up", "Up", show=False, id="messages.up"),
        Binding("g,home", "cursor_first", "First", show=False, id="messages.first"),
        Binding("G,end", "cursor_last", "Last", show=False, id="messages.last"),
        Binding("ctrl+d", "half_page(1)", "Half page down", show=False, id="messages.half_page_down"),
        Binding("ctrl+u", "half_page(-1)", "Half page up", show=False, id="messages.half_page_up"),
        Binding("pagedown", "page(1)", "Page down", show=False, id="messages.page_down"),
        Binding("pageup", "page(-1)", "Page up", show=False, id="messages.page_up"),
        Binding("enter", "select", "Details", id="messages.details"),
        Binding("f", "toggle_follow", "Follow", id="messages.follow"),
    ]

    follow: reactive[bool] = reactive(True, init=False)
    """Keep the newest message in view (and under the cursor) as messages arrive."""

    class Selected(Message):
        """The user pressed enter on a message (or double-clicked it); `index` is its index in the store.

        The App opens it: the Messages pane only says which one.
        """

        def __init__(self, pane: MessagesPane, index: int) -> None:
            super().__init__()
            self.pane = pane
            self.index = index

        @property
        def control(self) -> MessagesPane:
            return self.pane

    class FilterChanged(Message):
        """The pane's filter changed (None: everything is shown)."""

        def __init__(self, pane: MessagesPane, filter: Filter | None) -> None:
            super().__init__()
            self.pane = pane
            self.filter = filter

        @property
        def control(self) -> MessagesPane:
            return self.pane

    def __init__(
        self,
        store: MessageStore,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
        hide_heartbeats: bool = True,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self.store = store
        self.hide_heartbeats = hide_heartbeats
        self._filter: Filter | None = None
        self._view = FilteredView(store, self._shown(None))
        self._cursor: int | None = None  # a row of the view, not a store index
        self._highlight: int | None = None  # a store index (replay's current message)
        self._summaries: LRUCache[int, MessageSummary] = LRUCache(1024)
        self._styles: dict[str | None, Style] | None = None  # resolved once per paint
        # Drawn lines: a repaint (tail moved, subtitle changed) redraws only the rows it has not seen.
        self._strips: LRUCache[tuple[int, int, int, bool, bool, bool], Strip] = LRUCache(512)

    # ------------------------------------------------------------ public API for the App

    @property
    def filter(self) -> Filter | None:
        return self._filter

    @property
    def row_count(self) -> int:
        """Rows the current filter shows."""
        return len(self._view)

    @property
    def cursor_row(self) -> int | None:
        return self._cursor

    @property
    def cursor_index(self) -> int | None:
        """The store index under the cursor (None while there is nothing to show)."""
        return None if self._cursor is None else self._view[self._cursor]

    def messages_appended(self) -> None:
        """Show messages appended to the store since the last call: O(new messages), not O(store)."""
        added = self._view.update()
        if not added:
            return
        self._sync_virtual_size()
        if self.follow:
            self._go_to_tail()
        else:
            if self._cursor is None:
                self._cursor = 0
            first_new = len(self._view) - added
            if first_new < self.scroll_offset.y + self._page_height():  # new rows land on screen
                self.refresh_lines(first_new, added)
        self._update_subtitle()

    def _shown(self, filter: Filter | None) -> Filter | None:
        """The filter the view applies: the user's, with the pane's heartbeat default filled in."""
        if not self.hide_heartbeats:
            return filter
        if filter is None:
            return Filter(heartbeats=False)
        return filter if filter.heartbeats is not None else replace(filter, heartbeats=False)

    @property
    def heartbeats_hidden(self) -> bool:
        shown = self._shown(self._filter)
        return shown is not None and shown.hides_heartbeats

    def set_filter(self, filter: Filter | None) -> None:
        """Show only the messages `filter` matches (one scan); the cursor stays on its message."""
        if filter is not None and filter.is_empty and filter.heartbeats is None:
            filter = None
        keep = self.cursor_index
        self._filter = filter
        self._view = FilteredView(self.store, self._shown(filter), self._view.limit)
        self._sync_virtual_size()
        if self.follow or keep is None:
            self._go_to_tail()
        else:
            self._set_cursor(self._view.nearest_row(keep) if len(self._view) else None)
        self.refresh()
        self._update_subtitle()
        self.post_message(self.FilterChanged(self, filter))

    def set_limit(self, limit: int | None) -> None:
        """Show only the messages before store index `limit` (None: all of them).

        A replay keeps the whole recording in the store; this keeps the pane at its cursor, so
        going back in time takes the later messages off the screen.
        """
        if limit == self._view.limit:
            return
        self._view.set_limit(limit)
        self._sync_virtual_size()
        if self.follow or self._cursor is None:
            self._go_to_tail()
        else:
            self._set_cursor(self._cursor)  # clamped to the rows still shown
        self.refresh()
        self._update_subtitle()

    def highlight_seq(self, seq: int | None) -> bool:
        """Mark the message journaled as event `seq` (replay's position) and bring it into view.

        Returns False when no such message is shown under the current filter.  The cursor moves
        onto the marked row; following stops unless it is the newest row.
        """
        index = None if seq is None else self.store.index_of_seq(seq)
        previous, self._highlight = self._highlight, index
        self._refresh_index(previous)
        row = None if index is None else self._view.row_of(index)
        if row is None:
            return False
        self._set_cursor(row)
        self.follow = row == len(self._view) - 1
        return True

    @property
    def highlighted_index(self) -> int | None:
        return self._highlight

    # ------------------------------------------------------------ rendering

    def render_lines(self, crop: Region) -> list[Strip]:
        """Resolve the styles once per paint (not per cell); while following, pin the tail first
        so even the first frame shows the newest message."""
        self._styles = self._style_table()
        if self.follow:
            tail = max(0, len(self._view) - self._page_height())
            if self.scroll_offset.y != tail:
                self.scroll_to(y=tail, animate=False, immediate=True)
        return super().render_lines(crop)

    def _style_table(self) -> dict[str | None, Style]:
        """Full component styles (not partial): colours with alpha, like $text-muted, need the
        background they are blended onto."""
        table: dict[str | None, Style] = {None: self.rich_style}
        for component in self.COMPONENT_CLASSES:
            table[component] = self.get_component_rich_style(component)
        table["messages--highlight"] = Style(bgcolor=table["messages--highlight"].bgcolor)
        return table

    def render_line(self, y: int) -> Strip:
        """Draw screen line `y`: only the rows on screen are ever decoded."""
        row = self.scroll_offset.y + y
        width = self.scrollable_content_region.width
        if row >= len(self._view):
            return Strip.blank(width, self.rich_style)
        index = self._view[row]
        is_cursor = row == self._cursor
        key = (index, width, self._agent_width(), is_cursor, is_cursor and self.has_focus, index == self._highlight)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._strips[key] = Strip(self._segments(index, is_cursor, width), width)
        return strip

    def _summary(self, index: int) -> MessageSummary:
        summary = self._summaries.get(index)
        if summary is None:
            summary = self._summaries[index] = self.store.summary(index)
        return summary

    def _agent_width(self) -> int:
        return max(AGENT_MIN, min(AGENT_MAX, self.store.longest_agent))

    def _segments(self, index: int, is_cursor: bool, width: int) -> list[Segment]:
        summary = self._summary(index)
        styles = self._styles or self._style_table()
        highlighted = index == self._highlight
        overlay = styles["messages--cursor"] if is_cursor else styles["messages--highlight"] if highlighted else None
        mark = CURSOR_MARK if is_cursor else HIGHLIGHT_MARK if highlighted else " "
        time_width, priority_width, type_width, agent = column_widths(width, self._agent_width())
        cells = [
            (f"{mark} ", None),
            (_clock(summary.time)[:time_width] + " ", "messages--time"),
            (fit(summary.priority, priority_width) + " " if priority_width else "", f"messages--priority-{summary.priority}"),
            (fit(summary.type, type_width) + " ", "messages--type"),
            (fit(summary.sender, agent) + ARROW + fit(summary.recipient, agent) + " ", "messages--agents"),
        ]
        used = sum(cell_len(text) for text, _ in cells)
        cells.append((fit(summary.summary_text, width - used), "messages--summary"))
        plain = styles[None]
        segments = []
        for text, component in cells:
            style = styles.get(component, plain)
            segments.append(Segment(text, style + overlay if overlay is not None else style))
        return segments

    def notify_style_update(self) -> None:
        """A theme change restyles every line (summaries are plain text, so they stay cached)."""
        super().notify_style_update()
        self._styles = None
        self._strips.clear()
        self.refresh()

    # ------------------------------------------------------------ cursor and scrolling

    def _page_height(self) -> int:
        return max(1, self.scrollable_content_region.height)

    def _sync_virtual_size(self) -> None:
        """Grow the scroll range; re-lay out the screen only when the scrollbar appears or goes.

        `virtual_size` is a layout reactive: assigning it on every batch re-laid out the whole
        dashboard (~90 ms with six panes) although only this pane's scroll range changed.
        """
        size = Size(0, len(self._view))
        if size == self.virtual_size:
            return
        height = self.scrollable_content_region.height
        if (size.height > height) != (self.virtual_size.height > height):
            self.virtual_size = size
            return
        self.set_reactive(MessagesPane.virtual_size, size)
        self._scroll_update(size)
        self.refresh()

    def _set_cursor(self, row: int | None) -> None:
        """Move the cursor to `row` (clamped), repaint the two rows and keep it on screen."""
        if row is not None:
            row = max(0, min(row, len(self._view) - 1)) if len(self._view) else None
        previous, self._cursor = self._cursor, row
        if previous is not None:
            self.refresh_line(previous)
        if row is not None:
            self.refresh_line(row)
            self._scroll_row_into_view(row)

    def _scroll_row_into_view(self, row: int) -> None:
        top, height = self.scroll_offset.y, self._page_height()
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + height:
            self.scroll_to(y=row - height + 1, animate=False, immediate=True)

    def _go_to_tail(self) -> None:
        rows = len(self._view)
        self._set_cursor(rows - 1 if rows else None)
        self.scroll_to(y=max(0, rows - self._page_height()), animate=False, immediate=True)

    def _refresh_index(self, index: int | None) -> None:
        row = None if index is None else self._view.row_of(index)
        if row is not None:
            self.refresh_line(row)

    def _move_by(self, delta: int) -> None:
        """A user move: following stops when the cursor leaves the newest row, resumes on it."""
        if not len(self._view):
            return
        start = len(self._view) - 1 if self._cursor is None else self._cursor
        self._set_cursor(start + delta)
        self.follow = self._cursor == len(self._view) - 1

    def _update_title(self) -> None:
        """The title says when heartbeats are left out, and how to see them."""
        hidden = " · heartbeats hidden (/heartbeats:on)" if self.heartbeats_hidden else ""
        self.border_title = f"{self.BORDER_TITLE}{hidden}"

    def _update_subtitle(self) -> None:
        self._update_title()
        shown, total = len(self._view), len(self.store)
        if self._view.limit is not None:
            total = min(total, self._view.limit)
        count = f"{shown:,}" if self._shown(self._filter) is None else f"{shown:,} of {total:,}"
        parts = [count, "following" if self.follow else "paused"]
        if self._filter is not None:
            parts.append(f"filter {self._filter.describe()}")
        self.border_subtitle = " · ".join(parts)

    def watch_follow(self, follow: bool) -> None:
        if follow:
            self._go_to_tail()
        self._update_subtitle()

    def on_mount(self) -> None:
        self._sync_virtual_size()
        self._update_subtitle()
        rows = len(self._view)
        if rows:
            self._cursor = rows - 1 if self.follow else 0
        self.call_after_refresh(self._scroll_to_cursor)  # the page height is known after layout

    def on_resize(self) -> None:
        self.call_after_refresh(self._scroll_to_cursor)

    def _scroll_to_cursor(self) -> None:
        """Bring the cursor back on screen (the tail when following) without moving it."""
        if self.follow:
            self.scroll_to(y=max(0, len(self._view) - self._page_height()), animate=False, immediate=True)
        elif self._cursor is not None:
            self._scroll_row_into_view(self._cursor)

    # ------------------------------------------------------------ actions and mouse

    def action_cursor_down(self) -> None:
        self._move_by(1)

    def action_cursor_up(self) -> None:
        self._move_by(-1)

    def action_cursor_first(self) -> None:
        self._move_by(-len(self._view))

    def action_cursor_last(self) -> None:
        self._move_by(len(self._view))

    def action_half_page(self, direction: int) -> None:
        self._move_by(direction * max(1, self._page_height() // 2))

    def action_page(self, direction: int) -> None:
        self._move_by(direction * self._page_height())

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def action_select(self) -> None:
        """Tell the App which message to open: the screens are the App's (widgets never import it)."""
        index = self.cursor_index
        if index is not None:
            self.post_message(self.Selected(self, index))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        row = self.scroll_offset.y + offset.y
        if row < len(self._view):
            self._set_cursor(row)
            self.follow = row == len(self._view) - 1
            if event.chain == 2:
                self.action_select()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        """Scrolling up to read history stops the tail from pulling the view down."""
        self.follow = False

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        if self.scroll_offset.y >= self.max_scroll_y:
            self.follow = True
