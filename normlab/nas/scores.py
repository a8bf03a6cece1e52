"""What a subnet is worth, three ways (plus the cheap baselines).

**ReBN accuracy** (SPOS): the path is copied out of the supernet (so no statistic leaks between
candidates), every norm's running statistics are reset and re-estimated as a cumulative average
over a fixed recalibration set forwarded in train mode, and the subnet is evaluated in eval mode
on the validation split carved from the training data.

**BN indicator** (BN-NAS, Chen et al. 2021, eq. 5-6): an op's score is the mean absolute value of
the gamma of its last norm (after the 1x1 projection),

    s(op) = (1 / C) * sum_c |gamma_c(op)|,        S(path) = sum_l s(op_l(path)),

and the identity scores 0. No forward pass: the per-op scores form a table (layers x ops) and a
path's score is a sum of lookups (``bn_scores`` scores many paths at once). ``fixed_depth=True``
divides by the number of non-identity ops (the plain sum favours deeper paths).

**ABS angle** (Hu et al. 2020, eq. 2): V(W) is the concatenation of the weights of a child model:
the stem conv, the conv weights of the ops on the path and the classifier (weight and bias);
norms are excluded and the identity contributes nothing. The angle is

    theta = arccos( <V(W0), V(Wt)> / (|V(W0)| |V(Wt)|) ),

between initialisation W0 and the trained supernet Wt.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .supernet import Supernet
from .train import evaluate_accuracy, norm_modules  # evaluate_accuracy: also importable from here

__all__ = ["bn_table", "bn_indicator", "bn_scores", "rebn_accuracy", "angle_vector_names", "angle",
           "evaluate_accuracy", "synflow"]


def bn_table(net: Supernet) -> np.ndarray:
    """(layers, max ops) table of per-op scores: the sum over the op's norms (one for an MBConv
    op; one per cell for an NB201 edge-op, since all cells share the sampled cell) of mean|gamma|;
    an op without a norm (identity, NB201's none/skip/pool) scores 0, as in BN-NAS's code; NaN
    where a layer has fewer ops."""
    table = np.full((len(net.num_ops), max(net.num_ops)), np.nan)
    for layer, k in enumerate(net.num_ops):
        for i in range(k):
            table[layer, i] = sum(float(m.weight.detach().abs().mean()) for m in net.op_norms(layer, i))
    return table


def bn_scores(table: np.ndarray, paths: np.ndarray | Sequence[Sequence[int]], fixed_depth: bool = False,
              identity: np.ndarray | None = None) -> np.ndarray:
    """BN indicators of many paths (an int array paths x layers) by table lookup."""
    paths = np.asarray(paths, dtype=np.int64)
    vals = table[np.arange(table.shape[0])[None, :], paths]
    total = vals.sum(axis=1)
    if fixed_depth:
        depth = (vals != 0).sum(axis=1) if identity is None else (~identity[np.arange(table.shape[0])[None, :], paths]).sum(axis=1)
        total = total / np.maximum(depth, 1)
    return total


def bn_indicator(net: Supernet, path: Sequence[int], fixed_depth: bool = False) -> float:
    return float(bn_scores(bn_table(net), [list(path)], fixed_depth)[0])


@torch.no_grad()
def rebn_accuracy(net: Supernet, path: Sequence[int], calib_x: torch.Tensor, val_x: torch.Tensor,
                  val_y: torch.Tensor, batch_size: int = 64) -> float:
    """SPOS's score: recalibrate the subnet's norm statistics on ``calib_x``, then accuracy on val."""
    sub = net.subnet(path)                     # copies: the supernet's statistics stay untouched
    return evaluate_accuracy(recalibrate(sub, calib_x, batch_size), val_x, val_y)


@torch.no_grad()
def recalibrate(model: nn.Module, x: torch.Tensor, batch_size: int = 64) -> nn.Module:
    """Reset every norm's running statistics and re-estimate them on ``x`` in train mode, as the
    plain average over its batches (torch's ``momentum=None``, done by setting momentum to
    1/(batches seen) before each batch, so it works for every normlab norm too). Each norm's
    momentum is restored afterwards; the model is left in train mode."""
    norms = [m for m in norm_modules(model) if hasattr(m, "reset_running_stats") and hasattr(m, "momentum")]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
    model.train()
    try:
        for i, s in enumerate(range(0, len(x), batch_size)):
            for m in norms:
                m.momentum = 1.0 / (i + 1)
            model(x[s:s + batch_size])
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
    return model


def angle_vector_names(net: Supernet, path: Sequence[int]) -> list[str]:
    """State-dict names whose concatenation is V(W) for ``path``: conv and linear parameters of
    what the child model computes with (``net.angle_modules``: the stem, the ops on the path, for
    NB201 also the reduction blocks, and the classifier); never a norm's."""
    names = []
    for prefix, mod in net.angle_modules(path):
        for sub_name, m in mod.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                for p_name, _ in m.named_parameters(recurse=False):
                    names.append(".".join(filter(None, (prefix, sub_name, p_name))))
    return names


def angle(init: dict[str, torch.Tensor], trained: dict[str, torch.Tensor], net: Supernet,
          path: Sequence[int]) -> float:
    """ABS angle (radians) of a child model between two supernet states. A supernet with
    ``angle_parts`` (NB201's cells) gives V(W) as state-dict names and fixed tensors (ABS's
    block-like construction); otherwise V(W) is :func:`angle_vector_names`' weights."""
    if hasattr(net, "angle_parts"):
        parts = net.angle_parts(path)
        v0 = torch.cat([(init[p] if isinstance(p, str) else p).reshape(-1).double() for p in parts])
        vt = torch.cat([(trained[p] if isinstance(p, str) else p).reshape(-1).double() for p in parts])
    else:
        names = angle_vector_names(net, path)
        v0 = torch.cat([init[n].reshape(-1).double() for n in names])
        vt = torch.cat([trained[n].reshape(-1).double() for n in names])
    cos = float(torch.dot(v0, vt) / (v0.norm() * vt.norm()))
    return math.acos(max(-1.0, min(1.0, cos)))


def synflow(model: nn.Module, input_shape: Sequence[int]) -> float:
    """SynFlow (Tanaka et al. 2020): R = 1^T (prod |theta|) 1 with every parameter replaced by its
    absolute value, an all-ones input and the norms in eval mode at their initial statistics;
    score = sum over parameters of theta * dR/dtheta (of the absolute values), in float64."""
    import copy

    m = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.abs_()
    m.zero_grad(set_to_none=True)
    out = m(torch.ones(1, *input_shape, dtype=torch.float64))
    out.sum().backward()
    return float(sum((p.detach() * p.grad).sum() for p in m.parameters() if p.grad is not None))
