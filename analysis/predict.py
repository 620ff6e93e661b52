"""python -m analysis.predict --fits FILE --flops C[,C...] [--at N:D[,N:D...]] [--json]

What a fitted law predicts, from any fits.json (analysis.fit, or a study's DIR/fits/fits.json): per
budget C, the compute-optimal N*, D*, D*/N* and the loss there, each with the percentile interval of
the fit's resampled laws; per --at N:D, one run's loss with its prediction interval (resampled laws
plus one run's noise). A thin shell over analysis.laws.predict.
"""
from __future__ import annotations

import json
import sys

from analysis.cli_common import floats, run_main
from analysis.laws import predict
from analysis.records import InputError
from plumbing.cli import Parser


def build_parser() -> Parser:
    p = Parser(prog="python -m analysis.predict", description=__doc__.split("\n\n")[1])
    p.add_argument("--fits", required=True, help="fits.json with an Approach 3 fit")
    p.add_argument("--flops", type=floats, default=(), help="comma-separated budgets C in the fit's FLOPs")
    p.add_argument("--at", default="", help="comma-separated N:D pairs: one run's loss with its prediction interval")
    p.add_argument("--approach", default=predict.DEFAULT_APPROACH, help="the fit that predicts (default approach3)")
    p.add_argument("--level", type=float, default=0.95, help="interval level (default 0.95)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def _pairs(text: str) -> list[tuple[float, float]]:
    try:
        return [(float(a), float(b)) for a, b in (x.split(":") for x in text.split(",") if x.strip())]
    except ValueError:
        raise InputError(f"--at {text}: comma-separated N:D pairs, e.g. 4e4:2e6") from None


def _iv(x: predict.Interval) -> str:
    return f"{x.mid:.4g}" + ("" if x.lo != x.lo else f" [{x.lo:.4g}, {x.hi:.4g}]")


def main_body(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.flops and not args.at:
        raise InputError("give --flops C[,C...] and/or --at N:D[,N:D...]")
    if not 0 < args.level < 1 or any(c <= 0 for c in args.flops):
        raise InputError("--level in (0, 1) and positive --flops, e.g. --flops 1e13,5.76e23")
    try:
        body = json.load(open(args.fits))
    except (OSError, ValueError) as e:
        raise InputError(f"--fits {args.fits}: {e}") from None
    pr = predict.Predictor.from_fits(body, args.approach, args.level)
    allocs = [pr.allocation(c) for c in args.flops]
    losses = [pr.loss(n, d) for n, d in _pairs(args.at)]
    if args.json:
        print(json.dumps({"approach": pr.approach, "level": pr.level, "resamples": len(pr.draws),
                          "noise_sd": pr.noise_sd, "noise": pr.noise_source,
                          "allocations": [a.to_json() for a in allocs], "losses": [x.to_json() for x in losses]}))
        return 0
    print(f"{pr.approach}: {len(pr.draws)} resampled laws, {pr.level:.0%} intervals; one run's noise "
          f"{pr.noise_sd:.3g} nats ({pr.noise_source})")
    for a in allocs:
        print(f"C={a.C:.3g}  N*={_iv(a.N)}  D*={_iv(a.D)}  D*/N*={_iv(a.ratio)}  loss={_iv(a.loss)}")
    for x in losses:
        print(f"N={x.N:.4g} D={x.D:.4g}  one run's loss={_iv(x.loss)} (prediction interval)")
    return 0


def main(argv=None) -> int:
    return run_main(main_body, argv)


if __name__ == "__main__":
    sys.exit(main())
