"""Layers whose statistics span the batch: BatchNorm, BatchGroupNorm, BatchRenorm, SyncBatchGroupNorm."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._ghost import (as_channels, check_norm_batch, from_channels, ghost_forward, loop_is_faster,
                     sequential_update)
from ._fused import affine_batch_norm, affine_batch_norm_plain, batch_stats, scale_shift
from ._common import (
    empty_batch,
    channel_view,
    check_input,
    check_momentum,
    check_positive_float,
    check_positive_int,
    compute_dtype,
    divisors,
    init_affine,
    nearest_divisors,
    tracing,
)

__all__ = ["BatchNorm", "BatchGroupNorm", "BatchRenorm", "SyncBatchGroupNorm"]


class BatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch Normalization (Ioffe & Szegedy, 2015): torch's own kernel behind one class for 1-D to 3-D.

    y = (x - E[x]) / sqrt(Var[x] + eps) * gamma + beta, where E and Var span (N, *spatial) for each
    channel; Var is biased for normalization, the running variance is unbiased. Running
    statistics are kept for eval, updated new = (1 - momentum) * old + momentum * batch.

    It is ``torch.nn.modules.batchnorm._BatchNorm``: BatchNorm1d/2d/3d behind one class so the same
    spec name works for (N, C, L), (N, C, H, W) and (N, C, D, H, W) inputs.
    """

    def __init__(
        self,
        num_channels: int,
        *,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        norm_batch: int | None = None,
    ) -> None:
        check_positive_int("num_channels", num_channels)
        check_positive_float("eps", eps)
        check_momentum(momentum)
        super().__init__(num_channels, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats)
        self.norm_batch = check_norm_batch(norm_batch)      # ghost batches (layers/ghost.py)
        self.ghost_interleaved = False     # fed batches reordered by ghost.interleave (fit())

    @property
    def num_channels(self) -> int:
        return self.num_features

    def _check_input_dim(self, input: Tensor) -> None:
        check_input(input, self.num_features, "BatchNorm")

    def forward(self, input: Tensor) -> Tensor:
        if input.shape[0] == 0:         # torch would still count the batch in num_batches_tracked
            self._check_input_dim(input)
            return empty_batch(input)
        if self.training and self.norm_batch and input.shape[0] > self.norm_batch:
            self._check_input_dim(input)
            return ghost_forward(input, self.norm_batch, self._ghost, self.ghost_interleaved)
        return super().forward(input)

    def _ghost(self, xv: Tensor) -> Tensor:
        """k ghost batches (k, b, C, ...) in one fused call; k sequential running updates."""
        k, c = xv.shape[0], self.num_features
        if xv.shape[1] * xv[0, 0, 0].numel() < 2:
            raise ValueError(f"BatchNorm needs more than 1 value per channel when training, got a "
                             f"normalization batch of shape {tuple(xv.shape[1:])}")
        if loop_is_faster(xv):       # one call per group on its slice; buffers update in order
            return torch.stack([super(BatchNorm, self).forward(part) for part in xv.unbind(0)])
        w = self.weight.repeat(k) if self.affine else None
        b = self.bias.repeat(k) if self.affine else None
        if not self.track_running_stats:
            return from_channels(F.batch_norm(as_channels(xv), None, None, w, b, True, 0.0, self.eps), k)
        like = self.running_mean
        tm = torch.zeros(k * c, dtype=like.dtype, device=like.device)
        tv = torch.ones(k * c, dtype=like.dtype, device=like.device)
        y = F.batch_norm(as_channels(xv), tm, tv, w, b, True, 1.0, self.eps)   # tm, tv <- batch stats
        sequential_update([(self.running_mean, tm.view(k, c)), (self.running_var, tv.view(k, c))],
                          self.momentum, self.num_batches_tracked)
        return from_channels(y, k)

    def channel_affine(self) -> tuple[Tensor, Tensor] | None:
        """Eval-mode transform as per-channel (scale, shift); None without running statistics."""
        if not self.track_running_stats:
            return None
        return _running_affine(self.running_mean, self.running_var, self.eps,
                               self.weight if self.affine else None,
                               self.bias if self.affine else None)


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


class BatchGroupNorm(nn.Module):
    """Batch Group Normalization (Zhou et al., 2020, "Batch Group Normalization").

    The input (N, C, *spatial) is viewed as (N, G, M) with M = C * prod(spatial) / G: the channel
    and spatial dims are merged into one feature axis and cut into G groups. For each group g,

        mu_g  = mean of x over the batch and the group's M features  (N * M values)
        var_g = biased variance over the same values
        y     = (x - mu_g) / sqrt(var_g + eps) * gamma_c + beta_c

    eps sits inside the square root. The affine (gamma, beta) is per channel, shape (C,). Running
    mean and variance have shape (G,) and are updated like BatchNorm: PyTorch momentum convention
    (new = (1 - momentum) * old + momentum * batch) with the unbiased variance (N*M / (N*M - 1));
    eval uses them. G may exceed C, as long as G divides C * prod(spatial). With G = C this is
    BatchNorm exactly; with a small G it trains at batch size 1.

    Statistics are computed in float32 for float16/bfloat16 inputs and the output is cast back.
    """

    def __init__(
        self,
        num_channels: int,
        *,
        groups: int | str = 32,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        ref_batch: int = 32,
        norm_batch: int | None = None,
    ) -> None:
        super().__init__()
        self.norm_batch = check_norm_batch(norm_batch)      # ghost batches (layers/ghost.py)
        self.ghost_interleaved = False     # fed batches reordered by ghost.interleave (fit())
        self.num_channels = check_positive_int("num_channels", num_channels)
        self.auto = isinstance(groups, str)
        if self.auto and groups.lower() != "auto":
            raise ValueError(f"groups={groups!r} is invalid: expected a positive integer or 'auto'")
        self.groups = 0 if self.auto else check_positive_int("groups", groups)
        self.ref_batch = check_positive_int("ref_batch", ref_batch)
        self.eps = check_positive_float("eps", eps)
        self.momentum = check_momentum(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        init_affine(self, num_channels, self.affine)
        if self.track_running_stats:                    # with groups=auto: sized at the first forward
            self.register_buffer("running_mean", torch.zeros(self.groups))
            self.register_buffer("running_var", torch.ones(self.groups))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        if self.auto:                                   # the chosen G, kept in the state_dict
            self.register_buffer("chosen_groups", torch.tensor(0, dtype=torch.long))

    def extra_repr(self) -> str:
        groups = self.groups if not self.auto else (f"auto->{self.groups}" if self.groups else "auto")
        ref = f", ref_batch={self.ref_batch}" if self.auto else ""
        return (f"{self.num_channels}, groups={groups}{ref}, eps={self.eps}, "
                f"momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")

    @staticmethod
    def choose_groups(batch: int, num_channels: int, spatial: int, ref_batch: int = 32) -> int:
        """The group count for ``groups="auto"``: each group's statistic should span as many values
        as BatchNorm's does at batch ``ref_batch``. BatchNorm averages ref_batch * S values per
        channel (S = prod(spatial)); a BGN group averages batch * C * S / G values; equal when
        G = batch * C / ref_batch. G must divide C * S: the divisor nearest to that target in ratio
        (ties toward the larger G), and at most batch * C * S / 2 so a group holds two values."""
        features = num_channels * spatial
        target = max(batch * num_channels / ref_batch, 1e-9)
        cap = max(1, batch * features // 2)
        valid = [d for d in divisors(features) if d <= cap] or [1]
        return min(valid, key=lambda d: (abs(math.log(d / target)), -d))

    def _resolve_groups(self, x: Tensor) -> None:
        """groups=auto: choose G from the first training batch's shape, size the running stats."""
        spatial = x[0].numel() // max(1, x.shape[1])
        batch = min(x.shape[0], self.norm_batch or x.shape[0])        # ghost batches: their size
        g = self.choose_groups(batch, self.num_channels, spatial, self.ref_batch)
        self.groups = g
        self.chosen_groups.fill_(g)
        if self.track_running_stats:
            like = self.running_mean
            self.running_mean = torch.zeros(g, dtype=like.dtype, device=like.device)
            self.running_var = torch.ones(g, dtype=like.dtype, device=like.device)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs) -> None:
        if self.auto:
            chosen = state_dict.get(prefix + "chosen_groups")
            g = int(chosen) if chosen is not None else 0
            if self.track_running_stats and g and self.running_mean.numel() != g:
                like = self.running_mean
                self.running_mean = torch.zeros(g, dtype=like.dtype, device=like.device)
                self.running_var = torch.ones(g, dtype=like.dtype, device=like.device)
            self.groups = g
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    @property
    def channels_aligned(self) -> bool:
        """True when every group is made of whole channels (G divides C): a per-channel affine in eval."""
        return self.num_channels % self.groups == 0

    def _check_groups(self, x: Tensor) -> int:
        features = x[0].numel()
        if features % self.groups != 0:
            near = nearest_divisors(features, self.groups)
            raise ValueError(
                f"BatchGroupNorm groups={self.groups} does not divide C*prod(spatial)={features} "
                f"for input shape {tuple(x.shape)}; nearest valid groups: "
                + " or ".join(str(g) for g in near)
            )
        return features // self.groups

    def _use_batch_stats(self) -> bool:
        return self.training or not self.track_running_stats

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "BatchGroupNorm")
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            return empty_batch(x)
        if self.auto and not self.groups:
            if not self.training:
                raise ValueError("BatchGroupNorm(groups='auto') chooses G at its first training "
                                 "forward: train it (or load a state_dict) before eval")
            self._resolve_groups(x)
        self._check_groups(x)
        n, c, g = x.shape[0], self.num_channels, self.groups
        use_batch = self._use_batch_stats()
        if use_batch and x.shape[0] * x[0].numel() // g < 2 and self.training:
            raise ValueError(
                f"BatchGroupNorm needs more than 1 value per group when training, got input shape "
                f"{tuple(x.shape)} with groups={g}; use fewer groups"
            )
        if self.training and self.norm_batch and n > self.norm_batch:
            return ghost_forward(x, self.norm_batch, self._ghost, self.ghost_interleaved)
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        run_mean = self.running_mean if self.track_running_stats else None
        run_var = self.running_var if self.track_running_stats else None
        return self._normalize(x, c, g, self.weight, self.bias, run_mean, run_var, use_batch,
                               self.momentum)

    def _ghost(self, xv: Tensor) -> Tensor:
        """k ghost batches (k, b, C, ...) as one BGN over (b, k*C, ...) with k*G groups (group
        j*G + g is ghost j's group g; the per-channel affine repeats k times); the k running
        updates follow in order."""
        k, bsz, c, g = xv.shape[0], xv.shape[1], self.num_channels, self.groups
        if bsz * xv[0, 0].numel() // g < 2:
            raise ValueError(f"BatchGroupNorm needs more than 1 value per group when training, got a "
                             f"normalization batch of shape {tuple(xv.shape[1:])} with groups={g}")
        if loop_is_faster(xv):       # one call per group on its slice; buffers update in order
            outs = []
            for part in xv.unbind(0):
                if self.track_running_stats:
                    self.num_batches_tracked.add_(1)
                outs.append(self._normalize(part, c, g, self.weight, self.bias, self.running_mean,
                                            self.running_var, True, self.momentum))
            return torch.stack(outs)
        w = self.weight.repeat(k) if self.affine else None
        b = self.bias.repeat(k) if self.affine else None
        if not self.track_running_stats:
            return from_channels(self._normalize(as_channels(xv), k * c, k * g, w, b, None, None, True, 0.0), k)
        like = self.running_mean
        tm = torch.zeros(k * g, dtype=like.dtype, device=like.device)
        tv = torch.ones(k * g, dtype=like.dtype, device=like.device)
        y = self._normalize(as_channels(xv), k * c, k * g, w, b, tm, tv, True, 1.0)   # tm, tv <- stats
        sequential_update([(self.running_mean, tm.view(k, g)), (self.running_var, tv.view(k, g))],
                          self.momentum, self.num_batches_tracked)
        return from_channels(y, k)

    def _normalize(self, x: Tensor, c: int, g: int, weight: Tensor | None, bias: Tensor | None,
                   run_mean: Tensor | None, run_var: Tensor | None, use_batch: bool,
                   momentum: float) -> Tensor:
        """BGN of x (N, c, ...) with g groups, the given affine and running buffers (updated with
        ``momentum`` when ``use_batch`` and they are given)."""
        n = x.shape[0]
        if c % g == 0 and c != g:
            # Groups of whole channels: one fused pass each way (see _BGNFunction).
            if not use_batch:
                per = c // g
                return F.batch_norm(x, run_mean.repeat_interleave(per), run_var.repeat_interleave(per),
                                    weight, bias, False, 0.0, self.eps)
            dt = compute_dtype(x)
            w, b = (None, None) if not self.affine else (weight.to(dt), bias.to(dt))
            y = _BGNFunction.apply(x.to(dt).contiguous(), w, b, run_mean, run_var,
                                   g, momentum, self.eps)
            return y.to(x.dtype)
        # Each group inside one channel (g a multiple of c; g == c is BatchNorm), or groups that
        # straddle channels: the (N, g, M) view is a BatchNorm input whose channels are the groups.
        inside = g % c == 0
        w = b = None
        if inside and self.affine:
            w, b = weight.repeat_interleave(g // c), bias.repeat_interleave(g // c)
        xg = x.reshape(n, g, -1)
        if not use_batch:
            y = F.batch_norm(xg, run_mean, run_var, w, b, False, 0.0, self.eps).reshape(x.shape)
        else:
            dt = compute_dtype(x)
            xg = xg.to(dt).contiguous()
            mean, var = batch_stats(xg)           # GroupNorm's fast kernel, not BatchNorm's
            if run_mean is not None:
                _update_running(run_mean, run_var, mean, var, xg.shape[0] * xg.shape[2], momentum)
            if w is None:
                w, b = torch.ones_like(mean), torch.zeros_like(mean)
            y = affine_batch_norm(xg, mean, var, w.to(dt), b.to(dt), self.eps).reshape(x.shape)
            y = y.to(x.dtype)
        if inside or not self.affine:
            return y
        return scale_shift(y, channel_view(weight, x.dim()).to(y.dtype),
                           channel_view(bias, x.dim()).to(y.dtype))

    def channel_affine(self) -> tuple[Tensor, Tensor] | None:
        """Eval-mode transform as per-channel (scale, shift), or None when it is not per channel."""
        if not (self.track_running_stats and self.channels_aligned):
            return None
        per = self.num_channels // self.groups
        return _running_affine(self.running_mean.repeat_interleave(per),
                               self.running_var.repeat_interleave(per), self.eps,
                               self.weight, self.bias)


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


class SyncBatchGroupNorm(BatchGroupNorm):
    """Batch Group Normalization with statistics reduced across a ``torch.distributed`` process group.

    The same math as :class:`BatchGroupNorm`, with the batch spanning every process of the group:
    mu_g and var_g are taken over the union of the processes' batches (each may hold a different
    number of samples). The sums go through a differentiable all-reduce (its backward all-reduces
    the gradients), so input gradients match single-process BGN on the concatenated batch.
    Outside training, or when torch.distributed is not initialised or the group has one process,
    it is plain BatchGroupNorm. Two reductions are made per call (the sum, then the squared
    deviations from the global mean), which keeps the variance free of cancellation.
    """

    def __init__(self, num_channels: int, *, groups: int | str = 32, eps: float = 1e-5,
                 momentum: float = 0.1, affine: bool = True, track_running_stats: bool = True,
                 ref_batch: int = 32, process_group: object | None = None) -> None:
        super().__init__(num_channels, groups=groups, eps=eps, momentum=momentum, affine=affine,
                         track_running_stats=track_running_stats, ref_batch=ref_batch)
        self.process_group = process_group

    def _world_size(self) -> int:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self._world_size() == 1:
            return super().forward(x)
        check_input(x, self.num_channels, "SyncBatchGroupNorm")
        if self.auto and not self.groups:
            self._resolve_groups(x)
        self._check_groups(x)
        g = self.groups
        dt = compute_dtype(x)
        xv = x.reshape(x.shape[0], g, -1).to(dt)
        count = torch.tensor([float(xv.shape[0] * xv.shape[2])], dtype=dt, device=x.device)
        local = torch.cat([xv.sum(dim=(0, 2)), count])
        total = _AllReduceSum.apply(local, self.process_group)
        n_total = total[-1].detach()
        if n_total.item() < 2:
            raise ValueError("SyncBatchGroupNorm needs more than 1 value per group across processes")
        mean = total[:-1] / n_total
        centered = xv - mean.view(1, g, 1)
        var = _AllReduceSum.apply(centered.pow(2).sum(dim=(0, 2)), self.process_group) / n_total
        y = (centered * torch.rsqrt(var + self.eps).view(1, g, 1)).reshape(x.shape)
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum
                self.num_batches_tracked.add_(1)
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                unbiased = var.detach() * n_total / (n_total - 1)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        if self.affine:
            y = y * channel_view(self.weight, x.dim()).to(dt) + channel_view(self.bias, x.dim()).to(dt)
        return y.to(x.dtype)


class BatchRenorm(nn.Module):
    """Batch Renormalization (Ioffe, 2017, "Batch Renormalization").

    Training, per channel over (N, *spatial), with sigma_B = sqrt(biased Var_B + eps) and
    sigma = sqrt(running_var + eps):

        r = stop_grad(clip(sigma_B / sigma, 1 / r_max, r_max))
        d = stop_grad(clip((mu_B - running_mean) / sigma, -d_max, d_max))
        y = ((x - mu_B) / sigma_B * r + d) * gamma + beta

    Eval: y = (x - running_mean) / sigma * gamma + beta, which is BatchNorm's eval.
    Running statistics follow BatchNorm (PyTorch momentum convention, unbiased running variance)
    rather than the paper's moving sigma, so a BatchNorm state_dict loads as is.

    Schedule, from the paper: r_max stays 1 and d_max 0 for ``warmup_steps`` training steps, then
    rise linearly to ``r_max`` at ``r_max_steps`` and to ``d_max`` at ``d_max_steps``. The step
    counter (``num_batches_tracked``) saturates at the end of the schedule, so it stays bounded.
    """

    def __init__(
        self,
        num_channels: int,
        *,
        eps: float = 1e-5,
        momentum: float = 0.01,
        affine: bool = True,
        r_max: float = 3.0,
        d_max: float = 5.0,
        warmup_steps: int = 5000,
        r_max_steps: int = 40000,
        d_max_steps: int = 25000,
        norm_batch: int | None = None,
    ) -> None:
        super().__init__()
        self.norm_batch = check_norm_batch(norm_batch)      # ghost batches (layers/ghost.py)
        self.ghost_interleaved = False     # fed batches reordered by ghost.interleave (fit())
        self.num_channels = check_positive_int("num_channels", num_channels)
        self.eps = check_positive_float("eps", eps)
        self.momentum = check_momentum(momentum)
        self.affine = bool(affine)
        if not r_max >= 1:
            raise ValueError(f"r_max={r_max!r} is invalid: expected a number >= 1")
        self.r_max = float(r_max)
        self.d_max = check_positive_float("d_max", d_max, allow_zero=True)
        self.warmup_steps = int(check_positive_float("warmup_steps", warmup_steps, allow_zero=True))
        for name, end in (("r_max_steps", r_max_steps), ("d_max_steps", d_max_steps)):
            if not isinstance(end, int) or end < self.warmup_steps:
                raise ValueError(f"{name}={end!r} is invalid: expected an integer >= "
                                 f"warmup_steps={self.warmup_steps}")
        self.r_max_steps, self.d_max_steps = r_max_steps, d_max_steps
        init_affine(self, num_channels, self.affine)
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    @property
    def schedule_end(self) -> int:
        return max(self.r_max_steps, self.d_max_steps)

    def limits(self, step: int | None = None) -> tuple[float, float]:
        """(r_max, d_max) in force at ``step`` (default: the current step)."""
        t = int(self.num_batches_tracked) if step is None else step

        def ramp(end: int) -> float:
            if t <= self.warmup_steps:
                return 0.0
            if end == self.warmup_steps:
                return 1.0
            return min(1.0, (t - self.warmup_steps) / (end - self.warmup_steps))

        return 1.0 + (self.r_max - 1.0) * ramp(self.r_max_steps), self.d_max * ramp(self.d_max_steps)

    def limits_tensor(self, step: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`limits` as float64 tensors, elementwise over a tensor of steps, without reading
        the step on the host (no ``.item()``: what ``torch.export`` and CUDA graphs need)."""
        t = step.to(torch.float64)
        w = self.warmup_steps

        def ramp(end: int) -> Tensor:
            if end == w:
                return (t > w).to(torch.float64)
            return ((t - w) / (end - w)).clamp(0.0, 1.0)

        return 1.0 + (self.r_max - 1.0) * ramp(self.r_max_steps), self.d_max * ramp(self.d_max_steps)

    def _advance(self, k: int) -> None:
        """num_batches_tracked += k, saturating at the end of the schedule (a step counter already
        past it stays where it is), on the device: no host sync."""
        t, end = self.num_batches_tracked, self.schedule_end
        self.num_batches_tracked.copy_(torch.where(t >= end, t, (t + k).clamp_max(end)))

    def extra_repr(self) -> str:
        return (f"{self.num_channels}, eps={self.eps}, momentum={self.momentum}, r_max={self.r_max}, "
                f"d_max={self.d_max}, warmup_steps={self.warmup_steps}")

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "BatchRenorm")
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            return empty_batch(x)
        if not self.training:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        if self.norm_batch and x.shape[0] > self.norm_batch:
            return ghost_forward(x, self.norm_batch, self._ghost, self.ghost_interleaved)
        n = x.numel() // x.shape[1]
        if n < 2:
            raise ValueError(f"BatchRenorm needs more than 1 value per channel when training, got "
                             f"input shape {tuple(x.shape)}")
        dt = compute_dtype(x)
        xc = x.to(dt).contiguous()
        mean_b, var_b = batch_stats(xc)
        traced = tracing()
        if traced:             # the step stays on the device: no .item() for export to guard on
            r_max, d_max = (t.to(dt) for t in self.limits_tensor(self.num_batches_tracked))
        else:
            r_max, d_max = self.limits()
        with torch.no_grad():
            run_std = torch.sqrt(self.running_var.to(dt) + self.eps)
            r = (torch.sqrt(var_b + self.eps) / run_std).clamp(1.0 / r_max, r_max)
            d = ((mean_b - self.running_mean.to(dt)) / run_std).clamp(-d_max, d_max)
        # y = (x - mu_B) / sigma_B * (gamma r) + (gamma d + beta): BatchNorm with an affine that
        # carries the stop-gradient r and d, so one fused pass each way (see layers/_fused.py)
        w = self.weight.to(dt) if self.affine else torch.ones_like(r)
        b = self.bias.to(dt) if self.affine else torch.zeros_like(r)
        if traced:         # plain ops: a compiled custom Function got the weight's gradient wrong here
            y = affine_batch_norm_plain(xc, w * r, torch.addcmul(b, w, d), self.eps)
        else:
            y = affine_batch_norm(xc, mean_b, var_b, w * r, torch.addcmul(b, w, d), self.eps)
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(mean_b.to(self.running_mean.dtype), alpha=m)
            self.running_var.mul_(1 - m).add_((var_b * n / (n - 1)).to(self.running_var.dtype), alpha=m)
            if traced:
                self._advance(1)
            elif int(self.num_batches_tracked) < self.schedule_end:
                self.num_batches_tracked.add_(1)
        return y.to(x.dtype)

    def _ghost(self, xv: Tensor) -> Tensor:
        """k ghost batches (k, b, C, ...): per-group statistics in one pass; r and d of group i
        come from the running statistics after groups 0..i-1 updated them, as with micro-batches."""
        k, c = xv.shape[0], self.num_channels
        n = xv[0].numel() // c
        if n < 2:
            raise ValueError(f"BatchRenorm needs more than 1 value per channel when training, got a "
                             f"normalization batch of shape {tuple(xv.shape[1:])}")
        dt = compute_dtype(xv)
        xc = as_channels(xv.to(dt))                                          # (b, k*C, ...)
        mean_f, var_f = batch_stats(xc)
        mean_b, var_b = mean_f.view(k, c), var_f.view(k, c)
        std_b = torch.sqrt(var_b + self.eps)
        with torch.no_grad():
            # Group i sees the running statistics after groups 0..i-1 updated them, and the
            # r_max / d_max of its own step: all k at once (closed form of the momentum updates,
            # one small matrix product) instead of a Python loop over the groups.
            m = self.momentum
            if tracing():      # the steps stay on the device (see limits_tensor)
                t0, end = self.num_batches_tracked, self.schedule_end
                ahead = (t0 + torch.arange(k, device=t0.device)).clamp_max(end)
                r_lim, d_lim = self.limits_tensor(torch.where(t0 >= end, t0, ahead))
                r_max, d_max = r_lim.to(dt).view(k, 1), d_lim.to(dt).view(k, 1)
            else:
                t0, end = int(self.num_batches_tracked), self.schedule_end
                steps = [t0 if t0 >= end else min(t0 + i, end) for i in range(k)]
                lim = [self.limits(t) for t in steps]
                r_max = torch.tensor([lr for lr, _ in lim], dtype=dt, device=xv.device).view(k, 1)
                d_max = torch.tensor([ld for _, ld in lim], dtype=dt, device=xv.device).view(k, 1)
            i = torch.arange(k, dtype=torch.float64)
            before = (1.0 - m) ** i                                       # (k,): weight of the old value
            lag = i.view(k, 1) - 1 - i.view(1, k)                         # i - 1 - j
            mix = torch.where(lag >= 0, m * (1.0 - m) ** lag.clamp_min(0), torch.zeros(()))
            before, mix = before.to(dt).to(xv.device).view(k, 1), mix.to(dt).to(xv.device)
            unbiased = var_b * (n / (n - 1))
            run_mean = before * self.running_mean.to(dt) + mix @ mean_b   # (k, C) as seen by group i
            run_var = before * self.running_var.to(dt) + mix @ unbiased
            run_std = torch.sqrt(run_var + self.eps)
            r = torch.minimum(torch.maximum(std_b / run_std, 1.0 / r_max), r_max)
            d = torch.minimum(torch.maximum((mean_b - run_mean) / run_std, -d_max), d_max)
            sequential_update([(self.running_mean, mean_b), (self.running_var, unbiased)], m, None)
            if isinstance(t0, Tensor):
                self._advance(k)
            else:
                self.num_batches_tracked.fill_(t0 if t0 >= end else min(t0 + k, end))
        w = self.weight.to(dt) if self.affine else torch.ones_like(r[0])
        b = self.bias.to(dt) if self.affine else torch.zeros_like(r[0])
        norm = affine_batch_norm_plain if tracing() else affine_batch_norm   # see forward
        args = (xc,) if norm is affine_batch_norm_plain else (xc, mean_f, var_f)
        y = norm(*args, (w * r).reshape(-1), torch.addcmul(b, w, d).reshape(-1), self.eps)
        return from_channels(y, k).to(xv.dtype)

    def channel_affine(self) -> tuple[Tensor, Tensor]:
        """Eval-mode transform as per-channel (scale, shift)."""
        return _running_affine(self.running_mean, self.running_var, self.eps, self.weight, self.bias)

