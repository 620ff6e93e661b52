"""python -m analysis.report --results FILE [--curves FILE] --out DIR [--study DIR] [--fits FILE]

Builds DIR/report.md and a self-contained DIR/report.html (figures embedded) from anyone's tables:
what was run (with --study: the plan, FLOPs, wall time, devices, versions, commit), every fit with
its intervals beside Hoffmann et al. 2022's Table 2, the diagnostics, the figures, the compute-optimal
N*, D*, D*/N* and loss at the target budgets with their cost, and every run left out with its reason.
Without --fits it runs analysis.fit into DIR/fits; without --figures, analysis.figures into
DIR/figures. A table without a budget column gets its IsoFLOP budgets from its FLOP density.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys

import numpy as np
import pandas as pd

from analysis import approach2, figures, fit, tables
from analysis import report_content as rc
from analysis.cli_common import add_grid_flags, add_table_flags, columns_from, floats, run_main
from analysis.records import InputError
from analysis.report_render import to_html, to_markdown
from analysis.report_study import read_study
from plumbing import atomic
from plumbing.cli import Parser

FINISHED = (*tables.FINISHED_STATUS, "")  # a row with no status is a finished run


def build_parser() -> Parser:
    p = Parser(prog="python -m analysis.report", description=__doc__.split("\n\n")[1].replace("\n", " "))
    add_table_flags(p)
    p.add_argument("--curves", help="loss curves CSV (Approach 1, Figure 2)")
    p.add_argument("--out", required=True, help="directory for report.md, report.html (and fits/, figures/)")
    p.add_argument("--study", help="study directory: plan.json, and provenance.json (written by experiments.collect)")
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


def table_argv(args, detected: tuple[float, ...]) -> list[str]:
    """The table flags as given, for analysis.fit and analysis.figures (so all three read the same rows)."""
    out = []
    for flag, dest in (("--n-col", "n_col"), ("--d-col", "d_col"), ("--c-col", "c_col"), ("--loss-col", "loss_col"),
                       ("--budget-col", "budget_col"), ("--n-nonembed-col", "n_nonembed_col"), ("--run-col", "run_col")):
        if getattr(args, dest):
            out += [flag, getattr(args, dest)]
    out += ["--status-col", args.status_col, "--flops-convention", args.flops_convention,
            "--snap-dex", repr(args.snap_dex), "--budget-gap-dex", repr(args.budget_gap_dex),
            "--drop-highest", str(args.drop_highest)]
    budgets = args.budgets or detected
    if budgets:
        out += ["--budgets", ",".join(repr(float(b)) for b in budgets)]
    for name in ("alpha", "beta", "e", "a", "b"):
        # "=": a value starting with "-" (log E starts) would read as a flag
        out.append(f"--grid-{name}=" + ",".join(repr(float(v)) for v in getattr(args, f"grid_{name}")))
    return out


def _check(args) -> None:
    if (args.mfu is None) != (args.peak_flops is None):
        raise InputError("--mfu and --peak-flops go together (device-hours = FLOPs / (MFU x peak))")
    if args.mfu is not None and not (0 < args.mfu <= 1 and args.peak_flops > 0):
        raise InputError("--mfu must be in (0, 1] and --peak-flops positive, e.g. --mfu 0.4 --peak-flops 989e12")
    if args.targets is not None and (not args.targets or any(t <= 0 for t in args.targets)):
        raise InputError("--targets: positive FLOP counts, e.g. 1e13,5.76e23")
    if args.bootstrap < 0 or not 0 < args.level < 1:
        raise InputError("--bootstrap must be >= 0 and --level in (0, 1)")
    for flag, path in (("--results", args.results), ("--curves", args.curves), ("--fits", args.fits),
                       ("--notes", args.notes)):
        if path and not os.path.isfile(path):
            raise InputError(f"{flag}: file {path} does not exist")
    if args.study and not os.path.isfile(os.path.join(args.study, "plan.json")):
        raise InputError(f"--study: {args.study}/plan.json not found; pass the study directory (or leave --study out)")


def _call(main, argv: list[str], what: str) -> list[str]:
    """Run another analysis command in-process; its stderr notes are kept for the report."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # its argparse rejected a flag
            code = e.code
    sys.stderr.write(err.getvalue())
    if code != 0:
        last = (err.getvalue().strip().splitlines() or ["(no message)"])[-1]
        raise InputError(f"{what} failed (exit {code}): {last}")
    return [line[len("note: "):] for line in err.getvalue().splitlines() if line.startswith("note: ")]


def _device_rate(args, study) -> tuple[float | None, str]:
    if args.mfu is not None:
        return args.mfu * args.peak_flops, f"MFU {args.mfu:.0%} of {args.peak_flops:.3g} FLOP/s peak (--mfu, --peak-flops)"
    rate = study.flops_per_device_second() if study else None
    if rate is None:
        return None, ""
    n = sum(1 for rj in study.records.values() if rj.get("status") == "completed")
    mfu = study.mfu()
    return rate, (f"median over {n} completed runs of FLOPs/token x tokens/s per device"
                  + (f", MFU {mfu:.1%}" if mfu is not None else ", MFU unknown: no peak for this device"))


def _table_status(path: str, cols) -> dict[str, str]:
    df = pd.read_csv(path)
    if not cols.status or cols.status not in df.columns:
        return {}
    ids = df[cols.run] if cols.run and cols.run in df.columns else df.get("run_id", pd.Series(range(len(df))))
    st = df[cols.status].fillna("").astype(str).str.lower()
    return {str(i): s for i, s in zip(ids, st) if s not in FINISHED}


def _dropped_highest(args, detected) -> tuple[str, ...]:
    if not args.drop_highest:
        return ()
    all_runs = figures.load_table(_without_drop(args), detected)
    order = np.argsort(-all_runs.loss)[: args.drop_highest]
    return tuple(str(all_runs.run_id[i]) for i in order)


def _without_drop(args):
    import copy
    a = copy.copy(args)
    a.drop_highest = 0
    return a


def _approach2(runs, targets, args):
    try:
        res = approach2.fit_approach2(runs)
        if not args.bootstrap:  # no resamples, no interval (one resample gave a zero-width one)
            return res, {}
        return res, figures.projection_intervals(runs, targets, "parabola", False, args.level,
                                                 args.bootstrap, args.seed)
    except InputError:
        return None, {}


def main_body(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _check(args)
    os.makedirs(args.out, exist_ok=True)
    detected = figures.detected_budgets(args)
    targs = table_argv(args, detected)
    curves = ["--curves", args.curves] if args.curves else []
    notes: list[str] = []
    if args.notes:
        with open(args.notes) as fh:
            notes += [line.strip() for line in fh if line.strip()]
    fits_path = args.fits or os.path.join(args.out, "fits", "fits.json")
    if not args.fits:
        notes += _call(fit.main, ["--results", args.results, *curves, *targs, "--approach", "all", "--out",
                                  os.path.dirname(fits_path), "--bootstrap", str(args.bootstrap),
                                  "--seed", str(args.seed), "--level", str(args.level)], "analysis.fit")
    with open(fits_path) as fh:
        fits = json.load(fh)
    runs = figures.load_table(args, detected)
    targets = tuple(args.targets) if args.targets else figures.default_targets(float(runs.C.max()))
    fig_dir = args.figures or os.path.join(args.out, "figures")
    if not args.figures:
        notes += _call(figures.main, ["--results", args.results, *curves, *targs, "--out", fig_dir, "--fits", fits_path,
                                      "--targets", ",".join(repr(t) for t in targets)], "analysis.figures")
    study = read_study(args.study) if args.study else None
    rate, source = _device_rate(args, study)
    r2, proj = _approach2(runs, targets, args)
    inp = rc.Inputs(args.results, args.curves, fits, runs, len(pd.read_csv(args.results)), fig_dir, targets, study,
                    rate, source, args.level, args.bootstrap, args.seed, _dropped_highest(args, detected), proj, r2)
    fit_notes = [n for n in notes if "figure" not in n and not n.startswith("no budget column")]
    sections = [rc.run_section(inp), rc.fits_section(fits, args.level, fit_notes), rc.table2_section(fits),
                rc.diagnostics_section(fits), rc.figures_section(fig_dir, [n for n in notes if "figure" in n]),
                rc.targets_section(inp), rc.left_out_section(inp, _table_status(args.results, columns_from(args)))]
    title = args.title or (f"Scaling study {study.name}" if study else f"Scaling laws fitted to {os.path.basename(args.results)}")
    md, html_path = os.path.join(args.out, "report.md"), os.path.join(args.out, "report.html")
    atomic.write_text(md, to_markdown(title, sections, args.out), parents=True)
    atomic.write_text(html_path, to_html(title, sections), parents=True)
    print(md)
    print(html_path)
    return 0


def main(argv=None) -> int:
    return run_main(main_body, argv)


if __name__ == "__main__":
    sys.exit(main())
