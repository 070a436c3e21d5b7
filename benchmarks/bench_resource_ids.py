"""What making a resource id canonical costs, next to one `lstat` measured in the same run.

Every lock request, unlock by name and file report resolves its ids through the workspace's
symlinks (engine/resources.py).  The common case (no link on the path) costs one `lstat` per
component below the workspace root; `realpath` is paid only when a component is a link.

    python benchmarks/bench_resource_ids.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

from engine.resources import normalise_resource, resource_ids_in

CALLS = 20_000


def per_call(fn: Callable[[], object], rounds: int) -> float:
    """Median µs per call over `rounds` rounds of CALLS calls."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(CALLS):
            fn()
        times.append((time.perf_counter() - start) / CALLS * 1e6)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    root = tempfile.mkdtemp(prefix="bench-ids-")
    os.makedirs(f"{root}/src/app")
    open(f"{root}/src/app/main.py", "w").close()
    os.symlink("src", f"{root}/linked")
    canonical = resource_ids_in(root)
    floor = per_call(lambda: os.lstat(f"{root}/src/app/main.py"), rounds)
    cases = {
        "lexical only (normalise_resource, cached)": lambda: normalise_resource("src/app/main.py"),
        "canonical, 3 components, no link": lambda: canonical("src/app/main.py"),
        "canonical, a file not made yet": lambda: canonical("src/new/file.py"),
        "canonical, through a link (realpath)": lambda: canonical("linked/app/main.py"),
    }
    print(f"floor: one lstat of the file: {floor:.2f} µs")
    print("| id | µs per id | × one lstat |\n|---|---|---|")
    for name, fn in cases.items():
        cost = per_call(fn, rounds)
        print(f"| {name} | {cost:.2f} | {cost / floor:.1f} |")


if __name__ == "__main__":
    main()
