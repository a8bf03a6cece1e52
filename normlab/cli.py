"""The `normlab` command. Thin: parses arguments, calls the library, prints with Rich."""

from __future__ import annotations

import sys

try:
    import typer
    from rich.console import Console
    from rich.table import Table
except ImportError:  # pragma: no cover - exercised only without the cli extra
    typer = None

if typer is not None:
    app = typer.Typer(add_completion=False, no_args_is_help=True,
                      help="normlab: normalization layers, the batch-size study, and search.")
    console = Console()
    err = Console(stderr=True, soft_wrap=True)

    def fail(message: str, code: int = 2) -> "typer.Exit":
        """One line on stderr and a non-zero exit: how every user error ends."""
        err.print(f"[bold red]error:[/] {message}", highlight=False)
        return typer.Exit(code)

    @app.callback()
    def _root() -> None:
        """normlab: normalization layers, the batch-size study, and search."""

    @app.command()
    def layers(check: bool = typer.Option(False, "--check",
                                          help="Run every layer end to end and report.")) -> None:
        """List every normalization layer (and, with --check, verify each one)."""
        from .layers import NORMS

        results = {}
        if check:
            from .selfcheck import run_checks

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


if typer is not None:

    @app.command()
    def dynamics(
        model: str = typer.Option("resnet20", help="anchor model (normlab.models)"),
        norm: str = typer.Option("bn", help="norm spec, e.g. bn or bgn:groups=8"),
        dataset: str = typer.Option("mnist5k", help="dataset spec"),
        width: float = typer.Option(0.5, help="model width multiplier"),
        steps: int = typer.Option(800, help="optimizer steps"),
        batch_size: int = typer.Option(64),
        lr: float = typer.Option(1.0, help="learning rate (no batch-size scaling here)"),
        momentum: float = typer.Option(0.9),
        weight_decay: float = typer.Option(5e-4),
        milestones: str = typer.Option("0.5", help="step-schedule milestones, fractions of the run"),
        gamma: float = typer.Option(0.1, help="learning-rate factor at each milestone"),
        seed: int = typer.Option(0),
        out: str = typer.Option("runs/dynamics", help="folder for the plot and the JSON record"),
        data_root: str = typer.Option(None, help="where downloadable datasets live"),
        download: bool = typer.Option(False, help="download the dataset if it is missing"),
    ) -> None:
        """Train across a step learning-rate schedule and compare the angular update of every
        scale-invariant weight with the Spherical Motion Dynamics equilibrium."""
        import json
        from pathlib import Path

        from .data import DataError, load_dataset
        from .layers import NormSpecError
        from .models import ModelError, create_model
        from .train import ConfigError, TrainConfig, fit
        from .train.dynamics import AngularUpdate

        try:
            marks = tuple(float(m) for m in milestones.split(",") if m.strip())
            cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, base_batch_size=None,
                              momentum=momentum, weight_decay=weight_decay, schedule="step",
                              milestones=marks, gamma=gamma, seed=seed, augment=False,
                              eval_every=0, progress=True)
            data = load_dataset(dataset, root=data_root, download=download)
            net = create_model(model, norm=norm, in_channels=data.in_channels,
                               num_classes=data.num_classes, width=width)
        except (DataError, NormSpecError, ModelError, ConfigError, ValueError) as exc:
            raise fail(str(exc))
        recorder = AngularUpdate()
        try:
            result = fit(net, data, cfg, callbacks=[recorder])
        except ValueError as exc:
            raise fail(str(exc))
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        plot = folder / "angular_update.png"
        recorder.plot(str(plot))
        rows = recorder.summary()
        record = {"model": model, "norm": norm, "dataset": dataset, "config": cfg.to_dict(),
                  "status": result.status, "metrics": result.metrics, "summary": rows,
                  "steps": recorder.steps, "lr": recorder.lrs, "theory": recorder.theory,
                  "angles": recorder.angles, "norms": recorder.norms}
        (folder / "dynamics.json").write_text(json.dumps(record))
        table = Table(title=f"angular update, {model} + {norm} on {dataset} "
                            f"({len(recorder.weights)} scale-invariant weights)")
        for col in ("steps", "lr", "theory", "measured (last 20%)", "measured / theory"):
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(f"{int(r['first_step'])}-{int(r['last_step'])}", f"{r['lr']:.3g}",
                          f"{r['theory']:.4f}", f"{r['measured']:.4f}", f"{r['ratio']:.2f}")
        console.print(table)
        if result.diverged:
            console.print(f"[red]training diverged:[/] {result.message}")
        console.print(f"plot: {plot}\nrecord: {folder / 'dynamics.json'}")


def main() -> None:
    if typer is None:
        print("error: the normlab command needs the cli extra: pip install 'normlab[cli]'",
              file=sys.stderr)
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
