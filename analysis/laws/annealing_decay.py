"""The annealing law's decay factor lambda, profiled on the fitted curves rather than fixed.

Tissue et al. 2024 carry the lr's drops into S2 through a momentum m_i = lambda m_(i-1) +
(eta_(i-1) - eta_i) and use lambda = 0.999 on runs of tens of thousands of steps. lambda sets how
long a drop takes to tell in the loss (1 / (1 - lambda) steps), so it depends on the run's length
and is not a constant of nature: on annealing_cpu (5,419 steps, a 1,083-step WSD cooldown) the
constant and cosine curves fit best at 0.995-0.998, and the WSD run's predicted final loss moves
from +2.6% (0.999) to -1.8% (0.995) of the measured. So lambda is chosen like any parameter, by the
fitted curves' objective (the summed Huber loss the law minimises; never by the held-out curves),
over a grid (S2 recomputed per lambda, the law refitted without resamples), and its uncertainty
enters the predictions: the values whose deviance rows * log(objective / least objective) stays
under chi-square(1)'s 95% point are kept, and each held-out row's interval is widened to hold the
point predictions at all of them. The deviance is Gaussian's with sigma profiled out, applied to the
Huber objective (quadratic for all but the early, steep rows) and to rows taken as independent; a
curve's residuals are correlated along it, so the kept set is if anything too narrow. (The plain RSS
is no better a guide: the few warmup rows dominate it, and it picked 0.99 on annealing_cpu.)
`--decay VALUE` fixes lambda (0.999 is the paper's). Coverage of the widened 95% interval on a held-out
WSD curve's final loss (bench/annealing_decay_coverage.py: curves drawn at lambda 0.997 with AR(1)
noise along each, phi 0.9, 300 draws): 92.7 +- 1.5%; with lambda fixed at 0.999, 6.3%.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import pandas as pd

from analysis.laws import law_fit, law_report
from analysis.laws.law_table import LawTable, law_table
from analysis.records import InputError

DECAYS = (0.99, 0.995, 0.997, 0.998, 0.999, 0.9995)
CHI2_1_95 = 3.841


@dataclasses.dataclass(frozen=True)
class DecayChoice:
    value: float  # the lambda the law is fitted and resampled at
    objective: dict  # lambda -> the law's fitted objective at that lambda ({} when fixed)
    kept: tuple[float, ...]  # the lambdas inside the profile's 95% region (the value alone when fixed)

    def record(self) -> dict:
        rule = (f"profiled over {len(self.objective)} values on the fitted curves: the least objective; kept where "
                f"rows * log(objective / least) <= {CHI2_1_95}" if self.objective else "fixed (--decay)")
        return {"lambda": self.value, "kept": list(self.kept), "rule": rule,
                "objective": {f"{k:g}": v for k, v in self.objective.items()}}


def parse(text: str | None) -> float | None:
    """`--decay profile|VALUE`: None (profile) or a lambda in (0, 1)."""
    if text is None or text == "profile":
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"--decay {text!r}: expected 'profile' or a number in (0, 1)") from None
    if not 0 < value < 1:
        raise InputError(f"--decay {text!r}: lambda must be in (0, 1)")
    return value


def choose(objective_at: Callable[[float], float], rows: int, fixed: float | None = None,
           grid: tuple[float, ...] = DECAYS) -> DecayChoice:
    """The least-objective lambda of `grid` (objective_at(lambda): the law refitted at it), the kept set."""
    if fixed is not None:
        return DecayChoice(fixed, {}, (fixed,))
    obj = {lam: float(objective_at(lam)) for lam in grid}
    best = min(obj, key=obj.get)
    kept = tuple(lam for lam in grid if rows * np.log(obj[lam] / obj[best]) <= CHI2_1_95)
    return DecayChoice(best, obj, kept)


def widen(pred: pd.DataFrame, points: dict) -> pd.DataFrame:
    """predicted_low/high widened to hold each kept lambda's point prediction (points: lambda ->
    per-row predicted loss); a row without a resampled interval gets the points' range."""
    if not points:
        return pred
    stack = np.stack([np.asarray(v, float) for v in points.values()])
    out = pred.copy()
    low, high = out["predicted_low"].to_numpy(float), out["predicted_high"].to_numpy(float)
    out["predicted_low"] = np.fmin(low, stack.min(0))
    out["predicted_high"] = np.fmax(high, stack.max(0))
    return out


@dataclasses.dataclass(frozen=True)
class AnnealingFit:
    result: law_report.LawResult  # the law at choice.value, resampled, as fits.json records it
    choice: DecayChoice
    table: LawTable  # the fitted curves with S2 at choice.value
    fits: dict  # lambda -> LawFit without resamples, for every kept lambda (the point predictions)


def fit(law, curves: pd.DataFrame, cols, options, fixed: float | None = None) -> AnnealingFit:
    """The annealing law on `curves` at the chosen lambda (law_report.run), the choice in its record."""
    first = fixed if fixed is not None else DECAYS[0]
    tables = {first: law_table(curves, cols, law.inputs, decay=first)}  # S2 per lambda, built once each
    fits: dict = {}

    def objective_at(lam: float) -> float:
        if lam not in tables:
            tables[lam] = law_table(curves, cols, law.inputs, decay=lam)
        # As law_report.run fits: the same two compiled programs for every lambda, and the chosen
        # lambda's fit is the one resampled (not refitted)
        fits[lam] = law_report.fit_for(law, tables[lam].data, options)
        return fits[lam].objective

    choice = choose(objective_at, len(tables[first].data), fixed)
    result = law_report.run(law, tables[choice.value].data, options, fits.get(choice.value))
    result.record.extra["decay"] = choice.record()
    return AnnealingFit(result, choice, tables[choice.value], {lam: fits[lam] for lam in choice.kept if lam in fits})


def predict(af: AnnealingFit, target_df: pd.DataFrame, cols, level: float) -> pd.DataFrame:
    """law_report.predictions at the chosen lambda, each interval widened over the kept lambdas."""
    law = af.result.fit.law
    target = law_table(target_df, cols, law.inputs, with_loss=False, decay=af.choice.value)
    pred = law_report.predictions(af.result, target.frame, target.data, level)
    points = {lam: np.exp(law_fit.predict_log(f, law_table(target_df, cols, law.inputs, with_loss=False,
                                                           decay=lam).data)[0])
              for lam, f in af.fits.items() if lam != af.choice.value}
    return widen(pred, points)
