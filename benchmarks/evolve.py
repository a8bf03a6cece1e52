"""Layer search on this machine: candidates evaluated per hour, the fraction rejected early, and
evolution against random search at equal budget (the EvoNorms paper's Fig. 10), BN-ReLU as the
fixed line. Prints numbers; asserts nothing.

    python benchmarks/evolve.py --budget 100 --seeds 0 1 2 --store runs/evolve-bench.sqlite
    normlab evolve report evo rnd --store runs/evolve-bench.sqlite --out runs/evolve-report

The default proxy is the quick preset's harder one: 100 steps at learning rate 0.1 without
warm-up, where normalization decides whether a network trains (on digits with ResNet-20 at 0.25:
identity layer 75%, ReLU alone 90%, BN-ReLU 97%). At --lr 0.15 unnormalized layers diverge
outright and almost every random layer is rejected. With --store the runs are stored as the
searches "evo" and "rnd" (one per seed), so the report and the re-ranking can read them.
"""

from __future__ import annotations

import argparse
import statistics
import time

from normlab.layers.genome import formula, reference
from normlab.evolve.search import EvolveConfig, mean_fitness, rejection_counts, run_evolve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--reject-steps", type=int, default=30)
    ap.add_argument("--store", default=None, help="keep the runs as searches 'evo' and 'rnd'")
    ap.add_argument("--anchors", default="resnet20@0.25")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--margin", type=float, default=1.0, help="equivalence margin (fitness points) of the claim "
                    "'evolution beats random search', decided under the shared rule (normlab.report.stats)")
    args = ap.parse_args()
    base = dict(dataset=args.dataset, anchors=args.anchors, steps=args.steps, lr=args.lr,
                reject_steps=args.reject_steps, reject_acc=0.2, budget=args.budget, population=8,
                sample_size=3, eval_limit=300)
    bn = EvolveConfig(**base).task(reference("bn_relu"))
    bn_fit = mean_fitness(bn.metrics, EvolveConfig(**base).objectives)
    print(f"BN-ReLU fitness {bn_fit:.3f}")
    curves: dict[str, list[list[float]]] = {"evolution": [], "random": []}
    total_time, total_cands, rejected, best = 0.0, 0, 0, {}
    for strategy in curves:
        for seed in args.seeds:
            cfg = EvolveConfig(**base, strategy=strategy, seed=seed)
            t0 = time.time()
            r = run_evolve(cfg, progress=False, store=args.store,
                           name={"evolution": "evo", "random": "rnd"}[strategy])
            total_time += time.time() - t0
            total_cands += len(r.history)
            c = rejection_counts(r)
            rejected += c["quality"] + c["stability"] + c["diverged"]
            run, curve = 0.0, []
            for e in r.history:
                if e.ok:
                    run = max(run, mean_fitness(e.scores, r.objectives))
                curve.append(run)
            curves[strategy].append(curve)
            top = max(r.ok, key=lambda e: mean_fitness(e.scores, r.objectives), default=None)
            if top is not None and mean_fitness(top.scores, r.objectives) > best.get("fit", -1):
                best = {"fit": mean_fitness(top.scores, r.objectives), "formula": formula(top.arch)}
            print(f"{strategy:9s} seed {seed}: best {curve[-1]:.3f}  rejected {c}  invalid {r.invalid}  "
                  f"{time.time() - t0:.0f}s", flush=True)
    for strategy, cs in curves.items():
        marks = [n for n in (5, 10, 20, args.budget) if n <= args.budget]
        text = "  ".join(f"@{n}: {statistics.mean(c[n - 1] for c in cs):.3f}"
                         f"±{statistics.pstdev(c[n - 1] for c in cs):.3f}" for n in marks)
        print(f"{strategy:9s} best-so-far mean±sd over {len(cs)} seeds  {text}")
    from normlab.report.stats import strategy_verdicts

    finals = {"evolution": [c[-1] for c in curves["evolution"]], "random search": [c[-1] for c in curves["random"]]}
    for line in strategy_verdicts(finals, ["random search"], what="best fitness", margin=args.margin):
        print(f"- {line}")
    print(f"{3600 * total_cands / total_time:.0f} candidates/hour (1 process), "
          f"{rejected / total_cands:.0%} rejected early (quality/stability/diverged)")
    print(f"best layer: {best.get('formula')} fitness {best.get('fit', float('nan')):.3f} "
          f"(BN-ReLU {bn_fit:.3f})")


if __name__ == "__main__":
    main()
