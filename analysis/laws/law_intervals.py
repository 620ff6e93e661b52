"""Intervals for a registry law: a parametric bootstrap that refits resampled tables.

Each resample keeps the table's design and redraws every log loss as the fitted law's prediction
plus sigma z, sigma the residuals' RMS on log loss (degrees of freedom: rows - free parameters).
Each resample is refitted from the full-data fit's best few distinct end points AND from a small
grid of starts (a fixed-seed subset of the law's grid), all screened in float32 first: a weakly identified parameter (R_D*, R_N*
of data_constrained) then shows, in its interval, the spread of every basin the resample can fall
into, not only the basin of the full-data optimum. `grid_won` counts resamples whose best start
came from another start than the full-data optimum (by more than 1e-6 relative): often more than a few percent means the objective
has several basins at this noise level. All refits run as lanes of batched L-BFGS.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from analysis.laws import law_fit
from analysis.laws.approach3 import SCREEN_OPTIONS
from analysis.laws.lbfgs import LbfgsOptions
from analysis.records import RESAMPLE_ERRORS
from analysis.uncertainty import bootstrap

GRID_STARTS = 8
SINGLE_PHASE = 512  # lanes up to which resamples skip the float32 screen
# Near an optimum, as approach3.POLISH_OPTIONS, with fewer iterations: each lane starts at a point
# already screened to ~1e-5 of its basin's objective.
RESAMPLE_OPTIONS = LbfgsOptions(max_iter=500, memory=10, gtol=1e-10, ftol=1e-12, f_scale=0.0, max_backtracks=5)


@dataclasses.dataclass(frozen=True)
class LawSamples:
    x: np.ndarray  # (B_ok, P) full search vectors of the resamples that converged
    values: dict  # name -> (B_ok,) samples of every parameter and derived quantity
    sigma: float  # the log-loss noise the draws used
    n_boot: int
    failed: int
    grid_won: int
    starts_per_resample: int
    # (lanes, options, width) of the weighted float64 program the resamples ran: law_validation pads
    # its refits to it, so they reuse that compilation
    program: tuple = ()

    def intervals(self, level: float) -> dict[str, tuple[float, float]]:
        ok = {k: v[np.isfinite(v)] for k, v in self.values.items() if np.isfinite(v).sum() >= 2}
        return bootstrap.percentiles(ok, level) if ok else {}

    def summary(self) -> dict:
        return {"kind": "parametric", "noise": "residual RMS of log loss", "sigma_log_loss": self.sigma,
                "resamples": self.n_boot, "failed": self.failed, "starts_per_resample": self.starts_per_resample,
                "grid_start_won": self.grid_won}


def noise_sigma(fit: law_fit.LawFit, data: law_fit.LawData) -> float:
    r = law_fit.residuals(fit, data)
    return float(np.sqrt(np.sum(r * r) / max(1, len(r) - len(fit.search.free))))


def starts(fit: law_fit.LawFit, n_grid: int, seed: int) -> tuple[np.ndarray, int]:
    """(K, F) refit starts: the fit's top distinct end points, then n_grid grid points."""
    grid = fit.search.grid()
    pick = np.random.default_rng(seed).choice(len(grid), min(n_grid, len(grid)), replace=False)
    return np.concatenate([fit.top_free, grid[np.sort(pick)]]), len(fit.top_free)


def fit_lanes(n_boot: int, n_starts: int) -> int:
    """The lane count fit_law should use so that `resample` reuses its float64 program (0: none)."""
    return 2 * n_boot if n_boot * n_starts > SINGLE_PHASE else 0


def resample(fit: law_fit.LawFit, data: law_fit.LawData, n_boot: int, seed: int = 0,
             n_grid: int = GRID_STARTS) -> LawSamples:
    """Two phases, as the fit itself: every (resample, start) lane is screened in float32, then per
    resample the best screened lane and the full-data optimum's lane are run to convergence in
    float64; the lower objective wins."""
    sigma = noise_sigma(fit, data)
    mu = law_fit.predict_log(fit, data)[0]
    draws = mu[None] + sigma * np.random.default_rng(seed).standard_normal((n_boot, len(mu)))
    x0, _ = starts(fit, n_grid, seed)
    k = len(x0)
    with jax.enable_x64(True):
        if not fit_lanes(n_boot, law_fit.TOP + n_grid):  # few lanes: one float64 program, not two to compile
            res = law_fit.minimize(fit.search, data, fit.constants, np.tile(x0, (n_boot, 1)), fit.delta,
                                   RESAMPLE_OPTIONS, lane=law_fit.weighted(np.repeat(draws, k, 0)))
            lanes, program = k, (n_boot * k, RESAMPLE_OPTIONS, law_fit.WIDTH)
        else:
            res, lanes = _two_phase(fit, data, draws, x0), 2
            program = (2 * n_boot, law_fit.LANE_OPTIONS, law_fit.LANE_WIDTH)
    f = np.where(np.isfinite(res.f_S) & np.all(np.isfinite(res.x_SxP), 1), res.f_S, np.inf).reshape(n_boot, lanes)
    best = np.argmin(f, 1)
    ok = np.isfinite(f[np.arange(n_boot), best])
    # Lane 0 of each resample starts at the full-data optimum.
    grid_won = int(np.sum(ok & (f[:, 1:].min(1) < f[:, 0] * (1 - 1e-6))))
    x = fit.search.full(res.x_SxP.reshape(n_boot, lanes, -1)[np.arange(n_boot), best][ok])
    return LawSamples(x, sample_values(fit, data, x), sigma, n_boot, int((~ok).sum()), grid_won, k, program)


def _two_phase(fit, data, draws, x0):
    n_boot, k = len(draws), len(x0)
    law_fit.minimize(fit.search, data, fit.constants, (2 * n_boot, x0.shape[1]), fit.delta, law_fit.LANE_OPTIONS,
                     lane=law_fit.weighted(np.repeat(draws, 2, 0)), compile_only=True, width=law_fit.LANE_WIDTH)
    # Padded to the full-data fit's screen (fit.screen_lanes): the same compiled program.
    n = max(n_boot * k, fit.screen_lanes)
    scr = law_fit.minimize(fit.search, data, fit.constants, law_fit.pad(np.tile(x0, (n_boot, 1)), n).astype(np.float32),
                           fit.delta, SCREEN_OPTIONS, lane=law_fit.cycle(np.repeat(draws, k, 0), n), dtype=np.float32)
    f32 = np.where(np.isfinite(scr.f_S), scr.f_S, np.inf)[:n_boot * k].reshape(n_boot, k)
    screened = scr.x_SxP[:n_boot * k].reshape(n_boot, k, -1)[np.arange(n_boot), np.argmin(f32, 1)].astype(float)
    from_x = np.stack([np.repeat(fit.top_free[:1], n_boot, 0), screened], 1).reshape(2 * n_boot, -1)
    # LANE_OPTIONS and 2 n_boot lanes: the program of the full-data fit (fit_law(lanes=2 n_boot)).
    return law_fit.minimize(fit.search, data, fit.constants, from_x, fit.delta, law_fit.LANE_OPTIONS,
                            lane=law_fit.weighted(np.repeat(draws, 2, 0)), width=law_fit.LANE_WIDTH)


def sample_values(fit: law_fit.LawFit, data: law_fit.LawData, x_BxP) -> dict[str, np.ndarray]:
    """Every parameter and derived quantity at each resample (NaN where `derived` fails)."""
    rows = []
    for row in x_BxP:
        v = fit.law.values(row)
        try:
            v.update(fit.law.derived(v, data.logs, fit.constants))
        except RESAMPLE_ERRORS:
            pass
        rows.append(v)
    names = dict.fromkeys(k for r in rows for k in r)
    return {k: np.array([float(r.get(k, np.nan)) for r in rows]) for k in names}
