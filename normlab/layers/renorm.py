"""Batch Renormalization (Ioffe, 2017), with ghost batches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._batch_kernels import _running_affine
from ._common import check_input, check_momentum, check_positive_float, check_positive_int, compute_dtype, \
    empty_batch, init_affine, tracing
from ._fused import affine_batch_norm, affine_batch_norm_plain, batch_stats
from ._ghost import as_channels, from_channels, ghost_forward, init_ghost, sequential_update

__all__ = ["BatchRenorm"]


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
        init_ghost(self, norm_batch)                        # ghost batches (layers/ghost.py)
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
