"""Approach 2's interval coverage on many simulated studies of isoflop_cpu's design, cheaply.

    .venv/bin/python bench/approach2_coverage.py [--studies 1500] [--scenarios correct,heavy]
        [--heavy mixture] [--resamples 200] [--seed 5] [--results FILE [--fits fits.json]]

`python -m analysis.calibrate` fits every approach and check per simulated study (~2 s each on the
2-core CPU), so its 200 studies give a coverage to +-1.5-2 points. Approach 2 alone costs ~0.05 s a
study, so thousands pin its coverage down to +-0.5. The studies, truth and intervals are the
calibration's own (analysis.uncertainty.calibrate: the design of synthetic.cpu_table, the truth its
Approach 3 fit, the same draw_losses and seeds per study as run_scenario): a's interval as
fitters.approach2_fit builds it (parametric.plan's draws, refitted by approach2_many with the
measured noise as weights), N_opt at the target (10x the largest budget) as the report's projection
(figures.projection_intervals), summarised by calibrate.summarise: coverage +- its binomial error,
mean width over the spread of the estimates, and bias, per scenario. --results (and --fits) calibrate a study's own
table instead, with its measured noise and eval offset, as `python -m analysis.calibrate` reads them.
"""
import argparse
import pathlib
import tempfile
import time

import numpy as np

from analysis import calibrate as cli
from analysis.laws import approach2_many
from analysis.output import figures
from analysis.tables import tables
from analysis.uncertainty import calibrate, noise, parametric, synthetic


def study(d: calibrate.Design, loss, resamples: int, seed: int) -> tuple | None:
    """One simulated study as calibrate.summarise reads it: (estimates, intervals, checks), None where
    Approach 2 cannot fit it."""
    runs = d.runs.with_loss(loss)
    sig = noise.run_noise(runs).sigma
    rows = approach2_many.rows_of(sig, False, lambda f: {"a": f.n_law.exponent, "N": float(np.log10(f.n_law(d.target)))})
    full = rows(runs, runs.loss[None])[0]
    if not isinstance(full, dict):
        return None
    got = [g["a"] for g in rows(runs, parametric.loss_draws(parametric.plan(runs), resamples, seed)) if isinstance(g, dict)]
    n_iv = figures.projection_intervals(runs, (d.target,), "parabola", False, 0.95, resamples, seed).get(("N", d.target))
    if len(got) < 10 or n_iv is None:
        return None
    return ({"approach2_a": full["a"], "approach2_N_opt": full["N"]},
            {"approach2_a": tuple(np.percentile(got, [2.5, 97.5])), "approach2_N_opt": tuple(np.log10(n_iv))}, {})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--studies", type=int, default=1500)
    ap.add_argument("--scenarios", default="correct,heavy")
    ap.add_argument("--heavy", default="mixture", choices=calibrate.HEAVY_MODES)
    ap.add_argument("--resamples", type=int, default=calibrate.CalibrationOptions.resamples)  # the fits' own
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--results", help="a study's results.csv (default: synthetic.cpu_table)")
    ap.add_argument("--fits", help="with --results: its fits.json, whose Approach 3 law is the truth")
    a = ap.parse_args()
    path = a.results
    if path is None:
        path = pathlib.Path(tempfile.mkdtemp()) / "cpu.csv"
        synthetic.cpu_table(path)
    opts = calibrate.CalibrationOptions(studies=a.studies, resamples=a.resamples, seed=a.seed, heavy=a.heavy)
    law = cli.law_from_fits(a.fits) if a.fits else None
    d = calibrate.design(tables.load_runs(path), opts, law, "fits.json" if a.fits else "")
    for scenario in a.scenarios.split(","):
        t0 = time.time()
        losses = calibrate.draw_losses(d, scenario, a.studies, calibrate.scenario_rng(a.seed, scenario), a.heavy)
        truth = calibrate.true_values(d, scenario)
        got = [study(d, loss, a.resamples, calibrate.study_seed(a.seed, scenario, i)) for i, loss in enumerate(losses)]
        got = [g for g in got if g is not None]
        print(f"{scenario}: {len(got)} of {a.studies} studies fitted, {a.resamples} resamples each, {time.time() - t0:.0f} s")
        for key, v in calibrate.summarise(truth, got, 0.95)["intervals"].items():
            print(f"  {key:16s} coverage {100 * v['coverage']:5.1f} +- {100 * v['coverage_error']:.1f}%  "
                  f"width/spread {v['width_ratio']:.2f}  bias {v['bias']:+.4f}")


if __name__ == "__main__":
    main()
