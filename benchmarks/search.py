"""Search-engine overhead: evaluations per second of normlab.search with a no-op evaluate, against
a bare loop doing the same strategy work (aging evolution: tournament, mutate, key, dedup) with
no store, no driver and no executor, measured side by side.

Runs alternate (engine, bare, engine, bare, ...) and the ratio is taken within each pair. Prints
evaluations per second for both and the median ratio; the goal is >= 10,000 evaluations/s for
evolution at population 50, so that cheap proxies are never slowed by the engine. Also times a
search with an on-disk store (every evaluation committed to SQLite).

    python benchmarks/search.py [--budget 5000] [--pairs 5] [--bits 64]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections import deque
from pathlib import Path

from normlab.search import BitString, evolution


def noop(bits) -> float:
    return 0.0


def bare_evolution(space: BitString, budget: int, population: int, sample_size: int, seed: int) -> float:
    """The same proposals without the engine; returns evaluations per second."""
    rng = random.Random(seed)
    pop: deque = deque()
    seen: set[str] = set()
    start = time.perf_counter()
    done = 0
    while done < budget:
        if done < population:
            arch = space.sample(rng)
        else:
            contenders = rng.sample(pop, sample_size)
            arch = space.mutate(max(contenders, key=lambda m: m[1])[0], rng)
        key = space.key(arch)
        if key in seen:
            continue
        seen.add(key)
        pop.append((arch, noop(arch)))
        if len(pop) > population:
            pop.popleft()
        done += 1
    return budget / (time.perf_counter() - start)


def engine(space: BitString, budget: int, population: int, sample_size: int, seed: int,
           store: str | None = None) -> float:
    start = time.perf_counter()
    evolution(space, noop, budget=budget, population=population, sample_size=sample_size, seed=seed,
              store=store, progress=False, log_every=0)
    return budget / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=5000)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--population", type=int, default=50)
    ap.add_argument("--sample-size", type=int, default=10)
    a = ap.parse_args()
    space = BitString(a.bits)
    engine(space, 500, a.population, a.sample_size, 99)                     # warm-up
    rates, bare, ratios = [], [], []
    for i in range(a.pairs):
        e = engine(space, a.budget, a.population, a.sample_size, i)
        b = bare_evolution(space, a.budget, a.population, a.sample_size, i)
        rates.append(e)
        bare.append(b)
        ratios.append(b / e)
    print(f"evolution, population {a.population}, tournament {a.sample_size}, {a.bits}-bit space, "
          f"budget {a.budget}, no-op evaluate, in-memory store, serial:")
    print(f"  engine: {statistics.median(rates):,.0f} evaluations/s (median of {a.pairs}; goal >= 10,000)")
    print(f"  bare strategy loop: {statistics.median(bare):,.0f} evaluations/s")
    print(f"  engine time / bare time: {statistics.median(ratios):.1f}x (the store, driver and executor)")
    with tempfile.TemporaryDirectory() as tmp:
        disk = engine(space, min(a.budget, 2000), a.population, a.sample_size, 0, store=str(Path(tmp) / "s.sqlite"))
    print(f"  with an on-disk store (each result committed): {disk:,.0f} evaluations/s")


if __name__ == "__main__":
    main()
