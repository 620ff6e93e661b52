"""Validation: fit without the largest budget and predict it (Approach 2's N_opt, Approach 3's
losses); roll the origin through every budget (fit the smaller ones, predict the next, as OLMo's
ladder does); and the largest shift of a when any one run is left out."""
from __future__ import annotations

import dataclasses

import numpy as np

from analysis.laws import approach2, approach3
from analysis.records import InputError
from analysis.tables.tables import Runs


@dataclasses.dataclass(frozen=True)
class HoldoutRow:
    run_id: str
    N: float
    D: float
    loss: float
    predicted: float
    rel_error: float  # (predicted - loss) / loss


def holdout_largest_budget(runs: Runs, delta: float = 1e-3, grid=approach3.StartGrid()) -> tuple[HoldoutRow, ...]:
    budgets = runs.budgets()
    if len(budgets) < 2:
        raise InputError(f"validation needs at least 2 budgets (one held out), found {len(budgets)}")
    held = runs.budget == budgets[-1]
    train = runs.subset(~held)
    res = approach3.fit_huber(train.N, train.D, train.loss, delta=delta, grid=grid)
    test = runs.subset(held)
    pred = res.params.loss(test.N, test.D)
    return tuple(HoldoutRow(str(i), float(n), float(d), float(l), float(p), float((p - l) / l))
                 for i, n, d, l, p in zip(test.run_id, test.N, test.D, test.loss, pred))


# ---- Validation against the measured noise (issue 8): hold out, roll the origin, leave one out ----

@dataclasses.dataclass(frozen=True)
class OriginRow:
    """Fit on budgets below `budget`, predict it. Errors in decades (N_opt) and relative (losses);
    the z columns divide by the measured noise (vertex SE; per-run sigma), NaN when unknown."""

    budget: float
    n_fit_budgets: int
    nopt_error_dex: float  # log10 predicted - log10 measured N_opt (Approach 2)
    nopt_z: float
    loss_median_abs_rel: float  # median |pred - loss| / loss over the budget's runs (Approach 3)
    loss_bias_rel: float  # median signed (pred - loss) / loss
    loss_median_abs_z: float  # median |pred - loss| / sigma
    note: str = ""


def _nopt_error(train: Runs, test: Runs, c: float, method: str, sigma_tr, sigma_te) -> tuple[float, float, str]:
    try:
        r2 = approach2.fit_approach2(train, method, False, sigma_tr)
        o = approach2.budget_optimum(np.log10(test.N), np.log10(test.D), test.loss, c, method, sigma_te,
                                     np.log10(test.flops_per_token()))
    except InputError as e:
        return float("nan"), float("nan"), f"Approach 2: {e}"
    err = float(np.log10(r2.n_law(c)) - np.log10(o.N_opt))
    note = "" if o.usable else "held-out optimum at the grid edge or non-convex"
    return err, err / o.log10_N_se if np.isfinite(o.log10_N_se) and o.log10_N_se > 0 else float("nan"), note


def _loss_errors(train: Runs, test: Runs, sigma_te, delta, grid) -> tuple[float, float, float, str]:
    if len(train) < approach3.MIN_RUNS:
        return float("nan"), float("nan"), float("nan"), f"Approach 3: {len(train)} runs to fit"
    res = approach3.fit_huber(train.N, train.D, train.loss, delta=delta, grid=grid)
    err = res.params.loss(test.N, test.D) - test.loss
    z = float(np.median(np.abs(err) / sigma_te)) if sigma_te is not None else float("nan")
    return float(np.median(np.abs(err) / test.loss)), float(np.median(err / test.loss)), z, ""


def rolling_origin(runs: Runs, method: str = "parabola", delta: float = 1e-3, grid=approach3.StartGrid(),
                   sigma=None, first: int = 2) -> tuple[OriginRow, ...]:
    """For k = first .. K-1: fit budgets[:k], predict budget k. The last row is the hold-out of
    the largest budget. `sigma`: per-run loss std of `runs` (None: unknown)."""
    budgets = runs.budgets()
    if len(budgets) <= first:
        raise InputError(f"validation needs more than {first} budgets (fit {first}, predict the next), "
                         f"found {len(budgets)}")
    rows = []
    for k in range(first, len(budgets)):
        fit_m, test_m = runs.budget < budgets[k], runs.budget == budgets[k]
        sig_tr = None if sigma is None else sigma[fit_m]
        sig_te = None if sigma is None else sigma[test_m]
        train, test = runs.subset(fit_m), runs.subset(test_m)
        err, z, n1 = _nopt_error(train, test, float(budgets[k]), method, sig_tr, sig_te)
        rel, bias, lz, n2 = _loss_errors(train, test, sig_te, delta, grid)
        rows.append(OriginRow(float(budgets[k]), k, err, z, rel, bias, lz, "; ".join(n for n in (n1, n2) if n)))
    return tuple(rows)


@dataclasses.dataclass(frozen=True)
class LeaveOneOut:
    approach: str
    a_full: float
    max_shift: float  # largest |a without one run - a|
    run_id: str  # the run whose removal shifts a most
    failed: int  # refits that could not be done without that run (e.g. a budget left with 2 sizes)


def loo_approach2(runs: Runs, method="parabola", include_edges=False, sigma="auto") -> LeaveOneOut:
    full = approach2.fit_approach2(runs, method, include_edges, sigma).n_law.exponent
    sig = noise_sigma(runs) if isinstance(sigma, str) else sigma
    shifts, failed = np.full(len(runs), np.nan), 0
    for i in range(len(runs)):
        keep = np.arange(len(runs)) != i
        try:
            a = approach2.fit_approach2(runs.subset(keep), method, include_edges,
                                        None if sig is None else sig[keep]).n_law.exponent
            shifts[i] = abs(a - full)
        except InputError:
            failed += 1
    j = int(np.nanargmax(shifts)) if np.isfinite(shifts).any() else 0
    return LeaveOneOut("approach2", full, float(np.nanmax(shifts)) if np.isfinite(shifts).any() else float("nan"),
                       str(runs.run_id[j]), failed)


def loo_approach3(runs: Runs, best_x, delta: float = 1e-3, a_of=None) -> LeaveOneOut:
    """Every leave-one-out refit at once: lane i weights run i by zero, from the full-data optimum.
    `a_of(LawParams) -> a` (default eq. 4's beta/(alpha+beta)) is the allocation exponent of a fit."""
    import jax
    import jax.numpy as jnp
    from analysis.laws.lbfgs import minimize_batched
    w = 1.0 - np.eye(len(runs))
    with jax.enable_x64(True):
        shared = (jnp.log(runs.N), jnp.log(runs.D), jnp.log(runs.loss), jnp.float64(delta), jnp.bool_(False))
        x0 = jnp.asarray(np.repeat(np.asarray(best_x, float)[None], len(runs), 0))
        res = minimize_batched(approach3.huber_value_and_grad, x0, shared, jnp.asarray(w), approach3.POLISH_OPTIONS)
    from analysis.laws.allocation import LawParams
    a_of = a_of or (lambda p: p.beta / (p.alpha + p.beta))
    a = np.array([a_of(LawParams.from_logs(*x)) if np.all(np.isfinite(x)) else np.nan for x in res.x_SxP])
    full = a_of(LawParams.from_logs(*best_x))
    ok = np.isfinite(res.f_S) & np.isfinite(a)
    shifts = np.where(ok, np.abs(a - full), np.nan)  # all NaN too where the full fit's a is (off range)
    any_shift = bool(np.isfinite(shifts).any())
    j = int(np.nanargmax(shifts)) if any_shift else 0
    return LeaveOneOut("approach3", float(full), float(np.nanmax(shifts)) if any_shift else float("nan"),
                       str(runs.run_id[j]), int((~ok).sum()))


def noise_sigma(runs: Runs):
    from analysis.uncertainty.noise import run_noise
    return run_noise(runs).sigma
