"""How one line of the Messages pane is laid out: its columns, their widths, and which give way.

A line is `mark time priority type sender → recipient summary`.  The summary is what an operator
reads (it starts with the task id and attempt), so when the pane is narrow the decorative columns
give way first: the priority, then the agents' width, then the type's, then the time's milliseconds.
"""

from __future__ import annotations

from rich.cells import cell_len, set_cell_size

TIME_WIDTH = 12  # HH:MM:SS.mmm
PRIORITY_WIDTH = 8  # "critical"
TYPE_WIDTH = 18  # "request_assistance"
AGENT_MIN, AGENT_MAX = 6, 16
ARROW = " → "
SUMMARY_MIN = 24  # cells of summary (a task id and attempt, say) kept before decorative columns


def clock(seconds: float) -> str:
    """HH:MM:SS.mmm in UTC, the journal's time zone, so replays read the same everywhere."""
    millis = round(seconds * 1_000_000) // 1000 % 86_400_000  # exact micros, truncated to ms
    minutes, millis = divmod(millis, 60_000)
    return f"{minutes // 60:02d}:{minutes % 60:02d}:{millis // 1000:02d}.{millis % 1000:03d}"


def fit(text: str, width: int) -> str:
    """Pad or cut `text` to exactly `width` cells, marking a cut with an ellipsis."""
    if width <= 0:
        return ""
    if text.isascii():  # the common case, without measuring cells
        return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
    if cell_len(text) > width:
        return set_cell_size(text, width - 1) + "…"
    return set_cell_size(text, width)


def column_widths(width: int, agent: int) -> tuple[int, int, int, int]:
    """(time, priority, type, agent) widths for a line `width` cells wide: each decorative column
    gives way in turn, so the summary keeps SUMMARY_MIN cells while the width allows it."""
    time_width, priority_width, type_width = TIME_WIDTH, PRIORITY_WIDTH, TYPE_WIDTH

    def summary_room() -> int:
        used = 2 + time_width + 1 + (priority_width + 1 if priority_width else 0) + type_width + 1
        return width - used - (2 * agent + len(ARROW) + 1)

    for shrink in ("priority", "agents", "type", "millis"):
        if summary_room() >= SUMMARY_MIN:
            break
        if shrink == "priority":
            priority_width = 0
        elif shrink == "agents":
            agent = AGENT_MIN
        elif shrink == "type":
            type_width = max(8, type_width - (SUMMARY_MIN - summary_room()))
        else:
            time_width = 8  # HH:MM:SS
    return time_width, priority_width, type_width, agent
