"""`normlab evolve run|show|export`: evolve normalization-activation layers (EvoNorms) through
normlab.search; every candidate is a stored trial, so re-running the same command resumes."""

from __future__ import annotations

import json
from typing import List, Optional

import typer
from rich.table import Table

from ._app import app
from .common import (DEFAULT_STORE, check_out_dir, check_out_file, check_run, console, fail, guarded,
                     load_stored_search, open_executor, open_store)

evolve_app = typer.Typer(no_args_is_help=True, add_completion=False,
                         help="Evolve normalization-activation layers from primitive ops (EvoNorms).")
app.add_typer(evolve_app, name="evolve")


def _load_config(config: Optional[str], preset: Optional[str], overrides: dict):
    from ..evolve.search import EvolveConfig

    overrides = {k: v for k, v in overrides.items() if v is not None}
    if config is not None:
        from .._yaml import read_yaml_mapping

        try:
            loaded = read_yaml_mapping(config, "evolve config file")
        except ValueError as exc:
            raise fail(str(exc)) from None
        base = loaded.pop("preset", None)
        data = {**loaded, **overrides}
        return EvolveConfig.preset(base, **data) if base else EvolveConfig.from_dict(data)
    return EvolveConfig.preset(preset or "quick", **overrides)


def _decode(obj):
    from ..layers.genome import Genome

    return Genome.from_json(obj)


@evolve_app.command("run")
def run(
    config: Optional[str] = typer.Argument(None, help="YAML file of evolve settings (may name a preset)"),
    preset: Optional[str] = typer.Option(None, help="quick | paper (default quick)"),
    name: Optional[str] = typer.Option(None, help="the search's name in the store"),
    strategy: Optional[str] = typer.Option(None, help="evolution | random (the baseline)"),
    dataset: Optional[str] = typer.Option(None, help="proxy task dataset (digits, mnist5k, synthetic:...)"),
    anchors: Optional[str] = typer.Option(None, help="anchor models, e.g. resnet20@0.25,mobilenetv2@0.125"),
    budget: Optional[int] = typer.Option(None, help="candidates to evaluate"),
    population: Optional[int] = typer.Option(None),
    sample_size: Optional[int] = typer.Option(None, help="tournament size"),
    selection: Optional[str] = typer.Option(None, help="mean | pareto"),
    steps: Optional[int] = typer.Option(None, help="training steps per anchor"),
    batch_size: Optional[int] = typer.Option(None),
    norm_batch_size: Optional[int] = typer.Option(None, help="samples each layer normalizes over"),
    batch_independent: Optional[bool] = typer.Option(None, "--batch-independent/--batch-dependent",
                                                     help="forbid batch aggregates (S-series)"),
    seed: Optional[int] = typer.Option(None),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile",
                                           help="train each candidate with its genome compiled (inductor): same "
                                                "scores, pays a compilation per genome (default off; docs/evolve.md)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its estimated cost"),
    workers: int = typer.Option(1, help="parallel candidates (a process pool unless --backend ray)"),
    backend: str = typer.Option("serial", help="serial | process | ray"),
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
    timeout: Optional[float] = typer.Option(None, help="seconds each evaluation may take: a process pool or Ray kills a stuck one (stored as failed, timed out); serial runs cannot interrupt one"),
) -> None:
    """Evolve layers (or sample them at random with --strategy random) and print the best."""
    from ..evolve.search import rejection_counts, run_evolve

    if config is not None and preset is not None:
        raise fail(f"--preset {preset} and the config file {config} were both given: use one")
    check_run(name=name, backend=backend, workers=workers)
    try:
        cfg = _load_config(config, preset, dict(
            strategy=strategy, dataset=dataset, anchors=anchors, budget=budget, population=population,
            sample_size=sample_size, selection=selection, steps=steps, batch_size=batch_size,
            norm_batch_size=norm_batch_size, batch_independent=batch_independent, seed=seed,
            compile=compile))
        from ..runtime.executors import check_timeout

        check_timeout(timeout, "--timeout ")
        from ..data import check_dataset

        check_dataset(cfg.dataset)
    except (ValueError, TypeError) as exc:
        raise fail(str(exc).splitlines()[0]) from None
    name = name or f"evolve-{cfg.strategy}"          # seeds of one name are kept apart by the store
    if dry_run:
        _dry_run(cfg, name, workers)
        return
    db = open_store(store, readonly=False)
    try:
        executor = open_executor(backend, workers)
    except BaseException:
        db.close()
        raise
    try:
        with guarded(f"finished candidates are kept in {store}; run the same command again to resume."):
            result = run_evolve(cfg, store=db, name=name, executor=executor, timeout=timeout)
    finally:
        executor.close()
        db.close()
    counts = rejection_counts(result)
    console.print(f"[bold]{name}[/]: {len(result.history)} evaluated; passed {counts['passed']}, "
                  f"rejected quality {counts['quality']}, stability {counts['stability']}, diverged "
                  f"{counts['diverged']}; {result.invalid} invalid never trained", highlight=False)
    _print_top(result, 5)


def _dry_run(cfg, name: str, workers: int) -> None:
    import time

    from ..layers.genome import reference

    task = cfg.task
    t0 = time.time()
    bn = task(reference("bn_relu"))                    # one full candidate, timed
    per = time.time() - t0
    console.print(f"[bold]{name}[/] ({cfg.strategy}): {cfg.budget} candidates, anchors "
                  f"{', '.join(cfg.objectives)}, {cfg.steps} steps of {cfg.batch_size} on {cfg.dataset}"
                  f"{'' if cfg.norm_batch_size is None else f' (norm batch {cfg.norm_batch_size})'}",
                  highlight=False)
    console.print(f"estimated at most {per * cfg.budget / 60 / workers:.1f} min on {workers} worker(s) "
                  f"({per:.1f} s per fully trained candidate, timed on BN-ReLU"
                  f"{' compiled, its compilation included' if cfg.compile else ''}; rejected ones cost less)",
                  highlight=False)
    if bn.status == "ok":
        console.print("BN-ReLU on this proxy: " + ", ".join(f"{a} {100 * bn.metrics[a]:.1f}%"
                                                            for a in cfg.objectives), highlight=False)
    else:
        console.print(f"BN-ReLU did not pass this proxy: {bn.error}", highlight=False)


def _print_top(result, top: int) -> None:
    from ..layers.genome import formula
    from ..evolve.search import mean_fitness

    ok = sorted(result.ok, key=lambda e: -mean_fitness(e.scores, result.objectives))[:top]
    if not ok:
        console.print("no candidate passed the rejection rules")
        return
    table = Table(title="best layers")
    table.add_column("step")
    table.add_column("formula")
    for anchor in result.objectives:
        table.add_column(anchor)
    for e in ok:
        table.add_row(str(e.step), formula(e.arch), *(f"{100 * e.scores[a]:.1f}%" for a in result.objectives))
    console.print(table)


def _results(store: str, name: str):
    from ..layers.genome import GenomeError

    try:
        return load_stored_search(store, name, decode=_decode)
    except GenomeError:
        raise fail(f"search {name!r} is not a layer search (its candidates are not genomes): "
                   f"expected a search made by 'normlab evolve run'") from None


@evolve_app.command("show")
def show(name: str = typer.Argument(..., help="the search's name"),
         store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
         top: int = typer.Option(5, help="how many of the best layers to list")) -> None:
    """The best layers of a stored layer search: formula and accuracy per anchor."""
    from ..evolve.search import rejection_counts

    if top < 1:
        raise fail(f"--top {top} is invalid: expected a positive integer")
    for r in _results(store, name):
        counts = rejection_counts(r)
        console.print(f"[bold]{r.name}[/] ({r.strategy}, seed {r.config.get('seed')}): "
                      f"{len(r.history)} evaluated; passed {counts['passed']}, rejected quality "
                      f"{counts['quality']}, stability {counts['stability']}, diverged "
                      f"{counts['diverged']}; {r.infeasible} invalid never trained", highlight=False)
        _print_top(r, top)


@evolve_app.command("export")
def export(name: str = typer.Argument(..., help="the search's name"),
           out: str = typer.Option(..., "--out", help="JSON file to write (use as evolved:file=PATH)"),
           step: Optional[int] = typer.Option(None, help="the evaluation step to export (default the best)"),
           store: str = typer.Option(DEFAULT_STORE, help="SQLite results store")) -> None:
    """Write one evolved layer as JSON, usable anywhere a norm spec is: evolved:file=PATH."""
    from ..layers.genome import canonical, formula
    from ..evolve.search import mean_fitness

    results = _results(store, name)
    r = results[-1]
    if step is None:
        if not r.ok:
            raise fail(f"search {name!r} has no candidate that passed the rejection rules")
        e = max(r.ok, key=lambda e: mean_fitness(e.scores, r.objectives))
    else:
        found = [e for e in r.history if e.step == step]
        if not found:
            raise fail(f"--step {step} is not in search {name!r}: expected 0..{len(r.history) - 1}")
        e = found[0]
    path = check_out_file(out, "--out")
    g = canonical(e.arch)
    groups = json.loads(r.config.get("proxy") or "{}").get("groups")
    path.write_text(json.dumps({"genome": g.to_json(), "formula": formula(g), "code": g.code,
                                "groups": groups, "scores": e.scores, "search": name,
                                "step": e.step}, indent=2))
    console.print(f"wrote {formula(g)} to {path}; use it as the norm spec evolved:file={path}",
                  highlight=False)


def _layer_searches(store: str, names: List[str]):
    from ..evolve.report import task_of
    from ..evolve.search import EvolveError

    results = [r for n in names for r in _results(store, n)]
    try:
        for r in results:
            task_of(r)
    except EvolveError as exc:
        raise fail(str(exc)) from None
    return results


def _stored_rerank(db, name: str):
    """The latest re-ranking stored for search ``name`` as a table, or None."""
    from ..evolve.report import EVOLVE_KIND, layer_table

    found = db.experiments(name=f"{name}-rerank", kind=EVOLVE_KIND)
    if not found:
        return None
    exp = found[-1]
    rows: dict = {}
    for r in db.rows(experiment_id=exp.id):
        if r["status"] in ("ok", "diverged", "failed"):
            d = r["description"]
            rows.setdefault(d["layer"], []).append({"seed": d["seed"], "status": r["status"],
                                                    "metrics": r["metrics"], "code": d["code"]})
    task = exp.config["task"]
    return layer_table(rows, task["anchors"], f"re-ranking: {task['steps']} steps, "
                       f"{max(len(v) for v in rows.values())} seeds") if rows else None


@evolve_app.command("report")
def report(names: List[str] = typer.Argument(..., help="layer searches (all seeds of each), e.g. evo rnd"),
           out: str = typer.Option("runs/evolve-report", "--out", help="folder for report.html and figures"),
           fixed: str = typer.Option("bn_relu", help="reference layers for the fixed line(s), comma-separated "
                                     "(bn_relu, gn_relu, evonorm_b0, evonorm_s0; '' for none); trained once "
                                     "on the searches' proxy task and stored"),
           top: int = typer.Option(5, help="how many of the best layers to list"),
           store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
           margin: float = typer.Option(1.0, help="equivalence margin in fitness points for the claim "
                                        "'evolution beats random search' (shared rule, see normlab report)")) -> None:
    """HTML report: best fitness against candidates evaluated (evolution vs random search, mean
    and spread over seeds, the fixed BN-ReLU line), the Pareto front over the anchors, the top
    layers with their score per anchor, the rejection counts and the compute they saved."""
    from ..evolve.report import evaluate_layers, fixed_genomes, task_of, write_evolve_report
    from ..evolve.search import EvolveError

    if top < 1:
        raise fail(f"--top {top} is invalid: expected a positive integer")
    from .runs import check_margin

    margin = check_margin(margin)
    try:
        layers = fixed_genomes(fixed.split(","))
    except EvolveError as exc:
        raise fail(str(exc)) from None
    results = _layer_searches(store, names)
    folder = check_out_dir(out, "--out")
    task = task_of(results[0])
    scores = {}
    db = open_store(store, readonly=not layers)
    try:
        with guarded(f"finished trials are kept in {store}; run the same command again to resume."):
            if layers:
                from dataclasses import replace            # a fixed line is never rejected

                rows = evaluate_layers(layers, replace(task, reject_acc=None, stability_steps=0),
                                       seeds=[task.seed], store=db, name="evolve-fixed")
                scores = {label: runs[0]["metrics"] for label, runs in rows.items() if runs[0]["status"] == "ok"}
                for label, runs in rows.items():
                    if runs[0]["status"] != "ok":
                        console.print(f"{label} (fixed line) did not train: "
                                      f"{(runs[0]['error'] or '').splitlines()[0]}", highlight=False)
            rerank = _stored_rerank(db, names[0])
            paths = write_evolve_report(results, folder, fixed=scores, rerank=rerank, top=top, margin=margin)
    finally:
        db.close()
    from ..evolve.report import strategy_claims

    for line in strategy_claims(results, margin=margin):
        console.print(f"- {line}", highlight=False)
    console.print(f"report: {paths['html']} (and {paths['markdown'].name}, {paths['progress'].name}"
                  + (f", {paths['pareto'].name}" if "pareto" in paths else "") + ")", highlight=False)


@evolve_app.command("rerank")
def rerank(name: str = typer.Argument(..., help="the layer search (all its seeds)"),
           top: int = typer.Option(3, help="how many of the best evolved layers to re-train"),
           seeds: int = typer.Option(3, help="training seeds per layer (data split and init)"),
           steps: Optional[int] = typer.Option(None, help="training steps per anchor (default 3x the search's)"),
           norm_batch_size: Optional[int] = typer.Option(None, help="samples each layer normalizes over "
                                                         "(default the search's)"),
           references: str = typer.Option("bn_relu,gn_relu,evonorm_b0,evonorm_s0",
                                          help="reference layers to compare with, comma-separated"),
           out: Optional[str] = typer.Option(None, "--out", help="also write rerank.md into this folder"),
           workers: int = typer.Option(1, help="parallel trainings"),
           backend: str = typer.Option("serial", help="serial | process | ray"),
           store: str = typer.Option(DEFAULT_STORE, help="SQLite results store")) -> None:
    """Re-train the best evolved layers with longer training and several seeds, next to BN-ReLU,
    GN-ReLU and EvoNorm-B0/S0 (stored trials: rerunning resumes); no early rejection."""
    from dataclasses import replace

    from ..evolve.report import evaluate_layers, fixed_genomes, layer_table, task_of, top_layers
    from ..evolve.search import EvolveError, anchor_name
    from ..report import markdown_table, rich_table

    check_run(backend=backend, workers=workers)
    for flag, v in (("--top", top), ("--seeds", seeds), ("--steps", steps),
                    ("--norm-batch-size", norm_batch_size)):
        if v is not None and v < 1:
            raise fail(f"{flag} {v} is invalid: expected a positive integer")
    try:
        refs = fixed_genomes(references.split(","))
    except EvolveError as exc:
        raise fail(str(exc)) from None
    results = _layer_searches(store, [name])
    best = top_layers(results, top)
    if not best:
        raise fail(f"search {name!r} has no layer that passed the rejection rules")
    task = task_of(results[0])
    nb = norm_batch_size if norm_batch_size is not None else task.norm_batch_size
    if nb is not None and nb > task.batch_size:
        raise fail(f"--norm-batch-size {nb} is larger than the batch size {task.batch_size}")
    task = replace(task, steps=steps or 3 * task.steps, norm_batch_size=nb, reject_acc=None,
                   stability_steps=0, eval_limit=None)          # the whole test split
    layers = {f"evolved #{i + 1}": e.arch for i, (e, _) in enumerate(best)}
    layers.update(refs)
    folder = check_out_dir(out, "--out") if out else None
    executor = open_executor(backend, workers)
    db = open_store(store, readonly=False)
    try:
        with guarded(f"finished trainings are kept in {store}; run the same command again to resume."):
            rows = evaluate_layers(layers, task, seeds=list(range(task.seed, task.seed + seeds)),
                                   store=db, name=f"{name}-rerank", executor=executor)
    finally:
        executor.close()
        db.close()
    anchors = [anchor_name(m, w) for m, w in task.anchors]
    table = layer_table(rows, anchors, f"re-ranking: {task.steps} steps, {seeds} seeds"
                        + (f", normalization batch {nb}" if nb else ""))
    console.print(rich_table(table))
    if folder is not None:
        (folder / "rerank.md").write_text(markdown_table(table))
        console.print(f"wrote {folder / 'rerank.md'}")
