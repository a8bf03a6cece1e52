"""Training dynamics of scale-invariant weights (Spherical Motion Dynamics, Wan et al. 2021).

A conv or linear weight followed by a normalization layer is scale-invariant: only its direction
matters. With SGD (momentum mu, learning rate eta, weight decay lambda) its angular update per
step settles at the equilibrium sqrt(2 eta lambda / (1 + mu)). AngularUpdate measures
Delta_t = arccos(cos(w_t, w_{t+1})) for every such weight at every step, beside that theory.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..layers import BatchGroupNorm, BatchNorm, GroupNorm, InstanceNorm, LayerNorm, PositionalNorm
from ..layers.convert import traced_pairs
from .callbacks import Callback, TrainState

__all__ = ["AngularUpdate", "scale_invariant_weights", "angle_between", "theory_angular_update"]

# normalizations that make the preceding layer's weight scale-invariant (mean and scale removed)
_INVARIANT = (nn.modules.batchnorm._BatchNorm, BatchNorm, BatchGroupNorm, GroupNorm, LayerNorm,
              InstanceNorm, PositionalNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)
_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def angle_between(a: Tensor, b: Tensor) -> float:
    """arccos(cos(a, b)) in float64, computed stably as 2 atan2(|u - v|, |u + v|) for unit u, v."""
    u = a.detach().double().flatten()
    v = b.detach().double().flatten()
    u = u / u.norm()
    v = v / v.norm()
    return float(2.0 * torch.atan2((u - v).norm(), (u + v).norm()))


def theory_angular_update(lr: float, weight_decay: float, momentum: float) -> float:
    """The SMD equilibrium angular update sqrt(2 eta lambda / (1 + mu)) for SGD with momentum."""
    return math.sqrt(2.0 * lr * weight_decay / (1.0 + momentum))


def scale_invariant_weights(model: nn.Module) -> dict[str, nn.Parameter]:
    """Weights of convs/linears whose output goes straight (and only) into a mean-and-scale
    normalization, found on the torch.fx graph. Name -> parameter."""
    modules = dict(model.named_modules())
    return {f"{conv}.weight": modules[conv].weight
            for conv, _ in traced_pairs(model, _WEIGHTED, _INVARIANT)}


@dataclass
class AngularUpdate(Callback):
    """Records, per scale-invariant weight and step: the angular update, the weight norm, and the
    theoretical equilibrium for the step's learning rate.

    ``every`` subsamples the steps recorded (1: all). Results are in ``steps``, ``lrs``,
    ``theory``, ``angles[name]`` and ``norms[name]``.
    """

    every: int = 1
    weights: dict[str, nn.Parameter] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    theory: list[float] = field(default_factory=list)
    angles: dict[str, list[float]] = field(default_factory=dict)
    norms: dict[str, list[float]] = field(default_factory=dict)

    def on_fit_start(self, state: TrainState) -> None:
        self.weights = scale_invariant_weights(state.model)
        if not self.weights:
            raise ValueError("AngularUpdate found no scale-invariant weight (a conv or linear layer "
                             "followed by a normalization layer) in this model")
        self.angles = {k: [] for k in self.weights}
        self.norms = {k: [] for k in self.weights}
        self._before: dict[str, Tensor] = {}

    def on_before_step(self, state: TrainState) -> None:
        if (state.step + 1) % self.every == 0:
            self._before = {k: w.detach().clone() for k, w in self.weights.items()}
            group = state.optimizer.param_groups[0]      # the settings this step will use
            self._hyper = (float(group["lr"]), float(group["weight_decay"]),
                           float(group.get("momentum", 0.0)))

    def on_step_end(self, state: TrainState) -> None:
        if not self._before:
            return
        lr, wd, mu = self._hyper
        self.steps.append(state.step)
        self.lrs.append(lr)
        self.theory.append(theory_angular_update(lr, wd, mu))
        for k, w in self.weights.items():
            self.angles[k].append(angle_between(self._before[k], w))
            self.norms[k].append(float(w.detach().double().norm()))
        self._before = {}

    def summary(self, tail: float = 0.2) -> list[dict[str, float]]:
        """Per constant-learning-rate phase: theory and the median measured update over the last
        ``tail`` of the phase (median over steps of the median over layers)."""
        phases: list[tuple[int, int]] = []
        start = 0
        for i in range(1, len(self.lrs) + 1):
            if i == len(self.lrs) or not math.isclose(self.lrs[i], self.lrs[start], rel_tol=1e-9):
                phases.append((start, i))
                start = i
        rows = []
        for a, b in phases:
            lo = b - max(1, int(round((b - a) * tail)))
            per_step = [statistics.median(self.angles[k][i] for k in self.angles) for i in range(lo, b)]
            measured = statistics.median(per_step)
            theory = self.theory[a]
            rows.append({"lr": self.lrs[a], "first_step": float(self.steps[a]),
                         "last_step": float(self.steps[b - 1]), "theory": theory,
                         "measured": measured, "ratio": measured / theory if theory else float("nan")})
        return rows

    def plot(self, path: str) -> None:
        """Measured angular update per layer against theory, and the weight norms."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
        for k in self.angles:
            ax1.plot(self.steps, self.angles[k], lw=0.5, alpha=0.35, color="C0")
            ax2.plot(self.steps, self.norms[k], lw=0.8, alpha=0.7)
        median = torch.tensor([self.angles[k] for k in self.angles]).median(dim=0).values
        ax1.plot(self.steps, median.tolist(), color="C3", lw=1.5, label="median over layers")
        ax1.plot(self.steps, self.theory, "k--", lw=2, label=r"theory $\sqrt{2\eta\lambda/(1+\mu)}$")
        ax1.set_yscale("log")
        ax1.set_ylabel(r"angular update $\Delta_t$ (rad)")
        ax1.legend(loc="upper right")
        ax1.set_title(f"angular update of {len(self.angles)} scale-invariant weights")
        ax2.set_yscale("log")
        ax2.set_ylabel(r"weight norm $\|w_t\|$")
        ax2.set_xlabel("step")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
