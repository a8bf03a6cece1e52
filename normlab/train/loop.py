"""fit(): the training loop. Short enough to read in one sitting.

    result = fit(model, load_dataset("mnist5k"), TrainConfig(epochs=2, batch_size=64))
    result.metrics["test_acc"], result.history
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ImageData
from ..layers import is_norm
from ..layers.ghost import batch_dependent_layers, interleave_order, set_norm_batch
from .callbacks import Callback, Checkpoint, ProgressBar, TrainState, load_checkpoint
from .config import TrainConfig

__all__ = ["fit", "evaluate", "FitResult", "resolve_device", "param_groups", "lr_lambda", "timed_calls",
           "make_optimizer"]


@dataclass
class FitResult:
    status: str                                  # "ok" or "diverged"
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    message: str = ""

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"


def timed_calls(fn, rounds: int = 3, warmup: int = 1) -> list[float]:
    """Seconds of each of ``rounds`` calls of ``fn()`` after ``warmup`` untimed ones (the first
    call pays for allocation and kernel selection): what the dry runs extrapolate from."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} is not available here: no CUDA device; use 'cpu' or 'auto'")
    return dev


def param_groups(model: nn.Module, weight_decay: float, norm_weight_decay: float) -> list[dict]:
    """Normalization-layer parameters get ``norm_weight_decay`` (0 by default), the rest ``weight_decay``."""
    norm_ids = {id(p) for m in model.modules() if is_norm(m) for p in m.parameters(recurse=False)}
    norm = [p for p in model.parameters() if id(p) in norm_ids and p.requires_grad]
    other = [p for p in model.parameters() if id(p) not in norm_ids and p.requires_grad]
    groups = [{"params": other, "weight_decay": weight_decay}]
    if norm:
        groups.append({"params": norm, "weight_decay": norm_weight_decay})
    return groups


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer fit() trains with: SGD or AdamW over ``param_groups``, at the scaled lr."""
    groups = param_groups(model, cfg.weight_decay, cfg.norm_weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.scaled_lr)
    return torch.optim.SGD(groups, lr=cfg.scaled_lr, momentum=cfg.momentum, nesterov=cfg.nesterov)


def lr_lambda(cfg: TrainConfig, total: int, steps_per_epoch: int):
    """Multiplier of the base learning rate at each step: linear warm-up, then the schedule."""
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    marks = [int(round(m * total)) for m in cfg.milestones]

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "step":
            return cfg.gamma ** sum(step >= m for m in marks)
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData, split: str = "test", *, mode: str = "running",
             batch_size: int = 500, device: torch.device | str = "cpu",
             limit: int | None = None) -> dict[str, float]:
    """Loss and top-1 accuracy on ``split``.

    ``mode="running"`` is the usual eval mode (running statistics). ``mode="batch"`` normalizes
    with the statistics of each evaluation batch, for layers that keep none worth using; the
    model's buffers are restored afterwards, so evaluation leaves no trace.
    """
    was_training = model.training
    saved = None
    if mode == "batch":
        saved = {name: b.clone() for name, b in model.named_buffers()}
        model.train()
    else:
        model.eval()
    total, correct, loss_sum = 0, 0, 0.0
    for xb, yb in data.batches(split, batch_size, device=device, limit=limit):
        out = model(xb).float()
        loss_sum += float(F.cross_entropy(out, yb, reduction="sum"))
        correct += int((out.argmax(1) == yb).sum())
        total += len(yb)
    if saved is not None:
        model.load_state_dict(saved, strict=False)
    model.train(was_training)
    return {f"{split}_loss": loss_sum / max(1, total), f"{split}_acc": correct / max(1, total)}


def fit(model: nn.Module, data: ImageData, config: TrainConfig | None = None,
        callbacks: Iterable[Callback] = ()) -> FitResult:
    """Train ``model`` on ``data``. Never raises for a diverged run: its result says so."""
    cfg = config or TrainConfig()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    steps_per_epoch = data.size("train") // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={cfg.batch_size} is larger than the training set "
                         f"({data.size('train')} samples)")
    total = cfg.total_steps(steps_per_epoch)
    cuda = device.type == "cuda"
    model.to(device)
    if cuda and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total, steps_per_epoch))
    gen = torch.Generator().manual_seed(cfg.seed)
    state = TrainState(model, opt, sched, cfg, total, steps_per_epoch, generator=gen)
    cbs: list[Callback] = []
    if cfg.checkpoint:
        cbs.append(Checkpoint(cfg.checkpoint))
        if cfg.resume:
            load_checkpoint(cfg.checkpoint, state)
    if cfg.progress:
        cbs.append(ProgressBar())
    cbs.extend(callbacks)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cuda and cfg.amp else nullcontext())
    check_every = 20 if cuda else 1
    micro = cfg.norm_batch_size or cfg.batch_size
    if micro < cfg.batch_size and not batch_dependent_layers(model):
        micro = cfg.batch_size            # no batch statistics: the same computation at any norm batch
    ghost = False
    if micro < cfg.batch_size:            # ghost batches in one forward when every layer can
        unsupported = set_norm_batch(model, micro, interleaved=True)   # batches go in interleaved
        ghost = not unsupported
        if not ghost:
            set_norm_batch(model, None)
            warnings.warn(f"norm_batch_size={micro}: {', '.join(unsupported[:3])}"
                          f"{' ...' if len(unsupported) > 3 else ''} cannot use ghost batches; "
                          f"running sequential micro-batches instead (slower, same result)", stacklevel=2)
    status, message = "ok", ""
    start, seen = time.perf_counter(), 0
    model.train()
    for cb in cbs:
        cb.on_fit_start(state)
    running = torch.zeros((), device=device)
    running_n = 0
    try:
        while state.step < total and not state.stop:
            for xb, yb in data.batches("train", cfg.batch_size, shuffle=True, generator=gen,
                                       augment=cfg.augment, drop_last=True, device=device):
                if ghost:                  # the same ghost groups, regrouped without copies
                    order = interleave_order(len(yb), micro, yb.device)
                    xb, yb = xb[order], yb[order]
                if cuda and cfg.channels_last:
                    xb = xb.contiguous(memory_format=torch.channels_last)
                opt.zero_grad(set_to_none=True)
                if ghost or micro >= len(yb):
                    with autocast:
                        loss = F.cross_entropy(model(xb).float(), yb, label_smoothing=cfg.label_smoothing)
                    loss.backward()
                    step_loss = loss.detach()
                else:                      # micro-batches: normalization sees `micro` samples
                    step_loss = torch.zeros((), device=device)
                    for xc, yc in zip(xb.split(micro), yb.split(micro)):
                        with autocast:
                            loss = F.cross_entropy(model(xc).float(), yc,
                                                   label_smoothing=cfg.label_smoothing)
                        (loss * (len(yc) / len(yb))).backward()
                        step_loss += loss.detach() * (len(yc) / len(yb))
                if (state.step + 1) % check_every == 0 or state.step + 1 == total:
                    state.loss = float(step_loss)
                    if not math.isfinite(state.loss):
                        status = "diverged"
                        message = f"non-finite loss ({state.loss}) at step {state.step + 1}"
                        break
                if cfg.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                for cb in cbs:
                    cb.on_before_step(state)
                opt.step()
                sched.step()
                running += step_loss
                running_n += 1
                state.step += 1
                seen += len(yb)
                for cb in cbs:
                    cb.on_step_end(state)
                if state.step >= total or state.stop:
                    break
            if status == "diverged":
                break
            state.epoch += 1
            record = {"epoch": float(state.epoch), "step": float(state.step), "lr": state.lr,
                      "train_loss": float(running) / max(1, running_n)}
            running.zero_()
            running_n = 0
            last = state.step >= total or state.stop
            if not math.isfinite(record["train_loss"]):
                status, message = "diverged", f"non-finite training loss in epoch {state.epoch}"
                break
            if (cfg.eval_every and state.epoch % cfg.eval_every == 0) or (last and cfg.final_eval):
                record.update(evaluate(model, data, "test", mode=cfg.eval_mode,
                                       batch_size=cfg.eval_batch_size, device=device))
            state.history.append(record)
            for cb in cbs:
                cb.on_epoch_end(state)
    finally:
        if ghost:
            set_norm_batch(model, None)
        for cb in cbs:
            if isinstance(cb, ProgressBar):
                cb.on_fit_end(state)
    seconds = time.perf_counter() - start
    if status == "ok":
        for cb in cbs:
            if not isinstance(cb, ProgressBar):
                cb.on_fit_end(state)
    metrics: dict[str, float] = {"steps": float(state.step), "epochs": float(state.epoch),
                                 "seconds": seconds, "images_per_sec": seen / max(seconds, 1e-9)}
    if state.history:
        last_eval = next((h for h in reversed(state.history) if "test_acc" in h), {})
        metrics.update({k: v for k, v in last_eval.items() if k.startswith("test_")})
        metrics["train_loss"] = state.history[-1]["train_loss"]
        accs = [h["test_acc"] for h in state.history if "test_acc" in h]
        if accs:
            metrics["best_test_acc"] = max(accs)
    return FitResult(status, metrics, state.history, message)
