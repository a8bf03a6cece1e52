"""Callbacks: hooks the training loop calls. The loop keeps the history; these add a progress
bar, checkpoints, and the rules that stop a run with a reason (``TrainState.stop_run``): the
divergence guard fit() always installs, early rejection on a validation score, and the
gradient-norm stability test of the EvoNorms search."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn


@dataclass
class TrainState:
    """What callbacks see. ``step`` counts optimizer steps taken so far."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    config: Any
    total_steps: int
    steps_per_epoch: int
    step: int = 0
    epoch: int = 0
    loss: float = float("nan")               # last step's loss (filled when the loop syncs)
    history: list[dict[str, float]] = field(default_factory=list)
    generator: torch.Generator | None = None
    stop: bool = False                        # a callback may ask the loop to stop
    stopped_by: str = ""                      # the rule that stopped the run (stop_run)
    stop_reason: str = ""                     # and why, in one line
    step_loss: torch.Tensor | None = None     # this step's loss (unsynchronised), before the step

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def stop_run(self, rule: str, reason: str) -> None:
        """Stop after this hook: ``rule`` names the rule ("diverged" also skips the pending
        optimizer step), ``reason`` says why; fit()'s result carries both."""
        self.stop, self.stopped_by, self.stop_reason = True, rule, reason


class Callback:
    """Override what you need. ``on_before_step`` runs after backward, before optimizer.step."""

    def on_fit_start(self, state: TrainState) -> None: ...
    def on_before_step(self, state: TrainState) -> None: ...
    def on_step_end(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_fit_end(self, state: TrainState) -> None: ...


class ProgressBar(Callback):
    """A Rich progress bar over optimizer steps, showing loss, learning rate and accuracy."""

    def __init__(self, description: str = "training", every: int = 10) -> None:
        self.description, self.every = description, every
        self._progress = None

    def on_fit_start(self, state: TrainState) -> None:
        try:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                       TimeElapsedColumn, TimeRemainingColumn)
        except ImportError:      # rich comes with the cli extra; without it, train silently
            return

        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                  TimeRemainingColumn(), transient=False)
        self._progress.start()
        self._task = self._progress.add_task(self.description, total=state.total_steps,
                                             completed=state.step, info="")

    def _info(self, state: TrainState) -> str:
        parts = [f"loss {state.loss:.3f}", f"lr {state.lr:.3g}"]
        if state.history and "test_acc" in state.history[-1]:
            parts.append(f"acc {state.history[-1]['test_acc']:.3f}")
        return " ".join(parts)

    def on_step_end(self, state: TrainState) -> None:
        if self._progress and (state.step % self.every == 0 or state.step == state.total_steps):
            self._progress.update(self._task, completed=state.step, info=self._info(state))

    def on_epoch_end(self, state: TrainState) -> None:
        if self._progress:
            self._progress.update(self._task, completed=state.step, info=self._info(state))

    def on_fit_end(self, state: TrainState) -> None:
        if self._progress:
            self._progress.update(self._task, completed=state.step, info=self._info(state))
            self._progress.stop()
            self._progress = None


class Checkpoint(Callback):
    """Writes model, optimizer, schedule, RNG and history at each epoch end (atomically), so a
    run resumes from its last finished epoch. Read back with ``torch.load(weights_only=True)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def save(self, state: TrainState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.scheduler.state_dict(),
            "step": state.step,
            "epoch": state.epoch,
            "history": state.history,
            "generator": state.generator.get_state() if state.generator is not None else None,
            "torch_rng": torch.get_rng_state(),
            "config": state.config.to_dict(),
        }
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        torch.save(payload, tmp)
        tmp.replace(self.path)

    def on_epoch_end(self, state: TrainState) -> None:
        self.save(state)

    def on_fit_end(self, state: TrainState) -> None:
        self.save(state)


def load_checkpoint(path: str | Path, state: TrainState) -> bool:
    """Restore ``state`` from a checkpoint; False when there is none yet."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:                                     # noqa: BLE001  (any unreadable file)
        raise ValueError(f"checkpoint {path} cannot be read as tensors and plain data (not written by "
                         f"normlab, or damaged): remove it to start the run again") from None
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scheduler.load_state_dict(payload["scheduler"])
    state.step, state.epoch = int(payload["step"]), int(payload["epoch"])
    state.history = list(payload["history"])
    if payload["generator"] is not None and state.generator is not None:
        state.generator.set_state(payload["generator"])
    torch.set_rng_state(payload["torch_rng"])
    return True


# -- rules that stop a run with a reason --------------------------------------------------------

class DivergenceGuard(Callback):
    """Stops the run when the loss turns non-finite, before that step is applied. Reads the loss
    every ``every`` steps and at the last one (a read synchronises with an accelerator)."""

    def __init__(self, every: int = 1) -> None:
        self.every = every

    def on_before_step(self, state: TrainState) -> None:
        step = state.step + 1
        if state.step_loss is None or (step % self.every and step != state.total_steps):
            return
        state.loss = float(state.step_loss)
        if not math.isfinite(state.loss):
            state.stop_run("diverged", f"non-finite loss ({state.loss}) at step {step}")


class EarlyRejection(Callback):
    """After ``at_step`` steps (when the run is longer), score the model (``score(model)``, e.g.
    a validation accuracy) and stop with rule ``rule`` when it is under ``minimum``: the
    quality rule of the EvoNorms search (20% after 100 steps on CIFAR-10). ``score`` is kept in
    ``self.score`` for the caller."""

    def __init__(self, at_step: int, minimum: float, score: Callable[[nn.Module], float],
                 rule: str = "quality") -> None:
        self.at_step, self.minimum, self._score, self.rule = at_step, minimum, score, rule
        self.score: float | None = None

    def on_step_end(self, state: TrainState) -> None:
        if state.step != self.at_step or self.at_step >= state.total_steps:
            return
        self.score = self._score(state.model)
        state.model.train()
        if self.score < self.minimum:
            state.stop_run(self.rule, f"validation accuracy {self.score:.3f} < {self.minimum:g} after "
                                      f"{state.step} steps")


class StabilityCheck(Callback):
    """Before training, push the convolution weights ``steps`` steps in the direction that grows
    the gradient norm most (:func:`stability_ratio`, on one batch of ``data``), then put the model
    back as it was; a run whose gradient norm grew past ``factor`` times its start (or turned
    non-finite) stops with rule "stability" before its first step (EvoNorms' stability rule)."""

    def __init__(self, data: Any, steps: int, batch_size: int, seed: int, factor: float) -> None:
        self.data, self.steps, self.batch_size, self.seed, self.factor = data, steps, batch_size, seed, factor
        self.ratio: float | None = None

    def on_fit_start(self, state: TrainState) -> None:
        saved = {k: v.clone() for k, v in state.model.state_dict().items()}
        self.ratio = stability_ratio(state.model, self.data, self.steps, self.batch_size, self.seed)
        state.model.load_state_dict(saved)
        state.model.train()
        if not math.isfinite(self.ratio) or self.ratio > self.factor:
            state.stop_run("stability", f"gradient norm grew {self.ratio:.3g}x under adversarial weights "
                                        f"(limit {self.factor:g}x)")


def stability_ratio(model: nn.Module, data: Any, steps: int, batch_size: int, seed: int,
                    step_size: float = 0.05) -> float:
    """How much ||dL/dw||^2 grows when the conv weights take ``steps`` normalised gradient-ascent
    steps on it (the EvoNorms paper's stability rejection). The model's weights are changed."""
    import torch.nn.functional as F

    convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    g = torch.Generator().manual_seed(seed)
    xb, yb = next(iter(data.batches("train", batch_size, shuffle=True, generator=g, drop_last=True)))
    model.train()
    first = None
    for i in range(steps + 1):
        loss = F.cross_entropy(model(xb), yb)
        grads = torch.autograd.grad(loss, convs, create_graph=True)
        norm = sum((gr * gr).sum() for gr in grads)
        value = float(norm.detach())
        if not math.isfinite(value):
            return math.inf
        first = value if first is None else first
        if i == steps:
            break
        ascent = torch.autograd.grad(norm, convs, allow_unused=True)
        with torch.no_grad():
            for w, d in zip(convs, ascent):
                if d is not None:
                    w.add_(d / (d.norm() + 1e-12) * w.norm() * step_size)
    return value / max(first, 1e-30)
