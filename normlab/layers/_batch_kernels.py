"""What the batch-statistics layers share below the layer level: the running-statistics helpers
(eval-mode affine, BatchNorm's momentum update) and the two autograd functions, BGN's fused
training step (:class:`_BGNFunction`) and the differentiable all-reduce of SyncBatchGroupNorm
(:class:`_AllReduceSum`). Depends on torch alone."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from ._fused import batch_stats


def _running_affine(mean: Tensor, var: Tensor, eps: float, weight: Tensor | None,
                    bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """(scale, shift) with y = x * scale + shift == (x - mean) / sqrt(var + eps) * weight + bias."""
    inv = torch.rsqrt(var + eps)
    scale = inv if weight is None else weight * inv
    shift = -mean * scale if bias is None else bias - mean * scale
    return scale, shift


def _update_running(run_mean: Tensor, run_var: Tensor, mean: Tensor, var: Tensor, count: int,
                    momentum: float) -> None:
    """BatchNorm's running update from batch statistics over ``count`` values each: PyTorch's
    momentum convention, the unbiased variance."""
    run_mean.mul_(1 - momentum).add_(mean.to(run_mean.dtype), alpha=momentum)
    unbiased = var * (count / (count - 1))
    run_var.mul_(1 - momentum).add_(unbiased.to(run_var.dtype), alpha=momentum)


class _BGNFunction(torch.autograd.Function):
    """BGN training step for groups of two or more whole channels (G divides C, G < C):
    statistics only, then one output pass; backward is one reduction and one output pass.

    Forward. The input viewed as (N, G, C/G * prod(spatial)) has BGN's groups as its channels, so
    :func:`batch_stats` gives the group mean and biased variance directly. The output is torch's fused
    eval-mode BatchNorm kernel given those statistics per channel (one pass, affine included).

    Backward is BatchNorm's gradient per group,
        dx = w inv dy - inv S1 / M - inv^2 S2 / M * (x - mu) = (w inv) dy + beta x + gamma,
    with S1 = sum over the group of w dy, S2 = sum over the group of w dy (x - mu) inv, M the
    number of values per group, beta = -inv^2 S2 / M and gamma = -inv S1 / M - beta mu per
    channel. torch's BatchNorm backward asked for the parameter gradients only gives the
    per-channel sums (sum dy, sum dy xhat) in one read; beta x + gamma is the eval-mode BatchNorm
    kernel with weight beta and bias gamma, and w inv dy is added in place.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                running_mean: Tensor | None, running_var: Tensor | None, groups: int,
                momentum: float, eps: float) -> Tensor:
        n, c = x.shape[0], x.shape[1]
        k = c // groups
        spatial = x[0, 0].numel()
        count = n * k * spatial              # BatchGroupNorm.forward has checked count >= 2
        mean, var = batch_stats(x.view(n, groups, -1))          # G "channels"
        if running_mean is not None:
            _update_running(running_mean, running_var, mean, var, count, momentum)
        mean_c, var_c = mean.repeat_interleave(k), var.repeat_interleave(k)
        y = F.batch_norm(x, mean_c, var_c, weight, bias, False, 0.0, eps)
        ctx.save_for_backward(x, mean_c, torch.rsqrt(var_c + eps), weight)
        ctx.groups, ctx.count, ctx.has_bias = groups, count, bias is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor):
        x, mean_c, inv_c, weight = ctx.saved_tensors
        n, c = x.shape[0], x.shape[1]
        groups, count = ctx.groups, ctx.count
        k = c // groups
        dy = grad_out.to(x.dtype).contiguous().view(n, c, -1)
        x3 = x.view(n, c, -1)
        w = weight.to(x.dtype) if weight is not None else torch.ones_like(inv_c)
        # per channel: grad_w = sum dy * (x - mu) * inv, s_dy = sum dy (one read of dy and x)
        _, grad_w, s_dy = torch.ops.aten.native_batch_norm_backward(
            dy, x3, w, None, None, mean_c, inv_c, True, 0.0, [False, True, True])
        s1 = (w * s_dy).view(groups, k).sum(dim=1).repeat_interleave(k)
        s2 = (w * grad_w).view(groups, k).sum(dim=1).repeat_interleave(k)
        beta = -inv_c * inv_c * s2 / count
        gamma = -inv_c * s1 / count - beta * mean_c
        zeros, ones = torch.zeros_like(beta), torch.ones_like(beta)
        dx = F.batch_norm(x3, zeros, ones, beta, gamma, False, 0.0, 0.0)          # beta x + gamma
        dx.addcmul_(dy, (w * inv_c).view(1, c, 1))
        gw = grad_w.to(weight.dtype) if weight is not None and ctx.needs_input_grad[1] else None
        gb = s_dy.to(weight.dtype if weight is not None else x.dtype) \
            if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx.view(x.shape), gw, gb, None, None, None, None, None


class _AllReduceSum(torch.autograd.Function):
    """Sum over the processes of a group; its gradient is the same sum of the upstream gradients
    (every process's loss depends on every process's input through the total)."""

    @staticmethod
    def forward(ctx: Any, t: Tensor, group: object | None) -> Tensor:
        import torch.distributed as dist

        ctx.group = group
        out = t.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor):
        import torch.distributed as dist

        out = grad.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=ctx.group)
        return out, None
