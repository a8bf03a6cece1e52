"""NAGO's strategies at the same budget over several seeds: BO (optuna's multi-objective TPE),
random search over the generator parameters, RandWire's fixed generator (WS(n, 4, 0.75), new
networks every evaluation), and TPE with successive halving (every generator 20 steps, the best
third 60 more: fewer network-steps for the same number of generators). Every search runs through normlab.nago.run_search into one store,
so an interrupted benchmark resumes.

Reduced to fit 2 shared CPU cores: digits (8x8), width 8, 3 stages, small ranges (top n in
[1, 2], mid n in [1, 2], bottom n in [2, 4]), 2 networks of 60 steps per generator.

Prints, per strategy (mean ± std over seeds): the best accuracy at 5 evaluations and at the
end, the params of the best, the Pareto front's size and its hypervolume (accuracy x params
normalised to [0, 1], reference point accuracy 0 and the largest params seen), the training it
cost (network-steps: networks x steps over all evaluations) and minutes per search. With
successive halving, "at 5" counts evaluations including promotions.

    python benchmarks/nago.py [--seeds 3] [--budget 10] [--store /tmp/nago-bench.sqlite] [--report DIR]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from normlab.nago.search import NagoConfig, run_search
from normlab.runtime import SerialExecutor, Store

#: arm -> (strategy, extra settings); tpe-halving: successive halving, eta 3, 2 rungs (20 then 60 steps)
ARMS = {"tpe": ("tpe", {}), "random": ("random", {}), "randwire": ("randwire", {}),
        "tpe-halving": ("tpe", {"halving_eta": 3, "halving_rungs": 2})}


def config(arm: str, seed: int, budget: int, steps: int, dataset: str) -> NagoConfig:
    strategy, extra = ARMS[arm]
    return NagoConfig(
        name=f"bench-nago-{arm}-s{seed}", dataset=dataset, norm="bn", budget=budget, seed=seed,
        strategy=strategy, samples=2, startup=4, width=8, randwire_n=8, **extra,
        ranges={"top": {"n": (1, 2), "k": (2, 3), "p": (0.1, 1.0)}, "mid": {"n": (1, 2), "p": (0.1, 1.0)},
                "bottom": {"n": (2, 4), "k": (2, 4), "p": (0.1, 1.0)}},
        train={"steps": steps, "batch_size": 64, "lr": 0.4, "augment": False, "eval_every": 0})


def hypervolume(points: list[tuple[float, float]], max_params: float) -> float:
    """Area dominated by (accuracy up, params down) points, params scaled by ``max_params``, from
    the reference (accuracy 0, params max_params)."""
    pts = sorted(((a, p / max_params) for a, p in points), key=lambda t: t[1])   # by params, ascending
    area, best = 0.0, 0.0
    for i, (a, p) in enumerate(pts):
        best = max(best, a)
        right = pts[i + 1][1] if i + 1 < len(pts) else 1.0
        area += best * (right - p)
    return area


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budget", type=int, default=10)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--store", default="/tmp/nago-bench.sqlite")
    ap.add_argument("--report", default=None, help="write the HTML report (normlab nago report) here")
    ap.add_argument("--margin", type=float, default=1.0, help="equivalence margin (accuracy points) of the "
                    "strategy claims, decided under the shared rule (normlab.report.stats)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list] = {s: [] for s in ARMS}
    minutes: dict[str, list[float]] = {s: [] for s in ARMS}
    db = Store(args.store)
    try:
        for seed in range(args.seeds):
            for strategy in ARMS:                 # interleaved, so a slower moment of the machine is shared
                cfg = config(strategy, 100 * seed, args.budget, args.steps, args.dataset)
                t = time.time()
                r = run_search(cfg, store=db, executor=SerialExecutor(threads=1))
                minutes[strategy].append((time.time() - t) / 60)
                results[strategy].append(r)
                print(f"{cfg.name}: best {r.best('accuracy').scores['accuracy']:.3f} "
                      f"({minutes[strategy][-1]:.1f} min)", flush=True)
    finally:
        db.close()
    max_params = max(e.scores["params"] for rs in results.values() for r in rs for e in r.ok)

    def ms(xs: list[float], fmt: str = ".3f") -> str:
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return f"{statistics.mean(xs):{fmt}} ± {sd:{fmt}}"

    k = min(5, args.budget)
    print(f"\n{args.dataset}, budget {args.budget} generators x 2 networks x {args.steps} steps, "
          f"{args.seeds} seeds (mean ± std over seeds)\n")
    print(f"| strategy | best acc. at {k} | best acc. at {args.budget} | params of best | front size "
          f"| hypervolume | network-steps | min / search |")
    print("|---|---|---|---|---|---|---|---|")
    for s, rs in results.items():
        at_k = [r.best_so_far("accuracy")[k - 1] for r in rs]
        final = [r.best("accuracy").scores["accuracy"] for r in rs]
        size = [r.best("accuracy").scores["params"] / 1e3 for r in rs]
        front = [float(len(r.pareto_front())) for r in rs]
        hv = [hypervolume([(e.scores["accuracy"], e.scores["params"]) for e in r.ok], max_params) for r in rs]
        cost = [sum(e.scores.get("samples", 0) * e.scores.get("train_steps", 0) for e in r.history) for r in rs]
        print(f"| {s} | {ms(at_k)} | {ms(final)} | {ms(size, '.1f')}k | {ms(front, '.1f')} | {ms(hv)} "
              f"| {ms(cost, '.0f')} | {ms(minutes[s], '.1f')} |")
    from normlab.nago.report import strategy_claims

    print()
    for line in strategy_claims([r for rs in results.values() for r in rs], margin=args.margin):
        print(f"- {line}")
    if args.report:
        from normlab.nago.report import write_report

        page = write_report([r for rs in results.values() for r in rs], args.report, margin=args.margin)
        print(f"\nreport: {page}")


if __name__ == "__main__":
    main()
