"""Chinchilla Approach 1 (Hoffmann et al. 2022, Sec. 3.1): the training-curve envelope.

Each run's curve is interpolated (in log FLOPs) at log-spaced FLOP values; at each value the run
with the lowest loss gives N_opt(C) and D_opt(C) (its tokens at that point); then N_opt ∝ C^a and
D_opt ∝ C^b are fitted in log-log space. Points where the winner is the smallest or largest model
covering that C are left out by default: there the envelope is set by the grid's edge, not by the
trade-off.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from analysis.approach2 import PowerLaw, fit_power_law
from analysis.records import InputError
from analysis.tables import Curves


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
