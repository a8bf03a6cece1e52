"""`normlab nago run|show|sample`: network-generator search (NAGO) with optuna over the runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ._app import app
from .common import (DEFAULT_STORE, check_out_dir, check_out_file, check_run, console, fail, guarded,
                     interruptible, load_stored_search, open_executor, open_store)

nago_app = typer.Typer(no_args_is_help=True, add_completion=False,
                       help="Network-generator search (NAGO): hierarchical random-graph generators + BO.")
app.add_typer(nago_app, name="nago")


def _need_extras() -> None:
    try:
        import networkx  # noqa: F401
        import optuna  # noqa: F401
    except ImportError as exc:
        raise fail(f"normlab nago needs networkx and optuna ({exc.name} is missing): "
                   f"pip install 'normlab[nago]'") from None


def _front_table(result, title: str) -> Table:
    table = Table(title=title)
    for col in ("step", "generator", "accuracy", "± std", "params", "MFLOPs"):
        table.add_column(col)
    for e in sorted(result.pareto_front(), key=lambda e: e.scores.get("params", 0)):
        s = e.scores
        table.add_row(str(e.step), e.key, f"{s.get('accuracy', float('nan')):.4f}",
                      f"{s.get('accuracy_std', float('nan')):.4f}", f"{s.get('params', 0) / 1e3:.1f}k",
                      f"{s.get('flops', 0) / 1e6:.1f}")
    return table


@nago_app.command("run")
def run(
    config: Optional[str] = typer.Argument(None, help="NAGO config YAML file"),
    preset: Optional[str] = typer.Option(None, help="quick | paper"),
    name: Optional[str] = typer.Option(None, help="search name (default: the preset's or 'nago')"),
    dataset: Optional[str] = typer.Option(None, help="e.g. mnist5k, digits, synthetic:n=512,size=16"),
    norm: Optional[str] = typer.Option(None, help="norm spec in every node: bn, bgn:groups=4, gn:groups=4, ..."),
    budget: Optional[int] = typer.Option(None, help="generators to evaluate"),
    seed: Optional[int] = typer.Option(None),
    strategy: Optional[str] = typer.Option(None, help="tpe | gp | random | randwire (RandWire's fixed "
                                                      "generator, new networks each evaluation)"),
    randwire_n: Optional[int] = typer.Option(None, "--randwire-n", help="RandWire: operations per stage"),
    halving: Optional[int] = typer.Option(None, "--halving", help="successive halving with this eta (e.g. 3): "
                                          "short training first, the best 1/eta trained longer; 0 off"),
    rungs: Optional[int] = typer.Option(None, help="successive halving: fidelities (default 2)"),
    samples: Optional[int] = typer.Option(None, help="networks trained per generator (its fitness is their mean)"),
    steps: Optional[int] = typer.Option(None, help="training steps per network"),
    width: Optional[int] = typer.Option(None, help="channels of the first stage"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its estimated cost"),
    workers: int = typer.Option(1, help="parallel evaluations (a process pool unless --backend ray)"),
    backend: str = typer.Option("serial", help="serial | process | ray"),
    address: Optional[str] = typer.Option(None, help="Ray cluster address (with --backend ray)"),
    threads: Optional[int] = typer.Option(None, help="torch threads for a serial run"),
    store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
    export: Optional[str] = typer.Option(None, help="write the best generators (Pareto front) as JSON here"),
    timeout: Optional[float] = typer.Option(None, help="seconds each evaluation may take: a process pool or Ray kills a stuck one (stored as failed, timed out); serial runs cannot interrupt one"),
) -> None:
    """Search network generators with Bayesian optimisation (optuna), accuracy up and params
    down; every evaluation is stored, and re-running the same command resumes."""
    _need_extras()
    from ..nago.search import NagoError, load_config

    if config is None and preset is None:
        preset = "quick"
    if name is not None and not name.strip():
        raise fail("--name is empty: expected letters, digits, '.', '_' or '-'")
    if threads is not None and threads < 1:
        raise fail(f"--threads {threads} is invalid: expected a positive integer")
    check_run(name=name, backend=backend, workers=workers, address=address)
    from ..runtime.executors import check_timeout

    try:
        check_timeout(timeout, "--timeout ")
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        cfg = load_config(config, preset=preset, name=name, dataset=dataset, norm=norm, budget=budget,
                          seed=seed, strategy=strategy, samples=samples, width=width, randwire_n=randwire_n,
                          halving_eta=halving, halving_rungs=rungs)
        if steps is not None:
            from dataclasses import replace
            cfg = replace(cfg, train={**cfg.train, "steps": steps})
    except (NagoError, ValueError) as exc:
        raise fail(str(exc)) from None
    check_run(name=cfg.name, backend=backend, workers=workers, address=address)     # a config file's name too
    from ..data import DataError, check_dataset

    try:
        info = check_dataset(cfg.dataset)
    except DataError as exc:
        raise fail(str(exc)) from None
    if export:
        check_out_file(export, "--export")
    if dry_run:
        _dry_run(cfg, info, workers, threads)
        return
    executor = open_executor(backend, workers, address=address, threads=threads)
    db = open_store(store, readonly=False)
    try:
        result = _search_with_progress(cfg, db, executor, timeout)
    finally:
        executor.close()
        db.close()
    console.print(_front_table(result, f"Pareto front of '{cfg.name}' ({len(result.history)} generators, "
                                       f"{cfg.strategy}, norm {cfg.norm})"))
    if export:
        _export_front(result, export)


def _search_with_progress(cfg, db, executor, timeout):
    """run_search under a progress bar (best accuracy so far, last generator); one line on a stop."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..nago.search import NagoError, run_search

    best = {"acc": float("nan")}

    def on_result(done, total, ev):
        if ev.ok:
            acc = ev.scores.get("accuracy", float("nan"))
            if not best["acc"] == best["acc"] or acc > best["acc"]:
                best["acc"] = acc
        bar.update(task, completed=done, best=f"{best['acc']:.4f}", last=ev.key)

    try:
        with interruptible(), Progress(TextColumn(f"[bold]nago {cfg.strategy}"), BarColumn(),
                                       MofNCompleteColumn(), TimeElapsedColumn(),
                                       TextColumn("best acc {task.fields[best]}  last {task.fields[last]}"),
                                       console=console, transient=False) as bar:
            task = bar.add_task("nago", total=cfg.budget, best="-", last="-")
            return run_search(cfg, store=db, executor=executor, on_result=on_result, timeout=timeout)
    except KeyboardInterrupt:
        raise fail("interrupted: finished evaluations are stored; run the same command to resume", 130) from None
    except NagoError as exc:
        raise fail(str(exc)) from None


def _dry_run(cfg, info, workers: int, threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)

    from ..models import profile
    from ..nago.generator import randwire_params, sample
    from ..train import timed_calls
    from ..nago.search import generator_from, search_space

    mid = {}
    for key, dist in search_space(cfg).items():
        v = (dist.low + dist.high) / 2
        mid[key] = v if key.endswith(".p") else int(round(v))
    gen = randwire_params(cfg.randwire_n, cfg.stages, cfg.width, cfg.channel_ratios) \
        if cfg.strategy == "randwire" else generator_from(cfg, mid)
    h, w = info.image_size
    net = sample(gen, 0, norm=cfg.norm, in_channels=info.in_channels, num_classes=info.num_classes)
    prof = profile(net, (1, info.in_channels, h, w))
    bs = int(cfg.train.get("batch_size", 64))
    x = torch.randn(bs, info.in_channels, h, w)
    y = torch.randint(0, info.num_classes, (bs,))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    def one_step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    step = sum(timed_calls(one_step, rounds=3)) / 3
    def steps_of(train) -> int:
        return int(train.get("steps") or 0) or int(float(train.get("epochs", 1)) * ((info.n_train or 50000) // bs))

    networks = cfg.budget * cfg.samples
    steps = steps_of(cfg.train)
    # successive halving: every generator at rung 0, about budget / eta^r of them at rung r
    total = sum(cfg.budget / max(1, cfg.halving_eta) ** r * cfg.samples * steps_of(cfg.rung_train(r))
                for r in range(cfg.rungs))
    seconds = total * step * 1.15                                 # + evaluation
    fidelity = (f"; successive halving eta {cfg.halving_eta}: " + ", ".join(
        f"{steps_of(cfg.rung_train(r))}" for r in range(cfg.rungs)) + " steps") if cfg.rungs > 1 else ""
    console.print(f"plan: '{cfg.name}': {cfg.budget} generators x {cfg.samples} networks = {networks} "
                  f"trainings of {steps} steps (batch {bs}) on {cfg.dataset}, strategy {cfg.strategy}, "
                  f"norm {cfg.norm}{fidelity}", highlight=False)
    table = Table(title="searched parameters")
    for col in ("level", "model", "ranges"):
        table.add_column(col)
    for lv in ("top", "mid", "bottom"):
        table.add_row(lv, cfg.models[lv], ", ".join(f"{k} in [{a:g}, {b:g}]" for k, (a, b) in cfg.ranges[lv].items()))
    console.print(table)
    console.print(f"{'RandWire' if cfg.strategy == 'randwire' else 'mid-range'} generator {gen.key()}: {prof}; one step {step * 1e3:.0f} ms here; estimated "
                  f"{seconds / 60 / max(1, workers):.1f} min with {workers} worker(s)", highlight=False)


def _export_front(result, path: str) -> None:
    front = sorted(result.pareto_front(), key=lambda e: e.scores.get("params", 0))
    data = [{"step": e.step, "key": e.key, "generator": e.arch, "scores": e.scores} for e in front]
    Path(path).write_text(json.dumps(data, indent=1))
    console.print(f"wrote {len(data)} generators of the Pareto front to {path}")


def _load_nago(store: str, name: str) -> list:
    results = load_stored_search(store, name)
    for r in results:
        if r.config.get("objectives") != {"accuracy": "max", "params": "min"} or "models" not in r.config:
            raise fail(f"search {name!r} is not a NAGO search (kind nago); see 'normlab search show {name}'")
    return results


@nago_app.command("report")
def report(names: List[str] = typer.Argument(..., help="NAGO searches to compare (e.g. a TPE run, its random "
                                                       "and randwire baselines)"),
           out: str = typer.Option(..., "--out", help="folder for report.html, report.md and the figures"),
           store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
           margin: float = typer.Option(1.0, help="equivalence margin in accuracy points for the claims "
                                        "'BO beats random search / RandWire' (shared rule, see normlab report)")) -> None:
    """HTML report: Pareto fronts, best-so-far curves (BO vs random vs RandWire), the best
    generator's graphs at the three levels, a table of the best generators, and the strategies'
    claims decided under the shared rule."""
    from .runs import check_margin

    margin = check_margin(margin)
    results = [r for name in names for r in _load_nago(store, name)]
    folder = check_out_dir(out, "--out")
    _need_extras()
    from ..nago.report import best_table, strategy_claims, write_report

    page = write_report(results, folder, margin=margin)
    table = Table(title="the best generators")
    for col in ("generator", "search", "accuracy (mean ± std)", "params"):
        table.add_column(col)
    for row in best_table(results, top=5).rows:
        table.add_row(row[0], row[1], row[3], row[5])
    console.print(table)
    for line in strategy_claims(results, margin=margin):
        console.print(f"- {line}", highlight=False)
    console.print(f"wrote {page}", highlight=False)


@nago_app.command("show")
def show(name: str = typer.Argument("nago-quick", help="the search's name"),
         store: str = typer.Option(DEFAULT_STORE, help="SQLite results store"),
         export: Optional[str] = typer.Option(None, help="write the Pareto front's generators as JSON here"),
         draw: Optional[str] = typer.Option(None, help="draw the best generator's graphs (PNG) here"),
         export_model: Optional[str] = typer.Option(None, "--export-model", help="write a network of the most "
                                                    "accurate generator as a create_model config (JSON) here"),
         seed: int = typer.Option(0, help="the network seed of --export-model")) -> None:
    """The Pareto front of a NAGO search: generators, accuracy (mean ± std over samples), size."""
    results = _load_nago(store, name)
    for r in results:
        console.print(f"[bold]{r.name}[/] ({r.strategy}, seed {r.config.get('seed')}): {len(r.history)} "
                      f"generators evaluated, {sum(not e.ok for e in r.history)} failed; dataset "
                      f"{r.config.get('dataset')}, norm {r.config.get('norm')}", highlight=False)
        console.print(_front_table(r, "Pareto front"))
    if export:
        check_out_file(export, "--export")
        _export_front(results[-1], export)
    if export_model:
        check_out_file(export_model, "--export-model")
        if seed < 0:
            raise fail(f"--seed {seed} is invalid: expected an integer >= 0")
        ok = [e for e in results[-1].ok if "accuracy" in e.scores]
        if not ok:
            raise fail(f"search {name!r} has no successful evaluation to export")
        _write_model(max(ok, key=lambda e: e.scores["accuracy"]).arch, seed, export_model)
    if draw:
        check_out_file(draw, "--draw")
        _need_extras()
        from ..nago.draw import draw_generator
        from ..nago.generator import GeneratorParams

        best = max(results[-1].pareto_front() or [None], key=lambda e: e.scores["accuracy"] if e else 0)
        if best is None:
            raise fail(f"search {name!r} has no successful evaluation to draw")
        path = draw_generator(GeneratorParams.from_dict(best.arch), draw, seed=0)
        console.print(f"drew {best.key} to {path}")


def _write_model(generator: dict, seed: int, path: str) -> None:
    Path(path).write_text(json.dumps({"model": "nago", "generator": generator, "seed": seed}, indent=1))
    console.print(f"wrote the network (seed {seed}) to {path}: create_model({path!r}) or "
                  f"'normlab bench --model {path}'", highlight=False)


@nago_app.command("retrain")
def retrain_cmd(name: str = typer.Argument(..., help="the NAGO search whose best generators to retrain"),
                top: int = typer.Option(3, help="how many of the best generators"),
                seeds: int = typer.Option(1, help="networks (seeds 0, 1, ...) per generator, runs per anchor"),
                steps: Optional[int] = typer.Option(None, help="training steps (default: the search's x5)"),
                anchors: str = typer.Option("resnet20,mobilenetv2", help="anchor models, width-matched in params"),
                workers: int = typer.Option(1, help="parallel trainings (a process pool unless --backend ray)"),
                backend: str = typer.Option("serial", help="serial | process | ray"),
                threads: Optional[int] = typer.Option(None, help="torch threads for a serial run"),
                store: str = typer.Option(DEFAULT_STORE, help="SQLite results store")) -> None:
    """Retrain the best generators' networks longer next to anchor models of similar size (stored
    trials: re-running resumes)."""
    from ..models import available_models

    check_run(backend=backend, workers=workers)
    if threads is not None and threads < 1:
        raise fail(f"--threads {threads} is invalid: expected a positive integer")
    results = _load_nago(store, name)
    result = results[-1]
    models = [a.strip() for a in anchors.split(",") if a.strip()]
    bad = [a for a in models if a not in available_models() or a == "nago"]
    if bad:
        raise fail(f"unknown anchor model {bad[0]!r}; known models: "
                   f"{', '.join(m for m in available_models() if m != 'nago')}")
    for flag, v in (("--top", top), ("--seeds", seeds), ("--steps", steps if steps is not None else 1)):
        if v < 1:
            raise fail(f"{flag} {v} is invalid: expected a positive integer")
    _need_extras()
    if steps is None:
        base = result.config.get("train", {}).get("steps")
        steps = 5 * int(base) if base else None
    executor = open_executor(backend, workers, threads=threads)
    from ..nago.finalists import retrain

    db = open_store(store, readonly=False)
    try:
        with console.status(f"retraining the {top} best generators of '{name}' and {', '.join(models)}..."):
            with guarded("finished trainings are stored; run the same command to resume"):
                rows = retrain(result, top=top, seeds=seeds, steps=steps, anchors=models, store=db,
                               executor=executor)
    finally:
        executor.close()
        db.close()
    table = Table(title=f"'{name}': the best generators retrained ({steps or 'the search' + chr(39) + 's'} steps) "
                        f"vs anchors")
    for col in ("model", "width", "params", "seed", "accuracy", "search accuracy"):
        table.add_column(col)
    for r in rows:
        sa = r["search_accuracy"]
        table.add_row(r["model"], f"{r['width']:g}", f"{r['params'] / 1e3:.1f}k", str(r["seed"]),
                      f"{r['accuracy']:.4f}" if r["status"] == "ok" else r["status"],
                      f"{sa:.4f}" if sa is not None else "")
    console.print(table)


@nago_app.command("sample")
def sample_cmd(generator: str = typer.Argument(..., help="generator JSON file (from 'nago show --export' "
                                                        "or GeneratorParams.to_json) or inline JSON"),
               seed: int = typer.Option(0, help="network seed: the same seed gives the same network"),
               norm: str = typer.Option("bn", help="norm spec in every node"),
               dataset: str = typer.Option("mnist5k", help="sets input channels, classes and image size"),
               index: int = typer.Option(0, help="which generator of an exported list"),
               export_model: Optional[str] = typer.Option(
                   None, "--export-model", help="write this network as a create_model config (JSON) for "
                                                "'normlab bench --model'")) -> None:
    """Build one network from a generator and summarise it (graphs, params, FLOPs)."""
    _need_extras()
    from ..data import DataError, check_dataset
    from ..layers import NormSpecError, canonical_spec
    from ..models import profile
    from ..nago.generator import GeneratorError, GeneratorParams, sample

    text = generator
    if not generator.lstrip().startswith(("{", "[")):
        try:
            text = Path(generator).read_text(encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot read generator {generator}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise fail(f"cannot read generator {generator}: it is not UTF-8 text") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(f"generator {generator[:60]} is not valid JSON ({exc.msg})") from None
    if isinstance(data, list):
        if not 0 <= index < len(data):
            raise fail(f"--index {index} is out of range: the file holds {len(data)} generators")
        data = data[index]
    if isinstance(data, dict) and "generator" in data:
        data = data["generator"]
    try:
        params = GeneratorParams.from_dict(data)
        norm = canonical_spec(norm)
        info = check_dataset(dataset)
        if seed < 0:
            raise GeneratorError(f"--seed {seed} is invalid: expected an integer >= 0")
    except (GeneratorError, NormSpecError, DataError) as exc:
        raise fail(str(exc)) from None
    if export_model:
        check_out_file(export_model, "--export-model")
    net = sample(params, seed, norm=norm, in_channels=info.in_channels, num_classes=info.num_classes)
    prof = profile(net, (1, info.in_channels, *info.image_size))
    console.print(f"{params.key()} seed {seed}, norm {norm}: {prof}", highlight=False)
    if export_model:
        _write_model(params.to_dict(), seed, export_model)
    for s, g in enumerate(net.graphs):
        ops = sum(len(nodes) for cell in g["cells"] for nodes in [cell["nodes"]]) * params.bottom.n
        console.print(f"  stage {s + 1}: {params.top.n} cells, top edges {g['edges']}; {ops} operations",
                      highlight=False)
