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
- ``angle``: ABS's angle between the child model's weights at init and after training (stem, the
  chosen op on every edge of every cell, the reduction blocks, the classifier; norms excluded).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ...models.nb201 import EDGES, OPS, NB201Error, parse_arch
from ..supernet import NasError, NB201SupernetConfig

__all__ = ["train_supernet", "score_cells", "SCORERS", "supernet_settings", "RECIPE", "cell_path",
           "path_cell", "OneShotTrial", "oneshot_scores", "correlate_oneshot", "oneshot_plan",
           "shrink_ops", "edge_op_truth", "abs_drop"]

SCORERS = ("bn", "rebn", "angle")

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


def score_cells(checkpoint: str | Path, archs: Sequence[str], scorer: str, *, dataset: str | None = None,
                limit: int | None = None, seed: int = 0, **kw: Any) -> list[float]:
    """Each cell's score on the supernet of ``checkpoint``: ``scorer`` "bn" (BN indicator; use a
    BN-only supernet), "rebn" (ReBN accuracy, a fraction; ``limit`` validation images, ``calib``
    calibration images from a ``seed``-ed order, ``device``) or "angle" (ABS angle, radians).
    ``dataset`` (default: the one the supernet trained on) is where ReBN's images come from."""
    from ..scores import angle, bn_scores, rebn_accuracy

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
        return [angle(state["init"], state["model"], net, p) for p in paths]
    device = kw.get("device")
    calib_x, val_x, val_y = _rebn_data(state, dataset, limit, int(kw.get("calib", 256)), seed, device)
    if device is not None:
        net.to(device)
    try:
        return [rebn_accuracy(net, p, calib_x, val_x, val_y, batch_size=int(kw.get("batch_size", 64))) for p in paths]
    finally:
        net.to("cpu")
