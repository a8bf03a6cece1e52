"""Layer search on this machine: candidates evaluated per hour, the fraction rejected early, and
evolution against random search at equal budget (the EvoNorms paper's Fig. 10), BN-ReLU as the
fixed line. Prints numbers; asserts nothing.

    python benchmarks/evolve.py --budget 100 --seeds 0 1 2 --store runs/evolve-bench.sqlite
    python benchmarks/evolve.py --compile-compare 8 --preset quick    # candidates/hour, compiled or not
    normlab evolve report evo rnd --store runs/evolve-bench.sqlite --out runs/evolve-report

The default proxy is the quick preset's harder one: 100 steps at learning rate 0.1 without
warm-up, where normalization decides whether a network trains (on digits with ResNet-20 at 0.25:
identity layer 75%, ReLU alone 90%, BN-ReLU 97%). At --lr 0.15 unnormalized layers diverge
outright and almost every random layer is rejected. With --store the runs are stored as the
searches "evo" and "rnd" (one per seed), so the report and the re-ranking can read them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if "--compile-compare" in sys.argv:   # set before torch loads: a fresh compile cache, compiled in this process
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="normlab-inductor-"))
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the normlab next to this file

from normlab.evolve.search import EvolveConfig, mean_fitness, rejection_counts, run_evolve
from normlab.layers.genome import formula, reference


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the C++ compiler inductor runs)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def compile_compare(args: argparse.Namespace) -> None:
    """Candidates per hour of the preset's proxy task, each candidate trained interpreted and
    compiled side by side (alternating which goes first), its genome's compilation included."""
    import dataclasses
    import random

    overrides = dict(item.split("=", 1) for item in args.set)
    cfg = EvolveConfig.preset(args.preset, **{k: int(v) if v.isdigit() else v for k, v in overrides.items()})
    plain = cfg.task
    compiled = dataclasses.replace(plain, compile=True)
    space, rng = cfg.space, random.Random(args.seed)
    genomes, seen = [], set()
    while len(genomes) < args.compile_compare:            # the search's first (random) candidates
        g = space.sample(rng)
        if space.key(g) not in seen and space.valid(g):
            seen.add(space.key(g))
            genomes.append(g)
    from normlab.layers.genome import Genome

    genomes += [Genome.from_code(code) for code in args.genomes]
    warm = reference("bn_relu")                            # one-off costs (data, imports), not timed
    plain(warm), compiled(warm)
    cost = {"interpreted": [], "compiled": []}
    wall = {"interpreted": [], "compiled": []}
    diffs, fallbacks, statuses = [], 0, []
    print(f"preset {args.preset}{' ' + ' '.join(args.set) if args.set else ''}: {cfg.steps} steps x "
          f"{cfg.batch_size} on {cfg.dataset}, anchors "
          f"{', '.join(cfg.objectives)}; {args.compile_compare} random candidates"
          f"{f' and {len(args.genomes)} given' if args.genomes else ''}, each trained both ways")
    for i, g in enumerate(genomes):
        runs = {}
        for name in (("interpreted", "compiled") if i % 2 == 0 else ("compiled", "interpreted")):
            task = plain if name == "interpreted" else compiled
            c0, w0 = _cpu(), time.perf_counter()
            runs[name] = task(g)
            cost[name].append(_cpu() - c0)
            wall[name].append(time.perf_counter() - w0)
        a, b = runs["interpreted"], runs["compiled"]
        fallbacks += int(b.metrics.get("compile_fallbacks", 0))
        same = a.status == b.status
        statuses.append(a.status)
        accs = ""
        if same and a.status == "ok":
            diffs.append(max(abs(a.metrics[k] - b.metrics[k]) for k in cfg.objectives))
            accs = "  acc " + " ".join(f"{100 * a.metrics[k]:.1f}/{100 * b.metrics[k]:.1f}" for k in cfg.objectives)
        print(f"  {formula(g):<46.46} {a.status:>8}/{b.status:<8} cpu {cost['interpreted'][-1]:6.1f} s "
              f"vs {cost['compiled'][-1]:6.1f} s compiled" + ("" if same else "  (outcome differs)") + accs,
              flush=True)
    full = [i for i, r in enumerate(statuses) if r == "ok"]
    if full:
        print(f"trained fully (passed the rejection rules): {len(full)}, CPU s each "
              f"{statistics.mean(cost['interpreted'][i] for i in full):.1f} interpreted, "
              f"{statistics.mean(cost['compiled'][i] for i in full):.1f} compiled")
    for name, spent in cost.items():
        print(f"{name:>11}: {3600 * len(genomes) / sum(spent):6.0f} candidates/hour by CPU time "
              f"({statistics.mean(spent):.1f} s each), {3600 * len(genomes) / sum(wall[name]):6.0f} by wall time")
    print(f"compiled / interpreted CPU time per candidate: {sum(cost['compiled']) / sum(cost['interpreted']):.2f}; "
          f"largest accuracy difference {max(diffs, default=0.0):.4f} over {len(diffs)} trained both ways; "
          f"{fallbacks} compile fallbacks")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compile-compare", type=int, default=0, metavar="N",
                    help="instead of the searches: N of the preset's candidates trained interpreted and "
                    "compiled side by side, candidates per hour each (compilation included)")
    ap.add_argument("--preset", default="quick", help="the evolve preset --compile-compare uses")
    ap.add_argument("--seed", type=int, default=0, help="--compile-compare: which random candidates")
    ap.add_argument("--genomes", nargs="*", default=[], metavar="CODE",
                    help="--compile-compare: these genomes too (e.g. layers that pass the rejection rules)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="--compile-compare: preset settings changed, e.g. anchors=resnet20@1 batch_size=128")
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
    if args.compile_compare:
        compile_compare(args)
        return
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
