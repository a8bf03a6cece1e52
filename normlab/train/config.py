"""The training configuration: a small frozen dataclass, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .._settings import Settings


class ConfigError(ValueError):
    """A training setting with a bad value."""


@dataclass(frozen=True)
class TrainConfig(Settings):
    """How to train. Learning rates are given for ``base_batch_size`` and scaled linearly
    (Goyal et al. 2017) to ``batch_size``; ``base_batch_size=None`` turns the rule off.

    ``norm_batch_size`` splits every optimizer batch into micro-batches that go through the model
    one at a time with gradients accumulated, so normalization sees ``norm_batch_size`` samples
    while the optimizer step still averages over ``batch_size`` (the MABN paper's protocol).
    """

    settings_error = ConfigError
    settings_label = "training"

    epochs: float = 1.0
    steps: int | None = None                 # when set, overrides epochs
    batch_size: int = 128
    norm_batch_size: int | None = None
    optimizer: str = "sgd"                   # sgd | adamw
    lr: float = 0.1
    base_batch_size: int | None = 128
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    norm_weight_decay: float = 0.0           # weight decay on normalization parameters
    schedule: str = "cosine"                 # cosine | step | constant
    warmup_epochs: float = 0.0
    milestones: tuple[float, ...] = (0.5, 0.75)   # fractions of training, for schedule="step"
    gamma: float = 0.1
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    augment: bool = True
    seed: int = 0
    device: str = "auto"                     # auto | cpu | cuda | cuda:N
    amp: bool = True                         # bfloat16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True               # on CUDA
    eval_mode: str = "running"               # running | batch (statistics of the eval batches)
    eval_batch_size: int = 500
    eval_every: int = 1                      # epochs between evaluations (0: only at the end)
    final_eval: bool = True                  # evaluate after the last step
    progress: bool = True
    checkpoint: str | None = None            # path of a checkpoint written at each epoch end
    resume: bool = False

    def __post_init__(self) -> None:
        def positive(name: str, integer: bool = True, allow_none: bool = False) -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            kind = int if integer else (int, float)
            if isinstance(v, bool) or not isinstance(v, kind) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"{name}={v!r} is invalid: expected a positive "
                                  + ("integer" if integer else "finite number"))

        positive("epochs", integer=False)
        positive("steps", allow_none=True)
        positive("batch_size")
        positive("norm_batch_size", allow_none=True)
        positive("base_batch_size", allow_none=True)
        positive("lr", integer=False)
        positive("eval_batch_size")
        positive("grad_clip", integer=False, allow_none=True)
        for name, value, options in (("optimizer", self.optimizer, ("sgd", "adamw")),
                                     ("schedule", self.schedule, ("cosine", "step", "constant")),
                                     ("eval_mode", self.eval_mode, ("running", "batch"))):
            if value not in options:
                raise ConfigError(f"{name}={value!r} is invalid: expected one of {', '.join(options)}")
        if self.norm_batch_size is not None and self.norm_batch_size > self.batch_size:
            raise ConfigError(f"norm_batch_size={self.norm_batch_size} is invalid: expected at most "
                              f"batch_size={self.batch_size}")
        for name in ("momentum", "label_smoothing"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise ConfigError(f"{name}={v!r} is invalid: expected a number in [0, 1)")
        for name in ("weight_decay", "norm_weight_decay", "warmup_epochs"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"{name}={v!r} is invalid: expected a number >= 0")
        if not all(isinstance(m, (int, float)) and 0 < m < 1 for m in self.milestones):
            raise ConfigError(f"milestones={self.milestones!r} is invalid: expected fractions in (0, 1)")
        if (isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float))
                or not math.isfinite(self.gamma) or self.gamma <= 0):
            raise ConfigError(f"gamma={self.gamma!r} is invalid: expected a positive finite number "
                              f"(the learning-rate factor at each milestone, e.g. 0.1)")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            raise ConfigError(f"eval_every={self.eval_every!r} is invalid: expected an integer >= 0")
        if self.resume and not self.checkpoint:
            raise ConfigError("resume=True needs a checkpoint path")

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimizer steps in the run: ``steps``, else ``epochs`` worth of epochs (at least one)."""
        return self.steps or max(1, math.ceil(self.epochs * steps_per_epoch))

    @property
    def scaled_lr(self) -> float:
        """The learning rate after the linear scaling rule."""
        if self.base_batch_size is None:
            return self.lr
        return self.lr * self.batch_size / self.base_batch_size

    @classmethod
    def from_settings(cls, d: dict[str, Any]) -> "TrainConfig":
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        return cls(**d)
