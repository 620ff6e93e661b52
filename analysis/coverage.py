"""python -m analysis.coverage [--trials 100] [--resamples 200] [--sigma 0.01] [--seeds 3]

Do the intervals of analysis.fit cover the truth at their nominal rate? Draws `trials` synthetic
studies from a known law (4 budgets 1e17..1e20, 9 sizes within +-0.5 decades of each optimum, the
3 central sizes under `seeds` seeds, Gaussian loss noise of `sigma` nats; with --seeds 1 each run
carries its eval SE = sigma instead), fits Approaches 2 and 3 with their parametric-bootstrap
intervals exactly as `analysis.fit` does, and prints how often each 95% interval holds the true a
(and E, alpha for Approach 3). With 100 trials a rate is known to about +-2 points.
This is the easy case (the law centred on the grid, low noise, 3 decades): a study's own coverage,
checks' false alarms and power come from `python -m analysis.calibrate` on its table.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

from analysis.laws import allocation, approach3, fitters
from analysis.tables import tables
from analysis.uncertainty import parametric
from analysis.uncertainty.synthetic import isoflop_table

LAW = allocation.LawParams(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.36)
SMALL_GRID = approach3.StartGrid(alpha=(0.0, 0.5, 1.0), beta=(0.0, 0.5, 1.0), e=(0.0, 0.5), a=(5.0, 10.0), b=(5.0, 10.0))


def trial(path, k: int, args) -> dict[str, bool]:
    isoflop_table(path, LAW, budgets=(1e17, 1e18, 1e19, 1e20), per_budget=9, span_dex=0.5,
                  sigma_nats=args.sigma, seeds=args.seeds, replicated=3, seed=100 + k,
                  eval_se=None if args.seeds > 1 else args.sigma)
    runs = tables.load_runs(path)
    opts = fitters.FitOptions(interp="parabola", include_edges=False, bootstrap=args.resamples, seed=k, level=0.95,
                              delta=1e-3, ml=False, grid=SMALL_GRID)
    ctx = fitters.Context(opts, runs, parametric.plan(runs))
    f2, f3 = fitters.approach2_fit(ctx)["approach2"], fitters.approach3_fit(ctx)["approach3"]
    truth = {"a": allocation.exponents(LAW)[0], "E": LAW.E, "alpha": LAW.alpha}
    inside = lambda f, name: f.intervals[name][0] <= truth[name] <= f.intervals[name][1]
    return {"approach2 a": inside(f2, "a"), "approach3 a": inside(f3, "a"), "approach3 E": inside(f3, "E"),
            "approach3 alpha": inside(f3, "alpha"),
            "_w2": (f2.intervals["a"][1] - f2.intervals["a"][0]) / 2, "_w3": (f3.intervals["a"][1] - f3.intervals["a"][0]) / 2}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m analysis.coverage", description=__doc__.split("\n\n")[1])
    p.add_argument("--trials", type=int, default=100, help="synthetic studies to draw")
    p.add_argument("--resamples", type=int, default=200, help="bootstrap resamples per study")
    p.add_argument("--sigma", type=float, default=0.01, help="loss noise per run, nats")
    p.add_argument("--seeds", type=int, default=3, help="seeds at the 3 central sizes (1: eval SE instead)")
    args = p.parse_args(argv)
    if args.trials < 1 or args.resamples < 20 or args.sigma <= 0 or args.seeds < 1:
        p.error("need --trials >= 1, --resamples >= 20, --sigma > 0, --seeds >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [trial(os.path.join(tmp, "r.csv"), k, args) for k in range(args.trials)]
    noise = f"{args.seeds} seeds at the 3 central sizes" if args.seeds > 1 else "no seeds, eval SE = sigma"
    print(f"{args.trials} synthetic studies, {args.resamples} resamples, sigma {args.sigma} nats ({noise})")
    for name in (k for k in rows[0] if not k.startswith("_")):
        hits = sum(r[name] for r in rows)
        print(f"  95% interval of {name:<16} covers the truth in {hits}/{len(rows)} = {hits / len(rows):.2f}")
    print(f"  median half-width of a: approach2 {np.median([r['_w2'] for r in rows]):.4f}, "
          f"approach3 {np.median([r['_w3'] for r in rows]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
