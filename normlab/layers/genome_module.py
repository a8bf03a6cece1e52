"""A genome compiled to a layer: plain torch ops, one per live node, then the per-channel affine.

    layer = EvolvedLayer(64, Genome.from_code("s_bhw.0;mul.3.0;s_hw.0;add.5.6;max.4.7;div.0.8"))

Depends on torch alone (the genome is plain Python), so ``normlab.layers`` can build it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .genome import INITIAL, OPS, Genome, GenomeError, depends_on_x, formula, live_nodes

__all__ = ["EvolvedLayer", "apply_op", "check_valid", "InvalidLayer"]


class InvalidLayer(ValueError):
    """A genome that is never trained: its output ignores x, or it is NaN/Inf on random input."""


def _unary(op: str, a: Tensor) -> Tensor:
    if op == "neg":
        return -a
    if op == "sigmoid":
        return torch.sigmoid(a)
    if op == "tanh":
        return torch.tanh(a)
    if op == "exp":
        return torch.exp(a)
    if op == "log":
        return torch.sign(a) * torch.log(torch.abs(a))
    if op == "abs":
        return torch.abs(a)
    if op == "square":
        return a * a
    if op == "sqrt":
        return torch.sign(a) * torch.sqrt(torch.abs(a))
    raise GenomeError(f"unknown unary op '{op}'")


def _binary(op: str, a: Tensor, b: Tensor) -> Tensor:
    if op == "add":
        return a + b
    if op == "mul":
        return a * b
    if op == "div":
        return a / b
    if op == "max":
        return torch.maximum(a, b)
    raise GenomeError(f"unknown binary op '{op}'")


def _moments(a: Tensor, axes: str, groups: int) -> tuple[Tensor, Tensor]:
    """Biased variance and mean of ``a`` (full shape N, C, *spatial) over the op's axes, broadcast
    back to ``a``'s shape."""
    n, c = a.shape[0], a.shape[1]
    if axes == "bhw":
        dims = (0, *range(2, a.dim()))
        var, mean = torch.var_mean(a, dim=dims, correction=0, keepdim=True)
    elif axes == "hw":
        dims = tuple(range(2, a.dim()))
        var, mean = torch.var_mean(a, dim=dims, correction=0, keepdim=True)
    else:                                                   # hwg: (C/G, *spatial) per group
        a3 = a.reshape(n, groups, -1)
        var, mean = torch.var_mean(a3, dim=2, correction=0, keepdim=True)
        k = c // groups
        var = var.repeat_interleave(k, dim=1)               # (N, C, 1)
        mean = mean.repeat_interleave(k, dim=1)
        shape = (n, c) + (1,) * (a.dim() - 2)
        var, mean = var.reshape(shape), mean.reshape(shape)
    return var, mean


def apply_op(op: str, args: list[Tensor], *, groups: int = 1, eps: float = 1e-5) -> Tensor:
    """One primitive on full-shape tensors (no running statistics: a batch aggregate uses the
    batch). For aggregates ``args[0]`` must have the layer input's shape."""
    spec = OPS[op]
    if spec.kind == "unary":
        return _unary(op, args[0])
    if spec.kind == "binary":
        return _binary(op, args[0], args[1])
    var, mean = _moments(args[0], spec.axes, groups)
    if spec.stat == "mu":
        return mean.expand_as(args[0])
    if spec.stat == "s2":
        return var.expand_as(args[0])
    return torch.sqrt(var + eps).expand_as(args[0])


class EvolvedLayer(nn.Module):
    """A normalization-activation layer given by a genome (EvoNorms, Liu et al. 2020).

        y = f(x, zero, v0, v1) * gamma + beta

    where f is the genome's graph of primitives (see :mod:`normlab.layers.genome`): v0 and v1 are
    per-channel parameters initialised to 0 and 1, gamma/beta the affine (``weight``/``bias``,
    initialised to 1 and 0). Aggregates: mean, biased variance and std = sqrt(var + eps) over the
    batch (N, *spatial), instance (*spatial) or group (C/G, *spatial) axes. Each batch aggregate
    node keeps a running statistic of its own input (mean for mu_bhw; variance for s2_bhw and
    s_bhw), updated new = (1 - momentum) * old + momentum * batch in training and used in eval, as
    BatchNorm does; the running variance is biased like EvoNorm-B0's reference code, or unbiased
    like torch's BatchNorm with ``unbiased_running=True``. Group rule as GroupNorm/EvoNorm-S0: the
    default 32 is reduced to the largest divisor of C not above it.

    It replaces the activation (``replaces_activation``). ``apply_act=False`` is the linear
    variant for slots that have no activation after them, y = x * gamma + beta, as EvoNorm's.
    """

    def __init__(self, num_channels: int, genome: Genome | str | Any, *, groups: int | None = None,
                 eps: float = 1e-5, momentum: float = 0.1, apply_act: bool = True,
                 unbiased_running: bool = False) -> None:
        super().__init__()
        from ..layers._common import check_momentum, check_positive_float, check_positive_int
        from ..layers.sample import resolve_groups

        self.num_channels = check_positive_int("num_channels", num_channels)
        self.genome = genome if isinstance(genome, Genome) else Genome.from_json(genome)
        if not depends_on_x(self.genome):
            raise InvalidLayer(f"layer {formula(self.genome)} does not depend on x")
        self.eps = check_positive_float("eps", eps)
        self.momentum = check_momentum(momentum)
        self.groups = resolve_groups(num_channels, groups, 32, "EvolvedLayer")
        self.apply_act = bool(apply_act)
        self.unbiased_running = bool(unbiased_running)
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.v0 = nn.Parameter(torch.zeros(num_channels))
        self.v1 = nn.Parameter(torch.ones(num_channels))
        live = live_nodes(self.genome)
        self._plan = [(i, op, ins) for i, (op, ins) in enumerate(self.genome.nodes, start=len(INITIAL))
                      if i in live]
        for i, op, _ in self._plan:
            if op.endswith("_bhw"):
                init = torch.zeros if op.startswith("mu") else torch.ones
                self.register_buffer(f"running_{i}", init(num_channels))

    @property
    def replaces_activation(self) -> bool:
        return self.apply_act

    @property
    def batch_dependent(self) -> bool:
        return any(op.endswith("_bhw") for _, op, _ in self._plan)

    def extra_repr(self) -> str:
        return (f"{self.num_channels}, {formula(self.genome)}, groups={self.groups}, eps={self.eps}, "
                f"momentum={self.momentum}")

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 3 or x.shape[1] != self.num_channels:
            raise ValueError(f"EvolvedLayer expects input (N, {self.num_channels}, *spatial) with at "
                             f"least one spatial dimension, got {tuple(x.shape)}")
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            from ..layers._common import empty_batch

            return empty_batch(x)
        shape = (1, self.num_channels) + (1,) * (x.dim() - 2)
        dt = x.dtype
        affine = lambda p: p.to(dt).view(shape)  # noqa: E731
        if not self.apply_act:
            return x * affine(self.weight) + affine(self.bias)
        values: dict[int, Tensor] = {0: x, 1: x.new_zeros(()), 2: affine(self.v0), 3: affine(self.v1)}
        for i, op, ins in self._plan:
            spec = OPS[op]
            args = [values[k] for k in ins]
            if spec.kind != "aggregate":
                values[i] = _binary(op, *args) if spec.kind == "binary" else _unary(op, args[0])
                continue
            a = args[0].expand(x.shape)
            if spec.axes == "bhw":
                values[i] = self._batch_stat(i, spec.stat, a)
            else:
                values[i] = apply_op(op, [a], groups=self.groups, eps=self.eps)
        out = values[self.genome.output].expand(x.shape)
        return out * affine(self.weight) + affine(self.bias)

    def _batch_stat(self, i: int, stat: str, a: Tensor) -> Tensor:
        running: Tensor = getattr(self, f"running_{i}")
        shape = (1, self.num_channels) + (1,) * (a.dim() - 2)
        if self.training:
            var, mean = _moments(a, "bhw", self.groups)
            with torch.no_grad():
                m = self.momentum
                if stat == "mu":
                    running.mul_(1 - m).add_(mean.reshape(-1).to(running.dtype), alpha=m)
                else:
                    count = a.numel() // a.shape[1]
                    batch_var = var.reshape(-1)
                    if self.unbiased_running and count > 1:
                        batch_var = batch_var * (count / (count - 1))
                    running.mul_(1 - m).add_(batch_var.to(running.dtype), alpha=m)
        else:
            stat_value = running.to(a.dtype).view(shape)
            var, mean = stat_value, stat_value
        if stat == "mu":
            return mean.expand_as(a)
        if stat == "s2":
            return var.expand_as(a)
        return torch.sqrt(var + self.eps).expand_as(a)


def check_valid(genome: Genome, *, channels: int = 8, shape: tuple[int, ...] = (4, 4, 4),
                groups: int | None = None, seed: int = 0, eps: float = 1e-5) -> None:
    """Raise InvalidLayer unless the layer depends on x and is finite, with finite gradients for x
    and for every parameter (v0, v1, gamma, beta at their initial values), on random input (train
    and eval)."""
    if not depends_on_x(genome):
        raise InvalidLayer(f"layer {formula(genome)} does not depend on x")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((shape[0], channels, *shape[1:]), generator=g, requires_grad=True)
    layer = EvolvedLayer(channels, genome, groups=groups, eps=eps)     # parameters at their init
    y = layer(x)
    name = formula(genome)
    if not torch.isfinite(y).all():
        raise InvalidLayer(f"layer {name} is not finite on random input")
    spread = float(y.detach().std())
    if not spread > 1e-6 * (1.0 + float(y.detach().abs().mean())):
        raise InvalidLayer(f"layer {name} is constant on random input")
    (y * torch.randn(y.shape, generator=g)).sum().backward()
    if x.grad is None or not torch.isfinite(x.grad).all():
        raise InvalidLayer(f"layer {name} has a non-finite gradient on random input")
    if not float(x.grad.abs().max()) > 1e-8:
        raise InvalidLayer(f"layer {name} has a zero gradient with respect to x")
    for pname, p in layer.named_parameters():        # v0, v1, gamma, beta: trained from step 1
        if p.grad is not None and not torch.isfinite(p.grad).all():
            raise InvalidLayer(f"layer {name} has a non-finite gradient for {pname} on random input "
                               f"(parameters at their initial values)")
    layer.eval()
    with torch.no_grad():
        if not torch.isfinite(layer(x)).all():
            raise InvalidLayer(f"layer {name} is not finite in eval mode")
