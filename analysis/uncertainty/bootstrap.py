"""Seeded bootstrap over runs: refit on resampled tables and report percentile intervals.

Approach 3 resamples become per-start multiplicity weights, so all resamples run as lanes of one
batched L-BFGS (each starting from the full-data optimum and the few best grid starts) rather than
as 1,000 separate fits.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from analysis.laws import allocation, approach2, approach3
from analysis.laws.lbfgs import minimize_batched
from analysis.tables.tables import Runs


def percentiles(samples: dict[str, np.ndarray], level: float = 0.95) -> dict[str, tuple[float, float]]:
    lo, hi = 50 * (1 - level), 50 * (1 + level)
    return {k: (float(np.nanpercentile(v, lo)), float(np.nanpercentile(v, hi))) for k, v in samples.items()}


def resample_counts(n_runs: int, n_boot: int, seed: int, groups=None) -> np.ndarray:
    """(n_boot, n_runs) multiplicities; with `groups`, resampling stays within each group."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, n_runs))
    if groups is None:
        for i in range(n_boot):
            counts[i] = np.bincount(rng.integers(0, n_runs, n_runs), minlength=n_runs)
        return counts
    groups = np.asarray(groups, float)
    groups = np.where(np.isfinite(groups), groups, -1.0)  # runs of no budget form one group
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        for i in range(n_boot):
            counts[i, idx] = np.bincount(rng.integers(0, len(idx), len(idx)), minlength=len(idx))
    return counts


def approach3_samples(n, d, loss, best_x, n_boot: int = 1000, seed: int = 0, delta: float = 1e-3,
                      extra_starts=None, groups=None) -> dict[str, np.ndarray]:
    """Parameter samples of the Huber-sum fit over `n_boot` resamples of the runs (within each of
    `groups`, e.g. budgets, when given)."""
    counts = resample_counts(len(loss), n_boot, seed, groups)
    starts = [np.asarray(best_x, float)] + ([] if extra_starts is None else list(np.atleast_2d(extra_starts)))
    k = len(starts)
    x0 = np.repeat(np.asarray(starts)[None], n_boot, 0).reshape(-1, 5)
    weights = np.repeat(counts, k, 0)
    with jax.enable_x64(True):
        shared = (jnp.log(n), jnp.log(d), jnp.log(loss), jnp.float64(delta), jnp.bool_(False))
        res = minimize_batched(approach3.huber_value_and_grad, jnp.asarray(x0), shared,
                               jnp.asarray(weights), approach3.FIT_OPTIONS)
    f = np.where(np.isfinite(res.f_S), res.f_S, np.inf).reshape(n_boot, k)
    x = res.x_SxP.reshape(n_boot, k, 5)[np.arange(n_boot), np.argmin(f, 1)]
    return law_samples(x)


def law_samples(x_Bx5) -> dict[str, np.ndarray]:
    out = {k: [] for k in ("E", "A", "B", "alpha", "beta", "a", "b", "G")}
    for row in x_Bx5:
        p = allocation.LawParams.from_logs(*row)
        a, b, g = allocation.exponents(p)
        for k, v in zip(out, (p.E, p.A, p.B, p.alpha, p.beta, a, b, g)):
            out[k].append(v)
    return {k: np.asarray(v) for k, v in out.items()}


def approach2_fit_values(runs: Runs, method="parabola", include_edges=False) -> dict[str, float]:
    r = approach2.fit_approach2(runs, method, include_edges)
    return {"a": r.n_law.exponent, "b": r.d_law.exponent}
