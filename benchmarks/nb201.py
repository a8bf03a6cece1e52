"""NAS-Bench-201 on this machine. Prints numbers; asserts nothing.

1. Evaluations per second of each strategy on the table through normlab.search's loop (in-memory
   store), side by side with a bare loop doing only the table lookups of random cells (no
   engine): the ratio is the engine's cost per table evaluation. Pairs alternate (engine, bare).
2. ``--all-params``: every one of the 15,625 cells built (on the meta device: shapes, no memory)
   at C=16, N=5, 10 classes, its parameter count against the analytic count; with a real
   ``--table``, also against the table's column (the inconsistent cells listed).

    python benchmarks/nb201.py [--table standin|PATH] [--budget 200] [--pairs 3]
    python benchmarks/nb201.py --all-params [--table PATH]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from normlab.nas import nb201
from normlab.nas.nb201.benchmark import BenchmarkConfig, TableObjective, _search
from normlab.runtime import Store


def bare(table_source: str, dataset: str, budget: int, seed: int) -> float:
    objective = TableObjective(table_source, dataset)
    space, rng = nb201.NB201Space(), random.Random(seed)
    start = time.perf_counter()
    seen: set[str] = set()
    while len(seen) < budget:
        a = space.sample(rng)
        if a in seen:
            continue
        seen.add(a)
        objective(a)
    return budget / (time.perf_counter() - start)


def throughput(args) -> None:
    cfg = BenchmarkConfig(table=args.table, dataset=args.dataset, population=20, sample_size=5, startup=10)
    table = nb201.load_table(args.table)
    print(f"table: {'STAND-IN (synthetic)' if table.standin else table.source}; {args.budget} evaluations per search")
    for strategy in ("random", "evolution", "tpe"):
        eng, raw, ratios = [], [], []
        for k in range(args.pairs):
            t = time.perf_counter()
            _search(strategy, cfg, k, args.budget, store=Store.in_memory(), name="bench")
            e = args.budget / (time.perf_counter() - t)
            b = bare(args.table, args.dataset, args.budget, k)
            eng.append(e), raw.append(b), ratios.append(b / e)
        print(f"{strategy:10s} engine {statistics.median(eng):8.0f} evals/s   bare lookups {statistics.median(raw):9.0f}/s   "
              f"engine cost x{statistics.median(ratios):.0f} (median of {args.pairs} pairs)")


def all_params(args) -> None:
    table = nb201.load_table(args.table) if args.table else None
    archs = nb201.all_archs()
    start = time.perf_counter()
    mismatch = 0
    for i, a in enumerate(archs):
        with torch.device("meta"):
            net = nb201.NB201Net(a, C=16, N=5, num_classes=10)
        if sum(p.numel() for p in net.parameters()) != nb201.analytic_params(a):
            mismatch += 1
            print(f"built != analytic: {i:06d} {a}")
        if (i + 1) % 2500 == 0:
            print(f"  {i + 1:,} built, {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{len(archs):,} cells built at C=16, N=5: {len(archs) - mismatch:,} match the analytic count "
          f"({time.perf_counter() - start:.0f} s)")
    if table is not None:
        bad = nb201.inconsistent_params(table)
        label = "STAND-IN" if table.standin else table.source
        print(f"table ({label}) vs construction: {len(archs) - len(bad):,} match, {len(bad)} differ; "
              f"{sum(not b['reason'].startswith('unexplained') for b in bad)} by exactly one conv's parameters")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--table", default=None, help="standin or a table path (throughput default: standin)")
    ap.add_argument("--dataset", default="cifar10-valid")
    ap.add_argument("--budget", type=int, default=200)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--all-params", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.all_params:
        all_params(args)
    else:
        args.table = args.table or "standin"
        throughput(args)


if __name__ == "__main__":
    main()
