"""python -m analysis.report --results FILE [--curves FILE] --out DIR [--study DIR] [--fits FILE]

Builds DIR/report.md and a self-contained DIR/report.html (figures embedded) from anyone's tables:
what was run (with --study: the plan, FLOPs, wall time, devices, versions, commit), every fit with
its intervals beside Hoffmann et al. 2022's Table 2, the diagnostics, the figures, the compute-optimal
N*, D*, D*/N* and loss at the target budgets with their cost, and every run left out with its reason.
Without --fits it fits into DIR/fits (analysis.fitters.fit); without --figures, it draws into
DIR/figures (analysis.figures.draw). The table is read once; the report reads the fit it is given. A table without a budget column gets its IsoFLOP budgets from its FLOP density.
"""
from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np
import pandas as pd

from analysis import approach2, atomic, figures, fit, fitters, tables
from analysis import report_content as rc
from analysis.cli_common import Parser, add_grid_flags, add_table_flags, columns_from, floats, grid_from, run_main
from analysis.records import InputError
from analysis.report_render import to_html, to_markdown
from analysis.report_study import read_study

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
           study=None, notes=(), approach2_fit=None) -> tuple[str, str]:
    """report.md and report.html in out_dir from the table, the fit, the figures drawn into
    figures_dir and (optionally) the study directory's record; `notes`: what the earlier steps
    noted (those naming a figure go under the figures). `approach2_fit`: approach2_projection's
    result, when the caller has it. Returns the two paths."""
    targets = table.targets(options)
    r2, proj = approach2_fit or approach2_projection(table, fits, options)
    rate, source = _device_rate(options, study)
    inp = rc.Inputs(table.results, table.curves, fits.to_json(), table.runs, table.n_rows, figures_dir, targets, study,
                    rate, source, options.level, options.bootstrap, options.seed, table.dropped_highest, proj, r2)
    fits_json = inp.fits
    fit_notes = [n for n in notes if "figure" not in n and not n.startswith("no budget column")]
    sections = [rc.run_section(inp), rc.fits_section(fits_json, options.level, fit_notes), rc.table2_section(fits_json),
                rc.diagnostics_section(fits_json), rc.figures_section(figures_dir, [n for n in notes if "figure" in n]),
                rc.targets_section(inp), rc.left_out_section(inp, table.status)]
    title = options.title or (f"Scaling study {study.name}" if study else
                              f"Scaling laws fitted to {os.path.basename(table.results)}")
    md, html_path = os.path.join(out_dir, "report.md"), os.path.join(out_dir, "report.html")
    atomic.write_text(md, to_markdown(title, sections, out_dir))
    atomic.write_text(html_path, to_html(title, sections))
    return md, html_path


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


# --- CLI --------------------------------------------------------------------------------------------------

def build_parser() -> Parser:
    p = Parser(prog="python -m analysis.report", description=__doc__.split("\n\n")[1].replace("\n", " "))
    add_table_flags(p)
    p.add_argument("--curves", help="loss curves CSV (Approach 1, Figure 2)")
    p.add_argument("--out", required=True, help="directory for report.md, report.html (and fits/, figures/)")
    p.add_argument("--study", help="study directory: plan.json, launched.json, runs/*/run.json")
    p.add_argument("--fits", help="an existing fits.json (default: run analysis.fit into OUT/fits)")
    p.add_argument("--figures", help="a directory of figures already drawn (default: draw into OUT/figures)")
    p.add_argument("--targets", type=floats, help="target budgets, FLOPs (default: 10x the largest budget, 5.76e23)")
    p.add_argument("--bootstrap", type=int, default=200, help="resamples for intervals (fit and targets)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--level", type=float, default=0.95, help="central interval level")
    p.add_argument("--mfu", type=float, help="with --peak-flops: device-hours at this utilisation (0-1)")
    p.add_argument("--peak-flops", type=float, help="peak FLOP/s per device, for device-hours with --mfu")
    p.add_argument("--notes", help="a text file of notes from earlier analysis steps, one per line "
                                    "(experiments.study passes analysis.fit's and analysis.figures')")
    p.add_argument("--title", help="report title (default: the study's name, else the table's file name)")
    add_grid_flags(p)
    return p


def _check(args) -> None:
    for flag, path in (("--results", args.results), ("--curves", args.curves), ("--fits", args.fits),
                       ("--notes", args.notes)):
        if path and not os.path.isfile(path):
            raise InputError(f"{flag}: file {path} does not exist")
    if args.study and not os.path.isfile(os.path.join(args.study, "plan.json")):
        raise InputError(f"--study: {args.study}/plan.json not found; pass the study directory (or leave --study out)")


def main_body(argv=None) -> int:
    args = build_parser().parse_args(argv)
    options = ReportOptions(tuple(args.targets) if args.targets is not None else None, args.bootstrap, args.seed,
                            args.level, args.mfu, args.peak_flops, args.title)
    _check(args)
    os.makedirs(args.out, exist_ok=True)
    table = Table.load(args.results, columns_from(args), args.drop_highest, args.curves)
    if table.note:
        print(f"note: {table.note}", file=sys.stderr)
    notes: list[str] = []
    if args.notes:
        with open(args.notes) as fh:
            notes += [line.strip() for line in fh if line.strip()]
    fit_options = fitters.FitOptions(curves=args.curves, bootstrap=args.bootstrap, seed=args.seed, level=args.level,
                                     grid=grid_from(args))
    if args.fits:
        fits = fitters.FitResult.read(args.fits)
    else:
        fits = fit.fit_and_write(table.runs, fit_options, os.path.join(args.out, "fits"))
        notes += [*table.runs.notes, *fits.notes]
    a2 = approach2_projection(table, fits, options)
    fig_dir = args.figures or os.path.join(args.out, "figures")
    if not args.figures:
        drawn = figures.draw(table.runs, fit_options, fig_dir, None, table.targets(options), fits,
                             figure_projections(options, a2[1]))
        figures.print_drawn(drawn)
        # (analysis.figures, given no budgets, says why it found none; the report keeps that with the fit's notes)
        notes += [*([table.note] if table.note and not table.detected else []), *drawn.notes]
    study = read_study(args.study) if args.study else None
    md, html_path = report(table, fits, args.out, fig_dir, options, study, notes, a2)
    print(md)
    print(html_path)
    return 0


def main(argv=None) -> int:
    return run_main(main_body, argv)


if __name__ == "__main__":
    sys.exit(main())
