"""What a layer search leaves for a reader, and the re-ranking of its best layers.

- :func:`evaluate_layers`: fixed genomes (the reference layers, a search's top candidates)
  trained on a proxy task over several seeds as stored trials of one experiment (kind
  ``evolve``) through ``normlab.runtime``'s Driver, so a rerun trains only what is missing.
- :func:`write_evolve_report`: the EvoNorms paper's Fig. 10 (best fitness against candidates
  evaluated, evolution against random search, mean and the band between seeds, the fixed
  BN-ReLU line; ``normlab.search.plots.plot_progress``), the Pareto front of every evaluated
  layer over the first two anchors (``plot_pareto``), the top layers' formulas with their score
  per anchor, what each rejection rule dropped and the compute it saved, and the re-ranking
  table when there is one; one self-contained report.html (``normlab.report``) and report.md.

The fitness of a layer is the mean of its K anchor accuracies.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..layers.genome import Genome, canonical, formula, reference
from .search import EvolveError, ProxyTask, _anchors, anchor_name, rejection_counts

__all__ = ["EVOLVE_KIND", "LayerTrial", "task_of", "evaluate_layers", "layer_table", "fitness_view",
           "top_layers", "rejection_table", "write_evolve_report", "strategy_claims", "FIXED_LABELS", "fixed_genomes"]

EVOLVE_KIND = "evolve"
FIXED_LABELS = {"bn_relu": "BN-ReLU", "gn_relu": "GN-ReLU", "evonorm_b0": "EvoNorm-B0",
                "evonorm_s0": "EvoNorm-S0"}


def _mean(scores: Mapping[str, float], anchors: Iterable[str]) -> float:
    anchors = list(anchors)
    return sum(scores[a] for a in anchors) / len(anchors)


def task_of(result: Any) -> ProxyTask:
    """The proxy task a stored layer search trained its candidates with (from its config)."""
    proxy = json.loads(result.config.get("proxy") or "null")
    if not isinstance(proxy, dict):
        raise EvolveError(f"search {result.name!r} is not a layer search (its config has no proxy task)")
    known = {f.name for f in fields(ProxyTask)} - {"seed"}
    kw = {k: v for k, v in proxy.items() if k in known}
    kw["anchors"] = _anchors(kw.get("anchors", ()))
    return ProxyTask(**kw, seed=int(proxy.get("data_seed", 0)))


def fixed_genomes(names: Iterable[str]) -> dict[str, Genome]:
    """Reference layers by name (bn_relu, gn_relu, evonorm_b0, evonorm_s0) -> their genomes."""
    out = {}
    for n in names:
        n = n.strip()
        if n:
            try:
                out[FIXED_LABELS.get(n, n)] = reference(n)
            except ValueError as exc:
                raise EvolveError(str(exc)) from None
    return out


# -- fixed layers as stored trials --------------------------------------------------------

class LayerTrial:
    """The runtime trial: train the genome of the description (``code``) on ``task`` with the
    description's ``seed`` (the task's data split and initialisation)."""

    def __init__(self, task: ProxyTask) -> None:
        self.task = task

    def __call__(self, description: Mapping[str, Any], context: Any = None) -> Any:
        return replace(self.task, seed=int(description["seed"]))(Genome.from_code(description["code"]))


def evaluate_layers(layers: Mapping[str, Genome], task: ProxyTask, *, seeds: Sequence[int],
                    store: Any, name: str, executor: Any = None) -> dict[str, list[dict[str, Any]]]:
    """Train each layer on ``task`` once per seed, as stored trials of the experiment ``name``
    (resumable: finished trials are read, not trained again). Returns label -> one row per seed
    (``status``, ``metrics``, ``error``)."""
    from ..runtime import Driver, Store

    if not seeds:
        raise EvolveError("seeds is empty: expected at least one seed")
    db = Store(store) if isinstance(store, (str, Path)) else store
    try:
        task_cfg = {k: v for k, v in asdict(task).items() if k not in ("seed", "threads")}
        task_cfg["anchors"] = [anchor_name(m, w) for m, w in task.anchors]
        exp = db.experiment(name, EVOLVE_KIND, {"task": task_cfg})
        descs = [{"layer": label, "code": canonical(g).code, "seed": int(s)}
                 for label, g in layers.items() for s in seeds]
        driver = Driver(db, exp, LayerTrial(task), executor)
        try:
            driver.run(descs, poll_every=0.5)
        finally:
            driver.close()
        ids = db.add_trials(exp, descs)
        rows = {r["id"]: r for r in db.rows(ids=ids)}
        out: dict[str, list[dict[str, Any]]] = {}
        for d, tid in zip(descs, ids):
            r = rows[tid]
            out.setdefault(d["layer"], []).append({"seed": d["seed"], "status": r["status"],
                                                   "metrics": r["metrics"], "error": r["error"],
                                                   "code": d["code"]})
        return out
    finally:
        if db is not store:
            db.close()


def layer_table(rows: Mapping[str, list[dict[str, Any]]], anchors: Sequence[str], title: str) -> Any:
    """Mean ± sd over seeds per anchor and of the fitness (the anchors' mean); best emphasised."""
    from ..report import ReportTable, describe

    table = ReportTable(title, ["layer", "formula", *anchors, "fitness", "seeds ok"],
                        note="accuracy (%), mean ± sd over seeds; a failed or rejected seed counts 0")
    means = {}
    for label, runs in rows.items():
        per = {a: [100 * (r["metrics"].get(a, 0.0) if r["status"] == "ok" else 0.0) for r in runs]
               for a in anchors}
        fit = [sum(per[a][i] for a in anchors) / len(anchors) for i in range(len(runs))]
        means[label] = describe(fit).mean
        cells = [f"{statistics.mean(v):.1f} ± {statistics.pstdev(v):.1f}" for v in per.values()]
        table.add([label, formula(Genome.from_code(runs[0]["code"])), *cells,
                   f"{statistics.mean(fit):.1f} ± {statistics.pstdev(fit):.1f}",
                   f"{sum(r['status'] == 'ok' for r in runs)}/{len(runs)}"])
    if means:
        best = max(means, key=means.get)
        table.emphasis.add((list(rows).index(best), len(anchors) + 2))
    return table


# -- the search's pictures and tables ------------------------------------------------------

def fitness_view(results: Sequence[Any], label: str | None = None) -> list[Any]:
    """Copies of layer searches with one objective ``fitness`` (the mean anchor accuracy), named
    ``label`` (default the strategy) so that plot_progress draws one line per strategy."""
    from ..search import Evaluation, SearchResult

    out = []
    for r in results:
        hist = []
        for e in r.history:
            scores = dict(e.scores)
            if e.ok and all(a in scores for a in r.objectives):
                scores["fitness"] = _mean(scores, r.objectives)
            hist.append(Evaluation(e.step, e.key, e.arch, scores, e.status, e.error))
        name = label or ("random search" if r.strategy == "random" else r.strategy)
        out.append(SearchResult(name, name, {"fitness": "max"}, hist, dict(r.config), r.stopped,
                                r.infeasible))
    return out


def top_layers(results: Sequence[Any], n: int) -> list[tuple[Any, Any]]:
    """The ``n`` best distinct layers (by canonical key) over all the searches, by fitness:
    (evaluation, its search)."""
    seen: dict[str, tuple[float, Any, Any]] = {}
    for r in results:
        for e in r.ok:
            if all(a in e.scores for a in r.objectives):
                fit = _mean(e.scores, r.objectives)
                if e.key not in seen or fit > seen[e.key][0]:
                    seen[e.key] = (fit, e, r)
    ranked = sorted(seen.values(), key=lambda t: -t[0])[:n]
    return [(e, r) for _, e, r in ranked]


def rejection_table(results: Sequence[Any]) -> Any:
    """Per search: evaluated, passed, rejected per rule, invalid (never trained), and the
    training steps and seconds the rejections saved (a rejected layer stops training the moment
    its rule fires; an invalid one is never trained; seconds at the search's measured cost per
    step of a fully trained candidate)."""
    from ..report import ReportTable

    table = ReportTable("rejection: what each rule dropped and the compute it saved",
                        ["search", "seed", "evaluated", "passed", "quality", "stability", "diverged",
                         "invalid (never trained)", "steps saved", "seconds saved"],
                        note="steps saved = full training steps (steps x anchors) not run; "
                             "invalid layers fail the validity check and do not use budget")
    per_step = []                        # seconds per training step of fully trained candidates
    for r in results:
        try:
            full = task_of(r).steps * len(task_of(r).anchors)
        except EvolveError:
            continue
        per_step += [e.scores["seconds"] / full for e in r.ok if "seconds" in e.scores]
    sec_per_step = statistics.mean(per_step) if per_step else math.nan
    for r in results:
        try:
            task = task_of(r)
        except EvolveError:
            continue
        full = task.steps * len(task.anchors)
        c = rejection_counts(r)
        saved = 0
        for e in r.history:
            if not e.ok and "rejected (" in (e.error or ""):
                saved += full - int(e.scores.get("steps_total", e.scores.get("steps_trained", 0)))
        saved += r.infeasible * full
        table.add([r.name, str(r.config.get("seed", "")), str(len(r.history)), str(c["passed"]),
                   str(c["quality"]), str(c["stability"]), str(c["diverged"]), str(r.infeasible),
                   f"{saved:,}", f"{saved * sec_per_step:,.0f}" if per_step else "-"])
    return table


def strategy_claims(results: Sequence[Any], *, margin: float = 1.0) -> list[str]:
    """"Evolution beats random search" (and any other strategy against random search): the best
    fitness after the whole budget, one value per search (seed), under the shared rule
    (normlab.report.stats.strategy_verdicts: Welch's t, Holm over the family, margin in points)."""
    from ..report.stats import strategy_verdicts

    finals: dict[str, list[float]] = {}
    for r in fitness_view(results):
        curve = r.best_so_far("fitness")
        if curve and not math.isnan(curve[-1]):
            finals.setdefault(r.name, []).append(curve[-1])
    return strategy_verdicts(finals, ["random search"], what="best fitness", margin=margin)


def write_evolve_report(results: Sequence[Any], out_dir: str | Path, *,
                        fixed: Mapping[str, Mapping[str, float]] | None = None,
                        rerank: Any = None, top: int = 5, margin: float = 1.0) -> dict[str, Path]:
    """progress.png/.svg, pareto.png/.svg (K >= 2 anchors), report.html and report.md in
    ``out_dir``. ``fixed``: label -> score per anchor of fixed layers (BN-ReLU: the dashed line);
    ``rerank``: a ReportTable from :func:`layer_table` to include; ``margin``: the equivalence
    margin (points) of the strategy claims (:func:`strategy_claims`)."""
    from ..report import html_page, html_table, markdown_table

    if not results:
        raise EvolveError("no layer search to report: expected at least one stored search")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    anchors = list(results[0].objectives)
    lines = {label: _mean(s, anchors) for label, s in (fixed or {}).items()
             if all(a in s for a in anchors)}
    figures, paths = _figures(results, out, anchors, fixed or {}, lines)
    best = _top_table(results, anchors, fixed or {}, top)
    curve = _curve_table(results, lines)
    claims = strategy_claims(results, margin=margin)

    tables = [curve, best, rejection_table(results)] + ([rerank] if rerank is not None else [])
    md = "\n".join(markdown_table(t) for t in tables)
    if claims:
        md += "\n" + "\n".join(f"- {line}" for line in claims) + "\n"
    (out / "report.md").write_text(md)
    task = task_of(results[0])
    intro = (f"{len(results)} layer search(es) on {task.dataset}, anchors {', '.join(anchors)}, "
             f"{task.steps} steps of batch {task.batch_size}"
             + (f" (normalization batch {task.norm_batch_size})" if task.norm_batch_size else "")
             + f", lr {task.lr:g}. Fitness is the mean anchor accuracy.")
    import html as _html

    sections = [html_table(t) for t in tables]
    if claims:
        sections.insert(1, "<ul>" + "".join(f"<li>{_html.escape(line)}</li>" for line in claims) + "</ul>")
    page = html_page("normlab evolve: evolved normalization-activation layers",
                     sections, figures=figures, intro=intro, markdown=md)
    (out / "report.html").write_text(page)
    paths.update(html=out / "report.html", markdown=out / "report.md")
    return paths


def _figures(results: Sequence[Any], out: Path, anchors: list[str], fixed: Mapping[str, Mapping[str, float]],
             lines: Mapping[str, float]) -> tuple[list[tuple[str, Path]], dict[str, Path]]:
    """The progress plot, and the Pareto plot over the first two anchors when there are two."""
    from ..search import Evaluation, SearchResult
    from ..search.plots import plot_pareto, plot_progress

    figures = []
    progress = plot_progress(fitness_view(results), out / "progress", objective="fitness",
                             title="best fitness (mean anchor accuracy) vs candidates evaluated",
                             reference=lines)
    figures.append(("best fitness against candidates evaluated (mean and min-max band over seeds)",
                    progress[0]))
    paths = {"progress": progress[0]}
    if len(anchors) >= 2:
        merged: dict[str, Any] = {}
        for r in results:
            for e in r.ok:
                if all(a in e.scores for a in anchors):
                    merged.setdefault(e.key, e)
        allr = SearchResult("all layers", "all", {a: "max" for a in anchors},
                            [Evaluation(i, e.key, e.arch, e.scores) for i, e in enumerate(merged.values())])
        marks = {label: (s[anchors[0]], s[anchors[1]]) for label, s in fixed.items()
                 if anchors[0] in s and anchors[1] in s}
        pareto = plot_pareto(allr, out / "pareto", x=anchors[0], y=anchors[1], reference=marks,
                             title=f"every layer trained ({len(merged)}): Pareto front over the anchors")
        figures.append((f"Pareto front over the anchors {anchors[0]} and {anchors[1]}", pareto[0]))
        paths["pareto"] = pareto[0]
    return figures, paths


def _top_table(results: Sequence[Any], anchors: list[str], fixed: Mapping[str, Mapping[str, float]], top: int):
    """The best ``top`` layers over every search, and the fixed layers beside them."""
    from ..report import ReportTable

    best = ReportTable(f"top {top} layers", ["#", "formula", *anchors, "fitness", "search", "seed", "step"],
                       note="accuracy (%) on the proxy task, one training run")
    for i, (e, r) in enumerate(top_layers(results, top)):
        best.add([str(i + 1), formula(e.arch), *(f"{100 * e.scores[a]:.1f}" for a in anchors),
                  f"{100 * _mean(e.scores, anchors):.1f}", r.name, str(r.config.get("seed", "")),
                  str(e.step)], emphasise=[len(anchors) + 2] if i == 0 else [])
    for label, s in fixed.items():
        if all(a in s for a in anchors):
            best.add([label, "(fixed layer)", *(f"{100 * s[a]:.1f}" for a in anchors),
                      f"{100 * _mean(s, anchors):.1f}", "", "", ""])
    return best


def _curve_table(results: Sequence[Any], lines: Mapping[str, float]):
    """Best fitness so far per strategy at a few budgets, mean ± sd over seeds."""
    from ..report import ReportTable

    curve = ReportTable("best fitness so far (%), mean ± sd over seeds",
                        ["strategy", "seeds", *[f"at {n}" for n in _marks(results)]],
                        note="after n candidates evaluated; (k/n seeds): only k seeds had a layer that "
                             "passed the rejection rules by then")
    groups: dict[str, list[list[float]]] = {}
    for r in fitness_view(results):
        groups.setdefault(r.name, []).append(r.best_so_far("fitness"))
    for label, curves in groups.items():
        cells = []
        for n in _marks(results):
            vals = [100 * c[n - 1] for c in curves if len(c) >= n and not math.isnan(c[n - 1])]
            found = "" if len(vals) == len(curves) else f" ({len(vals)}/{len(curves)} seeds)"
            cells.append(f"{statistics.mean(vals):.1f} ± {statistics.pstdev(vals):.1f}{found}"
                         if vals else "-")
        curve.add([label, str(len(curves)), *cells])
    for label, value in lines.items():
        curve.add([f"{label} (fixed)", "", f"{100 * value:.1f}", *[""] * (len(_marks(results)) - 1)])
    return curve


def _marks(results: Sequence[Any]) -> list[int]:
    n = max(len(r.history) for r in results)
    marks = sorted({m for m in (10, n // 4, n // 2, 3 * n // 4, n) if 1 <= m <= n})
    return marks
