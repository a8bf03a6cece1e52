"""EvoNorm-B0 and EvoNorm-S0 (Liu et al., 2020, "Evolving Normalization-Activation Layers").

Both replace the normalization *and* the activation that follows it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import (
    channel_view,
    check_input,
    check_momentum,
    check_positive_float,
    check_positive_int,
    compute_dtype,
    reduce_dims,
    spatial_dims,
)
from .sample import resolve_groups

__all__ = ["EvoNormB0", "EvoNormS0"]


class _EvoNormBase(nn.Module):
    replaces_activation = True

    def __init__(self, num_channels: int, eps: float) -> None:
        super().__init__()
        self.num_channels = check_positive_int("num_channels", num_channels)
        self.eps = check_positive_float("eps", eps)
        self.weight = nn.Parameter(torch.ones(num_channels))   # gamma
        self.bias = nn.Parameter(torch.zeros(num_channels))    # beta
        self.v = nn.Parameter(torch.ones(num_channels))


class EvoNormB0(_EvoNormBase):
    """EvoNorm-B0: a batch-dependent normalization-activation layer.

        y = x / max(sqrt(Var_{N,*spatial}[x] + eps), v * x + sqrt(Var_{*spatial}[x] + eps)) * gamma + beta

    Both variances are biased (the reference implementation's ``tf.nn.moments``); eps sits inside
    each square root. The batch variance is per channel; the instance variance per sample and
    channel. Training keeps a moving batch variance, biased as in the reference code, with
    momentum 0.1 in PyTorch's convention (the reference's decay 0.9); eval uses it in place of the
    batch variance. Needs at least one spatial dimension.
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_channels, eps)
        self.momentum = check_momentum(momentum)
        self.register_buffer("running_var", torch.ones(num_channels))

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "EvoNormB0", min_spatial=1)
        dt = compute_dtype(x)
        xc = x.to(dt)
        nd = x.dim()
        if self.training:
            batch_var = torch.var(xc, dim=reduce_dims(x), correction=0)
            with torch.no_grad():
                self.running_var.mul_(1 - self.momentum).add_(
                    batch_var.to(self.running_var.dtype), alpha=self.momentum)
        else:
            batch_var = self.running_var.to(dt)
        inst_var = torch.var(xc, dim=spatial_dims(x), correction=0, keepdim=True)
        batch_std = channel_view(torch.sqrt(batch_var + self.eps), nd)
        right = xc * channel_view(self.v.to(dt), nd) + torch.sqrt(inst_var + self.eps)
        den = torch.maximum(batch_std, right)
        y = xc / den * channel_view(self.weight.to(dt), nd) + channel_view(self.bias.to(dt), nd)
        return y.to(x.dtype)


class EvoNormS0(_EvoNormBase):
    """EvoNorm-S0: a per-sample normalization-activation layer.

        y = x * sigmoid(v * x) / sqrt(Var_group[x] + eps) * gamma + beta

    The variance is biased and spans, for each sample, a group of C/G channels and all spatial
    positions (as in GroupNorm). Group rule: the default 32 is reduced to the largest divisor of C
    not above it; an explicit ``groups`` must divide C. No running statistics (train == eval).
    """

    def __init__(self, num_channels: int, *, groups: int | None = None, eps: float = 1e-5) -> None:
        super().__init__(num_channels, eps)
        self.groups = resolve_groups(num_channels, groups, 32, "EvoNormS0")

    def extra_repr(self) -> str:
        return f"{self.num_channels}, groups={self.groups}, eps={self.eps}"

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "EvoNormS0", min_spatial=0)
        dt = compute_dtype(x)
        xc = x.to(dt)
        n, c, g = x.shape[0], self.num_channels, self.groups
        var = torch.var(xc.reshape(n, g, -1), dim=2, correction=0)          # (N, G)
        inv = torch.rsqrt(var + self.eps).repeat_interleave(c // g, dim=1)  # (N, C)
        inv = inv.reshape((n, c) + (1,) * (x.dim() - 2))
        nd = x.dim()
        gate = torch.sigmoid(xc * channel_view(self.v.to(dt), nd))
        y = xc * gate * inv * channel_view(self.weight.to(dt), nd) + channel_view(self.bias.to(dt), nd)
        return y.to(x.dtype)
