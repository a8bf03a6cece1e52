"""Ghost batches: statistics over consecutive groups of ``norm_batch`` samples inside one call.

Training with a normalization batch smaller than the optimizer batch used to mean running the
optimizer batch as sequential micro-batches, one forward per micro-batch. A layer that supports
ghost batches instead views its input (N, C, *spatial) as k = N // b groups of b samples and
normalizes each group with its own statistics in one pass (the groups become extra channels of
one (b, k*C, *spatial) tensor, so torch's fused kernels do the work); a remainder of N mod b
samples is its own last group, as a last micro-batch would be. Running statistics then take the
k sequential momentum updates the micro-batches would have made, in order. Outputs, gradients
and running statistics equal the micro-batch path to float tolerance. Eval is unaffected.

    set_norm_batch(model, 2)      # every supporting layer: statistics over groups of 2 samples
    set_norm_batch(model, None)   # whole-batch statistics again
"""

from __future__ import annotations

from torch import nn

from ._ghost import (as_channels, check_norm_batch, from_channels, ghost_forward, ghost_groups, interleave,
                     interleave_order, loop_is_faster, sequential_update)
from .registry import NORMS

__all__ = ["set_norm_batch", "ghost_groups", "ghost_forward", "unsupported_norm_batch",
           "sequential_update", "check_norm_batch", "loop_is_faster", "batch_dependent_layers",
           "interleave", "interleave_order"]


def set_norm_batch(model: nn.Module, norm_batch: int | None, *, interleaved: bool = False) -> list[str]:
    """Set the ghost-batch size on every layer that supports it (None: whole-batch statistics).
    Returns the names of batch-dependent layers that do not support it (a caller falls back to
    micro-batches for those). ``interleaved=True``: the model will be fed batches reordered by
    :func:`interleave` (same groups, no regrouping copies; what fit() does)."""
    check_norm_batch(norm_batch)
    for m in model.modules():
        if hasattr(m, "norm_batch"):
            m.norm_batch = norm_batch
            m.ghost_interleaved = bool(interleaved and norm_batch)
    return unsupported_norm_batch(model)


def batch_dependent_layers(model: nn.Module) -> list[str]:
    """Layers of ``model`` whose training output depends on the other samples of the batch (batch
    statistics). A model with none trains identically at every normalization batch."""
    batch_classes = tuple(info.cls for info in NORMS.values() if info.batch_dependent)
    out = []
    for name, m in model.named_modules():
        dependent = getattr(m, "batch_dependent", None)     # an evolved layer knows its genome
        if dependent is None:
            dependent = isinstance(m, batch_classes) or isinstance(m, nn.modules.batchnorm._BatchNorm)
        if dependent:
            out.append(f"{name or '<model>'} ({type(m).__name__})")
    return out


def unsupported_norm_batch(model: nn.Module) -> list[str]:
    """Batch-dependent normalization layers in ``model`` without ghost-batch support."""
    batch_classes = tuple(info.cls for info in NORMS.values() if info.batch_dependent)
    out = []
    for name, m in model.named_modules():
        if hasattr(m, "norm_batch"):
            continue
        if isinstance(m, batch_classes) or isinstance(m, nn.modules.batchnorm._BatchNorm):
            out.append(f"{name or '<model>'} ({type(m).__name__})")
    return out
