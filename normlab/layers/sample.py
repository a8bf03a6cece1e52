"""Per-sample layers: statistics never cross the batch, so any batch size behaves the same."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._fused import channel_sums, scale_shift
from ._common import (
    empty_batch,
    check_input,
    check_positive_float,
    check_positive_int,
    init_affine,
    largest_divisor_at_most,
    nearest_divisors,
    tracing,
)

__all__ = ["GroupNorm", "LayerNorm", "InstanceNorm", "PositionalNorm", "resolve_groups"]


def resolve_groups(num_channels: int, groups: int | None, default: int, layer: str) -> int:
    """The group rule shared by GroupNorm and EvoNorm-S0.

    ``groups=None`` takes ``default`` reduced to the largest divisor of C not above it
    (C=48 with default 32 gives 24). An explicit ``groups`` must divide C, or the error names the
    nearest valid counts.
    """
    if groups is None:
        return largest_divisor_at_most(num_channels, default)
    check_positive_int("groups", groups)
    if num_channels % groups != 0:
        near = nearest_divisors(num_channels, groups)
        raise ValueError(
            f"{layer} groups={groups} does not divide num_channels={num_channels}; nearest valid "
            "groups: " + " or ".join(str(g) for g in near)
        )
    return groups


class _PerChannelAffine(nn.Module):
    def __init__(self, num_channels: int, eps: float, affine: bool) -> None:
        super().__init__()
        self.num_channels = check_positive_int("num_channels", num_channels)
        self.eps = check_positive_float("eps", eps)
        self.affine = bool(affine)
        init_affine(self, num_channels, self.affine)


class GroupNorm(_PerChannelAffine):
    """Group Normalization (Wu & He, 2018).

    Channels are cut into G groups of C/G; for each sample and group, mean and biased variance span
    the group's channels and all spatial positions; y = (x - mu) / sqrt(var + eps) * gamma_c + beta_c.
    No running statistics: train and eval are the same. Group rule: the default (32) is reduced to
    the largest divisor of C not above it; an explicit ``groups`` must divide C.
    """

    def __init__(self, num_channels: int, *, groups: int | None = None, eps: float = 1e-5,
                 affine: bool = True) -> None:
        super().__init__(num_channels, eps, affine)
        self.groups = resolve_groups(num_channels, groups, 32, "GroupNorm")

    def extra_repr(self) -> str:
        return f"{self.num_channels}, groups={self.groups}, eps={self.eps}, affine={self.affine}"

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "GroupNorm", min_spatial=0)
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            return empty_batch(x)
        return F.group_norm(x, self.groups, self.weight, self.bias, self.eps)


class LayerNorm(_PerChannelAffine):
    """Layer Normalization over (C, *spatial) (Ba et al., 2016), as used in CNNs.

    For each sample, mean and biased variance span all channels and positions;
    y = (x - mu) / sqrt(var + eps) * gamma_c + beta_c with a per-channel affine (GroupNorm with one
    group). No running statistics.
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__(num_channels, eps, affine)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.affine}"

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "LayerNorm", min_spatial=0)
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            return empty_batch(x)
        return F.group_norm(x, 1, self.weight, self.bias, self.eps)


class InstanceNorm(_PerChannelAffine):
    """Instance Normalization (Ulyanov et al., 2016), affine by default.

    For each sample and channel, mean and biased variance span the spatial positions;
    y = (x - mu) / sqrt(var + eps) * gamma_c + beta_c. No running statistics (train == eval).
    Needs more than one spatial position.
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__(num_channels, eps, affine)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.affine}"

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "InstanceNorm", min_spatial=1)
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            return empty_batch(x)
        if x[0, 0].numel() < 2:
            raise ValueError(f"InstanceNorm needs more than 1 spatial position, got input shape "
                             f"{tuple(x.shape)}")
        return F.group_norm(x, self.num_channels, self.weight, self.bias, self.eps)


def _positional_norm_plain(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """PONO on (N, C, S) in plain differentiable ops: what ``torch.export``, ``torch.compile`` and
    ``torch.jit.trace`` see (same arguments and math as :class:`_PositionalNormFunction`)."""
    var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)
    y = (x - mean) * torch.rsqrt(var + eps)
    if weight is not None:
        c = x.shape[1]
        y = y * weight.view(1, c, 1) + bias.view(1, c, 1)
    return y


class _PositionalNormFunction(torch.autograd.Function):
    """PONO over the channel dim of a contiguous (N, C, S) tensor, without moving C last.

    Forward: mu = mean over C, var = mean over C of (x - mu)^2 (two-pass, no cancellation),
    y = (x - mu) * rstd; affine optional. Backward, with g = dy * gamma:
        dx = rstd * (g - mean_C(g) - xhat * mean_C(g * xhat)),
        dgamma = sum over (N, S) of dy * xhat,   dbeta = sum over (N, S) of dy.
    The output (dx) is the only activation-sized buffer: the squares (products) that the channel
    sums need are computed in it and then overwritten. A second activation-sized temporary, freed
    in the same call, made glibc hand both back to the OS and the next call page-fault them in
    again (2,600 minor faults, ~5 ms of system time per call on (2, 64, 112, 112), more than the
    math). Few whole-tensor ops, too: each is a parallel region."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
        c = x.shape[1]
        mean = x.mean(dim=1, keepdim=True)                               # (N, 1, S)
        y = torch.sub(x, mean)
        rstd = y.square_().mean(dim=1, keepdim=True).add_(eps).rsqrt_()
        torch.sub(x, mean, out=y).mul_(rstd)
        ctx.save_for_backward(x, mean, rstd, weight)
        if weight is not None:
            scale_shift(y, weight.view(1, c, 1), bias.view(1, c, 1), out=y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor):
        x, mean, rstd, weight = ctx.saved_tensors
        c = x.shape[1]
        dy = grad_out.contiguous()
        gw = gb = None
        dx = torch.sub(x, mean)                                          # x - mu
        if weight is not None:
            if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
                # per channel over (N, S): sums of dy * xhat and dy in one read (_fused.channel_sums)
                gw, gb = channel_sums(dy, dx.mul(rstd))
                gw = gw if ctx.needs_input_grad[1] else None
                gb = gb if ctx.needs_input_grad[2] else None
            if not ctx.needs_input_grad[0]:
                return None, gw, gb, None
            g = dy * weight.view(1, c, 1)
        else:
            g = dy
        # dx = rstd g - rstd a / C - (x - mu) rstd^3 b / C, with a = sum_C g and
        # b = sum_C g (x - mu) (so sum_C g xhat = rstd b); the products g (x - mu) are made in dx
        a = g.sum(dim=1, keepdim=True)
        b = dx.mul_(g).sum(dim=1, keepdim=True)
        k1 = b.mul_(rstd.pow(3)).div_(-c)
        k0 = a.mul_(rstd).div_(c)
        torch.sub(x, mean, out=dx).mul_(k1).sub_(k0).addcmul_(g, rstd)
        return dx, gw, gb, None


class PositionalNorm(_PerChannelAffine):
    """Positional Normalization (Li et al., 2019, "Positional Normalization").

    At each sample and spatial position, mean and biased variance span the C channels;
    y = (x - mu) / sqrt(var + eps), then an optional per-channel affine (off by default, as in the
    paper, where PONO's moments are re-injected later). No running statistics.
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-5, affine: bool = False) -> None:
        super().__init__(num_channels, eps, affine)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, affine={self.affine}"

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "PositionalNorm", min_spatial=0)
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            return empty_batch(x)
        dt = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        n, c = x.shape[0], x.shape[1]
        w = self.weight.to(dt) if self.affine else None
        b = self.bias.to(dt) if self.affine else None
        x3 = x.to(dt).contiguous().view(n, c, -1)
        if tracing():
            y = _positional_norm_plain(x3, w, b, self.eps)
        else:
            y = _PositionalNormFunction.apply(x3, w, b, self.eps)
        return y.view(x.shape).to(x.dtype)
