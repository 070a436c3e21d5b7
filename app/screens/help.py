"""`?`: every key of the dashboard, grouped by where it applies.

The live dashboard and the replay dashboard each pass the sections that are true for them: a
recording cannot be operated, so its help lists the transport keys instead of the operator keys.
"""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

Section = tuple[str, list[tuple[str, str]]]

ANYWHERE: list[tuple[str, str]] = [
    ("?", "this help (j / k, g / G scroll it)"), ("ctrl+p", "command palette"), (":", "command line"),
    ("/", "filter messages (agent:ID type:TYPE priority:LEVEL heartbeats:on text)"),
    ("tab / shift+tab", "next / previous pane"), ("1–6", "Tasks, Agents, Messages, Locks, Files, Metrics"),
    ("z", "maximise / restore the focused pane"),
]
LISTS: Section = ("Lists", [("j / k", "down / up"), ("g / G", "first / last"),
                            ("ctrl+d / ctrl+u", "half page down / up"),
                            ("enter", "open the task, agent or file view (j: JSON)"),
                            ("v", "Tasks: table / graph of the DAG (graph: j / k along edges, ← / → in the layer)")])
MESSAGES: Section = ("Messages", [("f", "follow the newest message"), ("enter", "the whole message as JSON")])

LIVE_KEYS: list[Section] = [
    ("Anywhere", [*ANYWHERE, ("p", "pause / resume the sprint (Agents pane: the agent)"),
                  ("q", "quit (asks first while the sprint runs)")]),
    LISTS,
    ("Tasks", [("r", "reassign to another capable agent"), ("R", "retry a failed task"),
               ("x", "cancel the task (asks first)"), ("+ / -", "raise / lower priority")]),
    ("Agents", [("p", "pause / resume the agent")]),
    ("Locks", [("u", "force-release the lock (asks first; recorded as an operator action)")]),
    ("Files", [("a", "accept the conflicting content"), ("v", "revert to the last good content"),
               ("m", "three-way merge"), ("e", "escalate: show the diff, then choose")]),
    MESSAGES,
    ("Command line", [(":reassign TASK AGENT", ""), (":retry TASK", ""), (":cancel TASK", ""),
                      (":pause AGENT / :resume AGENT", ""), (":pause / :resume", "the whole sprint"),
                      (":release LOCK_ID", ""), (":priority TASK LEVEL", ""), (":filter …", ""),
                      (":theme NAME", "dark, light, contrast"), (":q", "quit")]),
]


def replay_keys(transport: list[tuple[str, str]], commands: list[tuple[str, str]]) -> list[Section]:
    """The replay dashboard's help: its transport keys and commands, then the keys it shares with
    the live dashboard (moving around, filtering); no operator key, since a recording is read-only."""
    return [
        ("Replay", transport),
        ("Anywhere", [*ANYWHERE, ("q", "quit")]),
        LISTS,
        MESSAGES,
        ("Command line", [*commands, (":filter …", ""), (":theme NAME", "dark, light, contrast"), (":q", "quit")]),
    ]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape,q,question_mark", "dismiss", "Close", id="help.close"),
        Binding("j,down", "scroll('down')", "Down", show=False, id="help.down"),
        Binding("k,up", "scroll('up')", "Up", show=False, id="help.up"),
        Binding("g,home", "scroll('home')", "Top", show=False, id="help.top"),
        Binding("G,end", "scroll('end')", "Bottom", show=False, id="help.bottom"),
        Binding("ctrl+d,pagedown", "scroll('page_down')", "Page down", show=False, id="help.page_down"),
        Binding("ctrl+u,pageup", "scroll('page_up')", "Page up", show=False, id="help.page_up"),
    ]

    def __init__(self, sections: list[Section]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_header=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("what")
        for section, keys in self.sections:
            table.add_row(f"[u]{section}[/u]", "")
            for key, what in keys:
                table.add_row(key, what)
            table.add_row("", "")
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Static("Keys", classes="dialog-title")
            yield Static(table)

    def action_scroll(self, where: str) -> None:
        """The list keys scroll the help as they move a list: j / k a line, g / G to an end."""
        box = self.query_one("#help-dialog", VerticalScroll)
        getattr(box, f"scroll_{where}")(animate=False)
