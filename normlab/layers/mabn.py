"""Moving Average Batch Normalization (Yan et al., ICLR 2020) and its weight-centred convolution."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._fused import scale_shift
from ._common import (
    empty_batch,
    channel_view,
    check_input,
    check_momentum,
    check_positive_float,
    check_positive_int,
    compute_dtype,
    init_affine,
    mean_square,
    reduce_dims,
)

__all__ = ["MovingAverageBatchNorm", "CenteredConv2d", "mabn_function"]


def _snapshot_impl(t: Tensor) -> Tensor:
    return t.clone()


# A copy that torch.compile's partitioner must save rather than recompute: it may recompute a
# read of an input in the backward, after the forward has updated that input in place, and then
# computes the gradient from the new running variance (pytorch/pytorch#197039). Custom ops are
# outside its recompute allowlist. Registered once per process (a second import of this file,
# as benchmarks/layers.py --baseline makes, reuses it).
if not hasattr(torch.ops, "normlab") or not hasattr(torch.ops.normlab, "snapshot"):
    _snapshot = torch.library.custom_op("normlab::snapshot", mutates_args=())(_snapshot_impl)
    _snapshot.register_fake(lambda t: torch.empty_like(t))
_snapshot_op = torch.ops.normlab.snapshot


class _MABNFunction(torch.autograd.Function):
    """Forward with a moving average of E[x^2]; backward with a moving average of E[g * z]."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None,
                running_var: Tensor, buffer_x2: Tensor, buffer_gz: Tensor, step: int | Tensor,
                use_average: bool | Tensor, renorm: bool | Tensor, r_max: float, eps: float,
                momentum: float) -> Tensor:
        # step, use_average and renorm are Python values in eager, 0-dim tensors under
        # torch.compile (read on the device from num_batches_tracked: one graph for every step)
        dims = reduce_dims(x)
        dt = compute_dtype(x)
        xc = x.to(dt)
        on_device = isinstance(step, Tensor)
        slot = step % buffer_x2.shape[0]
        x2 = mean_square(xc, dims)
        if on_device:
            buffer_x2.index_copy_(0, slot.view(1), x2.to(buffer_x2.dtype).view(1, -1))
            var = torch.where(use_average, buffer_x2.mean(dim=0).to(dt), x2)
        else:
            buffer_x2[slot] = x2.to(buffer_x2.dtype)
            var = buffer_x2.mean(dim=0).to(dt) if use_average else x2
        std = torch.sqrt(var + eps)
        if on_device:
            # running_var through an opaque copy: the compiler's partitioner would otherwise
            # recompute r in the backward from running_var after the update below (see _snapshot)
            run_var = _snapshot_op(running_var).to(dt)
            r = torch.where(renorm, (std / torch.sqrt(run_var + eps)).clamp(1.0 / r_max, r_max),
                            torch.ones_like(std))
        elif renorm:
            r = (std / torch.sqrt(running_var.to(dt) + eps)).clamp(1.0 / r_max, r_max)
        else:
            r = torch.ones_like(std)
        scale = r / std
        if weight is not None:
            scale = scale * weight.to(dt)
        if bias is not None:                                     # one pass: bias + x * scale
            y = scale_shift(xc, channel_view(scale, x.dim()), channel_view(bias.to(dt), x.dim()))
        else:
            y = xc * channel_view(scale, x.dim())
        running_var.mul_(1 - momentum).add_(var.to(running_var.dtype), alpha=momentum)
        if on_device:
            ctx.save_for_backward(x, weight, std, r, slot, use_average)
        else:
            ctx.save_for_backward(x, weight, std, r)
            ctx.slot, ctx.use_average = slot, use_average
        ctx.buffer_gz, ctx.on_device = buffer_gz, on_device
        ctx.has_bias = bias is not None
        ctx.bias_dtype = bias.dtype if bias is not None else None
        return y.to(x.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor):
        # With z = x / std and g = dy * gamma * r, per channel over M values:
        #   E[g z] = gamma r / std * sum(dy x) / M,   dL/dx = (g - z * SMA(E[g z])) / std
        #          = (gamma r / std) dy - SMA(E[g z]) / std^2 x,
        #   dgamma = r / std * sum(dy x),              dbeta = sum(dy).
        # Both sums come from one read of dy and x (BatchNorm's backward asked for its parameter
        # gradients with mean 0 and invstd 1), dx from two passes.
        if ctx.on_device:
            x, weight, std, r, slot, use_average = ctx.saved_tensors
        else:
            x, weight, std, r = ctx.saved_tensors
            slot, use_average = ctx.slot, ctx.use_average
        dt = std.dtype
        n, c = x.shape[0], x.shape[1]
        x3 = x.to(dt).contiguous().view(n, c, -1)
        dy = grad_out.to(dt).contiguous().view(n, c, -1)
        ones = torch.ones_like(std)
        _, s_dyx, s_dy = torch.ops.aten.native_batch_norm_backward(
            dy, x3, ones, None, None, torch.zeros_like(std), ones, True, 0.0, [False, True, True])
        count = dy.numel() // c
        g_scale = r if weight is None else r * weight.to(dt)
        gz = g_scale / std * s_dyx / count
        if ctx.on_device:
            ctx.buffer_gz.index_copy_(0, slot.view(1), gz.to(ctx.buffer_gz.dtype).view(1, -1))
            mean_gz = torch.where(use_average, ctx.buffer_gz.mean(dim=0).to(dt), gz)
        else:
            ctx.buffer_gz[slot] = gz.to(ctx.buffer_gz.dtype)
            mean_gz = ctx.buffer_gz.mean(dim=0).to(dt) if use_average else gz
        gx = torch.mul(dy, (g_scale / std).view(1, c, 1))
        gx.addcmul_(x3, (-mean_gz / (std * std)).view(1, c, 1))
        gw = gb = None
        if weight is not None and ctx.needs_input_grad[1]:
            gw = (r / std * s_dyx).to(weight.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = s_dy.to(ctx.bias_dtype)
        return (gx.view(x.shape).to(x.dtype), gw, gb) + (None,) * 9


def mabn_function(x: Tensor, weight: Tensor | None, bias: Tensor | None, running_var: Tensor,
                  buffer_x2: Tensor, buffer_gz: Tensor, step: int | Tensor,
                  use_average: bool | Tensor, renorm: bool | Tensor,
                  r_max: float = 5.0, eps: float = 1e-5, momentum: float = 0.02) -> Tensor:
    """Functional MABN training step (see :class:`MovingAverageBatchNorm`); updates the buffers."""
    return _MABNFunction.apply(x, weight, bias, running_var, buffer_x2, buffer_gz, step,
                               use_average, renorm, r_max, eps, momentum)


class MovingAverageBatchNorm(nn.Module):
    """Moving Average Batch Normalization (Yan et al., 2020, "Towards Stabilizing Batch Statistics
    in Backward Propagation of Batch Normalization").

    No mean is subtracted (pair it with :class:`CenteredConv2d`). Per channel, over (N, *spatial):

        chi_t  = E[x^2] of this batch;   chi = simple moving average of chi over the last
                 ``buffer_size`` iterations (this batch alone until the buffer is full and
                 ``warmup_iters`` have passed)
        z      = x / sqrt(chi + eps)
        r      = clip(sqrt(chi + eps) / sqrt(running_var + eps), 1/r_max, r_max), and r = 1 for
                 the first ``renorm_iters`` iterations (the warm-up)
        y      = r * z * gamma + beta

    Backward replaces the batch's E[g * z] (g = dL/dy * gamma * r) by its simple moving average
    over the same window: dL/dx = (g - z * SMA(E[g z])) / sqrt(chi + eps).

    ``running_var`` is an EMA of chi in PyTorch's convention (new = (1 - momentum) * old +
    momentum * chi); the paper's reference code writes it as 0.98 * old + 0.02 * chi, which is
    momentum=0.02 here. Eval: y = x / sqrt(running_var + eps) * gamma + beta.
    """

    def __init__(
        self,
        num_channels: int,
        *,
        eps: float = 1e-5,
        momentum: float = 0.02,
        buffer_size: int = 16,
        warmup_iters: int = 100,
        renorm_iters: int = 1000,
        r_max: float = 5.0,
        affine: bool = True,
    ) -> None:
        super().__init__()
        self.num_channels = check_positive_int("num_channels", num_channels)
        self.eps = check_positive_float("eps", eps)
        self.momentum = check_momentum(momentum)
        self.buffer_size = check_positive_int("buffer_size", buffer_size)
        self.warmup_iters = int(check_positive_float("warmup_iters", warmup_iters, allow_zero=True))
        self.renorm_iters = int(check_positive_float("renorm_iters", renorm_iters, allow_zero=True))
        if not r_max >= 1:
            raise ValueError(f"r_max={r_max!r} is invalid: expected a number >= 1")
        self.r_max = float(r_max)
        self.affine = bool(affine)
        init_affine(self, num_channels, self.affine)
        self.register_buffer("running_var", torch.ones(num_channels))
        self.register_buffer("buffer_x2", torch.zeros(buffer_size, num_channels))
        self.register_buffer("buffer_gz", torch.zeros(buffer_size, num_channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self._step = 0  # python mirror of num_batches_tracked: no device sync per call
        self._step_stale = False  # compiled steps advanced num_batches_tracked on the device

    def extra_repr(self) -> str:
        return (f"{self.num_channels}, eps={self.eps}, momentum={self.momentum}, "
                f"buffer_size={self.buffer_size}, warmup_iters={self.warmup_iters}, "
                f"renorm_iters={self.renorm_iters}, r_max={self.r_max}")

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[override]
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._step = int(self.num_batches_tracked)
        self._step_stale = False

    def phase(self, step: int) -> tuple[bool, bool]:
        """(uses the moving averages, renormalises) at training iteration ``step`` (1-based)."""
        use_average = step > self.buffer_size and step >= self.warmup_iters
        renorm = step > max(self.renorm_iters, self.warmup_iters)
        return use_average, renorm

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "MovingAverageBatchNorm")
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            return empty_batch(x)
        if not self.training:
            inv = torch.rsqrt(self.running_var + self.eps)
            scale = inv if self.weight is None else inv * self.weight
            y = x * channel_view(scale, x.dim()).to(x.dtype)
            return y if self.bias is None else y + channel_view(self.bias, x.dim()).to(x.dtype)
        if torch.compiler.is_exporting() or torch.jit.is_tracing():
            return self._exported_step(x)
        if torch.compiler.is_compiling():
            return self._compiled_step(x)
        if self._step_stale:
            self._step, self._step_stale = int(self.num_batches_tracked), False
        self._step += 1
        self.num_batches_tracked.fill_(self._step)
        use_average, renorm = self.phase(self._step)
        return mabn_function(x, self.weight, self.bias, self.running_var, self.buffer_x2,
                             self.buffer_gz, self._step, use_average, renorm, self.r_max,
                             self.eps, self.momentum)

    def _device_phase(self) -> tuple[Tensor, Tensor, Tensor]:
        """Advance num_batches_tracked on the device; (step, uses the moving averages,
        renormalises) as tensors, as :meth:`phase` gives them for a Python step."""
        with torch.no_grad():
            step = self.num_batches_tracked + 1
            self.num_batches_tracked.copy_(step)
            use_average = (step > self.buffer_size) & (step >= self.warmup_iters)
            renorm = step > max(self.renorm_iters, self.warmup_iters)
        return step, use_average, renorm

    def _compiled_step(self, x: Tensor) -> Tensor:
        """A training step as ``torch.compile`` traces it: the step, ring-buffer slot and phase
        read on the device (one graph for every step: a Python step counter would recompile at
        each one and fail ``fullgraph=True`` at dynamo's limit), the same Function, so the
        backward keeps the moving average of E[g z]. The next eager step re-reads the counter."""
        self._step_stale = True
        step, use_average, renorm = self._device_phase()
        return mabn_function(x, self.weight, self.bias, self.running_var, self.buffer_x2,
                             self.buffer_gz, step, use_average, renorm, self.r_max, self.eps,
                             self.momentum)

    def _exported_step(self, x: Tensor) -> Tensor:
        """A training step as ``torch.export`` / ``torch.jit.trace`` record it: the step counter,
        the ring-buffer slot and the phase read on the device (no host int baked into the graph),
        the same forward output and buffer updates as eager. An exported graph is forward-only,
        so the moving-average gradient (buffer_gz) is not part of it."""
        dt, nd = compute_dtype(x), x.dim()
        xc = x.to(dt)
        with torch.no_grad():
            step = self.num_batches_tracked + 1
            self.num_batches_tracked.copy_(step)
            slot = torch.remainder(step, self.buffer_size).view(1)
            use_average = (step > self.buffer_size) & (step >= self.warmup_iters)
            renorm = step > max(self.renorm_iters, self.warmup_iters)
        x2 = mean_square(xc, reduce_dims(xc))
        with torch.no_grad():
            self.buffer_x2.index_copy_(0, slot, x2.detach().to(self.buffer_x2.dtype).view(1, -1))
            var = torch.where(use_average, self.buffer_x2.mean(dim=0).to(dt), x2.detach())
        std = torch.sqrt(var + self.eps)
        r = torch.where(renorm, (std / torch.sqrt(self.running_var.to(dt) + self.eps))
                        .clamp(1.0 / self.r_max, self.r_max), torch.ones_like(std))
        with torch.no_grad():
            self.running_var.mul_(1 - self.momentum).add_(var.to(self.running_var.dtype),
                                                          alpha=self.momentum)
        scale = r / std if self.weight is None else r / std * self.weight.to(dt)
        y = xc * channel_view(scale, nd)
        if self.bias is not None:
            y = y + channel_view(self.bias.to(dt), nd)
        return y.to(x.dtype)

    def channel_affine(self) -> tuple[Tensor, Tensor]:
        """Eval-mode transform as per-channel (scale, shift)."""
        inv = torch.rsqrt(self.running_var + self.eps)
        scale = inv if self.weight is None else inv * self.weight
        shift = torch.zeros_like(scale) if self.bias is None else self.bias
        return scale, shift


class CenteredConv2d(nn.Conv2d):
    """Conv2d with weight centralization, as MABN prescribes (Yan et al., 2020).

    Each output filter's weight has its mean (over input channels and kernel positions) removed
    before the convolution: W'_o = W_o - mean(W_o). This keeps the mean of the next layer's input
    near zero, which MABN relies on since it does not subtract a mean.
    """

    def centered_weight(self) -> Tensor:
        return self.weight - self.weight.mean(dim=(1, 2, 3), keepdim=True)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.centered_weight(), self.bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "CenteredConv2d":
        """A CenteredConv2d with ``conv``'s configuration, sharing its parameter values."""
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                  bias=conv.bias is not None, padding_mode=conv.padding_mode,
                  device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            new.weight.copy_(conv.weight)
            if conv.bias is not None:
                new.bias.copy_(conv.bias)
        return new
