"""m1_harness.analysis.stats against independent closed-form computations (no statsmodels here)."""

import math
from fractions import Fraction

import numpy as np
import pytest

from m1_harness.analysis import stats

Z95 = 1.959963984540054  # Phi^-1(0.975)


def wilson_closed_form(k, n, z=Z95):
    # Wilson (1927): (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    p = k / n
    a = p + z * z / (2 * n)
    b = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    d = 1 + z * z / n
    return (a - b) / d, (a + b) / d


@pytest.mark.parametrize("k,n", [(13, 20), (0, 10), (10, 10), (1, 3), (732, 1273), (50, 100)])
def test_wilson_matches_closed_form(k, n):
    lo, hi = stats.wilson_interval(k, n)
    elo, ehi = wilson_closed_form(k, n)
    assert lo == pytest.approx(max(0.0, elo), abs=1e-12)
    assert hi == pytest.approx(min(1.0, ehi), abs=1e-12)


def test_wilson_hand_values():
    # worked by hand: p = 0.65, n = 20 -> [0.43287, 0.81882]; p = 0.5, n = 100 -> [0.40383, 0.59617]
    assert stats.wilson_interval(13, 20) == pytest.approx((0.43287, 0.81882), abs=5e-5)
    assert stats.wilson_interval(50, 100) == pytest.approx((0.40383, 0.59617), abs=5e-5)
    assert stats.wilson_interval(0, 10)[0] == 0.0
    assert all(math.isnan(v) for v in stats.wilson_interval(0, 0))


def test_wilson_other_confidence():
    z90 = 1.6448536269514722
    assert stats.wilson_interval(7, 30, confidence=0.90) == pytest.approx(wilson_closed_form(7, 30, z90), abs=1e-12)


def test_bootstrap_seeded_and_close_to_normal_theory():
    x = [1.0] * 60 + [0.0] * 40
    a = stats.bootstrap_interval(x, iters=4000, seed=3)
    b = stats.bootstrap_interval(x, iters=4000, seed=3)
    assert a == b
    # the bootstrap of a mean of 100 Bernoulli(0.6) is close to the Wald interval 0.6 +- 1.96*0.049
    half = Z95 * math.sqrt(0.6 * 0.4 / 100)
    assert a[0] == pytest.approx(0.6 - half, abs=0.02)
    assert a[1] == pytest.approx(0.6 + half, abs=0.02)


def test_proportion_interval_dispatch():
    assert stats.proportion_interval(0.65, 20) == stats.wilson_interval(13, 20)
    boot = stats.proportion_interval(0.65, 20, "bootstrap", iters=2000, seed=1)
    assert boot == stats.bootstrap_interval([1.0] * 13 + [0.0] * 7, iters=2000, seed=1)
    with pytest.raises(ValueError):
        stats.proportion_interval(0.5, 10, "jeffreys")


def test_ols_and_band_against_closed_form():
    x = [9.0, 10.0, 11.0, 12.0, 13.0]  # log2 of 512..8192
    y = [55.0, 65.0, 75.0, 80.0, 77.0]
    fit = stats.ols_fit(x, y)
    # closed form by hand: xbar = 11, ybar = 70.4, Sxx = 10, Sxy = 30.8 + 5.4 + 9.6 + 13.2 = 59
    # -> slope 5.9, intercept 70.4 - 64.9 = 5.5
    assert fit.slope == pytest.approx(5.9)
    assert fit.intercept == pytest.approx(5.5)
    resid = [yi - (5.5 + 5.9 * xi) for xi, yi in zip(x, y)]
    s = math.sqrt(sum(r * r for r in resid) / 3)
    assert fit.s == pytest.approx(s)
    t975_df3 = 3.182446305284263  # Student t quantile, 3 degrees of freedom
    lo, hi = fit.band([11.0, 13.0])
    half11 = t975_df3 * s * math.sqrt(1 / 5)
    half13 = t975_df3 * s * math.sqrt(1 / 5 + 4 / 10)
    assert lo == pytest.approx([70.4 - half11, 5.5 + 5.9 * 13 - half13])
    assert hi == pytest.approx([70.4 + half11, 5.5 + 5.9 * 13 + half13])
    # the band is narrowest at the mean of x
    xs = np.linspace(9, 13, 41)
    lo, hi = fit.band(xs)
    assert np.argmin(hi - lo) == 20


def test_ols_two_points_has_no_band_and_rejects_degenerate():
    fit = stats.ols_fit([1, 2], [3, 5])
    assert (fit.slope, fit.intercept) == pytest.approx((2.0, 1.0))
    assert np.isnan(fit.band([1.5])[0]).all()
    with pytest.raises(ValueError):
        stats.ols_fit([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError):
        stats.ols_fit([1], [1])


def exact_mcnemar_closed_form(b, c):
    # two-sided exact binomial: 2 * sum_{i<=min(b,c)} C(b+c, i) / 2^(b+c), capped at 1
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(Fraction(math.comb(n, i), 2**n) for i in range(min(b, c) + 1))
    return float(min(Fraction(1), 2 * tail))


@pytest.mark.parametrize("b,c", [(0, 0), (1, 0), (5, 1), (2, 9), (10, 10), (0, 12), (30, 12)])
def test_mcnemar_exact_against_binomial_sum(b, c):
    # build paired outcomes with b items right only in A, c only in B, plus concordant items
    a = [1] * b + [0] * c + [1] * 7 + [0] * 4
    bb = [0] * b + [1] * c + [1] * 7 + [0] * 4
    res = stats.mcnemar_exact(a, bb)
    assert (res.a_only, res.b_only, res.n) == (b, c, b + c + 11)
    assert res.p_value == pytest.approx(exact_mcnemar_closed_form(b, c), rel=1e-12)


def test_mcnemar_hand_value_and_dict_pairing():
    # b=5, c=1: p = 2 * (1 + 6) / 64 = 0.21875
    a = {i: 1 for i in range(6)} | {6: 0, "extra": 1}
    b = {i: 0 for i in range(5)} | {5: 1, 6: 1}
    res = stats.mcnemar_exact(a, b)
    assert res.n == 7  # "extra" is not paired
    assert (res.a_only, res.b_only) == (5, 1)
    assert res.p_value == pytest.approx(0.21875)
    with pytest.raises(ValueError):
        stats.mcnemar_exact([1, 0], [1])


def test_wilson_interval_holds_a_perfect_or_zero_score():
    """At 10/10 rounding once put the upper bound at 0.9999999999999999 < 1, and Figure 1 crashed."""
    from m1_harness.analysis.stats import wilson_interval

    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0
    lo, hi = wilson_interval(10, 10)
    assert lo == pytest.approx(0.7224672001371107)
