"""The ghost-batch kernels the layers use (grouping, regrouping into channels, the sequential
running-statistics update); the model-level API and the explanation are in :mod:`normlab.layers.ghost`.
Apart from it because ``ghost.py`` asks the norm registry which layers are batch-dependent, and the
registry's layers import these kernels."""

from __future__ import annotations

import functools
from typing import Callable

import torch
from torch import Tensor

from ._common import tracing

__all__ = ["ghost_groups", "ghost_forward", "sequential_update", "check_norm_batch", "loop_is_faster",
           "interleave", "interleave_order", "as_channels", "from_channels"]


def check_norm_batch(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"norm_batch={value!r} is invalid: expected a positive integer or None")
    return value


def init_ghost(module: object, norm_batch: object = None) -> None:
    """The fields every ghost-batch layer carries: ``norm_batch`` (the normalization batch, None
    for the whole batch; checked) and ``ghost_interleaved`` (fed batches reordered by
    ``ghost.interleave``, set by ``fit()``). ``ghost.set_norm_batch`` sets both later."""
    module.norm_batch = check_norm_batch(norm_batch)
    module.ghost_interleaved = False


def ghost_groups(x: Tensor, b: int) -> list[Tensor]:
    """(k, b, C, *spatial) for the full groups, then (1, r, C, *spatial) for a remainder."""
    n = x.shape[0]
    k, r = divmod(n, b)
    parts = []
    if k:
        parts.append(x[:k * b].reshape(k, b, *x.shape[1:]))
    if r:
        parts.append(x[k * b:].unsqueeze(0))
    return parts


def ghost_forward(x: Tensor, b: int, fn: Callable[[Tensor], Tensor], interleaved: bool = False) -> Tensor:
    """Apply ``fn`` ((k, b, C, ...) -> same shape; it updates running statistics k times in order)
    to the full groups, then to the remainder, and put the samples back in order.

    ``interleaved``: the batch was laid out by :func:`interleave`, so ghost group j is samples
    j, j + k, j + 2k, ... of the first k*b; ``fn`` gets the same (k, b, C, ...) tensor as a view
    whose regrouping into channels (:func:`as_channels`) costs no copy, and neither does putting
    the output back."""
    if not interleaved:
        outs = [fn(part).reshape(-1, *x.shape[1:]) for part in ghost_groups(x, b)]
        return outs[0] if len(outs) == 1 else torch.cat(outs)
    k, r = divmod(x.shape[0], b)
    outs = []
    if k:
        full = x[:k * b].unflatten(0, (b, k)).transpose(0, 1)          # group j = samples j::k
        outs.append(fn(full).transpose(0, 1).reshape(k * b, *x.shape[1:]))
    if r:
        outs.append(fn(x[k * b:].unsqueeze(0)).reshape(r, *x.shape[1:]))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


def interleave_order(n: int, b: int, device: torch.device | str | None = None) -> Tensor:
    """The sample order that puts consecutive group j of b samples at positions j, j + k, ...
    (k = n // b groups; a remainder stays last): ``t[interleave_order(len(t), b)]``."""
    k = n // b
    order = torch.arange(k * b, device=device).view(k, b).t().reshape(-1)
    return torch.cat([order, torch.arange(k * b, n, device=device)]) if n > k * b else order


def interleave(t: Tensor, b: int) -> Tensor:
    """A batch (and its labels) reordered for layers set with ``set_norm_batch(model, b,
    interleaved=True)``: their ghost groups are then the consecutive groups of b samples of ``t``,
    exactly as without it, but regrouping them into channels is a free view. A loss averaged over
    the samples is unchanged by the reordering (fit() reorders inputs and labels together)."""
    return t[interleave_order(t.shape[0], b, t.device)]


def loop_is_faster(xv: Tensor) -> bool:
    """Few, large ghost groups: one fused call per group on its contiguous slice beats regrouping
    the tensor into channels (on the CPU, forward+backward of one layer: 1.03x against 1.34x the
    whole-batch cost for (32, 16, 28, 28) at b=2); many or small groups (a ResNet-20 at width
    0.25 has slices of 6,272 values: 1.55x against 1.38x for a whole step): regroup."""
    return xv.shape[0] <= 16 and xv[0].numel() >= 16384 and xv[0, 0, 0].numel() >= 256


def as_channels(xv: Tensor) -> Tensor:
    """(k, b, C, *spatial) -> (b, k*C, *spatial): ghost group j's channel c becomes channel j*C + c."""
    k, b = xv.shape[:2]
    return xv.transpose(0, 1).reshape(b, k * xv.shape[2], *xv.shape[3:])


def from_channels(y: Tensor, k: int) -> Tensor:
    """The inverse of :func:`as_channels`."""
    b, kc = y.shape[:2]
    return y.reshape(b, k, kc // k, *y.shape[2:]).transpose(0, 1)


def _weights(k: int, momentum: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """m (1-m)^(k-1-i) for i < k: batch i's weight in the closed form of k momentum updates."""
    decay = (1.0 - momentum) ** torch.arange(k - 1, -1, -1, dtype=torch.float64)
    return (momentum * decay).to(dtype).to(device)


_cached_weights = functools.lru_cache(maxsize=256)(_weights)


def _update_weights(k: int, momentum: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """:func:`_weights`, cached in eager; built afresh while tracing (export, compile, jit), so a
    traced (fake or functional) tensor never lands in the cache that eager calls read."""
    if tracing():
        return _weights(k, momentum, dtype, device)
    return _cached_weights(k, momentum, dtype, device)


@torch.no_grad()
def sequential_update(pairs: list[tuple[Tensor, Tensor]], momentum: float | None,
                      tracked: Tensor | None) -> None:
    """The k momentum updates each micro-batch would have made, in order: for every (running,
    batch_stats) pair, running (S,) takes the rows of batch_stats (k, S) one after another;
    ``momentum=None`` is torch's cumulative average (factor 1 / batches seen). ``tracked``
    (num_batches_tracked) counts the k batches."""
    k = pairs[0][1].shape[0] if pairs else 0
    if momentum is not None and k:
        # closed form of the k updates: (1-m)^k r + sum_i m (1-m)^(k-1-i) s_i, one op per buffer
        for running, stats in pairs:
            w = _update_weights(k, momentum, stats.dtype, stats.device)
            running.mul_((1.0 - momentum) ** k).add_((w @ stats).to(running.dtype))
        if tracked is not None:
            tracked.add_(k)
        return
    for i in range(k):                   # cumulative average: a factor that changes every batch
        if tracked is not None:
            tracked.add_(1)
        m = momentum if momentum is not None else 1.0 / float(tracked)
        for running, stats in pairs:
            running.mul_(1 - m).add_(stats[i].to(running.dtype), alpha=m)
