"""The one-shot supernet over the NAS-Bench-201 cell (SPOS-style, single path).

Every edge of every cell holds all five NB201 ops (``none``, ``skip_connect``, ``nor_conv_1x1``,
``nor_conv_3x3``, ``avg_pool_3x3``); a *path* is one op index per edge (the six-digit op code as
six ints, edge order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2) and ``forward(x, path)`` runs the network
whose every cell is that cell.

Sharing, as NB201's one-shot baselines do (the reference's random-sampling-with-parameter-sharing
and SETN/ENAS/DARTS supernets): **the architecture is shared** by all 3N cells (one sampled cell
per step, applied to every cell), **the weights are per cell** (each of the 3N cells has its own
copy of the five ops on each of its six edges). The stem, the two residual reduction blocks, the
last norm and the classifier are shared by every path. The layout of the weights is that of
:class:`~normlab.models.nb201.NB201Net` with one more index per edge (the op), so ``subnet(path)``
is the stand-alone network with the path's weights copied in (same outputs: tested).

BN-NAS reads an op's *last norm*: the norm of ``nor_conv_1x1`` / ``nor_conv_3x3`` (ReLU -> conv ->
norm). ``none``, ``skip_connect`` and ``avg_pool_3x3`` have no norm; ``op_norms`` returns nothing
for them, so they train nothing in BN-only mode and their BN indicator is 0 (what BN-NAS's code
does for its parameter-free op: its indicator table starts at zeros and is filled only from the
ops' last-BN weights).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..layers import NormSpec, norm_act
from .nb201 import EDGES, OPS, NB201Error, NB201Net, ReductionBlock, ReLUConvNorm, arch_string

__all__ = ["NB201SupernetConfig", "NB201Supernet", "NB201SearchCell", "KIND"]

KIND = "nb201"
_EDGE_KEYS = tuple(f"{to}<-{src}" for to, src in EDGES)


@dataclass(frozen=True)
class NB201SupernetConfig:
    """The NB201 supernet's shape: ``C`` channels in the first stage, ``N`` cells per stage (the
    benchmark: 16 and 5), the norm in every op, input channels, classes and the input size (for
    FLOPs; a multiple of 4). ``to_dict`` carries ``kind: nb201`` so checkpoints name their space."""

    C: int = 16
    N: int = 5
    norm: str = "bn"
    in_channels: int = 3
    num_classes: int = 10
    image_size: int = 32

    def __post_init__(self) -> None:
        for name in ("C", "N", "in_channels", "num_classes", "image_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise NB201Error(f"{name}={v!r} is invalid: expected a positive integer")
        if self.image_size % 4:
            raise NB201Error(f"image_size={self.image_size} is invalid: expected a multiple of 4 (two halvings)")
        try:
            NormSpec.parse(self.norm)
        except ValueError as exc:
            raise NB201Error(f"norm={self.norm!r} is invalid: {str(exc).splitlines()[0]}") from None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NB201SupernetConfig":
        d = {k: v for k, v in d.items() if k != "kind"}
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise NB201Error(f"unknown NB201 supernet setting {bad[0]!r}: expected {', '.join(sorted(known))}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": KIND, **asdict(self)}

    def num_paths(self) -> int:
        return len(OPS) ** len(EDGES)


class _Zero(nn.Module):
    """The ``none`` op: contributes nothing (the cell skips it, as NB201Cell does)."""

    def forward(self, x: Tensor) -> Tensor:          # only called directly; cells skip it
        return torch.zeros_like(x)


def _all_ops(c: int, norm: NormSpec) -> nn.ModuleList:
    return nn.ModuleList([_Zero(), nn.Identity(), ReLUConvNorm(c, c, 1, 1, norm), ReLUConvNorm(c, c, 3, 1, norm),
                          nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)])


class NB201SearchCell(nn.Module):
    """One cell with all five ops on each of its six edges; ``forward(x, path)`` runs the cell of
    ``path`` (op indices in edge order), summing exactly as :class:`NB201Cell` does."""

    def __init__(self, c: int, norm: NormSpec) -> None:
        super().__init__()
        self.edges = nn.ModuleDict({key: _all_ops(c, norm) for key in _EDGE_KEYS})

    def forward(self, x: Tensor, path: Sequence[int]) -> Tensor:
        nodes = [x]
        k = 0
        for to in range(1, 4):
            acc = None
            for src in range(to):
                i = path[k]
                if i != 0:                                   # none: skipped
                    y = self.edges[_EDGE_KEYS[k]][i](nodes[src])
                    acc = y if acc is None else acc + y
                k += 1
            nodes.append(torch.zeros_like(x) if acc is None else acc)
        return nodes[3]


class NB201Supernet(nn.Module):
    """All NB201 cells at once (see the module docstring); ``forward(x, path)`` runs one path."""

    def __init__(self, cfg: NB201SupernetConfig | Mapping[str, Any] | None = None) -> None:
        super().__init__()
        cfg = cfg if isinstance(cfg, NB201SupernetConfig) else NB201SupernetConfig.from_dict(cfg or {})
        self.cfg = cfg
        spec = NormSpec.parse(cfg.norm)
        C = cfg.C
        self.stem = nn.Sequential(nn.Conv2d(cfg.in_channels, C, 3, 1, 1, bias=False), norm_act(spec, C, act=None))
        cells: list[nn.Module] = []
        c = C
        for stage in range(3):
            if stage > 0:
                cells.append(ReductionBlock(c, 2 * c, spec))
                c *= 2
            cells.extend(NB201SearchCell(c, spec) for _ in range(cfg.N))
        self.cells = nn.ModuleList(cells)
        self.lastact = norm_act(spec, c, act="relu")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, cfg.num_classes)

    # -- the protocol the one-shot study uses (shared with the MBConv Supernet) ------------------

    @property
    def num_ops(self) -> list[int]:
        """Ops per searchable choice: five on each of the six edges."""
        return [len(OPS)] * len(EDGES)

    def check_path(self, path: Sequence[int]) -> tuple[int, ...]:
        try:
            out = tuple(int(i) for i in path)
        except (TypeError, ValueError):
            raise NB201Error(f"path {path!r} is invalid: expected six op indices 0-4, one per edge") from None
        if len(out) != len(EDGES) or any(not 0 <= i < len(OPS) for i in out):
            raise NB201Error(f"path {list(out)} is invalid: expected six op indices 0-4 "
                             f"({', '.join(f'{i} {o}' for i, o in enumerate(OPS))}), one per edge")
        return out

    def forward(self, x: Tensor, path: Sequence[int]) -> Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x, path) if isinstance(cell, NB201SearchCell) else cell(x)
        x = self.lastact(x)
        return self.classifier(torch.flatten(self.pool(x), 1))

    def search_cells(self) -> list[NB201SearchCell]:
        return [c for c in self.cells if isinstance(c, NB201SearchCell)]

    def op_norms(self, layer: int, op: int) -> list[nn.Module]:
        """The last norm of op ``op`` on edge ``layer`` in every cell (one per cell; none for the
        parameter-free ops)."""
        if OPS[op] not in ("nor_conv_1x1", "nor_conv_3x3"):
            return []
        return [cell.edges[_EDGE_KEYS[layer]][op][2] for cell in self.search_cells()]

    def angle_modules(self, path: Sequence[int]) -> list[tuple[str, nn.Module]]:
        """(state-dict prefix, module) of everything a child model of ``path`` computes with: the
        stem, the chosen op on every edge of every cell, the reduction blocks, the classifier
        (the ABS angle itself uses :meth:`angle_parts`, ABS's own construction for cells)."""
        out: list[tuple[str, nn.Module]] = [("stem", self.stem)]
        for i, cell in enumerate(self.cells):
            if isinstance(cell, NB201SearchCell):
                out.extend((f"cells.{i}.edges.{key}.{k}", cell.edges[key][k]) for key, k in zip(_EDGE_KEYS, path))
            else:
                out.append((f"cells.{i}", cell))
        out.append(("classifier", self.classifier))
        return out

    def angle_parts(self, path: Sequence[int]) -> list[str | Tensor]:
        """ABS's V(W) for an NB201 child (Hu et al. 2020, Algorithm 1, the block-like weight vector,
        as its NB201 code builds it), as a list of state-dict names and fixed tensors: the stem
        (conv and norm), the reduction blocks (every parameter) and the tail (last norm,
        classifier); then, in every cell, for each of the four input-to-output paths (0->3,
        0->2->3, 0->1->2->3, 0->1->3) the weights of its edges' ops in order: a conv's weight; an
        avg_pool_3x3 a fixed (C, 3, 3) tensor of 1/9 (the same before and after training); a
        skip_connect nothing; and a ``none`` on the path drops the whole path (it cuts it). A conv
        on several paths appears once per path."""
        path = self.check_path(path)
        parts: list[str | Tensor] = [f"stem.{n}" for n, _ in self.stem.named_parameters()]
        edge = {key: k for key, k in zip(_EDGE_KEYS, path)}
        for i, cell in enumerate(self.cells):
            if not isinstance(cell, NB201SearchCell):
                parts.extend(f"cells.{i}.{n}" for n, _ in cell.named_parameters())
                continue
            for nodes in ((0, 3), (0, 2, 3), (0, 1, 2, 3), (0, 1, 3)):
                block: list[str | Tensor] = []
                for src, to in zip(nodes, nodes[1:]):
                    key = f"{to}<-{src}"
                    name = OPS[edge[key]]
                    if name == "none":
                        block = []
                        break
                    if name == "avg_pool_3x3":
                        c = cell.edges[key][3][1].weight.shape[0]
                        block.append(torch.full((c, 3, 3), 1.0 / 9.0))
                    elif name in ("nor_conv_1x1", "nor_conv_3x3"):
                        block.append(f"cells.{i}.edges.{key}.{edge[key]}.1.weight")
                parts.extend(block)
        parts += [f"lastact.{n}" for n, _ in self.lastact.named_parameters()]
        parts += [f"classifier.{n}" for n, _ in self.classifier.named_parameters()]
        return parts

    def names(self, path: Sequence[int]) -> list[str]:
        return [OPS[i] for i in path]

    def arch(self, path: Sequence[int]) -> str:
        return arch_string([OPS[i] for i in self.check_path(path)])

    def params(self, path: Sequence[int]) -> int:
        """Parameters of the stand-alone network of ``path`` (equals ``analytic_params``)."""
        path = self.check_path(path)
        shared = [self.stem, self.lastact, self.classifier] + [c for c in self.cells if not isinstance(c, NB201SearchCell)]
        total = sum(p.numel() for m in shared for p in m.parameters())
        for cell in self.search_cells():
            total += sum(p.numel() for key, k in zip(_EDGE_KEYS, path) for p in cell.edges[key][k].parameters())
        return total

    def flops(self, path: Sequence[int]) -> int:
        """FLOPs of one image (2 x multiply-adds of every conv and the classifier, as
        torch.utils.flop_counter counts them; equals ``analytic_flops``)."""
        path = self.check_path(path)
        cfg = self.cfg
        n1 = sum(OPS[i] == "nor_conv_1x1" for i in path)
        n3 = sum(OPS[i] == "nor_conv_3x3" for i in path)
        hw = cfg.image_size * cfg.image_size
        total = 2 * cfg.in_channels * cfg.C * 9 * hw
        c = cfg.C
        for stage in range(3):
            if stage:
                hw //= 4
                total += 2 * hw * (9 * c * 2 * c + 9 * (2 * c) ** 2 + c * 2 * c)
                c *= 2
            total += cfg.N * 2 * hw * (n1 * c * c + n3 * 9 * c * c)
        return total + 2 * c * cfg.num_classes

    def subnet(self, path: Sequence[int]) -> NB201Net:
        """The stand-alone :class:`NB201Net` of ``path`` with copies of the path's weights and norm
        statistics (the supernet is left untouched)."""
        path = self.check_path(path)
        cfg = self.cfg
        with torch.random.fork_rng():                   # building must not move the caller's RNG
            net = NB201Net(self.arch(path), C=cfg.C, N=cfg.N, norm=cfg.norm, in_channels=cfg.in_channels,
                           num_classes=cfg.num_classes)
        src = self.state_dict()
        pattern = re.compile(r"^cells\.(\d+)\.edges\.([^.]+)\.(.*)$")
        state = {}
        for key in net.state_dict():
            m = pattern.match(key)
            if m:
                k = path[_EDGE_KEYS.index(m.group(2))]
                key_src = f"cells.{m.group(1)}.edges.{m.group(2)}.{k}.{m.group(3)}"
            else:
                key_src = key
            state[key] = src[key_src].clone()
        net.load_state_dict(state)
        return net.to(next(self.parameters()).device)
