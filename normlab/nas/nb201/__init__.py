"""NAS-Bench-201 inside normlab (Dong & Yang, ICLR 2020): the exact cell space and network (any
normlab norm), its codecs, the table as ground truth, search strategies judged on the table,
and data-free proxies judged against it.

    from normlab.nas import nb201
    arch = nb201.index_to_arch(123)                    # the table's row 123
    model = nb201.build(arch, norm="bgn:groups=4", C=16, N=5)
    table = nb201.load_table("nb201.npz")              # or "standin" (synthetic, not evidence)
    table.accuracy(arch, "cifar100")                   # mean over seeds, percent
"""

from ...models.nb201 import EDGES, OPS, RESNET_CELL, NB201Error, NB201Net, arch_string, parse_arch
from .space import (EDGE_NAMES, NUM_ARCHS, NB201Space, all_archs, analytic_flops, analytic_params,
                    arch_to_code, arch_to_index, code_to_arch, index_to_arch, op_counts, resolve_arch)
from .table import (CLASSES, DATASETS, IMAGE_SIZE, NB201Table, TableMissing, default_table_path,
                    inconsistent_params, load_table, read_compact, read_official, synthetic_table,
                    write_compact)

__all__ = ["OPS", "EDGES", "EDGE_NAMES", "NUM_ARCHS", "RESNET_CELL", "NB201Error", "NB201Net", "NB201Space",
           "parse_arch", "arch_string", "arch_to_code", "code_to_arch", "arch_to_index", "index_to_arch",
           "resolve_arch", "all_archs", "op_counts", "analytic_params", "analytic_flops", "build",
           "DATASETS", "CLASSES", "IMAGE_SIZE", "NB201Table", "TableMissing", "load_table", "read_official",
           "read_compact", "write_compact", "synthetic_table", "default_table_path", "inconsistent_params"]


def build(arch, *, norm: str = "bn", C: int = 16, N: int = 5, num_classes: int = 10, in_channels: int = 3):
    """The NB201 network of ``arch`` (string, six-digit op code or ``index:N``), freshly initialised;
    the same as ``create_model("nb201", arch=..., norm=..., C=..., N=...)``."""
    from ...models import create_model

    return create_model("nb201", norm=norm, in_channels=in_channels, num_classes=num_classes,
                        arch=resolve_arch(arch) if isinstance(arch, str) else arch, C=C, N=N)
