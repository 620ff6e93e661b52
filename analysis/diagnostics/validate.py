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
    loss_z: float = float("nan")  # median |z|, z = (pred - loss) / sqrt(sigma^2 + prediction variance)
    loss_z_95: float = float("nan")  # the median |z| a correct law exceeds with probability 5% (null_median_abs_z)


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


PREDICTION_DRAWS = 100  # parametric resamples of the training fit behind the prediction covariance
NULL_DRAWS = 20000  # draws of the held-out statistic under a correct law (its 95% point to +-0.01)


def prediction_cov(train: Runs, test: Runs, best_x, delta: float) -> np.ndarray:
    """Covariance (k x k) of the training fit's predicted losses at the test runs over its own
    parametric resamples (analysis.uncertainty.parametric.approach3, as fits.json's intervals)."""
    from analysis.laws.allocation import LawParams
    from analysis.uncertainty import parametric  # parametric imports nothing of validate; kept local to stay light
    # the held-out runs were scored on the training runs' eval set: the shared offset cancels
    s = parametric.approach3(train, best_x, PREDICTION_DRAWS, 0, delta, eval_offset=False).values
    if len(s.get("E", ())) < 10:
        return np.zeros((len(test), len(test)))
    pred = np.array([LawParams(*p).loss(test.N, test.D) for p in zip(*(s[k] for k in ("E", "A", "B", "alpha", "beta")))])
    pred = pred[np.all(np.isfinite(pred), 1)]
    return np.atleast_2d(np.cov(pred.T)) if len(pred) >= 10 else np.zeros((len(test), len(test)))


def null_median_abs_z(sigma, cov_pred, dof: int, level: float = 0.95, draws: int = NULL_DRAWS, seed: int = 0) -> float:
    """The `level` point of median_i |e_i| / sqrt(sigma_i^2 + v_i) when the law is right: e = the
    prediction's error (N(0, cov_pred), shared by the held-out runs) + each run's own noise (sigma
    known to `dof` degrees of freedom: scaled by sqrt(dof / chi2_dof), 0: exact).
    For k independent standard normal z (cov_pred = 0, dof = 0) it is the closed-form point of the
    median of k half-normals: P(median <= t) = P(Binomial(k, 2 Phi(t) - 1) >= (k + 1) / 2) for odd
    k: 1.10 at k = 11 (1.04 at k = 15); the shared prediction error and an 8-dof sigma raise it."""
    rng = np.random.default_rng(seed)
    sigma, k = np.asarray(sigma, float), len(sigma)
    scale = np.sqrt(dof / rng.chisquare(dof, draws)) if dof > 0 else np.ones(draws)
    w, v = np.linalg.eigh(np.asarray(cov_pred, float))
    shared = (rng.standard_normal((draws, k)) * np.sqrt(np.clip(w, 0, None))) @ v.T
    e = scale[:, None] * sigma * rng.standard_normal((draws, k)) + shared
    z = np.abs(e) / np.sqrt(sigma**2 + np.clip(np.diag(cov_pred), 0, None))
    return float(np.quantile(np.median(z, 1), level))


def _padded_fit(train: Runs, delta, grid, pad_to: int):
    """fit_huber on `train` padded to `pad_to` rows of weight 0 (copies of its first run): every
    training prefix then has one shape, so its two compiled programs (screen, polish) serve them all
    instead of two per prefix (~2.5 s each on the loaded 2-core machine, issue 17)."""
    extra = max(pad_to - len(train), 0)
    pad = lambda v: np.concatenate([v, np.repeat(v[:1], extra)])
    w = np.concatenate([np.ones(len(train)), np.zeros(extra)])
    return approach3.fit_huber(pad(train.N), pad(train.D), pad(train.loss), delta=delta, grid=grid, weights=w)


def _loss_errors(train: Runs, test: Runs, sigma_te, delta, grid, dof: int = 0, pad_to: int = 0) -> dict:
    nan = float("nan")
    if len(train) < approach3.MIN_RUNS:
        return {"loss_median_abs_rel": nan, "loss_bias_rel": nan, "loss_median_abs_z": nan,
                "note": f"Approach 3: {len(train)} runs to fit"}
    res = _padded_fit(train, delta, grid, pad_to)
    err = res.params.loss(test.N, test.D) - test.loss
    out = {"loss_median_abs_rel": float(np.median(np.abs(err) / test.loss)),
           "loss_bias_rel": float(np.median(err / test.loss)), "loss_median_abs_z": nan, "note": ""}
    if sigma_te is not None:
        cov = prediction_cov(train, test, res.x, delta)
        out["loss_median_abs_z"] = float(np.median(np.abs(err) / sigma_te))
        out["loss_z"] = float(np.median(np.abs(err) / np.sqrt(sigma_te**2 + np.clip(np.diag(cov), 0, None))))
        out["loss_z_95"] = null_median_abs_z(sigma_te, cov, dof)
    return out


def rolling_origin(runs: Runs, method: str = "parabola", delta: float = 1e-3, grid=approach3.StartGrid(),
                   sigma=None, first: int = 2, dof: int = 0) -> tuple[OriginRow, ...]:
    """For k = first .. K-1: fit budgets[:k], predict budget k. The last row is the hold-out of
    the largest budget. `sigma`: per-run loss std of `runs` (None: unknown), measured on `dof`
    degrees of freedom (0: exact)."""
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
        loss = _loss_errors(train, test, sig_te, delta, grid, dof, len(runs))
        note = "; ".join(n for n in (n1, loss.pop("note")) if n)
        rows.append(OriginRow(float(budgets[k]), k, err, z, note=note, **loss))
    return tuple(rows)


@dataclasses.dataclass(frozen=True)
class LeaveOneOut:
    approach: str
    a_full: float
    max_shift: float  # largest |a without one run - a|
    run_id: str  # the run whose removal shifts a most
    failed: int  # refits that could not be done without that run (e.g. a budget left with 2 sizes)


def loo_approach2(runs: Runs, method="parabola", include_edges=False, sigma="auto") -> LeaveOneOut:
    full_fit = approach2.fit_approach2(runs, method, include_edges, sigma)
    full = full_fit.n_law.exponent
    sig = noise_sigma(runs) if isinstance(sigma, str) else sigma
    shifts, failed = np.full(len(runs), np.nan), 0
    for i in range(len(runs)):
        keep = np.arange(len(runs)) != i
        try:
            # fit_approach2 without run i: only its own budget's optimum changes, so only it is refitted
            optima = _without(full_fit.optima, runs.subset(keep), runs.budget[i], method,
                              None if sig is None else sig[keep])
            a = approach2.from_optima(optima, method, include_edges, sig is not None).n_law.exponent
            shifts[i] = abs(a - full)
        except InputError:
            failed += 1
    j = int(np.nanargmax(shifts)) if np.isfinite(shifts).any() else 0
    return LeaveOneOut("approach2", full, float(np.nanmax(shifts)) if np.isfinite(shifts).any() else float("nan"),
                       str(runs.run_id[j]), failed)


def _without(optima, rest: Runs, c, method: str, sigma) -> list:
    """approach2.budget_optima(rest, ...) where `rest` differs from the optima's table only in budget c."""
    if not np.any(rest.budget == c):
        return [o for o in optima if o.C != c]
    return [approach2.optimum_of(rest, c, method, sigma) if o.C == c else o for o in optima]


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
