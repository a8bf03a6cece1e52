"""The layer genome of EvoNorms (Liu, Brock, Simonyan, Le 2020, "Evolving Normalization-Activation
Layers"): a computation graph (a DAG) over four initial nodes, compiled to a layer by
:mod:`normlab.layers.genome_module`.

Initial nodes (indices 0..3): the input ``x``, the constant ``zero``, and two per-channel
trainable vectors ``v0`` (initialised to 0) and ``v1`` (initialised to 1). Every further node
applies one primitive to earlier nodes; the last node is the output, which is followed by the
per-channel affine (gamma, beta) that every layer here has.

Primitives, as we read the paper's Table 1 (x, y are tensors broadcast against each other):

    binary      add x+y, mul x*y, div x/y, max max(x, y)
    unary       neg -x, sigmoid 1/(1+e^-x), tanh, exp e^x, abs |x|, square x^2,
                log   sign(x) * log(|x|)      (sign-safe, as the paper makes it)
                sqrt  sign(x) * sqrt(|x|)     (sign-safe, as the paper makes it)
    aggregate   mu  (mean), s2 (biased variance), s (std = sqrt(s2 + eps)) over
                _bhw  the batch axes (N, H, W)        -> per channel; running averages for eval()
                _hw   the instance axes (H, W)        -> per sample and channel
                _hwg  the group axes (H, W, C/G)      -> per sample and group of channels
                every aggregate keeps the input's shape (broadcast back), so shapes always match.

eps sits inside the std (sqrt(var + eps)), as in EvoNorm-B0/S0's formulas, so those layers (and
BN-ReLU) are genomes exactly; see :data:`REFERENCE`.

A genome is immutable: ``Genome(nodes)``, each node ``(op, inputs)`` with inputs the indices of
earlier nodes. It travels as JSON (``to_json``/``from_json``), as a compact code without commas
(``code``: "s_bhw.0;mul.3.0;...", usable inside a norm spec) and as a formula
(``x / max(s_bhw(x), v1*x + s_hw(x))``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterable

__all__ = ["Genome", "GenomeError", "OPS", "Op", "INITIAL", "BINARY", "UNARY", "AGGREGATES",
           "BATCH_OPS", "random_genome", "mutate", "canonical_key", "canonical", "formula",
           "depends_on_x", "live_nodes", "REFERENCE", "reference"]


class GenomeError(ValueError):
    """A malformed genome (unknown op, wrong arity, an input that is not an earlier node)."""


@dataclass(frozen=True)
class Op:
    name: str
    arity: int
    kind: str                 # "binary" | "unary" | "aggregate"
    commutative: bool = False
    axes: str | None = None   # for aggregates: "bhw" | "hw" | "hwg"
    stat: str | None = None   # for aggregates: "mu" | "s2" | "s"


INITIAL = ("x", "zero", "v0", "v1")
BINARY = ("add", "mul", "div", "max")
UNARY = ("neg", "sigmoid", "tanh", "exp", "log", "abs", "square", "sqrt")
AGGREGATES = tuple(f"{stat}_{axes}" for stat in ("mu", "s2", "s") for axes in ("bhw", "hw", "hwg"))
BATCH_OPS = tuple(a for a in AGGREGATES if a.endswith("_bhw"))

OPS: dict[str, Op] = {}
for _n in BINARY:
    OPS[_n] = Op(_n, 2, "binary", commutative=_n in ("add", "mul", "max"))
for _n in UNARY:
    OPS[_n] = Op(_n, 1, "unary")
for _n in AGGREGATES:
    _stat, _axes = _n.split("_")
    OPS[_n] = Op(_n, 1, "aggregate", axes=_axes, stat=_stat)
del _n


@dataclass(frozen=True)
class Genome:
    """Nodes after the four initial ones: ``((op, (input, ...)), ...)``; the last is the output."""

    nodes: tuple[tuple[str, tuple[int, ...]], ...]

    def __post_init__(self) -> None:
        nodes = tuple((str(op), tuple(int(i) for i in ins)) for op, ins in self.nodes)
        object.__setattr__(self, "nodes", nodes)
        if not nodes:
            raise GenomeError("a genome needs at least one node after x, zero, v0, v1")
        for j, (op, ins) in enumerate(nodes):
            index = len(INITIAL) + j
            if op not in OPS:
                raise GenomeError(f"node {index}: unknown op '{op}'; known ops: {', '.join(OPS)}")
            if len(ins) != OPS[op].arity:
                raise GenomeError(f"node {index}: op '{op}' takes {OPS[op].arity} input(s), got {len(ins)}")
            bad = [i for i in ins if not 0 <= i < index]
            if bad:
                raise GenomeError(f"node {index}: input {bad[0]} is not an earlier node (0..{index - 1})")

    @property
    def output(self) -> int:
        return len(INITIAL) + len(self.nodes) - 1

    def __len__(self) -> int:
        return len(self.nodes)

    # -- serialisation -------------------------------------------------------------------

    def to_json(self) -> list[list[Any]]:
        return [[op, list(ins)] for op, ins in self.nodes]

    @classmethod
    def from_json(cls, obj: Any) -> "Genome":
        if isinstance(obj, dict) and "genome" in obj:
            obj = obj["genome"]
        if isinstance(obj, str):
            return cls.from_code(obj)
        try:
            return cls(tuple((op, tuple(ins)) for op, ins in obj))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, GenomeError):
                raise
            raise GenomeError(f"not a genome: {obj!r:.80} (expected a list of [op, [inputs]])") from None

    @property
    def code(self) -> str:
        """Compact text without commas, colons or '=': 'op.i.j;op.k;...'."""
        return ";".join(".".join([op, *map(str, ins)]) for op, ins in self.nodes)

    @classmethod
    def from_code(cls, code: str) -> "Genome":
        nodes = []
        for part in filter(None, (p.strip() for p in str(code).split(";"))):
            op, *ins = part.split(".")
            try:
                nodes.append((op, tuple(int(i) for i in ins)))
            except ValueError:
                raise GenomeError(f"bad genome node {part!r}: expected op.input[.input], e.g. 'mul.0.3'") from None
        return cls(tuple(nodes))

    def __str__(self) -> str:
        return formula(self)


# -- structure ------------------------------------------------------------------------------

def live_nodes(genome: Genome) -> set[int]:
    """Indices the output depends on (the output included; initial nodes included when used)."""
    live = {genome.output}
    for index in range(genome.output, len(INITIAL) - 1, -1):
        if index in live:
            live.update(genome.nodes[index - len(INITIAL)][1])
    return live


def depends_on_x(genome: Genome) -> bool:
    return 0 in live_nodes(genome)


def uses_batch_ops(genome: Genome) -> bool:
    live = live_nodes(genome)
    return any(genome.nodes[i - len(INITIAL)][0] in BATCH_OPS for i in live if i >= len(INITIAL))


def _expressions(genome: Genome, sort: bool) -> list[str]:
    exprs = list(INITIAL)
    for op, ins in genome.nodes:
        args = [exprs[i] for i in ins]
        if sort and OPS[op].commutative:
            args.sort()
        exprs.append(f"{op}({','.join(args)})")
    return exprs


def canonical_key(genome: Genome) -> str:
    """The expression the output computes, with the arguments of commutative ops (add, mul, max)
    sorted: nodes the output does not depend on, node order and argument order of commutative ops
    do not change it, so equivalent genomes share one key."""
    return _expressions(genome, sort=True)[genome.output]


def canonical(genome: Genome) -> Genome:
    """The same layer with dead nodes pruned, shared sub-expressions merged, commutative
    arguments sorted and nodes in the order of a post-order walk: equal keys give equal genomes."""
    exprs = _expressions(genome, sort=True)
    index: dict[str, int] = {name: i for i, name in enumerate(INITIAL)}
    nodes: list[tuple[str, tuple[int, ...]]] = []

    def visit(i: int) -> int:
        if exprs[i] in index:
            return index[exprs[i]]
        op, ins = genome.nodes[i - len(INITIAL)]
        order = sorted(ins, key=lambda k: exprs[k]) if OPS[op].commutative else list(ins)
        new_ins = tuple(visit(k) for k in order)
        nodes.append((op, new_ins))
        index[exprs[i]] = len(INITIAL) + len(nodes) - 1
        return index[exprs[i]]

    out = visit(genome.output)
    if out < len(INITIAL):                       # the output is an initial node itself
        nodes.append(("add", (out, 1)))
    return Genome(tuple(nodes))


_INFIX = {"add": "+", "mul": "*", "div": "/"}
_PREC = {"add": 1, "mul": 2, "div": 2}


def formula(genome: Genome) -> str:
    """A readable formula, e.g. ``x / max(s_bhw(x), v1*x + s_hw(x))`` (the affine is not shown)."""
    texts: list[tuple[str, int]] = [(name, 9) for name in INITIAL]   # (text, precedence)
    for op, ins in genome.nodes:
        args = [texts[i] for i in ins]
        if op in _INFIX:
            p = _PREC[op]
            left = args[0][0] if args[0][1] >= p else f"({args[0][0]})"
            # the right operand of / needs brackets at equal precedence, of + and * not
            right_ok = args[1][1] > p or (args[1][1] == p and op != "div")
            right = args[1][0] if right_ok else f"({args[1][0]})"
            sep = " + " if op == "add" else _INFIX[op] if op == "mul" else " / "
            texts.append((f"{left}{sep}{right}", p))
        elif op == "neg":
            texts.append((f"-{args[0][0]}" if args[0][1] >= 3 else f"-({args[0][0]})", 3))
        elif op == "square":
            texts.append((f"{args[0][0]}^2" if args[0][1] >= 9 else f"({args[0][0]})^2", 4))
        else:
            texts.append((f"{op}({', '.join(a[0] for a in args)})", 9))
    return texts[genome.output][0]


# -- random generation and mutation (the paper's section 3) ---------------------------------

def _ops(batch_independent: bool) -> tuple[str, ...]:
    return tuple(op for op in OPS if not (batch_independent and op in BATCH_OPS))


def random_genome(rng: random.Random, size: int = 8, *, batch_independent: bool = False,
                  max_tries: int = 1000) -> Genome:
    """``size`` nodes, each a primitive sampled uniformly, then its inputs (by arity) uniformly
    among the existing nodes; retried until the output depends on x."""
    ops = _ops(batch_independent)
    for _ in range(max_tries):
        nodes: list[tuple[str, tuple[int, ...]]] = []
        for j in range(size):
            op = rng.choice(ops)
            existing = len(INITIAL) + j
            nodes.append((op, tuple(rng.randrange(existing) for _ in range(OPS[op].arity))))
        g = Genome(tuple(nodes))
        if depends_on_x(g):
            return g
    raise GenomeError(f"no genome of {size} nodes whose output depends on x in {max_tries} tries")


def mutate(genome: Genome, rng: random.Random, *, batch_independent: bool = False,
           max_tries: int = 1000) -> Genome:
    """The paper's mutation, in three steps: pick an intermediate node uniformly at random, replace
    its op by one drawn uniformly, re-pick its predecessors uniformly among the earlier nodes.
    Exactly one node changes; tries again until the child differs from the parent (canonically)
    and its output still depends on x (and, batch-independent, uses no batch aggregate)."""
    ops = _ops(batch_independent)
    parent = canonical_key(genome)
    for _ in range(max_tries):
        j = rng.randrange(len(genome.nodes))
        op = rng.choice(ops)
        existing = len(INITIAL) + j
        ins = tuple(rng.randrange(existing) for _ in range(OPS[op].arity))
        nodes = list(genome.nodes)
        nodes[j] = (op, ins)
        child = Genome(tuple(nodes))
        if not depends_on_x(child) or canonical_key(child) == parent:
            continue
        if batch_independent and uses_batch_ops(child):
            continue
        return child
    raise GenomeError(f"no valid mutation of {formula(genome)} found in {max_tries} tries")


# -- reference layers as genomes -------------------------------------------------------------

def _g(*nodes: tuple[str, Iterable[int]]) -> Genome:
    return Genome(tuple((op, tuple(ins)) for op, ins in nodes))


REFERENCE: dict[str, Genome] = {
    # BN-ReLU: max(v1 * (x - mu_bhw(x)) / s_bhw(x) + v0, 0); v1, v0 are BN's weight and bias.
    "bn_relu": _g(("mu_bhw", [0]), ("neg", [4]), ("add", [0, 5]), ("s_bhw", [0]), ("div", [6, 7]),
                  ("mul", [8, 3]), ("add", [9, 2]), ("max", [10, 1])),
    # GN-ReLU: max(v1 * (x - mu_hwg(x)) / s_hwg(x) + v0, 0); v1, v0 are GroupNorm's weight and bias.
    "gn_relu": _g(("mu_hwg", [0]), ("neg", [4]), ("add", [0, 5]), ("s_hwg", [0]), ("div", [6, 7]),
                  ("mul", [8, 3]), ("add", [9, 2]), ("max", [10, 1])),
    # EvoNorm-B0: x / max(s_bhw(x), v1*x + s_hw(x)); v1 is the layer's v.
    "evonorm_b0": _g(("s_bhw", [0]), ("mul", [3, 0]), ("s_hw", [0]), ("add", [5, 6]),
                     ("max", [4, 7]), ("div", [0, 8])),
    # EvoNorm-S0: x * sigmoid(v1*x) / s_hwg(x); v1 is the layer's v.
    "evonorm_s0": _g(("mul", [3, 0]), ("sigmoid", [4]), ("mul", [0, 5]), ("s_hwg", [0]),
                     ("div", [6, 7])),
}


def reference(name: str) -> Genome:
    if name not in REFERENCE:
        raise GenomeError(f"unknown reference layer '{name}'; known: {', '.join(REFERENCE)}")
    return REFERENCE[name]
