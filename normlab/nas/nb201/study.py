"""The CPU study on NAS-Bench-201 (``normlab nas nb201 study --preset nas-nb201-fashion``): do the
one-shot scorers (BN indicator, ReBN accuracy, ABS angle) and the data-free proxies (#params,
FLOPs, synflow) rank NB201 cells the way the cells rank when trained stand-alone, on data small
enough for two CPU cores, where the cells really differ?

Ground truth: ``cells`` cells drawn uniformly from the 15,625, plus the ``extremes`` best and worst
by the table (``table_dataset``), each trained from scratch with every seed of ``seeds`` through
:func:`normlab.train.fit` (the shared trial function :func:`normlab.train.trial.run_trial`), as
stored trials of normlab's runtime: a rerun, or a run after a kill, trains only what is missing.
The truth of a cell is its mean test accuracy over the seeds; the first two seeds against each
other are the **noise ceiling** (no proxy can be shown to rank better than the ground truth agrees
with itself).

Proxies: the two supernets (SPOS for ReBN, the accuracy without ReBN and the angle, BN-only for
the BN indicator) come from
:mod:`normlab.nas.nb201.oneshot` (epoch checkpoints, resumable), each checked against chance
(:func:`normlab.nas.train.supernet_accuracy`); #params and FLOPs are analytic, synflow is computed
at initialisation (:mod:`normlab.nas.nb201.proxies`).

ABS on NB201 against this ground truth (:func:`study_abs`, :func:`study_abs_stages`): the 30
(edge, op) pairs ranked by the marginal of the sampled cells' stand-alone accuracy
(:func:`study_truth_table`, a table of the sampled cells), ABS's one-step drop by angle, by ReBN
and at random on the SPOS supernet, and optionally its stage-wise drop on a second supernet; the
best cell left is the best *sampled* cell whose ops all survive (not a search of the shrunk space).

Every Kendall tau / Spearman rho is reported twice: over all cells, and over the *connected*
cells only (a cell whose `none` ops cut every path from its input to its output outputs zeros and
sits at chance; any proxy that spots those looks good on all cells). The proxies are judged on the
connected cells: does the 95% interval exclude 0 (one family, Holm-adjusted, under
:mod:`normlab.report.stats`), and how far below the ceiling is it (paired bootstrap over cells).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ...models.nb201 import EDGES, NB201Error, parse_arch
from .space import connected

__all__ = ["StudyConfig", "load_study_config", "STUDY_PRESETS", "connected", "study_cells", "study_plan",
           "run_study", "ground_truth_trials", "PROXY_ORDER", "study_truth_table", "study_abs",
           "study_abs_stages"]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STUDY_PRESETS = ("nas-nb201-fashion",)
PROXY_ORDER = ("bn_indicator", "rebn_acc", "acc_no_rebn", "abs_angle", "params", "flops", "synflow")


@dataclass(frozen=True)
class StudyConfig:
    """What the study trains and scores. ``dataset`` is any normlab dataset; ``image_size``,
    ``train_images`` and ``test_images`` reduce it (the ``size``/``train``/``test`` spec
    parameters): the stand-alone cells train on the ``train_images`` and are tested on the
    ``test_images``; the supernets split the same ``train_images`` into train and validation."""

    dataset: str = "fashion-mnist"
    image_size: int | None = 16
    train_images: int | None = 10_000
    test_images: int | None = 2_000
    C: int = 8
    N: int = 1
    norm: str = "bn"
    cells: int = 40                      # drawn uniformly
    extremes: int = 4                    # plus this many best and this many worst by the table
    table: str = "standin"               # the NB201 table (a path) or "standin" (synthetic, not evidence)
    table_dataset: str = "cifar10-valid"
    sample_seed: int = 0
    seeds: tuple[int, ...] = (1, 2)
    epochs: int = 6
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    threads: int = 1                     # torch threads per training (pins the results)
    spos_epochs: int = 15
    spos_lr: float = 0.05
    bn_epochs: int = 6
    bn_lr: float = 0.1
    bn_params: str = "last"              # BN-only supernet: each op's last norm (BN-NAS) | all
    rebn_images: int = 1_000             # validation images ReBN scores every cell on
    bootstrap: int = 1000
    abs_drop: int = 20                   # ABS: edge-ops dropped of 30 (0: no ABS step)
    abs_children: int = 20               # random cells averaged per edge-op score
    random_drops: int = 20               # random drops to compare with
    abs_stages: int = 0                  # ABS stage-wise: drop abs_drop / abs_stages edge-ops per stage (0: off)
    abs_stage_epochs: int = 2            # SPOS epochs between two stages (of the spos_epochs in all)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        for name in ("C", "N", "epochs", "batch_size", "threads", "spos_epochs", "bn_epochs", "rebn_images",
                     "bootstrap", "abs_children", "random_drops"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise NB201Error(f"{name}={v!r} is invalid: expected a positive integer")
        for name in ("cells", "extremes"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise NB201Error(f"{name}={v!r} is invalid: expected an integer >= 0")
        if self.cells + 2 * self.extremes < 4:
            raise NB201Error(f"cells={self.cells}, extremes={self.extremes}: expected at least 4 cells in all "
                             f"(a rank correlation needs them)")
        if isinstance(self.abs_drop, bool) or not isinstance(self.abs_drop, int) or not 0 <= self.abs_drop <= 24:
            raise NB201Error(f"abs_drop={self.abs_drop!r} is invalid: expected 0..24 (30 edge-ops, every edge keeps "
                             f"at least one; 0: no ABS step)")
        for name in ("abs_stages", "abs_stage_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise NB201Error(f"{name}={v!r} is invalid: expected an integer >= 0")
        if self.abs_stages:
            if not self.abs_drop or self.abs_drop % self.abs_stages:
                raise NB201Error(f"abs_stages={self.abs_stages} with abs_drop={self.abs_drop}: expected abs_drop a "
                                 f"positive multiple of abs_stages (the same number dropped at every stage)")
            if self.abs_stage_epochs < 1 or self.abs_stages * self.abs_stage_epochs >= self.spos_epochs:
                raise NB201Error(f"abs_stages={self.abs_stages} x abs_stage_epochs={self.abs_stage_epochs} is invalid: "
                                 f"expected at least 1 epoch between stages and fewer than spos_epochs="
                                 f"{self.spos_epochs} in all (the first stage trains the rest)")
        if self.bn_params not in ("last", "all"):
            raise NB201Error(f"bn_params={self.bn_params!r} is invalid: expected 'last' (BN-NAS) or 'all'")
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise NB201Error(f"seeds={list(self.seeds)} is invalid: expected at least two different seeds "
                             f"(the noise ceiling compares the first two)")
        for name in ("lr", "spos_lr", "bn_lr"):
            if not getattr(self, name) > 0:
                raise NB201Error(f"{name}={getattr(self, name)!r} is invalid: expected a positive number")

    @property
    def data_spec(self) -> str:
        """The dataset spec with its reductions, e.g. ``fashion-mnist:size=16,train=10000,test=2000``."""
        parts = [f"{k}={v}" for k, v in (("size", self.image_size), ("train", self.train_images),
                                          ("test", self.test_images)) if v is not None]
        base, _, own = self.dataset.partition(":")
        return base + ":" + ",".join(([own] if own else []) + parts) if parts else self.dataset

    def train_settings(self, seed: int) -> dict[str, Any]:
        """fit()'s TrainConfig fields for one stand-alone training (plain SGD + cosine, no
        augmentation, one evaluation at the end)."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "base_batch_size": None,
                "momentum": self.momentum, "nesterov": True, "weight_decay": self.weight_decay,
                "augment": False, "progress": False, "eval_every": 0, "final_eval": True, "seed": seed}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StudyConfig":
        from ..._settings import known_settings

        return cls(**known_settings(d, cls, "study", NB201Error))


def load_study_config(path: str | Path | None = None, *, preset: str | None = None,
                      **overrides: Any) -> StudyConfig:
    """A study config from a YAML file or a preset (``nas-nb201-fashion``), then the non-None
    ``overrides``."""
    from ..._yaml import read_yaml_mapping

    if path is not None and preset is not None:
        raise NB201Error(f"--preset {preset} and the config file {path} were both given: use one")
    if path is None:
        preset = preset or STUDY_PRESETS[0]
        if preset not in STUDY_PRESETS:
            raise NB201Error(f"--preset {preset!r} is invalid: expected one of {', '.join(STUDY_PRESETS)}")
        path = CONFIGS / f"{preset}.yaml"
    base = dict(read_yaml_mapping(path, "study config"))
    base.update({k: v for k, v in overrides.items() if v is not None})
    return StudyConfig.from_dict(base)


# -- the cells -------------------------------------------------------------------------------------

def study_cells(cfg: StudyConfig, table: Any = None) -> tuple[list[str], list[str]]:
    """(cells, how each was chosen): ``cfg.cells`` drawn uniformly without replacement (seeded
    by ``sample_seed``), then the ``extremes`` best and worst of the table's mean accuracy on
    ``table_dataset`` that were not drawn already."""
    from .space import NUM_ARCHS, index_to_arch
    from .table import load_table

    rng = random.Random(f"nb201-study:{cfg.sample_seed}")
    rows = rng.sample(range(NUM_ARCHS), cfg.cells)
    cells = [index_to_arch(i) for i in rows]
    why = ["uniform"] * len(cells)
    if cfg.extremes:
        table = table if table is not None else load_table(cfg.table)
        acc = np.asarray(table.mean_accuracy(cfg.table_dataset, "test"), dtype=float)
        order = [int(i) for i in np.argsort(-np.nan_to_num(acc, nan=-np.inf), kind="stable")]
        taken = set(rows)
        for label, seq in (("table best", order), ("table worst", [i for i in reversed(order) if np.isfinite(acc[i])])):
            added = 0
            for i in seq:
                if added == cfg.extremes:
                    break
                if i not in taken:
                    taken.add(i)
                    cells.append(table.archs[i])
                    why.append(label)
                    added += 1
    return cells, why


def ground_truth_trials(cfg: StudyConfig, cells: Sequence[str]) -> list[dict[str, Any]]:
    """One trial description per (cell, seed), for :func:`normlab.train.trial.run_trial`."""
    out = []
    for arch in cells:
        for seed in cfg.seeds:
            out.append({"key": f"{arch}#seed{seed}", "model": "nb201", "norm": cfg.norm, "dataset": cfg.data_spec,
                        "data_seed": 0, "seed": seed, "threads": cfg.threads, "train": cfg.train_settings(seed),
                        "model_options": {"arch": arch, "C": cfg.C, "N": cfg.N}})
    return out


# -- the plan and its cost -------------------------------------------------------------------------

def _step_seconds(cfg: StudyConfig, archs: Sequence[str], in_channels: int, classes: int, size: int,
                  rounds: int = 3) -> list[float]:
    """Median seconds of one training step (forward + backward + SGD step, batch ``batch_size``)
    of each of ``archs`` on random inputs of the real shape, with ``cfg.threads`` threads."""
    import torch
    import torch.nn.functional as F

    from ...models import create_model
    from ...train import timed_calls, torch_threads

    with torch_threads(cfg.threads):
        out = []
        for arch in archs:
            torch.manual_seed(0)
            model = create_model("nb201", norm=cfg.norm, in_channels=in_channels, num_classes=classes, arch=arch,
                                 C=cfg.C, N=cfg.N)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            x = torch.randn(cfg.batch_size, in_channels, size, size)
            y = torch.randint(0, classes, (cfg.batch_size,))

            def step() -> None:
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()
            times = sorted(timed_calls(step, rounds))
            out.append(times[len(times) // 2])
        return out


def _uniform_cell(op: str) -> str:
    from ...models.nb201 import arch_string

    return arch_string([op] * len(EDGES))


def study_plan(cfg: StudyConfig, *, workers: int = 1, measure: bool = True, info: Any = None) -> dict[str, Any]:
    """What the study runs and an estimate of its wall time on this machine.

    A training step's time is measured on random inputs for the five uniform cells (every edge
    `none`; every edge `skip_connect`; ... every edge `nor_conv_3x3`), and a cell's step is the
    all-`none` step plus, per edge, a sixth of the extra time of the uniform cell of that edge's
    op (the ops' costs add up edge by edge); times the steps every cell x seed takes, plus one
    evaluation pass, divided over ``workers``. The supernets' steps cost about what the mean
    cell costs (one path at a time)."""
    from ...models.nb201 import OPS
    from ..pipeline import dataset_info

    info = info or dataset_info(cfg.data_spec, missing_ok=True)
    cin, classes, size = info.in_channels, info.num_classes, info.image_size[0]
    n_train = info.n_train or 0
    cells, why = study_cells(cfg)
    steps = max(1, n_train // cfg.batch_size)
    if measure:
        measured = dict(zip(OPS, _step_seconds(cfg, [_uniform_cell(op) for op in OPS], cin, classes, size)))
    else:
        measured = {op: float("nan") for op in OPS}
    base = measured["none"]
    extra = {op: (measured[op] - base) / len(EDGES) for op in OPS}

    def step_time(a: str) -> float:
        return base + sum(extra[op] for op in parse_arch(a))

    eval_images = info.n_test or 0
    per_cell = {a: step_time(a) * (cfg.epochs * steps + eval_images / (3 * cfg.batch_size)) for a in cells}
    truth = sum(per_cell.values()) * len(cfg.seeds)
    mean_step = float(np.mean([step_time(a) for a in cells]))
    n_fit = max(1, n_train - round(0.2 * n_train))
    sup_steps = max(1, n_fit // cfg.batch_size)
    spos = cfg.spos_epochs * sup_steps * mean_step
    bn = cfg.bn_epochs * sup_steps * mean_step * 0.8                   # no conv weight gradients
    rebn = len(cells) * (256 + min(cfg.rebn_images, n_train - n_fit)) / cfg.batch_size * mean_step / 3
    n_abs = len(EDGES) * len(OPS) * cfg.abs_children if cfg.abs_drop else 0       # ReBN children (angles are ~free)
    abs_cost = n_abs * (256 + min(cfg.rebn_images, n_train - n_fit)) / cfg.batch_size * mean_step / 3
    rows = [("ground truth", f"{len(cells)} cells ({why.count('uniform')} uniform, {len(cells) - why.count('uniform')} "
                             f"best/worst by the table) x {len(cfg.seeds)} seeds, {cfg.epochs} epochs on "
                             f"{n_train:,} images, {workers} worker(s)", truth / max(1, workers)),
            ("SPOS supernet", f"{cfg.spos_epochs} epochs (ReBN, angle)", spos),
            ("BN-only supernet", f"{cfg.bn_epochs} epochs (BN indicator)", bn),
            ("scores", f"ReBN on {cfg.rebn_images:,} validation images per cell; angle, BN, #params, FLOPs, synflow",
             rebn + len(cells) * 0.05)]
    if cfg.abs_drop:
        what = (f"{cfg.abs_drop} of 30 edge-ops by angle and by ReBN ({n_abs:,} random cells), "
                f"{cfg.random_drops} random drops")
        rows.append(("ABS drop", what, abs_cost))
    if cfg.abs_stages:
        what = (f"a second SPOS supernet, {cfg.spos_epochs} epochs, {cfg.abs_stages} drops of "
                f"{cfg.abs_drop // cfg.abs_stages} by angle")
        rows.append(("ABS stage-wise", what, spos))
    return {"cells": cells, "why": why, "steps": rows, "seconds": sum(r[2] for r in rows),
            "step_seconds": {f"all {op}": t for op, t in measured.items()}, "per_cell_seconds": per_cell,
            "data": cfg.data_spec}


# -- the run ---------------------------------------------------------------------------------------

def _truth(cfg: StudyConfig, cells: Sequence[str], store: Any, name: str, executor: Any,
           on_result: Callable[[Any], None] | None) -> np.ndarray:
    """(cells, seeds) test accuracies of the stand-alone trainings (stored trials)."""
    from ...runtime import Driver
    from ...train.trial import run_trial

    config = {"strategy": "nb201-study-truth", "data": cfg.data_spec, "C": cfg.C, "N": cfg.N, "norm": cfg.norm,
              "epochs": cfg.epochs, "batch_size": cfg.batch_size, "lr": cfg.lr, "momentum": cfg.momentum,
              "weight_decay": cfg.weight_decay, "threads": cfg.threads}
    exp = store.experiment(f"{name}/ground-truth", "nas", config)
    descs = ground_truth_trials(cfg, cells)
    driver = Driver(store, exp, run_trial, executor)
    try:
        driver.run(descs, poll_every=0.5, on_result=on_result)
    finally:
        driver.close()
    rows = {r["description"]["key"]: r for r in store.rows(experiment_id=exp.id)}
    acc = np.full((len(cells), len(cfg.seeds)), np.nan)
    failed = []
    for i, arch in enumerate(cells):
        for j, seed in enumerate(cfg.seeds):
            r = rows.get(f"{arch}#seed{seed}")
            if r is not None and r["status"] == "ok" and "test_acc" in r["metrics"]:
                acc[i, j] = r["metrics"]["test_acc"]
            else:
                failed.append((arch, seed, (r or {}).get("error")))
    if failed:
        arch, seed, err = failed[0]
        last = (err or "").strip().splitlines()
        raise NB201Error(f"{len(failed)} stand-alone trainings failed (run again to retry them); first {arch} "
                         f"seed {seed}: {last[-1] if last else '?'}")
    return acc


def _zero_cost(cfg: StudyConfig, cells: Sequence[str], cin: int, classes: int, size: int) -> tuple[dict, dict]:
    import torch

    from ...models.nb201 import NB201Net
    from .proxies import synflow
    from .space import analytic_flops, analytic_params, arch_to_index

    scores: dict[str, list[float]] = {"params": [], "flops": [], "synflow": []}
    seconds = {"params": 0.0, "flops": 0.0, "synflow": 0.0}
    for arch in cells:
        t = time.perf_counter()
        scores["params"].append(float(analytic_params(arch, C=cfg.C, N=cfg.N, num_classes=classes, in_channels=cin,
                                                      norm=cfg.norm)))
        seconds["params"] += time.perf_counter() - t
        t = time.perf_counter()
        scores["flops"].append(float(analytic_flops(arch, C=cfg.C, N=cfg.N, num_classes=classes, in_channels=cin,
                                                    image_size=size)))
        seconds["flops"] += time.perf_counter() - t
        t = time.perf_counter()
        with torch.random.fork_rng():
            torch.manual_seed(cfg.sample_seed * 100_003 + arch_to_index(arch))
            s = synflow(NB201Net(arch, C=cfg.C, N=cfg.N, num_classes=classes, in_channels=cin), (cin, size, size))
        scores["synflow"].append(math.log(s) if s > 0 else -1e300)
        seconds["synflow"] += time.perf_counter() - t
    return scores, {k: v / max(1, len(cells)) for k, v in seconds.items()}


def _supernets(cfg: StudyConfig, cells: Sequence[str], out: Path, store: Any,
               say: Callable[[str], None]) -> tuple[dict, dict, dict]:
    """BN indicator, ReBN accuracy and ABS angle of every cell, from the two supernets of
    :mod:`normlab.nas.nb201.oneshot` (checkpoints in ``out``), and each supernet's chance check."""

    common = dict(dataset=cfg.data_spec, C=cfg.C, N=cfg.N, image_size=None, batch_size=cfg.batch_size,
                  seed=cfg.sample_seed, store=store, threads=cfg.threads, norm=cfg.norm)
    from ...train import torch_threads

    with torch_threads(None):                          # oneshot sets cfg.threads: leave no trace
        return _score_supernets(cfg, cells, out, common, say)


def _checkpoint_epoch(path: Path) -> int:
    """The epochs a supernet checkpoint already holds (0 when there is none or it cannot be read:
    the training then says why)."""
    from ..supernet import NasError
    from ..train import read_checkpoint

    try:
        return int(read_checkpoint(path)["epoch"]) if path.is_file() else 0
    except NasError:
        return 0


def _score_supernets(cfg: StudyConfig, cells: Sequence[str], out: Path, common: dict,
                     say: Callable[[str], None]) -> tuple[dict, dict, dict]:
    from ..train import TrainConfig, load_supernet, read_checkpoint, supernet_accuracy
    from . import oneshot

    scores, seconds, checks = {}, {}, {}
    for label, mode, epochs, lr in (("spos", "full", cfg.spos_epochs, cfg.spos_lr), ("bn", "bn", cfg.bn_epochs, cfg.bn_lr)):
        done = _checkpoint_epoch(out / f"{label}.pt")
        say(f"{'SPOS' if mode == 'full' else 'BN-only'} supernet: {epochs} epochs at lr {lr}"
            + (f" (its checkpoint has {done}: {'reused, nothing to train' if done >= epochs else 'resuming'})"
               if done else ""))
        extra = {"bn_params": cfg.bn_params} if mode == "bn" else {}
        ckpt = oneshot.train_supernet(mode=mode, epochs=epochs, lr=lr, checkpoint=out / f"{label}.pt",
                                      **common, **extra)
        state = read_checkpoint(ckpt)
        split = TrainConfig.from_dict(state["train"]).split()
        checks[label] = supernet_accuracy(load_supernet(state), split.val_x, split.val_y, seed=cfg.sample_seed,
                                          batch_size=cfg.batch_size)
        checks[label]["train_seconds"] = float(sum(h["seconds"] for h in state["history"]))
        say(f"  {label} supernet, validation accuracy of {checks[label]['paths']} random paths: {checks[label]['text']}")
        scorers = ((("rebn_acc", "rebn"), ("acc_no_rebn", "acc"), ("abs_angle", "angle")) if mode == "full"
                   else (("bn_indicator", "bn"),))
        for key, scorer in scorers:
            t = time.perf_counter()
            scores[key] = oneshot.score_cells(ckpt, cells, scorer, limit=cfg.rebn_images, seed=cfg.sample_seed)
            seconds[key] = (time.perf_counter() - t) / max(1, len(cells))
    return scores, seconds, checks


def _corr(x: Sequence[float], y: Sequence[float], mask: np.ndarray, bootstrap: int, seed: int) -> dict[str, Any]:
    from ...search import rank_correlation

    x, y = np.asarray(x, float)[mask], np.asarray(y, float)[mask]
    ok = np.isfinite(x) & np.isfinite(y)
    try:
        return rank_correlation(x[ok], y[ok], bootstrap=bootstrap, seed=seed).to_dict()
    except ValueError as exc:
        return {"error": str(exc).splitlines()[0]}


def mean_ceiling(value: float, seeds: int, kind: str = "kendall") -> float:
    """The noise ceiling against the mean of ``seeds`` seeds, from the rank correlation ``value``
    between two single seeds: what the true ranking itself would score against that mean.

    Model: a seed's accuracy = the cell's true accuracy + independent noise of one spread, so two
    seeds correlate by r = var(true) / var(seed), and the true accuracy correlates with the mean of
    k seeds by sqrt(k r / (1 + (k - 1) r)) (Spearman-Brown). Rank correlations are carried to and
    from r by the bivariate-normal relations (Kendall tau = 2/pi asin r; Spearman rho = 6/pi
    asin(r/2)). Seed against seed is noisy on both sides while a proxy is compared with the mean of
    the seeds, so a proxy can score above the seed-vs-seed row; this is the ceiling it is judged
    against. A non-positive seed-vs-seed correlation gives 0 (no reliable signal to rank)."""
    if not math.isfinite(value):
        return float("nan")
    r = math.sin(math.pi * value / 2) if kind == "kendall" else 2 * math.sin(math.pi * value / 6)
    if r <= 0:
        return 0.0
    c = math.sqrt(min(1.0, seeds * r / (1 + (seeds - 1) * r)))
    return 2 / math.pi * math.asin(c) if kind == "kendall" else 6 / math.pi * math.asin(c / 2)


def _mean_ceiling_corr(pair: Mapping[str, Any], seeds: int) -> dict[str, Any]:
    """``mean_ceiling`` of a seed-vs-seed correlation entry, its intervals mapped end to end (the
    map is increasing, so the interval of the ceiling is the map of the interval)."""
    out: dict[str, Any] = {}
    for key in ("kendall", "spearman"):
        if key in pair:
            out[key] = mean_ceiling(float(pair[key]), seeds, key)
            out[key + "_ci"] = [mean_ceiling(float(v), seeds, key) for v in pair[key + "_ci"]]
    return out or {"error": pair.get("error", "no seed-vs-seed correlation")}


def _below_ceiling(proxy: np.ndarray, truth: np.ndarray, s1: np.ndarray, s2: np.ndarray, *, bootstrap: int,
                   seed: int, seeds: int = 2) -> tuple[list[float], list[float]]:
    """Paired bootstrap over cells: Kendall tau of the proxy with the truth (the mean of
    ``seeds`` seeds), and the ceiling for that mean (``mean_ceiling`` of seed 2 against seed 1),
    on the same resamples."""
    from scipy.stats import kendalltau

    rng = np.random.default_rng(seed)
    tp, tc = [], []
    for _ in range(bootstrap):
        i = rng.integers(0, len(truth), len(truth))
        if min(np.ptp(proxy[i]), np.ptp(truth[i]), np.ptp(s1[i]), np.ptp(s2[i])) == 0:
            continue
        tp.append(float(kendalltau(proxy[i], truth[i])[0]))
        tc.append(mean_ceiling(float(kendalltau(s2[i], s1[i])[0]), seeds))
    return tp, tc


def verdicts(report: Mapping[str, Any], *, bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Per proxy, on the connected cells: does it rank (tau > 0; one family over the proxies,
    Holm-adjusted, under normlab.report.stats with a 0.1-tau margin) and how far below the noise
    ceiling for the mean of the seeds it is (``mean_ceiling``; ceiling - tau_proxy, with a 95%
    paired-bootstrap interval)."""
    from ...report.stats import Family, estimate
    from ..report import LABELS, TAU_MARGIN

    mask = np.asarray(report["connected"], bool)
    truth = np.asarray(report["truth"], float)[mask]
    s1, s2 = (np.asarray(report["runs"][k], float)[mask] for k in (0, 1))
    fam = Family(margin=TAU_MARGIN)
    rows = {}
    for key in PROXY_ORDER:
        vals = report["proxies"].get(key)
        c = report["correlation"]["connected"].get(key, {})
        if vals is None or "kendall" not in c:
            continue
        v = np.asarray(vals, float)[mask]
        tp, tc = _below_ceiling(v, truth, s1, s2, bootstrap=bootstrap, seed=seed, seeds=len(report["runs"]))
        gap = np.asarray(tc) - np.asarray(tp)
        se = float(np.std(tp, ddof=1)) if len(tp) > 1 else float("nan")
        idx = fam.add(estimate(float(c["kendall"]), se, int(mask.sum()), f"{LABELS.get(key, key)} ranks the connected cells",
                               method="bootstrap over the cells, normal approximation", unit="cells"))
        ceiling = mean_ceiling((report["noise_ceiling"]["connected"] or {}).get("kendall", float("nan")),
                               len(report["runs"]))
        rows[key] = {"index": idx, "tau": float(c["kendall"]), "ci": list(c["kendall_ci"]),
                     "excludes_0": bool(c["kendall_ci"][0] > 0 or c["kendall_ci"][1] < 0),
                     "below_ceiling": float(ceiling - c["kendall"]),
                     "below_ceiling_ci": [float(np.percentile(gap, 2.5)), float(np.percentile(gap, 97.5))]
                     if len(gap) else [float("nan")] * 2}
    abs_rows = _abs_claims(report.get("abs"), fam)
    decided = fam.decide() if len(fam) else []
    supernet_of = {"bn_indicator": "bn", "rebn_acc": "spos", "acc_no_rebn": "spos", "abs_angle": "spos"}
    checks = report.get("supernet_check", {})
    for key, row in rows.items():
        v = decided[row.pop("index")]
        row["verdict"] = v.word
        chk = checks.get(supernet_of.get(key, ""), {})
        row["supernet_at_chance"] = bool(chk) and not chk.get("above_chance", True)
        row["text"] = (f"{LABELS.get(key, key)}: tau {row['tau']:.2f} [{row['ci'][0]:.2f}, {row['ci'][1]:.2f}] on the "
                       f"connected cells ({'interval excludes 0' if row['excludes_0'] else 'interval contains 0'}); "
                       f"that it ranks them {v.text('in tau', predicate=True)}; "
                       f"{row['below_ceiling']:+.2f} below the noise ceiling for the mean of "
                       f"{len(report['runs'])} seeds ({ceiling:.2f}) "
                       f"[{row['below_ceiling_ci'][0]:+.2f}, {row['below_ceiling_ci'][1]:+.2f}]")
        if row["supernet_at_chance"]:
            row["text"] += (" -- BUT its supernet is within noise of chance, so this ranking did not come from "
                            "training" + (": with its gammas near their initial 1 and the parameter-free ops scoring 0, "
                                          "the indicator counts the cell's conv ops" if key == "bn_indicator" else ""))
    for key, row in abs_rows.items():
        v = decided[row.pop("index")]
        row["verdict"] = v.word
        row["text"] = f"{row['claim']}: {v.text('pairs', predicate=True)}"
    return {"proxies": rows, "abs": abs_rows, "family": fam.describe() if len(fam) else ""}


def _abs_claims(res: Mapping[str, Any] | None, fam: Any) -> dict[str, dict[str, Any]]:
    """ABS's drop as claims of the study's family: each ranking (angle, ReBN, stage-wise angle)
    keeps more of the ground truth's top pairs than a random drop does; the one-sided p of a
    permutation test against the random drops (each edge keeping one op, as the rankings do):
    (1 + #random drops keeping at least as many) / (1 + #random drops)."""
    from ...report.stats import exact

    if not res or not res.get("random", {}).get("kept_of_top"):
        return {}
    rand = np.asarray(res["random"]["kept_of_top"], float)
    rows = {}
    named = [("angle", "ABS's angle", res["angle"]), ("rebn", "ReBN accuracy", res["rebn"])]
    if "stagewise" in res:
        named.append(("stagewise", "ABS's angle, stage-wise", res["stagewise"]["final"]))
    for key, label, r in named:
        kept = int(r["kept_of_top"])
        p = float((1 + np.sum(rand >= kept)) / (1 + len(rand)))
        claim = f"{label} keeps more of the truth's top {res['top_n']} pairs than a random drop ({kept} vs {rand.mean():.1f})"
        idx = fam.add(exact(kept - float(rand.mean()), p, len(rand), claim, unit="random drops",
                            method=f"permutation test against {len(rand)} random drops of {res['drop']} (each edge "
                                   f"keeps one op)"))
        rows[key] = {"index": idx, "kept": kept, "random_mean": float(rand.mean()), "p": p, "claim": claim}
    return rows


def run_study(cfg: StudyConfig, *, out_dir: str | Path, store: Any = None, name: str = "nas-nb201-study",
              executor: Any = None, log: Callable[[str], None] | None = None,
              on_result: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Run the study (resumes from ``out_dir`` and the store) and write report.json, the tables
    (report.md), the plots and report.html to ``out_dir``; returns the report."""
    from ...runtime import Store
    from ..pipeline import dataset_info
    from .table import load_table

    say = log or (lambda m: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    db = store if isinstance(store, Store) else (Store(store) if store else Store(out / "study.sqlite"))
    t0 = time.perf_counter()
    try:
        info = dataset_info(cfg.data_spec)
        cin, classes, size = info.in_channels, info.num_classes, info.image_size[0]
        table = load_table(cfg.table)
        cells, why = study_cells(cfg, table)
        say(f"ground truth: {len(cells)} cells x {len(cfg.seeds)} seeds, {cfg.epochs} epochs on {cfg.data_spec}")
        runs = _truth(cfg, cells, db, name, executor, on_result)
        t_truth = time.perf_counter() - t0
        scores, seconds = _zero_cost(cfg, cells, cin, classes, size)
        one, one_sec, checks = _supernets(cfg, cells, out, db, say)
    finally:
        if db is not store:
            db.close()
    t_abs = time.perf_counter()
    abs_res = study_abs(cfg, cells, runs, out / "spos.pt", say)
    staged = study_abs_stages(cfg, cells, runs, out, say)
    if abs_res is not None and staged is not None:
        abs_res["stagewise"] = staged
    t_abs = time.perf_counter() - t_abs
    scores.update(one)
    seconds.update(one_sec)
    proxies = {k: scores[k] for k in PROXY_ORDER if k in scores}
    truth = runs.mean(axis=1)
    conn = np.array([connected(a) for a in cells])
    masks = {"all": np.ones(len(cells), bool), "connected": conn}
    table_acc = np.array([table.accuracy(a, cfg.table_dataset) for a in cells], dtype=float)
    corr, ceiling, transfer = {}, {}, {}
    for label, m in masks.items():
        corr[label] = {k: _corr(v, truth, m, cfg.bootstrap, cfg.sample_seed) for k, v in proxies.items()}
        ceiling[label] = _corr(runs[:, 1], runs[:, 0], m, cfg.bootstrap, cfg.sample_seed)
        transfer[label] = _corr(table_acc, truth, m, cfg.bootstrap, cfg.sample_seed)

    def spread(m: np.ndarray) -> dict[str, float]:
        t = truth[m]
        return {"min": float(t.min()), "max": float(t.max()), "range": float(t.max() - t.min()),
                "median": float(np.median(t)), "seed_diff_mean_abs": float(np.mean(np.abs(runs[m, 1] - runs[m, 0])))}
    report = {"config": cfg.to_dict(), "data": cfg.data_spec, "cells": list(cells), "why": why,
              "connected": conn.tolist(), "runs": [runs[:, j].tolist() for j in range(runs.shape[1])],
              "truth": truth.tolist(), "table_accuracy": table_acc.tolist(), "table": str(table.source),
              "standin": bool(table.standin), "proxies": {k: list(map(float, v)) for k, v in proxies.items()},
              "seconds_per_cell": seconds, "correlation": corr, "noise_ceiling": ceiling, "table_transfer": transfer,
              "spread": {k: spread(m) for k, m in masks.items()}, "supernet_check": checks,
              "seconds": {"ground_truth": t_truth, "abs": t_abs, "total": time.perf_counter() - t0}}
    if abs_res is not None:
        report["abs"] = abs_res
    report["verdicts"] = verdicts(report, bootstrap=cfg.bootstrap, seed=cfg.sample_seed)
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    report["files"] = {k: str(v) for k, v in write_study_report(report, out).items()}
    return report


# -- ABS's drop against the study's own ground truth ------------------------------------------------

_DATASET_NAMES = {"fashion-mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}


def study_truth_table(cfg: StudyConfig, cells: Sequence[str], runs: np.ndarray):
    """The study's ground truth as a table of the sampled cells
    (:func:`normlab.nas.nb201.table.sampled_table`): per cell its stand-alone test accuracy with
    every seed, in percent, under the name ``cfg.data_spec``, so that what reads the NB201 table
    by its cells (ABS's drop) reads the study's own measurements instead."""
    from .table import sampled_table

    name = cfg.dataset.partition(":")[0]
    label = f"{len(cells)} sampled cells, stand-alone {_DATASET_NAMES.get(name, name)}"
    return sampled_table(cells, 100 * np.asarray(runs, float), dataset=cfg.data_spec, seeds=cfg.seeds, label=label,
                         split="test")


def study_abs(cfg: StudyConfig, cells: Sequence[str], runs: np.ndarray, checkpoint: Path,
              say: Callable[[str], None]) -> dict[str, Any] | None:
    """ABS's NB201 drop (:func:`normlab.nas.nb201.oneshot.abs_drop`) on the study's SPOS supernet,
    judged against the study's own ground truth (:func:`study_truth_table`): ``cfg.abs_drop`` of
    the 30 edge-ops dropped by angle, by ReBN accuracy (on the ``rebn_images`` validation images
    the cells are scored on) and ``cfg.random_drops`` times at random. None when ``abs_drop`` is 0."""
    from ...train import torch_threads
    from . import oneshot

    if not cfg.abs_drop:
        return None
    table = study_truth_table(cfg, cells, runs)
    say(f"ABS: dropping {cfg.abs_drop} of 30 edge-ops by angle, by ReBN ({cfg.abs_children} cells per edge-op) "
        f"and {cfg.random_drops} times at random; ground truth: {table.label}")
    with torch_threads(cfg.threads):
        return oneshot.abs_drop(str(checkpoint), table, cfg.data_spec, drop=cfg.abs_drop, children=cfg.abs_children,
                                seed=cfg.sample_seed, random_drops=cfg.random_drops, val_limit=cfg.rebn_images,
                                split="test")


def study_abs_stages(cfg: StudyConfig, cells: Sequence[str], runs: np.ndarray, out: Path,
                     say: Callable[[str], None]) -> dict[str, Any] | None:
    """ABS's stage-wise shrink on NB201 (:func:`normlab.nas.search.abs_shrink`, the loop the MBConv
    space uses, through the same checkpointed supernet training): a SPOS supernet with the SPOS
    supernet's settings and its one cosine schedule over ``spos_epochs``, trained ``spos_epochs -
    abs_stages * abs_stage_epochs`` epochs over the whole space, then ``abs_stages`` times: score
    every allowed edge-op by angle (``abs_children`` cells from the allowed ops), drop the
    ``abs_drop / abs_stages`` lowest, train ``abs_stage_epochs`` more on what is left. The
    checkpoint (``out/abs-stages.pt``) carries the stages, so a rerun resumes or reuses it. Each
    stage's space is judged against the study's ground truth like the one-step drop. None when
    ``abs_stages`` is 0."""
    from ...train import torch_threads
    from ..search import abs_shrink
    from . import oneshot

    if not cfg.abs_stages:
        return None
    per = cfg.abs_drop // cfg.abs_stages
    first = cfg.spos_epochs - cfg.abs_stages * cfg.abs_stage_epochs
    ckpt = out / "abs-stages.pt"
    done = _checkpoint_epoch(ckpt)
    say(f"ABS stage-wise: {first} epochs, then {cfg.abs_stages} x (drop {per} edge-ops by angle, "
        f"{cfg.abs_stage_epochs} epochs)" + (f" (its checkpoint has {done} of {cfg.spos_epochs} epochs)" if done else ""))
    space, tcfg = oneshot.supernet_settings(dataset=cfg.data_spec, mode="full", C=cfg.C, N=cfg.N, image_size=None,
                                            epochs=cfg.spos_epochs, batch_size=cfg.batch_size, lr=cfg.spos_lr,
                                            seed=cfg.sample_seed, norm=cfg.norm)
    t = time.perf_counter()
    with torch_threads(cfg.threads):
        res = abs_shrink(space, tcfg, first_epochs=first, stage_epochs=cfg.abs_stage_epochs, drop=per, target=1,
                         children=cfg.abs_children, max_stages=cfg.abs_stages, checkpoint=ckpt, seed=cfg.sample_seed)
    judge = oneshot.ShrunkJudge(study_truth_table(cfg, cells, runs), cfg.data_spec, drop=cfg.abs_drop, split="test")
    stages = [{"stage": st["stage"], "epoch": st["epoch"], "angle_scores": st["scores"], **judge.describe(st["allowed"])}
              for st in res["stages"]]
    return {"stages": cfg.abs_stages, "per_stage": per, "first_epochs": first, "stage_epochs": cfg.abs_stage_epochs,
            "children": cfg.abs_children, "seconds": time.perf_counter() - t,
            "train_seconds": float(sum(h["seconds"] for h in res["state"]["history"])),
            "final": judge.describe(res["allowed"]), "per_stage_spaces": stages}


# -- the report ------------------------------------------------------------------------------------

def _fmt(c: Mapping[str, Any], key: str) -> str:
    if key not in c:
        return c.get("error", "-")
    return f"{c[key]:.2f} [{c[key + '_ci'][0]:.2f}, {c[key + '_ci'][1]:.2f}]"


def study_table(report: Mapping[str, Any]):
    """The table: the noise ceiling first, then every proxy and the table's transfer, tau and rho
    over all cells and over connected cells."""
    from ...report import ReportTable
    from ..report import LABELS

    n_all, n_conn = len(report["cells"]), int(sum(report["connected"]))
    t = ReportTable(f"rank correlation with stand-alone test accuracy ({n_all} cells, {n_conn} connected)",
                    ["", f"tau, all {n_all}", f"rho, all {n_all}", f"tau, connected {n_conn}",
                     f"rho, connected {n_conn}", "ms / cell"],
                    note="95% bootstrap intervals over the cells; judge the proxies on the connected cells; the "
                         "proxies are ranked against the mean of the seeds, so their ceiling is the second row "
                         "(what the true ranking would score against that mean), not seed against seed")
    k = len(report["runs"])
    rows = [("ground truth seed 2 vs seed 1 (noise ceiling)", report["noise_ceiling"], None),
            (f"the ceiling for the mean of {k} seeds (Spearman-Brown)",
             {lab: _mean_ceiling_corr(report["noise_ceiling"][lab], k) for lab in ("all", "connected")}, None)]
    rows += [(LABELS.get(k, k), {lab: report["correlation"][lab][k] for lab in ("all", "connected")},
              report["seconds_per_cell"].get(k)) for k in report["proxies"]]
    rows.append((f"NB201 table, {report['config']['table_dataset']}" + (" (STAND-IN)" if report["standin"] else ""),
                 report["table_transfer"], None))
    for label, c, sec in rows:
        t.add([label, _fmt(c["all"], "kendall"), _fmt(c["all"], "spearman"), _fmt(c["connected"], "kendall"),
               _fmt(c["connected"], "spearman"), "-" if sec is None else f"{1e3 * sec:.3g}"])
    return t


def study_summary(report: Mapping[str, Any]) -> str:
    """The verdicts and what the numbers say, in sentences."""
    sp = report["spread"]
    lines = [f"Stand-alone test accuracy (mean of {len(report['runs'])} seeds): all cells "
             f"{100 * sp['all']['min']:.1f}-{100 * sp['all']['max']:.1f}% (spread {100 * sp['all']['range']:.1f} "
             f"points), connected cells {100 * sp['connected']['min']:.1f}-{100 * sp['connected']['max']:.1f}% "
             f"(spread {100 * sp['connected']['range']:.1f} points); the two seeds of a cell differ by "
             f"{100 * sp['connected']['seed_diff_mean_abs']:.2f} points on average (connected)."]
    ceil = report["noise_ceiling"]["connected"]
    if "kendall" in ceil:
        k = len(report["runs"])
        lines.append(f"Noise ceiling (seed 2 vs seed 1, connected cells): tau {_fmt(ceil, 'kendall')}; against the "
                     f"mean of {k} seeds, which the proxies are ranked against, the true ranking would score tau "
                     f"{_fmt(_mean_ceiling_corr(ceil, k), 'kendall')} (Spearman-Brown, normal noise): the "
                     f"ceiling each proxy is measured from.")
    for label, chk in report.get("supernet_check", {}).items():
        lines.append(f"{'SPOS' if label == 'spos' else 'BN-only'} supernet: {chk['text']}"
                     + ("" if chk["above_chance"] else " -- its scores carry no signal"))
    for row in report["verdicts"]["proxies"].values():
        lines.append(row["text"] + ".")
    for row in report["verdicts"].get("abs", {}).values():
        lines.append(row["text"] + ".")
    tr = report["table_transfer"]["connected"]
    if "kendall" in tr:
        lines.append(f"Ranking transfer: the table's {report['config']['table_dataset']} accuracy against our ground "
                     f"truth, tau {_fmt(tr, 'kendall')} on the connected cells"
                     + (" (STAND-IN table: its accuracies are made up, so this is plumbing, not evidence)."
                        if report["standin"] else "."))
    if report["verdicts"]["family"]:
        lines.append(report["verdicts"]["family"])
    return "\n\n".join(lines)


def write_study_report(report: Mapping[str, Any], out: Path) -> dict[str, Path]:
    """report.md, report.html, scatter.png (each proxy against the truth, connected cells in
    colour, disconnected in grey) and seeds.png (seed 2 against seed 1)."""
    from ...report import html_page, html_table, markdown_table
    from ...report.figures import pyplot, save_figure
    from ..report import LABELS

    plt = pyplot()
    truth = 100 * np.asarray(report["truth"], float)
    conn = np.asarray(report["connected"], bool)
    keys = list(report["proxies"]) + ["table"]
    # disconnected cells sit at chance, far below the rest: drawn on the bottom edge, so that the
    # connected cells (the ones the proxies are judged on) fill the axes
    shown = truth.copy()
    ylim = None
    if conn.sum() >= 2 and (~conn).any():
        lo, hi = truth[conn].min(), truth[conn].max()
        pad = 0.08 * max(hi - lo, 1e-6)
        ylim = (lo - 2 * pad, hi + pad)
        shown = np.where(conn, truth, lo - 1.5 * pad)
    off = (f"disconnected (at {truth[~conn].mean():.0f}%, drawn at the bottom)" if ylim is not None
           else "disconnected")
    cols = 4
    nrows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.8 * cols, 3.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        x = np.asarray(report["table_accuracy"] if key == "table" else report["proxies"][key], float)
        zero = x < -1e100                     # synflow of a cell without a path: log(0), drawn at the left
        if zero.any() and (~zero).any():
            x = np.where(zero, x[~zero].min() - 0.05 * max(1e-9, np.ptp(x[~zero])), x)
        ax.scatter(x[~conn], shown[~conn], s=16, color="0.6", marker="v", label=off)
        ax.scatter(x[conn], shown[conn], s=16, alpha=0.8, label="connected")
        if ylim is not None:
            ax.set_ylim(*ylim)
        c = (report["table_transfer"] if key == "table" else
             {lab: report["correlation"][lab][key] for lab in ("all", "connected")})["connected"]
        name = "NB201 table" + (" (stand-in)" if report["standin"] and key == "table" else "") if key == "table" \
            else LABELS.get(key, key)
        ax.set_title(f"{name}: tau {c['kendall']:.2f}" if "kendall" in c else name, fontsize=9)
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel("stand-alone test acc. (%)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    scatter = save_figure(fig, out / "scatter")[0]
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    r1, r2 = (100 * np.asarray(report["runs"][k], float) for k in (0, 1))
    ax.scatter(r1[~conn], r2[~conn], s=14, color="0.6", label="disconnected")
    ax.scatter(r1[conn], r2[conn], s=16, label="connected")
    lo, hi = min(r1.min(), r2.min()), max(r1.max(), r2.max())
    ax.plot([lo, hi], [lo, hi], color="0.5", linewidth=0.8)
    ax.set_xlabel(f"seed {report['config']['seeds'][0]} test acc. (%)")
    ax.set_ylabel(f"seed {report['config']['seeds'][1]} test acc. (%)")
    ax.set_title("the noise ceiling: one cell, two seeds", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    seeds = save_figure(fig, out / "seeds")[0]
    table = study_table(report)
    summary = study_summary(report)
    md = markdown_table(table) + "\n" + summary + "\n"
    sections = [html_table(table)]
    if "abs" in report:
        import html

        from .oneshot import abs_table_md

        abs_md = abs_table_md(report["abs"])
        md += "\n" + abs_md
        sections.append(f"<h2>ABS's drop on NB201</h2><pre>{html.escape(abs_md)}</pre>")
    (out / "report.md").write_text(md)
    page = html_page("NAS-Bench-201 cells on CPU: do the proxies rank like stand-alone training?", sections,
                     figures=[("each proxy against stand-alone accuracy", scatter), ("seed 2 against seed 1", seeds)],
                     intro=summary, markdown=md)
    (out / "report.html").write_text(page)
    return {"scatter": scatter, "seeds": seeds, "markdown": out / "report.md", "html": out / "report.html"}
