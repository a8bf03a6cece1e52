"""`normlab nas nb201 show|convert|check-params|benchmark|correlate|shrink`: NAS-Bench-201 as a space,
its table as ground truth, strategies and data-free proxies judged on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import (DEFAULT_STORE, check_out_dir, check_out_file, console, fail, guarded, open_executor,
                     open_store)
from .nas import nas_app

nb201_app = typer.Typer(no_args_is_help=True, add_completion=False,
                        help="NAS-Bench-201: the cell space, its table, strategies and proxies judged on it.")
nas_app.add_typer(nb201_app, name="nb201")

TABLE_HELP = ("the NB201 table: NAS-Bench-201-v1_1-096897.pth or the .npz 'convert' writes; 'standin' for a "
              "synthetic stand-in (not evidence); default $NORMLAB_NB201_TABLE or ~/.cache/normlab/nb201.npz")


def _table(source: Optional[str]):
    from ..nas.nb201 import NB201Error, load_table

    try:
        return load_table(source)
    except NB201Error as exc:
        raise fail(str(exc)) from None


def _source(source: Optional[str]) -> str:
    from ..nas.nb201 import default_table_path

    if source is None:
        return str(default_table_path())
    return source if source.startswith("standin") else str(Path(source).expanduser().resolve())


def _label(table) -> str:
    return "[bold yellow]STAND-IN table (synthetic): not evidence[/]" if table.standin else f"table {table.source}"


@nb201_app.command("show")
def show(arch: str = typer.Argument(..., help="NB201 string, six-digit op code (e.g. 303100) or index:N"),
         table: Optional[str] = typer.Option(None, help=TABLE_HELP + " (optional here)"),
         C: int = typer.Option(16, "--C", help="channels of the first stage"),
         N: int = typer.Option(5, "--N", help="cells per stage")) -> None:
    """A cell's codes, its parameters and FLOPs from the construction, and what the table says."""
    from ..nas import nb201

    try:
        a = nb201.resolve_arch(arch)
    except nb201.NB201Error as exc:
        raise fail(str(exc)) from None
    console.print(f"{a}\nop code {nb201.arch_to_code(a)}, table index {nb201.arch_to_index(a):06d}", highlight=False)
    for d in nb201.DATASETS:
        p = nb201.analytic_params(a, C=C, N=N, num_classes=nb201.CLASSES[d])
        f = nb201.analytic_flops(a, C=C, N=N, num_classes=nb201.CLASSES[d], image_size=nb201.IMAGE_SIZE[d])
        console.print(f"{d}: {p:,} params, {f / 2e6:.2f} M multiply-adds (C={C}, N={N})", highlight=False)
    if table is None and not nb201.default_table_path().is_file():
        return
    t = _table(table)
    console.print(_label(t), highlight=False)
    for d in t.datasets:
        c = t.cell(a, d)
        seeds = ", ".join(f"seed {k}: {v:.2f}" for k, v in c["valid"].items())
        console.print(f"{d}: valid {c['valid_mean']:.2f}% ({seeds}), test {c['test_mean']:.2f}%, "
                      f"params {c['params']:.6f} M, flops {c['flops']:.2f} M, latency {1e3 * c['latency']:.2f} ms, "
                      f"train {c['train_time']:.0f} s", highlight=False)


@nb201_app.command("convert")
def convert(path: str = typer.Argument(..., help="NAS-Bench-201-v1_1-096897.pth (the benchmark's file)"),
            out: str = typer.Option(str(Path.home() / ".cache" / "normlab" / "nb201.npz"), "--out",
                                    help="the compact table normlab reads")) -> None:
    """Read the benchmark's .pth (weights_only: plain data only) and write the compact .npz."""
    from ..nas.nb201 import NB201Error, read_official, write_compact

    if not Path(path).is_file():
        raise fail(f"{path} does not exist: expected the NAS-Bench-201 file (NAS-Bench-201-v1_1-096897.pth)")
    check_out_file(out, "--out")
    with console.status(f"reading {path} (a few minutes for the 4.7 GB file)..."):
        try:
            table = read_official(path)
        except NB201Error as exc:
            raise fail(str(exc)) from None
    write_compact(table, out)
    console.print(f"{len(table):,} cells, datasets {', '.join(table.datasets)} written to {out}", highlight=False)


@nb201_app.command("check-params")
def check_params(table: Optional[str] = typer.Option(None, help=TABLE_HELP),
                 dataset: str = typer.Option("cifar10-valid", help="cifar10-valid | cifar100 | ImageNet16-120"),
                 out: Optional[str] = typer.Option(None, help="write the inconsistent cells here (JSON fixture)")) -> None:
    """Every cell's parameter count in the table against the construction (C=16, N=5): the cells
    where they differ, each with the difference and its reason."""
    from ..nas.nb201 import DATASETS, NUM_ARCHS, inconsistent_params

    if dataset not in DATASETS:
        raise fail(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)}")
    t = _table(table)
    if out:
        check_out_file(out, "--out")
    bad = inconsistent_params(t, dataset)
    explained = sum(not b["reason"].startswith("unexplained") for b in bad)
    console.print(f"{_label(t)}\n{dataset}: {NUM_ARCHS - len(bad):,} of {NUM_ARCHS:,} cells match the construction; "
                  f"{len(bad)} differ ({explained} by exactly one conv's parameters)", highlight=False)
    for b in bad[:10]:
        console.print(f"  {b['index']:06d} {b['arch']}: {b['difference']:+,} ({b['reason']})", highlight=False)
    if out:
        Path(out).write_text(json.dumps({"table": t.source, "standin": t.standin, "dataset": dataset, "C": 16, "N": 5,
                                         "cells": bad}, indent=1))
        console.print(f"written to {out}")


@nb201_app.command("benchmark")
def benchmark(
    table: Optional[str] = typer.Option(None, help=TABLE_HELP),
    dataset: str = typer.Option("cifar10-valid", help="cifar10-valid | cifar100 | ImageNet16-120"),
    strategies: str = typer.Option("random,evolution,tpe", help="comma-separated: random, evolution, tpe"),
    seeds: int = typer.Option(20, help="searches per strategy (seeds 0..N-1)"),
    budget: int = typer.Option(150, help="evaluations per search (table lookups)"),
    seconds: Optional[float] = typer.Option(None, help="also a budget in simulated training seconds (the table's)"),
    population: int = typer.Option(20, help="evolution: population"),
    sample_size: int = typer.Option(5, help="evolution: tournament size"),
    startup: int = typer.Option(10, help="tpe: random trials before TPE"),
    name: str = typer.Option("nb201-bench", help="the searches' name prefix in the store"),
    out: str = typer.Option("runs/nb201-bench", help="folder for report.json, report.md, regret.png"),
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store (a rerun resumes)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its estimated time, run nothing"),
) -> None:
    """Random search, regularized evolution and TPE on the table through normlab.search's loop:
    best-so-far regret curves over seeds, final regrets and each strategy's verdict vs random."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..nas.nb201 import NB201Error
    from ..nas.nb201.benchmark import BenchmarkConfig, benchmark_table, plan, run_benchmark, write_report
    from ..report import rich_table

    try:
        cfg = BenchmarkConfig(table=_source(table), dataset=dataset,
                              strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
                              seeds=seeds, budget=budget, seconds=seconds, population=population,
                              sample_size=sample_size, startup=startup).check()
        t = _table(cfg.table)
        info = plan(cfg)
    except NB201Error as exc:
        raise fail(str(exc)) from None
    console.print(f"{_label(t)}\nplan: {len(cfg.strategies)} strategies x {seeds} seeds x {info['budget']} evaluations "
                  f"= {info['evaluations']:,} table lookups on {dataset}; about {info['seconds_estimate']:.0f} s here "
                  f"({info['evaluations_per_second']:.0f} evaluations/s through the engine)", highlight=False)
    if dry_run:
        return
    folder = check_out_dir(out, "--out")
    db = open_store(store, readonly=False)
    try:
        with guarded(f"finished evaluations are kept in {store}; run the same command to resume."), \
                Progress(TextColumn("[bold]searches"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         TextColumn("{task.fields[what]}"), console=console, transient=True) as bar:
            task = bar.add_task("searches", total=len(cfg.strategies) * seeds, what="")
            report = run_benchmark(cfg, store=db, name=name,
                                   on_search=lambda s, k: bar.update(task, advance=1, what=f"{s} seed {k}"))
    finally:
        db.close()
    paths = write_report(report, folder)
    console.print(rich_table(benchmark_table(report)))
    for c in report["comparisons"]:
        console.print(c["verdict"], highlight=False)
    console.print(f"{report['evaluations']:,} evaluations in {report['wall_seconds']:.1f} s "
                  f"({report['evaluations_per_second']:.0f}/s); plot {paths['plot']}, {paths['markdown']}", highlight=False)


@nb201_app.command("correlate")
def correlate(
    table: Optional[str] = typer.Option(None, help=TABLE_HELP),
    dataset: str = typer.Option("all", help="cifar10-valid | cifar100 | ImageNet16-120 | all"),
    n: int = typer.Option(1000, help="cells drawn uniformly (0: all 15,625)"),
    C: int = typer.Option(16, "--C", help="channels of the first stage (the table's: 16)"),
    N: int = typer.Option(5, "--N", help="cells per stage (the table's: 5)"),
    seed: int = typer.Option(0), bootstrap: int = typer.Option(1000, help="bootstrap resamples for the intervals"),
    out_dir: str = typer.Option("runs/nb201-correlate", help="one folder per dataset: report.json, plots, HTML"),
    workers: int = typer.Option(1), backend: str = typer.Option("serial", help="serial | process | ray"),
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store (a rerun skips scored cells)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its estimated time, score nothing"),
) -> None:
    """Kendall tau and Spearman rho (bootstrap intervals) of #params, FLOPs and synflow against the
    table's mean test accuracy, in the report of 'normlab nas correlate'."""
    import time

    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..nas.nb201 import DATASETS, NB201Error, NUM_ARCHS, resolve_arch
    from ..nas.nb201.proxies import ProxyTrial, correlate_table
    from ..nas.report import correlation_table
    from ..report import rich_table

    datasets = list(DATASETS) if dataset == "all" else [dataset]
    if any(d not in DATASETS for d in datasets):
        raise fail(f"unknown dataset {dataset!r}: expected one of {', '.join(DATASETS)} or all")
    if n < 0 or 0 < n < 3:
        raise fail(f"--n {n} is invalid: expected 0 (all cells) or at least 3")
    if C < 1 or N < 1:
        raise fail(f"--C {C} / --N {N} is invalid: expected positive integers")
    t = _table(table)
    source = _source(table)
    count = NUM_ARCHS if n == 0 else min(n, NUM_ARCHS)
    torch.set_num_threads(1)
    start = time.perf_counter()
    for _ in range(3):
        ProxyTrial(datasets[0], C, N)(resolve_arch("333333"))       # the largest cell: an upper bound
    per = (time.perf_counter() - start) / 3
    console.print(f"{_label(t)}\nplan: {count:,} cells x {len(datasets)} dataset(s), synflow at C={C}, N={N}: "
                  f"at most {per * 1e3:.0f} ms per cell here, about {per * count * len(datasets) / max(workers, 1) / 60:.1f} "
                  f"min with {workers} worker(s) (less: most cells are smaller)", highlight=False)
    if dry_run:
        return
    check_out_dir(out_dir, "--out-dir")
    executor = open_executor(backend, workers)
    db = open_store(store, readonly=False)
    try:
        for d in datasets:
            with guarded(f"scored cells are kept in {store}; run the same command to resume."), \
                    Progress(TextColumn(f"[bold]{d}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                             console=console, transient=True) as bar:
                task = bar.add_task(d, total=count)
                report = correlate_table(source, d, n=None if n == 0 else n, seed=seed, C=C, N=N, bootstrap=bootstrap,
                                         out_dir=Path(out_dir) / d, store=db, executor=executor,
                                         on_result=lambda _c: bar.update(task, advance=1))
            console.print(rich_table(correlation_table(report)))
            console.print(report["verdict"], highlight=False)
            console.print(f"proxies scored in {report['wall_seconds']:.1f} s; html {report['files']['html']}",
                          highlight=False)
    except NB201Error as exc:
        raise fail(str(exc)) from None
    finally:
        executor.close()
        db.close()


@nb201_app.command("shrink")
def shrink(
    checkpoint: str = typer.Argument(..., help="an NB201 SPOS supernet checkpoint (nas correlate --space nb201 "
                                               "writes OUT_DIR/spos.pt)"),
    table: Optional[str] = typer.Option(None, help=TABLE_HELP),
    dataset: str = typer.Option("cifar10-valid", help="the table's dataset giving the ground truth"),
    drop: int = typer.Option(20, help="edge-ops dropped (of 30; every edge keeps one)"),
    children: int = typer.Option(20, help="random cells averaged per edge-op score"),
    random_drops: int = typer.Option(20, help="random drops to compare with"),
    val_limit: Optional[int] = typer.Option(10_000, help="validation images for ReBN"),
    calib: int = typer.Option(2560, help="calibration images for ReBN"),
    seed: int = typer.Option(0),
    device: Optional[str] = typer.Option(None, help="torch device for ReBN (default cuda if present)"),
    out: Optional[str] = typer.Option(None, "--out", help="JSON file for the result"),
) -> None:
    """ABS on NB201: drop edge-ops by angle (ABS), by ReBN accuracy and at random from a trained
    supernet; every dropped pair with its ground-truth rank, and the best accuracy left (the shrunk
    space searched exhaustively on the table)."""
    import torch

    from ..nas.nb201 import NB201Error
    from ..nas.nb201.oneshot import abs_drop, abs_table_md

    if not 0 <= drop <= 24:
        raise fail(f"--drop {drop} is invalid: expected 0..24 (30 edge-ops, every edge keeps at least one)")
    for flag, v in (("--children", children), ("--random-drops", random_drops), ("--calib", calib)):
        if v < 1:
            raise fail(f"{flag} {v} is invalid: expected a positive integer")
    t = _table(table)
    try:
        t.check_dataset(dataset)
    except NB201Error as exc:
        raise fail(str(exc)) from None
    if out is not None:
        check_out_file(out, "--out")
    dev = device or ("cuda" if torch.cuda.is_available() else None)
    try:
        res = abs_drop(checkpoint, t, dataset, drop=drop, children=children, seed=seed, random_drops=random_drops,
                       val_limit=val_limit, calib=calib, device=dev)
    except ValueError as exc:
        raise fail(str(exc).splitlines()[0]) from None
    console.print(abs_table_md(res), highlight=False)
    for k in ("angle", "rebn"):
        pairs = ", ".join(f"{d['edge']} {d['op']} (#{d['truth_rank']})" for d in res[k]["dropped"])
        console.print(f"dropped by {k}: {pairs}", highlight=False)
    if out is not None:
        Path(out).write_text(json.dumps(res, indent=1, default=float))
        console.print(f"written to {out}", highlight=False)


@nb201_app.command("study")
def study(
    config: Optional[str] = typer.Argument(None, help="YAML study config (see normlab/configs/nas-nb201-fashion.yaml)"),
    preset: Optional[str] = typer.Option(None, help="nas-nb201-fashion (the default unless CONFIG is given)"),
    table: Optional[str] = typer.Option(None, help="override the config's table: " + TABLE_HELP),
    cells: Optional[int] = typer.Option(None, help="override: cells drawn uniformly"),
    extremes: Optional[int] = typer.Option(None, help="override: best and worst cells by the table (each)"),
    epochs: Optional[int] = typer.Option(None, help="override: stand-alone epochs per cell"),
    out_dir: str = typer.Option("runs/nb201-study", help="report.json, report.md/html, plots, supernet checkpoints"),
    name: str = typer.Option("nas-nb201-study", help="the stored experiments' name prefix"),
    workers: int = typer.Option(2), backend: str = typer.Option("process", help="serial | process | ray"),
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store (a rerun trains only what is missing)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its estimated time, train nothing"),
) -> None:
    """The CPU study (issue 24): NB201 cells trained stand-alone with two seeds (the noise
    ceiling first), against the BN indicator, ReBN, the ABS angle, #params, FLOPs and synflow;
    tau/rho over all cells and over connected cells, plots and a verdict per proxy. Resumable."""
    from ..nas.nb201 import NB201Error
    from ..nas.nb201.study import load_study_config, run_study, study_plan, study_table, study_summary
    from ..nas.pipeline import fmt_seconds
    from ..report import rich_table
    from ..runtime import make_executor

    try:
        cfg = load_study_config(config, preset=preset, table=table, cells=cells, extremes=extremes, epochs=epochs)
        plan = study_plan(cfg, workers=workers if backend != "serial" else 1)
    except (NB201Error, ValueError) as exc:
        raise fail(str(exc).splitlines()[0]) from None
    from rich.table import Table

    plan_table = Table(title=f"plan: {config or 'preset ' + (preset or 'nas-nb201-fashion')}, data {plan['data']}")
    for col in ("step", "what", "estimate"):
        plan_table.add_column(col, justify="right" if col == "estimate" else "left")
    for step, what, secs in plan["steps"]:
        plan_table.add_row(step, what, fmt_seconds(secs))
    steps = plan["step_seconds"]
    plan_table.add_row("total", "(a training step here: " + ", ".join(f"{1e3 * t:.0f} ms {k}" for k, t in steps.items())
                       + " cells)", fmt_seconds(plan["seconds"]))
    console.print(plan_table)
    if dry_run:
        return
    check_out_dir(out_dir, "--out-dir")
    try:
        executor = make_executor(backend, workers)
    except ValueError as exc:
        raise fail(str(exc)) from None
    db = open_store(store, readonly=False)
    try:
        with guarded(f"finished trainings are kept in {store}; run the same command to resume."):
            report = run_study(cfg, out_dir=out_dir, store=db, name=name, executor=executor,
                               log=lambda m: console.print(m, highlight=False))
    except (NB201Error, ValueError) as exc:
        raise fail(str(exc).splitlines()[0]) from None
    finally:
        executor.close()
        db.close()
    console.print(rich_table(study_table(report)))
    console.print(study_summary(report), highlight=False)
    if "abs" in report:
        from ..nas.nb201.oneshot import abs_table_md

        console.print(abs_table_md(report["abs"]), highlight=False)
    console.print(f"took {fmt_seconds(report['seconds']['total'])} (estimate {fmt_seconds(plan['seconds'])}); "
                  f"html {report['files']['html']}", highlight=False)
