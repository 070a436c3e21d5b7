"""The cyclic garbage collector, tuned for a running sprint.

A sprint builds tens of thousands of objects that live as long as it does (the DAG, ranks, every
task's state); the collector walking them again and again frees nothing.  These two helpers keep
that cost off a sprint; reference counting frees everything as usual meanwhile.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

SPRINT_GC_THRESHOLD = 10_000  # young-generation threshold while a sprint runs


@contextmanager
def collector_paused() -> Iterator[None]:
    """Build a sprint's long-lived structures without the cyclic garbage collector.

    Creating objects that all survive triggers full collections that walk them and free nothing:
    half of a 10,000-task sprint's start-up went there.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def collector_tuned_for_sprint() -> tuple[int, int, int]:
    """Make the cyclic collector cheap for a running sprint; returns the thresholds to restore.

    Two costs, measured on a 10,000-task sprint (benchmarks/BENCHMARKS.md): full collections
    walking the plan, the DAG and every task's state, which live as long as the sprint and are
    never garbage (18 µs per task), and young collections every 700 net allocations, most of
    which the next few messages would have freed anyway (12 µs per task).  `gc.freeze` moves the
    long-lived objects to the permanent generation, and a young threshold of SPRINT_GC_THRESHOLD
    lets short-lived ones die by reference counting first.  Cycles are still collected;
    `collector_restored` undoes both.
    """
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(previous[0], SPRINT_GC_THRESHOLD), *previous[1:])
    return previous


def collector_restored(thresholds: tuple[int, int, int]) -> None:
    gc.unfreeze()
    gc.set_threshold(*thresholds)
