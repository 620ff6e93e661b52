"""Measured noise of a results table: IsoFLOP points over their seeds, pooled seed noise, and the
standard deviation each run's loss carries, for weighting vertices and the parametric bootstrap.

A point is one (budget, N) pair; its seeds differ in init and data order (RunSpec.seed). The pooled
within-point variance s_p^2 = sum (n_i - 1) s_i^2 / sum (n_i - 1) estimates the run-to-run noise of a
final loss with sum (n_i - 1) degrees of freedom: it includes the eval's own sampling error, so it
is preferred to the per-run `final_eval_loss_se` (which is what is left when no point has repeats).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Point:
    budget: float
    N: float
    D: float  # mean tokens over the seeds (identical in a planned grid)
    n_seeds: int
    mean: float
    std: float  # sample std over seeds (ddof 1); NaN with one seed


@dataclasses.dataclass(frozen=True)
class SeedNoise:
    std: float  # pooled within-point std (nats); NaN without repeats
    dof: int
    n_points: int  # points with >= 2 seeds
    median_run_se: float  # median per-run eval standard error (nats); NaN when unknown

    def line(self) -> str:
        se = f"; median eval SE per run {self.median_run_se:.4g} nats" if np.isfinite(self.median_run_se) else ""
        if self.dof == 0:
            return f"seed noise: not measured (no point has 2 or more seeds){se}"
        return (f"seed noise: pooled std {self.std:.4g} nats over {self.n_points} points with repeats "
                f"({self.dof} degrees of freedom){se}")


def points(budget, n, d, loss) -> list[Point]:
    budget, n, d, loss = (np.asarray(v, float) for v in (budget, n, d, loss))
    out = []
    keys = sorted({(b, x) for b, x in zip(budget, n) if np.isfinite(b)})
    for b, x in keys:
        m = (budget == b) & (n == x)
        y = loss[m]
        out.append(Point(float(b), float(x), float(np.mean(d[m])), int(m.sum()), float(np.mean(y)),
                         float(np.std(y, ddof=1)) if len(y) > 1 else float("nan")))
    return out


def seed_noise(pts: list[Point], run_se=None) -> SeedNoise:
    rep = [p for p in pts if p.n_seeds > 1]
    dof = sum(p.n_seeds - 1 for p in rep)
    std = float(np.sqrt(sum((p.n_seeds - 1) * p.std**2 for p in rep) / dof)) if dof else float("nan")
    se = np.asarray([] if run_se is None else run_se, float)
    se = se[np.isfinite(se)]
    return SeedNoise(std, int(dof), len(rep), float(np.median(se)) if len(se) else float("nan"))


@dataclasses.dataclass(frozen=True)
class RunNoise:
    sigma: np.ndarray | None  # per-run std of the final loss (nats); None when nothing is measured
    source: str  # "seed noise", "eval SE" or "none"
    noise: SeedNoise

    @property
    def dof(self) -> int:
        """Degrees of freedom of sigma: the seed repeats' (an eval SE is taken as exact: 0)."""
        return self.noise.dof if self.source == "seed noise" else 0


def run_noise(runs) -> RunNoise:
    """The per-run loss std the fits use: pooled seed noise where the table has repeats (and a seed
    column), else each run's eval standard error (where every run has one), else unknown."""
    se = runs.loss_se
    # One row per run: a resample that repeats a row (the nonparametric bootstrap) is no seed repeat.
    # Without a seed column, runs that share (budget, N) are no known repeats (a digitised figure
    # has such pairs), so only tables that say each run's seed measure seed noise.
    first = np.unique(runs.run_id, return_index=True)[1]
    if runs.seed is None:
        first = first[:0]
    sn = seed_noise(points(runs.budget[first], runs.N[first], runs.D[first], runs.loss[first]),
                    None if se is None else se[first])
    if sn.dof > 0 and sn.std > 0:
        return RunNoise(np.full(len(runs), sn.std), "seed noise", sn)
    if se is not None and np.all(np.isfinite(se) & (se > 0)):
        return RunNoise(np.asarray(se, float), "eval SE", sn)
    return RunNoise(None, "none", sn)


def sigma_rows(runs, losses):
    """run_noise(runs.with_loss(row)).sigma of every row of `losses` (B x runs), as one (B x runs)
    array, (runs,) where it does not depend on the losses (eval SE), or None where nothing is
    measured: the seed noise of many parametric draws of one design at once."""
    losses = np.atleast_2d(np.asarray(losses, float))
    rn = run_noise(runs)
    if rn.noise.dof == 0:  # no repeats: eval SE or nothing, whatever the losses
        return rn.sigma
    first = np.unique(runs.run_id, return_index=True)[1]
    keys = sorted({(b, x) for b, x in zip(runs.budget[first], runs.N[first]) if np.isfinite(b)})
    ss = np.zeros(len(losses))
    for b, x in keys:
        idx = first[(runs.budget[first] == b) & (runs.N[first] == x)]
        if len(idx) > 1:
            ss = ss + (len(idx) - 1) * np.std(losses[:, idx], axis=1, ddof=1) ** 2
    std = np.sqrt(ss / rn.noise.dof)
    if np.all(std > 0):
        return np.repeat(std[:, None], len(runs), 1)
    return np.array([run_noise(runs.with_loss(row)).sigma for row in losses])  # a row without noise: as run_noise
