"""The NAS-Bench-201 network (Dong & Yang, ICLR 2020) with any normlab norm.

Macro structure (the benchmark's "tiny network"): stem conv3x3 -> norm; three stages of N cells
at C, 2C, 4C channels with a residual reduction block between stages; norm -> ReLU, global
average pool, linear. The reduction block: ReLU-conv3x3(stride 2)-norm -> ReLU-conv3x3-norm,
plus a shortcut avgpool 2x2 (stride 2) -> conv1x1 (no norm), the two summed (no activation after).

A cell is a DAG of 4 nodes; node 0 is the cell's input, node i (1..3) is the sum of one op on
every edge j -> i (j < i); the cell outputs node 3. Edges in the benchmark's order:
1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2. Ops (in the benchmark's index order): ``none`` (the zero
op), ``skip_connect`` (identity: inside a cell, in and out channels are equal and stride is 1),
``nor_conv_1x1`` and ``nor_conv_3x3`` (ReLU -> conv, no bias -> norm, the norm affine),
``avg_pool_3x3`` (stride 1, padding 1, the padded zeros not counted).

The architecture travels as the benchmark's own string,
``|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|``: nodes separated by
``+``, each listing ``op~input`` for its inputs 0..i-1. Here an architecture is the tuple of the
six op names in edge order. Facts checked against the reference implementation (the NB201 API's
cell_operations/cells/tiny_network); the code is our own.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch
from torch import Tensor, nn

from ..layers import NormSpec, norm_act

__all__ = ["OPS", "EDGES", "NB201Error", "parse_arch", "arch_string", "NB201Net", "NB201Cell",
           "ReductionBlock", "RESNET_CELL"]

#: the five ops in the benchmark's index order
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: the six edges (to, from) in the benchmark's order
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
#: the ResNet-like cell of the NB201 paper: node1 = conv(x), node2 = conv(node1), node3 = x + node2
RESNET_CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"

_EXAMPLE = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"


class NB201Error(ValueError):
    """A bad NB201 architecture (string, op name, code, index) or setting: one line."""


def _check_ops(ops: Sequence[str]) -> tuple[str, ...]:
    ops = tuple(ops)
    if len(ops) != len(EDGES):
        raise NB201Error(f"an NB201 cell has {len(EDGES)} edges, got {len(ops)} ops: {list(ops)}")
    bad = [o for o in ops if o not in OPS]
    if bad:
        raise NB201Error(f"unknown op {bad[0]!r}: expected one of {', '.join(OPS)}")
    return ops


def parse_arch(arch: str | Sequence[str]) -> tuple[str, ...]:
    """The six op names (edge order 1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2) of an NB201 string, or
    of a sequence of six op names (checked)."""
    if not isinstance(arch, str):
        if isinstance(arch, Sequence) and all(isinstance(o, str) for o in arch):
            return _check_ops(arch)
        raise NB201Error(f"arch={arch!r} is invalid: expected an NB201 string like {_EXAMPLE}")
    return _parse_string(arch)


@lru_cache(maxsize=1 << 15)                       # 15,625 cells: every one fits
def _parse_string(arch: str) -> tuple[str, ...]:
    text = arch.strip()
    nodes = text.split("+")
    if len(nodes) != 3:
        raise NB201Error(f"arch {arch!r} is invalid: expected 3 nodes separated by '+', like {_EXAMPLE}")
    ops: list[str] = []
    for i, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise NB201Error(f"arch {arch!r}: node {i} {node!r} is invalid: expected '|op~input|...|', "
                             f"like {_EXAMPLE}")
        parts = [p for p in node.split("|") if p]
        inputs = []
        for p in parts:
            op, sep, src = p.partition("~")
            if not sep or not src.isdigit():
                raise NB201Error(f"arch {arch!r}: {p!r} is invalid: expected op~input, e.g. nor_conv_3x3~0")
            if op not in OPS:
                raise NB201Error(f"unknown op {op!r} in {arch!r}: expected one of {', '.join(OPS)}")
            inputs.append((int(src), op))
        if [s for s, _ in inputs] != list(range(i)):
            raise NB201Error(f"arch {arch!r}: node {i} must list inputs 0..{i - 1} in order, got "
                             f"{[s for s, _ in inputs]}")
        ops.extend(op for _, op in inputs)
    return tuple(ops)


def arch_string(ops: Sequence[str] | str) -> str:
    """The NB201 string of six op names (or a string, normalised)."""
    ops = parse_arch(ops)
    nodes, k = [], 0
    for i in range(1, 4):
        nodes.append("|" + "|".join(f"{ops[k + j]}~{j}" for j in range(i)) + "|")
        k += i
    return "+".join(nodes)


class ReLUConvNorm(nn.Sequential):
    """ReLU -> conv (no bias) -> norm (its linear variant for EvoNorm/FRN: no activation after)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, norm: NormSpec) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
                         norm_act(norm, cout, act=None))


def _op(name: str, c: int, norm: NormSpec) -> nn.Module | None:
    if name == "none":
        return None
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvNorm(c, c, 1, 1, norm)
    if name == "nor_conv_3x3":
        return ReLUConvNorm(c, c, 3, 1, norm)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class NB201Cell(nn.Module):
    """One NB201 cell at ``c`` channels: node i = sum over j < i of op(j->i)(node j); output node 3.

    A ``none`` edge contributes zero and is skipped (the reference multiplies its input by 0,
    which differs only when that input is not finite); a node whose every edge is ``none`` is
    zero. Parameters and FLOPs are unaffected."""

    def __init__(self, ops: Sequence[str], c: int, norm: NormSpec) -> None:
        super().__init__()
        self.ops_names = _check_ops(ops)
        self.edges = nn.ModuleDict()
        for (to, src), name in zip(EDGES, self.ops_names):
            op = _op(name, c, norm)
            if op is not None:
                self.edges[f"{to}<-{src}"] = op

    def forward(self, x: Tensor) -> Tensor:
        nodes = [x]
        for to in range(1, 4):
            acc = None
            for src in range(to):
                op = self.edges[f"{to}<-{src}"] if f"{to}<-{src}" in self.edges else None
                if op is None:
                    continue
                y = op(nodes[src])
                acc = y if acc is None else acc + y
            nodes.append(torch.zeros_like(x) if acc is None else acc)
        return nodes[3]


class ReductionBlock(nn.Module):
    """The residual block between stages: ReLU-conv3x3(stride 2)-norm -> ReLU-conv3x3-norm, plus
    the shortcut avgpool 2x2 (stride 2) -> conv1x1 (no norm); summed, no activation after."""

    def __init__(self, cin: int, cout: int, norm: NormSpec) -> None:
        super().__init__()
        self.conv_a = ReLUConvNorm(cin, cout, 3, 2, norm)
        self.conv_b = ReLUConvNorm(cout, cout, 3, 1, norm)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Net(nn.Module):
    """The NB201 network of one cell ``arch`` (an NB201 string or six op names), ``C`` channels in
    the first stage and ``N`` cells per stage (the benchmark: C=16, N=5)."""

    def __init__(self, arch: str | Sequence[str] = RESNET_CELL, *, C: int = 16, N: int = 5,
                 norm: str | NormSpec = "bn", in_channels: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        for name, v in (("C", C), ("N", N), ("in_channels", in_channels), ("num_classes", num_classes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise NB201Error(f"{name}={v!r} is invalid: expected a positive integer")
        spec = NormSpec.parse(norm)
        self.ops = parse_arch(arch)
        self.arch = arch_string(self.ops)
        self.C, self.N = C, N
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, 1, 1, bias=False), norm_act(spec, C, act=None))
        layers: list[nn.Module] = []
        c = C
        for stage in range(3):
            if stage > 0:
                layers.append(ReductionBlock(c, 2 * c, spec))
                c *= 2
            layers.extend(NB201Cell(self.ops, c, spec) for _ in range(N))
        self.cells = nn.Sequential(*layers)
        self.lastact = norm_act(spec, c, act="relu")
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))
