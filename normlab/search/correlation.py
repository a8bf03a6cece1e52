"""How well a proxy ranks like the truth: Kendall's tau-b and Spearman's rho with bootstrap
intervals, and top-k overlap. Every proxy (BN indicator, angle, #params, synflow) is judged here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

__all__ = ["RankCorrelation", "rank_correlation", "topk_overlap", "topk_hits"]


@dataclass(frozen=True)
class RankCorrelation:
    """tau-b and rho with (low, high) percentile-bootstrap intervals at ``confidence``."""

    n: int
    kendall: float
    spearman: float
    kendall_ci: tuple[float, float]
    spearman_ci: tuple[float, float]
    kendall_p: float
    spearman_p: float
    confidence: float

    def __str__(self) -> str:
        pct = round(self.confidence * 100)
        return (f"Kendall tau {self.kendall:.3f} [{self.kendall_ci[0]:.3f}, {self.kendall_ci[1]:.3f}], "
                f"Spearman rho {self.spearman:.3f} [{self.spearman_ci[0]:.3f}, {self.spearman_ci[1]:.3f}] "
                f"({pct}% bootstrap intervals, n={self.n})")

    def to_dict(self) -> dict:
        return asdict(self)


def _pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"rank_correlation needs two sequences of equal length, got {a.shape} and {b.shape}")
    if len(a) < 3:
        raise ValueError(f"rank_correlation needs at least 3 pairs, got {len(a)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("rank_correlation got a NaN or infinite value: drop those pairs first")
    return a, b


def rank_correlation(x: Sequence[float], y: Sequence[float], *, bootstrap: int = 1000,
                     confidence: float = 0.95, seed: int = 0) -> RankCorrelation:
    """Kendall tau-b and Spearman rho of ``x`` against ``y`` (scipy's, ties handled), their
    p-values, and percentile intervals from ``bootstrap`` resamples of the pairs."""
    from scipy import stats

    a, b = _pairs(x, y)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence!r} is invalid: expected a number in (0, 1)")
    tau, tau_p = stats.kendalltau(a, b)
    rho, rho_p = stats.spearmanr(a, b)
    rng = np.random.default_rng(seed)
    taus, rhos = [], []
    for _ in range(int(bootstrap)):
        idx = rng.integers(0, len(a), len(a))
        sa, sb = a[idx], b[idx]
        if np.ptp(sa) == 0 or np.ptp(sb) == 0:         # a constant resample has no ranking
            continue
        taus.append(stats.kendalltau(sa, sb)[0])
        rhos.append(stats.spearmanr(sa, sb)[0])
    lo, hi = (1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100

    def interval(v):
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        return (float(np.percentile(v, lo)), float(np.percentile(v, hi))) if len(v) else (float("nan"),) * 2

    return RankCorrelation(len(a), float(tau), float(rho), interval(taus), interval(rhos),
                           float(tau_p), float(rho_p), confidence)


def _top(v: np.ndarray, k: int) -> set[int]:
    return set(np.argsort(-v, kind="stable")[:k].tolist())


def topk_overlap(x: Sequence[float], y: Sequence[float], k: int) -> float:
    """|top-k by x ∩ top-k by y| / k (higher is better for both)."""
    a, b = _pairs(x, y)
    if not 1 <= k <= len(a):
        raise ValueError(f"k={k!r} is invalid: expected 1 <= k <= {len(a)}")
    return len(_top(a, k) & _top(b, k)) / k


def topk_hits(proxy: Sequence[float], truth: Sequence[float], k: int, best: int = 1) -> bool:
    """Whether the proxy's top-k holds all of the ``best`` truly best (e.g. the real winner)."""
    a, b = _pairs(proxy, truth)
    return _top(b, best) <= _top(a, k)
