"""`normlab nas`: one-shot architecture search driven by normalization.

SPOS supernet (Guo et al. 2020) with uniform single-path training; BN-NAS (Chen et al., ICCV
2021): BN-only supernet training and the BN indicator; ABS (Hu et al., ECCV 2020): angle-based
search-space shrinking; and the rank-correlation evidence against standalone training.
"""

from .space import PathSpace
from .supernet import PRESETS, Identity, MBConv, NasError, SpaceConfig, Subnet, Supernet

__all__ = ["PathSpace", "SpaceConfig", "Supernet", "Subnet", "MBConv", "Identity", "NasError", "PRESETS"]
