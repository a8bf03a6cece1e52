"""Batch Group Normalization (BGN) and its cross-process variant, SyncBatchGroupNorm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._batch_kernels import _AllReduceSum, _BGNFunction, _running_affine, _update_running
from ._common import (
    channel_view,
    check_input,
    check_momentum,
    check_positive_float,
    check_positive_int,
    compute_dtype,
    divisors,
    empty_batch,
    init_affine,
    nearest_divisors,
)
from ._fused import affine_batch_norm, batch_stats, scale_shift
from ._ghost import as_channels, from_channels, ghost_forward, init_ghost, loop_is_faster, sequential_update

__all__ = ["BatchGroupNorm", "SyncBatchGroupNorm"]


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
        init_ghost(self, norm_batch)                        # ghost batches (layers/ghost.py)
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

    def auto_groups(self, batch: int, spatial: int) -> int:
        """The G that ``groups="auto"`` picks for this layer at normalization batch ``batch`` and
        ``spatial`` = prod(spatial dims) (:meth:`choose_groups` with this layer's settings)."""
        return self.choose_groups(batch, self.num_channels, spatial, self.ref_batch)

    def _resolve_groups(self, x: Tensor) -> None:
        """groups=auto: choose G from the first training batch's shape, size the running stats."""
        spatial = x[0].numel() // max(1, x.shape[1])
        batch = min(x.shape[0], self.norm_batch or x.shape[0])        # ghost batches: their size
        g = self.auto_groups(batch, spatial)
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
