"""`normlab layers`: the layer table, and an end-to-end check of each layer."""

from __future__ import annotations

import typer
from rich.table import Table

from ._app import app
from .common import console, fail


def _model_summary(model_name: str, norm: str, batch_size: int, shape: str, width: float) -> None:
    """The norm layers of one model at one batch size (shapes on the meta device: no memory)."""
    import torch

    from ..layers import NormSpecError, norm_summary
    from ..models import available_models, create_model

    try:
        c, h, w = (int(v) for v in shape.lower().split("x"))
        if min(c, h, w) < 1:
            raise ValueError
    except ValueError:
        raise fail(f"--input {shape!r} is invalid: expected CxHxW, e.g. 3x32x32") from None
    if batch_size < 1:
        raise fail(f"--batch-size {batch_size} is invalid: expected a positive integer")
    if model_name not in available_models():
        raise fail(f"unknown model {model_name!r}; known models: {', '.join(available_models())}")
    try:
        with torch.device("meta"):
            net = create_model(model_name, norm=norm, width=width, in_channels=c, num_classes=10)
            rows = norm_summary(net, torch.empty(batch_size, c, h, w))
    except (NormSpecError, ValueError) as exc:
        raise fail(f"{model_name} with norm '{norm}' at batch {batch_size}: {exc}") from None
    table = Table(title=f"{model_name} (width {width}) with {norm}, batch {batch_size}, input {c}x{h}x{w}")
    for col in ("layer", "class", "channels", "input", "groups"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["name"], r["layer"], str(r["channels"]),
                      "x".join(map(str, r["input"][1:])) if r["input"] else "-",
                      "-" if r["groups"] is None else str(r["groups"]))
    console.print(table)


@app.command()
def layers(check: bool = typer.Option(False, "--check",
                                      help="Run every layer end to end and report."),
           model: str = typer.Option(None, help="show this model's norm layers instead "
                                                "(the G each groups=auto layer chooses)"),
           norm: str = typer.Option("bgn:groups=auto", help="norm spec for --model"),
           batch_size: int = typer.Option(2, help="normalization batch for --model"),
           input: str = typer.Option("3x32x32", help="input shape CxHxW for --model"),
           width: float = typer.Option(1.0, help="width multiplier for --model")) -> None:
    """List every normalization layer (--check: verify each; --model: that model's norm layers and their G)."""
    from ..layers import NORMS

    if model is not None:
        _model_summary(model, norm, batch_size, input, width)
        return

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

