"""The two pictures of a search: best-so-far against evaluations (mean and spread over seeds),
and the Pareto front of a multi-objective search."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..report.figures import pyplot, save_figure
from .history import SearchResult, pareto_mask

__all__ = ["plot_progress", "plot_pareto"]


def _label(r: SearchResult) -> str:
    return r.name if r.name == r.strategy else f"{r.name} ({r.strategy})"


def plot_progress(results: Sequence[SearchResult], path: str | Path, objective: str | None = None,
                  title: str | None = None, reference: Mapping[str, float] | None = None) -> list[Path]:
    """Best-so-far on ``objective`` against evaluations, one line per search name: with several
    seeds, their mean and the band between the lowest and highest seed. ``reference``: fixed
    values drawn as dashed horizontal lines (label -> value), e.g. a hand-designed baseline's
    score. Writes PNG and SVG."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    groups: dict[str, list[list[float]]] = {}
    name = None
    for r in results:
        name = r._objective(objective or next(iter(r.objectives)))   # several: the first
        groups.setdefault(_label(r), []).append(r.best_so_far(name))
    for label, curves in groups.items():
        n = max(len(c) for c in curves)
        arr = np.full((len(curves), n), np.nan)
        for i, c in enumerate(curves):
            arr[i, :len(c)] = c
        steps = np.arange(1, n + 1)
        with warnings.catch_warnings():                 # all-NaN columns: before any success
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(arr, 0)
            lo, hi = np.nanmin(arr, 0), np.nanmax(arr, 0)
        line, = ax.plot(steps, mean, label=f"{label} (n={len(curves)})" if len(curves) > 1 else label)
        if len(curves) > 1:
            ax.fill_between(steps, lo, hi, alpha=0.2, color=line.get_color(), linewidth=0)
    for i, (label, value) in enumerate((reference or {}).items()):
        ax.axhline(value, linestyle="--", linewidth=1.2, color=f"C{(len(groups) + i) % 10}",
                   label=f"{label} ({value:.4g})")
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"best {name} so far" if name else "best so far")
    ax.set_title(title or "search progress")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, Path(path))


def plot_pareto(result: SearchResult, path: str | Path, x: str | None = None, y: str | None = None,
                title: str | None = None,
                reference: Mapping[str, tuple[float, float]] | None = None) -> list[Path]:
    """Every successful evaluation on two objectives, the non-dominated ones highlighted and
    joined. ``reference``: fixed points to mark (label -> (x, y)), e.g. a hand-designed
    baseline. Writes PNG and SVG."""
    names = list(result.objectives)
    if x is None or y is None:
        if len(names) < 2:
            raise ValueError(f"search '{result.name}' has one objective: a Pareto plot needs two")
        x, y = x or names[0], y or names[1]
    pts = [(e.scores[x], e.scores[y]) for e in result.ok if x in e.scores and y in e.scores]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    if pts:
        arr = np.array(pts)
        dirs = {x: result.objectives.get(x, "max"), y: result.objectives.get(y, "max")}
        keep = pareto_mask(arr, dirs)
        ax.scatter(arr[~keep, 0], arr[~keep, 1], s=12, alpha=0.4, color="0.5", label="evaluated")
        front = arr[keep][np.argsort(arr[keep][:, 0])]
        ax.plot(front[:, 0], front[:, 1], "o-", color="C3", label=f"Pareto front ({int(keep.sum())})")
    for i, (label, (px, py)) in enumerate((reference or {}).items()):
        ax.scatter([px], [py], marker="*", s=140, color=f"C{i}", zorder=3, label=label)
    ax.set_xlabel(f"{x} ({result.objectives.get(x, 'max')})")
    ax.set_ylabel(f"{y} ({result.objectives.get(y, 'max')})")
    ax.set_title(title or f"{result.name}: {len(pts)} evaluated")
    ax.grid(alpha=0.3)
    if pts or reference:
        ax.legend()
    return save_figure(fig, Path(path))
