"""Simulator speed and memory, measured side by side in one run.

Run: python benchmarks/scale.py [--big 10000000]

Prints interactions per second for 1,000,000 interactions next to the bare cost of
numpy drawing as many random values (the ratio is what to watch, not the seconds),
and the peak traced memory of a large request as a multiple of its output size.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from pytest_prisyn.profiles import BUILTIN
from pytest_prisyn.simulate import Simulator

SPECS = {name: profile.spec for name, profile in BUILTIN.items() if profile.spec}


def simulator(n_interactions: int, population: list[tuple[str, float]]) -> Simulator:
    return Simulator(
        population=population,
        specs=SPECS,
        n_users=max(100, n_interactions // 100),
        n_items=max(500, n_interactions // 200),
        n_interactions=n_interactions,
        seed=11,
    )


def best_of(repeats: int, work: object) -> float:
    assert callable(work)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    n = 1_000_000

    print(
        f"speed: {n:,} interactions (n/100 users, n/200 items), best of {args.repeats}"
    )
    rng = np.random.default_rng(0)
    bare = best_of(args.repeats, lambda: rng.random(n))
    for label, population in [
        ("tech", [("tech", 1.0)]),
        ("movielens", [("movielens", 1.0)]),
        ("tech+gamer+foodie", [("foodie", 1 / 3), ("gamer", 1 / 3), ("tech", 1 / 3)]),
    ]:
        seconds = best_of(args.repeats, lambda p=population: simulator(n, p).arrays())
        print(
            f"  {label:20} {seconds:6.3f} s  {n / seconds / 1e6:5.2f} M rows/s  "
            f"= {seconds / bare:6.1f} x numpy drawing {n:,} uniforms "
            f"({bare * 1e3:.1f} ms)"
        )

    print(f"\nmemory: {args.big:,} interactions of 'tech', traced by tracemalloc")
    tracemalloc.start()
    arrays = simulator(args.big, [("tech", 1.0)]).arrays()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    output = sum(
        getattr(arrays, name).nbytes
        for name in (
            "user_id",
            "item_id",
            "rating",
            "timestamp_s",
            "profile_code",
            "category_code",
        )
    )
    print(
        f"  output {output / 2**20:8.1f} MiB, peak {peak / 2**20:8.1f} MiB "
        f"= {peak / output:.2f} x the output"
    )


if __name__ == "__main__":
    main()
