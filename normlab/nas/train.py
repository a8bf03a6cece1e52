"""Supernet training with uniform single-path sampling (SPOS), in two modes.

``mode="full"`` (SPOS, Guo et al. 2020): every step samples one op per layer uniformly (from the
ops each layer still allows) and trains that path's weights with SGD. Gradients are set to None
before each step, so an op off the path has no gradient and torch's SGD skips it entirely: no
momentum and no weight-decay drift on unsampled ops.

``mode="bn"`` (BN-NAS, Chen et al. 2021): the supernet stays at its random initialisation except
the BN affine parameters (gamma, beta), which train alone, without weight decay, usually for a
tenth of the SPOS epochs. ``bn_params="last"`` trains only the last norm of every op (after the
1x1 projection: the norm the BN indicator reads); ``"all"`` every norm of the supernet.

Determinism: step t of epoch e samples its path from ``random.Random(f"{seed}:{e}")`` and shuffles
with a torch generator seeded by (seed, e), so a run resumed from its epoch checkpoint replays
exactly what an uninterrupted run does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._settings import Settings
from ..layers import is_norm
from ..train.callbacks import Callback
from .supernet import NasError, SpaceConfig, Supernet, build_supernet, check_positive, space_from_dict

__all__ = ["SupernetSettings", "TrainConfig", "DataSplit", "load_split", "train_supernet", "trainable_parameters",
           "norm_modules", "is_norm", "load_supernet", "read_checkpoint", "write_checkpoint", "checkpoint_lock",
           "train_standalone", "supernet_accuracy", "evaluate_accuracy", "split_data"]


@dataclass
class DataSplit:
    """Normalised tensors: train, a validation split carved from the training data, and test."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    in_channels: int
    image_size: int


def load_split(dataset: str, seed: int = 0, val_fraction: float = 0.2, train_limit: int | None = None,
               val_limit: int | None = None, image_size: int | None = None) -> DataSplit:
    """The dataset's training split shuffled with ``seed`` and cut into train / validation (the
    last ``val_fraction``); ``train_limit`` keeps the first samples of train only, ``val_limit``
    the first of validation (ReBN evaluates every subnet on it); ``image_size`` resizes every
    image (bilinear, antialiased) to that square size. Cached in the per-process dataset cache
    (``normlab.runtime.data``)."""
    from ..runtime.data import cached, load_data

    if not 0 < val_fraction < 1:
        raise NasError(f"val_fraction={val_fraction!r} is invalid: expected a number in (0, 1)")
    key = ("nas-split", dataset, seed, float(val_fraction), train_limit, val_limit, image_size)
    return cached(key, lambda: _make_split(load_data(dataset), seed, val_fraction, train_limit, val_limit,
                                           image_size))


def _make_split(data: Any, seed: int, val_fraction: float, train_limit: int | None,
                val_limit: int | None, image_size: int | None = None) -> DataSplit:

    def norm(x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(data.mean).view(1, -1, 1, 1)
        std = torch.tensor(data.std).view(1, -1, 1, 1)
        x = (x.float() / data.scale - mean) / std
        if image_size is not None and tuple(x.shape[-2:]) != (image_size, image_size):
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
        return x

    n = len(data.train_y)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_val = max(1, int(round(n * val_fraction)))
    tr, va = order[:n - n_val], order[n - n_val:]
    if train_limit is not None:
        tr = tr[:train_limit]
    if val_limit is not None:
        va = va[:val_limit]
    return DataSplit(norm(data.train_x[tr]), data.train_y[tr], norm(data.train_x[va]), data.train_y[va],
                     norm(data.test_x), data.test_y, data.num_classes, data.in_channels,
                     image_size or data.image_size[0])


def split_data(split: DataSplit, test: str = "test") -> Any:
    """The split as ``normlab.data.ImageData`` (already normalised: scale 1, mean 0, std 1, so
    its batches are the split's tensors exactly), its "test" split the ``test`` or ``val`` one."""
    from ..data import ImageData

    tx, ty = (split.test_x, split.test_y) if test == "test" else (split.val_x, split.val_y)
    c = split.in_channels
    return ImageData(name="nas-split", num_classes=split.num_classes, in_channels=c,
                     image_size=(split.image_size, split.image_size), mean=(0.0,) * c, std=(1.0,) * c,
                     train_x=split.train_x, train_y=split.train_y, test_x=tx, test_y=ty)


@dataclass(frozen=True)
class SupernetSettings(Settings):
    """How a supernet (or a standalone subnet) is trained: the supernet's own settings (dataset
    and its train/validation split, ``mode`` SPOS or BN-NAS, ``bn_params``) and the SGD settings
    they share with every training in normlab; :meth:`fit_config` is the latter as the one
    ``normlab.train.TrainConfig``. Also importable as ``normlab.nas.train.TrainConfig`` (the name
    nas's configs, CLI and pipeline have always used)."""

    dataset: str = "mnist5k"
    mode: str = "full"                 # full (SPOS) | bn (BN-NAS: only BN affine parameters)
    bn_params: str = "last"            # bn mode: last (each op's last norm) | all
    epochs: int = 4
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5         # on conv/linear weights; never on norms or in bn mode
    seed: int = 0
    val_fraction: float = 0.2
    train_limit: int | None = None
    val_limit: int | None = None
    image_size: int | None = None      # resize every image to this square size (None: as stored)
    augment: bool = False              # random crop (4-pixel zero padding) + horizontal flip, per sample

    def __post_init__(self) -> None:
        if self.mode not in ("full", "bn"):
            raise NasError(f"mode={self.mode!r} is invalid: expected 'full' (SPOS) or 'bn' (BN-NAS)")
        if self.bn_params not in ("last", "all"):
            raise NasError(f"bn_params={self.bn_params!r} is invalid: expected 'last' or 'all'")
        check_positive(self, ("epochs", "batch_size"))
        if not self.lr > 0:
            raise NasError(f"lr={self.lr!r} is invalid: expected a positive number")

    settings_error = NasError
    settings_label = "training"

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for k in ("image_size", "augment"):          # added later: absent at their default, so older
            if not out[k]:                            # checkpoints keep resuming
                del out[k]
        return out

    def split(self) -> "DataSplit":
        return load_split(self.dataset, self.seed, self.val_fraction, self.train_limit, self.val_limit,
                          self.image_size)

    def fit_config(self) -> Any:
        """Stand-alone training as ``normlab.train.TrainConfig``: SGD (Nesterov when momentum > 0)
        at ``lr`` (no batch-size scaling), cosine to 0 over ``epochs``, no augmentation, on the CPU,
        evaluated by the caller."""
        from ..train import TrainConfig as FitConfig

        return FitConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, base_batch_size=None,
                         momentum=self.momentum, nesterov=self.momentum > 0, weight_decay=self.weight_decay,
                         norm_weight_decay=0.0, schedule="cosine", augment=False, seed=self.seed,
                         device="cpu", eval_every=0, final_eval=False, progress=False)


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop of each image from its ``pad``-pixel zero-padded copy, and a horizontal flip of
    half of them (the CIFAR recipe NB201 trains with); offsets drawn from ``gen`` (deterministic)."""
    n, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    dev = x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    iy = (torch.arange(h)[None, :] + dy[:, None]).to(dev)                  # (n, h)
    ix = (torch.arange(w)[None, :] + dx[:, None])
    ix = torch.where(flip[:, None], ix.flip(1), ix).to(dev)                # (n, w)
    rows = torch.arange(n, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[rows, iy[:, :, None], ix[:, None, :]]   # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


TrainConfig = SupernetSettings          # the name nas has always used (configs, CLI, pipeline)


def norm_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if is_norm(m) and m is not model]


def evaluate_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode, and left there) on normalised tensors ``x``,
    ``y``, ``batch_size`` samples at a time: ``normlab.train.evaluate`` on them."""
    from ..data import ImageData
    from ..train import evaluate

    c = x.shape[1]
    data = ImageData(name="tensors", num_classes=0, in_channels=c, image_size=tuple(x.shape[2:4]),
                     mean=(0.0,) * c, std=(1.0,) * c, train_x=x[:0], train_y=y[:0], test_x=x, test_y=y)
    model.eval()
    return evaluate(model, data, "test", batch_size=batch_size)["test_acc"]


@torch.no_grad()
def supernet_accuracy(net: Supernet, x: torch.Tensor, y: torch.Tensor, *, paths: int = 8, seed: int = 0,
                      batch_size: int = 64, allowed: Sequence[Sequence[int]] | None = None,
                      alpha: float = 0.01) -> dict[str, Any]:
    """Has the supernet learnt anything? Mean accuracy on ``x``, ``y`` (the validation split) of
    ``paths`` paths drawn uniformly (from ``allowed``) with a generator seeded by ``seed``, each
    op's norms normalising with the statistics of each batch of ``batch_size``, as in training
    (a shared op's running statistics mix every path's; the buffers are restored afterwards),
    and the exact binomial test of that accuracy against 1/classes on ``len(y)`` images
    (:func:`normlab.report.stats.chance_test`; conservative: averaging over paths only lowers
    the variance). A supernet within noise of chance has norm affines that carry no signal."""
    from ..report.stats import chance_test

    rng = random.Random(f"check:{seed}")
    allowed = [list(a) for a in (allowed or [range(n) for n in net.num_ops])]
    saved = {k: v.clone() for k, v in net.named_buffers()}
    was = net.training
    net.train()
    accs = []
    try:
        for _ in range(paths):
            path = [a[rng.randrange(len(a))] for a in allowed]
            correct = 0
            for s in range(0, len(y), batch_size):
                correct += int((net(x[s:s + batch_size], path).argmax(1) == y[s:s + batch_size]).sum())
            accs.append(correct / max(1, len(y)))
    finally:
        net.load_state_dict(saved, strict=False)
        net.train(was)
    acc = sum(accs) / len(accs)
    out = chance_test(acc, len(y), int(net.classifier.out_features), alpha=alpha)
    out.update(paths=paths, path_accuracies=accs)
    return out


def trainable_parameters(net: Supernet, mode: str, bn_params: str = "last") -> list[nn.Parameter]:
    """The parameters a mode trains: all of them, or the BN affine parameters (BN-NAS). Works on
    either supernet (MBConv or NB201) through ``net.op_norms(layer, op)``: ops without a norm
    (identity, NB201's none/skip/pool) train nothing in BN mode."""
    if mode == "full":
        return list(net.parameters())
    if bn_params == "last":
        mods = [m for layer, k in enumerate(net.num_ops) for op in range(k) for m in net.op_norms(layer, op)]
    else:
        mods = norm_modules(net)
    return [p for m in mods for p in m.parameters(recurse=False)]


def _param_groups(net: nn.Module, params: Sequence[nn.Parameter], weight_decay: float, mode: str) -> list[dict]:
    norm_ids = {id(p) for m in norm_modules(net) for p in m.parameters(recurse=False)}
    decay = [p for p in params if id(p) not in norm_ids and p.ndim > 1]
    rest = [p for p in params if id(p) in norm_ids or p.ndim <= 1]
    wd = weight_decay if mode == "full" else 0.0
    return [g for g in ({"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}) if g["params"]]


def epoch_rng(seed: int, epoch: int) -> random.Random:
    return random.Random(f"{seed}:{epoch}")


_HELD: dict[str, int] = {}


@contextlib.contextmanager
def checkpoint_lock(checkpoint: str | Path | None) -> Iterator[None]:
    """Hold an exclusive lock on a checkpoint file while it is being trained (a ``.NAME.lock``
    file beside it; re-entrant within a process; no-op without fcntl or a checkpoint). Two runs
    that train the same checkpoint at once would overwrite each other's epochs, so a run could
    read back a less-trained supernet; the second run waits, then resumes from the finished file."""
    if checkpoint is None:
        yield
        return
    try:
        import fcntl
    except ImportError:                                  # Windows: no advisory locks, best effort
        yield
        return
    path = Path(checkpoint)
    key = str(path.resolve())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logging.getLogger(__name__).warning(f"waiting for another run that is training {path}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        _HELD[key] = 1
        try:
            yield
        finally:
            del _HELD[key]
            fcntl.flock(fh, fcntl.LOCK_UN)


def train_supernet(space: SpaceConfig, cfg: TrainConfig, *, checkpoint: str | Path | None = None,
                   allowed: Sequence[Sequence[int]] | None = None, epochs: int | None = None,
                   total_epochs: int | None = None, net: Supernet | None = None,
                   on_epoch: Callable[[int, dict], None] | None = None, snapshots: bool = False,
                   resume: dict[str, Any] | None = None, device: str | torch.device | None = None) -> dict[str, Any]:
    """Train a supernet by uniform single-path sampling; returns the checkpoint dict:
    ``model`` (state), ``init`` (W0, the state at initialisation, for the ABS angle), ``epoch``,
    ``history`` (per epoch loss/accuracy/seconds), ``space``/``train`` (configs), ``sampled``
    (per layer, how often each op was on the path) and, with ``snapshots``, the model state at
    the end of every epoch.

    With ``checkpoint`` the state is saved after every epoch and a rerun resumes from it (it must
    have been written with the same configs). ``allowed`` restricts sampling per layer (ABS);
    ``resume`` continues from a checkpoint dict held in memory. ``epochs`` trains that many more epochs (default ``cfg.epochs`` in all); ``total_epochs`` is
    the length of the one cosine learning-rate schedule (ABS's stages share one schedule).
    ``space`` is either supernet's settings (:class:`SpaceConfig`, the MBConv SPOS space, or
    :class:`NB201SupernetConfig`, the NB201 cell); ``device`` (e.g. ``cuda``) runs the steps there,
    while checkpoints stay on the CPU.
    """
    with checkpoint_lock(checkpoint):
        return _train_supernet(space, cfg, checkpoint=checkpoint, allowed=allowed, epochs=epochs,
                               total_epochs=total_epochs, net=net, on_epoch=on_epoch, snapshots=snapshots,
                               resume=resume, device=device)


def _train_supernet(space: SpaceConfig, cfg: TrainConfig, *, checkpoint: str | Path | None,
                    allowed: Sequence[Sequence[int]] | None, epochs: int | None, total_epochs: int | None,
                    net: Supernet | None, on_epoch: Callable[[int, dict], None] | None, snapshots: bool,
                    resume: dict[str, Any] | None, device: str | torch.device | None = None) -> dict[str, Any]:
    split = cfg.split()
    if split.in_channels != space.in_channels or split.num_classes != space.num_classes:
        raise NasError(f"the space expects {space.in_channels} input channels and {space.num_classes} "
                       f"classes, but {cfg.dataset} has {split.in_channels} and {split.num_classes}")
    path = Path(checkpoint) if checkpoint is not None else None
    state: dict[str, Any] | None = resume
    if state is None and path is not None and path.exists():
        state = read_checkpoint(path)
        if state.get("space") != space.to_dict() or state.get("train") != cfg.to_dict():
            raise NasError(f"checkpoint {path} was written for other settings: remove it or use another path")
    if net is None:
        torch.manual_seed(cfg.seed)
        net = build_supernet(space)
    if state is None:
        state = {"space": space.to_dict(), "train": cfg.to_dict(), "epoch": 0, "history": [],
                 "init": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
                 "sampled": [[0] * n for n in net.num_ops], "snapshots": [], "optimizer": None}
    else:
        net.load_state_dict(state["model"])
    dev = torch.device(device) if device is not None else next(net.parameters()).device
    net.to(dev)
    allowed = [list(a) for a in (allowed or [range(n) for n in net.num_ops])]
    stop = state["epoch"] + epochs if epochs is not None else cfg.epochs
    total = total_epochs or max(stop, cfg.epochs)

    for p in net.parameters():
        p.requires_grad_(False)
    params = trainable_parameters(net, cfg.mode, cfg.bn_params)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(_param_groups(net, params, cfg.weight_decay, cfg.mode), lr=cfg.lr,
                          momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    if state.get("optimizer") is not None:
        opt.load_state_dict(state["optimizer"])
    n = len(split.train_y)
    steps_per_epoch = max(1, n // cfg.batch_size)
    total_steps = total * steps_per_epoch
    train_x, train_y = split.train_x.to(dev), split.train_y.to(dev)
    while state["epoch"] < stop:
        epoch = state["epoch"]
        rng = epoch_rng(cfg.seed, epoch)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 100003 + epoch))
        aug = torch.Generator().manual_seed(cfg.seed * 100019 + epoch + 7) if cfg.augment else None
        net.train()
        t0, loss_sum, correct, seen = time.time(), 0.0, 0, 0
        for step in range(steps_per_epoch):
            t = epoch * steps_per_epoch + step
            lr = 0.5 * cfg.lr * (1 + math.cos(math.pi * min(t, total_steps) / total_steps))
            for g in opt.param_groups:
                g["lr"] = lr
            choice = [a[rng.randrange(len(a))] for a in allowed]
            for layer, i in enumerate(choice):
                state["sampled"][layer][i] += 1
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size].to(dev)
            x, y = train_x[idx], train_y[idx]
            if aug is not None:
                x = augment_batch(x, aug)
            opt.zero_grad(set_to_none=True)
            out = net(x, choice)
            loss = F.cross_entropy(out, y)
            if loss.requires_grad:                  # BN mode: a path of parameter-free ops trains nothing
                loss.backward()
                opt.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
        state["epoch"] = epoch + 1
        row = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen,
               "seconds": time.time() - t0, "lr": lr}
        state["history"].append(row)
        state["model"] = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        state["optimizer"] = _cpu(opt.state_dict())
        if snapshots:
            state["snapshots"].append(state["model"])
        if path is not None:
            write_checkpoint(state, path)
        if on_epoch is not None:
            on_epoch(epoch + 1, row)
    for p in net.parameters():
        p.requires_grad_(True)
    state.setdefault("model", {k: v.detach().cpu().clone() for k, v in net.state_dict().items()})
    return state


def _cpu(obj: Any) -> Any:
    """Every tensor in a nested dict/list moved to the CPU (checkpoints are device-free)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu(v) for v in obj)
    return obj


# -- checkpoints: tensors and plain data only ---------------------------------------------------

_PLAIN = (str, int, float, bool, type(None), torch.Tensor)
_REQUIRED = ("space", "train", "epoch", "model")


def _check_plain(obj: Any, where: str = "checkpoint") -> None:
    """Raise unless ``obj`` is built of dicts, lists, tuples, strings, numbers, None and tensors
    (what ``torch.load(weights_only=True)`` reads back), so that nothing else is ever written."""
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is not a string or integer")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, _PLAIN):
        raise TypeError(f"{where} is a {type(obj).__name__}: a checkpoint holds only tensors and plain data")


def write_checkpoint(state: Mapping[str, Any], path: str | Path) -> None:
    """Write a supernet checkpoint atomically; it holds only tensors and plain data (state dicts,
    JSON-able settings, lists and numbers), checked before writing."""
    _check_plain(state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")     # one per process: two runs may share a file
    torch.save(dict(state), tmp)
    tmp.replace(path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A supernet checkpoint read with ``torch.load(weights_only=True)``: tensors and plain data
    only, so a crafted file cannot run code. Anything else (another kind of file, a pickle that
    names functions or classes, a checkpoint missing its parts) is a one-line :class:`NasError`."""
    p = Path(path)
    if not p.is_file():
        raise NasError(f"supernet checkpoint {p} does not exist: train one first ('normlab nas train')")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:                                  # noqa: BLE001  (any unreadable file)
        text = str(exc)
        found = re.search(r"(?:unsupported|Unsupported global:) GLOBAL ([\w.]+)", text)
        if found:
            raise NasError(f"{p} holds objects other than tensors and plain data ({found.group(1)}), which "
                           f"are never loaded: it is not a checkpoint written by normlab; train one with "
                           f"'normlab nas train'") from None
        raise NasError(f"{p} is not a supernet checkpoint from 'normlab nas train' (torch cannot read "
                       f"it as a file of tensors and plain data)") from None
    missing = [k for k in _REQUIRED if not isinstance(state, dict) or k not in state]
    if missing:
        raise NasError(f"{p} is not a supernet checkpoint from 'normlab nas train' (missing "
                       f"{', '.join(missing)}); train one with 'normlab nas train'")
    if not isinstance(state["space"], dict) or not isinstance(state["train"], dict) \
            or not isinstance(state["model"], dict) or not isinstance(state["epoch"], int) \
            or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise NasError(f"{p} is not a supernet checkpoint from 'normlab nas train' (its parts have the "
                       f"wrong types); train one with 'normlab nas train'")
    return state


def load_supernet(state: Mapping[str, Any], which: str = "model") -> Supernet:
    """The supernet of a checkpoint dict (either space), with its trained (``model``) or initial
    (``init``) state."""
    net = build_supernet(space_from_dict(state["space"]))
    net.load_state_dict(state[which])
    return net


class _EpochShuffle(Callback):
    """Reseeds fit()'s shuffling generator at every epoch start with (seed, epoch), the order
    nas has always used (``seed * 100003 + epoch``), so a standalone run shuffles as before."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def _reseed(self, state: Any) -> None:
        state.generator.manual_seed(self.seed * 100003 + state.epoch)

    def on_fit_start(self, state: Any) -> None:
        self._reseed(state)

    def on_epoch_end(self, state: Any) -> None:
        self._reseed(state)


def train_standalone(space: SpaceConfig, path: Sequence[int], cfg: SupernetSettings) -> dict[str, float]:
    """Train one path from scratch (the ground truth) through ``normlab.train.fit``: SGD + cosine
    schedule for ``cfg.epochs`` epochs on the train split, weight decay on conv/linear weights
    only; returns validation and test accuracy."""
    from ..train import fit
    from .supernet import Subnet

    split = load_split(cfg.dataset, cfg.seed, cfg.val_fraction, cfg.train_limit, cfg.val_limit)
    if len(split.train_y) < cfg.batch_size:
        raise NasError(f"batch_size={cfg.batch_size} is larger than the training split "
                       f"({len(split.train_y)} samples): lower batch_size or raise train_limit")
    model = Subnet.build(space, path, seed=cfg.seed)
    opt = torch.optim.SGD(_param_groups(model, list(model.parameters()), cfg.weight_decay, "full"), lr=cfg.lr,
                          momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    t0 = time.time()
    fit(model, split_data(split), cfg.fit_config(), [_EpochShuffle(cfg.seed)], optimizer=opt)
    return {"test_acc": evaluate_accuracy(model, split.test_x, split.test_y),
            "val_acc": evaluate_accuracy(model, split.val_x, split.val_y), "seconds": time.time() - t0}
