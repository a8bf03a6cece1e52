"""Paths as a normlab.search space: one op index per searchable layer, restricted to the ops
each layer still allows (ABS shrinks these lists)."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Sequence

from .supernet import NasError

__all__ = ["PathSpace"]


@dataclass(frozen=True)
class PathSpace:
    """Paths over ``choices`` (per layer, the op indices allowed). ``mutate`` resamples each layer
    with probability ``rate`` (SPOS uses 0.1), at least one layer changes when it can;
    ``crossover`` takes each layer from either parent. ``tag`` names what scores the paths (a
    supernet checkpoint), so searches scored differently are stored apart. ``space`` (JSON of the
    SpaceConfig, optional) is stored with the search, so its paths can be rebuilt later."""

    choices: tuple[tuple[int, ...], ...]
    rate: float = 0.1
    tag: str = ""
    space: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(tuple(int(i) for i in c) for c in self.choices))
        if not self.choices or any(not c for c in self.choices):
            raise NasError("every layer of a path space needs at least one allowed op")
        if not 0 < float(self.rate) <= 1:
            raise NasError(f"rate={self.rate!r} is invalid: expected a probability in (0, 1]")

    @classmethod
    def full(cls, num_ops: Sequence[int], **kwargs: Any) -> "PathSpace":
        return cls(tuple(tuple(range(n)) for n in num_ops), **kwargs)

    @property
    def size(self) -> int:
        n = 1
        for c in self.choices:
            n *= len(c)
        return n

    def contains(self, path: Sequence[int]) -> bool:
        return len(path) == len(self.choices) and all(int(i) in c for i, c in zip(path, self.choices))

    def sample(self, rng: random.Random) -> tuple[int, ...]:
        return tuple(c[rng.randrange(len(c))] for c in self.choices)

    def mutate(self, path: Sequence[int], rng: random.Random) -> tuple[int, ...]:
        out = list(path)
        free = [i for i, c in enumerate(self.choices) if len(c) > 1]
        if not free:
            return tuple(out)
        layers = [i for i in free if rng.random() < self.rate] or [free[rng.randrange(len(free))]]
        for i in layers:
            others = [o for o in self.choices[i] if o != out[i]]
            out[i] = others[rng.randrange(len(others))]
        return tuple(out)

    def crossover(self, a: Sequence[int], b: Sequence[int], rng: random.Random) -> tuple[int, ...]:
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b))

    def key(self, path: Sequence[int]) -> str:
        return "-".join(str(int(i)) for i in path)

    def to_json(self, path: Sequence[int]) -> list[int]:
        return [int(i) for i in path]

    def from_json(self, obj: Any) -> tuple[int, ...]:
        return tuple(int(i) for i in obj)

    def identity(self) -> dict[str, Any]:
        out = {"choices": [list(c) for c in self.choices], "rate": float(self.rate), "tag": self.tag}
        if self.space:
            out["space"] = json.loads(self.space)
        return out
