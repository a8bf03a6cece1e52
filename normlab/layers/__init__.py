"""Normalization layers. Depends on torch alone.

Every layer takes channels first, ``Layer(num_channels, *, ...)``, and works on (N, C, *spatial).
"""

from .bgn import BatchGroupNorm, SyncBatchGroupNorm
from .bn import BatchNorm
from .renorm import BatchRenorm
from .convert import compile_norms, convert_norms, fuse_norms, is_norm, norm_summary
from .evonorm import EvoNormB0, EvoNormS0
from .frn import FilterResponseNorm
from .ghost import set_norm_batch
from .mabn import CenteredConv2d, MovingAverageBatchNorm
from .registry import (
    NORMS,
    NormInfo,
    NormSpec,
    NormSpecError,
    available_norms,
    canonical_spec,
    create_act,
    create_norm,
    norm_act,
    parse_spec,
    replaces_activation,
)
from .sample import GroupNorm, InstanceNorm, LayerNorm, PositionalNorm

__all__ = [
    "BatchNorm", "BatchGroupNorm", "BatchRenorm", "SyncBatchGroupNorm", "GroupNorm", "LayerNorm",
    "InstanceNorm", "PositionalNorm", "MovingAverageBatchNorm", "CenteredConv2d", "EvoNormB0",
    "EvoNormS0", "FilterResponseNorm", "NORMS", "NormInfo", "NormSpec", "NormSpecError",
    "available_norms", "canonical_spec", "create_act", "create_norm", "norm_act", "parse_spec",
    "replaces_activation", "convert_norms", "fuse_norms", "compile_norms", "is_norm", "norm_summary", "set_norm_batch",
]
