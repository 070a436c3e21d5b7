"""The Tasks pane's graph mode (`v`): the DAG drawn in layers, one line of the window at a time.

The layout (`engine.dag_layout`) is made once per plan and kept while only statuses change; the
pane asks this drawing for the lines in its window, so a 10,000-task plan costs per repaint what
the window shows.  A status change repaints the changed nodes' cells and nothing else.

Which edges are drawn: every edge of a plan of up to `ALL_EDGES` tasks; above that, the edges of
the selected task only (its neighbourhood), the rest of the layout staying where it is.  A big
plan's thousand-odd edges in two-line gutters are a solid hatch that says nothing, whereas the
selection's edges stay readable and cost the same at any size; collapsing finished branches was
the other choice, and it does nothing at the start of a sprint, when a big plan is all pending.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.style import Style
from rich.text import Text
from textual.geometry import Region

from engine.dag_layout import (
    DOWN,
    GAP,
    GUTTER,
    LEFT,
    PITCH_Y,
    RIGHT,
    UP,
    EdgeCells,
    Grid,
    Layout,
)

ALL_EDGES = 150  # plans up to this many tasks show every edge; bigger ones the selection's
NODE_WIDTH = (14, 24)  # a node is as wide as the longest id needs, within these bounds
PLAIN, CRITICAL, SELECTED = 0, 1, 2  # edge ranks: the higher one colours a shared cell
JOINS = {
    0: " ", UP: "│", DOWN: "│", UP | DOWN: "│", LEFT: "─", RIGHT: "─", LEFT | RIGHT: "─",
    UP | RIGHT: "╰", UP | LEFT: "╯", DOWN | RIGHT: "╭", DOWN | LEFT: "╮",
    UP | DOWN | RIGHT: "├", UP | DOWN | LEFT: "┤", UP | LEFT | RIGHT: "┴", DOWN | LEFT | RIGHT: "┬",
    UP | DOWN | LEFT | RIGHT: "┼",
}
ARROW = "▼"

NodeText = Callable[[str, int], Text]  # (task, line of its node) -> that line, at most node_width cells


class GraphView:
    """One plan's drawing: the grid of nodes, and the edge cells for the current selection."""

    def __init__(self, layout: Layout) -> None:
        longest = max((len(task) for task in layout.place), default=0) + 2
        self.grid = Grid(layout, max(NODE_WIDTH[0], min(NODE_WIDTH[1], longest)))
        self.cells: EdgeCells = {}
        self.every_edge = len(layout.place) <= ALL_EDGES

    @property
    def layout(self) -> Layout:
        return self.grid.layout

    def select(self, task: str | None, critical: set[str]) -> None:
        """Route the edges drawn while `task` is selected: its own stand out, the critical path's
        are coloured as the table's ★ is."""
        children = self.layout.children
        sources = list(children) if self.every_edge else ([task] + self.layout.parents[task] if task else [])
        edges = []
        for source in sources:
            for target in children[source]:
                if not self.every_edge and task not in (source, target):
                    continue
                rank = SELECTED if task in (source, target) else CRITICAL if {source, target} <= critical else PLAIN
                edges.append((source, target, rank))
        self.cells = self.grid.route(edges)

    def node_region(self, task: str) -> Region:
        """The node's cells on the canvas."""
        x, y = self.grid.origin(task)
        return Region(x, y, self.grid.node_width, PITCH_Y - GUTTER)

    def line(self, y: int, x0: int, width: int, node_text: NodeText, edge_styles: list[Style]) -> Text:
        """Canvas line `y` from column `x0`, `width` cells: the nodes and edge cells that fall in it."""
        pieces: list[tuple[int, Text]] = []
        layer, line = divmod(y, PITCH_Y)
        if line < PITCH_Y - GUTTER and layer < len(self.layout.layers):
            pitch = self.grid.pitch_x
            for task in self.grid.in_columns(layer, (x0 - GAP) // pitch, (x0 + width) // pitch + 1):
                pieces.append((self.grid.origin(task)[0], node_text(task, line)))
        arrows = line == PITCH_Y - 1
        for x, (sides, rank) in self.cells.get(y, {}).items():
            if x0 - 1 <= x < x0 + width:
                glyph = ARROW if arrows and sides == UP | DOWN and (x - GAP) % self.grid.pitch_x == 0 else JOINS[sides]
                pieces.append((x, Text(glyph, style=edge_styles[rank])))
        pieces.sort(key=lambda piece: piece[0])
        text = Text(no_wrap=True, overflow="crop")
        start = min([x0, *(x for x, _ in pieces)])
        cursor = start
        for x, piece in pieces:
            if x < cursor:
                continue
            text.append(" " * (x - cursor))
            text.append_text(piece)
            cursor = x + piece.cell_len
        text = text[x0 - start:]
        text.truncate(width, pad=True)
        return text

