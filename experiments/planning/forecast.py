"""Before anything trains: the interval on a and b that a planned IsoFLOP grid should give.

A Monte Carlo of the analysis itself (no tool we know of does this): every simulated study has the
plan's IsoFLOP runs -- the same (N, D, C) points, seed repeats included -- with final losses drawn
from the study's prior law (experiments.planning.prior: the law whose optimum is the prior's N_opt,
profiles `prior.depth` deep at 0.4 decades) plus Gaussian noise of std `noise` per run, and is fitted
by analysis.laws.approach2.fit_approach2 exactly as `analysis.fit` fits a real study (seed noise pooled
from the repeats weights the vertices). The spread of the fitted a and b over the simulated studies
is what one real study's interval should be; the noiseless fit is where they centre.

The noise: study.noise_from (a previous study's points.csv: the seed std pooled over its points with
repeats; or its results.csv: the median final_eval_loss_se) else study.noise.
"""
from __future__ import annotations

import csv
import dataclasses
import math
from typing import Sequence

import numpy as np

from analysis.laws.approach2 import fit_approach2
from analysis.uncertainty.noise import Point, seed_noise
from analysis.records import RESAMPLE_ERRORS, InputError
from analysis.tables.tables import Runs
from experiments.planning.errors import StudyError
from experiments.planning.prior import Law, Prior
from experiments.spec import RunSpec

INTERVAL = 0.95


@dataclasses.dataclass(frozen=True)
class Interval:
    centre: float  # the noiseless fit
    median: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclasses.dataclass(frozen=True)
class Forecast:
    a: Interval
    b: Interval
    noise: float
    noise_source: str
    simulations: int
    failed: int  # simulated studies the analysis could not fit (counted, never dropped silently)
    interior: float  # fraction of simulated budget profiles with an interior minimum
    law: Law

    def describe(self) -> str:
        iv = lambda name, i: (f"{name} = {i.centre:.3f}, {INTERVAL:.0%} of simulated studies in "
                              f"[{i.low:.3f}, {i.high:.3f}] (±{i.half_width:.3f})")
        return (f"forecast ({self.simulations} simulated studies, noise {self.noise:.4f} nats/run "
                f"[{self.noise_source}], prior law alpha={self.law.alpha:.3g}, beta={self.law.beta:.3g}): "
                f"{iv('a', self.a)}; {iv('b', self.b)}; {self.interior:.0%} of profiles interior"
                + (f"; {self.failed} studies failed to fit" if self.failed else ""))


def fpt_curve(runs: Sequence[RunSpec]):
    """FLOPs per token as a function of N, interpolated in log-log through the planned runs."""
    pairs = sorted({(r.params, r.flops / r.tokens) for r in runs})
    x = np.log10([p for p, _ in pairs])
    y = np.log10([f for _, f in pairs])
    def f(n: float) -> float:
        xq = math.log10(n)
        if xq <= x[0] or xq >= x[-1]:  # linear extrapolation from the nearest two rungs
            j = (0, 1) if xq <= x[0] else (-2, -1)
            slope = (y[j[1]] - y[j[0]]) / (x[j[1]] - x[j[0]]) if len(x) > 1 else 1.0
            return float(10 ** (y[j[0]] + slope * (xq - x[j[0]])))
        return float(10 ** np.interp(xq, x, y))
    return f


def noise_level(noise: float, noise_from: str) -> tuple[float, str]:
    """The per-run noise: study.noise, or from a previous study's table. points.csv gives the seed
    noise pooled over its points with repeats (analysis.uncertainty.noise.seed_noise: the estimate analysis.fit
    weights and bootstraps with); results.csv the median eval standard error."""
    if not noise_from:
        return noise, "study.noise"
    try:
        rows = list(csv.DictReader(open(noise_from)))
    except OSError as e:
        raise StudyError(f"study.noise_from={noise_from}: cannot read it ({e.strerror}); point it at a "
                         "study's points.csv or results.csv, or set study.noise") from None
    reps = [Point(float(r["budget"]), float(r["params"]), float(r["tokens"]), int(r["n_seeds"]),
                  float(r["mean_eval_loss"]), float(r["std_eval_loss"])) for r in rows
            if r.get("std_eval_loss") and int(r.get("n_seeds") or 0) >= 2]
    se = [float(r["final_eval_loss_se"]) for r in rows if r.get("final_eval_loss_se")]
    if reps:
        pooled = seed_noise(reps)
        return pooled.std, f"seed std pooled over {pooled.n_points} points ({pooled.dof} dof) in {noise_from}"
    if se:
        return float(np.median(se)), f"median eval SE of {len(se)} runs in {noise_from}"
    raise StudyError(f"study.noise_from={noise_from} has no std_eval_loss or final_eval_loss_se values")


def _table(runs: Sequence[RunSpec], loss: np.ndarray, convention: str) -> Runs:
    return Runs(run_id=np.array([r.run_id for r in runs]), N=np.array([r.params for r in runs], float),
                D=np.array([r.tokens for r in runs], float), C=np.array([r.flops for r in runs], float),
                loss=loss, budget=np.array([r.budget for r in runs], float),
                N_nonembed=np.array([r.non_embedding_params for r in runs], float),
                seed=np.array([r.seed for r in runs], float), convention=convention)


def forecast(runs: Sequence[RunSpec], prior: Prior, noise: float, noise_source: str, simulations: int,
             seed: int = 0) -> Forecast:
    points = [r for r in runs if r.role == "isoflop"]
    if not points:
        raise StudyError("study.simulations: the plan has no IsoFLOP runs to forecast")
    budgets = np.unique([r.budget for r in points])
    law = prior.law(fpt_curve(points), float(np.exp(np.mean(np.log(budgets)))))
    clean = law.loss([r.params for r in points], [r.tokens for r in points])
    convention = points[0].flop_convention
    try:
        centre = fit_approach2(_table(points, clean, convention), sigma=None)
    except InputError as e:
        raise StudyError(f"study.prior: the noiseless forecast cannot be fitted ({e})") from None
    rng = np.random.default_rng(seed)
    a, b, interior, failed = [], [], [], 0
    for _ in range(simulations):
        table = _table(points, clean + noise * rng.standard_normal(len(points)), convention)
        try:
            fit = fit_approach2(table, sigma="auto" if noise > 0 else None)
        except RESAMPLE_ERRORS:  # a simulated study the analysis cannot fit: counted, never fatal
            failed += 1
            continue
        a.append(fit.n_law.exponent)
        b.append(fit.d_law.exponent)
        interior += [o.usable for o in fit.optima]
    if not a:
        raise StudyError(f"study.simulations: none of {simulations} simulated studies could be fitted; "
                         "the grid cannot support Approach 2 at this noise")
    lo, hi = 100 * (1 - INTERVAL) / 2, 100 * (1 + INTERVAL) / 2
    iv = lambda xs, c: Interval(c, float(np.median(xs)), float(np.percentile(xs, lo)), float(np.percentile(xs, hi)))
    return Forecast(iv(a, centre.n_law.exponent), iv(b, centre.d_law.exponent), noise, noise_source,
                    simulations, failed, float(np.mean(interior)), law)
