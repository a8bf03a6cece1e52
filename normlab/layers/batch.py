"""Layers whose statistics span the batch: BatchNorm, BatchGroupNorm, BatchRenorm, SyncBatchGroupNorm.

A re-export kept for ``from normlab.layers.batch import ...``: the layers live in
:mod:`normlab.layers.bn`, :mod:`normlab.layers.bgn` and :mod:`normlab.layers.renorm`, what they
share in ``normlab.layers._batch_kernels``."""

from ._batch_kernels import _running_affine  # noqa: F401  (convert.py once imported it from here)
from .bgn import BatchGroupNorm, SyncBatchGroupNorm
from .bn import BatchNorm
from .renorm import BatchRenorm

__all__ = ["BatchNorm", "BatchGroupNorm", "BatchRenorm", "SyncBatchGroupNorm"]
