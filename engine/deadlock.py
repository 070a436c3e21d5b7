"""Deadlock detection for locks taken one by one: the wait-for graph and its cycles (DESIGN §4).

An owner waits on another when the other holds a conflicting lock, or queued earlier for a
conflicting one.  Waiting is refused (never a held lock revoked) when it would close a cycle.
networkx does the graph work; it is imported only here, and only when a request first has to wait
(a sprint whose locks never contend never loads it).
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


def wait_for_graph(queue: WaitQueue, blocking_owners: BlockingOwners, start: Iterable[str]) -> nx.DiGraph[str]:
    """The part of the wait-for graph reachable from the `start` owners (all of it if all waiters)."""
    import networkx as nx

    waiting: dict[str, list[QueuedRequest]] = {}
    for request in queue:
        waiting.setdefault(request.owner, []).append(request)
    graph: nx.DiGraph[str] = nx.DiGraph()
    frontier = deque(dict.fromkeys(start))
    seen = set(frontier)
    while frontier:
        owner = frontier.popleft()
        for request in waiting.get(owner, ()):
            for blocker, (item, _) in blocking_owners(owner, request.items, request.seq).items():
                graph.add_edge(owner, blocker, resource_id=item.path)
                if blocker not in seen:
                    seen.add(blocker)
                    frontier.append(blocker)
    return graph


def deadlock_if_queued(request: QueuedRequest, queue: WaitQueue, blocking_owners: BlockingOwners,
                       may_be_waited_on: bool) -> Conflict | None:
    """The refusal to give if queueing `request` would close a cycle, else None.

    The graph is acyclic before (every queueing is checked and grants never add a wait), so a new
    cycle must run through the asker: it exists when the asker can be reached from an owner it
    would wait on.  Only that reachable part is built, and only when a request is about to queue;
    nothing is built when the asker holds nothing and waits for nothing (`may_be_waited_on`).
    """
    blockers = blocking_owners(request.owner, request.items, None)
    if not blockers or not may_be_waited_on:
        return None
    graph = wait_for_graph(queue, blocking_owners, blockers)
    if request.owner not in graph:
        return None
    import networkx as nx

    for blocker, (item, obstacle) in blockers.items():
        if blocker in graph and nx.has_path(graph, blocker, request.owner):
            cycle = [request.owner, *nx.shortest_path(graph, blocker, request.owner)]
            conflict = explain(item, obstacle)
            reason = f"deadlock: waiting would close the wait-for cycle {' -> '.join(cycle)}; " + conflict.reason
            return replace(conflict, reason=reason)
    return None
