"""Statistics for accuracy curves: intervals for a proportion, an OLS trend with its confidence
band, and a paired test between two settings on the same items.

All functions take plain numbers or sequences and return plain floats (numpy/scipy inside).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

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
