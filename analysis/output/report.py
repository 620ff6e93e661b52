"""The report as a library: `report(Table, FitResult, ...)` writes report.md and a self-contained
report.html (figures embedded) from anyone's tables: what was run (with a study directory: the plan,
FLOPs, wall time, devices, versions, commit), every fit with its intervals beside Hoffmann et al.
2022's Table 2, the diagnostics, the figures, the compute-optimal N*, D*, D*/N* and loss at the
target budgets with their cost, and every run left out with its reason. `Table.load` reads the
results table once; the report reads the fit it is given. `python -m analysis.report` is its CLI.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import pandas as pd

from analysis.laws import approach2, fitters
from analysis.output import calibration_section, figures, lr_sensitivity_section, prediction_test
from analysis.output import report_content as rc
from analysis.output.report_render import to_html, to_markdown
from analysis.records import InputError
from analysis.tables import tables
from plumbing import atomic

FINISHED = (*tables.FINISHED_STATUS, "")  # a row with no status is a finished run


@dataclasses.dataclass(frozen=True)
class ReportOptions:
    """What the report adds to the fit: target budgets (None: 10x the largest budget and 5.76e23),
    the resampling of their projections, the device rate for device-hours, a title."""

    targets: tuple[float, ...] | None = None
    bootstrap: int = 200
    seed: int = 0
    level: float = 0.95
    mfu: float | None = None
    peak_flops: float | None = None
    title: str | None = None

    def __post_init__(self):
        if (self.mfu is None) != (self.peak_flops is None):
            raise InputError("--mfu and --peak-flops go together (device-hours = FLOPs / (MFU x peak))")
        if self.mfu is not None and not (0 < self.mfu <= 1 and self.peak_flops > 0):
            raise InputError("--mfu must be in (0, 1] and --peak-flops positive, e.g. --mfu 0.4 --peak-flops 989e12")
        if self.targets is not None and (not self.targets or any(t <= 0 for t in self.targets)):
            raise InputError("--targets: positive FLOP counts, e.g. 1e13,5.76e23")
        if self.bootstrap < 0 or not 0 < self.level < 1:
            raise InputError("--bootstrap must be >= 0 and --level in (0, 1)")


@dataclasses.dataclass(frozen=True)
class Table:
    """The results table, read once: the runs the fits use, and what the report says of the rest."""

    results: str
    curves: str | None
    runs: tables.Runs  # after --drop-highest
    n_rows: int
    status: dict[str, str]  # run id -> status, for rows that did not finish
    dropped_highest: tuple[str, ...]  # run ids left out by --drop-highest
    detected: tuple[float, ...] = ()  # budgets detected from the FLOP density (the table has none)
    note: str | None = None  # how budgets were detected, or why none were

    @classmethod
    def load(cls, results: str, cols: tables.Columns, drop_highest: int = 0, curves: str | None = None) -> "Table":
        df = tables.read_table(results)
        cols, detected, note = figures.table_columns(df, cols)
        all_runs = tables.runs_from(df, cols, results)
        order = np.argsort(-all_runs.loss)[:drop_highest] if drop_highest else []
        return cls(results, curves, tables.drop_highest_loss(all_runs, drop_highest), len(df),
                   _table_status(df, cols), tuple(str(all_runs.run_id[i]) for i in order), detected, note)

    def targets(self, options: ReportOptions) -> tuple[float, ...]:
        return tuple(options.targets) if options.targets else figures.default_targets(float(self.runs.C.max()))


def approach2_projection(table: Table, fits: fitters.FitResult, options: ReportOptions):
    """(Approach 2's fit, {("N"|"D", C): (lo, hi)} at the targets), (None, {}) without IsoFLOP budgets."""
    try:
        res = fits.approach2_under("parabola", False) or approach2.fit_approach2(table.runs)
        if not options.bootstrap:  # no resamples, no interval (one resample gave a zero-width one)
            return res, {}
        return res, figures.projection_intervals(table.runs, table.targets(options), "parabola", False,
                                                 options.level, options.bootstrap, options.seed)
    except InputError:
        return None, {}


def figure_projections(options: ReportOptions, projection: dict) -> dict | None:
    """The report's projections where Fig. 3 would resample the same way (its 200 resamples at 95%,
    seed 0), so the two agree and the resampling runs once; else None (Fig. 3 draws its own)."""
    same = (options.bootstrap, options.level, options.seed) == (figures.PROJECTION_BOOTSTRAP, 0.95, 0)
    return projection if same else None


def report(table: Table, fits: fitters.FitResult, out_dir: str, figures_dir: str, options: ReportOptions,
           study=None, notes=(), approach2_fit=None, prediction=None, calibration=None,
           lr_sensitivity=None) -> tuple[str, str]:
    """report.md and report.html in out_dir from the table, the fit, the figures drawn into
    figures_dir and (optionally) the study directory's record; `notes`: what the earlier steps
    noted (those naming a figure go under the figures). `approach2_fit`: approach2_projection's
    result, when the caller has it. `prediction`: a prediction_test.PredictionTest (a study with
    validation runs), the report's first section. `calibration`: a study_calibration.StudyCalibration
    (the study's own), shown after the diagnostics. `lr_sensitivity`: an
    analysis.diagnostics.lr_sensitivity.LrSensitivity (a study's a against its lr law), after the
    diagnostics too. Returns the two paths."""
    targets = table.targets(options)
    r2, proj = approach2_fit or approach2_projection(table, fits, options)
    rate, source = _device_rate(options, study)
    inp = rc.Inputs(table.results, table.curves, fits.to_json(), table.runs, table.n_rows, figures_dir, targets, study,
                    rate, source, options.level, options.bootstrap, options.seed, table.dropped_highest, proj, r2)
    fits_json = inp.fits
    fit_notes = [n for n in notes if "figure" not in n and not n.startswith("no budget column")]
    sections = [rc.run_section(inp), rc.fits_section(fits_json, options.level, fit_notes), rc.table2_section(fits_json),
                rc.diagnostics_section(fits_json),
                *([lr_sensitivity_section.section(lr_sensitivity)] if lr_sensitivity is not None else []),
                *([calibration_section.section(calibration.record, calibration.reason, check_kinds(fits_json))]
                  if calibration else []),
                rc.figures_section(figures_dir, [n for n in notes if "figure" in n]),
                rc.targets_section(inp), rc.left_out_section(inp, table.status)]
    if prediction is not None:
        sections.insert(0, prediction_test.section(prediction))
    title = options.title or (f"Scaling study {study.name}" if study else
                              f"Scaling laws fitted to {os.path.basename(table.results)}")
    md, html_path = os.path.join(out_dir, "report.md"), os.path.join(out_dir, "report.html")
    atomic.write_text(md, to_markdown(title, sections, out_dir), parents=True)
    atomic.write_text(html_path, to_html(title, sections), parents=True)
    return md, html_path


def check_kinds(fits_json: dict) -> dict[str, str]:
    return {c["name"]: c.get("kind", "test") for c in (fits_json.get("diagnostics") or {}).get("checks", ())}


def _device_rate(options: ReportOptions, study) -> tuple[float | None, str]:
    if options.mfu is not None:
        return (options.mfu * options.peak_flops,
                f"MFU {options.mfu:.0%} of {options.peak_flops:.3g} FLOP/s peak (--mfu, --peak-flops)")
    rate = study.flops_per_device_second() if study else None
    if rate is None:
        return None, ""
    n = sum(1 for rj in study.records.values() if rj.get("status") == "completed")
    mfu = study.mfu()
    return rate, (f"median over {n} completed runs of FLOPs/token x tokens/s per device"
                  + (f", MFU {mfu:.1%}" if mfu is not None else ", MFU unknown: no peak for this device"))


def _table_status(df: pd.DataFrame, cols) -> dict[str, str]:
    if not cols.status or cols.status not in df.columns:
        return {}
    ids = df[cols.run] if cols.run and cols.run in df.columns else df.get("run_id", pd.Series(range(len(df))))
    st = df[cols.status].fillna("").astype(str).str.lower()
    return {str(i): s for i, s in zip(ids, st) if s not in FINISHED}
