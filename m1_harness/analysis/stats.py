"""Statistics for accuracy curves: intervals for a proportion, an OLS trend with its confidence
band, and a paired test between two settings on the same items.

All functions take plain numbers or sequences and return plain floats (numpy/scipy inside).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _st


def _z(confidence: float) -> float:
    return float(_st.norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    ``successes`` may be fractional (acc * n rounded by lm-eval); returns ``(nan, nan)`` for n == 0.
    """
    if n <= 0:
        return (math.nan, math.nan)
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # the interval always holds p: at p = 1 (or 0) rounding put the bound a hair inside it, which made
    # a perfect score's error bar negative (and matplotlib refuse the figure)
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def bootstrap_interval(
    outcomes: Sequence[float],
    confidence: float = 0.95,
    iters: int = 10000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of per-item outcomes (0/1 or scores).

    Seeded: the same outcomes, iters and seed give the same interval.
    """
    x = np.asarray(outcomes, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = np.empty(iters)
    chunk = max(1, min(iters, 2_000_000 // max(1, x.size)))
    done = 0
    while done < iters:
        m = min(chunk, iters - done)
        idx = rng.integers(0, x.size, size=(m, x.size))
        means[done : done + m] = x[idx].mean(axis=1)
        done += m
    alpha = 1.0 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return (float(lo), float(hi))


def binary_outcomes(acc: float, n: int) -> list[float]:
    """The 0/1 outcomes implied by an accuracy over n binary items (for bootstrap without samples)."""
    k = int(round(acc * n))
    return [1.0] * k + [0.0] * (n - k)


def proportion_interval(
    acc: float,
    n: int,
    method: str = "wilson",
    outcomes: Sequence[float] | None = None,
    confidence: float = 0.95,
    iters: int = 10000,
    seed: int = 0,
) -> tuple[float, float]:
    """Interval for an accuracy: ``wilson`` (default) or ``bootstrap`` (per-item outcomes when given)."""
    if method == "wilson":
        return wilson_interval(acc * n, n, confidence)
    if method == "bootstrap":
        data = list(outcomes) if outcomes else binary_outcomes(acc, n)
        return bootstrap_interval(data, confidence, iters, seed)
    raise ValueError(f"unknown interval method {method!r} (wilson or bootstrap)")


@dataclass(frozen=True)
class OLSFit:
    """y = intercept + slope * x, fitted on n points; ``band(x)`` is the t-based confidence band
    for the mean response: yhat +- t(1 - alpha/2, n-2) * s * sqrt(1/n + (x - xbar)^2 / Sxx)."""

    slope: float
    intercept: float
    n: int
    x_mean: float
    sxx: float
    s: float  # residual standard error, sqrt(SSE / (n - 2)); nan when n < 3
    confidence: float = 0.95

    def predict(self, x):
        return self.intercept + self.slope * np.asarray(x, dtype=float)

    def band(self, x) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=float)
        yhat = self.predict(x)
        if self.n < 3 or not np.isfinite(self.s):
            nan = np.full_like(yhat, np.nan)
            return nan, nan
        t = float(_st.t.ppf(0.5 + self.confidence / 2.0, self.n - 2))
        half = t * self.s * np.sqrt(1.0 / self.n + (x - self.x_mean) ** 2 / self.sxx)
        return yhat - half, yhat + half


def ols_fit(x: Sequence[float], y: Sequence[float], confidence: float = 0.95) -> OLSFit:
    """Ordinary least squares of y on x (at least two distinct x values)."""
    xa = np.asarray(x, dtype=float)
    ya = np.asarray(y, dtype=float)
    if xa.size != ya.size or xa.size < 2:
        raise ValueError("ols_fit needs at least two (x, y) points")
    xm, ym = xa.mean(), ya.mean()
    sxx = float(((xa - xm) ** 2).sum())
    if sxx == 0:
        raise ValueError("ols_fit needs at least two distinct x values")
    slope = float(((xa - xm) * (ya - ym)).sum() / sxx)
    intercept = float(ym - slope * xm)
    n = int(xa.size)
    if n >= 3:
        resid = ya - (intercept + slope * xa)
        s = float(math.sqrt((resid**2).sum() / (n - 2)))
    else:
        s = math.nan
    return OLSFit(slope, intercept, n, float(xm), sxx, s, confidence)


@dataclass(frozen=True)
class McNemarResult:
    """Paired comparison of settings A and B on the same items.

    ``a_only``: items A got right and B wrong; ``b_only``: the reverse; ``p_value``: two-sided exact
    binomial test of a_only against Binomial(a_only + b_only, 1/2)."""

    n: int
    a_only: int
    b_only: int
    acc_a: float
    acc_b: float
    p_value: float


def mcnemar_exact(a: dict | Sequence, b: dict | Sequence) -> McNemarResult:
    """McNemar's exact test on paired 0/1 outcomes.

    ``a`` and ``b`` are either sequences of the same length or dicts keyed by item id (only the
    items present in both are compared)."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) & set(b), key=str)
        pa = [bool(a[k]) for k in keys]
        pb = [bool(b[k]) for k in keys]
    else:
        pa, pb = [bool(v) for v in a], [bool(v) for v in b]
        if len(pa) != len(pb):
            raise ValueError("paired outcomes must have the same length")
    n = len(pa)
    a_only = sum(1 for x, y in zip(pa, pb) if x and not y)
    b_only = sum(1 for x, y in zip(pa, pb) if y and not x)
    d = a_only + b_only
    p = 1.0 if d == 0 else min(1.0, 2.0 * float(_st.binom.cdf(min(a_only, b_only), d, 0.5)))
    acc_a = sum(pa) / n if n else math.nan
    acc_b = sum(pb) / n if n else math.nan
    return McNemarResult(n, a_only, b_only, acc_a, acc_b, p)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values, in the input order.

    Sorted ascending, the i-th smallest (0-based) becomes ``max_{j<=i} min(1, (m - j) * p_(j))``:
    it controls the family-wise error rate without assuming the tests independent."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [math.nan] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


# -- several samples per item: pass@k, maj@k, mean@k ------------------------------------------------
def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k of one item (Chen et al. 2021): ``1 - C(n-c, k) / C(n, k)``, the chance that
    k of the n samples drawn, taken without replacement, hold at least one of the c correct ones."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def majority_vote(answers: Sequence) -> object | None:
    """The most frequent answer; None stands for an unextractable one, which does not vote (None when
    no answer voted). Ties go to the tied answer that occurs first in sample order, so the vote is
    the same on every run: ``[B, A, A, B]`` gives B."""
    counts: dict = {}
    for a in answers:
        if a is not None:
            counts[a] = counts.get(a, 0) + 1
    if not counts:
        return None
    top = max(counts.values())
    return next(a for a in answers if a is not None and counts[a] == top)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """95% interval of the mean of per-item values in [0, 1] (pass@k, mean@k of each item).

    Items are independent draws and the values are bounded, so the mean is close to normal: a t
    interval (mean +- t(n-1) * s / sqrt(n), lm-eval's own stderr, clipped to [0, 1]) uses the spread
    the values really have, which shrinks as mean@k averages more samples per item; Wilson's
    interval would assume 0/1 outcomes and overstate it. When every item has the same value (s = 0)
    the t interval says "no uncertainty"; there the Wilson interval over the items is used instead,
    which bounds it (values in [0, 1] with mean p have variance at most p(1 - p)). Deterministic
    and instant, unlike a bootstrap, for tables of many (setting, k) rows."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return (math.nan, math.nan)
    m = float(x.mean())
    s = float(x.std(ddof=1)) if n > 1 else 0.0
    if s == 0.0:
        return wilson_interval(m * n, n, confidence)
    half = float(_st.t.ppf(0.5 + confidence / 2.0, n - 1)) * s / math.sqrt(n)
    return (max(0.0, m - half), min(1.0, m + half))


SAMPLE_METRICS = (
    "maj_at_k",
    "maj_ci_low",
    "maj_ci_high",
    "pass_at_k",
    "pass_ci_low",
    "pass_ci_high",
    "mean_at_k",
    "mean_ci_low",
    "mean_ci_high",
)


def sample_metrics(items: Sequence[Sequence[tuple]], k: int, confidence: float = 0.95) -> dict:
    """maj@k, pass@k and mean@k over items, each with its 95% interval (keys ``SAMPLE_METRICS``).

    ``items``: per item, its samples in sample order as ``(answer, correct)`` (answer None when none
    could be extracted). maj@k votes over the first k samples (``majority_vote``; an item whose k
    samples all lack an answer counts as wrong) and gets Wilson's interval over the items (it is
    0/1 per item); mean@k is the mean correctness of the first k samples; pass@k uses all n
    samples drawn for the item (the unbiased estimator needs them); both get ``mean_interval``."""
    if not items:
        raise ValueError("sample_metrics needs at least one item")
    short = min(len(s) for s in items)
    if not 0 < k <= short:
        raise ValueError(f"k={k} needs 1 <= k <= the samples of every item (fewest: {short})")
    maj, pas, mean = [], [], []
    for samples in items:
        first = samples[:k]
        voted = majority_vote([a for a, _ in first])
        maj.append(float(voted is not None and next(bool(c) for a, c in first if a == voted)))
        pas.append(pass_at_k(len(samples), sum(bool(c) for _, c in samples), k))
        mean.append(sum(bool(c) for _, c in first) / k)
    n = len(items)
    out = {"maj_at_k": sum(maj) / n}
    out["maj_ci_low"], out["maj_ci_high"] = wilson_interval(sum(maj), n, confidence)
    for name, values in (("pass", pas), ("mean", mean)):
        out[f"{name}_at_k"] = sum(values) / n
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = mean_interval(values, confidence)
    return out
