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
    from typing import List, Optional

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
        warmup_epochs: float = typer.Option(1.0, help="linear warm-up before the first phase"),
        seed: int = typer.Option(0),
        out: str = typer.Option("runs/dynamics", help="folder for the plot and the JSON record"),
        data_root: str = typer.Option(None, help="where downloadable datasets live"),
        download: bool = typer.Option(False, help="download the dataset if it is missing"),
    ) -> None:
        """Train across a step learning-rate schedule and compare the angular update of every
        scale-invariant weight with the Spherical Motion Dynamics equilibrium."""
        import json
        from pathlib import Path

        from .data import load_dataset
        from .models import create_model
        from .train import TrainConfig, fit
        from .train.dynamics import AngularUpdate

        try:
            marks = tuple(float(m) for m in milestones.split(",") if m.strip())
            cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, base_batch_size=None,
                              momentum=momentum, weight_decay=weight_decay, schedule="step",
                              milestones=marks, gamma=gamma, warmup_epochs=warmup_epochs,
                              seed=seed, augment=False,
                              eval_every=0, progress=True)
            data = load_dataset(dataset, root=data_root, download=download)
            import torch

            torch.manual_seed(seed)
            net = create_model(model, norm=norm, in_channels=data.in_channels,
                               num_classes=data.num_classes, width=width)
        except ValueError as exc:        # DataError, NormSpecError, ModelError, ConfigError
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

    DEFAULT_STORE = "runs/normlab.sqlite"

    def _print_report(summary, out_dir) -> None:
        from .bench.report import rich_table, write_report

        for model in summary.groups:
            console.print(rich_table(summary, model))
            drop = summary.drop(model)
            if drop:
                worst = max(drop, key=lambda n: drop[n])
                console.print(f"largest drop from the largest to the smallest batch: "
                              f"[bold]{worst}[/] ({drop[worst]:+.1f} points)", highlight=False)
        paths = write_report(summary, out_dir)
        console.print(f"plot: {paths['png']} (and {paths['svg'].name})\n"
                      f"html: {paths['html']}\nmarkdown: {paths['markdown']}", highlight=False)

    @app.command()
    def bench(
        config: Optional[str] = typer.Argument(None, help="experiment YAML file"),
        preset: Optional[str] = typer.Option(None, help="a preset from normlab/configs: quick, paper-cifar10"),
        name: Optional[str] = typer.Option(None, help="experiment name (rows are grouped by it)"),
        dataset: Optional[str] = typer.Option(None),
        model: Optional[List[str]] = typer.Option(None, help="model (repeat for several)"),
        norm: Optional[List[str]] = typer.Option(None, help="norm spec (repeat for several)"),
        batch_size: Optional[List[int]] = typer.Option(None, help="batch size (repeat for several)"),
        seed: Optional[List[int]] = typer.Option(None, help="seed (repeat for several)"),
        batch_mode: Optional[str] = typer.Option(None, help="both | norm | optimizer"),
        epochs: Optional[float] = typer.Option(None),
        steps: Optional[int] = typer.Option(None),
        lr: Optional[float] = typer.Option(None),
        width: Optional[float] = typer.Option(None),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its estimated cost"),
        workers: int = typer.Option(1, help="parallel trials (a process pool unless --backend ray)"),
        backend: str = typer.Option("serial", help="serial | process | ray"),
        address: Optional[str] = typer.Option(None, help="Ray cluster address to join"),
        store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
        out: Optional[str] = typer.Option(None, help="report folder (default runs/<name>)"),
        mlflow: Optional[str] = typer.Option(None, help="MLflow tracking URI: log every trial"),
        download: bool = typer.Option(False, help="download the dataset if missing"),
        data_root: Optional[str] = typer.Option(None, help="where downloadable datasets live"),
    ) -> None:
        """Run the batch-size study: train every model x norm x batch size x seed, store each
        result, and print the report. Re-running the same command resumes."""
        from .bench import ExperimentError, estimate, load_experiment, summarize, sweep
        from .runtime import BACKENDS, Store, make_executor

        if config is None and preset is None:
            preset = "quick"
        try:
            exp = load_experiment(config, preset=None if config else preset, name=name, dataset=dataset,
                                  models=model or None, norms=norm or None,
                                  batch_sizes=batch_size or None, seeds=seed or None,
                                  batch_mode=batch_mode, epochs=epochs, steps=steps, lr=lr,
                                  width=width, download=download or None, data_root=data_root)
            if backend not in BACKENDS:
                raise ExperimentError(f"backend={backend!r} is invalid: expected {', '.join(BACKENDS)}")
            if workers < 1:
                raise ExperimentError(f"workers={workers} is invalid: expected a positive integer")
            if dry_run:
                with console.status("timing one step of each model/norm/batch to estimate the cost..."):
                    est = estimate(exp)
                trials = est["plan"]
                table = Table(title=f"plan: {exp.name} ({len(trials)} trials)")
                for col in ("model", "norm", "batch", "seed", "lr", "optimizer batch", "norm batch", "id"):
                    table.add_column(col)
                for t in trials:
                    tc = t["train"]
                    table.add_row(t["model"], t["norm"], str(t["batch_size"]), str(t["seed"]),
                                  f"{t['lr']:g}", str(tc["batch_size"]),
                                  str(tc["norm_batch_size"] or tc["batch_size"]), t["id"])
                console.print(table)
                minutes = est["seconds"] / 60 / max(1, workers)
                console.print(f"{est['trials']} trials, {est['images'] / 1e6:.2f}M training images, "
                              f"about {est['gflops']:.0f} GFLOP; estimated {minutes:.1f} min on this "
                              f"machine with {workers} worker(s) (from timing one step of each)",
                              highlight=False)
                return
            executor = make_executor(backend, workers, address)
        except ValueError as exc:        # ExperimentError, DataError, bad executor settings
            raise fail(str(exc))
        from rich.progress import Progress

        db = Store(store)
        try:
            with Progress(console=console, transient=False) as progress:
                task = progress.add_task(f"{exp.name}", total=None)

                def started(total: int, todo: int) -> None:
                    progress.update(task, total=todo, completed=0)
                    if total - todo:
                        progress.console.print(f"resuming: {total - todo} of {total} trials already "
                                               f"finished in {store}", highlight=False)

                def done(trial: dict, result: dict) -> None:
                    acc = result.get("metrics", {}).get("test_acc")
                    mark = {"ok": "[green]ok[/]", "diverged": "[yellow]diverged[/]"}.get(
                        result["status"], "[red]failed[/]")
                    extra = f" top-1 {100 * acc:.1f}%" if acc is not None and result["status"] == "ok" else ""
                    err = f" ({(result.get('error') or '').splitlines()[0]})" if result["status"] != "ok" else ""
                    progress.console.print(f"{mark} {trial['model']} {trial['norm']} b={trial['batch_size']} "
                                           f"seed={trial['seed']}{extra}{err}", highlight=False)
                    progress.advance(task)

                outcome = sweep(exp, db, executor, on_result=done, on_start=started, mlflow_uri=mlflow)
        except ValueError as exc:
            raise fail(str(exc))
        finally:
            executor.close()
        rows = db.rows(experiment=exp.name)
        db.close()
        console.print(f"{outcome['planned']} trials: {outcome['skipped']} already done, ran "
                      f"{outcome['ran']} ({outcome.get('ok', 0)} ok, {outcome.get('diverged', 0)} "
                      f"diverged, {outcome.get('failed', 0)} failed); store: {store}", highlight=False)
        _print_report(summarize(rows, exp.name), out or f"runs/{exp.name}")

    @app.command()
    def runs(
        store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
        experiment: Optional[str] = typer.Option(None),
        status: Optional[str] = typer.Option(None, help="ok | diverged | failed | running | pending"),
        norm: Optional[str] = typer.Option(None),
        model: Optional[str] = typer.Option(None),
        batch_size: Optional[int] = typer.Option(None),
        format: str = typer.Option("table", help="table | csv | json"),
        output: Optional[str] = typer.Option(None, help="write to this file instead of the screen"),
    ) -> None:
        """List, filter and export the stored trials."""
        from pathlib import Path

        from .runtime import STATUSES, Store
        from .runtime.store import export

        if not Path(store).exists():
            raise fail(f"no store at {store}; run 'normlab bench' first or pass --store")
        if status is not None and status not in STATUSES:
            raise fail(f"status={status!r} is invalid: expected one of {', '.join(STATUSES)}")
        if format not in ("table", "csv", "json"):
            raise fail(f"format={format!r} is invalid: expected table, csv or json")
        with Store(store) as db:
            rows = db.rows(experiment=experiment, status=status, norm=norm, model=model,
                           batch_size=batch_size)
        if format == "table":
            table = Table(title=f"{len(rows)} trial(s) in {store}")
            for col in ("experiment", "model", "norm", "batch", "seed", "status", "top-1", "id"):
                table.add_column(col)
            for r in rows:
                acc = r["metrics"].get("test_acc")
                table.add_row(r["experiment"], r["model"], r["norm"], str(r["batch_size"]), str(r["seed"]),
                              r["status"], f"{100 * acc:.1f}" if acc is not None else "-", r["id"])
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
    ) -> None:
        """Print the batch-size report and write its plot, HTML page and markdown."""
        from pathlib import Path

        from .bench import summarize
        from .runtime import Store

        if not Path(store).exists():
            raise fail(f"no store at {store}; run 'normlab bench' first or pass --store")
        with Store(store) as db:
            known = db.experiments()
            names = [experiment] if experiment else known
            if experiment and experiment not in known:
                raise fail(f"no experiment '{experiment}' in {store}; stored: {', '.join(known) or 'none'}")
            for exp_name in names:
                rows = db.rows(experiment=exp_name)
                _print_report(summarize(rows, exp_name), out or f"runs/{exp_name}")


def main() -> None:
    if typer is None:
        print("error: the normlab command needs the cli extra: pip install 'normlab[cli]'",
              file=sys.stderr)
        sys.exit(2)
    app()


if __name__ == "__main__":
    main()
