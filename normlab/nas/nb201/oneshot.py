"""One-shot NAS on NAS-Bench-201: the SPOS / BN-NAS supernet over the NB201 cell, its three
scorers (BN indicator, ReBN accuracy, ABS angle) on NB201 cells, and the evidence against the table.

The supernet (:class:`normlab.models.nb201_supernet.NB201Supernet`) shares the sampled cell across
all 3N cells and keeps weights per cell, as NB201's one-shot baselines do. It trains through the
same loop, checkpoints and resume as the MBConv supernet (:func:`normlab.nas.train.train_supernet`):
``mode="full"`` is SPOS (uniform single-path sampling, every weight trained), ``mode="bn"`` is
BN-NAS (convs frozen at their random init, only each op's last norm affine trained).

Scorers of a cell (an NB201 string, scored on the supernet of a checkpoint):

- ``bn``: BN-NAS's indicator, sum over cells and edges of mean|gamma| of the chosen op's last norm.
  ``none``, ``skip_connect`` and ``avg_pool_3x3`` have no norm and score 0, as in BN-NAS's code
  (its indicator table starts at zeros and is filled only from the ops' last-BN weights), so the
  indicator only ever counts convolutions (a bias a later study of BN-only supernets points out).
- ``rebn``: SPOS's accuracy of the cell's stand-alone network with the supernet's weights and its
  norm statistics re-estimated on a fixed calibration batch set, on the validation split.
- ``angle``: ABS's angle between the child model's weights at init and after training, V(W) built
  as ABS does for cells (Algorithm 1: per input-to-output path of each cell its ops' weights, a
  pool as a fixed 1/9 kernel, a skip as nothing, a path through ``none`` dropped; plus stem,
  reduction blocks and tail): :meth:`NB201Supernet.angle_parts`.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ...models.nb201 import EDGES, OPS, parse_arch
from ..supernet import NasError, NB201SupernetConfig
from .space import connected as is_connected

__all__ = ["train_supernet", "score_cells", "SCORERS", "supernet_settings", "RECIPE", "cell_path",
           "path_cell", "OneShotTrial", "oneshot_scores", "correlate_oneshot", "oneshot_plan",
           "shrink_ops", "edge_op_truth", "edge_op_marginals", "abs_drop", "abs_table_md", "ShrunkJudge"]

SCORERS = ("bn", "rebn", "angle", "acc")

#: NB201's training recipe (Dong & Yang 2020, sec. 4): SGD, Nesterov momentum 0.9, weight decay
#: 5e-4, batch 256, cosine from lr 0.1 to 0, 200 epochs, random crop + flip; cifar10-valid trains on
#: half of CIFAR-10's training set and validates on the other half.
RECIPE: dict[str, Any] = {"epochs": 200, "batch_size": 256, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
                          "augment": True, "val_fraction": 0.5}


def cell_path(arch: str | Sequence[str]) -> tuple[int, ...]:
    """An NB201 cell as the supernet's path: its six op indices in edge order."""
    return tuple(OPS.index(o) for o in parse_arch(arch))


def path_cell(path: Sequence[int]) -> str:
    from ...models.nb201 import arch_string

    return arch_string([OPS[int(i)] for i in path])


def _dataset_shape(dataset: str, download: bool = False) -> tuple[int, int, int]:
    """(in_channels, classes, image size) of a dataset, without decoding it when avoidable."""
    from ..pipeline import dataset_info

    info = dataset_info(dataset, download=download)
    return info.in_channels, info.num_classes, info.image_size[0]


def supernet_settings(*, dataset: str, mode: str, C: int, N: int, image_size: int | None, epochs: int,
                      batch_size: int, lr: float, seed: int, limit: int | None = None, norm: str = "bn",
                      download: bool = False, **kw: Any):
    """The (space, training) settings ``train_supernet`` uses: an :class:`NB201SupernetConfig` fitted
    to the dataset's channels and classes, and a :class:`~normlab.nas.train.TrainConfig` (``kw``:
    bn_params, momentum, weight_decay, val_fraction, val_limit, augment)."""
    from ..train import TrainConfig

    cin, classes, size = _dataset_shape(dataset, download)
    size_used = image_size or size
    space = NB201SupernetConfig(C=C, N=N, norm=norm, in_channels=cin, num_classes=classes, image_size=size_used)
    known = {"bn_params", "momentum", "weight_decay", "val_fraction", "val_limit", "augment"}
    bad = sorted(set(kw) - known)
    if bad:
        raise NasError(f"unknown setting {bad[0]!r}: expected one of {', '.join(sorted(known))}")
    cfg = TrainConfig(dataset=dataset, mode=mode, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                      train_limit=limit, image_size=image_size if image_size and image_size != size else None, **kw)
    return space, cfg


def train_supernet(*, dataset: str, mode: str, C: int, N: int, image_size: int | None, epochs: int,
                   batch_size: int, lr: float, seed: int, checkpoint: str | Path, store: Any = None,
                   limit: int | None = None, threads: int | None = None, **kw: Any) -> Path:
    """Train the NB201 supernet (``mode`` "full": SPOS, "bn": BN-NAS) and return its checkpoint.

    Resumable: the checkpoint is written after every epoch (tensors and plain data only) and a
    rerun continues from it (it must have been written with the same settings). ``image_size``
    resizes the data (None: as stored); ``limit`` keeps that many training images; ``threads``
    sets torch's CPU threads. With ``store`` the training is also one stored trial of the
    experiment ``nb201-supernet`` (its final loss, accuracy and seconds; a rerun finds it done).
    Other settings in ``kw``: norm, bn_params, momentum, weight_decay, val_fraction, val_limit,
    augment, device, download, on_epoch."""
    device = kw.pop("device", None)
    on_epoch = kw.pop("on_epoch", None)
    if threads is not None:
        torch.set_num_threads(int(threads))
    space, cfg = supernet_settings(dataset=dataset, mode=mode, C=C, N=N, image_size=image_size, epochs=epochs,
                                   batch_size=batch_size, lr=lr, seed=seed, limit=limit, **kw)
    path = Path(checkpoint)
    if store is None:
        _train(space, cfg, path, device, on_epoch)
        return path
    from ...runtime import Driver, Store

    db = store if isinstance(store, Store) else Store(store)
    try:
        exp = db.experiment("nb201-supernet", "nas", {"strategy": "nb201-supernet", "objectives": {"train_acc": "max"}})
        desc = {"key": f"{path.resolve()}:{_digest(space.to_dict(), cfg.to_dict())}", "space": space.to_dict(),
                "train": cfg.to_dict(), "checkpoint": str(path)}
        driver = Driver(db, exp, SupernetTrial(device=None if device is None else str(device)))
        try:
            driver.run([desc], poll_every=0.2)
        finally:
            driver.close()
        row = next(r for r in db.rows(experiment_id=exp.id) if r["description"]["key"] == desc["key"])
        if row["status"] != "ok":
            raise NasError(f"supernet training failed: {(row['error'] or '?').strip().splitlines()[-1]}")
    finally:
        if db is not store:
            db.close()
    return path


def _digest(*parts: Any) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _train(space: NB201SupernetConfig, cfg: Any, path: Path, device: Any, on_epoch: Any) -> dict[str, Any]:
    from ..train import train_supernet as train

    return train(space, cfg, checkpoint=path, on_epoch=on_epoch, device=device)


@dataclass(frozen=True)
class SupernetTrial:
    """The trial function of one supernet training (runs on any executor; the checkpoint is the
    resumable part, the stored trial records that it finished)."""

    device: str | None = None

    def __call__(self, description: Mapping[str, Any], context: Any = None) -> dict[str, float]:
        from ..train import TrainConfig

        space = NB201SupernetConfig.from_dict(description["space"])
        cfg = TrainConfig.from_dict(description["train"])
        state = _train(space, cfg, Path(description["checkpoint"]), self.device, None)
        last = state["history"][-1] if state["history"] else {"loss": float("nan"), "train_acc": float("nan")}
        return {"train_acc": float(last["train_acc"]), "loss": float(last["loss"]),
                "seconds": float(sum(h["seconds"] for h in state["history"]))}


# -- scoring cells -------------------------------------------------------------------------------

def _loaded(checkpoint: str | Path):
    from ..search import _load
    from ..supernet import NB201Supernet

    net, state, table = _load(str(checkpoint))
    if not isinstance(net, NB201Supernet):
        raise NasError(f"{checkpoint} is not an NB201 supernet checkpoint (it holds the MBConv space): "
                       f"train one with normlab.nas.nb201.oneshot.train_supernet")
    return net, state, table


def _rebn_data(state: Mapping[str, Any], dataset: str | None, limit: int | None, calib: int, seed: int,
               device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The calibration and validation tensors on ``device``, in the one per-process data cache."""
    import json

    from ...runtime.data import cached

    key = ("nb201-rebn", json.dumps(state["train"], sort_keys=True), dataset, limit, calib, seed, str(device))
    return cached(key, lambda: _make_rebn_data(state, dataset, limit, calib, seed, device))


def _make_rebn_data(state: Mapping[str, Any], dataset: str | None, limit: int | None, calib: int, seed: int,
                    device: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Calibration images (``calib`` training images in a seeded order) and the validation split
    (its first ``limit`` images), from the split the supernet was trained on (``dataset`` may name
    another dataset of the same shape)."""
    from dataclasses import replace

    from ..train import TrainConfig

    cfg = TrainConfig.from_dict(state["train"])
    if dataset is not None and dataset != cfg.dataset:
        cfg = replace(cfg, dataset=dataset)
    split = cfg.split()
    order = torch.randperm(len(split.train_y), generator=torch.Generator().manual_seed(seed))[:calib]
    val_x, val_y = split.val_x, split.val_y
    if limit is not None:
        val_x, val_y = val_x[:limit], val_y[:limit]
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return split.train_x[order].to(dev), val_x.to(dev), val_y.to(dev)


_ANGLE_SUMS: dict[tuple, dict[str, tuple[float, float, float]]] = {}


def _angle_sums(checkpoint: str | Path, state: Mapping[str, Any]) -> dict[str, tuple[float, float, float]]:
    """Per state-dict entry of a checkpoint: <W0, Wt>, |W0|^2 and |Wt|^2 in float64, computed once
    (an angle is then a sum over the child's parts, no concatenation)."""
    p = Path(checkpoint)
    key = (str(p.resolve()), p.stat().st_mtime)
    if key not in _ANGLE_SUMS:
        _ANGLE_SUMS.clear()
        sums = {}
        for name, w0 in state["init"].items():
            if not w0.is_floating_point():
                continue
            a, b = w0.double().reshape(-1), state["model"][name].double().reshape(-1)
            sums[name] = (float(a @ b), float(a @ a), float(b @ b))
        _ANGLE_SUMS[key] = sums
    return _ANGLE_SUMS[key]


def fast_angle(sums: Mapping[str, tuple[float, float, float]], net: Any, path: Sequence[int]) -> float:
    """The ABS angle of ``path`` from :func:`_angle_sums` (equal to :func:`normlab.nas.scores.angle`
    up to rounding: the same V(W), its dot product and norms summed part by part)."""
    dot = n0 = nt = 0.0
    for part in net.angle_parts(path):
        if isinstance(part, str):
            d, a, b = sums[part]
        else:                                          # a fixed tensor: the same before and after
            d = a = b = float(part.double().pow(2).sum())
        dot, n0, nt = dot + d, n0 + a, nt + b
    return math.acos(max(-1.0, min(1.0, dot / math.sqrt(n0 * nt))))


def score_cells(checkpoint: str | Path, archs: Sequence[str], scorer: str, *, dataset: str | None = None,
                limit: int | None = None, seed: int = 0, **kw: Any) -> list[float]:
    """Each cell's score on the supernet of ``checkpoint``: ``scorer`` "bn" (BN indicator; use a
    BN-only supernet), "rebn" (ReBN accuracy, a fraction; ``limit`` validation images, ``calib``
    calibration images from a ``seed``-ed order, ``device``) or "angle" (ABS angle, radians).
    ``dataset`` (default: the one the supernet trained on) is where ReBN's images come from;
    "acc" is the accuracy with the supernet's own norm statistics (no recalibration: ABS's
    "without ReBN")."""
    from ..scores import bn_scores, rebn_accuracy

    if scorer not in SCORERS:
        raise NasError(f"scorer {scorer!r} is invalid: expected one of {', '.join(SCORERS)}")
    bad = sorted(set(kw) - {"calib", "device", "batch_size"})
    if bad:
        raise NasError(f"unknown setting {bad[0]!r}: expected calib, device or batch_size")
    net, state, table = _loaded(checkpoint)
    paths = [cell_path(a) for a in archs]
    if scorer == "bn":
        return [float(v) for v in bn_scores(table, paths)] if paths else []
    if scorer == "angle":
        return [fast_angle(_angle_sums(checkpoint, state), net, p) for p in paths]
    device = kw.get("device")
    calib_x, val_x, val_y = _rebn_data(state, dataset, limit, int(kw.get("calib", 256)), seed, device)
    if device is not None:
        net.to(device)
    try:
        if scorer == "acc":
            from ..scores import evaluate_accuracy

            return [evaluate_accuracy(net.subnet(p), val_x, val_y) for p in paths]
        return [rebn_accuracy(net, p, calib_x, val_x, val_y, batch_size=int(kw.get("batch_size", 64))) for p in paths]
    finally:
        net.to("cpu")


# -- the evidence against the table (the GPU command) --------------------------------------------

#: ABS's NB201 CIFAR-10 numbers (Hu et al. 2020): Kendall tau of the angle and of ReBN accuracy
#: with the ground truth, and of accuracy without re-estimated BN statistics
PUBLISHED = {"abs_angle": 0.575, "rebn_acc": 0.54, "acc_no_rebn": 0.04}
TABLE_DATASET = {"cifar10": "cifar10-valid", "cifar100": "cifar100"}
LABELS = {"bn_indicator": "BN indicator", "rebn_acc": "ReBN accuracy", "abs_angle": "ABS angle"}
SHOWN = {**LABELS, "acc_no_rebn": "accuracy without ReBN", "params": "#params", "flops": "FLOPs"}


@dataclass(frozen=True)
class OneShotTrial:
    """evaluate(arch) -> the three one-shot scores of a cell plus #params and FLOPs, and the seconds
    each took (a stored trial: runs on any executor, a rerun skips the cells already scored)."""

    spos: str
    bn: str
    val_limit: int | None = None
    calib: int = 256
    seed: int = 0
    device: str | None = None

    def __call__(self, arch: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, ck, scorer, kw in (("bn_indicator", self.bn, "bn", {}), ("abs_angle", self.spos, "angle", {}),
                                    ("rebn_acc", self.spos, "rebn", {"calib": self.calib, "device": self.device}),
                                    ("acc_no_rebn", self.spos, "acc", {"calib": self.calib, "device": self.device})):
            t = time.perf_counter()
            out[key] = score_cells(ck, [arch], scorer, limit=self.val_limit, seed=self.seed, **kw)[0]
            out[f"seconds_{key}"] = time.perf_counter() - t
        net = _loaded(self.spos)[0]
        path = cell_path(arch)
        out["params"], out["flops"] = float(net.params(path)), float(net.flops(path))
        return out


def oneshot_scores(archs: Sequence[str], trial: OneShotTrial, *, store: Any = None, name: str,
                   executor: Any = None, on_result: Callable[[Any], None] | None = None
                   ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every cell scored by ``trial`` as trials of one stored experiment (resumable)."""
    from ...runtime import Driver, Store
    from ...search import EvaluateTrial
    from ..search import checkpoint_tag
    from .space import NB201Space

    db = store if isinstance(store, Store) else (Store(store) if store else Store.in_memory())
    config = {"strategy": "nb201-oneshot", "objectives": {"rebn_acc": "max"}, "spos": checkpoint_tag(trial.spos),
              "bn": checkpoint_tag(trial.bn), "val_limit": trial.val_limit, "calib": trial.calib, "seed": trial.seed}
    try:
        exp = db.experiment(name, "nas", config)
        driver = Driver(db, exp, EvaluateTrial(trial, NB201Space()), executor)
        try:
            driver.run([{"key": a, "arch": a} for a in archs], poll_every=0.2, on_result=on_result)
        finally:
            driver.close()
        rows = {r["description"]["key"]: r for r in db.rows(experiment_id=exp.id)}
    finally:
        if db is not store:
            db.close()
    failed = [a for a in archs if rows[a]["status"] != "ok"]
    if failed:
        err = (rows[failed[0]]["error"] or "?").strip().splitlines()
        raise NasError(f"{len(failed)} cells failed to score (run again to retry them); first {failed[0]}: {err[-1]}")
    keys = ("bn_indicator", "rebn_acc", "abs_angle", "acc_no_rebn", "params", "flops")
    scores = {k: np.array([rows[a]["metrics"][k] for a in archs], dtype=float) for k in keys}
    seconds = {k: float(np.mean([rows[a]["metrics"][f"seconds_{k}"] for a in archs])) for k in keys[:4]}
    return scores, seconds


def _correlations(scores: Mapping[str, np.ndarray], truth: np.ndarray, keep: np.ndarray, bootstrap: int,
                  seed: int) -> dict[str, Any]:
    from ..search import correlations

    return correlations(scores, truth, bootstrap=bootstrap, seed=seed, keep=keep)


def oneshot_verdict(report: Mapping[str, Any], *, bootstrap: int = 1000, seed: int = 0) -> str:
    """The three papers' ranking claims on NB201, decided as one family under the shared rule
    (normlab.report.stats; margin 0.1 in Kendall tau, Holm-adjusted), judged on the connected
    cells: each scorer ranks the cells (tau > 0), and BN indicator and angle rank at least as well
    as ReBN (non-inferiority). Standard errors from a paired bootstrap over the cells."""
    from scipy.stats import kendalltau

    from ...report.stats import Family, estimate
    from ..report import TAU_MARGIN

    keep = np.asarray(report["connected"], bool)
    y = np.asarray(report["standalone_acc"], float)[keep]
    p = {k: np.asarray(report["proxies"][k], float)[keep] for k in LABELS}
    if len(y) < 4:
        return "too few connected cells to judge the claims"
    rng = np.random.default_rng(seed)
    boot: dict[str, list[float]] = {k: [] for k in LABELS}
    for _ in range(bootstrap):
        i = rng.integers(0, len(y), len(y))
        if np.ptp(y[i]) == 0 or any(np.ptp(v[i]) == 0 for v in p.values()):
            continue
        for k, v in p.items():
            boot[k].append(kendalltau(v[i], y[i])[0])
    b = {k: np.asarray(v, float) for k, v in boot.items()}
    tau = {k: float(kendalltau(v, y)[0]) for k, v in p.items()}
    sd = lambda a: float(np.std(a, ddof=1)) if len(a) > 1 else float("nan")   # noqa: E731
    method, n = "paired bootstrap over the cells, normal approximation", len(y)
    fam = Family(margin=TAU_MARGIN)
    claims = []
    for k in LABELS:
        claims.append((f"the {LABELS[k]} ranks the cells", fam.add(estimate(
            tau[k], sd(b[k]), n, f"{LABELS[k]} ranks like the table", method=method, unit="cells"))))
    for k in ("bn_indicator", "abs_angle"):
        claims.append((f"the {LABELS[k]} ranks at least as well as ReBN", fam.add(estimate(
            tau[k] - tau["rebn_acc"], sd(b[k] - b["rebn_acc"]), n, f"{LABELS[k]} >= ReBN", method=method,
            kind="noninferior", unit="cells"))))
    verdicts = fam.decide()
    parts = [f"On the {n} connected cells: " + ", ".join(f"{LABELS[k]} tau {tau[k]:.2f}" for k in LABELS) + "."]
    for what, i in claims:
        parts.append(f"That {what} {verdicts[i].text('in tau', predicate=True)}.")
    parts.append(f"ABS reports on NB201 CIFAR-10 angle tau {PUBLISHED['abs_angle']}, ReBN {PUBLISHED['rebn_acc']}, "
                 f"accuracy without ReBN {PUBLISHED['acc_no_rebn']} (a measurement to compare with, not tested).")
    ceiling = (report.get("noise_ceiling") or {}).get("kendall")
    if ceiling is not None:
        parts.append(f"The table agrees with itself (two seeds) to tau {ceiling:.2f}.")
    if report.get("standin"):
        parts.append("STAND-IN table: these numbers test the plumbing and are not evidence about NB201.")
    return " ".join(parts) + " " + fam.describe()


@dataclass(frozen=True)
class OneShotConfig:
    """Everything ``correlate_oneshot`` needs (the GPU command's settings). Defaults: C=16, N=5 and
    NB201's recipe for the SPOS supernet (200 epochs, batch 256, lr 0.1, wd 5e-4, crop + flip, half
    of the training set held out, as cifar10-valid); the BN-only supernet a tenth of the epochs at
    lr 0.5 (BN-NAS); 500 uniformly drawn cells (plus nothing else), ReBN on 10,000 validation images."""

    dataset: str = "cifar10"
    table: str | None = None
    table_dataset: str | None = None
    C: int = 16
    N: int = 5
    image_size: int | None = None
    epochs: int = RECIPE["epochs"]
    bn_epochs: int | None = None
    batch_size: int = RECIPE["batch_size"]
    lr: float = RECIPE["lr"]
    bn_lr: float = 0.5
    momentum: float = RECIPE["momentum"]
    weight_decay: float = RECIPE["weight_decay"]
    augment: bool = RECIPE["augment"]
    val_fraction: float = RECIPE["val_fraction"]
    limit: int | None = None
    val_limit: int | None = 10_000
    calib: int = 2_560
    n: int = 500
    seed: int = 0
    bootstrap: int = 1000
    abs_drop: int = 20
    abs_children: int = 20
    random_drops: int = 20
    norm: str = "bn"

    def __post_init__(self) -> None:
        for name in ("C", "N", "epochs", "batch_size", "calib", "n", "bootstrap", "abs_children", "random_drops"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise NasError(f"{name}={v!r} is invalid: expected a positive integer")
        if not 0 <= self.abs_drop < len(EDGES) * (len(OPS) - 1) + 1:
            raise NasError(f"abs_drop={self.abs_drop!r} is invalid: expected 0..{len(EDGES) * (len(OPS) - 1)} "
                           f"(every edge keeps at least one op)")

    @property
    def truth_dataset(self) -> str:
        if self.table_dataset:
            return self.table_dataset
        if self.dataset in TABLE_DATASET:
            return TABLE_DATASET[self.dataset]
        raise NasError(f"--dataset {self.dataset} has no NB201 table: expected cifar10 or cifar100 (or name the "
                       f"table's dataset to compare with)")

    def trainings(self, download: bool = False) -> list[dict[str, Any]]:
        """The two supernet trainings as keyword arguments of :func:`train_supernet`."""
        common = dict(dataset=self.dataset, C=self.C, N=self.N, image_size=self.image_size, batch_size=self.batch_size,
                      seed=self.seed, limit=self.limit, norm=self.norm, momentum=self.momentum,
                      val_fraction=self.val_fraction, val_limit=self.val_limit, augment=self.augment, download=download)
        return [dict(mode="full", epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay, **common),
                dict(mode="bn", epochs=self.bn_epochs or max(1, self.epochs // 10), lr=self.bn_lr, **common)]


def _sample_rows(table: Any, dataset: str, n: int, seed: int) -> np.ndarray:
    truth = table.mean_accuracy(dataset, "valid")
    rows = np.arange(len(table))[np.isfinite(truth)]
    if n < len(rows):
        rows = np.array(sorted(random.Random(seed).sample(list(rows), n)))
    return rows


def correlate_oneshot(cfg: OneShotConfig, *, out_dir: str | Path, store: Any = None, name: str = "nb201-oneshot",
                      executor: Any = None, device: str | None = None, download: bool = False,
                      log: Callable[[str], None] | None = None, on_epoch: Any = None,
                      on_result: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """The GPU command: train the SPOS and BN-only NB201 supernets (checkpoints in ``out_dir``,
    resumable), score ``cfg.n`` uniformly drawn cells by BN indicator, ReBN accuracy and angle
    (stored trials), and correlate each with the table's validation accuracy (mean over its
    seeds) -- no stand-alone training. Then ABS's drop (``cfg.abs_drop`` edge-ops by angle, by
    ReBN, at random) with the ground-truth rank of every dropped pair and the best accuracy left.
    Writes report.json, the scatter plots, report.md/html; returns the report."""
    from .table import load_table

    say = log or (lambda *a: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = load_table(cfg.table)
    tdata = table.check_dataset(cfg.truth_dataset)
    spos_kw, bn_kw = cfg.trainings(download)
    say(f"SPOS supernet: {spos_kw['epochs']} epochs (C={cfg.C}, N={cfg.N}); BN-only: {bn_kw['epochs']} epochs")
    t0 = time.perf_counter()
    spos = train_supernet(checkpoint=out / "spos.pt", store=store, device=device, on_epoch=on_epoch, **spos_kw)
    bn = train_supernet(checkpoint=out / "bn.pt", store=store, device=device, on_epoch=on_epoch, **bn_kw)
    t_train = time.perf_counter() - t0
    rows = _sample_rows(table, tdata, cfg.n, cfg.seed)
    archs = [table.archs[i] for i in rows]
    say(f"scoring {len(archs)} cells (BN indicator, ReBN on {cfg.val_limit or 'all'} validation images, angle)")
    trial = OneShotTrial(str(spos), str(bn), cfg.val_limit, cfg.calib, cfg.seed, device)
    scores, seconds = oneshot_scores(archs, trial, store=store, name=f"{name}/scores", executor=executor,
                                     on_result=on_result)
    truth = table.mean_accuracy(tdata, "valid")[rows]
    connected = np.array([is_connected(a) for a in archs])
    every = np.ones(len(archs), bool)
    from .proxies import _noise_ceiling

    ceiling = _noise_ceiling(table, tdata, rows, cfg.bootstrap, cfg.seed)
    label = "STAND-IN table (synthetic): not evidence" if table.standin else f"table {Path(table.source).name}"
    report: dict[str, Any] = {
        "n": len(archs), "space": "nb201", "dataset": cfg.dataset, "table_dataset": tdata, "standin": table.standin,
        "table": table.source, "title": f"NB201 one-shot ({cfg.dataset}): do BN indicator, ReBN and angle rank like the table?",
        "truth": f"the table's {tdata} validation accuracy ({label}), over the {int(connected.sum())} connected cells", "truth_label": f"table {tdata} validation accuracy (%)",
        "truth_scale": 1.0, "archs": archs, "paths": [int(i) for i in rows], "standalone_acc": truth.tolist(),
        "connected": connected.tolist(), "proxies": {k: v.tolist() for k, v in scores.items()},
        "correlation": _correlations(scores, truth, connected, cfg.bootstrap, cfg.seed),
        "correlation_all": _correlations(scores, truth, every, cfg.bootstrap, cfg.seed),
        "seconds_per_subnet": seconds, "supernet_seconds": t_train, "early_stage_tau": {}, "noise_ceiling": ceiling,
        "published": PUBLISHED, "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}
    report["verdict"] = oneshot_verdict(report, bootstrap=cfg.bootstrap, seed=cfg.seed)
    if cfg.abs_drop:
        say(f"ABS: dropping {cfg.abs_drop} of {len(EDGES) * len(OPS)} edge-ops by angle, by ReBN and at random")
        report["abs"] = abs_drop(str(spos), table, tdata, drop=cfg.abs_drop, children=cfg.abs_children, seed=cfg.seed,
                                 random_drops=cfg.random_drops, val_limit=cfg.val_limit, calib=cfg.calib, device=device)
    _write(report, out)
    return report


def _write(report: dict[str, Any], out: Path) -> None:
    import json

    from ..report import write_correlation_report

    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    files = write_correlation_report(report, out)
    md = (out / "report.md").read_text()
    md += "\n" + connected_table_md(report)
    if "abs" in report:
        md += "\n" + abs_table_md(report["abs"])
    (out / "report.md").write_text(md)
    report["files"] = {k: str(v) for k, v in files.items()}


def connected_table_md(report: Mapping[str, Any]) -> str:
    """τ and ρ over all sampled cells and over the connected ones (the judged set)."""
    lines = ["| scorer | τ all cells [95% CI] | τ connected [95% CI] | ρ connected [95% CI] | ABS paper τ |",
             "|---|---:|---:|---:|---:|"]
    n_conn = int(sum(report["connected"]))
    for k in ("abs_angle", "rebn_acc", "acc_no_rebn", "bn_indicator", "params", "flops"):
        a, c = report["correlation_all"].get(k, {}), report["correlation"].get(k, {})
        if "kendall" not in c or "kendall" not in a:
            continue
        f = lambda d, key: f"{d[key]:.3f} [{d[key + '_ci'][0]:.2f}, {d[key + '_ci'][1]:.2f}]"   # noqa: E731
        lines.append(f"| {SHOWN.get(k, k)} | {f(a, 'kendall')} | {f(c, 'kendall')} | {f(c, 'spearman')} | "
                     f"{PUBLISHED.get(k, '-')} |")
    return (f"{report['n']} cells drawn uniformly, {n_conn} connected (a path from input to output).\n\n"
            + "\n".join(lines) + "\n")


# -- ABS on NB201: drop edge-ops, rank them by the ground truth, search what is left ---------------

def _codes(table: Any) -> np.ndarray:
    """(cells, 6) op indices of every cell of ``table``, in its row order."""
    return np.array([cell_path(a) for a in table.archs], dtype=int).reshape(-1, len(EDGES))


def _connected_codes(codes: np.ndarray) -> np.ndarray:
    """Per row of op indices, whether a path of non-`none` ops leads from node 0 to node 3."""
    none = OPS.index("none")
    empty = np.zeros(len(codes), bool)
    reach = {0: ~empty}
    for e, (dst, src) in sorted(enumerate(EDGES), key=lambda t: t[1]):     # nodes in order: sources are final
        reach[dst] = reach.get(dst, empty) | (reach.get(src, empty) & (codes[:, e] != none))
    return reach.get(3, empty)


def _inside(codes: np.ndarray, allowed: Sequence[Sequence[int]]) -> np.ndarray:
    """Which rows of ``codes`` lie in the shrunk space (every edge's op among its allowed ones)."""
    return np.all([np.isin(codes[:, e], list(ops)) for e, ops in enumerate(allowed)], axis=0)


def edge_op_marginals(table: Any, dataset: str, split: str = "valid",
                      codes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(truth, cells), each (6 edges, 5 ops): the mean of the table's accuracy over the table's
    cells that have this op on this edge (the marginal, what dropping the pair removes), and how
    many cells that mean is over. For the full NB201 table every pair has 3,125 cells; for a
    table of sampled cells (:func:`normlab.nas.nb201.table.sampled_table`) about a fifth of them,
    and NaN truth where no sampled cell has the pair."""
    acc = table.mean_accuracy(dataset, split)
    codes = _codes(table) if codes is None else codes
    truth = np.full((len(EDGES), len(OPS)), np.nan)
    cells = np.zeros((len(EDGES), len(OPS)), int)
    for e in range(len(EDGES)):
        for o in range(len(OPS)):
            sel = (codes[:, e] == o) & np.isfinite(acc)
            cells[e, o] = int(sel.sum())
            if cells[e, o]:
                truth[e, o] = float(acc[sel].mean())
    return truth, cells


def edge_op_truth(table: Any, dataset: str, split: str = "valid") -> np.ndarray:
    """(6 edges, 5 ops) ground truth of every edge-op: the marginal of :func:`edge_op_marginals`
    (for the full table, the mean over the 3,125 cells with this op on this edge)."""
    return edge_op_marginals(table, dataset, split)[0]


def _ranks(values: np.ndarray) -> np.ndarray:
    """Rank of every entry (1 = highest, NaN last), over the flattened array, in its shape."""
    flat = np.nan_to_num(values.reshape(-1).astype(float), nan=-np.inf)
    order = np.argsort(-flat, kind="stable")
    ranks = np.empty(len(flat), int)
    ranks[order] = np.arange(1, len(flat) + 1)
    return ranks.reshape(values.shape)


def shrink_ops(scores: np.ndarray, drop: int) -> list[list[int]]:
    """ABS's rule on one ranking: drop the ``drop`` lowest-scoring edge-ops across all edges, each
    edge keeping at least one op; returns the kept ops per edge."""
    from ..search import drop_lowest

    allowed = [list(range(scores.shape[1])) for _ in range(scores.shape[0])]
    drop_lowest(allowed, [(float(scores[e, o]), e, o) for e in range(scores.shape[0]) for o in range(scores.shape[1])],
                drop)
    return allowed


def _best_reachable(table: Any, dataset: str, allowed: Sequence[Sequence[int]], split: str = "valid",
                    codes: np.ndarray | None = None) -> tuple[str, float | None, int]:
    """(best cell, its accuracy, cells): the best of the table's cells whose every op is allowed,
    and how many of the table's cells lie in the shrunk space. Over the full table that is every
    cell of the shrunk space, so the search is exhaustive and this is exactly the best reachable
    accuracy; over a table of sampled cells it is the best sampled cell left. ("", None, n) when
    no cell of the table with an accuracy is left."""
    acc = table.mean_accuracy(dataset, split)
    codes = _codes(table) if codes is None else codes
    inside = _inside(codes, allowed)
    ok = np.flatnonzero(inside & np.isfinite(acc))
    if not len(ok):
        return "", None, int(inside.sum())
    i = int(ok[np.argmax(acc[ok])])                 # ties: the first in the table's row order
    return table.archs[i], float(acc[i]), int(inside.sum())


def _op_scores(net: Any, state: Mapping[str, Any], children: int, seed: int, fn: Callable[[tuple], float]) -> np.ndarray:
    """ABS's operator score: per edge-op, the mean of ``fn`` over ``children`` random cells that
    contain it (the same children for every scorer with the same seed)."""
    rng = random.Random(seed)
    out = np.zeros((len(EDGES), len(OPS)))
    for e in range(len(EDGES)):
        for o in range(len(OPS)):
            vals = []
            for _ in range(children):
                path = [rng.randrange(len(OPS)) for _ in EDGES]
                path[e] = o
                vals.append(fn(tuple(path)))
            out[e, o] = float(np.mean(vals))
    return out


def _num(v: float) -> float | None:
    """A float for JSON: None where there is no number (a pair no sampled cell contains)."""
    return float(v) if math.isfinite(v) else None


class ShrunkJudge:
    """Judges shrunk spaces against a ground truth (the NB201 table or a table of sampled cells):
    the edge-op marginals, their ranks and the top ``30 - drop`` pairs are computed once;
    :meth:`describe` reports one shrunk space (``allowed`` ops per edge)."""

    def __init__(self, table: Any, dataset: str, *, drop: int, split: str = "valid") -> None:
        self.table, self.dataset, self.split = table, dataset, split
        self.codes = _codes(table)
        self.conn = _connected_codes(self.codes)
        self.truth, self.support = edge_op_marginals(table, dataset, split, self.codes)
        self.rank = _ranks(self.truth)
        self.top_n = self.truth.size - drop
        self.top = {(e, o) for e in range(len(EDGES)) for o in range(len(OPS)) if self.rank[e, o] <= self.top_n}
        self.full_best, self.full_acc = table.optimum(dataset, split)

    def header(self) -> dict[str, Any]:
        """What every report of this truth carries (the truth itself, what backs it)."""
        t = self.table
        return {"dataset": self.dataset, "split": self.split, "full_best": self.full_best, "full_acc": self.full_acc,
                "top_n": self.top_n, "standin": t.standin, "sampled": bool(getattr(t, "sampled", False)),
                "n_cells": len(t.archs), "connected_cells": int(self.conn.sum()),
                "truth_label": getattr(t, "label", "") or str(getattr(t, "source", "")),
                "truth": [[_num(v) for v in row] for row in self.truth], "truth_cells": self.support.tolist()}

    def describe(self, allowed: Sequence[Sequence[int]]) -> dict[str, Any]:
        """One shrunk space: the dropped pairs with their ground-truth ranks, how many of the top
        pairs it kept, the table's cells left in it (and how many connected), the best of them."""
        allowed = [list(a) for a in allowed]
        dropped = [(e, o) for e in range(len(EDGES)) for o in range(len(OPS)) if o not in allowed[e]]
        best, acc, size = _best_reachable(self.table, self.dataset, allowed, self.split, self.codes)
        return {"allowed": allowed, "size": size, "space_size": math.prod(len(a) for a in allowed),
                "connected_left": int((_inside(self.codes, allowed) & self.conn).sum()),
                "dropped": [{"edge": f"{EDGES[e][0]}<-{EDGES[e][1]}", "op": OPS[o], "truth": _num(self.truth[e, o]),
                             "truth_rank": int(self.rank[e, o]), "truth_cells": int(self.support[e, o])}
                            for e, o in dropped],
                "kept_of_top": len(self.top - set(dropped)), "best": best, "best_acc": acc,
                "regret": None if acc is None else self.full_acc - acc}


#: random drops whose full description (dropped pairs, best left) report.json keeps; the counts
#: and regrets of every draw are kept
RANDOM_RUNS_KEPT = 20


def abs_drop(checkpoint: str, table: Any, dataset: str, *, drop: int = 20, children: int = 20, seed: int = 0,
             random_drops: int = 20, val_limit: int | None = None, calib: int = 256,
             device: str | None = None, split: str = "valid") -> dict[str, Any]:
    """ABS's NB201 experiment on a trained SPOS supernet: score every (edge, op) by the mean angle
    of ``children`` cells containing it (ABS's operator score), drop the ``drop`` lowest in one
    step (every edge keeps one op); the same with ReBN accuracy as the operator score, and
    ``random_drops`` random drops. Reports every dropped pair with its ground-truth rank (1-30, by
    :func:`edge_op_marginals` on ``split`` of ``dataset``), how many of the truth's top
    ``30 - drop`` pairs were kept, and the best accuracy left in each shrunk space against the
    best of the table.

    ``table`` is the NB201 table (the best left is then exact: every cell of the shrunk space is
    looked up) or a table of sampled cells (:func:`normlab.nas.nb201.table.sampled_table`, the CPU
    study's stand-alone ground truth): the marginals are then over the sampled cells that contain
    each pair, and the best left is the best *sampled* cell whose every op survives (None when no
    sampled cell survives), not a search of the shrunk space."""
    from ..scores import rebn_accuracy

    net, state, _ = _loaded(checkpoint)
    judge = ShrunkJudge(table, dataset, drop=drop, split=split)
    calib_x, val_x, val_y = _rebn_data(state, None, val_limit, calib, seed, device)
    if device is not None:
        net.to(device)
    try:
        sums = _angle_sums(checkpoint, state)
        scored = {"angle": _op_scores(net, state, children, seed, lambda p: fast_angle(sums, net, p)),
                  "rebn": _op_scores(net, state, children, seed, lambda p: rebn_accuracy(net, p, calib_x, val_x, val_y))}
    finally:
        net.to("cpu")
    out: dict[str, Any] = {"drop": drop, "children": children, **judge.header(),
                           "scores": {k: v.tolist() for k, v in scored.items()}}
    for k, v in scored.items():
        out[k] = judge.describe(shrink_ops(v, drop))
    rng = np.random.default_rng(seed)
    rand = [judge.describe(shrink_ops(rng.random(judge.truth.shape), drop)) for _ in range(random_drops)]
    out["random"] = {"runs": rand[:RANDOM_RUNS_KEPT], "kept_of_top": [r["kept_of_top"] for r in rand],
                     "regret": [r["regret"] for r in rand], "best_acc": [r["best_acc"] for r in rand],
                     "size": [r["size"] for r in rand], "nothing_left": sum(r["best"] == "" for r in rand)}
    return out


def abs_table_md(res: Mapping[str, Any]) -> str:
    """The ABS drop table: per ranking, the pairs kept among the ground truth's top, the ground-
    truth ranks of the dropped pairs, the cells left, the best accuracy left and its drop from the
    best of the whole space (of the table) or of all sampled cells (of a sampled ground truth)."""
    from ...report.stats import describe

    n_pairs = len(EDGES) * len(OPS)
    sampled = res.get("sampled", False)
    rule = (f"{res['drop']} of {n_pairs} edge-ops dropped in one step, each edge keeps one; operator score = mean "
            f"over {res['children']} random cells containing it")
    if sampled:
        cells = np.asarray(res["truth_cells"], int)
        n_conn = res.get("connected_cells")
        lines = [(f"ABS on NB201, ground truth: {res['truth_label']}{' (STAND-IN)' if res.get('standin') else ''}. "
                 f"{rule}. A pair's truth = mean accuracy of the sampled cells containing it ({cells.min()}-"
                 f"{cells.max()} cells per pair, median {np.median(cells):g}); best left = the best SAMPLED cell whose "
                 f"every op survives (the best of the sampled cells left, not a search of the shrunk space; "
                 f"'none' when no sampled cell survives). Best of all {res['n_cells']} sampled cells "
                 f"({n_conn} connected): {res['full_acc']:.2f}%."), ""]
        top_label, left_label = f"of the truth's top {res['top_n']} kept", "sampled cells left (connected)"
    else:
        lines = [(f"ABS on NB201 ({res['dataset']}{', STAND-IN table: not evidence' if res.get('standin') else ''}): "
                 f"{rule}. Full space best {res['full_acc']:.2f}%."), ""]
        top_label, left_label = f"of the table's top {res['top_n']} kept", "cells left (connected)"
    lines += [f"| dropped by | {top_label} | ground-truth ranks dropped | {left_label} | best left (%) | drop (points) |",
              "|---|---:|---|---:|---:|---:|"]
    rows = [("angle (ABS)", res["angle"]), ("ReBN accuracy", res["rebn"])]
    if "stagewise" in res:
        st = res["stagewise"]
        rows.append((f"angle, stage-wise ({st['stages']} x {st['per_stage']}, {st['stage_epochs']} epochs between)",
                     st["final"]))
    for label, r in rows:
        ranks = ", ".join(f"{d['truth_rank']}" + ("?" if d.get("truth_cells", 1) == 0 else "")
                          for d in sorted(r["dropped"], key=lambda d: d["truth_rank"]))
        left = f"{r['size']} ({r.get('connected_left', '-')})"
        if r["best_acc"] is None:
            lines.append(f"| {label} | {r['kept_of_top']} | {ranks} | {left} | none | - |")
        else:
            lines.append(f"| {label} | {r['kept_of_top']} | {ranks} | {left} | {r['best_acc']:.2f} | {r['regret']:.2f} |")
    rnd = res["random"]
    kept = describe(rnd["kept_of_top"])
    reg = describe([v for v in rnd["regret"] if v is not None])
    best = describe([v for v in rnd.get("best_acc", [r["best_acc"] for r in rnd["runs"]]) if v is not None])
    left = describe(rnd.get("size", [r["size"] for r in rnd["runs"]]))
    empty = rnd.get("nothing_left", 0)
    best_text = best.text(1.0, 2) + (f"; none in {empty} draws" if empty else "")
    lines.append(f"| random ({kept.n} draws) | {kept.text(1.0, 1)} | - | {left.text(1.0, 1)} | {best_text} | "
                 f"{reg.text(1.0, 2)} |")
    if "stagewise" in res:
        st = res["stagewise"]
        lines += ["", (f"Stage-wise: a second SPOS supernet with the same settings and schedule trained "
                       f"{st['first_epochs']} epochs over the whole space, then {st['stages']} times: drop the "
                       f"{st['per_stage']} lowest edge-ops by angle ({st['children']} cells each), train "
                       f"{st['stage_epochs']} epochs on what is left. Top pairs kept after each stage: "
                       + " -> ".join(str(s["kept_of_top"]) for s in st["per_stage_spaces"]) + ".")]
    if sampled:
        space = res["angle"]["space_size"]
        lines += ["", (f"A shrunk space keeps {space} of NB201's 15,625 cells (by the angle), so of {res['n_cells']} "
                      f"uniformly drawn cells about {res['n_cells'] * space / 15625:.2g} would survive: with a sampled "
                      f"ground truth the best-left column is mostly 'none' and the pairs' ranks (first columns) carry "
                      f"the evidence. A pair's marginal includes the disconnected cells (at chance) that contain it, "
                      f"as the table's marginal does. '?' marks a dropped pair that no sampled cell contains.")]
    return "\n".join(lines) + "\n"


# -- the dry run: what it costs here, and what it should cost on a GPU ----------------------------

#: what the GPU estimate assumes (not measured: no GPU was available where this was written):
#: an effective 4 TFLOP/s on these small convolutions and at least 5 ms per optimizer step
GPU_TFLOPS, GPU_STEP_SECONDS = 4.0, 0.005


def oneshot_plan(cfg: OneShotConfig, *, train_images: int, val_images: int, in_channels: int = 3,
                 num_classes: int | None = None, image_size: int | None = None, rounds: int = 1) -> dict[str, Any]:
    """The plan of ``correlate_oneshot`` with its cost on this machine (one training step and one
    inference batch timed on random inputs of the real shape, at the current torch thread count)
    and the expected cost on a GPU (FLOP count / :data:`GPU_TFLOPS`, at least
    :data:`GPU_STEP_SECONDS` per step: an estimate, stated as such)."""
    import torch.nn.functional as F

    from ...train import timed_calls
    from ..supernet import NB201Supernet

    cls = num_classes or (100 if cfg.truth_dataset == "cifar100" else 10)
    size = image_size or cfg.image_size or 32
    space = NB201SupernetConfig(C=cfg.C, N=cfg.N, norm=cfg.norm, in_channels=in_channels, num_classes=cls,
                                image_size=size)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = NB201Supernet(space)
    rng = random.Random(0)
    b = min(cfg.batch_size, 16)                       # timed on a small batch, scaled linearly
    x = torch.randn(b, in_channels, size, size)
    y = torch.randint(0, cls, (b,))

    def step() -> None:
        F.cross_entropy(net(x, [rng.randrange(len(OPS)) for _ in EDGES]), y).backward()

    def infer() -> None:
        with torch.no_grad():
            net(x, [rng.randrange(len(OPS)) for _ in EDGES])

    t_step = sorted(timed_calls(step, rounds))[rounds // 2] * cfg.batch_size / b
    t_inf = sorted(timed_calls(infer, rounds))[rounds // 2] / b            # per image
    n_train = min(train_images, cfg.limit or train_images)
    steps = max(1, n_train // cfg.batch_size)
    spos_kw, bn_kw = cfg.trainings()
    val = min(val_images, cfg.val_limit or val_images)
    rebn_images = cfg.calib + val
    abs_cells = 2 * len(EDGES) * len(OPS) * cfg.abs_children if cfg.abs_drop else 0   # angle children are cheap

    mean_flops = net.flops([0] * 6) + (net.flops([2] * 6) - net.flops([0] * 6)) / 5 + \
        (net.flops([3] * 6) - net.flops([0] * 6)) / 5                     # uniform cell: 6/5 of each conv kind
    rows = []
    for label, kw in (("SPOS supernet", spos_kw), ("BN-only supernet", bn_kw)):
        cpu = steps * kw["epochs"] * t_step
        gpu = max(3 * mean_flops * n_train * kw["epochs"] / (GPU_TFLOPS * 1e12), steps * kw["epochs"] * GPU_STEP_SECONDS)
        rows.append((label, f"{kw['epochs']} epochs x {steps} steps of {cfg.batch_size}", cpu, gpu))
    n_rebn = cfg.n + abs_cells // 2
    cpu = n_rebn * rebn_images * t_inf
    gpu = max(n_rebn * rebn_images * mean_flops / (GPU_TFLOPS * 1e12), n_rebn * math.ceil(rebn_images / 256) * 0.002)
    rows.append(("ReBN", f"{n_rebn} cells x {rebn_images:,} images ({cfg.calib:,} calibration + {val:,} validation)", cpu, gpu))
    rows.append(("accuracy without ReBN", f"{cfg.n} cells x {val:,} validation images", cfg.n * val * t_inf,
                 max(cfg.n * val * mean_flops / (GPU_TFLOPS * 1e12), cfg.n * math.ceil(val / 256) * 0.002)))
    sd = net.state_dict()
    sums = {k: (1.0, 1.0, 1.0) for k in sd}
    t_angle = sorted(timed_calls(lambda: fast_angle(sums, net, [3] * 6), 3))[1]
    n_angle = cfg.n + abs_cells // 2
    rows.append(("BN indicator + angle", f"{n_angle} cells, no forward pass (angle on the CPU: "
                 f"{1000 * t_angle:.0f} ms each)", n_angle * t_angle, n_angle * t_angle))
    return {"steps": rows, "cpu_seconds": sum(r[2] for r in rows), "gpu_seconds": sum(r[3] for r in rows),
            "step_seconds": t_step, "threads": torch.get_num_threads(), "mean_cell_flops": mean_flops,
            "assumptions": f"GPU: not measured; assumes {GPU_TFLOPS:g} TFLOP/s effective and >= "
                           f"{1000 * GPU_STEP_SECONDS:g} ms per step (3x forward FLOPs per trained image)"}
