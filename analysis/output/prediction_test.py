"""The study's test of its own prediction: the frozen prediction (a study's DIR/prediction.json,
written before the validation runs trained) against what those runs measured (results.csv rows of
role "validation"). `from_rows` builds the `PredictionTest` record, `section` renders it as the
report's first section and `to_json` is fits.json's "prediction_test".

The prediction interval is the resampled laws' spread plus one run's noise (analysis.laws.predict);
the eval set's own sampling error is not in it: the grid and the validation runs share that eval set,
so its offset is common to both and cancels in measured - predicted.
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd

from analysis.laws.predict import Interval
from analysis.output.report_render import Bullets, Section, Table
from analysis.records import write_atomic

ROLE = "validation"
WITHIN_PCT = 1.5  # the target: measured within 1.5% of the prediction


def _num(v) -> float:
    return math.nan if v is None else float(v)


@dataclasses.dataclass(frozen=True)
class RunTest:
    run_id: str
    C: float
    N: float
    offset_dex: float  # log10(N / predicted N*)
    predicted: Interval  # the frozen 95% prediction interval
    measured: float  # NaN: not measured (yet)
    status: str

    @property
    def error_pct(self) -> float:
        return 100 * (self.measured - self.predicted.mid) / self.predicted.mid

    @property
    def units(self) -> float:
        return self.predicted.units(self.measured)

    @property
    def inside(self) -> bool | None:
        return None if math.isnan(self.measured) or math.isnan(self.predicted.lo) else self.predicted.contains(self.measured)

    def to_json(self) -> dict:
        return {"run_id": self.run_id, "C": self.C, "N": self.N, "offset_dex": self.offset_dex,
                "predicted": self.predicted.to_json(), "measured": self.measured, "status": self.status,
                "error_pct": self.error_pct, "interval_units": self.units, "inside": self.inside}


@dataclasses.dataclass(frozen=True)
class Optimum:
    """Where the measured optimum of one validation budget lies against the predicted N*."""
    C: float
    predicted_N: Interval
    best_N: float  # the measured best of the sizes (NaN: none measured)
    best_is_predicted: bool | None  # the best size is the one nearest N* (None: one size, or none measured)
    parabola_N: float  # vertex of a parabola in log10 N through >= 3 measured sizes (NaN: none, or concave)

    def to_json(self) -> dict:
        return {"C": self.C, "predicted_N": self.predicted_N.to_json(), "best_N": self.best_N,
                "best_is_predicted": self.best_is_predicted, "parabola_N": self.parabola_N}


@dataclasses.dataclass(frozen=True)
class PredictionTest:
    approach: str
    rule: str
    fits_hash: str  # of the fit the prediction was frozen from
    same_fit: bool  # the grid's current fit is that one
    level: float
    noise: str
    resamples: int
    runs: tuple[RunTest, ...]
    optima: tuple[Optimum, ...]

    @property
    def verdict(self) -> str:
        measured = [r for r in self.runs if not math.isnan(r.measured)]
        if not measured:
            return f"pending: none of the {len(self.runs)} validation runs has a measured loss yet"
        judged = [r for r in measured if r.inside is not None]
        outside = [r for r in judged if not r.inside]
        worst = max(measured, key=lambda r: abs(r.error_pct))
        loss = (f"{len(judged) - len(outside)} of {len(judged)} measured losses inside their {self.level:.0%} "
                f"prediction interval" if judged else "no interval to judge against (no resamples, no noise)")
        loss += f"; largest error {worst.error_pct:+.2f}% ({worst.run_id})"
        placed = [o for o in self.optima if o.best_is_predicted is not None]
        where = ("" if not placed else "; predicted N* is the measured best" if all(o.best_is_predicted for o in placed)
                 else "; predicted N* is NOT the measured best at " + ", ".join(f"C={o.C:.3g} (best N={o.best_N:.3g}, "
                      f"{math.log10(o.best_N / o.predicted_N.mid):+.2f} decades)" for o in placed if not o.best_is_predicted))
        ok = not outside and abs(worst.error_pct) <= WITHIN_PCT and all(o.best_is_predicted is not False for o in placed)
        pending = f" ({len(self.runs) - len(measured)} runs not measured yet)" if len(measured) < len(self.runs) else ""
        return f"{'PASS' if ok else 'MISS'}: {loss}{where}{pending}."

    def to_json(self) -> dict:
        # "predicted_by", not "approach": a fits.json key with an "approach" field is read as a fit.
        return {"predicted_by": self.approach, "rule": self.rule, "fits_hash": self.fits_hash, "same_fit": self.same_fit,
                "level": self.level, "noise": self.noise, "resamples": self.resamples, "verdict": self.verdict,
                "runs": [r.to_json() for r in self.runs], "optima": [o.to_json() for o in self.optima]}


def measured_losses(results: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """run_id -> (final eval loss, status) of the validation rows of a results table."""
    if "role" not in results.columns:
        return {}
    rows = results[results["role"].astype(str).str.strip() == ROLE]
    out = {}
    for _, r in rows.iterrows():
        status = str(r.get("status", "") if pd.notna(r.get("status", "")) else "")
        loss = _num(r.get("final_eval_loss")) if status in ("completed", "") else math.nan
        out[str(r["run_id"])] = (loss, status or "completed")
    return out


def from_rows(frozen: dict, results: pd.DataFrame, current_hash: str) -> PredictionTest:
    got = measured_losses(results)
    runs = tuple(RunTest(r["run_id"], float(r["C"]), float(r["N"]), float(r["offset_dex"]),
                         Interval(*(_num(x) for x in r["predicted"])), *got.get(r["run_id"], (math.nan, "not run")))
                 for r in frozen["runs"])
    optima = tuple(_optimum(b, [r for r in runs if r.C == float(b["C"])]) for b in frozen["budgets"])
    return PredictionTest(frozen["approach"], frozen.get("rule", ""), frozen["fits_hash"],
                          frozen["fits_hash"] == current_hash, float(frozen.get("level", 0.95)),
                          frozen.get("noise", ""), int(frozen.get("resamples", 0)), runs, optima)


def _optimum(budget: dict, runs: list[RunTest]) -> Optimum:
    pred = Interval(*(_num(x) for x in budget["N"]))
    by_n: dict[float, list[float]] = {}
    for r in runs:
        if not math.isnan(r.measured):
            by_n.setdefault(r.N, []).append(r.measured)
    if not by_n:
        return Optimum(float(budget["C"]), pred, math.nan, None, math.nan)
    means = {n: float(np.mean(v)) for n, v in by_n.items()}
    best = min(means, key=means.get)
    nearest = min({r.N for r in runs}, key=lambda n: abs(math.log(n / pred.mid)))
    vertex = math.nan
    if len(means) >= 3:
        x = np.log10(list(means))
        c2, c1, _ = np.polyfit(x, list(means.values()), 2)
        vertex = float(10 ** (-c1 / (2 * c2))) if c2 > 0 else math.nan
    return Optimum(float(budget["C"]), pred, float(best), (best == nearest) if len({r.N for r in runs}) > 1 else None,
                   vertex)


def from_study(frozen: dict, results_csv: str, fits_body: dict) -> PredictionTest:
    from analysis.laws.predict import fits_hash
    return from_rows(frozen, pd.read_csv(results_csv), fits_hash(fits_body))


def write_into(fits_path: str, test: PredictionTest) -> None:
    """fits.json gains "prediction_test" beside the fits (which never read the validation runs)."""
    with open(fits_path) as fh:
        body = json.load(fh)
    body["prediction_test"] = test.to_json()
    clean = json.loads(json.dumps(body), parse_constant=lambda _: None)  # NaN as null
    write_atomic(fits_path, json.dumps(clean, indent=2) + "\n")


def _g(v, digits: int = 4) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}g}"


def section(test: PredictionTest) -> Section:
    head = ["run", "C", "N", "vs N* (dex)", f"predicted loss [{test.level:.0%} PI]", "measured", "error %",
            "interval units", "inside"]
    rows = [[r.run_id, _g(r.C, 3), f"{r.N:,.0f}", f"{r.offset_dex:+.2f}",
             f"{_g(r.predicted.mid)} [{_g(r.predicted.lo)}, {_g(r.predicted.hi)}]",
             _g(r.measured) if not math.isnan(r.measured) else r.status, _g(r.error_pct, 3),
             _g(r.units, 2), "–" if r.inside is None else ("yes" if r.inside else "NO")] for r in test.runs]
    orows = [[_g(o.C, 3), f"{_g(o.predicted_N.mid, 3)} [{_g(o.predicted_N.lo, 3)}, {_g(o.predicted_N.hi, 3)}]",
              _g(o.best_N, 3), "–" if o.best_is_predicted is None else ("yes" if o.best_is_predicted else "no"),
              _g(o.parabola_N, 3)] for o in test.optima]
    spread = (f"the spread of its {test.resamples} resampled laws" if test.resamples else
              "no parameter uncertainty (fitted with --bootstrap 0: the interval is too narrow)")
    fit_line = ("the grid's current fit is the one the prediction was frozen from" if test.same_fit else
                "the grid's current fit differs from the frozen one (refitted on other grid runs, or by another version of the analysis); "
                "the test keeps the frozen prediction, never the refit")
    return Section("Prediction test", [
        f"**{test.verdict}**",
        f"Before the validation runs trained, the grid's fit ({test.approach}, fit {test.fits_hash}; {test.rule}) "
        f"predicted each run's measured loss with a {test.level:.0%} prediction interval: {spread} plus one "
        f"run's noise ({test.noise}). The shared eval-set offset cancels: the grid and the validation runs are "
        f"evaluated on the same eval tokens, so where the fit drew it into its resamples, each resample's "
        f"own offset is taken out of its prediction. The "
        f"prediction is frozen in prediction.json; {fit_line}. The validation runs never enter the grid's fit. "
        f"Interval units: the error over the interval's half-width on its side (|u| <= 1: inside).",
        Table(head, rows),
        Table(["budget C", "predicted N* [interval]", "measured best N", "best is the predicted N*",
               "parabola N_opt (>= 3 sizes)"], orows),
        Bullets([f"target: every measured loss inside its interval and within {WITHIN_PCT}% of the prediction, "
                 f"and the predicted N* the best of the sizes"])])
