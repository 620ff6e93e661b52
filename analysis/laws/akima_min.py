"""The Akima vertex of many profiles at once, evaluating only where each minimum can be.

`fine[np.argmin(Akima1DInterpolator(ux, means, axis=0)(fine), 0)]` on a 2,001-point fine grid is
what approach2.vertex_gaps computes for each of 2,000 null draws per budget: 4 million cubic
evaluations per budget, ~40% of a simulated study once Approach 2's resamples were batched
(issue 17). The same index comes from far fewer: each segment's cubic has a continuous minimum
(at an end or a critical point) that no fine point in it can undercut, so only segments whose
minimum lies within a rounding margin of the best fine value found need their fine points
evaluated, by the same Horner sum scipy's PPoly evaluates (so the values, and the first-occurrence
tie-break of argmin, are scipy's).
"""
from __future__ import annotations

import numpy as np

FINE_POINTS = 2001
MARGIN = 1e-9  # relative: far above rounding, so a segment the bound rules out cannot hold the minimum


def _horner(c, s):
    """scipy's evaluate_poly1 (ascending powers, z *= s): c (4, k) at offsets s (n,) -> (n, k)."""
    s = s[:, None]
    res = 0.0 + c[3][None]
    res = res + c[2][None] * s
    z = s * s
    res = res + c[1][None] * z
    z = z * s
    return res + c[0][None] * z


def _lower_bounds(c, h):
    """Each segment's minimum over [0, h] (m x B): ends and interior critical points of the cubic."""
    a, b, cc, d = c
    hh = h[:, None]
    ends = np.minimum(d, ((a * hh + b) * hh + cc) * hh + d)
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = np.sqrt(4 * b * b - 12 * a * cc)  # NaN where no real critical point
        roots = [(-2 * b + disc) / (6 * a), (-2 * b - disc) / (6 * a), np.where(b != 0, -cc / (2 * b), np.nan)]
        for r in roots:  # the linear root only matters where a == 0; elsewhere it is any point, harmless
            r = np.where(np.isfinite(r), np.clip(r, 0.0, hh), 0.0)
            ends = np.fmin(ends, ((a * r + b) * r + cc) * r + d)
    return ends


def akima_argmin(ux, means, points: int = FINE_POINTS) -> np.ndarray:
    """fine[np.argmin(Akima1DInterpolator(ux, means, axis=0)(fine), 0)] for every column of means
    (len(ux) x B), fine = np.linspace(ux[0], ux[-1], points)."""
    import scipy.interpolate  # here: ~0.5 s to import, and `--law` fits reach this module but never call it

    ip = scipy.interpolate.Akima1DInterpolator(ux, means, axis=0)
    fine = np.linspace(ux[0], ux[-1], points)
    c = ip.c.reshape(4, len(ip.x) - 1, -1)
    if not np.all(np.isfinite(c)):  # NaN or inf: the plain evaluation and its argmin semantics
        return fine[np.argmin(ip(fine), 0)]
    seg = np.clip(np.searchsorted(ip.x, fine, "right") - 1, 0, len(ip.x) - 2)
    lower = _lower_bounds(c, np.diff(ip.x))
    cols = np.arange(c.shape[2])
    best_val, best_idx = np.full(len(cols), np.inf), np.full(len(cols), len(fine))

    def visit(s, which):
        pts = np.nonzero(seg == s)[0]
        if not len(pts) or not len(which):
            return
        vals = _horner(c[:, s, which], fine[pts] - ip.x[s])
        j = np.argmin(vals, 0)
        v, idx = vals[j, np.arange(len(which))], pts[j]
        win = (v < best_val[which]) | ((v == best_val[which]) & (idx < best_idx[which]))
        best_val[which[win]], best_idx[which[win]] = v[win], idx[win]

    first = np.argmin(lower, 0)
    for s in range(c.shape[1]):
        visit(s, cols[first == s])
    cand = lower <= (best_val + MARGIN * np.maximum(1.0, np.abs(best_val)))[None]
    for s in range(c.shape[1]):
        visit(s, cols[cand[s] & (first != s)])
    return fine[best_idx]
