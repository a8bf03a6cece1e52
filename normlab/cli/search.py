"""`normlab search runs|show|export|plot`: any stored search (read-only); the searches built on
the engine (evolve, nas, nago) add their own `run` commands."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ._app import app
from .common import DEFAULT_STORE, check_out_dir, check_out_file, console, fail, load_stored_search, open_store

search_app = typer.Typer(no_args_is_help=True, add_completion=False,
                         help="List, inspect, export and plot stored searches.")
app.add_typer(search_app, name="search")


def _best_text(result) -> str:
    parts = []
    for name, d in result.objectives.items():
        vals = [e.scores[name] for e in result.ok if name in e.scores]
        if vals:
            parts.append(f"{name}={max(vals) if d == 'max' else min(vals):.4g}")
    return " ".join(parts) or "-"


# what the searches store their experiments as (the engine's, a layer re-ranking's, NAS
# retraining's, NAGO's and NAGO retraining's); a store may hold others, listed from it too
KINDS = ("search", "evolve", "nas", "nago", "nago-retrain")


@search_app.command("runs")
def runs(store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
         kind: Optional[str] = typer.Option(None, help=" | ".join(KINDS))) -> None:
    """List the searches in a store: name, strategy, seed, evaluations, best."""
    from ..search import SearchResult, searches

    db = open_store(store, readonly=True)
    try:
        kinds = sorted(set(KINDS) | {e.kind for e in searches(db)})
        if kind is not None and kind not in kinds:
            raise fail(f"--kind {kind} is invalid: expected one of {', '.join(kinds)}")
        found = searches(db, kind=kind)
        table = Table(title=f"searches in {store}")
        for col in ("name", "kind", "strategy", "seed", "evaluated", "failed", "budget", "best", "created"):
            table.add_column(col)
        for e in found:
            r = SearchResult.from_store(db, e)
            failed = sum(not h.ok for h in r.history)
            created = _dt.datetime.fromtimestamp(e.created).strftime("%Y-%m-%d %H:%M")
            table.add_row(e.name, e.kind, str(e.config.get("strategy", "-")), str(e.config.get("seed", "-")),
                          str(len(r.history)), str(failed), str(e.config.get("budget", "-")),
                          _best_text(r), created)
    finally:
        db.close()
    if not found:
        console.print(f"no searches in {store} yet")
        return
    console.print(table)


@search_app.command("show")
def show(name: str = typer.Argument(..., help="the search's name"),
         store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
         seed: Optional[int] = typer.Option(None, help="only this seed"),
         top: int = typer.Option(10, help="how many of the best to list")) -> None:
    """A search's settings, its best evaluations (or its Pareto front) and its failures."""
    if top < 1:
        raise fail(f"--top {top} is invalid: expected a positive integer")
    for r in load_stored_search(store, name, seed=seed):
        settings = ", ".join(f"{k}={v}" for k, v in r.config.items() if k not in ("space",))
        console.print(f"[bold]{r.name}[/] ({r.strategy}): {len(r.history)} evaluated, "
                      f"{sum(not e.ok for e in r.history)} failed; {settings}", highlight=False)
        if len(r.objectives) > 1:
            rows, title = sorted(r.pareto_front(), key=lambda e: e.step), "Pareto front"
        else:
            (obj, d), = r.objectives.items()
            ok = [e for e in r.ok if obj in e.scores]
            rows = sorted(ok, key=lambda e: (-e.scores[obj] if d == "max" else e.scores[obj], e.step))[:top]
            title = f"best {len(rows)} by {obj} ({d})"
        table = Table(title=title)
        for col in ("step", "key", *r.objectives):
            table.add_column(col)
        for e in rows:
            table.add_row(str(e.step), e.key[:60], *(f"{e.scores.get(k, float('nan')):.5g}" for k in r.objectives))
        console.print(table)
        errors = [e for e in r.history if not e.ok]
        if errors:
            first = (errors[0].error or "").splitlines()[0] if errors[0].error else "?"
            console.print(f"{len(errors)} failed; first: step {errors[0].step}: {first}", highlight=False)


@search_app.command("export")
def export(name: str = typer.Argument(..., help="the search's name"),
           store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
           seed: Optional[int] = typer.Option(None, help="only this seed"),
           format: str = typer.Option("json", help="json | csv"),
           front: bool = typer.Option(False, help="only the Pareto front"),
           output: Optional[str] = typer.Option(None, help="write here instead of the screen")) -> None:
    """A search's history (or Pareto front) as JSON or CSV."""
    import json

    if format not in ("json", "csv"):
        raise fail(f"--format {format!r} is invalid: expected json or csv")
    if output:
        check_out_file(output, "--output")
    results = load_stored_search(store, name, seed=seed)
    if format == "json":
        data = []
        for r in results:
            d = r.to_dict()
            if front:
                d["history"] = [e.to_dict() for e in r.pareto_front()]
            data.append(d)
        text = json.dumps(data[0] if len(data) == 1 else data, indent=1, default=str)
    else:
        text = "".join(r.to_csv(front=front) for r in results[:1])
        for r in results[1:]:                      # one header for several seeds
            text += "".join(r.to_csv(front=front).splitlines(keepends=True)[1:])
    if output:
        Path(output).write_text(text)
        console.print(f"wrote {output}")
    else:
        print(text, end="" if text.endswith("\n") else "\n")


@search_app.command("plot")
def plot(names: List[str] = typer.Argument(..., help="one or more search names (all seeds of each)"),
         store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
         objective: Optional[str] = typer.Option(None, help="objective for the progress plot"),
         out: str = typer.Option("runs/search-plots", help="folder for the figures")) -> None:
    """Best-so-far against evaluations (mean and spread over seeds), and the Pareto front of
    every multi-objective search."""
    from ..search import SearchError
    from ..search.plots import plot_pareto, plot_progress
    from ..bench.experiment import safe_name

    folder = check_out_dir(out, "--out")
    results = [r for n in names for r in load_stored_search(store, n)]
    try:
        paths = plot_progress(results, folder / "progress", objective=objective)
    except SearchError as exc:
        raise fail(str(exc)) from None
    console.print(f"progress: {paths[0]} (and {paths[1].name})")
    for r in results:
        if len(r.objectives) > 1:
            seed = r.config.get("seed", 0)
            paths = plot_pareto(r, folder / f"pareto-{safe_name(r.name)}-seed{seed}")
            console.print(f"Pareto front: {paths[0]}")
