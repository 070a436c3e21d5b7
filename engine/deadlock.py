"""Deadlock detection for locks taken one by one: the wait-for graph and its cycles (DESIGN §4).

An owner waits on another when the other holds a conflicting lock, or queued earlier for a
conflicting one.  Waiting is refused (never a held lock revoked) when it would close a cycle.
The check walks plain dicts: it runs whenever a request first has to wait, which in the sample
sprints is in their first second, and importing networkx for it cost the dashboard's first paint
100 ms.  `wait_for_graph` gives the same graph as a networkx DiGraph, for tests and diagnostics.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from engine.lock_queue import WaitQueue
from engine.lock_records import Conflict, Item, Obstacle, QueuedRequest, explain

if TYPE_CHECKING:
    import networkx as nx

#: (owner, items, before) -> every owner those items would wait on, with its first obstacle
BlockingOwners = Callable[[str, Iterable[Item], int | None], dict[str, tuple[Item, Obstacle]]]


#: owner -> {owner it waits on: the resource it waits for}
WaitsOn = dict[str, dict[str, str]]


def waits_on(queue: WaitQueue, blocking_owners: BlockingOwners, start: Iterable[str]) -> WaitsOn:
    """The part of the wait-for graph reachable from the `start` owners (all of it if all waiters)."""
    waiting: dict[str, list[QueuedRequest]] = {}
    for request in queue:
        waiting.setdefault(request.owner, []).append(request)
    edges: WaitsOn = {}
    frontier = deque(dict.fromkeys(start))
    seen = set(frontier)
    while frontier:
        owner = frontier.popleft()
        for request in waiting.get(owner, ()):
            for blocker, (item, _) in blocking_owners(owner, request.items, request.seq).items():
                edges.setdefault(owner, {})[blocker] = item.path
                if blocker not in seen:
                    seen.add(blocker)
                    frontier.append(blocker)
    return edges


def wait_for_graph(queue: WaitQueue, blocking_owners: BlockingOwners, start: Iterable[str]) -> nx.DiGraph[str]:
    """`waits_on` as a networkx graph, edges labelled with their `resource_id`."""
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph()
    for owner, blockers in waits_on(queue, blocking_owners, start).items():
        for blocker, resource_id in blockers.items():
            graph.add_edge(owner, blocker, resource_id=resource_id)
    return graph


def shortest_path(edges: WaitsOn, source: str, target: str) -> list[str] | None:
    """The owners on a shortest path of waits from `source` to `target` (both included), or None."""
    before: dict[str, str | None] = {source: None}
    frontier = deque([source])
    while frontier:
        owner = frontier.popleft()
        if owner == target:
            path = [owner]
            while (previous := before[path[-1]]) is not None:
                path.append(previous)
            return path[::-1]
        for blocker in edges.get(owner, {}):
            if blocker not in before:
                before[blocker] = owner
                frontier.append(blocker)
    return None


def deadlock_if_queued(request: QueuedRequest, queue: WaitQueue, blocking_owners: BlockingOwners,
                       may_be_waited_on: bool) -> Conflict | None:
    """The refusal to give if queueing `request` would close a cycle, else None.

    The graph is acyclic before (every queueing is checked and grants never add a wait), so a new
    cycle must run through the asker: it exists when the asker can be reached from an owner it
    would wait on.  Only that reachable part is walked, and only when a request is about to queue;
    nothing is walked when the asker holds nothing and waits for nothing (`may_be_waited_on`).
    """
    blockers = blocking_owners(request.owner, request.items, None)
    if not blockers or not may_be_waited_on:
        return None
    edges = waits_on(queue, blocking_owners, blockers)
    for blocker, (item, obstacle) in blockers.items():
        path = shortest_path(edges, blocker, request.owner)
        if path is not None:
            cycle = [request.owner, *path]
            conflict = explain(item, obstacle)
            reason = f"deadlock: waiting would close the wait-for cycle {' -> '.join(cycle)}; " + conflict.reason
            return replace(conflict, reason=reason)
    return None
