"""Time the 4,500-start Approach 3 fit (batched JAX L-BFGS, compilation included) against a plain
scipy L-BFGS-B loop over the same starts with exact gradients, and a 1,000-resample bootstrap.

.venv/bin/python bench/fit_speed.py [--data CSV] [--scipy-starts K] [--bootstrap 1000] [--no-single]
.venv/bin/python bench/fit_speed.py --study [--calibrate-studies K] [--calibrate-scenarios correct]
    [--no-fit] [--calibrate-out DIR]

--study (issue 17's speed targets) times, as subprocesses on a 44-run synthetic table of isoflop_cpu's
design (analysis.uncertainty.synthetic.cpu_table), the default `python -m analysis.fit` (every
approach, diagnostics, 200 resamples) and `python -m analysis.calibrate --studies K` (default 10, all
scenarios), whose time is EXTRAPOLATED linearly to 200 studies (the output says so; the first study
pays the compilation, so this overstates). CPU time (user + sys) is printed beside wall time.

Runs with the persistent compilation cache off, so the first fit pays its compilation. With
--scipy-starts K < 4500 the scipy loop runs on every (4500/K)-th start and its time is
EXTRAPOLATED to 4,500 starts; the output says so. Unless --no-single, also times, in the same run,
every start run to convergence in float64 (no float32 screening), for comparison. The machine is
shared: the load average is printed before and after, and only same-run times compare.
"""
import argparse
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
os.environ["SCALING_JAX_CACHE"] = "off"  # the analysis CLIs' own cache (analysis.cli_common): off too

import numpy as np  # noqa: E402
import scipy.optimize  # noqa: E402

from analysis.laws import approach3  # noqa: E402
from analysis.tables import tables  # noqa: E402
from analysis.uncertainty import bootstrap  # noqa: E402

DEFAULT = pathlib.Path(__file__).resolve().parents[2] / "shared/data/chinchilla-svg/svg_extracted_data.csv"


def scipy_value_and_grad(x, log_n, log_d, log_l, delta):
    a, b, e, alpha, beta = x
    pu, pv, pe = np.exp(a - alpha * log_n), np.exp(b - beta * log_d), np.exp(e)
    s = pu + pv + pe
    r = log_l - np.log(s)
    h = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    psi = np.clip(r, -delta, delta) / s
    g = -np.array([np.sum(psi * pu), np.sum(psi * pv), np.sum(psi) * pe,
                   -np.sum(psi * pu * log_n), -np.sum(psi * pv * log_d)])
    return h.sum(), g


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the child: user + sys) of one subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def study(calibrate_studies: int, scenarios: str | None = None, fit: bool = True, keep: str | None = None) -> None:
    from analysis.uncertainty import synthetic
    from analysis.uncertainty.calibrate import SCENARIOS
    with tempfile.TemporaryDirectory() as tmp:
        table = os.path.join(tmp, "results.csv")
        synthetic.cpu_table(table)
        print(f"load average (1, 5, 15 min) before: {os.getloadavg()}")
        if fit:
            wall, cpu = timed([sys.executable, "-m", "analysis.fit", "--results", table, "--out", os.path.join(tmp, "fit")])
            print(f"default analysis.fit (44 runs, 200 resamples, diagnostics): {wall:.1f} s wall, {cpu:.1f} s CPU")
        k = calibrate_studies
        names = scenarios.split(",") if scenarios else SCENARIOS
        wall, cpu = timed([sys.executable, "-m", "analysis.calibrate", "--results", table, "--out",
                           keep or os.path.join(tmp, "cal"), "--studies", str(k), "--scenarios", ",".join(names)])
        label = "" if k == 200 else f"  [EXTRAPOLATED x{200 / k:g} from {k} studies]"
        print(f"analysis.calibrate --studies {k} ({len(names)} scenarios: {','.join(names)}): {wall:.1f} s wall, {cpu:.1f} s CPU -> "
              f"{wall * 200 / k:.0f} s wall, {cpu * 200 / k:.0f} s CPU for 200 per scenario{label}")
        print(f"load average (1, 5, 15 min) after: {os.getloadavg()}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(DEFAULT))
    p.add_argument("--scipy-starts", type=int, default=4500, help="run scipy on this many starts (evenly spaced)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--no-single", action="store_true", help="skip the all-starts-in-float64 comparison")
    p.add_argument("--study", action="store_true", help="time the default fit and a calibration (issue 17)")
    p.add_argument("--calibrate-studies", type=int, default=10, help="with --study: studies to calibrate")
    p.add_argument("--calibrate-scenarios", help="with --study: comma-separated scenarios (default: all)")
    p.add_argument("--no-fit", action="store_true", help="with --study: time the calibration only")
    p.add_argument("--calibrate-out", help="with --study: keep calibration.json in this directory")
    args = p.parse_args()
    if args.study:
        return study(args.calibrate_studies, args.calibrate_scenarios, not args.no_fit, args.calibrate_out)
    print(f"load average (1, 5, 15 min) before: {os.getloadavg()}")
    runs = tables.drop_highest_loss(tables.load_runs(args.data, tables.Columns(n="Model Size", c="Training FLOP", loss="loss")), 5)
    n, d, loss = runs.N, runs.D, runs.loss

    t0 = time.perf_counter()
    ours = approach3.fit_huber(n, d, loss)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    approach3.fit_huber(n, d, loss)
    t_ours_warm = time.perf_counter() - t0
    print(f"ours : 4500 starts (float32 screen, best {approach3.POLISH} polished in float64) in {t_ours:.2f} s (compilation included; {t_ours_warm:.2f} s compiled), "
          f"objective {ours.objective:.10e}, alpha {ours.params.alpha:.6f}, beta {ours.params.beta:.6f}, "
          f"E {ours.params.E:.6f}, A {ours.params.A:.2f}, B {ours.params.B:.2f}, converged starts {ours.n_converged}")

    if not args.no_single:
        # The same fit without screening: all 4,500 starts to convergence in float64 (the previous
        # method, with the current L-BFGS). Its compilation is separate (other shapes and options).
        t0 = time.perf_counter()
        single = approach3.fit_huber(n, d, loss, options=approach3.FIT_OPTIONS, polish=4500)
        t_single = time.perf_counter() - t0
        print(f"all 4500 starts in float64: {t_single:.2f} s (compilation included), objective "
              f"{single.objective:.10e}, alpha {single.params.alpha:.6f}; screened/all: {t_ours / t_single:.2f}, "
              f"|d objective| = {abs(single.objective - ours.objective):.1e}")

    grid = approach3.StartGrid().points()
    step = max(1, len(grid) // max(args.scipy_starts, 1))
    sub = grid[::step]
    args_np = (np.log(n), np.log(d), np.log(loss), 1e-3)
    best_f, best_x = np.inf, None
    t0 = time.perf_counter()
    for x0 in sub:
        r = scipy.optimize.minimize(scipy_value_and_grad, x0, args=args_np, jac=True, method="L-BFGS-B")
        if np.isfinite(r.fun) and r.fun < best_f:
            best_f, best_x = r.fun, r.x
    t_scipy = time.perf_counter() - t0
    full = t_scipy * len(grid) / len(sub)
    label = "" if len(sub) == len(grid) else f"  [EXTRAPOLATED from {len(sub)} of {len(grid)} starts]"
    print(f"scipy: {len(sub)} starts in {t_scipy:.1f} s -> {full:.1f} s for 4500{label}, objective {best_f:.8e}, "
          f"alpha {best_x[3]:.5f}, beta {best_x[4]:.5f}, E {np.exp(best_x[2]):.5f}")
    print(f"ratio scipy/ours (compilation included): {full / t_ours:.1f}x; same optimum: "
          f"|d objective| = {abs(best_f - ours.objective):.2e}, |d alpha| = {abs(best_x[3] - ours.params.alpha):.2e}")

    if args.bootstrap:
        t0 = time.perf_counter()
        s = bootstrap.approach3_samples(n, d, loss, ours.x, args.bootstrap, seed=0)
        t_boot = time.perf_counter() - t0
        lo, hi = np.percentile(s["alpha"], [2.5, 97.5])
        print(f"bootstrap: {args.bootstrap} resamples in {t_boot:.2f} s (compilation included), alpha 95% [{lo:.4f}, {hi:.4f}]")
    print(f"load average (1, 5, 15 min) after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
