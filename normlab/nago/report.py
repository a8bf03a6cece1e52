"""The HTML report of NAGO searches: the Pareto front (accuracy vs params) of each strategy,
best-so-far curves (BO against random search and RandWire, mean and band over seeds), drawings of
the best generator's graphs at the three levels, and a table of the best generators. Built on
normlab.report (page, tables) and normlab.search.plots (progress and Pareto figures)."""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..report import ReportTable, html_page, html_table, markdown_table
from ..search.plots import plot_pareto, plot_progress
from ..search.history import Evaluation, SearchResult

__all__ = ["write_report", "best_table", "by_strategy", "arm", "strategy_claims"]


def arm(result: SearchResult) -> str:
    """The strategy a search compares as: 'tpe', 'random', 'randwire', or 'tpe+halving3' when it
    ran successive halving with eta 3."""
    eta = result.config.get("halving_eta") or 0
    return f"{result.strategy}+halving{eta}" if eta else result.strategy


def by_strategy(results: Sequence[SearchResult]) -> dict[str, list[SearchResult]]:
    out: dict[str, list[SearchResult]] = {}
    for r in results:
        out.setdefault(arm(r), []).append(r)
    return out


def _merged(strategy: str, results: Sequence[SearchResult]) -> SearchResult:
    """Every evaluation of ``results`` (one strategy, several seeds) as one result, for its front."""
    history = [replace(e, step=i) for i, e in enumerate(e for r in results for e in r.history)]
    seeds = "" if len(results) == 1 else f", {len(results)} searches"
    return SearchResult(f"{strategy}{seeds}", strategy, dict(results[0].objectives), history)


def _acc(e: Evaluation) -> str:
    s = e.scores
    return f"{s['accuracy']:.4f} ± {s.get('accuracy_std', 0.0):.4f}"


def best_table(results: Sequence[SearchResult], top: int = 10) -> ReportTable:
    """The ``top`` generators by mean accuracy over all searches, with their spread and size."""
    rows = [(e, r) for r in results for e in r.ok if "accuracy" in e.scores]
    rows.sort(key=lambda t: (-t[0].scores["accuracy"], t[0].scores.get("params", 0)))
    fronts = {id(r): {e.step for e in r.pareto_front()} for r in results}
    table = ReportTable(f"the best generators ({min(top, len(rows))} of {len(rows)} evaluated)",
                        ["generator", "search", "strategy", "accuracy (mean ± std)", "min / max", "params",
                         "MFLOPs", "steps", "on its front"],
                        note="accuracy: mean over the networks sampled from the generator, each trained "
                             "briefly; params and FLOPs: their mean")
    for i, (e, r) in enumerate(rows[:top]):
        s = e.scores
        table.add([e.key, r.name, arm(r), _acc(e), f"{s.get('accuracy_min', float('nan')):.3f} / "
                   f"{s.get('accuracy_max', float('nan')):.3f}", f"{s.get('params', 0) / 1e3:.1f}k",
                   f"{s.get('flops', 0) / 1e6:.2f}", f"{s.get('train_steps', 0):.0f}",
                   "yes" if e.step in fronts[id(r)] else ""], emphasise=[3] if i == 0 else [])
    return table


def strategy_claims(results: Sequence[SearchResult], *, margin: float = 1.0) -> list[str]:
    """"BO beats random search" and "BO beats RandWire" (every arm against the baselines random
    and randwire): the best mean accuracy a search found over its whole budget, one value per
    search (seed), under the shared rule (normlab.report.stats.strategy_verdicts: Welch's t,
    Holm over the family, margin in points)."""
    from ..report.stats import strategy_verdicts

    finals = {name: [max(e.scores["accuracy"] for e in r.ok if "accuracy" in e.scores)
                     for r in group if any("accuracy" in e.scores for e in r.ok)]
              for name, group in by_strategy(results).items()}
    return strategy_verdicts(finals, ["random", "randwire"], what="best accuracy", margin=margin)


def write_report(results: Sequence[SearchResult], out_dir: str | Path, title: str | None = None, *,
                 margin: float = 1.0) -> Path:
    """report.html and report.md (plus the figures, PNG and SVG) in ``out_dir``; returns the page.
    The strategies' claims (:func:`strategy_claims`, equivalence ``margin`` in points) are in both."""
    from .draw import draw_generator
    from .generator import GeneratorParams

    if not results:
        raise ValueError("no NAGO search to report on")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    groups = by_strategy(results)
    figures: list[tuple[str, Path]] = []
    # best-so-far: one line per strategy (mean and band over its seeds) when a strategy ran several
    # times, else one line per search
    curves = [replace(r, name=arm(r), strategy=arm(r)) for r in results] \
        if any(len(g) > 1 for g in groups.values()) else list(results)
    figures.append(("best accuracy so far against evaluations",
                    plot_progress(curves, out / "progress", "accuracy",
                                  title="best-so-far accuracy: BO vs random search vs RandWire")[0]))
    for strategy, group in groups.items():
        merged = _merged(strategy, group)
        if merged.ok:
            figures.append((f"Pareto front: {merged.name}",
                            plot_pareto(merged, out / f"pareto-{strategy}", "params", "accuracy",
                                        title=f"{merged.name}: accuracy vs params")[0]))
    ok = [(e, r) for r in results for e in r.ok if "accuracy" in e.scores]
    intro = (f"{len(results)} search(es): " + ", ".join(f"{html.escape(r.name)} ({r.strategy}, "
                                                        f"{len(r.history)} evaluations)" for r in results))
    if ok:
        best, where = max(ok, key=lambda t: (t[0].scores["accuracy"], -t[0].scores.get("params", 0)))
        figures.append((f"the best generator's graphs: {best.key}",
                        draw_generator(GeneratorParams.from_dict(best.arch), out / "best-graphs.png", seed=0)))
        intro += (f". Best generator: {html.escape(best.key)} from {html.escape(where.name)}, accuracy "
                  f"{_acc(best)} at {best.scores.get('params', 0) / 1e3:.1f}k params.")
    table = best_table(results)
    claims = strategy_claims(results, margin=margin)
    md = markdown_table(table) + "".join(f"\n- {line}" for line in claims) + ("\n" if claims else "")
    (out / "report.md").write_text(md)
    page = out / "report.html"
    sections = [html_table(table)]
    if claims:
        sections.append("<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in claims) + "</ul>")
    page.write_text(html_page(title or "NAGO: network-generator search", sections, figures=figures,
                              intro=intro, markdown=md))
    return page
