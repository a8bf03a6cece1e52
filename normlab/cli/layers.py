"""`normlab layers`: the layer table, and an end-to-end check of each layer."""

from __future__ import annotations

import typer
from rich.table import Table

from .app import app
from .common import console, fail


@app.command()
def layers(check: bool = typer.Option(False, "--check",
                                      help="Run every layer end to end and report.")) -> None:
    """List every normalization layer (and, with --check, verify each one)."""
    from ..layers import NORMS

    results = {}
    if check:
        from ..selfcheck import run_checks

        with console.status("checking layers..."):
            results = {r.name: r for r in run_checks()}
    table = Table(title="normlab layers", show_lines=False)
    wide = console.width >= 110
    cols = (("spec", "class", "batch-dependent", "replaces act", "folds into conv", "paper")
            if wide else ("spec", "batch", "repl. act", "folds", "paper"))
    for col in cols:
        table.add_column(col, no_wrap=col != "paper")
    if check:
        table.add_column("check")
    yes = lambda flag: "[green]yes[/]" if flag else "no"  # noqa: E731
    for name, info in NORMS.items():
        row = [name, info.cls.__name__, yes(info.batch_dependent), yes(info.replaces_act),
               info.foldable, info.paper]
        if not wide:
            del row[1]
        if check:
            r = results[name]
            row.append("[green]ok[/]" if r.ok else "[red]FAIL[/]")
        table.add_row(*row)
    console.print(table)
    if check:
        for r in results.values():
            if not r.ok or r.name not in NORMS:
                mark = "[green]PASS[/]" if r.ok else "[red]FAIL[/]"
                console.print(f"{mark} {r.name}: {r.detail}", highlight=False)
        failed = [r.name for r in results.values() if not r.ok]
        if failed:
            raise fail(f"{len(failed)} check(s) failed: {', '.join(failed)}", code=1)
        console.print(f"[bold green]all {len(results)} checks passed[/]")

