"""Workarounds for the environments normlab runs in. Not imported by normlab.layers."""

from __future__ import annotations

import sys
from types import ModuleType

_TV_LIB = None  # keeps the placeholder op library alive for the life of the process


def import_torchvision() -> ModuleType:
    """Import torchvision, also where its compiled ops cannot load.

    A torchvision wheel built for CUDA cannot load its C++ ops into a CPU-only torch, and its
    import then dies registering a fake kernel for ``torchvision::nms``. Models, datasets and
    transforms are pure Python and work without those ops, so in that case the two op schemas are
    declared (with no kernel: calling nms still fails clearly) and the import retried.
    """
    try:
        import torchvision

        return torchvision
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    global _TV_LIB
    import torch

    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    if _TV_LIB is None:
        _TV_LIB = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            _TV_LIB.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision

    return torchvision


def import_timm() -> ModuleType:
    """Import timm (which imports torchvision) through :func:`import_torchvision`."""
    import_torchvision()
    import timm

    return timm
