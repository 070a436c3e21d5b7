"""The `:` command line and the `/` filter prompt: one input, two modes, hidden until asked for."""

from __future__ import annotations

from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input


class CommandLine(Input):
    BINDINGS = [Binding("escape", "close", "Close", id="command_line.close")]

    class Entered(Message):
        """A command or a filter was entered (named apart from Input.Submitted, which Input posts)."""

        def __init__(self, mode: str, text: str) -> None:
            super().__init__()
            self.mode = mode  # ":" command, "/" filter
            self.text = text

    def __init__(self) -> None:
        super().__init__(id="command-line")
        self.mode = ":"
        self.display = False

    def open(self, mode: str, value: str = "", *, select: bool = True) -> None:
        """Show the prompt with `value` in it: selected, so typing replaces it (a filter redone), or
        with `select=False` the cursor after it, so typing extends it (a command begun for the user)."""
        self.mode = mode
        self.select_on_focus = select
        self.placeholder = "command (reassign TASK AGENT, pause AGENT, theme NAME, q …)" if mode == ":" else (
            "filter messages: agent:ID type:TYPE priority:LEVEL text"
        )
        self.value = value
        self.display = True
        self.focus()

    def action_close(self) -> None:
        self.display = False
        self.screen.focus_next()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.display = False
        self.post_message(self.Entered(self.mode, event.value.strip()))
