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


# Temporaries of the per-position route are at most this many values (1 MiB in float32): in
# cache, and never a second activation-sized buffer. Freeing two activation-sized blocks in one
# call made glibc return them to the OS and the next call page-fault them back in (2,600 minor
# faults and about 5 ms of system time per call on a (2, 64, 112, 112) input, more than the math).
_PN_BLOCK = 1 << 18
# From this many values per sample (C * S), each sample is one call of BatchNorm's kernels on its
# (C, S) view (statistics over C at every position, and the output, in one fused pass; the same
# for the backward); below it the Python loop over samples costs more than it saves.
_PN_SAMPLE_MIN = 1 << 15


def _pn_blocks(n: int, c: int, s: int):
    """(sample slice, position slice) pieces of an (N, C, S) tensor of about ``_PN_BLOCK`` values:
    whole samples when they are small, else runs of positions within one sample."""
    if c * s <= _PN_BLOCK:
        k = max(1, _PN_BLOCK // (c * s))
        for a in range(0, n, k):
            yield slice(a, min(n, a + k)), slice(None)
    else:
        w = max(1, _PN_BLOCK // c)
        for i in range(n):
            for a in range(0, s, w):
                yield slice(i, i + 1), slice(a, min(s, a + w))


def _channel_sums_of_products(u: Tensor, v: Tensor, centre: Tensor | None = None) -> Tensor:
    """sum over C of u * (v - centre) for (N, C, S) tensors (centre (N, 1, S) or None), as an
    (N, 1, S) tensor, through a block-sized buffer instead of an activation-sized product."""
    if u.device.type != "cpu":          # a caching allocator, no page faults: one product
        return (u * (v if centre is None else v - centre)).sum(dim=1, keepdim=True)
    n, c, s = u.shape
    out = u.new_empty(n, 1, s)
    buf = u.new_empty(min(u.numel(), max(_PN_BLOCK, c * min(s, max(1, _PN_BLOCK // c)))))
    for ns, ss in _pn_blocks(n, c, s):
        ub, vb = u[ns, :, ss], v[ns, :, ss]
        t = buf[:ub.numel()].view(ub.shape)
        if centre is None:
            torch.mul(ub, vb, out=t)
        else:
            torch.sub(vb, centre[ns, :, ss], out=t).mul_(ub)
        torch.sum(t, dim=1, keepdim=True, out=out[ns, :, ss])
    return out


_bn_out = torch.ops.aten.native_batch_norm.out
_bn_backward_out = torch.ops.aten.native_batch_norm_backward.out


def _pn_per_sample(x: Tensor) -> bool:
    return x.device.type == "cpu" and x.shape[1] > 1 and x.shape[1] * x.shape[2] >= _PN_SAMPLE_MIN


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

    Forward: mu = mean over C, xc = x - mu, var = |xc|^2 / C (two-pass, no cancellation),
    xhat = xc * rstd; affine optional. Backward, with g = dy * gamma:
        dx = rstd * (g - mean_C(g) - xhat * mean_C(g * xhat)),
        dgamma = sum over (N, S) of dy * xhat,   dbeta = sum over (N, S) of dy.
    Large samples: each sample's (C, S) view is a batch of C rows with S features, so BatchNorm's
    training kernels compute exactly this (statistics per position over C, output, gradient), one
    fused call per sample written into one output buffer. Otherwise (many small samples): channel
    means by a reduction over dim 1, the output and dx built in place in their own buffers, the
    sums of products through a block-sized buffer. Only the output (dx) is activation-sized."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
        n, c, s = x.shape
        if _pn_per_sample(x):
            y = torch.empty_like(x)
            mean, rstd = x.new_empty(n, 1, s), x.new_empty(n, 1, s)
            for i in range(n):
                _bn_out(x[i], None, None, None, None, True, 0.0, eps,
                        out=y[i], save_mean=mean[i, 0], save_invstd=rstd[i, 0])
        else:
            mean = x.mean(dim=1, keepdim=True)                               # (N, 1, S)
            y = torch.sub(x, mean)
            rstd = _channel_sums_of_products(y, y).div_(c).add_(eps).rsqrt_()
            y.mul_(rstd)
        ctx.save_for_backward(x, mean, rstd, weight)
        if weight is not None:
            scale_shift(y, weight.view(1, c, 1), bias.view(1, c, 1), out=y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor):
        x, mean, rstd, weight = ctx.saved_tensors
        n, c, s = x.shape
        dy = grad_out.contiguous()
        gw = gb = None
        if weight is not None:
            if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
                # per channel over (N, S): sum dy * xhat = sum over (N, S) of rstd * dy * (x - mu)
                xhat = torch.sub(x, mean).mul_(rstd)
                gw, gb = channel_sums(dy, xhat)
                del xhat
                gw = gw if ctx.needs_input_grad[1] else None
                gb = gb if ctx.needs_input_grad[2] else None
            if not ctx.needs_input_grad[0]:
                return None, gw, gb, None
            g = dy * weight.view(1, c, 1)
        else:
            g = dy
        if _pn_per_sample(x):
            dx = torch.empty_like(x)
            gs, bs = x.new_empty(s), x.new_empty(s)        # BatchNorm's parameter gradients: unused
            for i in range(n):
                _bn_backward_out(g[i], x[i], None, None, None, mean[i, 0], rstd[i, 0], True, 0.0,
                                 [True, True, True], out0=dx[i], out1=gs, out2=bs)
            return dx, gw, gb, None
        # dx = rstd g - rstd a / C - (x - mu) rstd^3 b / C, with a = sum_C g, b = sum_C g (x - mu)
        # (sum_C g xhat = rstd b)
        a = g.sum(dim=1, keepdim=True)
        b = _channel_sums_of_products(g, x, mean)
        k1 = b.mul_(rstd.pow(3)).div_(-c)
        k0 = a.mul_(rstd).div_(c)
        dx = torch.sub(x, mean).mul_(k1).sub_(k0).addcmul_(g, rstd)
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
