"""The Messages pane: keys, following the tail, details modal, filters, a million rows, snapshot."""

from __future__ import annotations

import json

from test_message_store import fill, make_message
from textual.app import App, ComposeResult
from textual.widgets import Footer, Static

from app.screens.message_details import MessageDetailsScreen
from engine.message_filter import Filter
from engine.message_store import MessageStore
from widgets.messages import MessagesPane

SIZE = (120, 40)
PAGE = 40 - 2  # rows inside the border at 120x40


class PaneApp(App[None]):
    """The smallest host: one pane over a store, focused, with a footer for its bindings."""

    CSS = "MessagesPane { height: 1fr; }"

    def __init__(self, store: MessageStore) -> None:
        super().__init__()
        self.store = store
        self.selected: list[int] = []
        self.filters: list[Filter | None] = []

    def compose(self) -> ComposeResult:
        # Every message shown, heartbeats too: these tests count rows by store index.  The
        # dashboard's default (heartbeats hidden) is tested in test_heartbeats_are_hidden_by_default.
        yield MessagesPane(self.store, id="messages", hide_heartbeats=False)

    def on_mount(self) -> None:
        self.query_one(MessagesPane).focus()

    def on_messages_pane_selected(self, message: MessagesPane.Selected) -> None:
        """What the dashboard does with a selected message: open it."""
        self.selected.append(message.index)
        self.push_screen(MessageDetailsScreen.of(self.store, message.index))

    def on_messages_pane_filter_changed(self, message: MessagesPane.FilterChanged) -> None:
        self.filters.append(message.filter)


def store_of(count: int) -> MessageStore:
    store = MessageStore()
    fill(store, count)
    return store


async def test_starts_following_the_tail() -> None:
    app = PaneApp(store_of(100))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = app.query_one(MessagesPane)
        assert pane.border_title == "Messages"
        assert pane.follow and pane.cursor_index == 99
        assert pane.scroll_offset.y == 100 - PAGE


async def test_keys_move_the_cursor() -> None:
    app = PaneApp(store_of(100))
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(MessagesPane)
        await pilot.press("k", "up")
        assert pane.cursor_index == 97 and not pane.follow
        await pilot.press("j")
        assert pane.cursor_index == 98
        await pilot.press("g")
        assert pane.cursor_index == 0 and pane.scroll_offset.y == 0
        await pilot.press("ctrl+d")
        assert pane.cursor_index == PAGE // 2
        await pilot.press("ctrl+u", "down", "down")
        assert pane.cursor_index == 2
        await pilot.press("end")
        assert pane.cursor_index == 99 and pane.follow
        await pilot.press("home", "G")
        assert pane.cursor_index == 99 and pane.follow
        await pilot.press("pageup")
        assert pane.cursor_index == 99 - PAGE
        assert pane.scroll_offset.y <= pane.cursor_row < pane.scroll_offset.y + PAGE


async def test_new_messages_scroll_into_view_while_following() -> None:
    store = store_of(100)
    app = PaneApp(store)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(MessagesPane)
        await pilot.pause()
        fill(store, 25, start=100)
        pane.messages_appended()
        await pilot.pause()
        assert pane.cursor_index == 124
        assert pane.scroll_offset.y == 125 - PAGE
        assert "125 · following" in str(pane.border_subtitle)


async def test_scrolled_up_the_view_stays_put() -> None:
    store = store_of(100)
    app = PaneApp(store)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(MessagesPane)
        await pilot.press("g")
        fill(store, 25, start=100)
        pane.messages_appended()
        await pilot.pause()
        assert not pane.follow
        assert pane.cursor_index == 0 and pane.scroll_offset.y == 0
        assert pane.virtual_size.height == 125
        await pilot.press("f")  # follow again: jump to the newest
        assert pane.follow and pane.cursor_index == 124
        assert pane.scroll_offset.y == 125 - PAGE
        await pilot.press("f")
        assert not pane.follow


async def test_enter_opens_the_message_as_json() -> None:
    store = store_of(20)
    app = PaneApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("k", "k", "enter")
        await pilot.pause()
        assert app.selected == [17]
        screen = app.screen
        assert isinstance(screen, MessageDetailsScreen)
        assert json.loads(screen.json_text) == make_message(17)
        shown = str(screen.query_one("#message-details-json", Static).render())
        assert f'"id": "{17:032x}"' in shown and '"taskId": "task_17"' in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, MessageDetailsScreen)
        await pilot.press("enter", "q")
        assert not isinstance(app.screen, MessageDetailsScreen)


async def test_filter_narrows_the_rows() -> None:
    store = store_of(100)
    app = PaneApp(store)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(MessagesPane)
        await pilot.press("g", "j", "j", "j")  # on index 3, a heartbeat
        pane.set_filter(Filter(type="heartbeat"))
        await pilot.pause()
        assert pane.row_count == 20 and pane.filter == Filter(type="heartbeat")
        assert pane.cursor_index == 3  # the cursor kept its message
        assert app.filters == [Filter(type="heartbeat")]
        assert "20 of 100" in str(pane.border_subtitle)
        await pilot.press("j")
        assert pane.cursor_index == 8
        fill(store, 10, start=100)
        pane.messages_appended()
        assert pane.row_count == 22
        pane.set_filter(None)
        assert pane.row_count == 110 and pane.filter is None and pane.cursor_index == 8


async def test_highlight_seq_marks_and_shows_the_row() -> None:
    app = PaneApp(store_of(200))
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(MessagesPane)
        assert pane.highlight_seq(51)
        await pilot.pause()
        assert pane.highlighted_index == 50 and pane.cursor_index == 50 and not pane.follow
        assert pane.scroll_offset.y <= 50 < pane.scroll_offset.y + PAGE
        assert not pane.highlight_seq(10_000)
        assert pane.highlighted_index is None


async def test_bindings_have_ids_and_the_footer_shows_details_and_follow() -> None:
    class WithFooter(PaneApp):
        def compose(self) -> ComposeResult:
            yield MessagesPane(self.store)
            yield Footer()

    app = WithFooter(store_of(5))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        ids = {binding.id for binding in MessagesPane.BINDINGS}
        assert {"messages.down", "messages.up", "messages.first", "messages.last", "messages.details",
                "messages.follow", "messages.half_page_down", "messages.half_page_up"} <= ids
        shown = {b.description for (_, b, enabled, _) in app.screen.active_bindings.values() if b.show}
        assert {"Details", "Follow"} <= shown


async def test_a_million_messages_render_only_the_visible_lines(monkeypatch) -> None:
    messages = [make_message(i) for i in range(1000)]
    store = MessageStore()
    for i in range(1_000_000):
        store.append(i + 1, messages[i % 1000])
    rendered: list[int] = []
    original = MessagesPane.render_line

    def counting(self: MessagesPane, y: int):
        rendered.append(self.scroll_offset.y + y)
        return original(self, y)

    monkeypatch.setattr(MessagesPane, "render_line", counting)
    app = PaneApp(store)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = app.query_one(MessagesPane)
        assert pane.virtual_size.height == 1_000_000
        assert pane.cursor_index == 999_999
        assert len(list(app.screen.walk_children())) < 10  # no widget per line
        assert rendered and set(rendered) <= set(range(1_000_000 - PAGE, 1_000_000))
        assert len(rendered) <= 4 * PAGE  # a few repaints of one screen, never the store
        assert len(pane._summaries) <= 2 * PAGE


def snapshot_app() -> PaneApp:
    """Fixed data at fixed times; the cursor a few rows up and one row highlighted."""
    store = MessageStore()
    fill(store, 60)
    store.append(61, make_message(60) | {"type": "resource_conflict", "priority": "critical",
                                         "payload": {"resourceId": "server/routes.ts", "lockType": "write",
                                                     "holder": "backend", "holderMode": "write",
                                                     "holderTask": "implement_api"}})
    return PaneApp(store)


def test_snapshot_pane(snap_compare) -> None:
    async def setup(pilot) -> None:
        pane = pilot.app.query_one(MessagesPane)
        pane.highlight_seq(55)
        await pilot.press("k", "k")

    assert snap_compare(snapshot_app(), terminal_size=SIZE, run_before=setup)


def test_snapshot_details(snap_compare) -> None:
    assert snap_compare(snapshot_app(), terminal_size=SIZE, press=["enter"])


async def test_a_theme_change_restyles_the_drawn_lines() -> None:
    app = PaneApp(store_of(10))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = app.query_one(MessagesPane)
        before = pane.render_line(0).text, pane.get_component_rich_style("messages--time")
        app.theme = "textual-light"
        await pilot.pause()
        after = pane.render_line(0).text, pane.get_component_rich_style("messages--time")
        assert before[0] == after[0] and before[1] != after[1]
        assert list(pane.render_line(0))[1].style == pane.get_component_rich_style("messages--time")


async def test_focus_changes_the_cursor_style() -> None:
    class TwoPanes(PaneApp):
        def compose(self) -> ComposeResult:
            yield MessagesPane(self.store, id="messages")
            yield MessagesPane(self.store, id="other")

    app = TwoPanes(store_of(3))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = app.query_one("#messages", MessagesPane)
        y = pane.cursor_row - pane.scroll_offset.y
        focused = list(pane.render_line(y))[1].style
        app.query_one("#other").focus()
        await pilot.pause()
        blurred = list(pane.render_line(y))[1].style
        assert focused != blurred


class DefaultPaneApp(PaneApp):
    """The pane as the dashboard builds it: heartbeats hidden by default."""

    def __init__(self, store: MessageStore, width: int) -> None:
        super().__init__(store)
        self.width = width

    def compose(self) -> ComposeResult:
        yield MessagesPane(self.store, id="messages")

    def on_mount(self) -> None:
        self.query_one(MessagesPane).styles.width = self.width
        super().on_mount()


async def test_heartbeats_are_hidden_by_default_and_a_filter_shows_them() -> None:
    app = DefaultPaneApp(store_of(100), 120)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = app.query_one(MessagesPane)
        assert pane.row_count == 80 and pane.filter is None  # every fifth message is a heartbeat
        assert pane.border_title == "Messages · heartbeats hidden (/heartbeats:on)"
        assert "80 of 100" in str(pane.border_subtitle)
        assert all(app.store.summary(pane._view[row]).type != "heartbeat" for row in range(pane.row_count))
        pane.set_filter(Filter(heartbeats=True))
        await pilot.pause()
        assert pane.row_count == 100 and pane.border_title == "Messages"
        assert "heartbeats=on" in str(pane.border_subtitle)
        pane.set_filter(Filter(type="heartbeat"))  # naming the type shows them too
        assert pane.row_count == 20 and pane.border_title == "Messages"
        pane.set_filter(Filter(agent="backend"))  # another filter keeps them hidden
        assert pane.heartbeats_hidden and pane.border_title.endswith("heartbeats hidden (/heartbeats:on)")


async def test_a_narrow_pane_keeps_the_task_id_before_the_priority_and_milliseconds() -> None:
    app = DefaultPaneApp(store_of(10), 60)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = app.query_one(MessagesPane)
        lines = [pane.render_line(y).text for y in range(pane.row_count)]
        assignment = next(line for line in lines if "task_as…" in line)  # the type gave way too
        assert "task_0 #1" in assignment, assignment  # the summary starts with the task id
        assert "critical" not in " ".join(lines) and "medium" not in " ".join(lines)  # priority gave way
        wide = DefaultPaneApp(store_of(10), 120)
    async with wide.run_test(size=SIZE) as pilot:
        await pilot.pause()
        pane = wide.query_one(MessagesPane)
        assert any("critical" in pane.render_line(y).text for y in range(pane.row_count))
