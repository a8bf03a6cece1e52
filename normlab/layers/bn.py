"""BatchNorm: torch's own kernel behind one class for 1-D to 3-D, with ghost batches."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._batch_kernels import _running_affine
from ._common import check_input, check_momentum, check_positive_float, check_positive_int, empty_batch
from ._ghost import as_channels, from_channels, ghost_forward, init_ghost, loop_is_faster, sequential_update

__all__ = ["BatchNorm"]


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
        init_ghost(self, norm_batch)                        # ghost batches (layers/ghost.py)

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
