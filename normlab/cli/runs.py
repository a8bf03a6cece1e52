"""`normlab runs` and `normlab report`: read the store (read-only), never write it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ._app import app
from .common import DEFAULT_STORE, check_out_dir, check_out_file, console, fail, open_store


MARGIN_HELP = ("equivalence margin in accuracy points: a claim 'does not hold' only when its difference is "
               "shown to lie within ±margin (TOST); default 1")


def check_margin(margin: float) -> float:
    """--margin: a positive, finite number of points."""
    import math

    if isinstance(margin, bool) or not (math.isfinite(margin) and margin > 0):
        raise fail(f"--margin {margin} is invalid: expected a positive number of accuracy points, e.g. 1")
    return float(margin)


def print_report(summaries, out_dir: Path) -> None:
    from ..bench.report import tuning_table, verdicts, write_report
    from ..report import rich_table

    if len(summaries) > 1:
        console.print(f"[bold]{len(summaries)} configurations[/] are reported separately; they differ in: "
                      + ", ".join(summaries[0].config), highlight=False)
    for s in summaries:
        for model in s.groups:
            console.print(rich_table(s.table(model)))
            for line in verdicts(s, model):
                console.print(f"- {line}", highlight=False)
            tuned = tuning_table(s, model)
            if tuned is not None:
                console.print(rich_table(tuned))
            drop = s.drop(model)
            if drop:
                worst = max(drop, key=lambda n: drop[n])
                console.print(f"largest drop from the largest to the smallest batch: "
                              f"[bold]{worst}[/] ({drop[worst]:+.1f} points)", highlight=False)
    if not summaries:
        console.print("no trials to report yet")
        return
    paths = write_report(summaries, out_dir)
    console.print(f"plot: {paths['png']} (and {paths['svg'].name})\nhtml: {paths['html']}\n"
                  f"markdown: {paths['markdown']}", highlight=False)


@app.command()
def runs(
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
    experiment: Optional[str] = typer.Option(None),
    kind: Optional[str] = typer.Option(None, help="bench | search | evolve | nas | nago"),
    status: Optional[str] = typer.Option(None, help="ok | diverged | failed | running | pending"),
    norm: Optional[str] = typer.Option(None),
    model: Optional[str] = typer.Option(None),
    batch_size: Optional[int] = typer.Option(None),
    format: str = typer.Option("table", help="table | csv | json"),
    output: Optional[str] = typer.Option(None, help="write to this file instead of the screen"),
) -> None:
    """List, filter and export the stored trials (opens the store read-only)."""
    from ..runtime import STATUSES
    from ..runtime.store import export

    if status is not None and status not in STATUSES:
        raise fail(f"--status {status!r} is invalid: expected one of {', '.join(STATUSES)}")
    if format not in ("table", "csv", "json"):
        raise fail(f"--format {format!r} is invalid: expected table, csv or json")
    if output:
        check_out_file(output, "--output")
    where = {k: v for k, v in (("norm", norm), ("model", model), ("batch_size", batch_size)) if v is not None}
    if norm is not None:
        from ..layers import parse_spec

        try:
            where["norm"] = str(parse_spec(norm))      # canonical: bn == BN, defaults dropped
        except ValueError as exc:
            raise fail(str(exc)) from None
    db = open_store(store, readonly=True)
    with db:
        try:
            rows = db.rows(experiment=experiment, kind=kind, status=status, where=where)
        except ValueError as exc:
            raise fail(str(exc)) from None
    if format == "table":
        table = Table(title=f"{len(rows)} trial(s) in {store}")
        for col in ("experiment", "kind", "trial", "status", "result", "id"):
            table.add_column(col)
        for r in rows:
            d = r["description"]
            if r["kind"] == "bench":
                what = f"{d.get('model')} {d.get('norm')} b={d.get('batch_size')} seed={d.get('seed')}"
            else:
                what = str(d.get("key") or d)[:60]
            acc = r["metrics"].get("test_acc")
            result = (f"top-1 {100 * acc:.1f}" if isinstance(acc, (int, float)) else
                      ", ".join(f"{k}={v:.4g}" for k, v in list(r["metrics"].items())[:3]
                                if isinstance(v, (int, float))) or "-")
            table.add_row(r["experiment"], r["kind"], what, r["status"], result, r["id"])
        if output:                                    # the same table as plain text, in the file
            from rich.console import Console

            with open(output, "w", encoding="utf-8") as fh:
                Console(file=fh, width=200, color_system=None, highlight=False).print(table)
            console.print(f"wrote {len(rows)} row(s) to {output}")
        else:
            console.print(table)
        return
    text = export(rows, format)
    if output:
        Path(output).write_text(text)
        console.print(f"wrote {len(rows)} row(s) to {output}")
    else:
        print(text)


@app.command()
def report(
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
    experiment: Optional[str] = typer.Option(None, help="which experiment (default: each)"),
    out: Optional[str] = typer.Option(None, help="report folder (default runs/<experiment>)"),
    margin: float = typer.Option(1.0, help=MARGIN_HELP),
) -> None:
    """Print the batch-size report and write its plot, HTML page and markdown (opens the store
    read-only)."""
    from ..bench import KIND, safe_name, summarize

    margin = check_margin(margin)
    db = open_store(store, readonly=True)
    with db:
        known = db.experiment_names(kind=KIND)
        if experiment and experiment not in known:
            raise fail(f"no bench experiment '{experiment}' in {store}; stored: {', '.join(known) or 'none'}")
        names = [experiment] if experiment else known
        if not names:
            raise fail(f"no bench experiments in {store} yet; run 'normlab bench' first")
        work = [(n, db.rows(experiment=n, kind=KIND)) for n in names]
    for name, rows in work:
        folder = Path(out) / safe_name(name) if out and len(work) > 1 else Path(out or f"runs/{safe_name(name)}")
        print_report(summarize(rows, name, margin=margin), check_out_dir(folder, "--out"))
