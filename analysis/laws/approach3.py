"""Chinchilla Approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta to final losses.

As Hoffmann et al. 2022 (App. D.2) did it: minimise the Huber loss (delta = 1e-3) of
log L - LSE(a - alpha log N, b - beta log D, e), SUMMED over runs, with L-BFGS from a grid of
starts, keeping the start with the lowest objective. Besiroglu et al. 2024 found that a mean-reduced
objective lets L-BFGS stop almost at once (its tolerances are absolute), hence `reduction="sum"`.
Also Epoch's variant: maximum likelihood of a Huber density with a free scale, BFGS.
All starts are screened in float32, then the best POLISH are run to convergence in float64
(see SCREEN_OPTIONS): the same optimum as every start in float64, at a seventh of the compiled cost.
"""
from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from analysis.laws import allocation
from analysis.laws.lbfgs import LbfgsOptions, minimize_batched, precompile
from analysis.records import Fit, InputError

PARAM_ORDER = ("log_A", "log_B", "log_E", "alpha", "beta")  # x_P columns everywhere below
MIN_RUNS = 5


@dataclasses.dataclass(frozen=True)
class StartGrid:
    """Chinchilla's 4,500 starts: alpha, beta in {0,...,2}, e in {-1,...,1}, a, b in {0,...,25}."""

    alpha: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    beta: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0)
    e: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    a: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)
    b: tuple[float, ...] = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)

    def points(self) -> np.ndarray:
        return np.array([(a, b, e, al, be) for a, b, e, al, be in
                         itertools.product(self.a, self.b, self.e, self.alpha, self.beta)], float)


# For float64 runs over many starts (the bootstrap; fit_huber(..., polish=len(starts))).
# Tolerances: gtol/ftol tight enough that the winner sits within 1e-12 of the optimum; f_scale=1
# (as scipy) lets starts crawling along flat ridges (f ~ 20x the optimum) stop.
FIT_OPTIONS = LbfgsOptions(max_iter=300, memory=10, gtol=1e-9, ftol=1e-10, f_scale=1.0, max_backtracks=5)
# Two phases (measured on the reference data, bench/fit_speed.py): in float64 only ~300 of the
# 4,500 starts reach the optimum, after 75-300 iterations each, and a pass over the runs costs 4.5x
# what it costs in float32. So every start is first screened in float32 for at most 60 iterations
# (float32 resolves the objective to ~1e-5 relative: enough to rank basins, not to finish one), then
# the POLISH best are run to full convergence in float64 and the best objective among them wins.
# ftol 1e-7 with f_scale 1 stops starts crawling along flat ridges once they gain < 1e-7 a step.
# Margin: 20 screening iterations with 8 polished, or 60 with 4, already gave the same optimum
# (objective within 1.3e-14 relative); 60 and 32 cost ~0.2 s once compiled.
SCREEN_OPTIONS = LbfgsOptions(max_iter=60, memory=10, gtol=1e-8, ftol=1e-7, f_scale=1.0, max_backtracks=5)
POLISH = 32
# The polish runs few starts, all near a minimum, so it can afford relative tolerances (f_scale 0):
# the winner's objective is then reproducible to ~1e-13 whichever near-optimal point it starts from.
POLISH_OPTIONS = LbfgsOptions(max_iter=1000, memory=10, gtol=1e-10, ftol=1e-13, f_scale=0.0, max_backtracks=5)
# scipy L-BFGS-B's defaults (pgtol 1e-5, factr 1e7): used to show the mean-reduction pitfall.
SCIPY_LIKE_OPTIONS = LbfgsOptions(max_iter=15000, memory=10, gtol=1e-5, ftol=2.220446e-9, f_scale=1.0, max_backtracks=20)


@dataclasses.dataclass(frozen=True)
class Approach3Result:
    params: allocation.LawParams
    x: np.ndarray  # (log A, log B, log E, alpha, beta)
    objective: float
    start: np.ndarray
    n_converged: int  # met a stopping rule: in screening, or (for the polished) in the polish
    n_starts: int
    iterations: int = 0  # of the winning start
    start_objectives: tuple[float, ...] = ()  # ML only: each start's final objective, in order


def huber_value_and_grad(x_SxP, shared, weights_SxR):
    """Huber(delta) of log-loss residuals, reduced over runs, and its exact gradient, per start.

    shared = (log N_R, log D_R, log L_R, delta, mean_flag); weights_SxR are run multiplicities
    (bootstrap) or None. Written out by hand: one pass for value and gradient, no autodiff tape.
    """
    log_n, log_d, log_l, delta, mean_flag = shared
    a, b, e, alpha, beta = (x_SxP[:, i:i + 1] for i in range(5))
    pu = jnp.exp(a - alpha * log_n)
    pv = jnp.exp(b - beta * log_d)
    pe = jnp.exp(e)
    s = pu + pv + pe
    r = log_l - jnp.log(s)
    ar = jnp.abs(r)
    h = jnp.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))
    psi = jnp.clip(r, -delta, delta) / s  # dHuber/dr times d(log s)/ds
    w = jnp.ones((), h.dtype) if weights_SxR is None else weights_SxR  # a float32 pass stays float32
    norm = jnp.where(mean_flag, jnp.sum(jnp.broadcast_to(w, h.shape), 1), 1.0)
    h, psi, pu, pv = jax.lax.optimization_barrier((h * w, psi * w, pu, pv))
    wu, wv = psi * pu, psi * pv
    grad = -jnp.stack([jnp.sum(wu, 1), jnp.sum(wv, 1), jnp.sum(psi, 1) * pe[:, 0],
                       -jnp.sum(wu * log_n, 1), -jnp.sum(wv * log_d, 1)], 1)
    return jnp.sum(h, 1) / norm, grad / norm[:, None]


def huber_lanes_value_and_grad(x_SxP, shared, log_l_SxR):
    """The same objective with each start's own log losses (a parametric-bootstrap draw per lane):
    shared = (log N_R, log D_R, delta, mean_flag)."""
    log_n, log_d, delta, mean_flag = shared
    return huber_value_and_grad(x_SxP, (log_n, log_d, log_l_SxR, delta, mean_flag), None)


# Restarts of every resample besides the full-data optimum (issue 17): where that optimum has E at
# its bound (log E ~ -27, ~25% of correct-law studies of isoflop_cpu's design), the gradient in log E
# vanishes (it is E times the residuals'), so a refit from it alone never moves E and E's interval is
# [0, 0]. These starts keep the full fit's alpha and beta, put E at these fractions of the smallest
# loss, and take A and B from non-negative least squares of L - E on N^-alpha, D^-beta. Only an
# optimum with E under E_AT_BOUND of the smallest loss gets them: from an interior optimum every
# start reached the same optimum (objectives within 1e-15 on 200 draws of a 44-run isoflop_cpu-like
# table) at 4.7x the cost (0.56 s against 0.12 s for 200 draws).
E_RESTARTS = (0.1, 0.4, 0.7)
E_AT_BOUND = 1e-3


def restart_starts(n, d, loss, best_x, fractions=E_RESTARTS) -> np.ndarray:
    """best_x alone, or with E at its bound (see E_AT_BOUND) best_x then one start per E fraction
    (see E_RESTARTS): (1 + len(fractions)) x 5."""
    n, d, loss = (np.asarray(v, float) for v in (n, d, loss))
    best_x = np.asarray(best_x, float)
    if not np.exp(best_x[2]) < E_AT_BOUND * float(loss.min()):
        return best_x[None]
    alpha, beta = best_x[3], best_x[4]
    basis = np.stack([n ** -alpha, d ** -beta], 1)
    import scipy.optimize  # here, not at the top: most users of this module never need scipy's optimizers

    scale = basis.max(0)  # NNLS on unit-scale columns: N^-alpha and D^-beta differ by decades
    out = [best_x]
    for q in fractions:
        e = q * float(loss.min())
        coef = scipy.optimize.nnls(basis / scale, loss - e)[0] / scale
        # a coefficient NNLS sets to 0 starts small but finite (its log must be finite)
        logs = np.log(np.maximum(coef, 1e-6 * np.maximum(np.exp(best_x[:2]), 1e-12)))
        out.append(np.array([logs[0], logs[1], np.log(e), alpha, beta]))
    x = np.array(out)
    return x[np.all(np.isfinite(x), 1)]


def refit_draws(n, d, loss_BxR, best_x, delta: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Huber-sum fits of B loss vectors at once, in float64 to full convergence, each from every row
    of `best_x` (K x 5, or one start: the full-data optimum), all B x K as lanes of one batched
    L-BFGS; each draw keeps its lowest objective among the starts that stopped well. Returns x_Bx5
    and a bool `ok`: finite, and converged or stopped by the line search with max |gradient| < 1e-6
    (the objective's float64 floor near an optimum)."""
    loss_BxR = np.asarray(loss_BxR, float)
    starts = np.atleast_2d(np.asarray(best_x, float))
    b, k = len(loss_BxR), len(starts)
    with jax.enable_x64(True):
        x0 = jnp.asarray(np.tile(starts, (b, 1)))  # lane i*k + j: draw i from start j
        shared = (jnp.log(np.asarray(n, float)), jnp.log(np.asarray(d, float)), jnp.float64(delta), jnp.bool_(False))
        lanes = jnp.asarray(np.repeat(np.log(loss_BxR), k, 0))
        res = minimize_batched(huber_lanes_value_and_grad, x0, shared, lanes, POLISH_OPTIONS)
    ok = np.isfinite(res.f_S) & (res.converged_S | (res.grad_max_S < 1e-6)) & np.all(np.isfinite(res.x_SxP), 1)
    f = np.where(ok, res.f_S, np.inf).reshape(b, k)
    pick = np.argmin(f, 1)
    rows = np.arange(b) * k + pick
    return res.x_SxP[rows], ok[rows]


def check_runs(n, d, loss) -> None:
    if len(loss) < MIN_RUNS:
        raise InputError(f"Approach 3 needs at least {MIN_RUNS} runs, the table has {len(loss)}: add runs")


def fit_huber(n, d, loss, *, delta: float = 1e-3, grid: StartGrid = StartGrid(), starts=None,
              weights=None, reduction: str = "sum", options: LbfgsOptions = POLISH_OPTIONS,
              width: int = 512, screen: LbfgsOptions = SCREEN_OPTIONS, polish: int = POLISH) -> Approach3Result:
    """Best-of-grid Huber fit. `starts` (S x 5) overrides the grid; `weights` (R,) are multiplicities.

    With more than `polish` starts, every start first runs `screen` in float32, then the `polish`
    lowest objectives are run to convergence in float64 under `options`, and the best of those wins
    (see SCREEN_OPTIONS for why). With `polish` starts or fewer, every start runs in float64.
    """
    n, d, loss = (np.asarray(v, float) for v in (n, d, loss))
    check_runs(n, d, loss)
    if reduction not in ("sum", "mean"):
        raise InputError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if polish < 1:
        raise InputError(f"polish must be at least 1, got {polish}")
    x0 = grid.points() if starts is None else np.atleast_2d(np.asarray(starts, float))
    w = None if weights is None else np.asarray(weights, float)
    with jax.enable_x64(True):
        data = (np.log(n), np.log(d), np.log(loss))
        converged = np.zeros(len(x0), bool)
        iters = np.zeros(len(x0), int)
        picked, x_from = np.arange(len(x0)), x0
        if len(x0) > polish:
            # The polish program compiles on another core while the screening one compiles and runs.
            _run(data, delta, reduction, jax.ShapeDtypeStruct((polish, 5), jnp.float64), w, options, width,
                 np.float64, compile_only=True)
            res = _run(data, delta, reduction, x0, w, screen, width, np.float32)
            f32 = np.where(np.isfinite(res.f_S), res.f_S, np.inf)
            picked = np.argsort(f32, kind="stable")[:polish]
            converged, iters = res.converged_S.copy(), res.iters_S.astype(int)
            x_from = res.x_SxP[picked].astype(float)
        res = _run(data, delta, reduction, x_from, w, options, width, np.float64)
    converged[picked] = res.converged_S
    iters[picked] += res.iters_S
    f = np.where(np.isfinite(res.f_S), res.f_S, np.inf)
    best = int(np.argmin(f))
    x = res.x_SxP[best]
    return Approach3Result(allocation.LawParams.from_logs(*x), x, float(res.f_S[best]), x0[picked[best]],
                           int(converged.sum()), len(x0), int(iters[picked[best]]))


def _run(data, delta, reduction, x0, weights, options, width, dtype, compile_only=False):
    cast = lambda v: jnp.asarray(v, dtype)
    shared = (*(cast(v) for v in data), cast(delta), jnp.bool_(reduction == "mean"))
    lane = None if weights is None else jnp.broadcast_to(cast(weights), (x0.shape[0], len(weights)))
    if compile_only:
        return precompile(huber_value_and_grad, x0, shared, lane, options, width)
    return minimize_batched(huber_value_and_grad, cast(x0), shared, lane, options, width, dtype)


def huber_objective(x, n, d, loss, delta=1e-3, reduction="sum") -> float:
    """The objective at one parameter vector (log A, log B, log E, alpha, beta), float64 numpy."""
    r = np.log(loss) - np.logaddexp(np.logaddexp(x[0] - x[3] * np.log(n), x[1] - x[4] * np.log(d)), x[2])
    h = np.where(np.abs(r) <= delta, 0.5 * r**2, delta * (np.abs(r) - 0.5 * delta))
    return float(h.sum() if reduction == "sum" else h.mean())


def _huber_normaliser(delta: float) -> float:
    import scipy.stats

    # Normalising constant of the density exp(-huber_delta(x)) (Besiroglu et al. 2024, App. A).
    return float(np.sqrt(2 * np.pi) * (1 - 2 * scipy.stats.norm.sf(delta)) + 2 * np.exp(-0.5 * delta**2) / delta)


def _ml_nll(theta, log_n, log_d, log_l, delta, log_z):
    a, b, e, alpha, beta, log_sigma = (theta[i] for i in range(6))
    pred = jnp.logaddexp(jnp.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    z = (log_l - pred) / jnp.exp(log_sigma)
    az = jnp.abs(z)
    h = jnp.where(az <= delta, 0.5 * z * z, delta * (az - 0.5 * delta))
    return jnp.sum(h + log_z + log_sigma)


# Module-level, so refits (bootstrap, validation) reuse one compiled program per table shape.
_ML_F = jax.jit(_ml_nll)
_ML_FG = jax.jit(jax.value_and_grad(_ml_nll))


def ml_nll(x, n, d, loss, delta: float = 1e-3) -> tuple[float, float]:
    """(negative log-likelihood, sigma) of Epoch's model at x = (log A, log B, log E, alpha, beta),
    with the scale sigma profiled out (its own 1-D optimum), float64 numpy."""
    r = np.log(loss) - np.logaddexp(np.logaddexp(x[0] - x[3] * np.log(n), x[1] - x[4] * np.log(d)), x[2])
    import scipy.optimize

    log_z = np.log(_huber_normaliser(delta))

    def f(log_s):
        z = np.abs(r) / np.exp(log_s)
        return float(np.sum(np.where(z <= delta, 0.5 * z * z, delta * (z - 0.5 * delta)) + log_z + log_s))
    res = scipy.optimize.minimize_scalar(f, bounds=(-30.0, 5.0), method="bounded", options={"xatol": 1e-10})
    return float(res.fun), float(np.exp(res.x))


def fit_ml(n, d, loss, *, delta: float = 1e-3, start: allocation.LawParams = allocation.HOFFMANN_UNROUNDED,
           also_from: tuple[allocation.LawParams, ...] = (), maxiter: int = 10000):
    """Epoch's estimator: maximum likelihood of a Huber density on log-loss residuals with a free
    scale sigma, BFGS with exact (autodiff) gradients from Hoffmann's unrounded values (`start`).

    One start is enough on Chinchilla's data, whose scale Hoffmann's values fit. On a small-model
    study they predict losses far above the data, and BFGS can leave the basin for a plateau where
    beta grows until B/D^beta vanishes (measured on studies/isoflop_cpu: beta 2.86, NLL -33.2,
    against -122.4 from the Huber fit's parameters). `also_from` adds starts (the Huber fit); the
    lowest negative log-likelihood wins, and `start_objectives` keeps each start's, in order.
    Returns (result, sigma): sigma is the density's scale; with delta = 1e-3 it is ~Laplace with
    scale sigma/delta, so sigma/delta (not sigma) is on the residuals' scale (their mean |r|).
    """
    n, d, loss = (np.asarray(v, float) for v in (n, d, loss))
    check_runs(n, d, loss)
    runs = [_ml_from(n, d, loss, delta, p, maxiter) for p in (start, *also_from)]
    best = min(range(len(runs)), key=lambda i: runs[i][0].fun if np.isfinite(runs[i][0].fun) else np.inf)
    res, t0 = runs[best]
    x = res.x[:5]
    return Approach3Result(allocation.LawParams.from_logs(*x), x, float(res.fun), t0,
                           int(res.success), len(runs), int(res.nit),
                           tuple(float(r.fun) for r, _ in runs)), float(np.exp(res.x[5]))


def _ml_from(n, d, loss, delta, start: allocation.LawParams, maxiter: int):
    import scipy.optimize

    x_start = np.array([np.log(start.A), np.log(start.B), np.log(start.E), start.alpha, start.beta])
    with jax.enable_x64(True):
        args = (jnp.log(n), jnp.log(d), jnp.log(loss), delta, np.log(_huber_normaliser(delta)))
        # Scale first (params held), as Epoch did, so BFGS starts from a sensible sigma.
        s0 = scipy.optimize.minimize_scalar(lambda s: float(_ML_F(jnp.append(x_start, s), *args)),
                                            bounds=(-20.0, 5.0), method="bounded").x
        # t goes to the jitted function as scipy's float64 array: a jnp.asarray first cost a third of each
        # of BFGS's up to ~20,000 calls (dispatched op by op) and gives the same bits.
        wrap = lambda t: tuple(np.asarray(v, float) for v in _ML_FG(t, *args))
        res = scipy.optimize.minimize(wrap, np.append(x_start, s0), jac=True, method="BFGS",
                                      options={"gtol": 1e-10, "maxiter": maxiter})
    return res, np.append(x_start, s0)


def to_fit(res: Approach3Result, approach: str, n_runs: int, intervals=None, notes=()) -> Fit:
    p = res.params
    a, b, g = allocation.exponents(p)
    params = {"E": p.E, "A": p.A, "B": p.B, "alpha": p.alpha, "beta": p.beta, "a": a, "b": b, "G": g}
    return Fit(approach, params, res.objective, dict(intervals or {}), n_runs, tuple(notes),
               {"converged_starts": res.n_converged, "starts": res.n_starts})
