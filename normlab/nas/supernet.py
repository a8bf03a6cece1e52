"""The SPOS search space and its supernet, which live in :mod:`normlab.models.nas` (network
builders from a description belong to ``models/``, so ``create_model("nas", ...)`` needs no study);
re-exported here, where the study imports them."""

from __future__ import annotations

from ..models.nas import (PRESETS, Identity, MBConv, NasError, SpaceConfig, Subnet, Supernet, build_genotype,
                          check_positive, genotype, op_name)

__all__ = ["NasError", "SpaceConfig", "MBConv", "Identity", "Supernet", "Subnet", "PRESETS",
           "op_name", "genotype", "build_genotype", "check_positive"]
