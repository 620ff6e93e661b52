"""Epoch's maximum-likelihood variant of Approach 3 refitted on many resamples at once.

The full-data ML fit (approach3.fit_ml) runs scipy's BFGS from two starts; its 200 resamples did
too, one Python loop iteration each, and were ~60% of a default `analysis.fit` (issue 17: 150 s
of 270 s on a 44-run table, loaded 2-core machine). Here every resample is one lane of the batched
L-BFGS (analysis.laws.lbfgs) that Approach 3's own resamples use, on approach3's own objective
(`_ml_nll`, vmapped, gradients by autodiff), in float64, from the full-data optimum and its scale.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from analysis.laws import allocation, approach3
from analysis.laws.lbfgs import LbfgsOptions, minimize_batched
from analysis.tables.tables import Runs
from analysis.uncertainty import parametric

# scipy's BFGS ran with gtol 1e-10 and 10,000 iterations. The likelihood is ~Laplace (delta = 1e-3
# of a scale sigma ~ 1e-5): its gradient jumps wherever a residual crosses the tiny quadratic zone,
# so lanes stop where a step no longer lowers the NLL (ftol 0), or where the line search fails with
# the gradient at its floor (as approach3.refit_draws). Measured on 200 draws of a 44-run
# isoflop_cpu-like table against scipy's BFGS on the same draws: memory 20 reached scipy's NLL
# (within 1e-6) on 198, the other 2 exhausted 10,000 iterations (counted failed); memory 10 stopped
# early on 4 of 40 draws (NLL up to 1e-2 above scipy's), and a second pass from the end points let
# lanes wander along the kinks for thousands of iterations (10x the cost).
OPTIONS = LbfgsOptions(max_iter=10000, memory=20, gtol=1e-10, ftol=0.0, f_scale=0.0, max_backtracks=30)
# Lanes advanced together: a few draws on the E-alpha ridge take thousands of iterations where the
# median takes ~400, so a pool of 32 slots refilled as lanes stop (lbfgs) beats one slot per draw:
# 200 draws in 2.5 s CPU against 8 s with 200 slots (compiled, load ~5).
WIDTH = 32
GRAD_FLOOR = 1e-3  # max |gradient| a lane stopped by its line search may keep (see check_grad_floor)


def _lane_value_and_grad(x, log_n, log_d, log_l, delta, log_z):
    return jax.value_and_grad(approach3._ml_nll)(x, log_n, log_d, log_l, delta, log_z)


_LANES = jax.vmap(_lane_value_and_grad, in_axes=(0, 0, 0, 0, None, None))


def ml_lanes_value_and_grad(x_SxP, shared, lane):
    """Per lane, the ML negative log-likelihood and its gradient at x = (log A, log B, log E, alpha,
    beta, log sigma): shared = (delta, log normaliser), lane = (log N, log D, log L), each S x R."""
    delta, log_z = shared
    return _LANES(x_SxP, *lane, delta, log_z)


def refit(n_BxR, d_BxR, loss_BxR, x6, delta: float = 1e-3, options: LbfgsOptions = OPTIONS):
    """ML fits of B resampled tables (rows of the B x R arrays) at once, each from `x6` (the
    full-data optimum with its log sigma). Returns (x_Bx6, ok, iterations): ok is finite, under the
    iteration budget, and converged or stopped with max |gradient| < GRAD_FLOOR."""
    arrays = [np.asarray(v, float) for v in (n_BxR, d_BxR, loss_BxR)]
    b = len(arrays[2])
    with jax.enable_x64(True), np.errstate(invalid="ignore", divide="ignore"):
        lane = tuple(jnp.asarray(np.log(v)) for v in arrays)
        shared = (jnp.float64(delta), jnp.float64(np.log(approach3._huber_normaliser(delta))))
        x0 = jnp.asarray(np.tile(np.asarray(x6, float), (b, 1)))
        res = minimize_batched(ml_lanes_value_and_grad, x0, shared, lane, options, WIDTH)
    ok = (np.isfinite(res.f_S) & np.all(np.isfinite(res.x_SxP), 1) & (res.iters_S < options.max_iter)
          & (res.converged_S | (res.grad_max_S < GRAD_FLOOR)))
    return res.x_SxP, ok, res.iters_S


def resampled_arrays(runs: Runs, p: parametric.Plan, n_boot: int, seed: int):
    """(N, D, loss), each n_boot x runs: parametric.resampled_tables' tables, as arrays."""
    tables = list(parametric.resampled_tables(runs, p, n_boot, seed))
    return tuple(np.stack([getattr(t, k) for t in tables]) for k in ("N", "D", "loss"))


def samples(runs: Runs, p: parametric.Plan, x6, n_boot: int, seed: int, delta: float, values) -> parametric.Samples:
    """parametric.generic's Samples for the ML fit, every resample refitted in one batched L-BFGS:
    the same draws (resampled_tables), `values(LawParams) -> {name: value}` per converged resample."""
    n, d, loss = resampled_arrays(runs, p, n_boot, seed)
    x, ok, iters = refit(n, d, loss, x6, delta)

    def outcome(i):
        if not np.all(loss[i] > 0):
            return FloatingPointError("non-positive loss draw")
        if not ok[i]:
            return RuntimeError(f"L-BFGS did not converge ({int(iters[i])} iterations)")
        law = allocation.LawParams.from_logs(*x[i, :5])
        return parametric.attempt(lambda _: values(law), runs)
    s = parametric.collect((outcome(i) for i in range(n_boot)), n_boot, p.kind, p.source)
    return dataclasses.replace(s, eval_offset_sd=p.offset_sd if p.kind == parametric.PARAMETRIC else 0.0)
