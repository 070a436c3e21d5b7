"""PaneTabs: the tab bar of the small-terminal layout, one pane at a time with its number.

At 80×24 six panes side by side leave each three rows, too few to read a task list; the dashboard
shows one pane at full size instead and this line says which one it is and which digit opens each
of the others.  The shown tab is bracketed and bold as well as coloured, so it reads without colour.
"""

from __future__ import annotations

from rich.text import Text

from widgets.text_line import TextLines


class PaneTabs(TextLines):
    DEFAULT_CSS = "PaneTabs { height: 1; background: $panel; }"

    def show(self, panes: list[tuple[str, str]], active: str, accent: str = "") -> None:
        """`panes` are (id, label) in key order; `active` is the id of the pane on screen."""
        text = Text(" ")
        for number, (pane, label) in enumerate(panes, start=1):
            if pane == active:
                text.append(f"[{number} {label}]", style=f"bold reverse {accent}".strip())
            else:
                text.append(f" {number} {label} ")
            text.append(" ")
        text.append(" · 1-6 or tab switch")
        self.set_text(text)
