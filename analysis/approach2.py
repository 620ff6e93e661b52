"""Chinchilla Approach 2 (Hoffmann et al. 2022, Sec. 3.2): IsoFLOP profiles.

Per compute budget, final loss as a function of log N is fitted by a parabola (or, as an option,
an Akima spline) and its minimum taken as N_opt(C); D_opt(C) is read off the budget's own (N, D)
relation at N_opt, so any FLOP convention works. Then N_opt ∝ C^a and D_opt ∝ C^b are fitted by
weighted least squares in log-log space.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.interpolate

from analysis.records import InputError
from analysis.tables import Runs

MIN_RUNS_PER_BUDGET = 3


@dataclasses.dataclass(frozen=True)
class BudgetOptimum:
    C: float
    N_opt: float
    D_opt: float
    loss_opt: float
    at_edge: bool  # vertex outside the sampled N range, or the lowest observed loss at an end
    n_runs: int
    coeffs: tuple[float, ...]  # parabola in x = log10 N (highest power first); () for Akima


@dataclasses.dataclass(frozen=True)
class PowerLaw:
    """y = k * C^exponent, fitted in log10 space."""

    exponent: float
    log10_k: float

    def __call__(self, c):
        return 10.0 ** self.log10_k * np.asarray(c, float) ** self.exponent


@dataclasses.dataclass(frozen=True)
class Approach2Result:
    optima: tuple[BudgetOptimum, ...]
    n_law: PowerLaw
    d_law: PowerLaw
    used_budgets: tuple[float, ...]


def budget_optimum(log_n, log_d, loss, c: float, method: str = "parabola") -> BudgetOptimum:
    order = np.argsort(log_n)
    x, y, z = log_n[order], loss[order], log_d[order]
    if len(x) < MIN_RUNS_PER_BUDGET:
        raise InputError(f"Approach 2: budget {c:.3g} has {len(x)} runs, needs at least "
                         f"{MIN_RUNS_PER_BUDGET}: add runs or leave the budget out")
    if len(np.unique(x)) < MIN_RUNS_PER_BUDGET:  # a parabola through 2 distinct N is not determined
        raise InputError(f"Approach 2: budget {c:.3g} has fewer than {MIN_RUNS_PER_BUDGET} distinct N: "
                         f"add model sizes to the budget or leave it out")
    if method == "parabola":
        coeffs = np.polyfit(x, y, 2)
        if coeffs[0] <= 0:  # no minimum: the profile is not convex
            xv = x[np.argmin(y)]
        else:
            xv = -coeffs[1] / (2 * coeffs[0])
        lv = float(np.polyval(coeffs, xv))
    elif method == "akima":
        ux, inv = np.unique(x, return_inverse=True)
        uy = np.bincount(inv, y) / np.bincount(inv)
        spline = scipy.interpolate.Akima1DInterpolator(ux, uy)
        fine = np.linspace(ux[0], ux[-1], 2001)
        vals = spline(fine)
        xv, lv, coeffs = fine[np.argmin(vals)], float(np.min(vals)), ()
    else:
        raise InputError(f"--interp {method!r}: choose parabola or akima")
    at_edge = bool(xv <= x[0] or xv >= x[-1] or np.argmin(y) in (0, len(y) - 1))
    # log D is linear in log N at fixed C for any C = k N D convention.
    slope, icpt = np.polyfit(x, z, 1)
    return BudgetOptimum(float(c), float(10**xv), float(10 ** (icpt + slope * xv)), lv, at_edge,
                         len(x), tuple(float(v) for v in coeffs))


def fit_power_law(c, y, weights) -> PowerLaw:
    """Weighted least squares of log10 y on log10 C (weights: runs behind each optimum)."""
    expo, icpt = np.polyfit(np.log10(c), np.log10(y), 1, w=np.sqrt(np.asarray(weights, float)))
    return PowerLaw(float(expo), float(icpt))


def fit_approach2(runs: Runs, method: str = "parabola", include_edges: bool = False) -> Approach2Result:
    budgets = runs.budgets()
    optima = []
    for c in budgets:
        m = runs.budget == c
        optima.append(budget_optimum(np.log10(runs.N[m]), np.log10(runs.D[m]), runs.loss[m], c, method))
    used = [o for o in optima if include_edges or not o.at_edge]
    if len(used) < 2:
        raise InputError(f"Approach 2 needs at least 2 budgets with an interior optimum, found {len(used)} "
                         f"(of {len(optima)} budgets): add budgets, widen the N grid, or pass --include-edges")
    c = np.array([o.C for o in used])
    w = np.array([o.n_runs for o in used])
    return Approach2Result(tuple(optima), fit_power_law(c, [o.N_opt for o in used], w),
                           fit_power_law(c, [o.D_opt for o in used], w), tuple(float(v) for v in c))
