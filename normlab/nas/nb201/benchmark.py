"""Search strategies judged on the NB201 table as a tabular benchmark.

Every strategy runs through normlab.search's one loop (store, dedup, resume, executors): random
search, regularized evolution and optuna's TPE over the six categorical edges. An evaluation
looks the cell up in the table: the objective is its validation accuracy (mean over the seeds
the table has), and it costs the table's training time (200 epochs, mean over seeds) plus one
validation pass in simulated seconds. Regret is the table's best mean validation accuracy minus
the best found so far; the test accuracy of the incumbent (best by validation) is reported too.

A budget in evaluations, and optionally one in simulated seconds (the searches then run until
their cumulative cost reaches it; curves against seconds are read off the same runs: a strategy
never looks at the budget, so a time-budgeted run is exactly the prefix of the longer run).

The verdict for each strategy against random search: a two-sided Mann-Whitney U test on the
final regrets over seeds, Holm-adjusted over the comparisons; "holds" below 0.05 adjusted,
otherwise "inconclusive at n seeds" (no equivalence test is run, so never "does not hold").
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ...models.nb201 import NB201Error
from .space import NB201Space
from .table import DATASETS, load_table

__all__ = ["STRATEGIES", "TableObjective", "BenchmarkConfig", "run_benchmark", "plan", "plot_benchmark",
           "benchmark_table", "holm", "write_report"]

STRATEGIES = ("random", "evolution", "tpe")


@dataclass(frozen=True)
class TableObjective:
    """evaluate(arch) for the searches: the table's mean validation accuracy as ``score``, the
    mean test accuracy as ``test``, the simulated cost as ``seconds``. Picklable (holds the table's
    source, each worker loads it once)."""

    source: str
    dataset: str

    def __call__(self, arch: str) -> dict[str, float]:
        t = load_table(self.source)
        i = t.row(arch)
        cols = t.columns[self.dataset]
        eval_time = float(cols["eval_time"][i]) if math.isfinite(cols["eval_time"][i]) else 0.0
        return {"score": float(np.nanmean(t.valid[self.dataset][i])),
                "test": float(np.nanmean(t.test[self.dataset][i])),
                "seconds": float(cols["train_time"][i]) + eval_time}


@dataclass(frozen=True)
class BenchmarkConfig:
    table: str = "standin"
    dataset: str = "cifar10-valid"
    strategies: tuple[str, ...] = STRATEGIES
    seeds: int = 20
    budget: int = 150                      # evaluations
    seconds: float | None = None           # simulated seconds (optional second budget)
    population: int = 20
    sample_size: int = 5
    startup: int = 10

    def check(self) -> "BenchmarkConfig":
        if self.dataset not in DATASETS:
            raise NB201Error(f"unknown dataset {self.dataset!r}: expected one of {', '.join(DATASETS)}")
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or not self.strategies:
            raise NB201Error(f"unknown strategy {bad[0] if bad else '(none)'!r}: expected some of {', '.join(STRATEGIES)}")
        for name, v, low in (("seeds", self.seeds, 2), ("budget", self.budget, 2), ("population", self.population, 2),
                             ("sample_size", self.sample_size, 1), ("startup", self.startup, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise NB201Error(f"{name}={v!r} is invalid: expected an integer >= {low}")
        if self.sample_size > self.population:
            raise NB201Error(f"sample_size={self.sample_size} is larger than population={self.population}")
        if self.seconds is not None and not self.seconds > 0:
            raise NB201Error(f"seconds={self.seconds!r} is invalid: expected a positive number of simulated seconds")
        return self


def _search(strategy: str, cfg: BenchmarkConfig, seed: int, budget: int, *, store: Any, name: str,
            executor: Any = None):
    from ...search import evolution, random_search, tpe_search

    space = NB201Space(tag=f"table={cfg.table};dataset={cfg.dataset}")
    objective = TableObjective(cfg.table, cfg.dataset)
    common = dict(budget=budget, seed=seed, store=store, name=name, executor=executor, progress=False)
    if strategy == "random":
        return random_search(space, objective, **common)
    if strategy == "evolution":
        return evolution(space, objective, population=cfg.population, sample_size=cfg.sample_size, **common)
    return tpe_search(space, objective, startup=cfg.startup, **common)


def _budget_for_seconds(cfg: BenchmarkConfig) -> int:
    """Evaluations enough to spend ``cfg.seconds`` at the table's mean cost, three times over."""
    table = load_table(cfg.table)
    cost = np.nanmean(table.columns[cfg.dataset]["train_time"] + np.nan_to_num(table.columns[cfg.dataset]["eval_time"]))
    return max(cfg.budget, int(math.ceil(3 * cfg.seconds / cost)))


def plan(cfg: BenchmarkConfig) -> dict[str, Any]:
    """What a run will do and how long it should take here: times a short random search on the
    table in memory (evaluations per second through the engine) and scales it."""
    from ...runtime import Store

    cfg.check()
    table = load_table(cfg.table)
    budget = _budget_for_seconds(cfg) if cfg.seconds else cfg.budget
    t = time.perf_counter()
    n = 30
    _search("random", cfg, 10_000, n, store=Store.in_memory(), name="dry-run")
    rate = n / (time.perf_counter() - t)
    total = len(cfg.strategies) * cfg.seeds * budget
    return {"table": table.source, "standin": table.standin, "dataset": cfg.dataset, "searches": len(cfg.strategies) * cfg.seeds,
            "evaluations": total, "budget": budget, "evaluations_per_second": rate,
            "seconds_estimate": total / rate * (1.5 if "tpe" in cfg.strategies else 1.0)}


def _curves(result, optimum: float, test_best: float) -> dict[str, list[float]]:
    best, inc_test, regret = -math.inf, math.nan, []
    test_regret, seconds, total = [], [], 0.0
    for e in result.history:
        total += e.scores.get("seconds", 0.0) if e.ok else 0.0
        if e.ok and e.scores["score"] > best:
            best, inc_test = e.scores["score"], e.scores.get("test", math.nan)
        regret.append(optimum - best if best > -math.inf else math.nan)
        test_regret.append(test_best - inc_test if best > -math.inf else math.nan)
        seconds.append(total)
    return {"regret": regret, "test_regret": test_regret, "seconds": seconds}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of ``pvalues`` (family-wise error), in the given order."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def _at_time(curve: Mapping[str, list[float]], key: str, t: float) -> float:
    secs = curve["seconds"]
    k = int(np.searchsorted(secs, t, side="right"))          # evaluations finished by t
    return curve[key][k - 1] if k > 0 else math.nan


def run_benchmark(cfg: BenchmarkConfig, *, store: Any = None, name: str = "nb201-bench",
                  executor: Any = None, on_search: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Every strategy x seed as a stored search (a rerun resumes), then curves, regrets and the
    verdicts. Returns the report (JSON-ready)."""
    from scipy.stats import mannwhitneyu

    cfg.check()
    table = load_table(cfg.table)
    _, optimum = table.optimum(cfg.dataset, "valid")
    _, test_best = table.optimum(cfg.dataset, "test")
    budget = _budget_for_seconds(cfg) if cfg.seconds else cfg.budget
    curves: dict[str, list[dict[str, list[float]]]] = {}
    t0 = time.perf_counter()
    evaluations = 0
    for strategy in cfg.strategies:
        curves[strategy] = []
        for seed in range(cfg.seeds):
            res = _search(strategy, cfg, seed, budget, store=store, name=f"{name}/{cfg.dataset}/{strategy}",
                          executor=executor)
            evaluations += len(res.history)
            curves[strategy].append(_curves(res, optimum, test_best))
            if on_search is not None:
                on_search(strategy, seed)
    wall = time.perf_counter() - t0
    final: dict[str, dict[str, list[float]]] = {}
    for s, cs in curves.items():
        at = min(cfg.budget, min(len(c["regret"]) for c in cs))
        final[s] = {"regret": [c["regret"][at - 1] for c in cs], "test_regret": [c["test_regret"][at - 1] for c in cs]}
        if cfg.seconds:
            final[s]["regret_at_seconds"] = [_at_time(c, "regret", cfg.seconds) for c in cs]
            final[s]["reached_seconds"] = [c["seconds"][-1] >= cfg.seconds for c in cs]
    comparisons = []
    others = [s for s in cfg.strategies if s != "random"] if "random" in cfg.strategies else []
    for budget_kind in (["regret"] + (["regret_at_seconds"] if cfg.seconds else [])):
        raw = []
        for s in others:
            a, b = np.array(final[s][budget_kind]), np.array(final["random"][budget_kind])
            a, b = a[np.isfinite(a)], b[np.isfinite(b)]
            p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue) if len(a) > 1 and len(b) > 1 else math.nan
            raw.append({"strategy": s, "versus": "random", "budget": budget_kind, "p": p,
                        "mean_regret": float(np.mean(a)) if len(a) else math.nan,
                        "random_mean_regret": float(np.mean(b)) if len(b) else math.nan, "n": int(min(len(a), len(b)))})
        adj = holm([r["p"] if math.isfinite(r["p"]) else 1.0 for r in raw]) if raw else []
        for r, pa in zip(raw, adj):
            r["p_holm"] = pa
            r["verdict"] = ("[STAND-IN table: synthetic, says nothing about NB201] " if table.standin else "") + _verdict(r)
            comparisons.append(r)
    return {"config": {**cfg.__dict__, "strategies": list(cfg.strategies)}, "table": table.source,
            "standin": table.standin, "optimum_valid": optimum, "optimum_test": test_best,
            "budget_evaluations": cfg.budget, "evaluations_run": budget, "curves": curves, "final": final,
            "comparisons": comparisons, "wall_seconds": wall, "evaluations": evaluations,
            "evaluations_per_second": evaluations / max(wall, 1e-9)}


def _verdict(r: Mapping[str, Any]) -> str:
    what = "after the evaluation budget" if r["budget"] == "regret" else "at the simulated-seconds budget"
    if not math.isfinite(r["p"]):
        return f"{r['strategy']} vs random {what}: not enough seeds for a test"
    diff = r["random_mean_regret"] - r["mean_regret"]
    if r["p_holm"] < 0.05:
        better = "lower" if diff > 0 else "higher"
        return (f"{r['strategy']} reaches {better} regret than random search {what} (holds: mean {r['mean_regret']:.3f} "
                f"vs {r['random_mean_regret']:.3f} points, Mann-Whitney p={r['p']:.2g}, Holm-adjusted {r['p_holm']:.2g}, "
                f"n={r['n']} seeds each)")
    return (f"{r['strategy']} vs random {what}: inconclusive at {r['n']} seeds (mean regret {r['mean_regret']:.3f} vs "
            f"{r['random_mean_regret']:.3f} points, Mann-Whitney p={r['p']:.2g}, Holm-adjusted {r['p_holm']:.2g})")


def benchmark_table(report: Mapping[str, Any]):
    """Final regrets per strategy (mean and 95% t-interval over seeds) as a ReportTable."""
    from ...report import ReportTable
    from ...report.stats import describe

    label = "STAND-IN table (synthetic, not evidence)" if report["standin"] else f"table {Path(report['table']).name}"
    cfg = report["config"]
    cols = ["strategy", f"regret @ {report['budget_evaluations']} evals (valid, points)", "test regret of incumbent"]
    if cfg.get("seconds"):
        cols.append(f"regret @ {cfg['seconds']:.3g} simulated s")
    t = ReportTable(f"NB201 {cfg['dataset']}: {cfg['seeds']} seeds per strategy; {label}", cols,
                    note=f"optimum mean valid acc {report['optimum_valid']:.2f}%; ± = 95% t-interval over seeds")
    for s, f in report["final"].items():
        row = [s, describe(f["regret"]).text(1.0, 3), describe(f["test_regret"]).text(1.0, 3)]
        if cfg.get("seconds"):
            row.append(describe([v for v in f["regret_at_seconds"] if math.isfinite(v)]).text(1.0, 3))
        t.add(row)
    return t


def plot_benchmark(report: Mapping[str, Any], out: str | Path) -> list[Path]:
    """Mean regret with 95% t-intervals over seeds (cut at 0, regret's floor), against evaluations
    and against simulated seconds (log); PNG and SVG."""
    from scipy.stats import t as student

    from ...report.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for s, cs in report["curves"].items():
        n = min(len(c["regret"]) for c in cs)
        arr = np.array([c["regret"][:n] for c in cs], dtype=float)
        steps = np.arange(1, n + 1)
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(arr, 0)
            half = student.ppf(0.975, max(len(cs) - 1, 1)) * np.nanstd(arr, 0, ddof=1) / math.sqrt(len(cs))
        line, = axes[0].plot(steps, mean, label=f"{s} (n={len(cs)})")
        axes[0].fill_between(steps, np.maximum(mean - half, 0), mean + half, alpha=0.2, color=line.get_color(), linewidth=0)
        end = max(c["seconds"][-1] for c in cs)
        start = min(c["seconds"][0] for c in cs)
        grid = np.geomspace(max(start, 1.0), report["config"].get("seconds") or end, 120)
        tarr = np.array([[_at_time(c, "regret", g) for g in grid] for c in cs], dtype=float)
        with np.errstate(invalid="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore", RuntimeWarning)
            tm = np.nanmean(tarr, 0)
            th = student.ppf(0.975, max(len(cs) - 1, 1)) * np.nanstd(tarr, 0, ddof=1) / math.sqrt(len(cs))
        axes[1].plot(grid, tm, color=line.get_color(), label=s)
        axes[1].fill_between(grid, np.maximum(tm - th, 0), tm + th, alpha=0.2, color=line.get_color(), linewidth=0)
    tag = " [STAND-IN table: not evidence]" if report["standin"] else ""
    axes[0].set_xlabel("evaluations")
    axes[1].set_xlabel("simulated training seconds (table)")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_ylabel("regret (valid accuracy, points)")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"NB201 {report['config']['dataset']}: best-so-far regret, mean and 95% interval{tag}")
    return save_figure(fig, Path(out))


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    from ...report import markdown_table

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    plot = plot_benchmark(report, out / "regret")
    md = markdown_table(benchmark_table(report)) + "\n" + "\n".join(f"- {c['verdict']}" for c in report["comparisons"]) + "\n"
    (out / "report.md").write_text(md)
    return {"json": out / "report.json", "plot": plot[0], "markdown": out / "report.md"}
