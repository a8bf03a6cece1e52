"""NAS-Bench-201's cell space: the codecs (string, six-digit op code, the table's index), the
``normlab.search`` space, and the analytic parameter and FLOP counts of the built network.

Codecs. An architecture is its NB201 string (``|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+...``).
Its *op code* is the six op indices in edge order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2), each in
the benchmark's op order (0 none, 1 skip_connect, 2 nor_conv_1x1, 3 nor_conv_3x3, 4
avg_pool_3x3), written as six digits: ``"303100"``. Its *index* (0..15624) is its row in the
benchmark's table, whose files name it with six digits (``009930``): the benchmark enumerated
the cells with the first edge varying slowest and the ops in the order above, then shuffled
that list with Python's ``random.seed(88); random.shuffle(...)`` (the reference code asserts
rows 0, 9 and 123; our tests check the same three).

Keys and isomorphism. Different strings can compute the same function (e.g. a ``none`` edge
into a node whose output is unused, or two conv edges swapped between interchangeable nodes);
merging such cells needs a proof that their functions and their trained accuracy distributions
coincide, which we have not made. So ``key`` is the arch string itself: no two strings share a
key, and the benchmark's 15,625 table rows are 15,625 distinct candidates.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping, Sequence

from ...models.nb201 import EDGES, OPS, NB201Error, arch_string, parse_arch

__all__ = ["NUM_ARCHS", "NB201Space", "arch_to_code", "code_to_arch", "arch_to_index", "index_to_arch",
           "resolve_arch", "all_archs", "op_counts", "analytic_params", "analytic_flops", "EDGE_NAMES",
           "connected"]

NUM_ARCHS = len(OPS) ** len(EDGES)                 # 15,625
EDGE_NAMES = tuple(f"{to}<-{src}" for to, src in EDGES)


def arch_to_code(arch: str | Sequence[str]) -> str:
    """The six-digit op code of an architecture, e.g. ``"303100"``."""
    return "".join(str(OPS.index(o)) for o in parse_arch(arch))


def code_to_arch(code: str | Sequence[int]) -> str:
    """The NB201 string of a six-digit op code (a string of digits 0-4, or six ints)."""
    digits = list(code) if not isinstance(code, str) else list(code.strip())
    try:
        idx = [int(d) for d in digits]
    except (TypeError, ValueError):
        idx = []
    if len(idx) != len(EDGES) or any(not 0 <= i < len(OPS) for i in idx):
        raise NB201Error(f"op code {code!r} is invalid: expected six digits 0-4 "
                         f"({', '.join(f'{i} {o}' for i, o in enumerate(OPS))}), one per edge "
                         f"{', '.join(EDGE_NAMES)}")
    return arch_string([OPS[i] for i in idx])


def _ordinal(arch: str | Sequence[str]) -> int:
    """Position in the benchmark's unshuffled enumeration: base 5, first edge most significant."""
    n = 0
    for o in parse_arch(arch):
        n = n * len(OPS) + OPS.index(o)
    return n


@lru_cache(maxsize=1)
def _shuffled() -> tuple[tuple[int, ...], tuple[int, ...]]:
    order = list(range(NUM_ARCHS))
    random.Random(88).shuffle(order)                # the benchmark's own shuffle (seed 88)
    inverse = [0] * NUM_ARCHS
    for index, ordinal in enumerate(order):
        inverse[ordinal] = index
    return tuple(order), tuple(inverse)


def _from_ordinal(n: int) -> str:
    idx = []
    for _ in range(len(EDGES)):
        idx.append(n % len(OPS))
        n //= len(OPS)
    return arch_string([OPS[i] for i in reversed(idx)])


def arch_to_index(arch: str | Sequence[str]) -> int:
    """The architecture's row (0..15624) in the NAS-Bench-201 table."""
    return _shuffled()[1][_ordinal(arch)]


def index_to_arch(index: int) -> str:
    """The NB201 string of the table's row ``index`` (0..15624)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < NUM_ARCHS:
        raise NB201Error(f"index {index!r} is invalid: expected an integer 0..{NUM_ARCHS - 1}")
    return _from_ordinal(_shuffled()[0][index])


def all_archs() -> list[str]:
    """Every architecture, in the table's index order."""
    return list(_all_archs())


@lru_cache(maxsize=1)
def _all_archs() -> tuple[str, ...]:
    return tuple(index_to_arch(i) for i in range(NUM_ARCHS))


def resolve_arch(text: str) -> str:
    """An architecture from what a user types: an NB201 string, a six-digit op code (digits 0-4),
    or ``index:N`` (the table's row). One line naming the valid forms otherwise."""
    t = str(text).strip()
    if "|" in t:
        return arch_string(t)
    if t.startswith("index:"):
        num = t[len("index:"):]
        if not num.isdigit():
            raise NB201Error(f"{text!r} is invalid: expected index:N with N in 0..{NUM_ARCHS - 1}")
        return index_to_arch(int(num))
    if len(t) == 6 and t.isdigit():
        return code_to_arch(t)
    raise NB201Error(f"architecture {text!r} is invalid: expected an NB201 string (like "
                     f"|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|), "
                     f"a six-digit op code (digits 0-4, like 303100) or index:N (0..{NUM_ARCHS - 1})")


# -- counts ------------------------------------------------------------------------------------

def connected(arch: str | Sequence[str]) -> bool:
    """Whether some path of non-`none` ops leads from the cell's input (node 0) to its output
    (node 3). A cell without one outputs zeros whatever its input."""
    reach = {0}
    for (dst, src), op in sorted(zip(EDGES, parse_arch(arch)), key=lambda e: e[0][0]):
        if op != "none" and src in reach:
            reach.add(dst)
    return 3 in reach


def op_counts(arch: str | Sequence[str]) -> tuple[int, int]:
    """(number of nor_conv_1x1 edges, number of nor_conv_3x3 edges) of a cell."""
    ops = parse_arch(arch)
    return ops.count("nor_conv_1x1"), ops.count("nor_conv_3x3")


@lru_cache(maxsize=32)
def _norm_params(norm: str, channels: int) -> int:
    from ...layers import norm_act

    return sum(p.numel() for p in norm_act(norm, channels, act=None).parameters())


def analytic_params(arch: str | Sequence[str], *, C: int = 16, N: int = 5, num_classes: int = 10,
                    in_channels: int = 3, norm: str = "bn") -> int:
    """Parameters of the built network, counted from its construction (no network is built).

    stem: conv3x3 (in*C*9) + norm(C); per stage s (c = C*2^s), N cells, each conv edge
    k*k*c*c + norm(c); between stages (c -> 2c) conv_a 9*c*2c + norm(2c), conv_b 9*(2c)^2 +
    norm(2c), shortcut conv1x1 c*2c; last norm(4C); classifier 4C*classes + classes. ``norm(c)``
    is the norm's own parameter count (2c for bn: gamma and beta)."""
    n1, n3 = op_counts(arch)
    nrm = lambda c: _norm_params(norm, c)   # noqa: E731
    total = in_channels * C * 9 + nrm(C)
    c = C
    for stage in range(3):
        if stage:
            total += 9 * c * 2 * c + nrm(2 * c) + 9 * (2 * c) ** 2 + nrm(2 * c) + c * 2 * c
            c *= 2
        total += N * (n1 * (c * c + nrm(c)) + n3 * (9 * c * c + nrm(c)))
    return total + nrm(c) + c * num_classes + num_classes


def analytic_flops(arch: str | Sequence[str], *, C: int = 16, N: int = 5, num_classes: int = 10,
                   in_channels: int = 3, image_size: int = 32) -> int:
    """FLOPs of one forward pass of one image, counted as torch.utils.flop_counter counts them:
    2 x multiply-adds of every conv and of the classifier (norms, pools, sums and ReLUs count
    nothing there, so they count nothing here). Halve it for the benchmark's multiply-add count."""
    if image_size % 4:
        raise NB201Error(f"image_size={image_size} is invalid: expected a multiple of 4 (two halvings)")
    n1, n3 = op_counts(arch)
    hw = image_size * image_size
    total = 2 * in_channels * C * 9 * hw
    c = C
    for stage in range(3):
        if stage:
            hw //= 4
            total += 2 * hw * (9 * c * 2 * c + 9 * (2 * c) ** 2 + c * 2 * c)
            c *= 2
        total += N * 2 * hw * (n1 * c * c + n3 * 9 * c * c)
    return total + 2 * c * num_classes


# -- the search space --------------------------------------------------------------------------

@dataclass(frozen=True)
class NB201Space:
    """NB201 cells as a ``normlab.search`` space. An architecture is its NB201 string (JSON).

    ``sample`` draws each edge's op uniformly; ``mutate`` changes the op of one uniformly chosen
    edge to a different op (the NB201 paper's REA mutation); ``key`` is the string itself (see
    the module docstring: no isomorphism merging). ``categorical()`` and ``from_params`` expose
    the six edges as categorical parameters for optuna's samplers. ``tag`` names what scores the
    cells (e.g. a table and dataset), so differently scored searches are stored apart."""

    tag: str = ""

    def sample(self, rng: random.Random) -> str:
        return arch_string([OPS[rng.randrange(len(OPS))] for _ in EDGES])

    def mutate(self, arch: str, rng: random.Random) -> str:
        ops = list(parse_arch(arch))
        edge = rng.randrange(len(EDGES))
        others = [o for o in OPS if o != ops[edge]]
        ops[edge] = others[rng.randrange(len(others))]
        return arch_string(ops)

    def key(self, arch: str) -> str:
        return arch_string(arch)

    def categorical(self) -> dict[str, tuple[str, ...]]:
        """The six edges as categorical parameters: edge name -> the five op names."""
        return {name: OPS for name in EDGE_NAMES}

    def from_params(self, params: Mapping[str, Any]) -> str:
        return arch_string([params[name] for name in EDGE_NAMES])

    def to_params(self, arch: str) -> dict[str, str]:
        return dict(zip(EDGE_NAMES, parse_arch(arch)))

    def identity(self) -> dict[str, Any]:
        return {"tag": self.tag}
