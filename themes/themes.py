"""The dashboard's themes: Textual Theme objects with semantic status variables.

Widgets and `dashboard.tcss` never name a colour; they use these variables (e.g.
`$status-running`), so a theme restyles every status consistently.  Every status is also shown as
a symbol and a word, so no state is conveyed by colour alone.
"""

from __future__ import annotations

from typing import TypedDict

from textual.theme import Theme

STATUS_VARIABLES = (
    "status-pending",
    "status-ready",
    "status-running",
    "status-blocked",
    "status-completed",
    "status-failed",
    "status-cancelled",
    "status-retrying",
    "agent-ready",
    "agent-busy",
    "agent-unresponsive",
    "agent-connecting",
    "agent-dead",
    "agent-paused",
    "agent-waiting",
    "agent-error",
    "lock-read",
    "lock-write",
    "lock-exclusive",
    "file-clean",
    "file-modified",
    "file-conflict",
    "critical-path",
    "related-row",
)


class Base(TypedDict):
    """The colours every Textual theme names (widgets and the footer draw with these)."""

    primary: str
    secondary: str
    accent: str
    warning: str
    error: str
    success: str
    foreground: str
    background: str
    surface: str
    panel: str


def _theme(name: str, *, dark: bool, base: Base, status: dict[str, str]) -> Theme:
    missing = set(STATUS_VARIABLES) - set(status)
    assert not missing, f"theme {name} lacks {sorted(missing)}"
    return Theme(name=name, dark=dark, variables=status, **base)


DARK = _theme(
    "sprintdeck-dark",
    dark=True,
    base=Base(primary="#5fafff", secondary="#af87ff", accent="#ffaf5f", warning="#ffd75f", error="#ff5f5f",
              success="#87d787", foreground="#d0d0d0", background="#121212", surface="#1c1c1c", panel="#262626"),
    status={
        "status-pending": "#808080", "status-ready": "#87afff", "status-running": "#5fd7ff",
        "status-blocked": "#ffaf5f", "status-completed": "#87d787", "status-failed": "#ff5f5f",
        "status-cancelled": "#a8a8a8", "status-retrying": "#ffd75f",
        "agent-ready": "#87d787", "agent-busy": "#5fd7ff", "agent-unresponsive": "#ffd75f", "agent-connecting": "#87afd7",
        "agent-dead": "#ff5f5f", "agent-paused": "#af87ff", "agent-waiting": "#ffaf5f", "agent-error": "#ff87af",
        "lock-read": "#87afff", "lock-write": "#ffaf5f", "lock-exclusive": "#ff5f87",
        "file-clean": "#808080", "file-modified": "#87d787", "file-conflict": "#ff5f5f",
        "critical-path": "#ffaf00", "related-row": "#303a4a",
    },
)

LIGHT = _theme(
    "sprintdeck-light",
    dark=False,
    base=Base(primary="#005fd7", secondary="#5f00af", accent="#af5f00", warning="#875f00", error="#d70000",
              success="#008700", foreground="#1c1c1c", background="#fafafa", surface="#eeeeee", panel="#e4e4e4"),
    status={
        "status-pending": "#6c6c6c", "status-ready": "#005faf", "status-running": "#0087af",
        "status-blocked": "#af5f00", "status-completed": "#008700", "status-failed": "#d70000",
        "status-cancelled": "#585858", "status-retrying": "#875f00",
        "agent-ready": "#008700", "agent-busy": "#0087af", "agent-unresponsive": "#875f00", "agent-connecting": "#005f87",
        "agent-dead": "#d70000", "agent-paused": "#5f00af", "agent-waiting": "#af5f00", "agent-error": "#af005f",
        "lock-read": "#005faf", "lock-write": "#af5f00", "lock-exclusive": "#af005f",
        "file-clean": "#6c6c6c", "file-modified": "#008700", "file-conflict": "#d70000",
        "critical-path": "#af5f00", "related-row": "#dadaee",
    },
)

HIGH_CONTRAST = _theme(
    "sprintdeck-contrast",
    dark=True,
    base=Base(primary="#00ffff", secondary="#ff00ff", accent="#ffff00", warning="#ffff00", error="#ff0000",
              success="#00ff00", foreground="#ffffff", background="#000000", surface="#000000", panel="#000000"),
    status={
        "status-pending": "#ffffff", "status-ready": "#00ffff", "status-running": "#00ffff",
        "status-blocked": "#ffff00", "status-completed": "#00ff00", "status-failed": "#ff0000",
        "status-cancelled": "#ffffff", "status-retrying": "#ffff00",
        "agent-ready": "#00ff00", "agent-busy": "#00ffff", "agent-unresponsive": "#ffff00", "agent-connecting": "#ffffff",
        "agent-dead": "#ff0000", "agent-paused": "#ff00ff", "agent-waiting": "#ffff00", "agent-error": "#ff00ff",
        "lock-read": "#00ffff", "lock-write": "#ffff00", "lock-exclusive": "#ff00ff",
        "file-clean": "#ffffff", "file-modified": "#00ff00", "file-conflict": "#ff0000",
        "critical-path": "#ffff00", "related-row": "#0000aa",
    },
)

THEMES: dict[str, Theme] = {theme.name: theme for theme in (DARK, LIGHT, HIGH_CONTRAST)}
SHORT_NAMES = {"dark": DARK.name, "light": LIGHT.name, "contrast": HIGH_CONTRAST.name, "high-contrast": HIGH_CONTRAST.name}
DEFAULT_THEME = DARK.name


def resolve_theme(name: str) -> str | None:
    """Accept the full name or the short one (`dark`, `light`, `contrast`)."""
    return name if name in THEMES else SHORT_NAMES.get(name)
