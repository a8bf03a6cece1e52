"""`normlab bench`: the batch-size study (plan -> run -> store -> report)."""

from __future__ import annotations

from typing import List, Optional

import typer
from rich.table import Table

from ._app import app
from .common import DEFAULT_STORE, check_out_dir, check_run, console, fail, interruptible, open_store
from .runs import MARGIN_HELP, check_margin, print_report


def _dry_run(exp, workers: int) -> None:
    from ..bench import estimate

    with console.status("timing one step of each model/norm/batch to estimate the cost..."):
        est = estimate(exp, workers)
    trials = est["plan"]
    table = Table(title=f"plan: {exp.name} ({len(trials)} trials)")
    for col in ("model", "norm", "batch", "seed", "lr", "optimizer batch", "norm batch"):
        table.add_column(col)
    for t in trials:
        tc = t["train"]
        table.add_row(t["model"], t["norm"], str(t["batch_size"]), str(t["seed"]), f"{t['lr']:g}",
                      str(tc["batch_size"]), str(tc["norm_batch_size"] or tc["batch_size"]))
    console.print(table)
    minutes = est["seconds"] / 60 / max(1, workers)
    shared = (f" ({est['runs']} runs: a batch-independent norm trains once per seed and is "
              f"stored at every normalization batch)" if est["runs"] < est["trials"] else "")
    console.print(f"{est['trials']} trials{shared}, {est['images'] / 1e6:.2f}M training images, about "
                  f"{est['gflops']:.0f} GFLOP; estimated {minutes:.1f} min on this machine with "
                  f"{workers} worker(s) of {est['threads']} thread(s) (from timing one step and one "
                  f"evaluation batch of each)", highlight=False)


@app.command()
def bench(
    config: Optional[str] = typer.Argument(None, help="experiment YAML file"),
    preset: Optional[str] = typer.Option(None, help="a preset from normlab/configs: quick, study, paper-cifar10, g-sweep-digits, g-fashion-b2"),
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
    threads: Optional[int] = typer.Option(None, help="torch threads per trial, pinned (part of the trial: "
                                          "another count rounds differently); default the preset's, else "
                                          "the executor's share of the cores"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its estimated cost"),
    workers: int = typer.Option(1, help="parallel trials (a process pool unless --backend ray)"),
    backend: str = typer.Option("serial", help="serial | process | ray"),
    address: Optional[str] = typer.Option(None, help="Ray cluster address to join (with --backend ray)"),
    connect_timeout: float = typer.Option(10.0, help="seconds to reach --address or --mlflow"),
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
    out: Optional[str] = typer.Option(None, help="report folder (default runs/<name>)"),
    mlflow: Optional[str] = typer.Option(None, help="MLflow tracking URI: log every trial"),
    download: bool = typer.Option(False, help="download the dataset if missing"),
    data_root: Optional[str] = typer.Option(None, help="where downloadable datasets live"),
    margin: float = typer.Option(1.0, help=MARGIN_HELP),
) -> None:
    """Run the batch-size study: train every model x norm x batch size x seed, store each
    result, and print the report. Re-running the same command resumes."""
    from ..bench import check_plan, load_experiment
    from ..runtime import make_executor
    from ..runtime.sinks import MLflowSink

    if name is not None and not name.strip():
        raise fail("--name is empty: expected letters, digits, '.', '_' or '-'")
    check_run(name=name, backend=backend, workers=workers, address=address)
    if not connect_timeout > 0:
        raise fail(f"--connect-timeout {connect_timeout} is invalid: expected seconds > 0")
    if config is None and preset is None:
        preset = "quick"
    margin = check_margin(margin)
    executor = None
    try:
        exp = load_experiment(config, preset=preset, name=name, dataset=dataset,
                              models=model or None, norms=norm or None,
                              batch_sizes=batch_size or None, seeds=seed or None,
                              batch_mode=batch_mode, epochs=epochs, steps=steps, lr=lr,
                              width=width, threads=threads, download=download or None, data_root=data_root)
        check_plan(exp)                               # data present, shapes, batch <= training set
        if dry_run:
            _dry_run(exp, workers)
            return
        report_dir = check_out_dir(out or f"runs/{exp.name}", "--out")
        sinks = [MLflowSink(mlflow, exp.name, timeout=connect_timeout)] if mlflow else []
        db = open_store(store, readonly=False)
        executor = make_executor(backend, workers, address, connect_timeout=connect_timeout)
    except ValueError as exc:      # ExperimentError, DataError, StoreError, ExecutorError, SinkError
        if executor is not None:
            executor.close()
        raise fail(str(exc)) from None
    outcome = _sweep_with_progress(exp, db, executor, store, sinks)
    _close(exp, db, outcome, store, margin, report_dir)


def _sweep_with_progress(exp, db, executor, store: str, sinks: list):
    """The sweep with a progress bar and a line per finished trial; interrupted (Ctrl-C), the
    finished trials are kept and the command exits 130. The executor is closed in every case."""
    from rich.progress import Progress

    from ..bench import sweep

    try:
        with interruptible(), Progress(console=console, transient=False) as progress:
            task = progress.add_task(exp.name, total=None)

            def started(total: int, todo: int) -> None:
                progress.update(task, total=todo, completed=0)
                if total - todo:
                    progress.console.print(f"resuming: {total - todo} of {total} trials already "
                                           f"finished in {store}", highlight=False)

            def done(c) -> None:
                t, r = c.description, c.result
                acc = r.metrics.get("test_acc")
                mark = {"ok": "[green]ok[/]", "diverged": "[yellow]diverged[/]"}.get(r.status, "[red]failed[/]")
                extra = f" top-1 {100 * acc:.1f}%" if acc is not None and r.status == "ok" else ""
                why = f" ({(r.error or '').splitlines()[0]})" if r.status != "ok" and r.error else ""
                progress.console.print(f"{mark} {t['model']} {t['norm']} b={t['batch_size']} "
                                       f"seed={t['seed']}{extra}{why}", highlight=False)
                progress.advance(task)

            return sweep(exp, db, executor, on_result=done, on_start=started, sinks=sinks)
    except KeyboardInterrupt:
        rows = db.rows(experiment=exp.name, status="ok")
        db.close()
        console.print(f"interrupted: in-flight trials given back; {len(rows)} finished trial(s) are "
                      f"kept in {store}. Run the same command again to resume.", highlight=False)
        raise typer.Exit(130) from None
    except ValueError as exc:      # e.g. the disk filled up while storing a result
        db.close()
        raise fail(str(exc)) from None
    finally:
        executor.close()


def _close(exp, db, outcome, store: str, margin: float, report_dir) -> None:
    """What the run did, the report; exit 1 when every trial failed."""
    from ..bench import summarize

    rows = db.rows(experiment=exp.name)
    db.close()
    console.print(f"{outcome.planned} trials: {outcome.skipped} already done, ran {outcome.ran} "
                  f"({outcome.ok} ok, {outcome.diverged} diverged, {outcome.failed} failed)"
                  + (f", {outcome.elsewhere} finished by another run" if outcome.elsewhere else "")
                  + f"; store: {store}", highlight=False)
    print_report(summarize(rows, exp.name, margin=margin), report_dir)
    if outcome.ran and outcome.failed == outcome.ran and not outcome.skipped:
        first = next((r.result.error for r in outcome.results if r.result.error), "") or ""
        raise fail(f"every trial failed; the first error: {first.splitlines()[0] if first else '?'}", code=1)
