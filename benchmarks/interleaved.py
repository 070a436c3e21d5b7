"""Rounds of several paths measured in alternating blocks, so a noisy minute hits them all alike.

Shared by bench_mcp.py and bench_remote_locks.py: a path is a `Round`, one timed request.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable

Round = Callable[[int], Awaitable[tuple[float, float]]]  # round i -> (acquire seconds, whole round seconds)


async def measure(rounds: dict[str, Round], count: int, warmup: int, block: int) -> dict[str, list[tuple[float, float]]]:
    """`warmup` rounds of each path, then `count` each, in blocks of `block` taking turns."""
    for run in rounds.values():
        for i in range(warmup):
            await run(i)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in rounds}
    done = 0
    while done < count:
        for name, run in rounds.items():
            for i in range(done, min(done + block, count)):
                samples[name].append(await run(i))
        done += block
    return samples


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (q=100: the maximum)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if q < 100 else max(values)
