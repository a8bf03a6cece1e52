"""`normlab nas train|search|shrink|correlate|show`: one-shot architecture search driven by
normalization (SPOS supernet, BN-NAS's BN indicator, ABS's angle), through normlab.search; every
scored path is a stored trial, so re-running the same command resumes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from ._app import app
from .common import (DEFAULT_STORE, check_out_dir, check_out_file, check_run, console, fail, guarded,
                     load_stored_search, open_executor, open_store)

nas_app = typer.Typer(no_args_is_help=True, add_completion=False,
                      help="One-shot NAS: SPOS supernet, BN-NAS (BN indicator), ABS (angle shrinking).")
app.add_typer(nas_app, name="nas")


def _space(space: str, dataset: str):
    """The search space (a preset name or a YAML file) fitted to the dataset's shape."""
    from ..nas.pipeline import resolve_space

    return resolve_space(space, dataset)


def _threads() -> None:
    import torch

    torch.set_num_threads(1)                         # small convs: one thread per process is fastest


def _executor(backend: str, workers: int):
    return open_executor(backend, workers)


def _train(out: str, mode: str, bn_params: str, dataset: str, space: str, epochs: int, batch_size: int,
           lr: float, train_limit: Optional[int], seed: int) -> None:
    from ..nas.train import TrainConfig, train_supernet

    try:
        cfg = TrainConfig(dataset=dataset, mode=mode, bn_params=bn_params, epochs=epochs,
                          batch_size=batch_size, lr=lr, seed=seed, train_limit=train_limit)
        space_cfg = _space(space, dataset)
    except ValueError as exc:
        raise fail(str(exc).splitlines()[0]) from None
    check_out_file(out, "--out")
    _threads()

    def show(epoch: int, row: dict) -> None:
        console.print(f"epoch {epoch}/{cfg.epochs}: loss {row['loss']:.3f}, train acc {100 * row['train_acc']:.1f}% "
                      f"({row['seconds']:.1f} s)", highlight=False)

    with guarded(f"finished epochs are kept in {out}; run the same command to resume."):
        train_supernet(space_cfg, cfg, checkpoint=out, on_epoch=show)
    console.print(f"supernet ({mode}) saved to {out}: {space_cfg.num_paths():,} paths", highlight=False)


@nas_app.command("train")
def train(
    out: str = typer.Option(..., "--out", help="checkpoint file (an existing one is resumed)"),
    mode: str = typer.Option("full", help="full (SPOS, all weights) | bn (BN-NAS: BN affine only)"),
    bn_params: str = typer.Option("last", help="bn mode: last (each op's last BN) | all"),
    dataset: str = typer.Option("mnist5k", help="digits, mnist5k, synthetic:..."),
    space: str = typer.Option("small", help="space preset (small, imagenet) or a YAML file"),
    epochs: int = typer.Option(4), batch_size: int = typer.Option(64), lr: float = typer.Option(0.05),
    train_limit: Optional[int] = typer.Option(None, help="use only this many training samples"),
    seed: int = typer.Option(0),
) -> None:
    """Train a supernet by uniform single-path sampling; checkpoint after every epoch."""
    _train(out, mode, bn_params, dataset, space, epochs, batch_size, lr, train_limit, seed)


@nas_app.command("bn-train")
def bn_train(
    out: str = typer.Option(..., "--out", help="checkpoint file (an existing one is resumed)"),
    bn_params: str = typer.Option("last", help="last (each op's last BN, as BN-NAS) | all"),
    dataset: str = typer.Option("mnist5k", help="digits, mnist5k, synthetic:..."),
    space: str = typer.Option("small", help="space preset (small, imagenet) or a YAML file"),
    epochs: int = typer.Option(1, help="BN-NAS: a tenth of the SPOS epochs"), batch_size: int = typer.Option(64),
    lr: float = typer.Option(0.5), train_limit: Optional[int] = typer.Option(None), seed: int = typer.Option(0),
) -> None:
    """BN-NAS's supernet: only the BN affine parameters train (no weight decay), everything else
    stays at its random initialisation ('nas train --mode bn')."""
    _train(out, "bn", bn_params, dataset, space, epochs, batch_size, lr, train_limit, seed)


@nas_app.command("search")
def search(
    checkpoint: str = typer.Argument(..., help="supernet checkpoint from 'normlab nas train'"),
    scorer: str = typer.Option("rebn", help="rebn (SPOS) | bn (BN indicator; use a --mode bn supernet) | angle (ABS)"),
    budget: int = typer.Option(100), population: int = typer.Option(20), sample_size: int = typer.Option(5),
    crossover: float = typer.Option(0.0), seed: int = typer.Option(0),
    max_flops: Optional[float] = typer.Option(None, help="FLOPs limit, checked before scoring"),
    max_params: Optional[float] = typer.Option(None),
    allowed: Optional[str] = typer.Option(None, help="JSON file from 'nas shrink' (a shrunk space)"),
    name: Optional[str] = typer.Option(None, help="the search's name in the store"),
    workers: int = typer.Option(1), backend: str = typer.Option("serial", help="serial | process | ray"),
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
    timeout: Optional[float] = typer.Option(None, help="seconds each evaluation may take: a process pool or Ray kills a stuck one (stored as failed, timed out); serial runs cannot interrupt one"),
) -> None:
    """Evolutionary search over the supernet's paths, scored by one of the three scorers."""
    from ..nas.search import SCORERS, search_paths
    from ..runtime.executors import check_timeout

    try:
        check_timeout(timeout, "--timeout ")
    except ValueError as exc:
        raise fail(str(exc)) from None

    check_run(name=name, backend=backend, workers=workers)
    if scorer not in SCORERS:
        raise fail(f"--scorer {scorer} is invalid: expected one of {', '.join(SCORERS)}")
    if not Path(checkpoint).is_file():
        raise fail(f"checkpoint {checkpoint} does not exist: train one with 'normlab nas train --out PATH'")
    _check_checkpoint(checkpoint)
    ops = None
    if allowed is not None:
        try:
            ops = json.loads(Path(allowed).read_text(encoding="utf-8"))["allowed"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise fail(f"--allowed {allowed} is not a shrink result (expected JSON with 'allowed'): {exc}") from None
    name = name or f"nas-{scorer}-s{seed}"
    _threads()
    db = open_store(store, readonly=False)
    executor = _executor(backend, workers)
    try:
        with guarded(f"scored paths are kept in {store}; run the same command again to resume."):
            result = search_paths(checkpoint, scorer=scorer, budget=budget, population=population,
                                  sample_size=sample_size, crossover=crossover, seed=seed, allowed=ops,
                                  max_flops=max_flops, max_params=max_params, store=db, name=name,
                                  executor=executor, timeout=timeout)
    finally:
        executor.close()
        db.close()
    console.print(f"[bold]{name}[/]: {len(result.history)} paths scored by {scorer}", highlight=False)
    _print_top(result, checkpoint, 5)


def _check_checkpoint(checkpoint: str):
    """The supernet of a checkpoint (read as tensors and plain data only), or one line and exit 2."""
    from ..nas.search import _load

    try:
        return _load(checkpoint)[0]
    except ValueError as exc:
        raise fail(str(exc).splitlines()[0]) from None


def _print_top(result, checkpoint: Optional[str], top: int) -> None:
    names = None
    if checkpoint and Path(checkpoint).is_file():
        names = _check_checkpoint(checkpoint).names
    table = Table(title="best paths")
    for col in ("step", "path", "score", "MFLOPs", "params"):
        table.add_column(col)
    for e in sorted(result.ok, key=lambda e: -e.scores["score"])[:top]:
        label = " ".join(names(e.arch)) if names else "-".join(map(str, e.arch))
        table.add_row(str(e.step), label, f"{e.scores['score']:.4g}", f"{e.scores.get('flops', 0) / 1e6:.2f}",
                      f"{int(e.scores.get('params', 0)):,}")
    console.print(table)


@nas_app.command("shrink")
def shrink(
    out: str = typer.Option(..., "--out", help="JSON file for the shrunk space (use with 'nas search --allowed')"),
    dataset: str = typer.Option("mnist5k"), space: str = typer.Option("small"),
    first_epochs: int = typer.Option(3), stage_epochs: int = typer.Option(1),
    drop: int = typer.Option(4, help="operators dropped per stage"), target: int = typer.Option(1000),
    children: int = typer.Option(10, help="children sampled per operator score"),
    checkpoint: Optional[str] = typer.Option(None, help="supernet checkpoint file to write"),
    batch_size: int = typer.Option(64), lr: float = typer.Option(0.05),
    train_limit: Optional[int] = typer.Option(None), seed: int = typer.Option(0),
) -> None:
    """ABS: train the supernet, drop the operators whose children moved least in angle, repeat."""
    from ..nas.search import abs_shrink
    from ..nas.train import TrainConfig

    try:
        cfg = TrainConfig(dataset=dataset, epochs=first_epochs, batch_size=batch_size, lr=lr, seed=seed,
                          train_limit=train_limit)
        space_cfg = _space(space, dataset)
    except ValueError as exc:
        raise fail(str(exc).splitlines()[0]) from None
    for flag, v in (("--first-epochs", first_epochs), ("--stage-epochs", stage_epochs), ("--drop", drop),
                    ("--target", target), ("--children", children)):
        if v < 1:
            raise fail(f"{flag} {v} is invalid: expected a positive integer")
    check_out_file(out, "--out")
    _threads()
    try:
        res = abs_shrink(space_cfg, cfg, first_epochs=first_epochs, stage_epochs=stage_epochs, drop=drop,
                         target=target, children=children, checkpoint=checkpoint, seed=seed)
    except ValueError as exc:
        raise fail(str(exc).splitlines()[0]) from None
    Path(out).write_text(json.dumps({"allowed": res["allowed"], "stages": res["stages"]}, indent=1))
    for st in res["stages"]:
        console.print(f"stage {st['stage']} (epoch {st['epoch']}): {st['size']:,} paths", highlight=False)
    console.print(f"shrunk space: {res['size']:,} paths, written to {out}", highlight=False)


@nas_app.command("correlate")
def correlate(
    out_dir: str = typer.Option("runs/nas-correlate", help="folder for supernet checkpoints and report.json"),
    dataset: str = typer.Option("mnist5k"),
    space: str = typer.Option("small", help="small | imagenet | a YAML file (MBConv), or nb201 (the NB201 cell supernet)"),
    ground_truth: str = typer.Option("standalone", help="standalone (train the paths from scratch) | nb201 (the "
                                                        "table's validation accuracy: --space nb201 only)"),
    n: Optional[int] = typer.Option(None, help="architectures scored (default 30; nb201: 500 cells)"),
    standalone_epochs: int = typer.Option(4),
    spos_epochs: Optional[int] = typer.Option(None, help="SPOS supernet epochs (default 10; nb201: 200, NB201's recipe)"),
    bn_epochs: Optional[int] = typer.Option(None, help="BN-only supernet epochs (default a tenth of SPOS's, >= 1)"),
    batch_size: Optional[int] = typer.Option(None, help="default 64; nb201: 256"),
    lr: Optional[float] = typer.Option(None, help="default 0.05; nb201: 0.1"), bn_lr: float = typer.Option(0.5),
    train_limit: Optional[int] = typer.Option(None),
    val_limit: Optional[int] = typer.Option(None, help="validation samples (ReBN evaluates each subnet on them; nb201 default 10,000)"),
    seed: int = typer.Option(0),
    repeats: int = typer.Option(2, help="train every ground-truth path with this many seeds (the noise ceiling)"),
    table: Optional[str] = typer.Option(None, help="nb201: the NB201 table (a .pth/.npz, or 'standin': not evidence)"),
    table_dataset: Optional[str] = typer.Option(None, help="nb201: the table's dataset to compare with (default "
                                                           "cifar10-valid for cifar10, cifar100 for cifar100)"),
    C: int = typer.Option(16, "--C", help="nb201: channels of the first stage"),
    N: int = typer.Option(5, "--N", help="nb201: cells per stage"),
    image_size: Optional[int] = typer.Option(None, help="nb201: resize the images (default as stored)"),
    abs_drop: int = typer.Option(20, help="nb201: edge-ops ABS drops (of 30; 0: no ABS step)"),
    bootstrap: int = typer.Option(1000, help="nb201: bootstrap resamples for the intervals and verdicts"),
    abs_children: int = typer.Option(20, help="nb201: cells averaged per edge-op score"),
    augment: Optional[bool] = typer.Option(None, "--augment/--no-augment", help="nb201: crop + flip (default on)"),
    device: Optional[str] = typer.Option(None, help="nb201: torch device for training and ReBN (default cuda if present)"),
    download: bool = typer.Option(False, "--download", help="download the dataset first (cifar10, cifar100)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="nb201: print the plan and its cost here and on a GPU, train nothing"),
    name: str = typer.Option("nas-correlate"), workers: int = typer.Option(1),
    backend: str = typer.Option("serial", help="serial | process | ray"),
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
) -> None:
    """Rank correlation of each proxy (BN indicator, ReBN, angle, params, FLOPs, synflow) with
    stand-alone accuracy on N sampled architectures, and the verdict on BN-NAS's claims. With
    --space nb201 --ground-truth nb201: the NB201 supernets against the table (ABS's NB201 table)."""
    if ground_truth not in ("standalone", "nb201"):
        raise fail(f"--ground-truth {ground_truth} is invalid: expected standalone or nb201")
    if (space == "nb201") != (ground_truth == "nb201"):
        raise fail("--space nb201 goes with --ground-truth nb201 (the table is the ground truth of NB201 cells; "
                   "stand-alone training is for the MBConv spaces)")
    check_run(name=name, backend=backend, workers=workers)
    if space == "nb201":
        _correlate_nb201(out_dir=out_dir, dataset=dataset, n=n or 500, spos_epochs=spos_epochs, bn_epochs=bn_epochs,
                         batch_size=batch_size, lr=lr, bn_lr=bn_lr, train_limit=train_limit, val_limit=val_limit,
                         seed=seed, table=table, table_dataset=table_dataset, C=C, N=N, image_size=image_size, abs_drop=abs_drop,
                         abs_children=abs_children, bootstrap=bootstrap, augment=augment, device=device, download=download,
                         dry_run=dry_run, name=name, workers=workers, backend=backend, store=store)
        return
    if dry_run:
        raise fail("--dry-run is for --space nb201 (the MBConv study's cost: 'normlab nas run --dry-run')")
    from ..nas.search import correlate as run
    from ..nas.train import TrainConfig

    n = 30 if n is None else n
    spos_epochs = 10 if spos_epochs is None else spos_epochs
    if n < 3:
        raise fail(f"--n {n} is invalid: expected at least 3 architectures")
    if repeats < 1:
        raise fail(f"--repeats {repeats} is invalid: expected a positive integer")
    try:
        common = dict(dataset=dataset, batch_size=batch_size or 64, seed=seed, train_limit=train_limit,
                      val_limit=val_limit)
        sa = TrainConfig(epochs=standalone_epochs, lr=lr or 0.05, **common)
        spos = TrainConfig(epochs=spos_epochs, lr=lr or 0.05, **common)
        bn = TrainConfig(epochs=bn_epochs or max(1, spos_epochs // 10), mode="bn", lr=bn_lr, **common)
        space_cfg = _space(space, dataset)
    except ValueError as exc:
        raise fail(str(exc).splitlines()[0]) from None
    check_out_dir(out_dir, "--out-dir")
    _threads()
    db = open_store(store, readonly=False)
    executor = _executor(backend, workers)
    try:
        with guarded("finished trainings are kept; run the same command again to resume."):
            report = run(space_cfg, standalone=sa, spos=spos, bn=bn, n=n, seed=seed, repeats=repeats,
                         out_dir=out_dir, store=db,
                         name=name, executor=executor, log=lambda m: console.print(m, highlight=False))
    finally:
        executor.close()
        db.close()
    print_report(report)
    from ..nas.report import write_correlation_report

    paths = write_correlation_report(report, out_dir)
    console.print(f"plots: {paths['scatter']}, {paths['early']}\nhtml: {paths['html']}\n"
                  f"markdown: {paths['markdown']}", highlight=False)


def _correlate_nb201(*, out_dir, dataset, n, spos_epochs, bn_epochs, batch_size, lr, bn_lr, train_limit, val_limit,
                     seed, table, table_dataset, C, N, image_size, abs_drop, abs_children, bootstrap, augment, device, download, dry_run,
                     name, workers, backend, store) -> None:
    """`nas correlate --space nb201 --ground-truth nb201`: the NB201 supernets against the table."""
    from ..nas.nb201 import NB201Error, load_table
    from ..nas.nb201.oneshot import OneShotConfig, correlate_oneshot, oneshot_plan
    from ..nas.pipeline import dataset_info, fmt_seconds

    kw = {k: v for k, v in dict(epochs=spos_epochs, bn_epochs=bn_epochs, batch_size=batch_size, lr=lr,
                                limit=train_limit, augment=augment, image_size=image_size).items() if v is not None}
    try:
        cfg = OneShotConfig(dataset=dataset, table=table, table_dataset=table_dataset, C=C, N=N, n=n, bn_lr=bn_lr, seed=seed, abs_drop=abs_drop,
                            abs_children=abs_children, bootstrap=bootstrap, val_limit=10_000 if val_limit is None else val_limit, **kw)
        _ = cfg.truth_dataset                                            # cifar10 / cifar100 (one line if not)
        info = dataset_info(dataset, download=download and not dry_run, missing_ok=dry_run)
        if not dry_run:
            load_table(table).check_dataset(cfg.truth_dataset)
    except ValueError as exc:
        raise fail(str(exc).splitlines()[0]) from None
    n_train = info.n_train or 50_000
    n_val = max(1, int(round(n_train * cfg.val_fraction)))
    plan = oneshot_plan(cfg, train_images=n_train - n_val, val_images=n_val, in_channels=info.in_channels,
                        num_classes=info.num_classes, image_size=cfg.image_size or info.image_size[0])
    t = Table(title=f"plan: NB201 one-shot on {dataset} (C={C}, N={N}), truth = the table's {cfg.truth_dataset} "
                    f"validation accuracy")
    for col in ("step", "what", f"here ({plan['threads']} thread(s))", "on a GPU (estimate)"):
        t.add_column(col, justify="left" if col in ("step", "what") else "right")
    for step, what, cpu, gpu in plan["steps"]:
        t.add_row(step, what, fmt_seconds(cpu), fmt_seconds(gpu))
    t.add_row("total", f"one training step here: {1000 * plan['step_seconds']:.0f} ms", fmt_seconds(plan["cpu_seconds"]),
              fmt_seconds(plan["gpu_seconds"]))
    console.print(t)
    console.print(plan["assumptions"], highlight=False)
    if dry_run:
        return
    import torch

    dev = device or ("cuda" if torch.cuda.is_available() else None)
    check_out_dir(out_dir, "--out-dir")
    if dev is None:
        _threads()
    db = open_store(store, readonly=False)
    executor = _executor(backend, workers)

    def show(epoch: int, row: dict) -> None:
        console.print(f"supernet epoch {epoch}: loss {row['loss']:.3f}, train acc {100 * row['train_acc']:.1f}% "
                      f"({row['seconds']:.1f} s)", highlight=False)

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        with guarded("finished epochs and scored cells are kept; run the same command again to resume."), \
                Progress(TextColumn("[bold]cells scored"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                         console=console, transient=True) as bar:
            task = bar.add_task("cells", total=cfg.n)
            report = correlate_oneshot(cfg, out_dir=out_dir, store=db, name=name, executor=executor, device=dev,
                                       download=download, log=lambda m: console.print(m, highlight=False),
                                       on_epoch=show, on_result=lambda _r: bar.update(task, advance=1))
    except NB201Error as exc:
        raise fail(str(exc).splitlines()[0]) from None
    finally:
        executor.close()
        db.close()
    print_nb201_report(report)
    console.print(f"report: {report['files']['markdown']}, {report['files']['html']}", highlight=False)


def print_nb201_report(report: dict) -> None:
    from ..nas.nb201.oneshot import abs_table_md, connected_table_md

    console.print(connected_table_md(report), highlight=False)
    if "abs" in report:
        console.print(abs_table_md(report["abs"]), highlight=False)
    console.print(report["verdict"], highlight=False)


def print_report(report: dict) -> None:
    from ..nas.report import correlation_table
    from ..report import rich_table

    console.print(rich_table(correlation_table(report)))
    console.print(f"supernet training: SPOS {report['supernet_seconds']['spos']:.0f} s "
                  f"({report['supernet_epochs']['spos']} epochs), BN-only {report['supernet_seconds']['bn']:.0f} s "
                  f"({report['supernet_epochs']['bn']} epochs); BN indicator scores "
                  f"{report['bn_indicator_subnets_per_second']:,.0f} subnets/s vectorised", highlight=False)
    for key, taus in report["early_stage_tau"].items():
        console.print(f"tau per supernet epoch, {key}: " + ", ".join(f"{t:.2f}" for t in taus), highlight=False)
    console.print(report["verdict"], highlight=False)


@nas_app.command("show")
def show(name: str = typer.Argument(..., help="the search's name"),
         store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
         checkpoint: Optional[str] = typer.Option(None, help="its supernet checkpoint (to name the ops)"),
         top: int = typer.Option(5)) -> None:
    """The best paths of a stored NAS search."""
    if top < 1:
        raise fail(f"--top {top} is invalid: expected a positive integer")
    for r in load_stored_search(store, name, decode=tuple):
        console.print(f"[bold]{r.name}[/] ({r.strategy}, seed {r.config.get('seed')}, scored by "
                      f"{r.config.get('tag', '?')}): {len(r.history)} paths", highlight=False)
        _print_top(r, checkpoint, top)


@nas_app.command("export")
def export(name: str = typer.Argument(..., help="a stored NAS search's name"),
           out: str = typer.Option(..., "--out", help="JSON file for the architecture"),
           rank: int = typer.Option(1, help="export the path ranked this (1 = the best)"),
           store: str = typer.Option(DEFAULT_STORE, help="SQLite results store")) -> None:
    """Write a found path as a model file: 'normlab bench --model FILE.json' and
    create_model("nas", space=..., path=...) build it from scratch with any norm."""
    from ..nas import SpaceConfig
    from ..nas.search import top_paths
    from ..nas.supernet import genotype

    if rank < 1:
        raise fail(f"--rank {rank} is invalid: expected a positive integer")
    found = load_stored_search(store, name, decode=tuple)[-1]
    stored = _nas_space(found, name)
    if stored is None:
        raise fail(f"search {name!r} was stored without its space (an older run): run it again to export")
    paths = top_paths(found, rank)
    if len(paths) < rank:
        raise fail(f"--rank {rank} is invalid: the search has {len(paths)} successful paths")
    path = paths[rank - 1]
    scores = next(e.scores for e in found.ok if tuple(e.arch) == path)
    check_out_file(out, "--out")
    data = genotype(SpaceConfig.from_dict(stored), path, search=name, scores=scores)
    Path(out).write_text(json.dumps(data, indent=1))
    console.print(f"{' '.join(data['ops'])} (score {scores.get('score', float('nan')):.4g}) written to {out}; "
                  f"train it: normlab bench --model {out}", highlight=False)


_PATH_SPACE = "normlab.nas.space.PathSpace"


def _nas_space(found, name: str):
    """The space settings stored with a NAS path search (None for one stored before they were
    kept); one line and exit 2 for a search of another kind (a layer search, NAGO, ...)."""
    cfg = found.config
    stored = cfg.get("space")
    if stored == _PATH_SPACE:
        return None
    if not (isinstance(stored, dict) and "choices" in cfg and "tag" in cfg):
        what = stored if isinstance(stored, str) else f"strategy {found.strategy}"
        raise fail(f"search {name!r} is not a NAS path search ({what}): expected one made by 'normlab nas "
                   f"search' or 'normlab nas run'")
    return stored


def _retrain_table(rows, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in ("path", "test acc", "val acc", "params", "MFLOPs", "seconds"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for r in rows:
        if r["status"] != "ok":
            table.add_row("-".join(map(str, r["path"])), f"failed: {(r['error'] or '').splitlines()[0][:60]}",
                          "", "", "", "")
            continue
        table.add_row("-".join(map(str, r["path"])), f"{100 * r['score']:.2f}", f"{100 * r['val_acc']:.2f}",
                      f"{r['params']:,.0f}", f"{r['flops'] / 1e6:.2f}", f"{r['seconds']:.1f}")
    console.print(table)


@nas_app.command("retrain")
def retrain_cmd(
    search: str = typer.Argument(..., help="a stored NAS search's name (from 'normlab nas search')"),
    top: int = typer.Option(3, help="retrain this many of its best paths"),
    dataset: str = typer.Option("mnist5k"),
    space: Optional[str] = typer.Option(None, help="the search's space (default: the one stored with it)"),
    epochs: int = typer.Option(4), batch_size: int = typer.Option(64), lr: float = typer.Option(0.05),
    train_limit: Optional[int] = typer.Option(None), seed: int = typer.Option(0),
    name: Optional[str] = typer.Option(None, help="the retraining's name in the store"),
    workers: int = typer.Option(1), backend: str = typer.Option("serial", help="serial | process | ray"),
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
) -> None:
    """Retrain the best paths of a stored search from scratch and report their test accuracy."""
    from ..nas.search import retrain, top_paths
    from ..nas.train import TrainConfig

    check_run(name=name, backend=backend, workers=workers)
    if top < 1:
        raise fail(f"--top {top} is invalid: expected a positive integer")
    from ..nas import SpaceConfig

    found = load_stored_search(store, search, decode=tuple)[-1]      # read-only: nothing created yet
    stored = _nas_space(found, search)
    try:
        cfg = TrainConfig(dataset=dataset, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                          train_limit=train_limit)
        if space is None and stored is not None:
            space_cfg = SpaceConfig.from_dict(stored)
            _space("small", dataset)                      # the dataset exists (one line if not)
        else:
            space_cfg = _space(space or "small", dataset)
    except ValueError as exc:
        raise fail(str(exc).splitlines()[0]) from None
    db = open_store(store, readonly=False)
    executor = _executor(backend, workers)
    _threads()
    try:
        with guarded("finished trainings are kept; run the same command again to resume."):
            paths = top_paths(found, top)
            rows = retrain(space_cfg, paths, cfg, store=db, name=name or f"{search}/retrain", executor=executor)
    finally:
        executor.close()
        db.close()
    _retrain_table(rows, f"{search}: the top {len(rows)} paths retrained from scratch ({epochs} epochs)")


@nas_app.command("run")
def run_chain(
    config: Optional[str] = typer.Argument(None, help="YAML chain config (see normlab/configs/nas-quick.yaml)"),
    preset: Optional[str] = typer.Option(None, help="quick | paper (default quick, unless CONFIG is given)"),
    out_dir: str = typer.Option("runs/nas", help="folder for the supernet and ABS checkpoints"),
    scorer: Optional[str] = typer.Option(None, help="override: bn | rebn | angle"),
    norm: Optional[str] = typer.Option(None, help="override: the norm in every op, e.g. bgn:groups=4"),
    dataset: Optional[str] = typer.Option(None, help="override the config's dataset"),
    budget: Optional[int] = typer.Option(None, help="override: paths scored by the search"),
    top: Optional[int] = typer.Option(None, help="override: paths retrained from scratch"),
    seed: Optional[int] = typer.Option(None), name: str = typer.Option("nas-run"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its estimated cost, train nothing"),
    download: bool = typer.Option(False, "--download", help="download the dataset first (cifar10, ...)"),
    workers: int = typer.Option(1), backend: str = typer.Option("serial", help="serial | process | ray"),
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
) -> None:
    """The whole chain in one command: (ABS shrinking) -> supernet (BN-only for the BN indicator,
    SPOS otherwise) -> evolutionary search over paths -> retrain the best from scratch. Every
    step resumes (epoch checkpoints, stored trials): run the same command again after a kill."""
    from ..nas.pipeline import chain_plan, dataset_info, fmt_seconds, load_chain_config, resolve_space
    from ..nas.pipeline import run_chain as run

    check_run(name=name, backend=backend, workers=workers)
    try:
        cfg = load_chain_config(config, preset=preset, scorer=scorer, norm=norm, dataset=dataset, budget=budget,
                                top=top, seed=seed)
        # missing data: one line now, not after planning (a dry run plans from the set's known facts)
        info = dataset_info(cfg.dataset, download=download and not dry_run, missing_ok=dry_run)
        space_cfg = resolve_space(cfg.space, cfg.dataset, cfg.norm, info=info)
    except ValueError as exc:
        raise fail(str(exc).splitlines()[0]) from None
    _threads()
    plan = chain_plan(cfg, space_cfg, info=info)
    table = Table(title=f"plan: {config or 'preset ' + (preset or 'quick')} on {cfg.dataset}, "
                        f"{plan['space_paths']:,} paths, norm {space_cfg.norm}")
    for col in ("step", "what", "estimate"):
        table.add_column(col, justify="right" if col == "estimate" else "left")
    for step, what, secs in plan["steps"]:
        table.add_row(step, what, fmt_seconds(secs))
    table.add_row("total", f"(one training step: {1000 * plan['step_seconds']:.1f} ms on this machine)",
                  fmt_seconds(plan["seconds"]))
    console.print(table)
    if dry_run:
        return
    check_out_dir(out_dir, "--out-dir")
    db = open_store(store, readonly=False)
    executor = _executor(backend, workers)
    try:
        with guarded("what finished is kept; run the same command again to resume."):
            out = run(cfg, out_dir=out_dir, store=db, name=name, executor=executor, space=space_cfg,
                      log=lambda m: console.print(m, highlight=False))
    finally:
        executor.close()
        db.close()
    _retrain_table(out["retrain"], f"{name}: the top {len(out['retrain'])} paths by {cfg.scorer}, retrained from "
                                   f"scratch ({cfg.retrain.epochs} epochs)")
    check = out["supernet_check"]
    console.print(f"supernet ({check['paths']} random paths on the validation split): {check['text']}"
                  + ("" if check["above_chance"] else f": the {cfg.scorer} scores that chose these paths carry no "
                     f"signal, so this is a random choice"), highlight=False)
