"""False-alarm rates of the two checks judged against a null (issue 17), measured on simulated
studies of isoflop_cpu's design whose law is exactly right (analysis.uncertainty.synthetic.cpu_table:
4 budgets 1.5e11-4.8e12, 9 sizes at +-0.4 decades, seeds 0 and 1 at the 2 central sizes, Gaussian
noise 0.022 nats). Each study is checked exactly as analysis.fit checks a table:
- "parabola and Akima vertices agree": approach2.vertex_gap_null at 95% (Bonferroni over budgets);
- "held-out largest budget: losses within the noise": validate.rolling_origin's last row, median |z|
  against its null 95% point.
The old fixed thresholds (vertex gap > max(0.05 dex, 2 SE, a rung); median |error| > 1%) are
measured beside them. Thresholds are derived, not tuned here: this only measures.

    PYTHONPATH=. python bench/check_false_alarms.py --studies 200 --out /tmp/false_alarms.jsonl

Prints each study as a JSON line (appended to --out, so a run can be resumed with --start) and
the rates with their binomial standard errors.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time

import numpy as np

from analysis.diagnostics import validate
from analysis.laws import approach2
from analysis.tables import tables
from analysis.uncertainty import noise, synthetic

FALSE_ALARM = 0.05


def one_study(seed: int, tmp: str) -> dict:
    path = os.path.join(tmp, f"s{seed}.csv")
    synthetic.cpu_table(path, seed=10_000 + seed)
    runs = tables.load_runs(path)
    rn = noise.run_noise(runs)
    gaps = approach2.vertex_gap_null(runs, rn.sigma, rn.dof, 1 - FALSE_ALARM, seed=0)
    optima = approach2.budget_optima(runs, sigma=rn.sigma)
    last = validate.rolling_origin(runs, sigma=rn.sigma, first=len(runs.budgets()) - 1, dof=rn.dof)[-1]
    return {"seed": seed, "sigma_hat": rn.noise.std, "dof": rn.dof,
            "vertex_fail": any(g > t for g, t in gaps.values()),
            "vertex_fail_old": any(o.vertices_differ for o in optima),
            "max_gap_ratio": max(g / t for g, t in gaps.values()),
            "loss_z": last.loss_z, "loss_z_95": last.loss_z_95, "loss_fail": bool(last.loss_z > last.loss_z_95),
            "loss_rel": last.loss_median_abs_rel, "loss_fail_old": bool(last.loss_median_abs_rel > 0.01)}


def rate(rows, key) -> str:
    n = len(rows)
    k = sum(r[key] for r in rows)
    p = k / n
    return f"{key}: {k}/{n} = {p:.3f} +- {math.sqrt(p * (1 - p) / n):.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, default=200)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--out", default="false_alarms.jsonl")
    a = p.parse_args()
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(a.start, a.studies):
            row = one_study(s, tmp)
            with open(a.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps(row), f"{time.time() - t0:.0f}s", flush=True)
    rows = [json.loads(line) for line in open(a.out)]
    for key in ("vertex_fail", "loss_fail", "vertex_fail_old", "loss_fail_old"):
        print(rate(rows, key))


if __name__ == "__main__":
    main()
