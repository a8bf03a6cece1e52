"""Callbacks: hooks the training loop calls. The loop itself keeps the history and guards
against divergence; these add a progress bar, checkpoints, and whatever a study needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


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
