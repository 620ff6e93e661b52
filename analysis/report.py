"""python -m analysis.report --results FILE [--curves FILE] --out DIR [--study DIR] [--fits FILE]

Builds DIR/report.md and a self-contained DIR/report.html (figures embedded) from anyone's tables:
what was run (with --study: the plan, FLOPs, wall time, devices, versions, commit, and the headline
a's sensitivity to the lr law the plan took from study.hparams), every fit with
its intervals beside Hoffmann et al. 2022's Table 2, the diagnostics, the figures, the compute-optimal
N*, D*, D*/N* and loss at the target budgets with their cost, and every run left out with its reason.
Without --fits it fits into DIR/fits; without --figures, it draws into DIR/figures. A table without
a budget column gets its IsoFLOP budgets from its FLOP density. A thin shell over
analysis.output.report (the table read once, fitted once, drawn and reported from that fit).
"""
from __future__ import annotations

import os
import sys

from analysis import fit
from analysis.figures import print_drawn
from analysis.cli_common import add_grid_flags, add_table_flags, columns_from, floats, grid_from, run_main
from analysis.diagnostics import lr_sensitivity
from analysis.laws import fitters
from analysis.output import figures
from analysis.output.report import ReportOptions, Table, approach2_projection, figure_projections, report
from analysis.output.report_study import read_study
from analysis.records import InputError
from plumbing.cli import Parser


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
    p.add_argument("--notes", help="a text file of notes from earlier analysis steps, one per line")
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
        print_drawn(drawn)
        # (analysis.figures, given no budgets, says why it found none; the report keeps that with the fit's notes)
        notes += [*([table.note] if table.note and not table.detected else []), *drawn.notes]
    study = read_study(args.study) if args.study else None
    # a against the lr law the study planned with (study.hparams); into fits.json when fitted here
    sens = lr_sensitivity.for_study(args.study, table.runs, fits, write=not args.fits) if args.study else None
    md, html_path = report(table, fits, args.out, fig_dir, options, study, notes, a2, lr_sensitivity=sens)
    print(md)
    print(html_path)
    return 0


def main(argv=None) -> int:
    return run_main(main_body, argv)


if __name__ == "__main__":
    sys.exit(main())
