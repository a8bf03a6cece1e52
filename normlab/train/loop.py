"""fit(): the training loop. Short enough to read in one sitting.

    result = fit(model, load_dataset("mnist5k"), TrainConfig(epochs=2, batch_size=64))
    result.metrics["test_acc"], result.history
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import ImageData
from ..layers import is_norm
from ..layers.ghost import batch_dependent_layers, interleave_order, set_norm_batch
from .callbacks import Callback, Checkpoint, DivergenceGuard, ProgressBar, TrainState, load_checkpoint
from .config import TrainConfig

__all__ = ["fit", "evaluate", "FitResult", "resolve_device", "param_groups", "lr_lambda", "timed_calls",
           "make_optimizer", "torch_threads"]


@dataclass
class FitResult:
    status: str                                  # "ok", "diverged", or "stopped" (by a rule)
    metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    message: str = ""                            # why it diverged or stopped
    stopped_by: str = ""                         # the rule that stopped it ("diverged", "quality", ...)

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


@contextmanager
def torch_threads(threads: int | None):
    """torch's CPU threads set to ``threads`` inside the block (None: unchanged) and the caller's
    count restored after it, whatever the block set meanwhile: a study step leaves no trace."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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


@dataclass
class _Run:
    """What every step of one fit() call uses (built once by :func:`_prepare`)."""

    model: nn.Module
    data: ImageData
    cfg: TrainConfig
    device: torch.device
    state: TrainState
    callbacks: list[Callback]
    micro: int                            # the normalization batch
    ghost: bool                           # True: ghost batches in one forward, else micro-batches
    autocast: Any
    seen: int = 0                         # training samples stepped on


def fit(model: nn.Module, data: ImageData, config: TrainConfig | None = None,
        callbacks: Iterable[Callback] = (), *, optimizer: torch.optim.Optimizer | None = None) -> FitResult:
    """Train ``model`` on ``data``. Never raises for a diverged run: its result says so, as it says
    which callback stopped a run and why (``FitResult.stopped_by``, ``message``).

    ``optimizer``: train with this one (its learning rates are the schedule's base) instead of
    :func:`make_optimizer`'s, e.g. for a study whose weight-decay rule differs."""
    cfg = config or TrainConfig()
    run = _prepare(model, data, cfg, list(callbacks), optimizer)
    state = run.state
    start = time.perf_counter()
    model.train()
    for cb in run.callbacks:
        cb.on_fit_start(state)
    try:
        while state.step < state.total_steps and not state.stop:
            _train_epoch(run)
    finally:
        if run.ghost:
            set_norm_batch(model, None)
        for cb in run.callbacks:
            if isinstance(cb, ProgressBar):
                cb.on_fit_end(state)
    seconds = time.perf_counter() - start
    if state.stopped_by != "diverged":
        for cb in run.callbacks:
            if not isinstance(cb, ProgressBar):
                cb.on_fit_end(state)
    return _result(state, seconds, run.seen)


def _prepare(model: nn.Module, data: ImageData, cfg: TrainConfig, extra: list[Callback],
             optimizer: torch.optim.Optimizer | None) -> _Run:
    """Seed, place the model, build optimizer, schedule, state, callbacks and the norm batching."""
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
    opt = optimizer if optimizer is not None else make_optimizer(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, total, steps_per_epoch))
    gen = torch.Generator().manual_seed(cfg.seed)
    state = TrainState(model, opt, sched, cfg, total, steps_per_epoch, generator=gen)
    cbs: list[Callback] = [DivergenceGuard(every=20 if cuda else 1)]
    if cfg.checkpoint:
        cbs.append(Checkpoint(cfg.checkpoint))
        if cfg.resume:
            load_checkpoint(cfg.checkpoint, state)
    if cfg.progress:
        cbs.append(ProgressBar())
    cbs.extend(extra)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda and cfg.amp else nullcontext()
    micro, ghost = _norm_batching(model, cfg)
    return _Run(model, data, cfg, device, state, cbs, micro, ghost, autocast)


def _norm_batching(model: nn.Module, cfg: TrainConfig) -> tuple[int, bool]:
    """The normalization batch and how it is made: ghost batches in one forward when every
    batch-dependent layer supports them (set on the model here), else sequential micro-batches."""
    micro = cfg.norm_batch_size or cfg.batch_size
    if micro < cfg.batch_size and not batch_dependent_layers(model):
        micro = cfg.batch_size            # no batch statistics: the same computation at any norm batch
    if micro >= cfg.batch_size:
        return micro, False
    unsupported = set_norm_batch(model, micro, interleaved=True)   # batches go in interleaved
    if not unsupported:
        return micro, True
    set_norm_batch(model, None)
    warnings.warn(f"norm_batch_size={micro}: {', '.join(unsupported[:3])}"
                  f"{' ...' if len(unsupported) > 3 else ''} cannot use ghost batches; "
                  f"running sequential micro-batches instead (slower, same result)", stacklevel=4)
    return micro, False


def _train_epoch(run: _Run) -> None:
    """One pass over the training batches (or up to the last step), then the epoch's record."""
    state, cfg = run.state, run.cfg
    running = torch.zeros((), device=run.device)
    running_n = 0
    for xb, yb in run.data.batches("train", cfg.batch_size, shuffle=True, generator=state.generator,
                                   augment=cfg.augment, drop_last=True, device=run.device):
        if not _train_step(run, xb, yb):
            return                        # diverged: the step was not applied, no record
        running += state.step_loss
        running_n += 1
        if state.step >= state.total_steps or state.stop:
            break
    _end_epoch(run, float(running) / max(1, running_n))


def _train_step(run: _Run, xb: Tensor, yb: Tensor) -> bool:
    """Forward, backward, callbacks, optimizer step. False when the loss diverged (not stepped)."""
    state, cfg = run.state, run.cfg
    if run.ghost:                          # the same ghost groups, regrouped without copies
        order = interleave_order(len(yb), run.micro, yb.device)
        xb, yb = xb[order], yb[order]
    if run.device.type == "cuda" and cfg.channels_last:
        xb = xb.contiguous(memory_format=torch.channels_last)
    state.optimizer.zero_grad(set_to_none=True)
    state.step_loss = _forward_backward(run, xb, yb)
    if cfg.grad_clip:
        nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    for cb in run.callbacks:
        cb.on_before_step(state)
        if state.stopped_by == "diverged":
            return False
    state.optimizer.step()
    state.scheduler.step()
    state.step += 1
    run.seen += len(yb)
    for cb in run.callbacks:
        cb.on_step_end(state)
    return True


def _forward_backward(run: _Run, xb: Tensor, yb: Tensor) -> Tensor:
    """The batch's mean loss, its gradients accumulated; by micro-batches when the normalization
    batch is smaller than the batch and ghost batches are off."""
    smoothing = run.cfg.label_smoothing
    if run.ghost or run.micro >= len(yb):
        with run.autocast:
            loss = F.cross_entropy(run.model(xb).float(), yb, label_smoothing=smoothing)
        loss.backward()
        return loss.detach()
    step_loss = torch.zeros((), device=run.device)   # micro-batches: normalization sees `micro` samples
    for xc, yc in zip(xb.split(run.micro), yb.split(run.micro)):
        with run.autocast:
            loss = F.cross_entropy(run.model(xc).float(), yc, label_smoothing=smoothing)
        (loss * (len(yc) / len(yb))).backward()
        step_loss += loss.detach() * (len(yc) / len(yb))
    return step_loss


def _end_epoch(run: _Run, train_loss: float) -> None:
    """Count the epoch, evaluate when due, record it and call the epoch-end hooks."""
    state, cfg = run.state, run.cfg
    state.epoch += 1
    if not math.isfinite(train_loss):
        state.stop_run("diverged", f"non-finite training loss in epoch {state.epoch}")
        return
    record = {"epoch": float(state.epoch), "step": float(state.step), "lr": state.lr,
              "train_loss": train_loss}
    last = state.step >= state.total_steps or state.stop
    if (cfg.eval_every and state.epoch % cfg.eval_every == 0) or (last and cfg.final_eval):
        record.update(evaluate(run.model, run.data, "test", mode=cfg.eval_mode,
                               batch_size=cfg.eval_batch_size, device=run.device))
    state.history.append(record)
    for cb in run.callbacks:
        cb.on_epoch_end(state)


def _result(state: TrainState, seconds: float, seen: int) -> FitResult:
    """The run's metrics: steps, time, throughput, the last evaluation and the best accuracy."""
    status = {"": "ok", "diverged": "diverged"}.get(state.stopped_by, "stopped")
    metrics: dict[str, float] = {"steps": float(state.step), "epochs": float(state.epoch),
                                 "seconds": seconds, "images_per_sec": seen / max(seconds, 1e-9)}
    if state.history:
        last_eval = next((h for h in reversed(state.history) if "test_acc" in h), {})
        metrics.update({k: v for k, v in last_eval.items() if k.startswith("test_")})
        metrics["train_loss"] = state.history[-1]["train_loss"]
        accs = [h["test_acc"] for h in state.history if "test_acc" in h]
        if accs:
            metrics["best_test_acc"] = max(accs)
    return FitResult(status, metrics, state.history, state.stop_reason, state.stopped_by)
