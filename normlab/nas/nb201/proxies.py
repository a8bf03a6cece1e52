"""Data-free proxies on NB201 judged against the table: #params, FLOPs and synflow.

**synflow** (Tanaka et al., NeurIPS 2020, as the zero-cost-proxy study of Abdelfattah et al.,
ICLR 2021 computes it on NB201): the network at its initialisation, its norms removed
(identity), in float64, every parameter and buffer replaced by its absolute value (the
"linearised" network: with non-negative weights and a non-negative input every ReLU passes
everything), an all-ones input of one image; R = sum of the outputs; the score is the sum over
the weights of every conv and linear layer of |theta * dR/dtheta|. We report log(score), which
ranks the same. With norms removed the score does not depend on the norm spec.

#params and FLOPs are the analytic counts of the built network (normlab's construction, not
the table's column, which differs on ~1% of cells).

The correlation goes through the same report as ``normlab nas correlate`` (scatter plots, the
rank-correlation table with bootstrap intervals, HTML), with the table's mean test accuracy as
the truth, and the table's own seed-to-seed agreement as the noise ceiling.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from .space import analytic_flops, analytic_params
from .table import CLASSES, DATASETS, IMAGE_SIZE, load_table

__all__ = ["synflow", "strip_norms", "PROXIES", "ProxyTrial", "proxy_scores", "correlate_table"]

PROXIES = ("params", "flops", "synflow")


def strip_norms(model: nn.Module) -> nn.Module:
    """Replace every normalization layer (normlab's registry, torch's norms) by an identity, in place."""
    from ...layers.registry import NORMS

    kinds = tuple({info.cls for info in NORMS.values()}) + (nn.modules.batchnorm._NormBase, nn.GroupNorm,
                                                           nn.LayerNorm)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kinds):
                setattr(parent, name, nn.Identity())
    return model


def synflow(model: nn.Module, input_shape: Sequence[int]) -> float:
    """The synflow score of ``model`` (modified in place: pass a fresh copy), see the module
    docstring; ``input_shape`` is (channels, height, width)."""
    m = strip_norms(model).double()
    with torch.no_grad():
        for t in m.state_dict().values():
            if t.is_floating_point():
                t.abs_()
    m.zero_grad(set_to_none=True)
    m.train()
    out = m(torch.ones(1, *input_shape, dtype=torch.float64))
    out.sum().backward()
    total = 0.0
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.weight.grad is not None:
            total += float((mod.weight.detach() * mod.weight.grad).abs().sum())
    return total


@dataclass(frozen=True)
class ProxyTrial:
    """evaluate(arch) -> every proxy's score of one cell and the seconds each took (a trial of
    the runtime: stored, resumable, runs on any executor). synflow's network is initialised from
    a seed derived from ``seed`` and the cell's table index, so a cell scores the same in any
    order and on any worker."""

    dataset: str
    C: int = 16
    N: int = 5
    seed: int = 0

    def __call__(self, arch: str) -> dict[str, float]:
        from ...models.nb201 import NB201Net
        from .space import arch_to_index

        classes, size = CLASSES[self.dataset], IMAGE_SIZE[self.dataset]
        out: dict[str, float] = {}
        t = time.perf_counter()
        out["params"] = float(analytic_params(arch, C=self.C, N=self.N, num_classes=classes))
        out["seconds_params"] = time.perf_counter() - t
        t = time.perf_counter()
        out["flops"] = float(analytic_flops(arch, C=self.C, N=self.N, num_classes=classes, image_size=size))
        out["seconds_flops"] = time.perf_counter() - t
        t = time.perf_counter()
        torch.manual_seed(self.seed * 100_003 + arch_to_index(arch))
        s = synflow(NB201Net(arch, C=self.C, N=self.N, num_classes=classes), (3, size, size))
        out["synflow"] = math.log(s) if s > 0 else -1e300
        out["seconds_synflow"] = time.perf_counter() - t
        return out


def proxy_scores(archs: Sequence[str], dataset: str, *, C: int = 16, N: int = 5, seed: int = 0, store: Any = None,
                 name: str = "nb201-proxies", executor: Any = None,
                 on_result: Callable[[Any], None] | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Each proxy's score for every cell (synflow as log) and the mean seconds per cell, as trials
    of one stored experiment (a rerun skips the cells already scored)."""
    from ...runtime import Driver, Store
    from ...search import EvaluateTrial
    from .space import NB201Space

    db = store if isinstance(store, Store) else (Store(store) if store else Store.in_memory())
    config = {"strategy": "nb201-proxies", "objectives": {"synflow": "max"}, "dataset": dataset, "C": C, "N": N,
              "seed": seed}
    exp = db.experiment(name, "nas", config)
    descs = [{"key": a, "arch": a} for a in archs]
    driver = Driver(db, exp, EvaluateTrial(ProxyTrial(dataset, C, N, seed), NB201Space()), executor)
    try:
        driver.run(descs, poll_every=0.2, on_result=on_result)
    finally:
        driver.close()
    rows = {r["description"]["key"]: r for r in db.rows(experiment_id=exp.id)}
    failed = [a for a in archs if rows[a]["status"] != "ok"]
    if failed:
        err = (rows[failed[0]]["error"] or "").strip().splitlines()
        from ...models.nb201 import NB201Error

        raise NB201Error(f"{len(failed)} cells failed to score (run again to retry them); first {failed[0]}: "
                         f"{err[-1] if err else '?'}")
    scores = {p: np.array([rows[a]["metrics"][p] for a in archs], dtype=float) for p in PROXIES}
    seconds = {p: float(np.mean([rows[a]["metrics"][f"seconds_{p}"] for a in archs])) for p in PROXIES}
    if db is not store:
        db.close()
    return scores, seconds


def _noise_ceiling(table, dataset: str, rows: np.ndarray, bootstrap: int, seed: int) -> dict[str, Any] | None:
    """Rank agreement of the table with itself: the test accuracy of the first two seeds, over the
    sampled cells trained with both."""
    from ...search import rank_correlation

    acc = table.test[dataset][rows]
    if acc.shape[1] < 2:
        return None
    both = np.isfinite(acc[:, 0]) & np.isfinite(acc[:, 1])
    if both.sum() < 3:
        return None
    out = rank_correlation(acc[both, 1], acc[both, 0], bootstrap=bootstrap, seed=seed).to_dict()
    out["seeds"] = table.seeds[dataset][:2]
    return out


def correlate_table(source: str, dataset: str, *, n: int | None = 1000, seed: int = 0, C: int = 16, N: int = 5,
                    bootstrap: int = 1000, out_dir: str | Path | None = None, store: Any = None,
                    name: str | None = None, executor: Any = None,
                    on_result: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Rank correlation of each proxy with the table's mean test accuracy on ``n`` cells drawn
    uniformly without replacement (None: all 15,625), in the report format of ``normlab nas
    correlate``; written to ``out_dir`` (report.json, scatter plots, HTML, markdown) if given."""
    from ...search import rank_correlation

    table = load_table(source)
    table.check_dataset(dataset)
    truth_all = table.mean_accuracy(dataset, "test")
    rows = np.arange(len(table))
    rows = rows[np.isfinite(truth_all)]
    if n is not None and n < len(rows):
        rows = np.array(sorted(random.Random(seed).sample(list(rows), n)))
    archs = [table.archs[i] for i in rows]
    t0 = time.perf_counter()
    scores, seconds = proxy_scores(archs, dataset, C=C, N=N, seed=seed, store=store, executor=executor,
                                   name=name or f"nb201-proxies/{dataset}/C{C}N{N}", on_result=on_result)
    wall = time.perf_counter() - t0
    truth = truth_all[rows]
    corr = {}
    for p, v in scores.items():
        ok = np.isfinite(v)
        try:
            corr[p] = rank_correlation(v[ok], truth[ok], bootstrap=bootstrap, seed=seed).to_dict()
        except ValueError as exc:
            corr[p] = {"error": str(exc)}
    ceiling = _noise_ceiling(table, dataset, rows, bootstrap, seed)
    label = "STAND-IN table (synthetic): not evidence" if table.standin else f"table {Path(table.source).name}"
    parts = [f"{p}: rho {c['spearman']:.2f} [{c['spearman_ci'][0]:.2f}, {c['spearman_ci'][1]:.2f}], tau {c['kendall']:.2f}"
             for p, c in corr.items() if "kendall" in c]
    verdict = (f"NB201 {dataset}, {len(rows)} cells ({'all' if n is None or len(rows) == len(table) else 'uniform sample'}), "
               f"truth = the table's mean test accuracy ({label}). " + "; ".join(parts) + ". Published on NB201 CIFAR-10 "
               "(Abdelfattah et al. 2021): synflow rho 0.74, #params rho 0.73.")
    if ceiling is not None:
        verdict += f" The table agrees with itself (seed {ceiling['seeds'][0]} vs {ceiling['seeds'][1]}) to tau {ceiling['kendall']:.2f}."
    report = {"n": len(rows), "space": "nb201", "dataset": dataset,
              "title": f"NAS-Bench-201 {dataset}: do data-free proxies rank like the table?", "table": table.source, "standin": table.standin,
              "truth": "mean test accuracy over the table's seeds" + (" (STAND-IN table, not evidence)" if table.standin else ""), "truth_label": f"table mean test accuracy on {dataset} (%)",
              "truth_scale": 1.0, "paths": [int(i) for i in rows], "archs": archs, "standalone_acc": truth.tolist(),
              "proxies": {k: v.tolist() for k, v in scores.items()}, "correlation": corr,
              "seconds_per_subnet": seconds, "wall_seconds": wall, "early_stage_tau": {},
              "noise_ceiling": ceiling, "C": C, "N": N, "verdict": verdict}
    if out_dir is not None:
        import json

        from ..report import write_correlation_report

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
        report["files"] = {k: str(v) for k, v in write_correlation_report(report, out).items()}
    return report


def datasets_or_all(dataset: str | None) -> list[str]:
    return list(DATASETS) if dataset in (None, "all") else [dataset]
