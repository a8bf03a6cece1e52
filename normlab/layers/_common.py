"""Helpers shared by the layer files: argument checks, dtype handling, shapes.

Everything here depends on torch alone.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOW_PRECISION = (torch.float16, torch.bfloat16)


def tracing() -> bool:
    """True while ``torch.export``, ``torch.compile`` (dynamo) or ``torch.jit.trace`` is tracing.

    Layers with an eager fast path (hand-written backward, ``out=`` buffers, host-side step
    counters) take their plain-op formula instead: ``out=`` ops do not trace under autograd, a
    ``.item()`` is a data-dependent guard, and a compiler fuses the plain formula itself."""
    return (torch.compiler.is_compiling() or torch.compiler.is_exporting()
            or torch.jit.is_tracing())


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
    return value


def check_positive_float(name: str, value: object, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} is invalid: expected a finite number {bound}")
    return float(value)


def empty_batch(x: Tensor) -> Tensor:
    """The output for an input with N = 0: an empty tensor of the same shape (still in the
    autograd graph); callers return it before touching any running statistic."""
    return x.clone()


def check_momentum(value: object) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"momentum={value!r} is invalid: expected a number in [0, 1] "
            "(PyTorch convention: new = (1 - momentum) * old + momentum * batch)"
        )
    return float(value)


def divisors(n: int) -> list[int]:
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


def nearest_divisors(n: int, wanted: int, k: int = 2) -> list[int]:
    """The k divisors of n closest to ``wanted`` (ties broken toward the smaller)."""
    return sorted(sorted(divisors(n), key=lambda d: (abs(d - wanted), d))[:k])


def largest_divisor_at_most(n: int, wanted: int) -> int:
    return max(d for d in divisors(n) if d <= max(1, wanted))


def check_input(x: Tensor, num_channels: int, layer: str, min_spatial: int = 0) -> None:
    """Inputs are (N, C, *spatial) with 1 to 3 spatial dims (0 allowed where the method allows)."""
    if x.dim() < 2 + min_spatial or x.dim() > 5:
        lo = 2 + min_spatial
        raise ValueError(
            f"{layer} expects an input of shape (N, C, *spatial) with {lo} to 5 dimensions, "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[1] != num_channels:
        raise ValueError(
            f"{layer} was built for {num_channels} channels but the input has {x.shape[1]} "
            f"(shape {tuple(x.shape)})"
        )


def compute_dtype(x: Tensor) -> torch.dtype:
    """Statistics run in float32 for half types, else in the input's own precision."""
    return torch.float32 if x.dtype in LOW_PRECISION else x.dtype


def channel_view(t: Tensor, ndim: int) -> Tensor:
    """Reshape a (C,) tensor to broadcast over an (N, C, *spatial) input of ``ndim`` dims."""
    return t.reshape((1, -1) + (1,) * (ndim - 2))


def spatial_dims(x: Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.dim()))


def reduce_dims(x: Tensor) -> tuple[int, ...]:
    """Batch and spatial dims: what per-channel batch statistics span."""
    return (0,) + spatial_dims(x)


def var_mean(x: Tensor, dims: tuple[int, ...], keepdim: bool = False) -> tuple[Tensor, Tensor]:
    """Biased variance and mean over ``dims``, two-pass (mean, then centred squares).

    Same values as ``torch.var_mean(..., correction=0)`` but built from a plain mean and a
    vector norm, which are several times faster on CPU than torch's Welford reduction over
    non-contiguous dims, and differentiable (the norm's gradient at 0 is 0).
    """
    mean = x.mean(dim=dims, keepdim=True)
    count = 1
    for d in dims:
        count *= x.shape[d]
    var = torch.linalg.vector_norm(x - mean, dim=dims, keepdim=keepdim).square() / count
    return var, (mean if keepdim else mean.squeeze(dims))


def mean_square(x: Tensor, dims: tuple[int, ...], keepdim: bool = False) -> Tensor:
    """E[x^2] over ``dims`` through a vector norm: one read, no temporary."""
    count = 1
    for d in dims:
        count *= x.shape[d]
    return torch.linalg.vector_norm(x, dim=dims, keepdim=keepdim).square() / count


def init_affine(module: torch.nn.Module, num_channels: int, affine: bool) -> None:
    """Give ``module`` a per-channel affine (weight = 1, bias = 0), or None parameters."""
    if affine:
        module.weight = torch.nn.Parameter(torch.ones(num_channels))
        module.bias = torch.nn.Parameter(torch.zeros(num_channels))
    else:
        module.register_parameter("weight", None)
        module.register_parameter("bias", None)
