"""Where each task sits in the dashboard's drawing of the DAG, and how to walk it along its edges.

Layers are dependency depths: a task sits one layer below its deepest dependency, so every edge
points down.  Within a layer, tasks are ordered by the mean column of their dependencies and drawn
under it where the layer has room (one barycentre sweep from the top), which keeps most edges short
and uncrossed; ties keep plan order.  That is a Sugiyama layering without its dummy nodes and
repeated sweeps: computed once per plan in one pass over the edges, 36 ms for 10,000 tasks.  What
was measured before writing it (benchmarks/BENCHMARKS.md, issue 18): networkx's
`topological_generations` gives the layers alone at the same cost once its graph is built;
grandalf's full Sugiyama takes seconds at 1,000 tasks; netext, tens of seconds at 200.

Pure data, no drawing: the dashboard's graph view (widgets/task_graph.py) turns slots into cells.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from engine.dag import longest_paths


@dataclass(frozen=True)
class Layout:
    """Layers of task ids, top (no dependencies) first, each in drawing order."""

    layers: list[list[str]]
    place: dict[str, tuple[int, int]]  # task -> (layer, slot): the slot is its rank in the layer
    columns: dict[str, int]  # task -> the column it is drawn in (a layer's columns grow with its slots)
    parents: dict[str, list[str]]  # task -> its dependencies (tasks of the plan only)
    children: dict[str, list[str]]  # task -> the tasks that depend on it
    signature: tuple[tuple[str, tuple[str, ...]], ...] = field(repr=False)

    @property
    def widest(self) -> int:
        """How many columns the drawing needs."""
        return max(self.columns.values(), default=-1) + 1


def signature_of(parents: Mapping[str, Sequence[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """What a layout depends on: tasks and their dependencies (a status change leaves it equal)."""
    return tuple((task, tuple(deps)) for task, deps in parents.items())


def layered(parents: Mapping[str, Sequence[str]]) -> Layout:
    """The layout of a plan given each task's dependencies (in plan order; unknown ones ignored).

    Raises ValueError on a cycle (a loaded plan has none)."""
    deps = {task: list(dict.fromkeys(d for d in ds if d in parents)) for task, ds in parents.items()}
    children: dict[str, list[str]] = {task: [] for task in deps}
    for task, ds in deps.items():
        for dep in ds:
            children[dep].append(task)
    # The longest path up to a root, counted in tasks, is the depth plus one.
    depth = {task: int(length) - 1 for task, length in longest_paths(deps, dict.fromkeys(deps, 1.0)).items()}
    layers: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for task in deps:  # plan order within a layer, before the sweep
        layers[depth[task]].append(task)
    slot: dict[str, int] = {}
    columns: dict[str, int] = {}
    for number, layer in enumerate(layers):
        wanted = {task: _barycentre(deps[task], columns) for task in layer}
        if number:
            order = {task: position for position, task in enumerate(layer)}
            layer.sort(key=lambda task: (wanted[task], order[task]))
        column = -1
        for position, task in enumerate(layer):  # under its dependencies, where the layer has room
            slot[task] = position
            column = columns[task] = max(column + 1, round(wanted[task]) if number else position)
    place = {task: (depth[task], slot[task]) for task in deps}
    return Layout(layers, place, columns, deps, children, signature_of(parents))


def _barycentre(deps: Sequence[str], columns: Mapping[str, int]) -> float:
    return sum(columns[dep] for dep in deps) / len(deps) if deps else 0.0


# ---------------------------------------------------------------- walking the drawing


def step(layout: Layout, task: str, direction: str, came_from: str | None = None) -> str:
    """The task reached from `task` by one move: "down" to a dependent, "up" to a dependency,
    "left"/"right" to the neighbour in the layer.  Going back the way one came returns to
    `came_from` when it is a neighbour that way; otherwise the nearest one in drawing order.
    Where there is nowhere to go, `task` itself."""
    layer, slot = layout.place[task]
    if direction in ("left", "right"):
        row = layout.layers[layer]
        return row[max(0, min(len(row) - 1, slot + (1 if direction == "right" else -1)))]
    targets = layout.children[task] if direction == "down" else layout.parents[task]
    if not targets:
        return task
    if came_from in targets:
        return came_from
    return min(targets, key=lambda other: (abs(layout.place[other][1] - slot), layout.place[other]))


# ---------------------------------------------------------------- cells

NODE_HEIGHT = 2  # a node's lines: its mark and id; its status, owner and attempt
GUTTER = 3  # lines between two layers: two tracks for edges, then the arrows into the layer below
PITCH_Y = NODE_HEIGHT + GUTTER
GAP = 2  # columns between two nodes of a layer; the right one carries edges that skip layers
UP, DOWN, LEFT, RIGHT = 1, 2, 4, 8  # which neighbours an edge cell joins

EdgeCells = dict[int, dict[int, tuple[int, int]]]  # y -> x -> (joined sides, highest rank through it)


@dataclass(frozen=True)
class Grid:
    """The layout in character cells: nodes `node_width` wide on a fixed pitch, edges between."""

    layout: Layout
    node_width: int

    @property
    def pitch_x(self) -> int:
        return self.node_width + GAP

    @property
    def size(self) -> tuple[int, int]:
        return GAP + self.layout.widest * self.pitch_x, max(0, len(self.layout.layers) * PITCH_Y - GUTTER)

    def origin(self, task: str) -> tuple[int, int]:
        """The top-left cell of a task's node."""
        return GAP + self.layout.columns[task] * self.pitch_x, self.layout.place[task][0] * PITCH_Y

    def in_columns(self, layer: int, first: int, last: int) -> list[str]:
        """The tasks of a layer drawn in columns `first` to `last` (a layer's columns ascend)."""
        row = self.layout.layers[layer]
        columns = self.layout.columns
        start = bisect_left(row, first, key=columns.__getitem__)
        end = bisect_right(row, last, lo=start, key=columns.__getitem__)
        return row[start:end]

    def node_at(self, x: int, y: int) -> str | None:
        """The task whose node covers cell (x, y), if any."""
        layer, line = divmod(y, PITCH_Y)
        column, offset = divmod(x - GAP, self.pitch_x)
        if line >= NODE_HEIGHT or offset >= self.node_width or x < GAP or not 0 <= layer < len(self.layout.layers):
            return None
        found = self.in_columns(layer, column, column)
        return found[0] if found else None

    def route(self, edges: Sequence[tuple[str, str, int]]) -> EdgeCells:
        """The cells of these (dependency, dependent, rank) edges.  An edge leaves the bottom of its
        dependency, runs along a track of the gutter below it and enters its dependent from above;
        one that skips layers runs down the gap left of its dependent.  Overlapping edges share
        cells (the joins show as ┼, ├, ┬ …), and a cell keeps the highest rank through it."""
        pieces: dict[int, list[tuple[int, int, int]]] = {}  # gutter -> (from x, to x, edge)
        plans = []
        for number, (source, target, _) in enumerate(edges):
            (xs, ys), (xt, yt) = self.origin(source), self.origin(target)
            turn = xt if yt - ys == PITCH_Y else xt - GAP
            plans.append((xs, ys, xt, yt, turn))
            pieces.setdefault(ys, []).append((min(xs, turn), max(xs, turn), number))
            if turn != xt:
                pieces.setdefault(yt - PITCH_Y, []).append((min(turn, xt), max(turn, xt), number))
        tracks = {(gutter, number): track for gutter, spans in pieces.items() for (_, _, number), track in _tracks(spans)}
        cells: EdgeCells = {}
        for number, (xs, ys, xt, yt, turn) in enumerate(plans):
            first = ys + NODE_HEIGHT + tracks[ys, number]
            last = first if turn == xt else yt - GUTTER + tracks[yt - PITCH_Y, number]
            points = [(xs, ys + NODE_HEIGHT), (xs, first), (turn, first), (turn, last), (xt, last), (xt, yt - 1)]
            _paint(cells, points, edges[number][2])
        return cells


def _tracks(spans: list[tuple[int, int, int]]) -> list[tuple[tuple[int, int, int], int]]:
    """Horizontal runs of one gutter onto its two tracks: the first track free by then, else the one
    free soonest (two runs then share a stretch)."""
    ends = [-2] * (GUTTER - 1)
    chosen = []
    for span in sorted(spans):
        free = [track for track, end in enumerate(ends) if end + 1 < span[0]]
        track = free[0] if free else min(range(len(ends)), key=ends.__getitem__)
        ends[track] = max(ends[track], span[1])
        chosen.append((span, track))
    return chosen


def _paint(cells: EdgeCells, points: list[tuple[int, int]], rank: int) -> None:
    """Join consecutive points with straight runs; the first point joins the node above it, the
    last the node below."""
    _mark(cells, points[0], UP, rank)
    _mark(cells, points[-1], DOWN, rank)
    for (x1, y1), (x2, y2) in pairwise(points):
        if (x1, y1) == (x2, y2):
            continue
        if x1 == x2:
            low, high = sorted((y1, y2))
            for y in range(low, high + 1):
                _mark(cells, (x1, y), (DOWN if y < high else 0) | (UP if y > low else 0), rank)
        else:
            low, high = sorted((x1, x2))
            for x in range(low, high + 1):
                _mark(cells, (x, y1), (RIGHT if x < high else 0) | (LEFT if x > low else 0), rank)


def _mark(cells: EdgeCells, point: tuple[int, int], sides: int, rank: int) -> None:
    x, y = point
    row = cells.setdefault(y, {})
    old_sides, old_rank = row.get(x, (0, -1))
    row[x] = (old_sides | sides, max(old_rank, rank))
