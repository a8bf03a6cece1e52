"""Searching paths through normlab.search, the correlation evidence, and ABS shrinking.

Every evaluate function here is a module-level frozen dataclass (picklable: it runs on the
process pool or Ray), holding the path of a supernet checkpoint rather than the supernet; each
worker loads a checkpoint once and keeps it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .report import correlation_verdict
from .scores import angle, bn_scores, bn_table, rebn_accuracy, synflow
from .space import PathSpace
from .supernet import NasError, SpaceConfig, Supernet, build_supernet
from .train import (TrainConfig, checkpoint_lock, load_supernet, read_checkpoint,
                    train_standalone, train_supernet)

__all__ = ["SCORERS", "SupernetScorer", "Standalone", "FlopsLimit", "search_paths", "correlate", "correlations",
           "abs_shrink", "op_angle_scores", "checkpoint_tag"]

SCORERS = ("rebn", "bn", "angle")
_CACHE: dict[tuple[str, float], tuple[Supernet, dict[str, Any], np.ndarray]] = {}


def checkpoint_tag(checkpoint: str | Path) -> str:
    """A short hash of what a checkpoint's scores depend on (its settings, epoch, and the trained
    and initial weights), so searches scored by different supernets differ, and two copies of one
    supernet (say, trained at once by two runs) share their search; the training history's
    timings, which differ between such copies, are left out."""
    state = _load(str(checkpoint))[1]
    h = hashlib.sha256(json.dumps([state["space"], state["train"], state["epoch"]], sort_keys=True).encode())
    for part in ("model", "init"):
        for name, tensor in sorted((state.get(part) or {}).items()):
            h.update(f"{part}.{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


def _load(checkpoint: str) -> tuple[Supernet, dict[str, Any], np.ndarray]:
    p = Path(checkpoint)
    if not p.is_file():
        raise NasError(f"supernet checkpoint {checkpoint} does not exist: train one first ('normlab nas train')")
    key = (str(p.resolve()), p.stat().st_mtime)
    if key not in _CACHE:
        state = read_checkpoint(p)
        try:
            net = load_supernet(state)
        except (RuntimeError, KeyError, TypeError) as exc:
            raise NasError(f"{p} does not fit its own space settings ({str(exc).splitlines()[0][:120]}): "
                           f"train it again with 'normlab nas train'") from None
        while len(_CACHE) >= 4:                        # a few supernets at once (NB201: SPOS and BN-only)
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (net, state, bn_table(net))
    return _CACHE[key]


@dataclass(frozen=True)
class SupernetScorer:
    """evaluate(path) for the search: ``kind`` rebn (SPOS), bn (BN indicator) or angle (ABS);
    returns the score and the path's analytic FLOPs and parameters."""

    checkpoint: str
    kind: str = "rebn"
    calib: int = 256
    fixed_depth: bool = False

    def __post_init__(self) -> None:
        if self.kind not in SCORERS:
            raise NasError(f"scorer {self.kind!r} is invalid: expected one of {', '.join(SCORERS)}")

    def __call__(self, path: Sequence[int]) -> dict[str, float]:
        net, state, table = _load(self.checkpoint)
        path = net.check_path(path)
        if self.kind == "bn":
            score = float(bn_scores(table, [path], self.fixed_depth)[0])
        elif self.kind == "angle":
            score = angle(state["init"], state["model"], net, path)
        else:
            cfg = TrainConfig.from_dict(state["train"])
            split = cfg.split()
            score = rebn_accuracy(net, path, split.train_x[:self.calib], split.val_x, split.val_y)
        return {"score": score, "flops": float(net.flops(path)), "params": float(net.params(path))}


@dataclass(frozen=True)
class FlopsLimit:
    """constraint(path): analytic FLOPs and parameters within limits (checked before scoring)."""

    space: SpaceConfig
    max_flops: float | None = None
    max_params: float | None = None

    def __call__(self, path: Sequence[int]) -> bool:
        net = _shape_net(self.space)
        return ((self.max_flops is None or net.flops(path) <= self.max_flops)
                and (self.max_params is None or net.params(path) <= self.max_params))


_SHAPES: dict[SpaceConfig, Supernet] = {}


def _shape_net(space: SpaceConfig) -> Supernet:
    if space not in _SHAPES:
        _SHAPES[space] = build_supernet(space)
    return _SHAPES[space]


@dataclass(frozen=True)
class Standalone:
    """evaluate(path) = train the path from scratch (the ground truth): test accuracy as
    ``score``, plus validation accuracy, FLOPs, params and seconds."""

    space: SpaceConfig
    train: TrainConfig

    def __call__(self, path: Sequence[int]) -> dict[str, float]:
        if torch.get_num_threads() > 1 and _worker():
            torch.set_num_threads(1)
        out = train_standalone(self.space, path, self.train)
        net = _shape_net(self.space)
        return {"score": out["test_acc"], "val_acc": out["val_acc"], "seconds": out["seconds"],
                "flops": float(net.flops(path)), "params": float(net.params(path))}


def _worker() -> bool:
    import multiprocessing

    return multiprocessing.current_process().name != "MainProcess"


def search_paths(checkpoint: str | Path, *, scorer: str = "rebn", budget: int = 100, population: int = 20,
                 sample_size: int = 5, crossover: float = 0.0, rate: float = 0.1, seed: int = 0,
                 allowed: Sequence[Sequence[int]] | None = None, max_flops: float | None = None,
                 max_params: float | None = None, fixed_depth: bool = False, store: Any = None,
                 name: str | None = None, executor: Any = None, progress: bool | None = None,
                 timeout: float | None = None) -> Any:
    """SPOS's evolutionary search over paths (normlab.search.evolution) scored by ``scorer``;
    FLOPs/params limits are checked before scoring; with a store, evaluations persist and a rerun
    resumes. ``allowed`` restricts each layer's ops (a shrunk space)."""
    from ..search import evolution

    net, state, _ = _load(str(checkpoint))
    space_cfg = net.cfg
    space = PathSpace(tuple(tuple(a) for a in (allowed or [range(n) for n in net.num_ops])), rate=rate,
                      tag=f"{scorer}{'-fixed-depth' if fixed_depth else ''}@{checkpoint_tag(checkpoint)}",
                      space=json.dumps(space_cfg.to_dict(), sort_keys=True))
    constraint = FlopsLimit(space_cfg, max_flops, max_params) if (max_flops or max_params) else None
    evaluate = SupernetScorer(str(checkpoint), scorer, fixed_depth=fixed_depth)
    return evolution(space, evaluate, budget=budget, population=population, sample_size=sample_size,
                     crossover=crossover, seed=seed, constraint=constraint, store=store,
                     name=name or f"nas-{scorer}-s{seed}", executor=executor, progress=progress,
                     timeout=timeout)


# -- the evidence ------------------------------------------------------------------------------

def correlate(space: SpaceConfig, *, standalone: TrainConfig, spos: TrainConfig, bn: TrainConfig,
              n: int = 30, seed: int = 0, out_dir: str | Path, store: Any = None, name: str = "nas-correlate",
              executor: Any = None, calib: int = 256, bootstrap: int = 1000, progress: bool | None = None,
              repeats: int = 1, log: Any = None) -> dict[str, Any]:
    """Rank correlation of every proxy with stand-alone accuracy, on ``n`` sampled paths.

    The ground truth (``n`` paths trained from scratch) runs as a normlab.search random search
    (stored, resumable, on ``executor``); with ``repeats`` > 1 every path is trained again with
    the next seeds (stored trials too), the ground truth is the mean, and Kendall's tau between
    the first two trainings is reported as the *noise ceiling*: no proxy can be judged to rank
    better than the ground truth agrees with itself. The SPOS and BN-only supernets are trained
    with epoch checkpoints in ``out_dir`` (resumable) and per-epoch snapshots; then each proxy
    scores the same paths, timed. Returns the report (also written to ``out_dir/report.json``).
    (The NB201 cell supernet's study against the table: :mod:`normlab.nas.nb201.oneshot`.)"""
    import json

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise NasError(f"repeats={repeats!r} is invalid: expected a positive integer")
    say = log or (lambda *a: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say(f"ground truth: {n} paths trained from scratch ({standalone.epochs} epochs each, {repeats} seed(s))")
    paths, runs, ceiling = _standalone_truth(space, standalone, n=n, seed=seed, repeats=repeats, store=store,
                                             name=name, executor=executor, progress=progress, bootstrap=bootstrap)
    acc = np.nanmean(np.stack(runs), axis=0)
    say(f"supernets: SPOS {spos.epochs} epochs, BN-only {bn.epochs} epochs")
    s_state = train_supernet(space, spos, checkpoint=out / "spos.pt", snapshots=True)
    b_state = train_supernet(space, bn, checkpoint=out / "bn.pt", snapshots=True)
    t_spos, t_bn = (sum(h["seconds"] for h in st["history"]) for st in (s_state, b_state))   # also when resumed
    s_net, b_net = load_supernet(s_state), load_supernet(b_state)
    split = spos.split()
    proxies, seconds = _proxy_scores(paths, space, s_state, s_net, b_net, split, calib)
    early = _early_stage_taus(paths, acc, s_state, b_state, s_net, b_net, split, calib)
    report = {"n": len(paths), "paths": [list(p) for p in paths], "standalone_acc": acc.tolist(),
              "proxies": {k: v.tolist() for k, v in proxies.items()},
              "correlation": correlations(proxies, acc, bootstrap=bootstrap, seed=seed),
              "seconds_per_subnet": seconds, "bn_indicator_subnets_per_second": _bn_rate(bn_table(b_net), s_net.num_ops, seed),
              "supernet_seconds": {"spos": t_spos, "bn": t_bn},
              "supernet_epochs": {"spos": spos.epochs, "bn": bn.epochs}, "early_stage_tau": early,
              "repeats": repeats, "standalone_runs": [r.tolist() for r in runs], "noise_ceiling": ceiling}
    report["verdict_seed"] = seed
    report["verdict"] = correlation_verdict(report, seed=seed)         # the shared rule (report.stats)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _standalone_truth(space: SpaceConfig, standalone: TrainConfig, *, n: int, seed: int, repeats: int, store: Any,
                      name: str, executor: Any, progress: bool | None, bootstrap: int):
    """The ground truth: ``n`` random paths trained from scratch (a stored random search), each
    again with the next ``repeats - 1`` seeds; returns the paths, one accuracy array per seed and
    the noise ceiling (the first two seeds' rank agreement), or None with one seed."""
    from dataclasses import replace

    from ..search import random_search, rank_correlation

    full = PathSpace.full(Supernet(space).num_ops)
    truth = random_search(full, Standalone(space, standalone), budget=n, seed=seed, store=store,
                          name=f"{name}/standalone", executor=executor, progress=progress)
    ok = [e for e in truth.history if e.ok]
    paths = [tuple(e.arch) for e in ok]
    runs = [np.array([e.scores["score"] for e in ok])]
    for r in range(1, repeats):
        rows = retrain(space, paths, replace(standalone, seed=standalone.seed + r), store=store,
                       name=f"{name}/standalone-seed{standalone.seed + r}", executor=executor)
        runs.append(np.array([row.get("score", np.nan) if row["status"] == "ok" else np.nan for row in rows]))
    ceiling = None
    if repeats > 1:
        both = ~(np.isnan(runs[0]) | np.isnan(runs[1]))
        try:
            ceiling = rank_correlation(runs[1][both], runs[0][both], bootstrap=bootstrap, seed=seed).to_dict()
        except ValueError as exc:                        # e.g. every path scored the same
            ceiling = {"error": str(exc)}
    return paths, runs, ceiling


def _proxy_scores(paths: Sequence[tuple[int, ...]], space: SpaceConfig, s_state: Mapping[str, Any], s_net: Supernet,
                  b_net: Supernet, split: Any, calib: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every proxy's score of every path, and the mean seconds each took per path."""
    proxies: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}

    def timed(label: str, fn) -> None:
        t = time.time()
        proxies[label] = np.array([fn(p) for p in paths], dtype=float)
        seconds[label] = (time.time() - t) / max(1, len(paths))

    table = bn_table(b_net)
    timed("bn_indicator", lambda p: float(bn_scores(table, [p])[0]))
    timed("rebn_acc", lambda p: rebn_accuracy(s_net, p, split.train_x[:calib], split.val_x, split.val_y))
    timed("abs_angle", lambda p: angle(s_state["init"], s_state["model"], s_net, p))
    timed("params", lambda p: float(s_net.params(p)))
    timed("flops", lambda p: float(s_net.flops(p)))
    init_net = load_supernet(s_state, "init")
    shape = (space.in_channels, space.image_size, space.image_size)
    timed("synflow", lambda p: math.log(max(synflow(init_net.subnet(p), shape), 1e-300)))
    return proxies, seconds


def correlations(proxies: Mapping[str, Any], truth: Any, *, bootstrap: int, seed: int,
                 keep: Any = None) -> dict[str, Any]:
    """Kendall tau and Spearman rho (bootstrap intervals) of each proxy with the truth, over the
    entries ``keep`` selects (all by default) where the proxy is finite; an error entry where
    they cannot be computed (e.g. a constant proxy)."""
    from ..search import rank_correlation

    truth = np.asarray(truth, float)
    keep = np.ones(len(truth), bool) if keep is None else np.asarray(keep, bool)
    out: dict[str, Any] = {}
    for label, vals in proxies.items():
        vals = np.asarray(vals, float)
        ok = keep & np.isfinite(vals)
        try:
            out[label] = rank_correlation(vals[ok], truth[ok], bootstrap=bootstrap, seed=seed).to_dict()
        except ValueError as exc:
            out[label] = {"error": str(exc)}
    return out


def _early_stage_taus(paths: Sequence[tuple[int, ...]], acc: np.ndarray, s_state: Mapping[str, Any],
                      b_state: Mapping[str, Any], s_net: Supernet, b_net: Supernet, split: Any,
                      calib: int) -> dict[str, list[float]]:
    """The early-stage claim: tau of each one-shot scorer after every supernet epoch (snapshots);
    leaves the two nets at their last snapshot."""
    from scipy.stats import kendalltau

    early: dict[str, list[float]] = {"bn_indicator": [], "rebn_acc": [], "abs_angle": []}
    for snap in b_state["snapshots"]:
        b_net.load_state_dict(snap)
        early["bn_indicator"].append(float(kendalltau(bn_scores(bn_table(b_net), paths), acc)[0]))
    for snap in s_state["snapshots"]:
        s_net.load_state_dict(snap)
        early["rebn_acc"].append(float(kendalltau([rebn_accuracy(s_net, p, split.train_x[:calib], split.val_x,
                                                                 split.val_y) for p in paths], acc)[0]))
        early["abs_angle"].append(float(kendalltau([angle(s_state["init"], snap, s_net, p) for p in paths], acc)[0]))
    return early


def _bn_rate(table: np.ndarray, num_ops: Sequence[int], seed: int) -> float:
    """Scoring throughput of the BN indicator, vectorised over 100,000 random paths (per second)."""
    rng = np.random.default_rng(seed)
    many = np.stack([rng.integers(0, k, 100_000) for k in num_ops], axis=1)
    t = time.time()
    bn_scores(table, many)
    return len(many) / max(time.time() - t, 1e-9)


# -- ABS ---------------------------------------------------------------------------------------

def op_angle_scores(net: Supernet, state: Mapping[str, Any], allowed: Sequence[Sequence[int]],
                    children: int, rng: random.Random) -> list[dict[int, float]]:
    """ABS operator scores: per layer and allowed op, the mean angle of up to ``children`` legal
    child models (sampled from ``allowed``) that contain it."""
    out = []
    for layer, ops in enumerate(allowed):
        scores = {}
        for op in ops:
            thetas = []
            for _ in range(children):
                path = [a[rng.randrange(len(a))] for a in allowed]
                path[layer] = op
                thetas.append(angle(state["init"], state["model"], net, path))
            scores[op] = float(np.mean(thetas))
        out.append(scores)
    return out


def abs_shrink(space: SpaceConfig, cfg: TrainConfig, *, first_epochs: int, stage_epochs: int,
               drop: int = 2, target: int = 1000, children: int = 10, max_stages: int = 10,
               checkpoint: str | Path | None = None, seed: int = 0,
               on_epoch: Any = None) -> dict[str, Any]:
    """Angle-based search-space shrinking (Hu et al. 2020): train the supernet ``first_epochs``
    over the whole space, then repeat: score every allowed operator by angle, drop the ``drop``
    lowest-scoring ones across all layers (each layer keeps at least one), train ``stage_epochs``
    more over the shrunk space, until it has at most ``target`` paths. All stages share one
    cosine learning-rate schedule. Returns the allowed op lists, every stage's operator lists and
    scores, and the final checkpoint dict.

    With ``checkpoint``, the stages so far (operator lists, scores, the sampling state) are
    saved with every epoch's checkpoint, so a run killed at any point resumes where it stopped
    and ends exactly as an uninterrupted run would."""
    if drop < 1 or children < 1 or target < 1:
        raise NasError(f"drop={drop}, children={children}, target={target}: expected positive integers")
    with checkpoint_lock(checkpoint):                  # two runs shrinking into one file take turns
        return _abs_shrink(space, cfg, first_epochs=first_epochs, stage_epochs=stage_epochs, drop=drop,
                           target=target, children=children, max_stages=max_stages, checkpoint=checkpoint,
                           seed=seed, on_epoch=on_epoch)


def _abs_shrink(space: SpaceConfig, cfg: TrainConfig, *, first_epochs: int, stage_epochs: int, drop: int,
                target: int, children: int, max_stages: int, checkpoint: str | Path | None, seed: int,
                on_epoch: Any) -> dict[str, Any]:
    settings = {"first_epochs": first_epochs, "stage_epochs": stage_epochs, "drop": drop, "target": target,
                "children": children, "max_stages": max_stages, "seed": seed}
    torch.manual_seed(cfg.seed)
    net = build_supernet(space)
    allowed = [list(range(n)) for n in net.num_ops]
    total = first_epochs + stage_epochs * max_stages
    rng = random.Random(seed)
    stages: list[dict[str, Any]] = []
    saved = None
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        saved = read_checkpoint(path)
        if saved.get("space") != space.to_dict() or saved.get("train") != cfg.to_dict() \
                or saved.get("abs", {}).get("settings", settings) != settings:
            raise NasError(f"checkpoint {path} was written for other settings: remove it or use another path")
    if saved is not None and "abs" in saved:              # resume inside the stage loop
        progress = saved["abs"]
        allowed, stages = [list(a) for a in progress["allowed"]], list(progress["stages"])
        rng.setstate(_rng_state(progress["rng"]))
        state = train_supernet(space, cfg, checkpoint=checkpoint, allowed=allowed,
                               epochs=max(0, progress["until"] - saved["epoch"]), total_epochs=total, net=net,
                               resume=saved, on_epoch=on_epoch)
    else:
        state = train_supernet(space, cfg, checkpoint=checkpoint, epochs=first_epochs - (saved or {}).get("epoch", 0),
                               total_epochs=total, net=net, resume=saved, on_epoch=on_epoch)
    while True:
        stage = len(stages)
        size = math.prod(len(a) for a in allowed)
        scores = op_angle_scores(net, state, allowed, children, rng)
        stages.append({"stage": stage, "epoch": state["epoch"], "size": size,
                       "allowed": [list(a) for a in allowed],
                       "scores": [{str(k): v for k, v in s.items()} for s in scores]})
        if size <= target or stage == max_stages:
            break
        dropped = drop_lowest(allowed, [(v, layer, op) for layer, s in enumerate(scores) for op, v in s.items()],
                              drop)
        if dropped == 0:
            break
        # what the next epochs' checkpoints carry, so that a kill during this stage resumes it
        state["abs"] = {"settings": settings, "allowed": [list(a) for a in allowed], "stages": stages,
                        "rng": _rng_json(rng.getstate()), "until": state["epoch"] + stage_epochs}
        state = train_supernet(space, cfg, checkpoint=checkpoint, allowed=allowed, epochs=stage_epochs,
                               total_epochs=total, net=net, resume=state, on_epoch=on_epoch)
    return {"allowed": allowed, "stages": stages, "size": math.prod(len(a) for a in allowed), "state": state}


def drop_lowest(allowed: list[list[int]], scored: Sequence[tuple[float, int, int]], drop: int) -> int:
    """ABS's shrinking rule, for the MBConv stages and the NB201 edges alike: drop the ``drop``
    lowest-scoring ``(score, slot, op)`` entries from ``allowed`` (in place), each slot keeping at
    least one op; returns how many were dropped."""
    dropped = 0
    for _, slot, op in sorted(scored):
        if dropped >= drop:
            break
        if len(allowed[slot]) > 1:
            allowed[slot].remove(op)
            dropped += 1
    return dropped


def _rng_json(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _rng_state(saved: Sequence) -> tuple:
    return (saved[0], tuple(saved[1]), saved[2])


# -- retraining the winners ----------------------------------------------------------------------

def top_paths(result: Any, k: int) -> list[tuple[int, ...]]:
    """The ``k`` best distinct paths of a stored or finished search (by its only objective)."""
    (obj, direction), = result.objectives.items()
    ok = [e for e in result.ok if obj in e.scores]
    ok.sort(key=lambda e: (-e.scores[obj] if direction == "max" else e.scores[obj], e.step))
    return [tuple(e.arch) for e in ok[:k]]


def retrain(space: SpaceConfig, paths: Sequence[Sequence[int]], train: TrainConfig, *, store: Any = None,
            name: str = "nas-retrain", executor: Any = None) -> list[dict[str, Any]]:
    """Train each path from scratch (``normlab.train``-style SGD + cosine, test accuracy on the
    held-out test set) as trials of one stored experiment run by the engine's Driver: resumable,
    on any executor, readable with ``normlab search show``. Returns one row per path, in order."""
    from ..runtime import Driver, Store
    from ..search import EvaluateTrial

    if not paths:
        raise NasError("nothing to retrain: the search has no successful path")
    full = PathSpace.full(Supernet(space).num_ops)
    db = store if isinstance(store, Store) else (Store(store) if store else Store.in_memory())
    config = {"strategy": "retrain", "objectives": {"score": "max"}, "space": space.to_dict(),
              "train": train.to_dict()}
    exp = db.experiment(name, "nas", config)
    descs = [{"key": full.key(p), "arch": full.to_json(p)} for p in paths]
    Driver(db, exp, EvaluateTrial(Standalone(space, train), full), executor).run(descs, poll_every=0.5)
    rows = {r["description"]["key"]: r for r in db.rows(experiment_id=exp.id)}
    out = []
    for d in descs:
        r = rows[d["key"]]
        out.append({"path": tuple(d["arch"]), "status": r["status"], "error": r["error"], **r["metrics"]})
    if db is not store:
        db.close()
    return out
