"""The dashboard App: the engine's state in six panes, operated from the keyboard.

Engine events arrive through a listener that only appends them to a buffer; a timer drains the
buffer 15 times a second and hands each pane the batch's changes (Textual redraws once per batch,
not once per message).  The operations themselves (reassign, retry, cancel, ...) live in
`app/operator_actions.py`; this module lays out the panes, feeds them, and reads the keyboard's
prompts (`:` commands, `/` filters).

`run` hands the App a `StartingSource`: the first frame shows the plan's tasks, and the engine is
built and started just after that frame is on screen (its imports are most of a third of a
second).  So nothing here imports the engine's models, events or manager at the top; the views
(details, help) are imported when opened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Grid
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer

from app.cli import EXIT_JOURNAL_FAILED
from app.config import load_config, save_config
from app.operator_actions import PRIORITIES, OperatorActions
from app.screens.confirm import ConfirmScreen
from app.source import StartingSource, StateSource
from engine.journal import JournalFailure
from engine.message_filter import Filter
from engine.message_store import MessageStore
from engine.metrics import sprint_metrics, sprint_outcome
from themes.themes import DEFAULT_THEME, THEMES, resolve_theme
from widgets.agents import AgentsPane
from widgets.changes import Changes
from widgets.command_line import CommandLine
from widgets.files import FilesPane
from widgets.header import SprintHeader
from widgets.locks import LocksPane
from widgets.messages import MessagesPane
from widgets.metrics import MetricsPane
from widgets.pane_tabs import PaneTabs
from widgets.status import colour
from widgets.tasks import TasksPane

if TYPE_CHECKING:
    from engine.events import Event
    from engine.file_history import FileHistory

BATCH_HZ = 15
# The panes in reading order (left to right, top to bottom): the grid fills in this order, and
# `1`-`6` and tab follow it, so each number names the pane where the eye expects it.
PANE_IDS = ["tasks", "agents", "messages", "locks", "files", "metrics"]
NARROW_WIDTH = 120
TABBED_WIDTH = 100  # below this, one pane at a time with a tab bar (80x24 left six three-row panes)
HEARTBEAT_SWITCH = {"on": True, "off": False}


class SprintDeckApp(OperatorActions):
    CSS_PATH = str(Path(__file__).resolve().parents[1] / "themes" / "dashboard.tcss")
    TITLE = "sprintdeck"
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?", id="app.help"),
        Binding("colon", "command_line", "Command", key_display=":", id="app.command"),
        Binding("slash", "filter", "Filter", key_display="/", id="app.filter"),
        Binding("p", "pause", "Pause", id="app.pause"),
        Binding("z", "toggle_maximize", "Maximise", id="app.maximize"),
        Binding("q", "request_quit", "Quit", id="app.quit"),
        *[
            Binding(str(n), f"focus_pane('{pane}')", pane.title(), show=False, id=f"app.focus_{pane}")
            for n, pane in enumerate(PANE_IDS, start=1)
        ],
    ]

    def __init__(
        self,
        source: StateSource,
        *,
        theme_name: str | None = None,
        clock: Callable[[], datetime] | None = None,
        config_file: Path | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.clock = clock or (lambda: datetime.now(UTC))
        self.config_file = config_file
        self.store = MessageStore()
        self._file_history: FileHistory | None = None
        self._pending: list[Event] = []
        self._flushes = 0
        self._announced_finish = False
        self._tab = PANE_IDS[0]  # the pane the tabbed layout shows
        for theme in THEMES.values():
            self.register_theme(theme)
        chosen = resolve_theme(theme_name or load_config(config_file).get("theme", "")) or DEFAULT_THEME
        self.theme = chosen

    # ------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # Kept as attributes: App.query_one searches the active screen, which is a modal at times.
        self.header = SprintHeader(id="header")
        self.tasks = TasksPane(id="tasks")
        self.agents = AgentsPane(id="agents")
        self.messages = MessagesPane(self.store, id="messages")
        self.locks = LocksPane(id="locks")
        self.files = FilesPane(id="files")
        self.metrics = MetricsPane(id="metrics")
        self.command_line = CommandLine()
        self.pane_tabs = PaneTabs(id="pane-tabs")
        yield self.header
        yield self.pane_tabs
        with Grid(id="panes"):  # wide panes on the left, narrow ones on the right
            yield from (getattr(self, pane) for pane in PANE_IDS)
        yield self.command_line
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.theme_changed_signal.subscribe(self, self._on_theme_changed)
        self._apply_width(self.size.width)
        if isinstance(self.source, StartingSource):  # `run`: the plan now, the engine after this frame
            self.header.show_plan(self.source.plan, journal=self.source.journal)
            self.tasks.show_plan(self.source.plan)
            self.call_after_refresh(self._start_engine)
        else:
            self._attach_source(draw=True)
        self.tasks.focus()

    def _start_engine(self) -> None:
        """Build the engine (the first frame is on screen) and follow it; a failure to build it ends
        the App, and `run` reports it (`StartingSource.started` raises it again)."""
        assert isinstance(self.source, StartingSource)
        try:
            self.source = self.source.started()
        except Exception:
            self.exit(return_code=1)
            return
        self._attach_source(draw=False)  # the first batch (the sprint's start) replaces the plan's rows

    def _attach_source(self, *, draw: bool) -> None:
        self.source.subscribe(self._on_engine_event)
        self._pending.extend(self.source.history())
        if draw:
            self._drain_events()
        self.set_interval(1 / BATCH_HZ, self._drain_events)
        if self.source.live:
            self._run_sprint()

    def _on_engine_event(self, event: Event) -> None:
        """Called by the engine for every event: only buffer it; the timer draws in batches."""
        self._pending.append(event)

    @work(exclusive=True, group="sprint")
    async def _run_sprint(self) -> None:
        try:
            await self.source.run()
        except JournalFailure:  # the sprint stopped; the command says why once the screen is gone
            self.exit(EXIT_JOURNAL_FAILED)

    def on_resize(self, event) -> None:
        self._apply_width(event.size.width)

    def _apply_width(self, width: int) -> None:
        """Narrow terminals split the width evenly; small ones show one pane at a time, as tabs;
        `z` maximises the focused one."""
        panes = self.screen_stack[0].query_one("#panes")
        panes.set_class(width < NARROW_WIDTH, "-narrow")
        panes.set_class(width < TABBED_WIDTH, "-tabbed")
        self.pane_tabs.display = self.tabbed
        if self.tabbed:
            self._show_tab(self._tab)

    @property
    def tabbed(self) -> bool:
        return self.screen_stack[0].query_one("#panes").has_class("-tabbed")

    def _show_tab(self, pane: str) -> None:
        """In the tabbed layout, the pane on screen (the others are hidden until their digit)."""
        self._tab = pane
        for other in PANE_IDS:
            self.screen_stack[0].query_one(f"#{other}").set_class(other == pane, "-tab-shown")
        self.pane_tabs.show([(p, p.title()) for p in PANE_IDS], pane, colour(self, "primary"))

    def on_descendant_focus(self, event) -> None:
        """Focus moved into a pane (a digit, tab, a click): the tab bar follows it."""
        pane = self._pane_of(event.widget) if isinstance(event.widget, Widget) else None
        if pane is not None and pane.id is not None and self.tabbed and pane.id != self._tab:
            self._show_tab(pane.id)

    def action_focus_next(self) -> None:
        self._step_tab(1) if self.tabbed else super().action_focus_next()

    def action_focus_previous(self) -> None:
        self._step_tab(-1) if self.tabbed else super().action_focus_previous()

    def _step_tab(self, step: int) -> None:
        self.action_focus_pane(PANE_IDS[(PANE_IDS.index(self._tab) + step) % len(PANE_IDS)])

    # ------------------------------------------------------------ batches

    def _drain_events(self) -> None:
        events, self._pending = self._pending, []
        self._flushes += 1
        if not events and self._flushes % BATCH_HZ != 1:
            return  # nothing new, and clocks shown (ages, TTLs) only move once a second
        if events:
            from widgets.event_changes import collect  # imports the event classes: after the first frame

            changes = collect(events)
        else:
            changes = Changes()
        self.ingest_messages(events)
        self.refresh_panes(changes)
        if self.source.finished and not self._announced_finish:
            self._announced_finish = True
            outcome = sprint_outcome(sprint_metrics(self.source.state))
            self.notify(f"Sprint finished: {outcome}", title="sprint finished")

    @property
    def file_history(self) -> FileHistory:
        """Every file's changes, for the file and task views; made with the first events (it
        imports the event classes, which the first frame goes without)."""
        if self._file_history is None:
            from engine.file_history import FileHistory

            self._file_history = FileHistory()
        return self._file_history

    def ingest_messages(self, events: Iterable[Event]) -> int:
        """The one way messages reach the Messages pane, live batches and replay chunks alike:
        store the `message` events, then let the pane show the new rows.  Returns how many.
        (File events go to the file history the same way.)"""
        events = list(events)
        self.file_history.append_events(events)
        appended = self.store.append_events(events)
        if appended:
            self.messages.messages_appended()
        return appended

    def refresh_panes(self, changes: Changes) -> None:
        state, now = self.source.state, self.clock()
        self.header.show(
            state, now, transport=self.source.transport, journal=self.source.journal, mode=self.source.mode
        )
        once_a_second = self._flushes % BATCH_HZ == 1
        if changes or once_a_second:
            self.tasks.refresh_state(state, changes, now)
            self.agents.refresh_state(state, changes, now)
            self.locks.refresh_state(state, changes, now)
            self.files.refresh_state(state, changes, now)
        if changes.everything or once_a_second:  # metrics summarise the whole sprint: 1 Hz is enough
            self.metrics.refresh_state(state, changes, now)

    def _on_theme_changed(self, theme) -> None:
        save_config({"theme": theme.name}, self.config_file)
        self.tasks.restyle()
        self.refresh_panes(Changes(everything=True))

    # ------------------------------------------------------------ details

    def on_messages_pane_selected(self, message: MessagesPane.Selected) -> None:
        """Enter on a message opens it whole, as JSON."""
        from app.screens.message_details import MessageDetailsScreen

        self.push_screen(MessageDetailsScreen.of(message.pane.store, message.index))

    def action_task_details(self) -> None:
        """Enter on a task: its story (attempts, locks, files, messages, neighbours); `j` the JSON."""
        from app.screens.task_view import TaskViewScreen

        task_id = self._selected_task()
        if task_id is not None:
            self.push_screen(TaskViewScreen(task_id, lambda: self.source.state, self.clock,
                                            store=self.store, files=self.file_history))

    def action_agent_details(self) -> None:
        from app.screens.agent_details import AgentDetailsScreen

        agent_id = self.agents.selected_key()
        if agent_id is not None:
            self.push_screen(AgentDetailsScreen(agent_id, lambda: self.source.state, self.clock,
                                                store=self.store, how_to_start=self.source.how_to_start(agent_id)))

    def action_file_details(self) -> None:
        """Enter on a file: who changed it, under which lock, its conflicts and their resolutions."""
        from app.screens.file_view import FileViewScreen

        path = self.files.selected_key()
        if path is not None:
            self.push_screen(FileViewScreen(path, lambda: self.source.state, self.clock,
                                            files=self.file_history))

    # ------------------------------------------------------------ navigation and prompts

    def action_help(self) -> None:
        from app.screens.help import LIVE_KEYS, HelpScreen

        self.push_screen(HelpScreen(LIVE_KEYS))

    def action_focus_pane(self, pane: str) -> None:
        widget = self.screen_stack[0].query_one(f"#{pane}")
        if self.tabbed:
            self._show_tab(pane)
        if self.screen.maximized is not None:
            self.screen.maximize(widget, container=False)
        widget.focus()

    def action_toggle_maximize(self) -> None:
        if self.screen.maximized is not None:
            self.screen.minimize()
        elif isinstance(self.focused, Widget):
            pane = self._pane_of(self.focused)
            if pane is not None and not self.screen.maximize(pane, container=False):
                self.notify(f"The {pane.id} pane cannot be maximised.", severity="warning")

    def _pane_of(self, widget: Widget) -> Widget | None:
        for node in (widget, *widget.ancestors):
            if isinstance(node, Widget) and node.id in PANE_IDS:
                return node
        return None

    def action_command_line(self) -> None:
        self.command_line.open(":")

    def action_filter(self) -> None:
        self.command_line.open("/", _filter_text(self.messages.filter))

    def action_request_quit(self) -> None:
        """Quit; while a live sprint still runs, ask first (quitting stops it)."""
        if self.source.live and not self.source.finished:
            self.push_screen(ConfirmScreen("The sprint is still running. Stop it and quit?"), self._quit_if_confirmed)
        else:
            self._stop_and_exit()

    async def action_quit(self) -> None:
        """Textual's ctrl+q: the same question as `q` while the sprint runs (it stopped the sprint
        without asking before)."""
        self.action_request_quit()

    def _quit_if_confirmed(self, yes: bool | None) -> None:
        if yes:
            self._stop_and_exit()

    @work(exclusive=True, group="shutdown")
    async def _stop_and_exit(self) -> None:
        """Stop agents and make the journal durable before the event loop goes away."""
        self.workers.cancel_group(self, "sprint")
        await self.source.stop()
        self.exit(0)

    async def on_command_line_entered(self, message: CommandLine.Entered) -> None:
        if message.mode == "/":
            self.apply_filter(message.text)
        else:
            self.run_command(message.text)

    def apply_filter(self, text: str) -> None:
        try:
            spec = parse_filter(text)
        except ValueError as exc:
            self.notify(str(exc), title="filter", severity="warning")
            return
        self.messages.set_filter(spec)

    def run_command(self, text: str) -> None:
        """`:` commands: the same operations as the keys, by name."""
        words = text.split()
        if not words:
            return
        name, args = words[0], words[1:]
        commands: dict[str, tuple[int, Callable[..., Any]]] = {
            "reassign": (2, self.reassign),
            "retry": (1, lambda t: self.action_retry(t)),
            "cancel": (1, lambda t: self.action_cancel_task(t)),
            "release": (1, lambda lock: self.action_force_release(lock)),
            "priority": (2, self._command_priority),
            "pause": (-1, lambda *a: self._command_pause(a, True)),
            "resume": (-1, lambda *a: self._command_pause(a, False)),
            "filter": (-1, lambda *a: self.apply_filter(" ".join(a))),
            "theme": (1, self._command_theme),
            "accept": (1, lambda p: self.action_resolve_file("accept", p)),
            "revert": (1, lambda p: self.action_resolve_file("revert", p)),
            "merge": (1, lambda p: self.action_resolve_file("merge", p)),
            "escalate": (1, lambda p: self.action_escalate_file(p)),
            "help": (0, self.action_help),
            "q": (0, lambda: self.action_request_quit()),
            "quit": (0, lambda: self.action_request_quit()),
        }
        if name not in commands:
            self.notify(f"unknown command {name!r}; try :help", title="command", severity="warning")
            return
        arity, handler = commands[name]
        if arity >= 0 and len(args) != arity:
            self.notify(f":{name} takes {arity} argument(s)", title="command", severity="warning")
            return
        handler(*args)

    def _command_theme(self, name: str) -> None:
        resolved = resolve_theme(name)
        if resolved is None:
            self.notify(f"unknown theme {name!r}; themes: dark, light, contrast", severity="warning")
            return
        self.theme = resolved

    # ------------------------------------------------------------ palette

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette: sprintdeck's own commands once each.  Textual's Keys, Maximize and Quit are
        left out: ours show every key, maximise the pane (not a widget in it), and ask before
        stopping a running sprint."""
        yield from (command for command in super().get_system_commands(screen) if command.title == "Screenshot")
        yield SystemCommand("Keys", "Show every key (?)", self.action_help)
        yield SystemCommand("Maximise or restore pane", "The focused pane fills the screen (z)",
                            self.action_toggle_maximize)
        yield SystemCommand("Quit", "Quit sprintdeck; asks first while the sprint runs (q)", self.action_request_quit)
        yield SystemCommand("Follow messages", "Keep the newest message in view", self.messages.action_toggle_follow)
        yield SystemCommand("Filter messages", "Filter the Messages pane", self.action_filter)
        for name in THEMES:
            yield SystemCommand(f"Theme: {name}", "Switch and remember the theme",
                                lambda name=name: setattr(self, "theme", name))
        yield from self.mode_commands()

    def mode_commands(self) -> Iterable[SystemCommand]:
        """The operator's commands; the replay dashboard offers its transport instead."""
        yield SystemCommand("Reassign task", "Move the selected task to another capable agent", self.action_reassign)
        yield SystemCommand("Retry task", "Run the selected failed task again", self.action_retry)
        yield SystemCommand("Cancel task", "Cancel the selected task", self.action_cancel_task)
        yield SystemCommand("Raise priority", "Raise the selected task's priority", lambda: self.action_priority(1))
        yield SystemCommand("Lower priority", "Lower the selected task's priority", lambda: self.action_priority(-1))
        yield SystemCommand("Pause or resume sprint", "Stop or restart dispatching work", self.action_pause)
        yield SystemCommand("Pause or resume agent", "The agent selected in the Agents pane", self._toggle_selected_agent)
        yield SystemCommand("Force-release lock", "Release the selected lock", self.action_force_release)
        for how in ("accept", "revert", "merge"):
            yield SystemCommand(f"Resolve conflict: {how}", f"{how.title()} the selected file's conflict",
                                lambda how=how: self.action_resolve_file(how))
        yield SystemCommand("Escalate conflict", "Show the selected file's diff", self.action_escalate_file)


def parse_filter(text: str) -> Filter | None:
    """`agent:backend type:task_assign priority:high some text` → a Filter (empty → none).

    `heartbeats:on` shows the heartbeats the Messages pane hides by default (`heartbeats:off` hides them)."""
    fields: dict[str, str | None] = {"agent": None, "type": None, "priority": None, "heartbeats": None}
    words = []
    for word in text.split():
        key, sep, value = word.partition(":")
        if sep and key in fields:
            if not value:
                raise ValueError(f"filter {key}: needs a value")
            if key == "priority" and value not in PRIORITIES:
                raise ValueError(f"priority must be one of {', '.join(PRIORITIES)}")
            if key == "heartbeats" and value not in HEARTBEAT_SWITCH:
                raise ValueError(f"heartbeats:{value}: say heartbeats:on or heartbeats:off")
            fields[key] = value
        else:
            words.append(word)
    text_part = " ".join(words) or None
    if not any(fields.values()) and text_part is None:
        return None
    beats = fields["heartbeats"]
    return Filter(agent=fields["agent"], type=fields["type"], priority=fields["priority"], text=text_part,
                  heartbeats=None if beats is None else HEARTBEAT_SWITCH[beats])


def _filter_text(spec: Filter | None) -> str:
    if spec is None:
        return ""
    parts = [f"{key}:{value}" for key in ("agent", "type", "priority") if (value := getattr(spec, key))]
    if spec.heartbeats is not None:
        parts.append(f"heartbeats:{'on' if spec.heartbeats else 'off'}")
    if spec.text:
        parts.append(spec.text)
    return " ".join(parts)
