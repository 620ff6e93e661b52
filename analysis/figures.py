"""python -m analysis.figures --results FILE [--curves FILE] --out DIR [--which 2,3,4,kaplan]
    [--targets 1e13,5.76e23] [--fits fits.json]

Chinchilla Figs. 2, 3, 4 and Kaplan Fig. 1 (PNG + PDF) from any results table: a thin shell over
analysis.output.figures.draw (which says how each figure reads the data).
"""
from __future__ import annotations

import sys

from analysis.cli_common import (add_grid_flags, add_smoothing_flag, add_table_flags, columns_from, floats,
                                 grid_from, run_main)
from analysis.laws import fitters
from analysis.output.figures import Drawn, draw, figures_asked, table_columns
from analysis.tables import tables
from plumbing.cli import Parser

DEFAULT_FIGURES = "3,4,kaplan"


def build_parser() -> Parser:
    p = Parser(prog="python -m analysis.figures", description="Chinchilla Figs. 2-4 and Kaplan Fig. 1 as PNG + PDF.")
    add_table_flags(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--which", default=DEFAULT_FIGURES,
                   help=f"comma-separated subset of 2,3,4,kaplan (2 needs --curves); default {DEFAULT_FIGURES}, "
                        "plus 2 with --curves")
    p.add_argument("--curves", help="loss curves CSV for Figure 2 (Approach 1)")
    p.add_argument("--curve-loss-col", help="curve loss column (default: train_loss if it has values, then eval_loss, then loss)")
    add_smoothing_flag(p)
    p.add_argument("--interp", choices=("parabola", "akima"), default="parabola", help="Figure 3 profile model")
    p.add_argument("--include-edges", action="store_true", help="Figures 2-3: fit through edge optima too")
    p.add_argument("--delta", type=float, default=1e-3, help="Figure 4: Huber delta of the Approach 3 fit")
    p.add_argument("--targets", type=floats, help="target budgets in FLOPs to project to (default: 10x the "
                                                  "largest budget and 5.76e23)")
    p.add_argument("--fits", help="fits.json: Figure 4 draws its approach3 law instead of refitting")
    add_grid_flags(p)
    return p


def load_table(args) -> tables.Runs:
    df = tables.read_table(args.results)
    cols, _, note = table_columns(df, columns_from(args))
    if note:
        print(f"note: {note}", file=sys.stderr)
    return tables.drop_highest_loss(tables.runs_from(df, cols, args.results), args.drop_highest)


def print_drawn(drawn: Drawn) -> None:
    for note in drawn.notes:
        print(f"note: {note}", file=sys.stderr)
    for w in drawn.paths:
        print(w)


def options_from(args) -> fitters.FitOptions:
    return fitters.FitOptions(curves=args.curves, curve_loss_col=args.curve_loss_col,
                              flops_convention=args.flops_convention, smooth_dex=args.smooth_dex, interp=args.interp,
                              include_edges=args.include_edges, delta=args.delta, grid=grid_from(args))


def main_body(argv=None) -> int:
    args = build_parser().parse_args(argv)
    which = {w.strip() for w in args.which.split(",") if w.strip()}
    # By default, draw what the table supports; a figure asked for by name must be drawn.
    explicit = args.which != DEFAULT_FIGURES
    options = options_from(args)
    asked = frozenset(which) if explicit else None
    figures_asked(asked, options, args.targets)  # bad flags fail before the table is read
    runs = load_table(args)
    fits = fitters.FitResult.read(args.fits) if args.fits else None
    print_drawn(draw(runs, options, args.out, asked, args.targets, fits))
    return 0


def main(argv=None) -> int:
    return run_main(main_body, argv)


if __name__ == "__main__":
    sys.exit(main())
