"""The hierarchical network generator of NAGO (Ru, Esperança, Carlucci, "Neural Architecture
Generator Optimization", NeurIPS 2020, arXiv:2004.01395). In ``models/`` because
``create_model("nago", generator=..., seed=...)`` builds its networks; ``normlab.nago.generator``
re-exports it for the study.

A generator is a handful of numbers; a network is one random draw from it.

The space (HNAG, the paper's hierarchical graph-based space), three levels of random graphs:

- top level: inside each stage, a graph whose nodes are *cells*;
- mid level: inside each cell, a graph whose nodes are *nodes*;
- bottom level: inside each node, a graph whose nodes are *operations* (ReLU -> conv3x3 -> norm,
  the RandWire triplet of Xie et al. 2019, with the norm a normlab spec).

Every level's graph is drawn by networkx from one of three models, each with its own parameters:

- Watts–Strogatz ``ws(n, k, p)``: ``nx.watts_strogatz_graph(n, k, p)``: a ring lattice where each
  node joins its ``k // 2`` nearest neighbours on each side (so an odd k acts as k - 1, as in
  networkx), each edge rewired with probability ``p``;
- Erdős–Rényi ``er(n, p)``: ``nx.erdos_renyi_graph(n, p)``: every pair joined with probability p;
- Barabási–Albert ``ba(n, m)``: ``nx.barabasi_albert_graph(n, m)``: each new node attaches to
  ``m`` existing nodes by preferential attachment.

The paper (and its public code, NAGO in huawei-noah/vega, ``nago.yml``) searches WS at the top
and bottom levels and ER in the middle (ER allows a single-node cell), with the ranges

    top    ws: N_t in [3, 10], K_t in [2, 5], P_t in [0.1, 1.0]
    mid    er: N_m in [3, 10],                P_m in [0.1, 1.0]   (0.2 in one version of the doc)
    bottom ws: N_b in [3, 10], K_b in [2, 5], P_b in [0.1, 1.0]

and fixes the stage ratio theta_S and the channel ratio theta_C (Section 4): here ``stages=3``
and ``channel_ratios=(1, 2, 4)`` by default, at a base ``width``. :data:`PAPER_RANGES` holds
those ranges; a quick preset narrows them so that networks train in seconds on a CPU.

Graph to network (the rules of RandWire, applied at every level):

- edges are oriented from the lower to the higher node index, which makes a DAG;
- a node with no input reads the level's input; a node with no output feeds the level's output,
  which is the mean of those nodes' outputs;
- a node with several inputs aggregates them by a learnable weighted sum, ``sum_i sigmoid(w_i)
  x_i`` (w_i = 0 at init); a node with one input takes it as it is;
- a stage starts with a ReLU -> conv3x3 (stride 2, except in the first stage) -> norm that
  changes the width to the stage's and halves the resolution: "a stage downsamples at its entry".

The network: stem conv3x3 -> norm, the stages, global average pooling, a linear classifier.

Degenerate parameters are mapped to the nearest valid graph instead of failing, so every point
of a range builds a network: WS with k >= n becomes the complete graph (networkx's own rule for
k = n), WS/BA/ER with n = 1 a single node, BA with m >= n uses m = n - 1.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from .._settings import Settings

__all__ = ["LevelParams", "GeneratorParams", "GeneratorError", "NagoNet", "sample", "level_graph",
           "to_dag", "PAPER_RANGES", "MODELS", "LEVELS", "randwire_params", "count_params"]

MODELS = ("ws", "er", "ba")
LEVELS = ("top", "mid", "bottom")

#: The paper's search ranges (name -> (low, high)); ints for n/k/m, floats for p.
PAPER_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "top": {"n": (3, 10), "k": (2, 5), "p": (0.1, 1.0)},
    "mid": {"n": (3, 10), "p": (0.1, 1.0)},
    "bottom": {"n": (3, 10), "k": (2, 5), "p": (0.1, 1.0)},
}
PAPER_MODELS = {"top": "ws", "mid": "er", "bottom": "ws"}


class GeneratorError(ValueError):
    """Generator parameters with a bad value."""


def _int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < low:
        raise GeneratorError(f"{name}={value!r} is invalid: expected an integer >= {low}")
    return int(value)


def _prob(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise GeneratorError(f"{name}={value!r} is invalid: expected a probability in [0, 1]")
    return float(value)


@dataclass(frozen=True)
class LevelParams:
    """One level's random-graph model: ``model`` ws | er | ba with n nodes and its parameters
    (ws: k, p; er: p; ba: m). Parameters a model does not use are ignored."""

    model: str = "ws"
    n: int = 4
    k: int = 2
    p: float = 0.5
    m: int = 1

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise GeneratorError(f"model={self.model!r} is invalid: expected one of {', '.join(MODELS)}")
        object.__setattr__(self, "n", _int("n", self.n, 1))
        object.__setattr__(self, "k", _int("k", self.k, 0))
        object.__setattr__(self, "m", _int("m", self.m, 1))
        object.__setattr__(self, "p", _prob("p", self.p))

    def used(self) -> dict[str, Any]:
        """The parameters this model uses (its identity)."""
        keys = {"ws": ("n", "k", "p"), "er": ("n", "p"), "ba": ("n", "m")}[self.model]
        return {"model": self.model, **{k: getattr(self, k) for k in keys}}

    def canonical(self) -> "LevelParams":
        """The same graphs with the parameters that cannot change them set to fixed values, so
        that two generators drawing the same networks share a key: one node (no edges); WS with
        k >= n (the complete graph, p unused), k // 2 * 2 < 2 (no edges, p unused) or an odd k
        (networkx joins k // 2 neighbours on each side: k - 1 draws the same); BA's m >= n
        (m = n - 1)."""
        if self.n == 1:
            return LevelParams(self.model, 1, 0, 0.0, 1)
        if self.model == "ws":
            if self.k >= self.n:
                return LevelParams("ws", self.n, self.n, 0.0, 1)
            k = self.k // 2 * 2
            return LevelParams("ws", self.n, k, self.p if k >= 2 else 0.0, 1) if k >= 2 else \
                LevelParams("ws", self.n, 0, 0.0, 1)
        if self.model == "ba":
            return LevelParams("ba", self.n, 0, 0.0, min(self.m, self.n - 1))
        return LevelParams("er", self.n, 0, self.p, 1)

    def label(self, exact: bool = False) -> str:
        """'ws(4,2,0.50)': the model and the parameters it uses, canonical (see :meth:`canonical`).
        A probability shows two decimals; with ``exact`` (what :meth:`GeneratorParams.key` uses)
        one that two decimals do not hold exactly is written in full ('ws(4,2,0.503)'), since the
        graphs are drawn with the exact value."""
        u = self.canonical().used()
        args = ",".join(_prob_text(u[k], exact) if isinstance(u[k], float) else str(u[k])
                        for k in u if k != "model")
        return f"{self.model}({args})"


def _prob_text(p: float, exact: bool) -> str:
    short = f"{p:.2f}"
    return short if not exact or float(short) == p else repr(p)


@dataclass(frozen=True)
class GeneratorParams(Settings):
    """A network generator: the three levels' graph models, the stages and their widths."""

    settings_error = GeneratorError
    settings_label = "generator"

    top: LevelParams = field(default_factory=lambda: LevelParams("ws", 4, 2, 0.5))
    mid: LevelParams = field(default_factory=lambda: LevelParams("er", 2, p=0.5))
    bottom: LevelParams = field(default_factory=lambda: LevelParams("ws", 4, 2, 0.5))
    stages: int = 3
    width: int = 16
    channel_ratios: tuple[float, ...] = (1.0, 2.0, 4.0)

    def __post_init__(self) -> None:
        for name in LEVELS:
            v = getattr(self, name)
            if isinstance(v, Mapping):
                try:
                    v = LevelParams(**v)
                except TypeError as exc:
                    raise GeneratorError(f"{name}: {exc}") from None
            if not isinstance(v, LevelParams):
                raise GeneratorError(f"{name}={v!r} is invalid: expected a LevelParams or a mapping")
            object.__setattr__(self, name, v)
        object.__setattr__(self, "stages", _int("stages", self.stages, 1))
        object.__setattr__(self, "width", _int("width", self.width, 1))
        ratios = tuple(self.channel_ratios)
        if len(ratios) != self.stages or not all(
                isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in ratios):
            raise GeneratorError(f"channel_ratios={list(ratios)!r} is invalid: expected {self.stages} "
                                 f"positive numbers (one per stage)")
        object.__setattr__(self, "channel_ratios", tuple(float(r) for r in ratios))

    def widths(self) -> list[int]:
        return [max(1, int(round(self.width * r))) for r in self.channel_ratios]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GeneratorParams":
        if isinstance(d, GeneratorParams):
            return d
        if not isinstance(d, Mapping):
            raise GeneratorError(f"generator {d!r} is invalid: expected a mapping with top, mid, bottom")
        return super().from_dict(d)

    def key(self) -> str:
        """A short readable identity: 'ws(4,2,0.50)/er(2,0.50)/ws(4,2,0.50)' (+ widths if not default).
        It holds exactly what the networks are built from: generators with one key draw the same
        networks (a probability is written in full unless two decimals hold it exactly)."""
        text = "/".join(getattr(self, lv).label(exact=True) for lv in LEVELS)
        if (self.stages, self.width, self.channel_ratios) != (3, 16, (1.0, 2.0, 4.0)):
            text += f" s{self.stages}w{self.width}x" + ",".join(f"{r:g}" for r in self.channel_ratios)
        return text

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)


def randwire_params(n: int = 32, stages: int = 3, width: int = 16,
                    channel_ratios: Sequence[float] | None = None) -> GeneratorParams:
    """RandWire's fixed generator (Xie et al. 2019, WS k=4 p=0.75) in this space: one cell per
    stage, one node per cell, a WS(n, 4, 0.75) graph of operations inside; widths x1, x2, x4, ...
    unless ``channel_ratios`` is given."""
    one = LevelParams("er", 1, p=0.0)
    ratios = tuple(channel_ratios) if channel_ratios is not None else tuple(2.0 ** i for i in range(stages))
    return GeneratorParams(top=one, mid=one, bottom=LevelParams("ws", n, 4, 0.75), stages=stages,
                           width=width, channel_ratios=ratios)


# -- graphs -----------------------------------------------------------------------------------

def level_graph(level: LevelParams, seed: int):
    """The undirected networkx graph of one level, drawn with ``seed``; nodes 0..n-1."""
    import networkx as nx

    n = level.n
    if n == 1:
        g = nx.empty_graph(1)
    elif level.model == "ws":
        k = level.k
        if k >= n:                           # networkx: k == n is the complete graph
            g = nx.complete_graph(n)
        elif k < 2:                          # no neighbours on either side: no lattice edges
            g = nx.empty_graph(n)
        else:
            g = nx.watts_strogatz_graph(n, k, level.p, seed=seed)
    elif level.model == "er":
        g = nx.erdos_renyi_graph(n, level.p, seed=seed)
    else:
        g = nx.barabasi_albert_graph(n, min(level.m, n - 1), seed=seed)
    return g


def to_dag(n: int, edges: Sequence[tuple[int, int]]) -> tuple[list[list[int]], list[int], list[int]]:
    """Orient every edge from the lower to the higher index. Returns (preds, inputs, outputs):
    each node's predecessors (sorted), the nodes with no predecessor (they read the level's
    input) and the nodes with no successor (they feed the level's output)."""
    preds: list[set[int]] = [set() for _ in range(n)]
    has_out = [False] * n
    for a, b in edges:
        if a == b:
            continue
        lo, hi = (a, b) if a < b else (b, a)
        preds[hi].add(lo)
        has_out[lo] = True
    plist = [sorted(p) for p in preds]
    return plist, [i for i in range(n) if not plist[i]], [i for i in range(n) if not has_out[i]]


# -- modules ----------------------------------------------------------------------------------

class Op(nn.Sequential):
    """ReLU -> conv3x3 (no bias) -> norm: the operation at the bottom of the hierarchy."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str) -> None:
        from ..layers import create_norm

        super().__init__(nn.ReLU(), nn.Conv2d(cin, cout, 3, stride, 1, bias=False), create_norm(norm, cout))


class GraphBlock(nn.Module):
    """One level's DAG: node modules, weighted-sum aggregation, mean over the output nodes."""

    def __init__(self, n: int, edges: Sequence[tuple[int, int]], nodes: Sequence[nn.Module]) -> None:
        super().__init__()
        self.preds, self.inputs, self.outputs = to_dag(n, edges)
        self.edges = [(p, i) for i in range(n) for p in self.preds[i]]
        self.nodes = nn.ModuleList(nodes)
        self.weights = nn.ParameterDict({str(i): nn.Parameter(torch.zeros(len(p)))
                                         for i, p in enumerate(self.preds) if len(p) > 1})

    def forward(self, x: Tensor) -> Tensor:
        out: list[Tensor | None] = [None] * len(self.nodes)
        for i, node in enumerate(self.nodes):
            p = self.preds[i]
            if not p:
                h = x
            elif len(p) == 1:
                h = out[p[0]]
            else:
                w = torch.sigmoid(self.weights[str(i)])
                h = sum(w[j] * out[q] for j, q in enumerate(p))
            out[i] = node(h)
        ys = [out[i] for i in self.outputs]
        return ys[0] if len(ys) == 1 else torch.stack(ys).mean(0)


class NagoNet(nn.Module):
    """One network sampled from a generator: stem, stages of nested graphs, pool, classifier.
    ``graphs`` keeps every level's drawn graph (for drawings and tests)."""

    def __init__(self, params: GeneratorParams, seed: int, norm: str = "bn", in_channels: int = 3,
                 num_classes: int = 10) -> None:
        super().__init__()
        from ..layers import create_norm

        self.params, self.seed, self.norm = params, seed, norm
        rng = random.Random(seed)
        draw = lambda: rng.randrange(2 ** 31)          # noqa: E731 - a seed for each graph
        widths = params.widths()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  create_norm(norm, widths[0]))
        self.graphs: list[dict[str, Any]] = []
        stages = []
        cin = widths[0]
        for s, c in enumerate(widths):
            entry = Op(cin, c, 1 if s == 0 else 2, norm)
            top = level_graph(params.top, draw())
            cells, cell_graphs = [], []
            for _ in range(params.top.n):
                mid = level_graph(params.mid, draw())
                nodes, node_graphs = [], []
                for _ in range(params.mid.n):
                    bottom = level_graph(params.bottom, draw())
                    nodes.append(GraphBlock(params.bottom.n, list(bottom.edges),
                                            [Op(c, c, 1, norm) for _ in range(params.bottom.n)]))
                    node_graphs.append(sorted(bottom.edges))
                cells.append(GraphBlock(params.mid.n, list(mid.edges), nodes))
                cell_graphs.append({"edges": sorted(mid.edges), "nodes": node_graphs})
            stages.append(nn.Sequential(entry, GraphBlock(params.top.n, list(top.edges), cells)))
            self.graphs.append({"edges": sorted(top.edges), "cells": cell_graphs})
            cin = c
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(x.mean((2, 3)), 1))


def sample(params: GeneratorParams | Mapping[str, Any], seed: int = 0, *, norm: str = "bn",
           in_channels: int = 3, num_classes: int = 10) -> NagoNet:
    """One network from the generator ``params``. The same seed gives the same network: the same
    graphs at every level and the same initial weights (drawn under ``torch`` seed ``seed``
    without touching the global generator)."""
    params = GeneratorParams.from_dict(params)
    seed = _int("seed", seed, 0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = NagoNet(params, seed, norm, in_channels, num_classes)
        from ._blocks import init_weights
        init_weights(net)
    return net


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
