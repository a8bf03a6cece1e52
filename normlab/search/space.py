"""What a search space is: a protocol any user object can satisfy, and the toy spaces we ship.

A space samples, mutates and names architectures. An architecture is any value the space likes;
to be stored (resume, export, the CLI) it travels as JSON: either it is JSON already (numbers,
strings, lists, dicts; tuples come back as lists) or the space provides ``to_json``/``from_json``.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["SearchSpace", "SearchError", "BitString", "onemax", "encode_arch", "decode_arch",
           "space_identity"]


class SearchError(ValueError):
    """A search that cannot run as asked (bad settings, an infeasible space): one line."""


@runtime_checkable
class SearchSpace(Protocol):
    """``sample(rng)`` a random architecture, ``mutate(arch, rng)`` a neighbour of it, ``key(arch)``
    its canonical name (equal keys mean the same architecture: it is evaluated once per search).

    Optional: ``crossover(a, b, rng) -> arch``; ``to_json(arch)``/``from_json(obj)`` when an
    architecture is not JSON itself; ``identity() -> dict`` naming the space's settings (else its
    dataclass fields, else its class name), which is part of a stored search's identity.
    """

    def sample(self, rng: random.Random) -> Any: ...

    def mutate(self, arch: Any, rng: random.Random) -> Any: ...

    def key(self, arch: Any) -> str: ...


def encode_arch(space: Any, arch: Any) -> Any:
    """The JSON form of an architecture (checked: a clear error if it is not JSON)."""
    obj = space.to_json(arch) if hasattr(space, "to_json") else arch
    try:
        json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise SearchError(f"{type(space).__name__}: architecture {arch!r} is not JSON ({exc}); give "
                          f"the space to_json(arch) and from_json(obj)") from None
    return obj


def decode_arch(space: Any, obj: Any) -> Any:
    return space.from_json(obj) if hasattr(space, "from_json") else obj


def space_identity(space: Any) -> dict[str, Any]:
    """What names a space in a stored search: its ``identity()``, its dataclass fields, or its class."""
    name = f"{type(space).__module__}.{type(space).__qualname__}"
    if callable(getattr(space, "identity", None)):
        return {"space": name, **dict(space.identity())}
    if dataclasses.is_dataclass(space):
        return {"space": name, **json.loads(json.dumps(dataclasses.asdict(space), default=str))}
    return {"space": name}


def check_space(space: Any) -> None:
    missing = [m for m in ("sample", "mutate", "key") if not callable(getattr(space, m, None))]
    if missing:
        raise SearchError(f"{type(space).__name__} is not a search space: it lacks "
                          f"{', '.join(missing)} (expected sample(rng), mutate(arch, rng), key(arch))")


@dataclass(frozen=True)
class BitString:
    """Bit strings of length ``n`` (tuples of 0/1); a mutation flips each bit with probability
    ``rate`` (at least one bit). The classic toy with a known optimum: ``onemax``."""

    n: int = 32
    rate: float | None = None                 # default 1/n

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 1:
            raise SearchError(f"BitString n={self.n!r} is invalid: expected a positive integer")

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        return tuple(rng.getrandbits(1) for _ in range(self.n))

    def mutate(self, arch: tuple[int, ...], rng: random.Random) -> tuple[int, ...]:
        rate = self.rate if self.rate is not None else 1.0 / self.n
        flips = [i for i in range(self.n) if rng.random() < rate] or [rng.randrange(self.n)]
        bits = list(arch)
        for i in flips:
            bits[i] ^= 1
        return tuple(bits)

    def crossover(self, a: tuple[int, ...], b: tuple[int, ...], rng: random.Random) -> tuple[int, ...]:
        cut = rng.randrange(1, self.n) if self.n > 1 else 0
        return tuple(a[:cut]) + tuple(b[cut:])

    def key(self, arch: Any) -> str:
        return "".join(str(int(b)) for b in arch)

    def to_json(self, arch: tuple[int, ...]) -> str:
        return self.key(arch)

    def from_json(self, obj: str) -> tuple[int, ...]:
        return tuple(int(c) for c in obj)


def onemax(bits: Any) -> float:
    """The number of ones: the optimum is all ones."""
    return float(sum(bits))
