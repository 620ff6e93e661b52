"""Approach 2's parabola fit of many loss vectors on one design at once (resamples, simulated studies).

`fit_approach2(runs.with_loss(row), "parabola", include_edges, sigma)` for every row of a (B x runs)
loss array, with the same numbers: per budget one weighted least-squares solve for all rows (the
design matrix is shared; rows whose weights are not proportional to the first row's are solved one
by one), vertices, delta-method standard errors and edge flags as arrays, then each row's two power
laws and its misspecification trend fitted as `fit_approach2` and `misspec.trend` fit them. The
per-row refits spent their time in numpy's per-call overhead and in the Akima vertex, which a
parabola fit computes but never uses (issue 17: ~40% of a simulated study).
A row that `fit_approach2` would fail on gets the same exception (its `error`), never a value.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from analysis.laws import approach2
from analysis.records import RESAMPLE_ERRORS, InputError
from analysis.tables.tables import Runs


@dataclasses.dataclass(frozen=True)
class RowFit:
    """What the resamples read from one row's Approach2Result."""
    n_law: approach2.PowerLaw
    d_law: approach2.PowerLaw
    trend: float  # misspec.trend of the row's fit


@dataclasses.dataclass(frozen=True)
class Budget:
    """One budget's arrays over the rows: the parabola's outcome as budget_optimum computes it."""
    C: float
    n_runs: int
    n_opt: np.ndarray  # (B,) N at the vertex (or the lowest run where the parabola opens downward)
    d_opt: np.ndarray
    se: np.ndarray  # (B,) log10_N_se
    usable: np.ndarray  # (B,) convex and not at the edge


def _weights(sigma, m, order, b: int):
    """Per-row weights 1/sigma of the budget's runs (sorted), (B x n); None when unweighted."""
    if sigma is None:
        return None
    s = np.asarray(sigma, float)
    s = s[m][order] if s.ndim == 1 else s[:, m][:, order]
    return np.broadcast_to(1.0 / s, (b, int(m.sum()))) if s.ndim == 1 else 1.0 / s


def _coeffs(x, Y, W):
    """np.polyfit(x, y, 2, w=w) of every row (B x 3, highest power first)."""
    if W is None or np.allclose(W / W[:, :1], W[0] / W[0, 0], rtol=1e-14, atol=0):
        return np.polyfit(x, Y.T, 2, w=None if W is None else W[0]).T
    return np.array([np.polyfit(x, y, 2, w=w) for y, w in zip(Y, W)])


def _vertex_se(x, Y, W, c, sigma_known: bool):
    """_parabola's standard error of the vertex for every (convex) row."""
    n = len(x)
    w = np.ones_like(Y) if W is None else W
    resid = (((c[:, :1] * x + c[:, 1:2]) * x + c[:, 2:]) - Y) * w  # np.polyval's Horner order
    dof = n - 3
    chi2 = np.sum(resid * resid, 1) / dof if dof > 0 else np.full(len(Y), np.nan)
    scale = np.maximum(1.0, chi2) if sigma_known and dof > 0 else (np.ones(len(Y)) if sigma_known else chi2)
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.all(w == w[:1]):  # one weighting (the usual case): one inverse, as _parabola computes it
            X = np.vander(x, 3) * w[0][:, None]
            cov = _inv((X.T @ X)[None])[0][None] * scale[:, None, None]
        else:
            X = np.vander(x, 3)[None] * w[:, :, None]
            cov = _inv(np.einsum("bnk,bnl->bkl", X, X)) * scale[:, None, None]
        g = np.stack([c[:, 1] / (2 * c[:, 0] ** 2), -1 / (2 * c[:, 0]), np.zeros(len(c))], 1)
        se = np.sqrt(np.einsum("bk,bkl,bl->b", g, cov, g))
    return np.where(np.isfinite(scale), se, np.nan)


def _inv(a):
    """np.linalg.inv of each matrix; a singular one gives NaN (_parabola: no standard error)."""
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        out = np.full_like(a, np.nan)
        for i, m in enumerate(a):
            try:
                out[i] = np.linalg.inv(m)
            except np.linalg.LinAlgError:
                pass
        return out


def budget_arrays(runs: Runs, L, sigma, c: float) -> Budget:
    """approach2.budget_optimum (parabola) of budget c for every row of L (B x runs)."""
    m = runs.budget == c
    log_n = np.log10(runs.N[m])
    order = np.argsort(log_n)
    x = np.asarray(log_n, float)[order]
    lf = np.log10(runs.flops_per_token()[m])[order]
    if len(x) < approach2.MIN_RUNS_PER_BUDGET or len(np.unique(x)) < approach2.MIN_RUNS_PER_BUDGET:
        # the same message as the per-row fit: run it once on the first row
        approach2.budget_optimum(log_n, np.log10(runs.D[m]), L[0, m], c, "parabola", None,
                                 np.log10(runs.flops_per_token()[m]))
    Y = L[:, m][:, order]
    W = _weights(sigma, m, order, len(L))
    coeffs = _coeffs(x, Y, W)
    convex = coeffs[:, 0] > 0
    first_low = np.argmin(Y, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        xv = np.where(convex, -coeffs[:, 1] / (2 * coeffs[:, 0]), x[first_low])
    se = np.where(convex, _vertex_se(x, Y, W, coeffs, sigma is not None), np.nan)
    at_edge = (xv <= x[0]) | (xv >= x[-1]) | (first_low == 0) | (first_low == len(x) - 1)
    with np.errstate(over="ignore", under="ignore"):  # as budget_optimum: 0 or inf, never an OverflowError
        d_opt = c / np.power(10.0, interp_log_many(xv, x, lf))
        n_opt = np.power(10.0, xv)
    return Budget(float(c), len(x), n_opt, d_opt, se, convex & ~at_edge)


def interp_log_many(xq, x, y) -> np.ndarray:
    """approach2.interp_log at every point of xq, by the same arithmetic."""
    ux, inv = np.unique(x, return_inverse=True)
    uy = np.bincount(inv, y) / np.bincount(inv)
    xq = np.asarray(xq, float)
    if len(ux) == 1:
        return np.full(xq.shape, uy[0])
    lo = uy[0] + (uy[1] - uy[0]) / (ux[1] - ux[0]) * (xq - ux[0])
    hi = uy[-2] + (uy[-1] - uy[-2]) / (ux[-1] - ux[-2]) * (xq - ux[-2])
    with np.errstate(invalid="ignore"):
        return np.where(xq < ux[0], lo, np.where(xq > ux[-1], hi, np.interp(xq, ux, uy)))


def fit_rows(runs: Runs, L, sigma=None, include_edges: bool = False) -> list:
    """[RowFit or the exception fit_approach2 raises] for every row of L (B x runs). `sigma`: the
    per-run loss std (runs,), one per row (B x runs), or None (unweighted), as fit_approach2's."""
    from analysis.diagnostics import misspec  # misspec imports nothing of this module
    L = np.atleast_2d(np.asarray(L, float))
    try:
        per = [budget_arrays(runs, L, sigma, c) for c in runs.budgets()]
    except InputError as e:
        return [e] * len(L)
    return [_row(per, i, sigma is not None, include_edges, misspec.trend) for i in range(len(L))]


def rows_of(sigma, include_edges: bool, values):
    """A parametric.RowsFit: values(RowFit) -> {name: value} for every draw, a failure as its exception."""
    return lambda runs, losses: [f if isinstance(f, Exception) else values(f)
                                 for f in fit_rows(runs, losses, sigma, include_edges)]


def _row(per: list[Budget], i: int, weighted: bool, include_edges: bool, trend):
    """fit_approach2's result from row i of every budget's arrays: its power laws and misspec.trend."""
    optima = [_Opt(b.C, float(b.n_opt[i]), float(b.d_opt[i]), float(b.se[i]), b.n_runs, bool(b.usable[i]))
              for b in per]
    try:
        res = approach2.from_optima(optima, "parabola", include_edges, weighted)
    except RESAMPLE_ERRORS as e:  # InputError among them: fewer than 2 usable budgets
        return e
    return RowFit(res.n_law, res.d_law, trend(res))


@dataclasses.dataclass(frozen=True)
class _Opt:
    """The fields of a BudgetOptimum that approach2.from_optima and misspec.trend read."""
    C: float
    N_opt: float
    D_opt: float
    log10_N_se: float
    n_runs: int
    usable: bool
