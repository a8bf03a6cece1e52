"""Numbers over seeds (n, mean, sample std, a 95% t-interval) and the rule every report decides
its claims by: one family of comparisons per report, Holm-adjusted, tested for a difference and
for equivalence within a margin (TOST), each claim "holds", "does not hold" or "inconclusive at n
seeds" with the seeds a study of the observed spread would need (:class:`Family`)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["Stat", "describe", "Comparison", "Verdict", "Family", "paired", "unpaired", "estimate",
           "exact", "p_values", "holm", "power", "seeds_needed", "ALPHA", "MARGIN", "POWER", "HOLDS", "DOES_NOT_HOLD",
           "INCONCLUSIVE", "chance_test"]


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


def chance_test(accuracy: float, n: int, classes: int, *, alpha: float = 0.01) -> dict[str, Any]:
    """Is a classifier's ``accuracy`` on ``n`` test images above guessing among ``classes``?

    One-sided exact binomial test of ``round(accuracy * n)`` correct answers against p = 1/classes;
    ``band`` is the accuracy a guesser reaches with probability 1 - ``alpha`` at most (the
    binomial's 1 - alpha quantile over n). ``above_chance`` when p < alpha. Returns the numbers and
    a sentence for people (``text``)."""
    from scipy.stats import binom, binomtest

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is invalid: expected a positive number of test images")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise ValueError(f"classes={classes!r} is invalid: expected an integer >= 2")
    chance = 1.0 / classes
    k = int(round(float(accuracy) * n))
    p = float(binomtest(k, n, chance, alternative="greater").pvalue)
    band = float(binom.ppf(1 - alpha, n, chance)) / n
    above = p < alpha
    text = (f"{100 * accuracy:.1f}% on {n:,} images vs chance {100 * chance:.1f}% (a guesser stays below "
            f"{100 * band:.1f}% with probability {1 - alpha:.0%}; binomial p = {p:.2g}): "
            + ("above chance" if above else "WITHIN NOISE OF CHANCE"))
    return {"accuracy": float(accuracy), "n": n, "classes": classes, "chance": chance, "p_value": p,
            "band": band, "alpha": alpha, "above_chance": above, "text": text}


# -- verdicts: one family per report, difference and equivalence, seeds needed -----------------

ALPHA = 0.05
MARGIN = 1.0          # points of accuracy: a difference smaller than this does not matter
POWER = 0.8
MAX_SEEDS = 10_000    # the seeds-needed search stops here ("more than 10,000")

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


def p_values(diff: Any, se: Any, df: Any, margin: float) -> tuple[Any, Any]:
    """The two tests of one claim from an estimate ``diff`` with standard error ``se`` on ``df``
    degrees of freedom (arrays broadcast; ``df`` may be inf for a normal approximation):

    - ``p_diff``: two-sided p of "the difference is 0" (Student's t);
    - ``p_equiv``: the TOST p of "|difference| >= margin" (two one-sided t-tests, the larger p),
      so p_equiv < alpha exactly when the (1 - 2 alpha) interval lies inside ±margin.

    A zero ``se`` with finite ``df`` (every paired difference identical, which happens with a
    few seeds on a small test set: accuracies move in steps of one image) leaves the t statistic
    undefined; the exact sign test on the n = df + 1 differences takes its place: p_diff =
    2 * 2**-n (1 when the difference is 0), p_equiv = 2**-n when the difference lies inside
    ±margin (1 otherwise). Three identical differences therefore decide nothing (p 0.25), where
    the t-test's limit would say p = 0. A zero ``se`` with infinite ``df`` (an estimate) gives
    p 0 or 1 by the sign of the statistic."""
    from scipy.stats import t as student

    diff, se, df = np.asarray(diff, float), np.asarray(se, float), np.asarray(df, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, diff / se, np.where(diff == 0, 0.0, np.sign(diff) * np.inf))
        lo = np.where(se > 0, (diff + margin) / se, np.where(diff + margin > 0, np.inf, -np.inf))
        hi = np.where(se > 0, (diff - margin) / se, np.where(diff - margin < 0, -np.inf, np.inf))
    p_diff = np.where(np.isfinite(z), 2 * student.sf(np.abs(z), df), np.where(z == 0, 1.0, 0.0))
    p_diff = np.where((se == 0) & (diff == 0), 1.0, p_diff)
    p_equiv = np.maximum(student.sf(lo, df), student.cdf(hi, df))
    sign = (se == 0) & np.isfinite(df)              # identical differences: the exact sign test
    if np.any(sign):
        tail = np.power(0.5, np.where(sign, df + 1, 1.0))
        p_diff = np.where(sign, np.where(diff == 0, 1.0, np.minimum(1.0, 2 * tail)), p_diff)
        p_equiv = np.where(sign, np.where(np.abs(diff) < margin, tail, 1.0), p_equiv)
    return p_diff, p_equiv


def noninferiority_p(diff: float, se: float, df: float, margin: float) -> float:
    """One-sided p of "diff <= -margin" (non-inferiority of a to b by ``margin``)."""
    from scipy.stats import t as student

    if se == 0:                                     # identical differences: the exact sign test
        if math.isfinite(df):
            return 0.5 ** (df + 1) if diff > -margin else 1.0
        return 0.0 if diff > -margin else 1.0
    return float(student.sf((diff + margin) / se, df))


def holm(p_diff: Any, p_equiv: Any | None = None) -> tuple[Any, Any]:
    """Holm's step-down adjustment over the last axis, for k claims tested for a difference and
    (optionally) for equivalence: 2k hypotheses of which at most k can be true, since a claim's
    "the difference is 0" and "|the difference| >= margin" cannot both be (Shaffer's refinement
    of Holm: at each step the multiplier is the number of claims that still have a hypothesis
    standing, not the number of hypotheses). With equivalence left out this is plain Holm.
    Returns the adjusted p-values, same shapes; reject where adjusted p < alpha. Controls the
    family-wise error rate at alpha under any dependence."""
    p_diff = np.asarray(p_diff, float)
    k = p_diff.shape[-1]
    p_all = p_diff if p_equiv is None else np.concatenate([p_diff, np.asarray(p_equiv, float)], axis=-1)
    claim = np.arange(p_all.shape[-1]) % k
    order = np.argsort(p_all, axis=-1, kind="stable")
    p_sorted = np.take_along_axis(p_all, order, axis=-1)
    claim_sorted = claim[order]
    # standing[..., i]: claims with a hypothesis at sorted position >= i (not yet passed)
    m = p_all.shape[-1]
    lead = p_all.shape[:-1]
    standing = np.zeros(lead + (m,), int)
    seen = np.zeros(lead + (k,), bool)
    for i in range(m - 1, -1, -1):
        c = claim_sorted[..., i]
        np.put_along_axis(seen, c[..., None], True, axis=-1)
        standing[..., i] = seen.sum(-1)
    adj = np.minimum(1.0, np.maximum.accumulate(standing * p_sorted, axis=-1))
    out = np.empty_like(adj)
    np.put_along_axis(out, order, adj, axis=-1)
    if p_equiv is None:
        return out, None
    return out[..., :k], out[..., k:]


def power(effect: float, sd: float, n: Any, *, alpha: float = ALPHA, equivalence: bool = False,
          margin: float = MARGIN, samples: int = 1) -> Any:
    """Power of the t-test on ``n`` seeds (array ok) when the true difference is ``effect`` and the
    per-seed differences have standard deviation ``sd``: two-sided test of "no difference", or
    (``equivalence``) TOST with ``margin`` (the usual lower bound 1 - P(miss low) - P(miss high)).
    ``samples=1`` is the paired design (sd of the paired differences, df n-1); ``samples=2`` two
    independent groups of n each (sd: of the difference of one draw from each, sqrt(s1^2 + s2^2);
    Welch's df taken as 2(n-1))."""
    from scipy.stats import nct, t as student

    n = np.asarray(n, float)
    df = samples * (n - 1)
    se = sd / np.sqrt(n)
    if not equivalence:
        tc = student.ppf(1 - alpha / 2, df)
        ncp = effect / se
        return nct.sf(tc, df, ncp) + nct.cdf(-tc, df, ncp)
    tc = student.ppf(1 - alpha, df)
    miss_low = nct.cdf(tc, df, (effect + margin) / se)
    miss_high = nct.sf(-tc, df, (effect - margin) / se)
    return np.clip(1 - miss_low - miss_high, 0.0, 1.0)


def seeds_needed(effect: float, sd: float, *, alpha: float = ALPHA, target: float = POWER,
                 equivalence: bool = False, margin: float = MARGIN, samples: int = 1) -> int | None:
    """The fewest seeds (per arm) with ``power(...) >= target``; None beyond MAX_SEEDS or when
    the spread is unknown (sd NaN) or the effect cannot be decided (a difference of 0; an
    equivalence at or beyond the margin)."""
    if not math.isfinite(sd) or (not equivalence and effect == 0) or (equivalence and abs(effect) >= margin):
        return None
    if sd == 0:
        return 2
    lo, hi = 2, 2
    while power(effect, sd, hi, alpha=alpha, equivalence=equivalence, margin=margin, samples=samples) < target:
        lo, hi = hi, hi * 2
        if hi > MAX_SEEDS:
            return None
    while lo < hi:                              # power rises with n: bisect
        mid = (lo + hi) // 2
        if power(effect, sd, mid, alpha=alpha, equivalence=equivalence, margin=margin, samples=samples) >= target:
            hi = mid
        else:
            lo = mid + 1
    return int(hi)


@dataclass(frozen=True)
class Comparison:
    """One claim measured: the difference ``a - b`` (in the report's units, e.g. points), its
    standard error and degrees of freedom, and the spread that sizes a bigger study.

    ``direction``: +1 when the claim is "a is above b", -1 "a is below b", 0 "a differs from b".
    ``kind``: "difference" (the claim is that a difference exists: holds when it is shown) or
    "noninferior" (the claim is that a is not worse than b by more than the margin, in the
    ``direction`` given: holds when that is shown by a one-sided test, does not hold when a is
    shown to be worse).
    ``samples``: 1 for paired seeds, 2 for two independent groups (Welch). ``unit``: what n counts
    (seeds, architectures, searches). ``p_exact``: a one-sided p-value computed elsewhere (e.g. a
    permutation test, :func:`exact`); the claim then has no equivalence test and no standard error."""

    claim: str
    diff: float
    se: float
    df: float
    n: int
    sd: float
    direction: int = 1
    samples: int = 1
    method: str = "paired t-test"
    kind: str = "difference"
    unit: str = "seeds"
    p_exact: float | None = None

    @property
    def testable(self) -> bool:
        return self.n >= 2 and (math.isfinite(self.se) or self.p_exact is not None)

    def interval(self, alpha: float) -> tuple[float, float]:
        """The (1 - 2 alpha) interval of the difference (90% at alpha 0.05): TOST's interval."""
        from scipy.stats import t as student

        if not self.testable or self.p_exact is not None:
            return (float("nan"), float("nan"))
        h = float(student.ppf(1 - alpha, self.df)) * self.se if self.se > 0 else 0.0
        return (self.diff - h, self.diff + h)


def paired(a: Sequence[float], b: Sequence[float], claim: str, *, direction: int = 1,
           scale: float = 100.0) -> Comparison:
    """``a`` and ``b`` paired by position (the same seeds), times ``scale`` (100: fractions to
    points)."""
    d = scale * (np.asarray(a, float) - np.asarray(b, float))
    n = len(d)
    if n == 0:
        return Comparison(claim, float("nan"), float("nan"), float("nan"), 0, float("nan"), direction)
    if n == 1:
        return Comparison(claim, float(d[0]), float("nan"), float("nan"), 1, float("nan"), direction)
    sd = float(np.std(d, ddof=1))
    return Comparison(claim, float(d.mean()), sd / math.sqrt(n), float(n - 1), n, sd, direction)


def unpaired(a: Sequence[float], b: Sequence[float], claim: str, *, direction: int = 1,
             scale: float = 100.0) -> Comparison:
    """Two independent groups (e.g. best-so-far of two search strategies over their seeds):
    Welch's t (unequal variances, Welch-Satterthwaite df). ``n`` is the smaller group."""
    x, y = scale * np.asarray(a, float), scale * np.asarray(b, float)
    n = min(len(x), len(y))
    diff = float(x.mean() - y.mean()) if len(x) and len(y) else float("nan")
    if len(x) < 2 or len(y) < 2:
        return Comparison(claim, diff, float("nan"), float("nan"), n, float("nan"), direction, 2, "Welch t-test")
    vx, vy = float(np.var(x, ddof=1)), float(np.var(y, ddof=1))
    se2 = vx / len(x) + vy / len(y)
    if se2 > 0:
        df = se2 ** 2 / ((vx / len(x)) ** 2 / (len(x) - 1) + (vy / len(y)) ** 2 / (len(y) - 1))
    else:
        df = float(len(x) + len(y) - 2)
    return Comparison(claim, diff, math.sqrt(se2), df, n, math.sqrt(vx + vy), direction, 2, "Welch t-test")


def estimate(diff: float, se: float, n: int, claim: str, *, direction: int = 1, sd: float | None = None,
             method: str = "bootstrap standard error, normal approximation", kind: str = "difference",
             unit: str = "seeds") -> Comparison:
    """A difference whose standard error comes from elsewhere (e.g. a paired bootstrap of two
    rank correlations over the same architectures): normal approximation (df = inf). ``sd``, the
    spread of one unit, defaults to se * sqrt(n) (what sizes a bigger study)."""
    return Comparison(claim, float(diff), float(se), math.inf, int(n),
                      float(sd if sd is not None else se * math.sqrt(n)), direction, 1, method, kind, unit)


def exact(diff: float, p: float, n: int, claim: str, *, method: str, unit: str, direction: int = 1) -> Comparison:
    """A claim whose one-sided p-value in the claimed ``direction`` comes from an exact test made
    elsewhere (e.g. against ``n`` random draws: p = (1 + #draws at least as good) / (1 + n)). It
    joins the family like any other (Holm-adjusted with the rest); it has no equivalence test, so
    it holds or stays inconclusive."""
    if not 0 < p <= 1:
        raise ValueError(f"p={p!r} is invalid: expected a p-value in (0, 1]")
    return Comparison(claim, float(diff), float("nan"), math.inf, int(n), float("nan"), direction, 1, method,
                      "difference", unit, float(p))


def _count_noun(unit: str, n: int) -> str:
    """'seeds' -> 'seed' when n is 1 ('searches' -> 'search')."""
    if n != 1 or not unit.endswith("s"):
        return unit
    return unit[:-2] if unit.endswith(("ches", "shes", "sses", "xes")) else unit[:-1]


@dataclass(frozen=True)
class Verdict:
    """A claim decided within its family."""

    comparison: Comparison
    verdict: str                   # HOLDS, DOES_NOT_HOLD or INCONCLUSIVE
    p_diff: float                  # raw and adjusted (Holm-Shaffer over the family)
    p_equiv: float
    p_diff_adj: float
    p_equiv_adj: float
    alpha: float
    margin: float
    family_size: int
    needed: int | None = None      # seeds that would decide it (inconclusive only)
    needed_for: str = ""           # "difference" or "equivalence"
    opposite: bool = False         # a difference shown, against the claimed direction
    negligible: bool = False       # holds, and the difference is also shown to be inside ±margin

    @property
    def holds(self) -> bool:
        return self.verdict == HOLDS

    @property
    def word(self) -> str:
        if self.verdict == INCONCLUSIVE:
            if self.comparison.p_exact is not None:      # more draws of the reference would not decide it
                return "inconclusive"
            return f"inconclusive at {self.comparison.n} {_count_noun(self.comparison.unit, self.comparison.n)}"
        return self.verdict

    def evidence(self, unit: str = "points") -> str:
        """'+1.5 points, 90% CI [0.4, 2.6], Holm-adjusted p=0.012 (paired t-test, n=3)'."""
        c = self.comparison
        if not c.testable:
            return f"{c.diff:+.2f} {unit} (n={c.n}: too few to test)"
        if c.p_exact is not None:
            return (f"{c.diff:+.2f} {unit}, adjusted p={self.p_diff_adj:.3g} (one-sided; raw {self.p_diff:.3g}); "
                    f"{c.method}, n={c.n} {c.unit}")
        lo, hi = c.interval(self.alpha)
        pct = round(100 * (1 - 2 * self.alpha))
        second = ("equivalence within ±" if c.kind == "difference" else "not worse by more than ")
        return (f"{c.diff:+.2f} {unit}, {pct}% CI [{lo:+.2f}, {hi:+.2f}], adjusted p={self.p_diff_adj:.3g} "
                f"(difference), {self.p_equiv_adj:.3g} ({second}{self.margin:g}); {c.method}, "
                f"n={c.n} {c.unit}")

    def text(self, unit: str = "points", *, predicate: bool = False) -> str:
        """The verdict in words with its evidence; ``predicate``: to follow a subject ("the claim
        that ... holds / does not hold / is inconclusive at 3 seeds")."""
        c = self.comparison
        if self.verdict == HOLDS:
            if c.kind == "noninferior":
                tail = f" (not worse by more than {self.margin:g} {unit} is shown)"
            else:
                tail = (f" (but the difference is also shown to lie within ±{self.margin:g} {unit})"
                        if self.negligible else "")
            return f"holds{tail}: {self.evidence(unit)}"
        if self.verdict == DOES_NOT_HOLD:
            if c.kind == "noninferior":
                why = "it is shown to be worse"
            else:
                why = ("the opposite difference is shown" if self.opposite
                       else f"equivalence within ±{self.margin:g} {unit} is shown")
            return f"does not hold ({why}): {self.evidence(unit)}"
        if c.p_exact is not None:
            more = (f"; more {c.unit} would not decide it (they only sharpen the reference): a second "
                    f"measurement of what is tested would")
        elif self.needed is not None:
            more = (f"; about {self.needed} {c.unit} would decide it ({self.needed_for}, at power "
                    f"{POWER:g}, if the true difference is the observed one and the spread is this "
                    f"study's, each claim at alpha/{self.family_size})")
        elif self.comparison.n < 2:
            more = f"; the spread is unknown with n={self.comparison.n}"
        else:
            more = (f"; not decidable with up to {MAX_SEEDS} {c.unit} if the true difference is the "
                    f"observed one")
        return (f"{'is ' if predicate else ''}{self.word}: {self.evidence(unit)}{more}")


class Family:
    """The claims one report states, decided together: every claim is tested for a difference
    (two-sided t) and for equivalence within ±``margin`` (TOST); the family's p-values are
    adjusted together (Holm with Shaffer's logical constraint, :func:`holm`), so the chance that
    any verdict of the report is a false "holds" or a false "does not hold" stays at ``alpha``.

    - **holds**: the difference is shown (adjusted p < alpha) in the claimed direction;
    - **does not hold**: equivalence is shown (adjusted TOST p < alpha, i.e. the difference's
      interval lies inside ±margin), or the opposite difference is shown;
    - **inconclusive at n seeds**, with the seeds a study of this spread would need.
    """

    def __init__(self, *, alpha: float = ALPHA, margin: float = MARGIN, power: float = POWER) -> None:
        if not 0 < alpha < 0.5:
            raise ValueError(f"alpha={alpha!r} is invalid: expected a number in (0, 0.5)")
        if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > 0):
            raise ValueError(f"margin={margin!r} is invalid: expected a positive number")
        self.alpha, self.margin, self.power = float(alpha), float(margin), float(power)
        self.comparisons: list[Comparison] = []

    def add(self, comparison: Comparison) -> int:
        """Adds a claim; returns its index in :meth:`decide`'s list."""
        self.comparisons.append(comparison)
        return len(self.comparisons) - 1

    def __len__(self) -> int:
        return len(self.comparisons)

    @property
    def size(self) -> int:
        """How many claims were tested (those with at least two seeds)."""
        return sum(c.testable for c in self.comparisons)

    def decide(self) -> list[Verdict]:
        cs = self.comparisons
        idx = [i for i, c in enumerate(cs) if c.testable]
        nan = float("nan")
        raw_d = np.full(len(cs), nan)
        raw_e = np.full(len(cs), nan)
        adj_d = np.full(len(cs), nan)
        adj_e = np.full(len(cs), nan)
        if idx:
            pd_, pe = p_values([cs[i].diff for i in idx], [cs[i].se for i in idx], [cs[i].df for i in idx],
                               self.margin)
            for j, i in enumerate(idx):             # non-inferiority: one one-sided test
                if cs[i].p_exact is not None:       # an exact one-sided p: no equivalence test
                    pd_[j], pe[j] = cs[i].p_exact, 1.0
                elif cs[i].kind == "noninferior":
                    pe[j] = noninferiority_p(cs[i].direction * cs[i].diff, cs[i].se, cs[i].df, self.margin)
            ad, ae = holm(pd_, pe)
            raw_d[idx], raw_e[idx], adj_d[idx], adj_e[idx] = pd_, pe, ad, ae
        m = max(1, len(idx))
        out = []
        for i, c in enumerate(cs):
            diff_shown = bool(adj_d[i] < self.alpha)
            equiv_shown = bool(adj_e[i] < self.alpha)
            kw: dict[str, Any] = {}
            if c.kind == "noninferior":
                worse = diff_shown and np.sign(c.diff) == -(c.direction or 1)
                word = HOLDS if equiv_shown else DOES_NOT_HOLD if worse else INCONCLUSIVE
            elif diff_shown and (c.direction == 0 or np.sign(c.diff) == c.direction):
                word = HOLDS
                kw["negligible"] = equiv_shown
            elif diff_shown:
                word, kw["opposite"] = DOES_NOT_HOLD, True
            elif equiv_shown:
                word = DOES_NOT_HOLD
            else:
                word = INCONCLUSIVE
            if word == INCONCLUSIVE and c.testable and c.p_exact is None:
                level = self.alpha / m
                n_d = seeds_needed(c.diff, c.sd, alpha=level, target=self.power, samples=c.samples)
                n_e = (seeds_needed(c.diff, c.sd, alpha=level, target=self.power, equivalence=True,
                                    margin=self.margin, samples=c.samples) if c.kind == "difference" else
                       seeds_needed(c.direction * c.diff + self.margin, c.sd, alpha=2 * level,
                                    target=self.power, samples=c.samples))
                options = [(n, w) for n, w in ((n_d, "to show the difference"),
                                               (n_e, f"to show equivalence within ±{self.margin:g}"
                                                if c.kind == "difference" else
                                                f"to show it is not worse by more than {self.margin:g}"))
                           if n is not None]
                if options:
                    kw["needed"], kw["needed_for"] = min(options)
            out.append(Verdict(c, word, float(raw_d[i]), float(raw_e[i]), float(adj_d[i]), float(adj_e[i]),
                               self.alpha, self.margin, m, **kw))
        return out

    def describe(self) -> str:
        """The sentence every report prints about its statistics."""
        pct = round(100 * (1 - 2 * self.alpha))
        return (f"{self.size} comparison(s) in this report's family, decided together: each claim is tested "
                f"for a difference (two-sided t-test) and for equivalence within ±{self.margin:g} "
                f"(two one-sided tests, i.e. the {pct}% interval inside the margin); the p-values are "
                f"Holm-adjusted over the family (with Shaffer's constraint that a claim's two null "
                f"hypotheses cannot both be true), family-wise error rate {self.alpha:g}. "
                f"'holds' = difference shown in the claimed direction; 'does not hold' = equivalence "
                f"(or the opposite difference) shown; otherwise 'inconclusive at n', with the n "
                f"(seeds, searches, ...) a study of the observed spread would need (power {self.power:g}, each claim "
                f"at alpha/{max(1, self.size)}, true difference = the observed one)." + self._exact_note())

    def _exact_note(self) -> str:
        k = sum(c.p_exact is not None and c.testable for c in self.comparisons)
        return (f" {k} of the claims carry an exact one-sided p-value of their own (its test is named with "
                f"each) in place of the t-tests, adjusted with the rest; they have no equivalence test, so "
                f"they hold or stay inconclusive.") if k else ""


def _paired_values(x: Mapping[Any, float], y: Mapping[Any, float]) -> tuple[list[float], list[float]]:
    keys = sorted(set(x) & set(y), key=repr)
    return [x[k] for k in keys], [y[k] for k in keys]


def best_claim(values: Mapping[str, Mapping[Any, float]], where: str, *, scale: float = 100.0) -> \
        tuple[list[str], Comparison | None]:
    """For "the best at ``where``": the candidates ordered by mean (each ``values[name]`` maps a
    seed to its value) and the one comparison that decides it, the top against the runner-up
    (paired by seed). None with fewer than two candidates."""
    order = sorted((n for n in values if values[n]),
                   key=lambda n: -statistics.fmean(values[n].values()))
    if len(order) < 2:
        return order, None
    a, b = _paired_values(values[order[0]], values[order[1]])
    return order, paired(a, b, f"{order[0]} above {order[1]} at {where}", scale=scale)


def best_text(order: Sequence[str], verdict: Verdict | None, values: Mapping[str, Mapping[Any, float]],
              *, scale: float = 100.0) -> str:
    """'best: A' when the top beats the runner-up under the family's rule; otherwise 'tied: A, B,
    C': the top, the runner-up and every other candidate not separated from the top by a paired
    t-test at Bonferroni's level alpha/(m + k), m the family's claims and k these k extra tests
    (the tie errs on the side of including)."""
    if not order:
        return "-"
    if verdict is None:
        return order[0] if len(order) == 1 else "-"
    if verdict.holds:
        return f"best: {order[0]}"
    tied = list(order[:2])
    level = verdict.alpha / (max(1, verdict.family_size) + len(order) - 2)
    for name in order[2:]:
        a, b = _paired_values(values[order[0]], values[name])
        c = paired(a, b, "", scale=scale)
        if not c.testable:
            tied.append(name)
            continue
        p, _ = p_values(c.diff, c.se, c.df, verdict.margin)
        if not (float(p) < level and c.diff > 0):
            tied.append(name)
    return "tied: " + ", ".join(tied)


def strategy_verdicts(finals: Mapping[str, Sequence[float]], baselines: Sequence[str], *, what: str,
                      margin: float = MARGIN, alpha: float = ALPHA, scale: float = 100.0,
                      unit: str = "points") -> list[str]:
    """The searches' claims ("evolution beats random search", "TPE beats RandWire") as one family:
    every strategy in ``finals`` (name -> its final value per search, e.g. the best fitness after
    the budget, one search per seed) against every baseline there, Welch's t over the searches
    (unpaired: a search's seed does not pair it with another strategy's), under the same rule as
    every report (:class:`Family`). Returns one sentence per claim and the family's sentence."""
    family = Family(alpha=alpha, margin=margin)
    pairs = []
    for arm, values in finals.items():
        if arm in baselines:
            continue
        for base in baselines:
            if base in finals and base != arm:
                c = unpaired(values, finals[base], f"{arm} above {base}", scale=scale)
                family.add(Comparison(c.claim, c.diff, c.se, c.df, c.n, c.sd, c.direction, c.samples,
                                      c.method, c.kind, "searches"))
                pairs.append((arm, base))
    if not pairs:
        return []
    lines = [f"{arm} against {base} ({what} after the budget, {len(finals[arm])} vs {len(finals[base])} "
             f"searches): the claim that {arm} beats {base} {v.text(unit, predicate=True)}."
             for (arm, base), v in zip(pairs, family.decide())]
    return lines + [family.describe()]
