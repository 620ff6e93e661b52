"""Chinchilla Approach 1 (Hoffmann et al. 2022, Sec. 3.1): the training-curve envelope.

Each run's curve is interpolated (in log FLOPs) at log-spaced FLOP values; at each value the run
with the lowest loss gives N_opt(C) and D_opt(C) (its tokens at that point); then N_opt ∝ C^a and
D_opt ∝ C^b are fitted in log-log space. Points where the winner is the smallest or largest model
covering that C are left out by default: there the envelope is set by the grid's edge, not by the
trade-off.

Curves: the training loss logged at every step is the curve with enough points per run (an eval
every 500 steps gives 1-3), but one batch of ~2k tokens swings it by +-0.2 nats. `smooth_curves`
therefore replaces each point by a local linear fit of log loss on log tokens over a window of
+-dex/2 decades around it (a moving window in log step). A local LINEAR fit rather than a window
mean is the bias correction: a mean over a window on a falling curve lags it (biased high at the
start and, where the window is one-sided at the ends, by slope x half-width), while a line through
the window is unbiased wherever the curve is locally linear in log-log, as power-law curves are.
(An EMA over steps would lag by its time constant and need a start-up correction like Adam's.)
Caveat as in the paper: a point inside a cosine run is not the loss of a run cooled down at that
length, so the envelope is biased toward longer runs unless runs have several schedule lengths.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from analysis.laws.approach2 import PowerLaw, fit_power_law
from analysis.records import InputError
from analysis.tables.tables import Curves


@dataclasses.dataclass(frozen=True)
class Approach1Result:
    C: np.ndarray  # FLOP values where the envelope is taken
    N_opt: np.ndarray
    D_opt: np.ndarray
    loss: np.ndarray
    used: np.ndarray  # bool: interior winner, entered the power-law fit
    n_law: PowerLaw
    d_law: PowerLaw


def _smooth(y, window: int):
    if window <= 1 or len(y) < window:
        return y
    kernel = np.ones(window) / window
    pad = window // 2
    return np.convolve(np.pad(y, (pad, window - 1 - pad), mode="edge"), kernel, mode="valid")


def _local_linear(x, y, half: float) -> np.ndarray:
    """y at each x from a least-squares line through the points within +-half of it (x sorted)."""
    lo = np.searchsorted(x, x - half, "left")
    hi = np.searchsorted(x, x + half, "right")
    cs = lambda v: np.concatenate([[0.0], np.cumsum(v)])
    s1, sx, sy, sxx, sxy = (cs(v) for v in (np.ones_like(x), x, y, x * x, x * y))
    n, mx, my = hi - lo, (sx[hi] - sx[lo]), (sy[hi] - sy[lo])
    vxx = (sxx[hi] - sxx[lo]) - mx * mx / n
    vxy = (sxy[hi] - sxy[lo]) - mx * my / n
    slope = np.where(vxx > 1e-12 * np.maximum(n, 1), vxy / np.where(vxx > 0, vxx, 1.0), 0.0)
    return my / n + slope * (x - mx / n)


def smooth_curves(curves: Curves, dex: float) -> Curves:
    """Each run's loss smoothed by a local linear fit in (log10 tokens, log loss) over +-dex/2."""
    if dex <= 0:
        return curves
    loss = curves.loss.copy()
    for r in np.unique(curves.run_id):
        idx = np.flatnonzero(curves.run_id == r)
        idx = idx[np.argsort(curves.tokens[idx], kind="stable")]
        x, y = np.log10(curves.tokens[idx]), np.log(curves.loss[idx])
        loss[idx] = np.exp(_local_linear(x, y, dex / 2))
    return Curves(curves.run_id, curves.N, curves.tokens, curves.flops, loss)


def points_per_run(curves: Curves) -> int:
    """Median number of logged points per run."""
    return int(np.median(np.unique(curves.run_id, return_counts=True)[1]))


def fit_approach1(curves: Curves, n_points: int = 1500, smooth: int = 1, min_runs: int = 2,
                  drop_edges: bool = True) -> Approach1Result:
    runs = np.unique(curves.run_id)
    if len(runs) < 2:
        raise InputError(f"Approach 1 needs curves of at least 2 runs, found {len(runs)}")
    lo, hi = np.log(curves.flops.min()), np.log(curves.flops.max())
    grid = np.linspace(lo, hi, n_points)
    loss = np.full((len(runs), n_points), np.inf)
    tok = np.full((len(runs), n_points), np.nan)
    n_of = np.zeros(len(runs))
    for i, r in enumerate(runs):
        m = curves.run_id == r
        order = np.argsort(curves.flops[m])
        lf, ll = np.log(curves.flops[m][order]), _smooth(np.log(curves.loss[m][order]), smooth)
        inside = (grid >= lf[0]) & (grid <= lf[-1])
        loss[i, inside] = np.exp(np.interp(grid[inside], lf, ll))
        tok[i, inside] = np.exp(np.interp(grid[inside], lf, np.log(curves.tokens[m][order])))
        n_of[i] = curves.N[m][0]
    covered = np.isfinite(loss)
    ok = covered.sum(0) >= min_runs
    win = np.argmin(loss, 0)
    cols = np.arange(n_points)
    n_win = n_of[win]
    n_min = np.where(covered, n_of[:, None], np.inf).min(0)
    n_max = np.where(covered, n_of[:, None], -np.inf).max(0)
    interior = (n_win > n_min) & (n_win < n_max)
    used = ok & (interior if drop_edges else True)
    if len(np.unique(n_win[used])) < 2:
        raise InputError("Approach 1: the envelope has fewer than 2 distinct optimal model sizes "
                         "inside the grid: add model sizes or pass --include-edges")
    c = np.exp(grid)
    n_law = fit_power_law(c[used], n_win[used], np.ones(used.sum()))
    d_law = fit_power_law(c[used], tok[win, cols][used], np.ones(used.sum()))
    return Approach1Result(c[ok], n_win[ok], tok[win, cols][ok], loss[win, cols][ok], used[ok], n_law, d_law)
