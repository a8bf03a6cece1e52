"""EvoNorm-B0 and EvoNorm-S0 (Liu et al., 2020, "Evolving Normalization-Activation Layers").

Both replace the normalization *and* the activation that follows it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._ghost import as_channels, from_channels, ghost_forward, init_ghost, sequential_update
from ._common import (
    empty_batch,
    channel_view,
    check_input,
    check_momentum,
    check_positive_float,
    check_positive_int,
    compute_dtype,
    tracing,
)
from ._fused import row_sums, scale_shift
from .sample import resolve_groups

__all__ = ["EvoNormB0", "EvoNormS0"]

# EvoNorm-B0's backward runs over rows in chunks of about this many values (4 MiB in float32), so
# its two per-chunk buffers and the chunk's x and dy stay in cache through a dozen passes. Measured
# on a 2-core CPU (32 MiB L3), forward+backward against the whole-tensor backward it replaced:
# faster in every cell with one thread (e.g. 1.16-1.70x BN against 1.73-1.93x on (256, 256, 7, 7)),
# within noise with two threads on the 1.6M-value shapes (2 chunks each); chunks of 1/4 this
# size gained nothing (the per-chunk calls cost what the cache saves)
_B0_CHUNK = 1 << 20


def _b0_plain(x3: Tensor, weight: Tensor, bias: Tensor, v: Tensor, running_var: Tensor,
              training: bool, momentum: float, eps: float) -> Tensor:
    """EvoNorm-B0 on (N, C, S) in plain differentiable ops: what ``torch.export``, ``torch.compile``
    and ``torch.jit.trace`` see (same arguments and math as :class:`_EvoNormB0Function`)."""
    c, dt = x3.shape[1], x3.dtype
    var_i = torch.var_mean(x3, dim=2, correction=0, keepdim=True)[0]            # (N, C, 1)
    if training:
        var_b = torch.var_mean(x3, dim=(0, 2), correction=0, keepdim=True)[0]   # (1, C, 1)
        with torch.no_grad():
            running_var.mul_(1 - momentum).add_(var_b.detach().view(c).to(running_var.dtype),
                                                alpha=momentum)
    else:
        var_b = running_var.to(dt).view(1, c, 1)
    den = torch.maximum(torch.sqrt(var_b + eps), v.to(dt).view(1, c, 1) * x3 + torch.sqrt(var_i + eps))
    return x3 / den * weight.to(dt).view(1, c, 1) + bias.to(dt).view(1, c, 1)


def _s0_plain(x3: Tensor, weight: Tensor, bias: Tensor, v: Tensor, groups: int, eps: float) -> Tensor:
    """EvoNorm-S0 on (N, C, S) in plain differentiable ops (see :func:`_b0_plain`)."""
    n, c, dt = x3.shape[0], x3.shape[1], x3.dtype
    var_g = torch.var_mean(x3.reshape(n, groups, -1), dim=2, correction=0, keepdim=True)[0]
    h = x3 * torch.sigmoid(v.to(dt).view(1, c, 1) * x3)
    y = (h.reshape(n, groups, -1) * torch.rsqrt(var_g + eps)).reshape(x3.shape)
    return y * weight.to(dt).view(1, c, 1) + bias.to(dt).view(1, c, 1)


def _s0_no_grad(x3: Tensor, weight: Tensor, bias: Tensor, v: Tensor, groups: int, eps: float) -> Tensor:
    """EvoNorm-S0's forward when no gradient is recorded (inference, the benchmark's forward):
    :class:`_EvoNormS0Function`'s forward without keeping sigmoid(v x) for a backward, so the
    output (GroupNorm's buffer) is the only activation-sized tensor. A second one, freed in the
    same call, made glibc return both to the OS and the next call page-fault them back in."""
    n, c, dt = x3.shape[0], x3.shape[1], x3.dtype
    y, _, inv = torch.native_group_norm(x3, None, None, n, c, x3.shape[2], groups, eps)
    scale = inv.repeat_interleave(c // groups, dim=1) * weight.to(dt)   # (N, C)
    torch.mul(x3, v.to(dt).view(1, c, 1), out=y).sigmoid_().mul_(x3)  # h = x sigmoid(v x)
    return scale_shift(y, scale.unsqueeze(-1), bias.to(dt).view(1, c, 1), out=y)


class _EvoNormB0Function(torch.autograd.Function):
    """EvoNorm-B0 with a hand-derived backward (autograd through max and two variances is ~3x slower).

    With a = sqrt(batch var + eps) per channel, b = v x + sqrt(instance var + eps), den = max(a, b),
    q = x / den and y = q gamma + beta, the upstream gradient dq = dy gamma splits into
        dden = -dq q / den,
        da   = dden where a wins, db = dden where b wins,
        dx   = dq / den + db v + da_sum / (a M_B) (x - mu_B) + db_sum / (sigma_I S) (x - mu_I),
    where the sums run over what each statistic spans (the batch term is absent in eval).
    The backward recomputes den (keeping it would cost the forward a second output-sized buffer;
    measured, it saves no time) and runs over chunks of rows (see ``_B0_CHUNK``).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, v: Tensor,
                running_var: Tensor, training: bool, momentum: float, eps: float) -> Tensor:
        n, c = x.shape[0], x.shape[1]
        x3 = x.view(n, c, -1)                          # callers pass (N, C, S): x3 is x's shape
        # GroupNorm's kernel with one group per channel: the instance mean and
        # 1 / sqrt(var + eps) in one pass; its output buffer becomes this layer's output
        den, mu_i, rstd_i = torch.native_group_norm(x3, None, None, n, c, x3.shape[2], c, eps)
        sigma_i = rstd_i.reciprocal()                                   # sqrt(var_I + eps), (N, C)
        if training:
            var_i = (sigma_i.square() - eps).clamp_min_(0.0)
            mu_b = mu_i.mean(dim=0)
            var_b = (var_i + (mu_i - mu_b).square()).mean(dim=0)        # exact parallel combine
            running_var.mul_(1 - momentum).add_(var_b.to(running_var.dtype), alpha=momentum)
        else:
            mu_b = torch.zeros(c, dtype=x.dtype, device=x.device)
            var_b = running_var.to(x.dtype)
        sigma_b = torch.sqrt(var_b + eps)
        # den = max(a, b) = a + relu(b - a): torch.maximum with a per-channel operand is several
        # times slower on the CPU than a clamp at 0 and a per-channel add
        gap = (sigma_i - sigma_b.view(1, c)).unsqueeze(-1)              # (N, C, 1)
        scale_shift(x3, v.to(x.dtype).view(1, c, 1), gap, out=den)       # b - a
        den.clamp_min_(0.0).add_(sigma_b.view(1, c, 1))
        y = torch.div(x3, den, out=den)
        y = scale_shift(y, weight.to(x.dtype).view(1, c, 1), bias.to(x.dtype).view(1, c, 1), out=y)
        ctx.save_for_backward(x, weight, v, mu_b, sigma_b, mu_i, sigma_i)
        ctx.training = training
        return y                       # (N, C, S), not a view: callers may modify it in place

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor):
        x, weight, v, mu_b, sigma_b, mu_i, sigma_i = ctx.saved_tensors
        n, c = x.shape[0], x.shape[1]
        rows = n * c
        xr = x.view(rows, -1)                                             # one row per (sample, channel)
        spatial = xr.shape[1]
        dyr = grad_out.to(x.dtype).contiguous().view(rows, -1)
        per_row = lambda t: t.to(x.dtype).repeat(n).view(rows, 1)  # noqa: E731
        vr, wr, sbr = per_row(v), per_row(weight), per_row(sigma_b)
        neg_vr = -vr
        gap = (sigma_i - sigma_b.view(1, c)).view(rows, 1)                # sigma_I - sigma_B
        dx = torch.empty_like(xr)
        sums = torch.empty(4, rows, dtype=x.dtype, device=x.device)       # sum P x, sum Z_b x, sum Z_b, sum dy
        # Rows in chunks of about _B0_CHUNK values: the dozen passes over each chunk stay in cache.
        # The batch-variance term needs every row's sums, so it is added after the loop.
        # Two buffers per chunk: P (written where dx goes) and Z_b (a scratch reused across chunks).
        # P = dy / den, Z_b = M P x / den; the mask M marks where b = v x + sigma_I wins the max.
        # Where a = sigma_B wins, den = sigma_B, so the sums over the a-region follow from the
        # b-region's: sum_b P x = sum Z_b den = v sum Z_b x + sigma_I sum Z_b, and
        # sum_a Z = (sum P x - sum_b P x) / sigma_B.
        step = max(1, _B0_CHUNK // max(spatial, 1))
        scratch = torch.empty(min(step, rows), spatial, dtype=x.dtype, device=x.device)
        for i in range(0, rows, step):
            j = min(i + step, rows)
            xc, dyc, p, m = xr[i:j], dyr[i:j], dx[i:j], scratch[:j - i]
            torch.mul(xc, vr[i:j], out=m).add_(gap[i:j])                   # b - a
            torch.clamp_min(m, 0.0, out=p).add_(sbr[i:j]).reciprocal_()     # 1 / den = 1 / (a + relu(b - a))
            m.gt_(0.0).mul_(p)                                            # M / den
            p.mul_(dyc)                                                   # P
            m.mul_(xc).mul_(p)                                            # Z_b
            x1 = xc.unsqueeze(0)                                          # row_sums takes (N, C, S)
            s_px, _ = row_sums(p.unsqueeze(0), x1)                        # sum P x = sum dy q
            s_zbx, s_zb = row_sums(m.unsqueeze(0), x1)
            sums[0, i:j], sums[1, i:j], sums[2, i:j] = s_px[0], s_zbx[0], s_zb[0]
            torch.sum(dyc, dim=1, out=sums[3, i:j])
            p.addcmul_(m, neg_vr[i:j]).mul_(wr[i:j])                       # w (P - v Z_b)
        s_px, s_zbx, s_zb, s_dy = sums.view(4, n, c).unbind(0)
        grad_gamma, grad_beta = s_px.sum(dim=0), s_dy.sum(dim=0)
        wc, vc = weight.to(x.dtype).view(1, c), v.to(x.dtype).view(1, c)
        db_sum = -wc * s_zb                                               # dden summed where b wins
        grad_v = (-wc * s_zbx).sum(dim=0)
        coef = db_sum / (sigma_i * spatial)                               # instance-variance path
        const = coef * mu_i
        if ctx.training:                                                  # batch-variance path
            s_za = (s_px - vc * s_zbx - sigma_i * s_zb) / sigma_b.view(1, c)
            coef_b = (-wc * s_za).sum(dim=0) / (sigma_b * n * spatial)
            coef = coef + coef_b
            const = const + coef_b * mu_b
        dx.addcmul_(xr, coef.view(rows, 1)).sub_(const.view(rows, 1))     # + coef x - const
        return (dx.view(x.shape), grad_gamma.to(weight.dtype), grad_beta.to(weight.dtype),
                grad_v.to(v.dtype), None, None, None, None)


class _EvoNormS0Function(torch.autograd.Function):
    """EvoNorm-S0 with a hand-derived backward.

    With s = sigmoid(v x), h = x s, inv = 1 / sqrt(group var + eps) and y = h inv gamma + beta:
        dh   = dy gamma inv,                     dgamma = sum dy h inv
        dinv = sum over the group of dy gamma h, and d(group var) gives
        dx   = dh (s + v x s (1 - s)) - inv^3 dinv / M (x - mu_group)
        dv   = sum dh x^2 s (1 - s)
    s is kept from the forward pass (as autograd of the formula would keep it): recomputing it
    costs the backward a sigmoid, the dearest pass on the CPU. The backward then needs one
    buffer and ten elementwise passes, two of them one-read row sums.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, v: Tensor, groups: int,
                eps: float) -> Tensor:
        n, c = x.shape[0], x.shape[1]
        k = c // groups
        x3 = x.view(n, c, -1)
        # GroupNorm's kernel: per-(sample, group) mean and 1 / sqrt(biased var + eps) in one pass;
        # the buffer it writes its (unused) output to becomes this layer's output buffer
        y, mu_g, inv = torch.native_group_norm(x, None, None, n, c, x3.shape[2], groups, eps)
        # x is (N, C, S), so y (GroupNorm's buffer) is already (N, C, S): not a view
        scale = inv.repeat_interleave(k, dim=1) * weight.to(x.dtype)     # (N, C)
        sig = torch.mul(x3, v.to(x.dtype).view(1, c, 1)).sigmoid_()      # s = sigmoid(v x)
        torch.mul(x3, sig, out=y)                                         # h = x s
        scale_shift(y, scale.unsqueeze(-1), bias.to(x.dtype).view(1, c, 1), out=y)
        ctx.save_for_backward(x, sig, weight, v, mu_g, inv)
        ctx.groups = groups
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor):
        x, sig, weight, v, mu_g, inv = ctx.saved_tensors
        n, c, groups = x.shape[0], x.shape[1], ctx.groups
        k = c // groups
        x3 = x.view(n, c, -1)
        dy = grad_out.to(x.dtype).contiguous().view(n, c, -1)
        vv, w = v.to(x.dtype).view(1, c, 1), weight.to(x.dtype)
        b = torch.mul(x3, sig)                                            # h = x s
        p, sdy = row_sums(dy, b)                                          # sum_s dy h, sum_s dy
        inv_c = inv.repeat_interleave(k, dim=1)                           # (N, C)
        grad_gamma = (p * inv_c).sum(dim=0)
        grad_beta = sdy.sum(dim=0)
        dinv = (p * w).view(n, groups, k).sum(dim=2)                      # (N, G)
        count = x3.shape[2] * k
        coef = (-(inv ** 3) * dinv / count).repeat_interleave(k, dim=1)   # (N, C)
        const = coef * mu_g.repeat_interleave(k, dim=1)
        dh_scale = w * inv_c                                              # dh = dy * dh_scale
        b.addcmul_(b, sig, value=-1.0).mul_(dy)                           # dy x s (1 - s)
        gv, _ = row_sums(b, x3)                                           # sum_s dy x^2 s (1 - s)
        grad_v = (gv * dh_scale).sum(dim=0)
        # dx = dh_scale (dy s + v dy x s (1 - s)) + coef x - const, in b's buffer
        dx = b.mul_(vv).addcmul_(dy, sig)
        scale_shift(dx, dh_scale.unsqueeze(-1), (-const).unsqueeze(-1), out=dx)
        dx.addcmul_(x3, coef.unsqueeze(-1))
        return (dx.view(x.shape), grad_gamma.to(weight.dtype), grad_beta.to(weight.dtype),
                grad_v.to(v.dtype), None, None)


class _EvoNormBase(nn.Module):
    def __init__(self, num_channels: int, eps: float, apply_act: bool) -> None:
        super().__init__()
        self.num_channels = check_positive_int("num_channels", num_channels)
        self.eps = check_positive_float("eps", eps)
        self.apply_act = bool(apply_act)
        self.weight = nn.Parameter(torch.ones(num_channels))   # gamma
        self.bias = nn.Parameter(torch.zeros(num_channels))    # beta
        if self.apply_act:
            self.v = nn.Parameter(torch.ones(num_channels))
        else:
            self.register_parameter("v", None)

    @property
    def replaces_activation(self) -> bool:
        return self.apply_act

    def _affine_only(self, x: Tensor) -> Tensor:
        """The reference code's nonlinearity=False variant: y = x * gamma + beta."""
        nd = x.dim()
        return x * channel_view(self.weight, nd).to(x.dtype) + channel_view(self.bias, nd).to(x.dtype)


class EvoNormB0(_EvoNormBase):
    """EvoNorm-B0: a batch-dependent normalization-activation layer.

        y = x / max(sqrt(Var_{N,*spatial}[x] + eps), v * x + sqrt(Var_{*spatial}[x] + eps)) * gamma + beta

    Both variances are biased (the reference implementation's ``tf.nn.moments``); eps sits inside
    each square root. The batch variance is per channel; the instance variance per sample and
    channel. Training keeps a moving batch variance, biased as in the reference code, with
    momentum 0.1 in PyTorch's convention (the reference's decay 0.9); eval uses it in place of the
    batch variance. Needs at least one spatial dimension.

    ``apply_act=False`` gives the reference code's linear variant (nonlinearity=False), which is
    just y = x * gamma + beta: what sits in a normalization slot that has no activation after it
    (before a residual addition, say).
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-5, momentum: float = 0.1,
                 apply_act: bool = True, norm_batch: int | None = None) -> None:
        super().__init__(num_channels, eps, apply_act)
        self.momentum = check_momentum(momentum)
        init_ghost(self, norm_batch)                        # ghost batches (layers/ghost.py)
        self.register_buffer("running_var", torch.ones(num_channels))

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, momentum={self.momentum}"

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "EvoNormB0", min_spatial=1)
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            return empty_batch(x)
        if not self.apply_act:
            return self._affine_only(x)
        if self.training and x.numel() // x.shape[1] < 2:
            raise ValueError(f"EvoNormB0 needs more than 1 value per channel when training, got "
                             f"input shape {tuple(x.shape)}")
        if self.training and self.norm_batch and x.shape[0] > self.norm_batch:
            return ghost_forward(x, self.norm_batch, self._ghost, self.ghost_interleaved)
        dt = compute_dtype(x)
        fn = _b0_plain if tracing() else _EvoNormB0Function.apply
        y = fn(x.to(dt).contiguous().view(x.shape[0], x.shape[1], -1),
                                     self.weight, self.bias, self.v,
                                     self.running_var, self.training, self.momentum, self.eps)
        return y.view(x.shape).to(x.dtype)

    def _ghost(self, xv: Tensor) -> Tensor:
        """k ghost batches (k, b, C, ...) as one call over (b, k*C, ...): the batch variance per
        ghost channel, the instance variance as before; k running updates in order."""
        k, c = xv.shape[0], self.num_channels
        if xv[0].numel() // c < 2:
            raise ValueError(f"EvoNormB0 needs more than 1 value per channel when training, got a "
                             f"normalization batch of shape {tuple(xv.shape[1:])}")
        dt = compute_dtype(xv)
        tv = torch.ones(k * c, dtype=self.running_var.dtype, device=self.running_var.device)
        fn = _b0_plain if tracing() else _EvoNormB0Function.apply
        y = fn(as_channels(xv.to(dt)).contiguous().view(xv.shape[1], k * c, -1),
                                     self.weight.repeat(k),
                                     self.bias.repeat(k), self.v.repeat(k), tv, True, 1.0, self.eps)
        sequential_update([(self.running_var, tv.view(k, c))], self.momentum, None)
        return from_channels(y, k).to(xv.dtype)


class EvoNormS0(_EvoNormBase):
    """EvoNorm-S0: a per-sample normalization-activation layer.

        y = x * sigmoid(v * x) / sqrt(Var_group[x] + eps) * gamma + beta

    The variance is biased and spans, for each sample, a group of C/G channels and all spatial
    positions (as in GroupNorm). Group rule: the default 32 is reduced to the largest divisor of C
    not above it; an explicit ``groups`` must divide C. No running statistics (train == eval).
    ``apply_act=False`` gives the reference code's linear variant, y = x * gamma + beta.
    """

    def __init__(self, num_channels: int, *, groups: int | None = None, eps: float = 1e-5,
                 apply_act: bool = True) -> None:
        super().__init__(num_channels, eps, apply_act)
        self.groups = resolve_groups(num_channels, groups, 32, "EvoNormS0")

    def extra_repr(self) -> str:
        return f"{self.num_channels}, groups={self.groups}, eps={self.eps}"

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "EvoNormS0", min_spatial=0)
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            return empty_batch(x)
        if not self.apply_act:
            return self._affine_only(x)
        dt = compute_dtype(x)
        if tracing():
            fn = _s0_plain
        elif not torch.is_grad_enabled():
            fn = _s0_no_grad
        else:
            fn = _EvoNormS0Function.apply
        y = fn(x.to(dt).contiguous().view(x.shape[0], x.shape[1], -1),
                                     self.weight, self.bias, self.v,
                                     self.groups, self.eps)
        return y.view(x.shape).to(x.dtype)
