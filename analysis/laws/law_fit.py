"""Fit any law of analysis.laws.registry as Approach 3 fits Chinchilla's.

The summed Huber loss (delta = 1e-3) of log-loss residuals, minimised by batched multi-start
L-BFGS (analysis.laws.lbfgs) in float64: with more starts than `polish`, every start is screened in
float32 first and the best `polish` are run to convergence in float64 (approach3.SCREEN_OPTIONS'
reasoning). Fixed parameters (`--fix`) stay out of the search: the free vector maps into the
law's full vector by x = base + x_free @ embed, so one compiled program serves every choice of
fixed parameters with the same count. The gradient is jax's (a law is one predict function).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from analysis.laws.approach3 import POLISH_OPTIONS, SCREEN_OPTIONS
from analysis.laws.lbfgs import LbfgsOptions, minimize_batched, precompile
from analysis.laws.registry import Law
from analysis.records import InputError

POLISH = 32
TOP = 4  # distinct best end points kept for the resample refits
# The weighted float64 program a fit with lanes, its resamples (law_intervals) and the prediction
# checks (law_validation) share: approach3's polish capped at 300 iterations. In one batched run every
# lane steps until the slowest stops, and a start that wanders (overtraining, 300 rows: 2 of 32
# starts, at 4x the best objective, ran to 1,000) held all 400 lanes to it; winners converge in
# ~100 iterations, and a winner that reaches the cap is continued (fit_law).
LANE_OPTIONS = dataclasses.replace(POLISH_OPTIONS, max_iter=300)
MAX_CONTINUE = 3
# That program is a pool of LANE_WIDTH slots (lbfgs: a slot whose start has stopped takes the next),
# so a call costs its own lanes' iterations: as one batch, all 400 lanes stepped until the slowest
# stopped, the 32 polished starts were repeated to 400 lanes, the 60 prediction-check refits padded
# to 400, and a resample at the cap held the other 399 (on the 300-row tables: 3-10x the iterations
# needed). Padding lanes are NaN starts (`pad`), which stop at their first evaluation. At 128 slots
# each lane's arithmetic is bitwise that of the one-batch program (64 rounds its sums differently).
LANE_WIDTH = 128
WIDTH = 512  # every other program: one batch up to 512 starts, a pool of 512 slots beyond


@dataclasses.dataclass(frozen=True)
class LawData:
    """A table as a law sees it: logs of its input columns ("log_n", ...) and of the loss."""

    logs: dict
    log_loss: np.ndarray | None  # None for a table that is only predicted
    # Per-row std of the loss (nats) from the table itself: pooled over seed repeats, else its eval
    # SE column (law_table.run_noise); None when the table measures neither.
    sigma: np.ndarray | None = None
    sigma_source: str = "none"

    def __len__(self) -> int:
        return len(next(iter(self.logs.values())))


@dataclasses.dataclass(frozen=True)
class Search:
    """Which parameters move: the full search vector is base + x_free @ embed."""

    law: Law
    fixed: dict  # name -> value in the paper's units

    @property
    def free(self) -> tuple[int, ...]:
        return tuple(i for i, p in enumerate(self.law.params) if p.name not in self.fixed)

    def base(self) -> np.ndarray:
        return np.array([p.to_search(self.fixed[p.name]) if p.name in self.fixed else 0.0 for p in self.law.params])

    def embed(self) -> np.ndarray:
        return np.eye(len(self.law.params))[list(self.free)]

    def full(self, x_free) -> np.ndarray:
        return self.base() + np.asarray(x_free) @ self.embed()

    def grid(self) -> np.ndarray:
        """The law's start grid over the free parameters only (duplicates dropped)."""
        return np.unique(self.law.grid()[:, list(self.free)], axis=0)


@dataclasses.dataclass(frozen=True)
class LawFit:
    search: Search
    x: np.ndarray  # full search vector of the best start
    objective: float
    constants: dict
    n_starts: int
    n_converged: int
    top_free: np.ndarray  # (K, F): the best distinct end points, best first
    delta: float
    n_rows: int
    screen_lanes: int = 0  # lanes of the float32 screen when padded for the resamples (0: not padded)
    polish_lanes: int = 0  # lanes of the weighted float64 phase (fit_law(lanes=...); 0: none)

    @property
    def law(self) -> Law:
        return self.search.law

    def values(self) -> dict[str, float]:
        return self.law.values(self.x)


def _huber_rows(law: Law, xf, shared, target):
    """(S, R) Huber terms of the log-loss residuals at the free vectors xf (S, F)."""
    logs, _, delta, base, embed, consts = shared
    x = base[None] + xf @ embed
    named = {p.name: x[:, i:i + 1] for i, p in enumerate(law.params)}
    r = target - law.predict_log(named, logs, consts)
    ar = jnp.abs(r)
    return jnp.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def _value_and_grad(per_start, xf_SxF):
    (_, f), g = jax.value_and_grad(lambda xf: (lambda f: (jnp.sum(f), f))(per_start(xf)), has_aux=True)(xf_SxF)
    return f, g


@functools.lru_cache(maxsize=None)
def objective_fn(law: Law):
    """The law's summed Huber objective and its gradient per start, as minimize_batched wants it:
    shared = (logs, log_loss, delta, base, embed, constants); lane = None (the table's log losses),
    per-start log losses (S, R), or (log losses, row weights), both (S, R): a weight 0 leaves a row
    out of that start's fit (the leave-one-out and rolling-origin refits, law_validation). The
    weighted form is what the float64 phase of a fit with lanes and of the resamples uses, so the
    refits run on the program those compiled. A left-out row's term is zeroed with `where`, so a
    NaN prediction there (annealing overshoot) cannot reach the lane."""

    def fun(xf_SxF, shared, lane):
        target, w = (lane if isinstance(lane, tuple) else (shared[1] if lane is None else lane, None))

        def per_start(xf):
            h = _huber_rows(law, xf, shared, target)
            return jnp.sum(h if w is None else jnp.where(w > 0, w * h, 0.0), 1)

        return _value_and_grad(per_start, xf_SxF)

    return fun


def weighted(log_loss_SxR, weights_SxR=None) -> tuple:
    """A lane of per-start log losses with row weights (default all 1) for objective_fn."""
    log_loss_SxR = np.asarray(log_loss_SxR, float)
    return log_loss_SxR, (np.ones_like(log_loss_SxR) if weights_SxR is None else np.asarray(weights_SxR, float))


def shared_for(search: Search, data: LawData, consts: dict, delta: float, dtype):
    cast = lambda v: jnp.asarray(v, dtype)
    return ({k: cast(v) for k, v in data.logs.items()}, cast(data.log_loss), cast(delta), cast(search.base()),
            cast(search.embed()), {k: cast(v) for k, v in consts.items()})


def minimize(search: Search, data: LawData, consts: dict, x0_free, delta: float, opts: LbfgsOptions,
             lane=None, dtype=np.float64, compile_only: bool = False, width: int = WIDTH):
    """One batched L-BFGS over the rows of x0_free (call inside jax.enable_x64(True)), `width` slots
    at a time. With `compile_only`, x0_free is an (S, F) shape: the program starts compiling on a
    worker thread (lbfgs.precompile) while the caller goes on, as approach3 overlaps its two phases."""
    shared = shared_for(search, data, consts, delta, dtype)
    lane = None if lane is None else jax.tree.map(lambda a: jnp.asarray(a, dtype), lane)
    fun = objective_fn(search.law)
    if compile_only:
        return precompile(fun, jax.ShapeDtypeStruct(x0_free, dtype), shared, lane, opts, width)
    return minimize_batched(fun, jnp.asarray(x0_free, dtype), shared, lane, opts, width, dtype)


def check(search: Search, data: LawData) -> None:
    need = search.law.rows_needed(len(search.fixed))
    if len(data) < need:
        raise InputError(f"law {search.law.name} with {len(search.free)} free parameters needs at least {need} "
                         f"rows, the table has {len(data)}: add runs or --fix parameters")


def fit_law(law: Law, data: LawData, fixed: dict | None = None, delta: float = 1e-3, starts=None,
            polish: int = POLISH, lanes: int = 0, screen_to: int = 0) -> LawFit:
    """Best of the law's start grid (or `starts`, rows over the free parameters).

    `lanes` > 0: the float64 phase runs as that many lanes (its starts repeated), each with the
    table's log losses as its lane data: the very program the resamples' float64 phase then reuses
    (law_intervals), one compilation instead of two (compiling is most of a CLI fit's time).
    `screen_to` > 0 does the same for the float32 screen: at least that many lanes, each with the
    table's log losses (LawFit.screen_lanes says how many the resamples' screen must match).
    """
    search = Search(law, dict(fixed or {}))
    check(search, data)
    consts = law.constants(data.logs)
    x0 = search.grid() if starts is None else np.atleast_2d(np.asarray(starts, float))
    with jax.enable_x64(True):
        from_x, n_conv, screen_lanes = x0, 0, 0
        n_from = min(len(x0), polish)
        lane = weighted(np.repeat(data.log_loss[None], max(lanes, n_from), 0)) if lanes else None
        opts, width = (LANE_OPTIONS, LANE_WIDTH) if lanes else (POLISH_OPTIONS, WIDTH)
        if len(x0) > polish:
            minimize(search, data, consts, (len(lane[0]) if lanes else polish, x0.shape[1]), delta, opts,
                     lane=lane, compile_only=True, width=width)
            screen_lanes = max(len(x0), screen_to) if screen_to else 0
            scr_lane = np.repeat(data.log_loss[None], screen_lanes, 0) if screen_to else None
            res = minimize(search, data, consts, pad(x0, screen_lanes).astype(np.float32), delta, SCREEN_OPTIONS,
                           lane=scr_lane, dtype=np.float32)
            f32 = np.where(np.isfinite(res.f_S), res.f_S, np.inf)[:len(x0)]
            from_x = res.x_SxP[np.argsort(f32, kind="stable")[:polish]].astype(float)
            n_conv = int(res.converged_S[:len(x0)].sum())
        if lanes:
            from_x = pad(from_x, len(lane[0]))
        res = minimize(search, data, consts, from_x, delta, opts, lane=lane, width=width)
        for _ in range(MAX_CONTINUE if lanes else 0):  # the winner stopped at the cap: run on from there
            f = np.where(np.isfinite(res.f_S) & np.all(np.isfinite(res.x_SxP), 1), res.f_S, np.inf)
            best = int(np.argmin(f))
            if res.converged_S[best] or res.iters_S[best] < opts.max_iter:
                break
            more = minimize(search, data, consts, pad(res.x_SxP[np.argsort(f)[:n_from]], len(lane[0])), delta,
                            opts, lane=lane, width=width)
            if not np.nanmin(np.where(np.isfinite(more.f_S), more.f_S, np.inf)) <= f[best]:
                break
            res = more
    f = np.where(np.isfinite(res.f_S) & np.all(np.isfinite(res.x_SxP), 1), res.f_S, np.inf)
    if not np.isfinite(f).any():
        raise InputError(f"law {law.name}: no start reached a finite objective; check the columns' units")
    order = np.argsort(f, kind="stable")
    top = distinct(res.x_SxP[order][np.isfinite(f[order])], TOP)
    n_conv = n_conv if len(x0) > polish else int(res.converged_S[:n_from].sum())
    return LawFit(search, search.full(res.x_SxP[order[0]]), float(f[order[0]]), consts, len(x0), n_conv, top,
                  delta, len(data), screen_lanes, len(lane[0]) if lanes else 0)


def cycle(rows, n: int):
    """The rows repeated cyclically to n rows (n = 0: unchanged): padding lanes to a compiled shape."""
    rows = np.asarray(rows)
    return rows[np.arange(n) % len(rows)] if n else rows


def pad(rows, n: int):
    """The rows followed by NaN rows up to n (n <= len(rows): unchanged): padding lanes to a compiled
    shape at the cost of one evaluation each (a start whose objective is not finite stops there)."""
    rows = np.asarray(rows, float)
    return np.concatenate([rows, np.full((n - len(rows),) + rows.shape[1:], np.nan)]) if n > len(rows) else rows


def distinct(x_SxF, k: int, tol: float = 1e-3) -> np.ndarray:
    """Up to k rows, in order, each at least `tol` (max abs) from those kept before it."""
    kept: list[np.ndarray] = []
    for row in x_SxF:
        if all(np.max(np.abs(row - r)) > tol for r in kept):
            kept.append(row)
        if len(kept) == k:
            break
    return np.asarray(kept)


def predict_log(fit: LawFit, data: LawData, x_SxP=None) -> np.ndarray:
    """(S, R) log-loss at the rows of x_SxP (full search vectors; default the fit's own), float64."""
    x = np.atleast_2d(fit.x if x_SxP is None else x_SxP)
    with jax.enable_x64(True):
        logs = {k: jnp.asarray(v, jnp.float64) for k, v in data.logs.items()}
        consts = {k: jnp.float64(v) for k, v in fit.constants.items()}
        return np.asarray(_predict_jit(fit.law)(jnp.asarray(x, jnp.float64), logs, consts))


@functools.lru_cache(maxsize=None)
def _predict_jit(law: Law):
    """The law's prediction as one compiled program per shape: run op by op, jax compiles each of
    its ~15 operations per new shape (~0.1 s each on the loaded 2-core CPU)."""

    def run(x, logs, consts):
        return law.predict_log({p.name: x[:, i:i + 1] for i, p in enumerate(law.params)}, logs, consts)

    return jax.jit(run)


def residuals(fit: LawFit, data: LawData) -> np.ndarray:
    return data.log_loss - predict_log(fit, data)[0]
