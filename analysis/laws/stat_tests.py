"""The few tests and tail probabilities the registry laws' checks use, on scipy.special alone.

scipy.stats takes ~1 s of CPU to import on the 2-core machine (it pulls in scipy.optimize, sparse,
spatial, ...), a tenth of a `python -m analysis.fit --law` run; these are its formulas (scipy 1.17:
spearmanr, normaltest = skewtest + kurtosistest, norm, chi2) and agree with it to rounding
(tests/test_analysis_laws.py checks them against scipy.stats).
"""
from __future__ import annotations

import numpy as np
import scipy.special


def norm_isf(q):
    return -scipy.special.ndtri(q)


def norm_pdf(x):
    return np.exp(-np.square(x) / 2.0) / np.sqrt(2 * np.pi)


def chi2_sf(x, df):
    return scipy.special.chdtrc(df, x)


def ranks(x) -> np.ndarray:
    """1-based ranks, ties given their average rank (scipy.stats.rankdata's default)."""
    x = np.asarray(x, float)
    order = np.argsort(x, kind="stable")
    y = x[order]
    first = np.concatenate([[True], y[1:] != y[:-1]])
    start = np.flatnonzero(first)
    counts = np.diff(np.append(start, len(y)))
    out = np.empty(len(x))
    out[order] = np.repeat(start + 1 + (counts - 1) / 2, counts)
    return out


def spearman(x, y) -> tuple[float, float]:
    """Spearman's rank correlation and its two-sided p-value (Student t with n - 2 dof); NaN where
    either input is constant or not finite."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan")
    rs = np.corrcoef(ranks(x), ranks(y))[1, 0]
    dof = len(x) - 2
    with np.errstate(divide="ignore"):
        t = rs * np.sqrt(np.clip(dof / ((rs + 1.0) * (1.0 - rs)), 0, None))
    return float(rs), float(2 * scipy.special.stdtr(dof, -np.abs(t)))


def normal_test(a) -> float:
    """D'Agostino-Pearson's p-value: skewness and kurtosis z scores, squared and summed, against
    chi^2 with 2 dof (needs >= 8 values; NaN when they are constant)."""
    a = np.asarray(a, float)
    n = float(len(a))
    d = a - np.mean(a)
    m2, m3, m4 = np.mean(d**2), np.mean(d**3), np.mean(d**4)
    if n < 8 or m2 <= (np.finfo(float).eps * np.mean(a)) ** 2:
        return float("nan")
    # skewtest (D'Agostino 1970)
    y = m3 / m2**1.5 * np.sqrt(((n + 1) * (n + 3)) / (6.0 * (n - 2)))
    beta2 = 3.0 * (n**2 + 27 * n - 70) * (n + 1) * (n + 3) / ((n - 2.0) * (n + 5) * (n + 7) * (n + 9))
    w2 = -1 + np.sqrt(2 * (beta2 - 1))
    alpha = np.sqrt(2.0 / (w2 - 1))
    y = 1.0 if y == 0 else y
    zs = 1 / np.sqrt(0.5 * np.log(w2)) * np.log(y / alpha + np.sqrt((y / alpha) ** 2 + 1))
    # kurtosistest (Anscombe & Glynn 1983)
    b2 = m4 / m2**2
    x = (b2 - 3.0 * (n - 1) / (n + 1)) / np.sqrt(24.0 * n * (n - 2) * (n - 3) / ((n + 1) * (n + 1.0) * (n + 3) * (n + 5)))
    sqrtbeta1 = 6.0 * (n * n - 5 * n + 2) / ((n + 7) * (n + 9)) * np.sqrt((6.0 * (n + 3) * (n + 5)) / (n * (n - 2) * (n - 3)))
    big_a = 6.0 + 8.0 / sqrtbeta1 * (2.0 / sqrtbeta1 + np.sqrt(1 + 4.0 / sqrtbeta1**2))
    denom = 1 + x * np.sqrt(2 / (big_a - 4.0))
    if denom == 0:
        return float("nan")
    term2 = np.sign(denom) * ((1 - 2.0 / big_a) / np.abs(denom)) ** (1 / 3)
    zk = (1 - 2 / (9.0 * big_a) - term2) / np.sqrt(2 / (9.0 * big_a))
    return float(chi2_sf(zs * zs + zk * zk, 2.0))
