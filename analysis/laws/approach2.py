"""Chinchilla Approach 2 (Hoffmann et al. 2022, Sec. 3.2): IsoFLOP profiles.

Per compute budget, final loss as a function of log N is fitted by a parabola (or, as an option,
an Akima spline) and its minimum taken as N_opt(C). Both vertices are always computed and reported
(`N_parabola`, `N_akima`), so a profile the parabola describes badly shows. D_opt = C / f(N_opt),
where f is the study's own FLOPs per token (C/D of each run under the table's convention),
interpolated in log N: exact for any convention, where a log D ~ log N regression is off by the
curvature of f (5-6% in D on the CPU grid). Then N_opt ∝ C^a and D_opt ∝ C^b are fitted by weighted
least squares in log-log space.

Seed replicates: the parabola is fitted to every run, which is the same least-squares problem as
fitting per-point means weighted by their seed counts; Akima interpolates per-point means. When the
loss noise is known (per-run sigma: pooled seed noise or the eval's standard error, analysis.uncertainty.noise),
the parabola is weighted by 1/sigma^2, its vertex gets a standard error by the delta method
(inflated by the reduced chi^2 where the profile scatters more than the noise says), and each budget
enters the power laws with weight 1/SE^2. Without known noise, budgets are weighted by their run
count (Hoffmann et al.'s choice is not stated; this keeps large profiles from being outvoted).
A profile whose parabola opens downward (no minimum) is flagged non-convex and, like an optimum at
the edge of the sampled sizes, left out of the power laws unless include_edges.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from analysis.laws.akima_min import akima_argmin
from analysis.records import InputError
from analysis.tables.tables import Runs

MIN_RUNS_PER_BUDGET = 3
# The noise-free reading of "parabola and Akima vertices differ" (BudgetOptimum.vertices_differ):
# further apart than this many decades, 2 standard errors of the parabola's vertex, and one rung.
# Under noise the Akima vertex follows the per-size means (SD ~0.115 decades on isoflop_cpu's design
# against the parabola's 0.035), so the diagnostics judge the gap against its resampled null
# instead (vertex_gap_null; issue 17: this fixed tolerance failed 83% of correct-law studies).
VERTEX_TOL_DEX = 0.05
# The null's draws per budget: its (1 - 0.05/K) point from 2,000 draws has ~25 draws above it at K = 4.
VERTEX_NULL_DRAWS = 2000


@dataclasses.dataclass(frozen=True)
class BudgetOptimum:
    C: float
    N_opt: float
    D_opt: float
    loss_opt: float
    at_edge: bool  # vertex outside the sampled N range, or the lowest observed loss at an end
    n_runs: int
    coeffs: tuple[float, ...]  # parabola in x = log10 N (highest power first); () for Akima
    log10_N_se: float = float("nan")  # standard error of log10 N_opt (parabola); NaN if unknown
    convex: bool = True  # False: the parabola opens downward, the profile has no minimum
    N_parabola: float = float("nan")
    N_akima: float = float("nan")
    n_points: int = 0  # distinct N
    rung_dex: float = 0.0  # median gap between neighbouring sizes, decades

    @property
    def usable(self) -> bool:
        return self.convex and not self.at_edge

    @property
    def vertices_differ(self) -> bool:
        gap = abs(np.log10(self.N_parabola) - np.log10(self.N_akima))
        se = self.log10_N_se if np.isfinite(self.log10_N_se) else 0.0
        return bool(gap > max(VERTEX_TOL_DEX, 2 * se, self.rung_dex))


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
    weighting: str = "runs per budget"  # or "1/SE^2 of the vertex"
    weights: tuple[float, ...] = ()  # of each used budget in the power-law fits


def _parabola(x, y, sigma):
    """Coefficients (x^2, x, 1), vertex x, its standard error (NaN when not determined), convex."""
    w = np.ones_like(y) if sigma is None else 1.0 / np.asarray(sigma, float)
    coeffs = np.polyfit(x, y, 2, w=w)
    if coeffs[0] <= 0:
        return coeffs, x[np.argmin(y)], float("nan"), False
    xv = -coeffs[1] / (2 * coeffs[0])
    X = np.vander(x, 3) * w[:, None]
    resid = (np.polyval(coeffs, x) - y) * w
    dof = len(x) - 3
    chi2 = float(resid @ resid / dof) if dof > 0 else float("nan")
    # Known sigma: covariance (X'WX)^-1, inflated by the reduced chi^2 when the scatter exceeds it.
    # Unknown sigma: the residual variance (needs a residual degree of freedom).
    scale = max(1.0, chi2) if sigma is not None and dof > 0 else (1.0 if sigma is not None else chi2)
    try:
        cov = np.linalg.inv(X.T @ X) * scale
    except np.linalg.LinAlgError:
        return coeffs, xv, float("nan"), True
    g = np.array([coeffs[1] / (2 * coeffs[0] ** 2), -1 / (2 * coeffs[0]), 0.0])
    return coeffs, xv, float(np.sqrt(g @ cov @ g)) if np.isfinite(scale) else float("nan"), True


def _akima(x, y):
    import scipy.interpolate  # here, as in akima_min: the registry laws import this module but never call it

    ux, inv = np.unique(x, return_inverse=True)
    uy = np.bincount(inv, y) / np.bincount(inv)
    fine = np.linspace(ux[0], ux[-1], 2001)
    vals = scipy.interpolate.Akima1DInterpolator(ux, uy)(fine)
    return fine[np.argmin(vals)], float(np.min(vals))


def interp_log(xq, x, y) -> np.float64:
    """y(xq) piecewise linear in (x, y), extended linearly past the ends (both in log space).
    A numpy float64 (a float), so `10 ** interp_log(...)` of a vertex hundreds of decades off the
    grid is inf under np.errstate, where a Python float power raises OverflowError."""
    ux, inv = np.unique(x, return_inverse=True)
    uy = np.bincount(inv, y) / np.bincount(inv)
    if len(ux) == 1:
        return np.float64(uy[0])
    if xq < ux[0] or xq > ux[-1]:
        j = (0, 1) if xq < ux[0] else (-2, -1)
        slope = (uy[j[1]] - uy[j[0]]) / (ux[j[1]] - ux[j[0]])
        return np.float64(uy[j[0]] + slope * (xq - ux[j[0]]))
    return np.float64(np.interp(xq, ux, uy))


def budget_optimum(log_n, log_d, loss, c: float, method: str = "parabola", sigma=None,
                   log_fpt=None) -> BudgetOptimum:
    """The budget's optimum. `sigma`: per-run loss std (None: unknown); `log_fpt`: log10 FLOPs per
    token of each run (default: log10(c) - log_d, every run spending exactly c)."""
    order = np.argsort(log_n)
    x, y = np.asarray(log_n, float)[order], np.asarray(loss, float)[order]
    lf = (np.log10(c) - np.asarray(log_d, float) if log_fpt is None else np.asarray(log_fpt, float))[order]
    sig = None if sigma is None else np.asarray(sigma, float)[order]
    if len(x) < MIN_RUNS_PER_BUDGET:
        raise InputError(f"Approach 2: budget {c:.3g} has {len(x)} runs, needs at least "
                         f"{MIN_RUNS_PER_BUDGET}: add runs or leave the budget out")
    if len(np.unique(x)) < MIN_RUNS_PER_BUDGET:  # a parabola through 2 distinct N is not determined
        raise InputError(f"Approach 2: budget {c:.3g} has fewer than {MIN_RUNS_PER_BUDGET} distinct N: "
                         f"add model sizes to the budget or leave it out")
    if method not in ("parabola", "akima"):
        raise InputError(f"--interp {method!r}: choose parabola or akima")
    coeffs, xp, se, convex = _parabola(x, y, sig)
    xa, la = _akima(x, y)
    xv, lv = (xp, float(np.polyval(coeffs, xp))) if method == "parabola" else (xa, la)
    at_edge = bool(xv <= x[0] or xv >= x[-1] or np.argmin(y) in (0, len(y) - 1))
    # A resample's vertex can land hundreds of decades off the grid (a nearly flat profile): N_opt
    # and D_opt are then 0 or inf in float64, never an OverflowError, and the budget is at_edge.
    with np.errstate(over="ignore", under="ignore"):
        d_opt = c / np.power(10.0, interp_log(xv, x, lf))
        n_opt, n_par, n_ak = (np.power(10.0, np.float64(v)) for v in (xv, xp, xa))
    return BudgetOptimum(float(c), float(n_opt), float(d_opt), lv, at_edge, len(x),
                         tuple(float(v) for v in coeffs) if method == "parabola" else (),
                         se if method == "parabola" else float("nan"), bool(convex), float(n_par),
                         float(n_ak), len(np.unique(x)), float(np.median(np.diff(np.unique(x)))))


def vertex_gaps(x, Y, sigma=None) -> np.ndarray:
    """|log10 N_parabola - log10 N_akima| of every column of Y (runs x draws) on the sizes x (log10 N,
    sorted), as budget_optimum computes both vertices: the parabola weighted by 1/sigma (its vertex,
    or the lowest run where it opens downward), Akima through the per-size means on 2001 points."""
    x, Y = np.asarray(x, float), np.asarray(Y, float).reshape(len(x), -1)
    w = np.ones(len(x)) if sigma is None else 1.0 / np.asarray(sigma, float)
    c2, c1, _ = np.linalg.lstsq(np.vander(x, 3) * w[:, None], Y * w[:, None], rcond=None)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        xp = np.where(c2 > 0, -c1 / (2 * c2), x[np.argmin(Y, 0)])
    ux, inv = np.unique(x, return_inverse=True)
    means = np.stack([Y[inv == i].mean(0) for i in range(len(ux))])
    xa = akima_argmin(ux, means)  # = fine[argmin of the Akima spline on 2001 points], segments pruned
    return np.abs(xp - xa)


def vertex_gap_null(runs: Runs, sigma=None, dof: int = 0, level: float = 0.95, draws: int = VERTEX_NULL_DRAWS,
                    seed: int = 0) -> dict[float, tuple[float, float]]:
    """{C: (observed gap, threshold)} in decades for every budget with >= 3 distinct sizes.

    The null: the budget's profile is its weighted parabola, each run's loss off it by Gaussian noise
    of the measured per-run `sigma`, itself known only to `dof` degrees of freedom (each draw scales
    sigma by sqrt(dof / chi2_dof): the spread of the true sigma given the estimate, as a t statistic
    has it). Without measured noise, each budget's own residual scatter around its parabola (n - 3
    dof). The threshold is the gap the null exceeds with probability (1 - level) / K at each of the
    K budgets (Bonferroni), so a correct law fails the check at some budget with probability at
    most 1 - level."""
    rng = np.random.default_rng(seed)
    per = {}
    for c in runs.budgets():
        m = runs.budget == c
        order = np.argsort(runs.N[m])
        x, y = np.log10(runs.N[m])[order], runs.loss[m][order]
        if len(np.unique(x)) < MIN_RUNS_PER_BUDGET:
            continue
        per[float(c)] = (x, y, None if sigma is None else np.asarray(sigma, float)[m][order])
    out = {}
    for c, (x, y, sig) in per.items():
        w = np.ones(len(x)) if sig is None else 1.0 / sig
        fitted = np.polyval(np.polyfit(x, y, 2, w=w), x)
        nu = dof if sig is not None else len(x) - 3
        if sig is None:
            sig = np.full(len(x), np.sqrt(np.sum((y - fitted) ** 2) / nu)) if nu > 0 else None
        observed = float(vertex_gaps(x, y, None if sig is None else sig)[0])
        if sig is None or not np.all(np.isfinite(sig) & (sig > 0)):
            out[c] = (observed, float("nan"))
            continue
        scale = np.sqrt(nu / rng.chisquare(nu, draws)) if nu > 0 else np.ones(draws)
        Y = fitted[:, None] + sig[:, None] * scale[None] * rng.standard_normal((len(x), draws))
        q = 1 - (1 - level) / len(per)
        out[c] = (observed, float(np.quantile(vertex_gaps(x, Y, sig), q)))
    return out


def fit_power_law(c, y, weights) -> PowerLaw:
    """Weighted least squares of log10 y on log10 C (weights: runs behind each optimum)."""
    expo, icpt = np.polyfit(np.log10(c), np.log10(y), 1, w=np.sqrt(np.asarray(weights, float)))
    return PowerLaw(float(expo), float(icpt))


def budget_optima(runs: Runs, method: str = "parabola", sigma=None, skip_small: bool = False) -> list[BudgetOptimum]:
    """Every budget's optimum (`sigma`: per-run loss std or None). With skip_small, budgets with
    too few sizes for a profile are left out instead of raising."""
    optima = []
    for c in runs.budgets():
        try:
            optima.append(optimum_of(runs, c, method, sigma))
        except InputError:
            if not skip_small:
                raise
    return optima


def optimum_of(runs: Runs, c: float, method: str = "parabola", sigma=None) -> BudgetOptimum:
    """Budget c's optimum in `runs` (`sigma`: per-run loss std of all runs, or None)."""
    m = runs.budget == c
    return budget_optimum(np.log10(runs.N[m]), np.log10(runs.D[m]), runs.loss[m], c, method,
                          None if sigma is None else sigma[m], np.log10(runs.flops_per_token()[m]))


def fit_approach2(runs: Runs, method: str = "parabola", include_edges: bool = False,
                  sigma="auto") -> Approach2Result:
    """`sigma`: per-run loss std; "auto" takes the table's measured noise (analysis.uncertainty.noise.run_noise),
    None fits unweighted."""
    from analysis.uncertainty.noise import run_noise  # noise imports nothing of approach2; kept local to stay one-way
    if isinstance(sigma, str):
        sigma = run_noise(runs).sigma
    return from_optima(budget_optima(runs, method, sigma), method, include_edges, sigma is not None)


def from_optima(optima, method: str, include_edges: bool, weighted: bool) -> Approach2Result:
    """The power laws through the budgets' optima (`weighted`: fitted with a measured sigma)."""
    used = [o for o in optima if include_edges or o.usable]
    if len(used) < 2:
        raise InputError(f"Approach 2 needs at least 2 budgets with an interior optimum, found {len(used)} "
                         f"(of {len(optima)} budgets): add budgets, widen the N grid, or pass --include-edges")
    c = np.array([o.C for o in used])
    se = np.array([o.log10_N_se for o in used])
    by_se = weighted and method == "parabola" and np.all(np.isfinite(se) & (se > 0))
    w = 1.0 / se**2 if by_se else np.array([o.n_runs for o in used], float)
    return Approach2Result(tuple(optima), fit_power_law(c, [o.N_opt for o in used], w),
                           fit_power_law(c, [o.D_opt for o in used], w), tuple(float(v) for v in c),
                           "1/SE^2 of the vertex" if by_se else "runs per budget", tuple(float(v) for v in w))
