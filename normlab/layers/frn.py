"""Filter Response Normalization with a Thresholded Linear Unit (Singh & Krishnan, CVPR 2020)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import channel_view, check_input, check_positive_float, check_positive_int, compute_dtype

__all__ = ["FilterResponseNorm"]


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
        dt = compute_dtype(x)
        xc = x.to(dt)
        nd = x.dim()
        nu2 = xc.pow(2).mean(dim=tuple(range(2, nd)), keepdim=True) if nd > 2 else xc.pow(2)
        eps = self.eps + (self.eps_param.abs().to(dt) if self.eps_param is not None else 0.0)
        y = xc * torch.rsqrt(nu2 + eps)
        y = y * channel_view(self.weight.to(dt), nd) + channel_view(self.bias.to(dt), nd)
        if self.tau is not None:
            y = torch.maximum(y, channel_view(self.tau.to(dt), nd))
        return y.to(x.dtype)
