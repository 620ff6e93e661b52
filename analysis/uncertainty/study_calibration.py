"""A study's calibration, run once per fit: analysis.uncertainty.calibrate on the runs the study fitted,
with the study's fitted Approach 3 law as the truth, written to DIR/calibration.json and reused while
its inputs (the runs' design, their losses, the law, the settings) are unchanged.

The study runs it after its final fit (experiments.study, phase `calibrate`), so the report can say
how often its own 95% intervals cover on this design and how often each check false-alarms.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from analysis.laws import allocation, fitters
from analysis.records import InputError, write_atomic
from analysis.tables import tables
from analysis.uncertainty import calibrate as cal

FILE = "calibration.json"


@dataclasses.dataclass(frozen=True)
class StudyCalibration:
    """What the report shows: the record (None: not calibrated) and, when None, why not."""
    record: dict | None
    reason: str = ""
    reused: bool = False


def law_of(fits: fitters.FitResult) -> allocation.LawParams | None:
    f = fits.fits.get("approach3")
    if f is None or any(k not in f.params for k in ("E", "A", "B", "alpha", "beta")):
        return None
    return allocation.LawParams(*(float(f.params[k]) for k in ("E", "A", "B", "alpha", "beta")))


def inputs_key(runs: tables.Runs, law: allocation.LawParams, options: cal.CalibrationOptions) -> str:
    """Identity of a calibration's inputs: a rerun with the same key reuses calibration.json."""
    arrays = [runs.N, runs.D, runs.C, runs.loss, runs.budget]
    arrays += [a for a in (runs.seed, runs.loss_se) if a is not None]
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(np.asarray(a, np.float64)).tobytes())
    h.update(json.dumps([dataclasses.astuple(law), cal.settings_record(options), options.scenarios,
                         options.eval_offset_sd, options.sigma, options.target], default=str).encode())
    return h.hexdigest()[:16]


def write(path: str, record: dict) -> None:
    write_atomic(path, json.dumps(cal.json_safe(record), indent=2, allow_nan=False) + "\n")


def run(out_dir: str, runs: tables.Runs, fits: fitters.FitResult, options: cal.CalibrationOptions,
        log=None) -> StudyCalibration:
    """out_dir/calibration.json for this fit, reused when its inputs key matches; a table that cannot
    be calibrated (no Approach 3 law, no measured noise) gives the reason instead of an exception."""
    law = law_of(fits)
    if law is None:
        return StudyCalibration(None, "no Approach 3 law in the fit: nothing to simulate from")
    key = inputs_key(runs, law, options)
    path = os.path.join(out_dir, FILE)
    try:
        with open(path) as f:
            old = json.load(f)
        if old.get("inputs_key") == key:
            return StudyCalibration(old, reused=True)
    except (OSError, ValueError):
        pass
    try:
        record = cal.calibrate(runs, options, law, "the study's Approach 3 fit", log)
    except InputError as e:
        return StudyCalibration(None, str(e))
    record["inputs_key"] = key
    os.makedirs(out_dir, exist_ok=True)
    write(path, record)
    return StudyCalibration(cal.json_safe(record))
