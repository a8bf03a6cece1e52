"""Filter Response Normalization with a Thresholded Linear Unit (Singh & Krishnan, CVPR 2020)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ._common import (
    empty_batch,
    check_input,
    check_positive_float,
    check_positive_int,
    compute_dtype,
    mean_square,
    tracing,
)
from ._fused import row_sums, scale_shift

__all__ = ["FilterResponseNorm"]


def _frn_plain(x3: Tensor, weight: Tensor, bias: Tensor, tau: Tensor | None,
               eps_param: Tensor | None, eps: float) -> Tensor:
    """FRN(+TLU) on (N, C, S) in plain differentiable ops: what ``torch.export``, ``torch.compile``
    and ``torch.jit.trace`` see (same arguments and math as :class:`_FRNFunction`)."""
    c, dt = x3.shape[1], x3.dtype
    nu2 = x3.square().mean(dim=2, keepdim=True)
    eps_eff = eps + eps_param.abs().to(dt) if eps_param is not None else eps
    y = x3 * torch.rsqrt(nu2 + eps_eff) * weight.to(dt).view(1, c, 1) + bias.to(dt).view(1, c, 1)
    return torch.maximum(y, tau.to(dt).view(1, c, 1)) if tau is not None else y


class _FRNFunction(torch.autograd.Function):
    """FRN(+TLU) with a hand-derived backward.

    With s = 1 / sqrt(nu^2 + eps) per sample and channel, y = gamma s x + beta, z = max(y, tau):
        dy   = dz where y >= tau (the rest goes to tau)
        dx   = gamma s dy - gamma s^3 (sum_s dy x) / S * x
        deps = -1/2 sum gamma s^3 (sum_s dy x)
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, tau: Tensor | None,
                eps_param: Tensor | None, eps: float) -> Tensor:
        n, c = x.shape[0], x.shape[1]
        x3 = x.view(n, c, -1)
        nu2 = mean_square(x3, (2,))
        eps_eff = eps + eps_param.abs().to(x.dtype) if eps_param is not None else eps
        s = torch.rsqrt(nu2 + eps_eff)                                    # (N, C)
        y = scale_shift(x3, (s * weight.to(x.dtype)).unsqueeze(-1), bias.to(x.dtype).view(1, c, 1))
        if tau is not None:
            torch.maximum(y, tau.to(x.dtype).view(1, c, 1), out=y)
        ctx.save_for_backward(x, weight, bias, tau, eps_param, s)
        return y                       # (N, C, S), not a view: callers may modify it in place

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor):
        x, weight, bias, tau, eps_param, s = ctx.saved_tensors
        n, c = x.shape[0], x.shape[1]
        x3 = x.view(n, c, -1)
        dz = grad_out.to(x.dtype).contiguous().view(n, c, -1)
        w = weight.to(x.dtype)
        ws = (s * w).unsqueeze(-1)                                        # (N, C, 1)
        grad_tau = None
        if tau is not None:
            # dy = dz where y >= tau, built in y's buffer: y -> 1.0 / 0.0 -> dz * mask
            dy = scale_shift(x3, ws, bias.to(x.dtype).view(1, c, 1))
            dy.ge_(tau.to(x.dtype).view(1, c, 1)).mul_(dz)
        else:
            dy = dz.clone()
        sdyx, sdy = row_sums(dy, x3)                                      # (N, C) each, one read
        grad_beta = sdy.sum(dim=0)
        if tau is not None:
            grad_tau = (dz.sum(dim=(0, 2)) - grad_beta).to(tau.dtype)
        grad_gamma = (s * sdyx).sum(dim=0)
        s3 = s ** 3
        coef = -(w * s3 * sdyx / x3.shape[2])
        dx = dy.mul_(ws).addcmul_(x3, coef.unsqueeze(-1))
        grad_eps = None
        if eps_param is not None:
            d_eff = -0.5 * (w * s3 * sdyx).sum()
            grad_eps = (d_eff * torch.sign(eps_param)).to(eps_param.dtype).reshape(eps_param.shape)
        return (dx.view(x.shape), grad_gamma.to(weight.dtype), grad_beta.to(bias.dtype), grad_tau,
                grad_eps, None)


class FilterResponseNorm(nn.Module):
    """Filter Response Normalization + TLU (Singh & Krishnan, 2020).

        nu^2 = mean of x^2 over the spatial positions (per sample and channel)
        x_hat = x / sqrt(nu^2 + |eps|)
        y = max(gamma * x_hat + beta, tau)      (TLU; ``tlu=False`` leaves out the max)

    No mean is subtracted and no batch statistics are used. With ``learnable_eps=True``, eps is
    ``eps + |eps_param|`` with a learned ``eps_param`` (initialised to 1e-4), as the paper suggests
    for small spatial sizes. With the TLU it replaces the activation that follows it.
    """

    def __init__(self, num_channels: int, *, eps: float = 1e-6, learnable_eps: bool = False,
                 tlu: bool = True) -> None:
        super().__init__()
        self.num_channels = check_positive_int("num_channels", num_channels)
        self.eps = check_positive_float("eps", eps)
        self.learnable_eps = bool(learnable_eps)
        self.tlu = bool(tlu)
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        if self.tlu:
            self.tau = nn.Parameter(torch.zeros(num_channels))
        else:
            self.register_parameter("tau", None)
        if self.learnable_eps:
            self.eps_param = nn.Parameter(torch.full((1,), 1e-4))
        else:
            self.register_parameter("eps_param", None)

    @property
    def replaces_activation(self) -> bool:
        return self.tlu

    def extra_repr(self) -> str:
        return (f"{self.num_channels}, eps={self.eps}, learnable_eps={self.learnable_eps}, "
                f"tlu={self.tlu}")

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.num_channels, "FilterResponseNorm", min_spatial=0)
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            return empty_batch(x)
        dt = compute_dtype(x)
        fn = _frn_plain if tracing() else _FRNFunction.apply
        y = fn(x.to(dt).contiguous().view(x.shape[0], x.shape[1], -1),
                               self.weight, self.bias, self.tau,
                               self.eps_param, self.eps)
        return y.view(x.shape).to(x.dtype)
