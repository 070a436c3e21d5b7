"""Lock manager benchmark: uncontended throughput and a contended, fairness-checked workload.

Run by hand:  .venv/bin/python benchmarks/bench_locks.py  [--quick]

Prints figures and never asserts on them (DESIGN §13).  Every throughput figure is printed next to
a floor measured in the same run (plain dict set+delete of the same keys), with the ratio, so the
numbers can be compared across machines.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.locks import LockManager, compatible, overlaps  # noqa: E402


# ---------------------------------------------------------------- uncontended


def _paths(count: int) -> list[str]:
    return [f"src/mod{i % 40}/file{i}.py" for i in range(count)]


def _with_background(lm: LockManager) -> None:
    """Hold 1,000 unrelated locks (some in the same directories) so the indices are not empty."""
    for i in range(1000):
        lm.acquire(f"bg{i % 50}", [(f"lib/pkg{i % 25}/m{i}.py", "read")])
        if i < 200:
            lm.acquire(f"bg{i % 50}", [(f"src/mod{i % 40}/held{i}.py", "write")])


def bench_uncontended(pairs: int, requests_per_call: int = 1) -> float:
    """acquire+release pairs per second, one owner, paths cycling over 1,000 files."""
    lm = LockManager()
    _with_background(lm)
    paths = _paths(1000)
    batches = [
        [(paths[(i + k) % len(paths)], "write") for k in range(requests_per_call)] for i in range(len(paths))
    ]
    acquire, release = lm.acquire, lm.release
    start = time.perf_counter()
    for i in range(pairs):
        for grant in acquire("agent", batches[i % 1000]).grants:
            release("agent", grant.lock_id)
    return pairs / (time.perf_counter() - start)


def bench_dict_floor(pairs: int) -> float:
    """The floor: a dict set + delete of the same keys, in the same loop shape."""
    table: dict[str, object] = {}
    paths = _paths(1000)
    value = object()
    start = time.perf_counter()
    for i in range(pairs):
        key = paths[i % 1000]
        table[key] = value
        del table[key]
    return pairs / (time.perf_counter() - start)


def best_of(runs: int, fn, *args) -> float:
    return max(fn(*args) for _ in range(runs))


# ---------------------------------------------------------------- contended

DIRECTORIES = ["src", "src/api", "src/ui", "tests", "docs"]
FILES = [
    "src/api/a.py", "src/api/b.py", "src/api/c.py", "src/ui/x.ts", "src/ui/y.ts", "src/ui/z.ts",
    "src/core.py", "tests/test_a.py", "tests/test_b.py", "docs/index.md", "docs/api.md",
    "README.md", "pyproject.toml", "db:schema", "cache:build",
]  # fmt: skip
MODES = ["read"] * 5 + ["write"] * 4 + ["exclusive"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Contended:
    """100 owners, 20 paths (5 directories), mixed modes, random releases, one step = 10 ms."""

    def __init__(self, owners: int, seed: int, ask_rate: float = 1.0) -> None:
        self.ask_rate = ask_rate  # chance that an idle owner asks for a lock when it acts
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.lm = LockManager(self.clock, default_ttl=5.0, lock_delay=0.5)
        self.owners = [f"agent{i:03d}" for i in range(owners)]
        self.step = 0
        self.waiting_owners: set[str] = set()  # an agent waiting for a lock does nothing else
        self.arrival: dict[str, tuple[int, int]] = {}  # request id -> (arrival number, step queued)
        self.arrivals = 0
        self.last_token = 0
        self.overtaken: dict[str, int] = {}  # request id -> times a later conflicting grant passed it
        self.latency_steps: list[int] = []
        self.hold_steps: list[int] = []  # how long released locks were held, for scale
        self.call_us: dict[str, list[float]] = {"acquire": [], "release": [], "tick": []}
        self.counts = {"granted": 0, "queued": 0, "deadlock": 0, "expired": 0}

    def timed(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter_ns()
        result = fn(*args, **kwargs)
        self.call_us[name].append((time.perf_counter_ns() - start) / 1000)
        return result

    def run(self, steps: int) -> None:
        """Each step one random owner acts: releases a lock, or asks for one (waiting if need be)."""
        for self.step in range(steps):
            self.clock.now += 0.01
            owner = self.rng.choice(self.owners)
            held = self.lm.grants_of(owner)
            if held and self.rng.random() < 0.6:
                grant = self.rng.choice(held)
                self.hold_steps.append(round((self.clock.now - grant.granted_at) / 0.01))
                self.woke(self.timed("release", self.lm.release, owner, grant.lock_id))
            elif owner not in self.waiting_owners and self.rng.random() < self.ask_rate:
                self.ask(owner)
            if self.rng.random() < 0.8:  # most agents heartbeat when they act; the rest let leases lapse
                self.lm.renew(owner)
            expired, woken = self.timed("tick", self.lm.tick)
            self.counts["expired"] += len(expired)
            self.woke(woken)

    def ask(self, owner: str) -> None:
        path = self.rng.choice(DIRECTORIES) if self.rng.random() < 0.1 else self.rng.choice(FILES)
        result = self.timed("acquire", self.lm.acquire, owner, [(path, self.rng.choice(MODES))], wait=True)
        if result.status == "granted":
            self.counts["granted"] += 1
            self.check_overtakes(result.grants, self.arrivals + 1)
        elif result.status == "queued":
            self.counts["queued"] += 1
            self.arrivals += 1
            self.arrival[result.request_id] = (self.arrivals, self.step)
            self.waiting_owners.add(owner)
        else:
            self.counts["deadlock"] += 1

    def woke(self, woken) -> None:
        for request_id in dict.fromkeys(g.request_id for g in woken):
            arrival, queued_at = self.arrival.pop(request_id)
            self.latency_steps.append(self.step - queued_at)
            grants = [g for g in woken if g.request_id == request_id]
            self.waiting_owners.discard(grants[0].owner)
            self.check_overtakes(grants, arrival)

    def check_overtakes(self, grants, arrival: int) -> None:
        """Count earlier waiters, still waiting, that one of these new grants conflicts with.

        A re-ask that returns an existing grant (reentrancy) is not a new grant and is skipped.
        """
        grants = [g for g in grants if g.token > self.last_token]
        self.last_token = max([self.last_token, *(g.token for g in grants)])
        for waiter in self.lm.waiters():
            earlier = self.arrival[waiter.request_id][0] < arrival
            for grant in grants:
                if (
                    earlier
                    and waiter.owner != grant.owner
                    and overlaps(waiter.resource_id, grant.resource_id)
                    and not compatible(waiter.mode, grant.mode)
                ):
                    self.overtaken[waiter.request_id] = self.overtaken.get(waiter.request_id, 0) + 1


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


# ---------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations, for a smoke run")
    args = parser.parse_args()
    pairs = 50_000 if args.quick else 300_000
    steps = 10_000 if args.quick else 50_000

    print(f"python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    floor = best_of(3, bench_dict_floor, pairs)
    one = best_of(3, bench_uncontended, pairs)
    three = best_of(3, bench_uncontended, pairs // 3, 3)
    print("\nUncontended (1,000 unrelated locks held in the background; best of 3)")
    print(f"  dict set+delete floor      {floor:>12,.0f} pairs/s")
    print(f"  acquire+release, 1 path    {one:>12,.0f} pairs/s   floor/this = {floor / one:5.1f}x")
    print(f"  acquire+release, 3 paths   {three:>12,.0f} calls/s   ({3 * three:,.0f} path grants/s)")

    for load, ask_rate in (("saturated", 1.0), ("moderate", 0.05)):
        report_contended(load, ask_rate, steps)


def report_contended(load: str, ask_rate: float, steps: int) -> None:
    bench = Contended(owners=100, seed=7, ask_rate=ask_rate)
    start = time.perf_counter()
    bench.run(steps)
    wall = time.perf_counter() - start
    lat, hold = bench.latency_steps, bench.hold_steps
    print(f"\nContended, {load} (an idle owner asks with p={ask_rate} when it acts): 100 owners,")
    print(f"  20 paths (5 directories), {steps:,} steps of 10 ms simulated time, one owner acting per step")
    print(
        f"  granted at once {bench.counts['granted']:,}, queued {bench.counts['queued']:,}, "
        f"deadlocks refused {bench.counts['deadlock']:,}, leases expired {bench.counts['expired']:,}"
    )
    print(f"  held before release (simulated steps): p50 {percentile(hold, 50):.0f}  p99 {percentile(hold, 99):.0f}")
    print(
        f"  queue wait (simulated steps, queued requests only): p50 {percentile(lat, 50):.0f}  "
        f"p99 {percentile(lat, 99):.0f}  max {max(lat, default=0)}   ({len(lat):,} woken)"
    )
    for name, samples in bench.call_us.items():
        p50, p99 = percentile(samples, 50), percentile(samples, 99)
        print(f"  {name:<8} wall time per call: p50 {p50:6.1f} us   p99 {p99:6.1f} us")
    print(f"  fairness: max overtakes of any waiter = {max(bench.overtaken.values(), default=0)} (must be 0)")
    print(f"  whole run incl. the fairness checker: {wall:.2f} s")


if __name__ == "__main__":
    main()
