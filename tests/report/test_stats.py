"""The verdict rule (normlab.report.stats) on synthetic studies whose truth is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from normlab.report.stats import (DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, Family, best_claim, best_text, holm,
                                  p_values,
                                  paired, power, seeds_needed, unpaired)

SIMS = 4000


def simulate(true_diffs, n, sd=1.0, margin=1.0, alpha=0.05, seed=0):
    """SIMS studies of len(true_diffs) paired claims on n seeds; returns (diff shown, equivalence
    shown) per study and claim, after the family's adjustment: all vectorised."""
    rng = np.random.default_rng(seed)
    d = np.asarray(true_diffs, float)[None, :, None] + sd * rng.standard_normal((SIMS, len(true_diffs), n))
    mean, se = d.mean(-1), d.std(-1, ddof=1) / math.sqrt(n)
    p_d, p_e = p_values(mean, se, n - 1, margin)
    a_d, a_e = holm(p_d, p_e)
    return a_d < alpha, a_e < alpha


def mc_bound(p, sims=SIMS):
    return p + 3 * math.sqrt(p * (1 - p) / sims)


@pytest.mark.parametrize("n", [3, 5, 10])
def test_family_false_positive_rate_under_the_null_is_at_most_alpha(n):
    shown, _ = simulate([0.0] * 8, n)
    fwer = shown.any(-1).mean()
    assert fwer <= mc_bound(0.05)
    assert fwer > 0.005                    # not vacuous: the level is used, not 0


def test_without_adjustment_the_family_would_not_hold_its_level():
    rng = np.random.default_rng(1)
    d = rng.standard_normal((SIMS, 8, 5))
    p, _ = p_values(d.mean(-1), d.std(-1, ddof=1) / math.sqrt(5), 4, 1.0)
    assert (p < 0.05).any(-1).mean() > 0.25            # 1 - 0.95^8 = 0.34: why the family is adjusted


def test_false_equivalence_rate_at_the_margin_is_at_most_alpha():
    # true difference exactly at the margin: "does not hold" would be false for every claim
    _, equiv = simulate([1.0, -1.0, 1.0, -1.0, 1.0, -1.0], 10, sd=0.5)
    assert equiv.any(-1).mean() <= mc_bound(0.05)


def test_mixed_truth_family_error_rate():
    # some claims null (0), some at the margin, some true effects: any false verdict counts
    truth = np.array([0.0, 0.0, 1.0, -1.0, 3.0, 0.5])
    shown, equiv = simulate(truth, 6, sd=0.7)
    false_diff = shown[:, truth == 0]
    false_equiv = equiv[:, np.abs(truth) >= 1.0]
    wrong = np.concatenate([false_diff, false_equiv], -1).any(-1).mean()
    assert wrong <= mc_bound(0.05)


def test_a_real_two_sigma_effect_is_found():
    n = 8                                   # paired t at alpha/4: power about 0.97 for 2 sigma
    shown, _ = simulate([2.0, 0.0, 0.0, 0.0], n)
    assert shown[:, 0].mean() >= 0.9
    assert shown[:, 0].mean() == pytest.approx(float(power(2.0, 1.0, n, alpha=0.05 / 4)), abs=0.05)


def test_equivalence_only_inside_the_margin():
    shown_in, eq_in = simulate([0.0, 0.2, -0.3], 30, sd=0.5)
    assert eq_in.mean(0).min() > 0.8                      # inside: found
    _, eq_out = simulate([1.5, -1.2, 2.0], 30, sd=0.5)
    assert eq_out.mean() <= 0.01                            # outside: essentially never


def test_tost_is_the_ninety_percent_interval_inside_the_margin():
    rng = np.random.default_rng(3)
    for _ in range(200):
        d = rng.normal(rng.uniform(-1.5, 1.5), rng.uniform(0.1, 1), size=5)
        c = paired(d, np.zeros(5), "x", scale=1.0)
        lo, hi = c.interval(0.05)
        _, pe = p_values(c.diff, c.se, c.df, 1.0)
        assert (float(pe) < 0.05) == (-1 < lo and hi < 1)


def test_holm_matches_the_textbook_example():
    adj, _ = holm(np.array([0.01, 0.04, 0.03, 0.005]))
    # sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1 -> running max 0.02, 0.03, 0.06, 0.06
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])


def test_holm_with_equivalence_counts_claims_not_hypotheses():
    # two claims; claim 0's difference p is the smallest: multiplier 2 (claims), not 4
    adj_d, adj_e = holm(np.array([0.001, 0.5]), np.array([0.9, 0.02]))
    assert adj_d[0] == pytest.approx(0.002)
    # after that claim 0 still stands (its equivalence), so 0.02 is multiplied by 2
    assert adj_e[1] == pytest.approx(0.04)


def test_seeds_needed_gives_the_power_it_promises():
    n = seeds_needed(1.0, 1.2, alpha=0.05)
    assert n is not None and power(1.0, 1.2, n) >= 0.8 > power(1.0, 1.2, n - 1)
    shown, _ = simulate([1.0], n, sd=1.2)
    assert shown.mean() == pytest.approx(0.8, abs=0.04)
    ne = seeds_needed(0.2, 0.8, equivalence=True, margin=1.0)
    _, eq = simulate([0.2], ne, sd=0.8)
    assert eq.mean() >= 0.8 - 0.03
    assert seeds_needed(0.0, 1.0) is None                  # a zero difference is never shown
    assert seeds_needed(1.5, 1.0, equivalence=True) is None


def test_verdicts_three_ways():
    f = Family(margin=1.0)
    f.add(paired([.90, .91, .92, .93, .92], [.80, .80, .81, .82, .80], "a above b"))        # +10
    f.add(paired([.90, .91, .92, .93, .92], [.90, .906, .918, .93, .921], "a above b"))     # ~0, tight
    f.add(paired([.90, .91, .92], [.90, .88, .93], "a above b"))                             # noisy
    f.add(paired([.80, .81, .82, .80, .81], [.90, .91, .92, .90, .91], "a above b"))         # opposite
    v = f.decide()
    assert [x.verdict for x in v] == [HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, DOES_NOT_HOLD]
    assert v[3].opposite and not v[1].opposite
    assert v[2].word == "inconclusive at 3 seeds" and v[2].needed is not None and v[2].needed > 3
    assert all(x.family_size == 4 for x in v)
    assert "4 comparison(s)" in f.describe() and "Holm" in f.describe()
    assert "seeds would decide it" in v[2].text()


def test_one_seed_is_inconclusive_and_untested():
    f = Family()
    f.add(paired([0.9], [0.5], "a above b"))
    f.add(paired([0.9, 0.91], [0.5, 0.52], "a above b"))
    v = f.decide()
    assert v[0].verdict == INCONCLUSIVE and f.size == 1 and "spread is unknown" in v[0].text()
    assert v[0].word == "inconclusive at 1 seed"


def test_identical_differences_are_decided_without_nan():
    f = Family()
    f.add(paired([0.9] * 8, [0.8] * 8, "a above b"))
    f.add(paired([0.9] * 8, [0.9] * 8, "a above b"))
    v = f.decide()
    assert v[0].verdict == HOLDS and v[1].verdict == DOES_NOT_HOLD


def test_identical_differences_at_few_seeds_decide_nothing():
    """Three seeds that each differ by the same image count: zero spread is not certainty. The
    sign test behind it gives p = 2/8 (difference) and 1/8 (equivalence), so both stay open."""
    c = paired([0.9] * 3, [0.8] * 3, "a above b")
    p_diff, p_equiv = p_values(c.diff, c.se, c.df, 1.0)
    assert float(p_diff) == pytest.approx(0.25)
    e = paired([0.9] * 3, [0.9] * 3, "a equal b")
    _, p_equiv = p_values(e.diff, e.se, e.df, 1.0)
    assert float(p_equiv) == pytest.approx(0.125)
    f = Family()
    f.add(c)
    f.add(e)
    assert [v.verdict for v in f.decide()] == [INCONCLUSIVE, INCONCLUSIVE]


def test_unpaired_welch_matches_scipy():
    from scipy.stats import ttest_ind

    a, b = [0.9, 0.92, 0.91, 0.95], [0.85, 0.88, 0.86]
    c = unpaired(a, b, "a above b", scale=1.0)
    p, _ = p_values(c.diff, c.se, c.df, 1.0)
    assert float(p) == pytest.approx(ttest_ind(a, b, equal_var=False).pvalue)


def test_paired_matches_scipy():
    from scipy.stats import ttest_rel

    a, b = [0.9, 0.92, 0.91, 0.95], [0.85, 0.88, 0.9, 0.91]
    c = paired(a, b, "x")
    p, _ = p_values(c.diff, c.se, c.df, 1.0)
    assert float(p) == pytest.approx(ttest_rel(a, b).pvalue)


def test_best_or_tied():
    values = {"A": {0: .95, 1: .96, 2: .95, 3: .96}, "B": {0: .90, 1: .91, 2: .90, 3: .905},
              "C": {0: .70, 1: .71, 2: .70, 3: .72}}
    order, c = best_claim(values, "b=2")
    f = Family()
    f.add(c)
    assert best_text(order, f.decide()[0], values) == "best: A"
    close = {"A": {0: .95, 1: .90, 2: .96}, "B": {0: .94, 1: .93, 2: .94}, "C": {0: .50, 1: .52, 2: .51}}
    order, c = best_claim(close, "b=2")
    f = Family()
    f.add(c)
    assert best_text(order, f.decide()[0], close) == "tied: A, B"
    # C against the top: paired p = 0.033, below alpha/m = 0.05 for the one claim but not below
    # 0.05/2 once C's own test is counted: tied (the tie errs on the side of including)
    third = {"A": dict(enumerate([.90, .92, .91, .93, .90, .92])), "B": dict(enumerate([.905, .91, .915, .92, .905, .915])),
             "C": dict(enumerate([.88, .91, .88, .925, .865, .92]))}
    order, c = best_claim(third, "b=2")
    f = Family()
    f.add(c)
    assert best_text(order, f.decide()[0], third) == "tied: A, B, C"


def test_bad_margin_is_one_clear_error():
    with pytest.raises(ValueError, match="margin"):
        Family(margin=0)


def test_exact_claims_join_the_family_and_are_adjusted_with_it():
    """A permutation p (no standard error) is Holm-adjusted with the t-tested claims: alone at
    p = 0.02 it holds; beside two claims with p near 0 it is tested at a stricter level."""
    from normlab.report.stats import exact

    f = Family()
    f.add(exact(3.0, 0.02, 999, "a keeps more than random", method="permutation", unit="random drops"))
    v = f.decide()[0]
    assert v.verdict == HOLDS and v.p_diff_adj == pytest.approx(0.02) and "permutation" in v.text()
    f = Family()
    f.add(exact(3.0, 0.03, 999, "a keeps more than random", method="permutation", unit="random drops"))
    f.add(paired([0.9] * 8, [0.8] * 8, "b above c"))
    f.add(paired([0.95, 0.93, 0.94, 0.96], [0.80, 0.81, 0.79, 0.82], "d above e"))
    v = f.decide()
    assert v[0].p_diff_adj > 0.03 and v[1].verdict == HOLDS
    assert v[0].verdict == INCONCLUSIVE and "would not decide it" in v[0].text() and v[0].word == "inconclusive"
    assert "exact one-sided p-value" in f.describe() and math.isnan(v[0].p_equiv_adj) is False
    with pytest.raises(ValueError, match="p=0"):
        exact(1.0, 0.0, 10, "x", method="m", unit="u")
