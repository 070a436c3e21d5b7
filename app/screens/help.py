"""`?`: every key of the dashboard, grouped by where it applies."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS: list[tuple[str, list[tuple[str, str]]]] = [
    ("Anywhere", [
        ("?", "this help"), ("ctrl+p", "command palette"), (":", "command line"),
        ("/", "filter messages (agent:ID type:TYPE priority:LEVEL text)"),
        ("tab / shift+tab", "next / previous pane"), ("1–6", "Agents, Tasks, Locks, Messages, Files, Metrics"),
        ("z", "maximise / restore the focused pane"), ("p", "pause / resume the sprint (Agents pane: the agent)"),
        ("q", "quit (asks first while the sprint runs)"),
    ]),
    ("Lists", [("j / k", "down / up"), ("g / G", "first / last"), ("ctrl+d / ctrl+u", "half page down / up"),
               ("enter", "details")]),
    ("Tasks", [("r", "reassign to another capable agent"), ("R", "retry a failed task"),
               ("x", "cancel the task (asks first)"), ("+ / -", "raise / lower priority")]),
    ("Agents", [("p", "pause / resume the agent")]),
    ("Locks", [("u", "force-release the lock (asks first; recorded as an operator action)")]),
    ("Files", [("a", "accept the conflicting content"), ("v", "revert to the last good content"),
               ("m", "three-way merge"), ("e", "escalate: show the diff, then choose")]),
    ("Messages", [("f", "follow the newest message"), ("enter", "the whole message as JSON")]),
    ("Command line", [(":reassign TASK AGENT", ""), (":retry TASK", ""), (":cancel TASK", ""),
                      (":pause AGENT / :resume AGENT", ""), (":pause / :resume", "the whole sprint"),
                      (":release LOCK_ID", ""), (":priority TASK LEVEL", ""), (":filter …", ""),
                      (":theme NAME", "dark, light, contrast"), (":q", "quit")]),
]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def compose(self) -> ComposeResult:
        table = Table(box=None, expand=True, show_header=False)
        table.add_column("key", style="bold", no_wrap=True)
        table.add_column("what")
        for section, keys in KEYS:
            table.add_row(f"[u]{section}[/u]", "")
            for key, what in keys:
                table.add_row(key, what)
            table.add_row("", "")
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Static("Keys", classes="dialog-title")
            yield Static(table)
