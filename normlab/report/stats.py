"""Numbers over seeds: n, mean, sample std and a 95% t-interval, and how to write them."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable

__all__ = ["Stat", "describe"]


def _t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


@dataclass(frozen=True)
class Stat:
    """A sample of values (e.g. accuracies over seeds)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else float("nan")

    @property
    def std(self) -> float:
        """Sample standard deviation; NaN for fewer than two values (unknown, not zero)."""
        return statistics.stdev(self.values) if self.n > 1 else float("nan")

    @property
    def half_width(self) -> float:
        """Half the width of the 95% t-interval of the mean; NaN for n < 2."""
        if self.n < 2:
            return float("nan")
        return _t975(self.n - 1) * self.std / math.sqrt(self.n)

    def text(self, scale: float = 100.0, digits: int = 1) -> str:
        """'92.1 ± 0.4 (n=3)' (± is the 95% interval's half-width); 'n=1' says one value."""
        if not self.values:
            return "-"
        if self.n == 1:
            return f"{scale * self.mean:.{digits}f} (n=1)"
        return f"{scale * self.mean:.{digits}f} ± {scale * self.half_width:.{digits}f} (n={self.n})"


def describe(values: Iterable[float]) -> Stat:
    return Stat(tuple(float(v) for v in values))
