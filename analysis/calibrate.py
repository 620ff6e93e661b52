"""python -m analysis.calibrate --results FILE [--fits fits.json] --out DIR

Calibrates a study's intervals and checks on its own design: simulates --studies studies of known
truth with the table's (N, D, C, seed) points and its measured noise, under the fitted law and under
named alternatives (heavy-tailed noise, a curved N exponent, a grid off the optimum), fits each as
analysis.fit does, and prints each 95% interval's empirical coverage (with its binomial error), its
mean width against the spread of the estimates, and each check's failure rate (false alarms under
`correct`, power under the others). Writes DIR/calibration.json. A thin shell over
analysis.uncertainty.calibrate.calibrate.
"""
from __future__ import annotations

import os
import sys

from analysis.cli_common import add_grid_flags, add_table_flags, columns_from, grid_from, run_main
from analysis.laws import allocation, fitters
from analysis.records import InputError
from analysis.tables import tables
from analysis.uncertainty import calibrate as cal, study_calibration
from plumbing.cli import Parser


def build_parser() -> Parser:
    p = Parser(prog="python -m analysis.calibrate", description=__doc__.split("\n\n")[1])
    add_table_flags(p)
    p.add_argument("--fits", help="the study's fits.json: its Approach 3 law is the truth (default: fit the table)")
    p.add_argument("--out", required=True, help="directory for calibration.json")
    p.add_argument("--studies", type=int, default=200, help="simulated studies per scenario")
    p.add_argument("--scenarios", default=",".join(cal.SCENARIOS),
                   help=f"comma-separated, from {', '.join(cal.SCENARIOS)}")
    p.add_argument("--resamples", type=int, default=200,
                   help="bootstrap resamples per simulated study: the fit's own (analysis.fit --bootstrap), "
                        "so the intervals calibrated are the ones it prints")
    p.add_argument("--level", type=float, default=0.95, help="central interval level")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated studies")
    p.add_argument("--eval-offset-sd", type=float,
                   help="sd of the eval set's offset shared by all runs of a study, nats "
                        "(default: the table's median final_eval_loss_se, else 0)")
    p.add_argument("--sigma", type=float,
                   help="run-to-run loss std, nats (default: measured from seed repeats or eval SE)")
    p.add_argument("--heavy", choices=cal.HEAVY_MODES, default="auto",
                   help=f"heavy scenario's noise: the table's seed residuals (auto: when >= {cal.MIN_RESIDUALS}) "
                        f"or the 87.5/12.5 mixture")
    p.add_argument("--target", type=float, help="target budget, FLOPs (default: 10x the largest C)")
    p.add_argument("--no-validation", action="store_true", help="skip the diagnostics' validation refits")
    p.add_argument("--ml", action="store_true", help="also fit Approach 3's ML variant (slow)")
    add_grid_flags(p)
    return p


def options_from(args) -> cal.CalibrationOptions:
    return cal.CalibrationOptions(
        studies=args.studies, scenarios=tuple(s.strip() for s in args.scenarios.split(",") if s.strip()),
        resamples=args.resamples, level=args.level, seed=args.seed, eval_offset_sd=args.eval_offset_sd,
        sigma=args.sigma, heavy=args.heavy, validation=not args.no_validation, ml=args.ml, target=args.target,
        grid=grid_from(args))


def law_from_fits(path) -> allocation.LawParams:
    if not os.path.exists(path):
        raise InputError(f"--fits: file {path} does not exist")
    try:
        f = fitters.FitResult.read(path).fits.get("approach3")
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"--fits {path}: not a fits.json ({e})") from None
    if f is None or any(k not in f.params for k in ("E", "A", "B", "alpha", "beta")):
        raise InputError(f"--fits {path}: no Approach 3 law in it (fit with --approach 3 or all)")
    return allocation.LawParams(*(f.params[k] for k in ("E", "A", "B", "alpha", "beta")))


def main_body(argv=None) -> int:
    args = build_parser().parse_args(argv)
    options = options_from(args)
    runs = tables.drop_highest_loss(tables.load_runs(args.results, columns_from(args)), args.drop_highest)
    law = law_from_fits(args.fits) if args.fits else None
    log = lambda line: print(line, file=sys.stderr, flush=True)
    record = cal.calibrate(runs, options, law, f"Approach 3 of {args.fits}" if args.fits else "", log)
    os.makedirs(args.out, exist_ok=True)
    study_calibration.write(os.path.join(args.out, study_calibration.FILE), record)
    print(cal.format_record(record))
    if "correct" in record["scenarios"]:
        print("\n" + cal.calibration_sentence(record))
    return 0


def main(argv=None) -> int:
    return run_main(main_body, argv)


if __name__ == "__main__":
    sys.exit(main())
