"""python -m analysis.fit --results FILE --approach {1,2,3,kaplan,all} --out DIR

Fits scaling laws to a results table, prints one table and the diagnostics, and writes
DIR/fits.json (per approach: E, A, B, alpha, beta, a, b, G where they apply, the objective, and
bootstrap intervals; then "convention", the one FLOP convention every fit used, and "diagnostics":
checks, IsoFLOP minima, a by approach, validation, the FLOP-convention audit, seed noise).
A thin shell over analysis.laws.fitters.fit (FitOptions -> FitResult); the checks live in
analysis.diagnostics.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from analysis import law_cli
from analysis.cli_common import (add_grid_flags, add_smoothing_flag, add_table_flags, columns_from, grid_from,
                                 run_main)
from analysis.records import Fit, write_atomic
from plumbing.cli import Parser

# The approaches' machinery (fitters, diagnostics: scipy.optimize, interpolate, stats) is imported by
# the functions that use it, so `--law` starts without it (~1 s of its ~3 s of imports, 2-core CPU).


def build_parser() -> Parser:
    p = Parser(prog="python -m analysis.fit", description=__doc__.split("\n\n")[1])
    add_table_flags(p)
    p.add_argument("--approach", choices=("1", "2", "3", "kaplan", "all"), default="all",
                   help="which fit; 'all' runs 2, 3, kaplan, and 1 when --curves is given")
    p.add_argument("--out", required=True, help="directory for fits.json (and holdout.csv with --validate)")
    p.add_argument("--curves", help="loss curves CSV (run_id, params, tokens, [flops], loss) for Approach 1")
    p.add_argument("--curve-loss-col", help="curve loss column (default: train_loss if it has values, else eval_loss)")
    p.add_argument("--smooth", type=int, default=1, help="Approach 1: moving-average window over logged points")
    add_smoothing_flag(p)
    p.add_argument("--interp", choices=("parabola", "akima"), default="parabola",
                   help="Approach 2: IsoFLOP profile model in log N")
    p.add_argument("--include-edges", action="store_true",
                   help="Approaches 1-2: keep optima that lie at the edge of the sampled N range")
    p.add_argument("--delta", type=float, default=1e-3, help="Approach 3: Huber delta on log-loss residuals")
    p.add_argument("--no-ml", action="store_true", help="Approach 3: skip Epoch's maximum-likelihood variant")
    p.add_argument("--bootstrap", type=int, default=200,
                   help="bootstrap resamples (0: none): parametric from the measured seed noise or eval SE; "
                        "runs resampled within budgets when the table has neither")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--level", type=float, default=0.95, help="central interval level of the percentiles")
    p.add_argument("--validate", action="store_true",
                   help="also write holdout.csv: Approach 3 without the largest budget, the error on its runs")
    p.add_argument("--no-validation", action="store_true",
                   help="skip the rolling-origin and leave-one-out refits of the diagnostics")
    p.add_argument("--true-e", type=float,
                   help="the source's exact optimal loss E* (nats/token): each fitted E is compared with it "
                        "in fits.json and the output (default: the table's true_loss column, if any)")
    add_grid_flags(p)
    law_cli.add_law_flags(p)
    return p


def options_from(args) -> fitters.FitOptions:
    """The parsed flags as the fit's typed options (validated there)."""
    from analysis.laws import fitters
    return fitters.FitOptions(
        approach=args.approach, curves=args.curves, curve_loss_col=args.curve_loss_col,
        flops_convention=args.flops_convention, smooth=args.smooth, smooth_dex=args.smooth_dex, interp=args.interp,
        include_edges=args.include_edges, delta=args.delta, ml=not args.no_ml, bootstrap=args.bootstrap,
        seed=args.seed, level=args.level, validation=not args.no_validation, true_e=args.true_e,
        grid=grid_from(args))


def format_table(fits: dict[str, Fit]) -> str:
    names = ("E", "A", "B", "alpha", "beta", "a", "b", "G", "alpha_N", "alpha_D", "alpha_C")
    lines = [f"{'fit':<13}" + "".join(f"{n:>14}" for n in names) + f"{'objective':>14}"]
    for key, f in fits.items():
        vals = "".join(f"{f.params[n]:>14.5g}" if n in f.params else f"{'-':>14}" for n in names)
        obj = f"{f.objective:>14.6g}" if f.objective is not None else f"{'-':>14}"
        lines.append(f"{key:<13}{vals}{obj}")
        if f.intervals:
            iv = "".join(f"{' [%.3g,%.3g]' % f.intervals[n]:>14}" if n in f.intervals else f"{'':>14}" for n in names)
            lines.append(f"{'  interval':<13}{iv}")
    return "\n".join(lines)


def main_body(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.law:
        return law_cli.main_law(args)
    from analysis.diagnostics import validate
    from analysis.tables import tables
    options = options_from(args)
    runs = tables.drop_highest_loss(tables.load_runs(args.results, columns_from(args)), args.drop_highest)
    fit_and_write(runs, options, args.out)
    if args.validate:
        rows = validate.holdout_largest_budget(runs, options.delta, options.grid)
        text = "run_id,N,D,loss,predicted,rel_error\n" + "".join(
            f"{r.run_id},{r.N:.6g},{r.D:.6g},{r.loss:.6g},{r.predicted:.6g},{r.rel_error:.6g}\n" for r in rows)
        write_atomic(os.path.join(args.out, "holdout.csv"), text)
        print(f"hold-out (largest budget, {len(rows)} runs): mean |rel error| "
              f"{np.mean([abs(r.rel_error) for r in rows]):.4g}")
        for r in rows:
            print(f"  {r.run_id:>10}  N={r.N:.4g}  D={r.D:.4g}  loss={r.loss:.4f}  pred={r.predicted:.4f}  "
                  f"err={r.rel_error:+.3%}")
    return 0


def fit_and_write(runs: tables.Runs, options: fitters.FitOptions, out_dir: str) -> fitters.FitResult:
    """What `python -m analysis.fit` does after reading its flags: fit, write out_dir/fits.json, print."""
    from analysis.laws import fitters
    for note in runs.notes:
        print(f"note: {note}", file=sys.stderr)
    result = fitters.fit(runs, options)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    os.makedirs(out_dir, exist_ok=True)
    result = result.write(os.path.join(out_dir, "fits.json"))
    print_result(result, runs)
    return result


def print_result(result: fitters.FitResult, runs: tables.Runs) -> None:
    """The table of fits, E against E*, the diagnostics (stdout) and each fit's notes (stderr)."""
    from analysis.diagnostics import diagnostics
    from analysis.laws import true_e
    from analysis.uncertainty import noise
    print(f"FLOP convention of every fit: {result.convention}; {noise.run_noise(runs).noise.line()}")
    print(format_table(result.fits))
    for line in true_e.lines(result.fits):
        print(line)
    print(diagnostics.format_diagnostics(result.diagnostics))
    for f in result.fits.values():
        for note in f.notes:
            print(f"note ({f.approach}): {note}", file=sys.stderr)


def main(argv=None) -> int:
    return run_main(main_body, argv)


if __name__ == "__main__":
    sys.exit(main())
