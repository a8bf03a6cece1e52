"""The SPOS search space and its supernet, which live in :mod:`normlab.models.nas` (network
builders from a description belong to ``models/``, so ``create_model("nas", ...)`` needs no study);
re-exported here, where the study imports them."""

from __future__ import annotations

from ..models.nas import (PRESETS, Identity, MBConv, NasError, SpaceConfig, Subnet, Supernet, build_genotype,
                          check_positive, genotype, op_name)

from ..models.nb201_supernet import NB201Supernet, NB201SupernetConfig

__all__ = ["NasError", "SpaceConfig", "MBConv", "Identity", "Supernet", "Subnet", "PRESETS",
           "op_name", "genotype", "build_genotype", "check_positive", "NB201Supernet", "NB201SupernetConfig",
           "space_from_dict", "build_supernet"]


def space_from_dict(d):
    """The space a checkpoint names: ``kind: nb201`` is the NB201 cell supernet, anything else the
    MBConv SPOS space."""
    if isinstance(d, (SpaceConfig, NB201SupernetConfig)):
        return d
    if isinstance(d, dict) and d.get("kind") == "nb201":
        try:
            return NB201SupernetConfig.from_dict(d)
        except (TypeError, ValueError) as exc:
            raise NasError(str(exc).splitlines()[0]) from None
    return SpaceConfig.from_dict(d)


def build_supernet(space):
    """A freshly initialised supernet of either space (from torch's global RNG)."""
    space = space_from_dict(space)
    return NB201Supernet(space) if isinstance(space, NB201SupernetConfig) else Supernet(space)
