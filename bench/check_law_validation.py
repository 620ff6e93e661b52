"""False-alarm rates of the registry laws' leave-one-out and rolling-origin checks
(analysis.laws.law_validation), measured on synthetic tables whose law is exactly right: bench/law_speed's
design (N in [1e7, 3e9], D/N in [2, 500], unique tokens in {1e8, ..., 1e13}) with Gaussian noise of
`--noise` in log loss, fitted from starts near the truth (the checks, not the grid search, are measured).
sigma is either the table's own (a `final_eval_loss_se` column holding the true noise: --sigma known)
or the fit's residual RMS (--sigma residual, what a table without seeds or SEs gets).

    PYTHONPATH=. python bench/check_law_validation.py --law overtraining --tables 40 [--rows 80] [--bootstrap 0]

Prints each table's verdicts and the rates with their binomial standard errors. Only measures.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from analysis.laws import law_report, registry
from analysis.laws.law_table import LawColumns, law_table

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from law_speed import TRUTH, table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--law", default="overtraining")
    p.add_argument("--tables", type=int, default=40)
    p.add_argument("--rows", type=int, default=80)
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--sigma", choices=("known", "residual"), default="residual")
    p.add_argument("--bootstrap", type=int, default=0)
    a = p.parse_args()
    law = registry.get(a.law)
    truth = np.array([pr.to_search(TRUTH[a.law][pr.name]) for pr in law.params])
    fails = {"leave-one-out": 0, "rolling origin": 0}
    t0 = time.time()
    for i in range(a.tables):
        df = table(a.law, a.rows, seed=1000 + i)  # the design; the loss is redrawn at --noise
        df["loss"] = np.exp(np.log(_noise_free(a.law, df)) + a.noise * np.random.default_rng(i).standard_normal(len(df)))
        if a.sigma == "known":
            df["final_eval_loss_se"] = a.noise * df["loss"]
        data = law_table(df, LawColumns(), law.inputs).data
        starts = tuple(map(tuple, truth[None] + 0.05 * np.random.default_rng(i).uniform(-1, 1, (3, len(truth)))))
        res = law_report.run(law, data, law_report.LawOptions(bootstrap=a.bootstrap, starts=starts))
        rows = {d["name"].split(" predictions")[0]: d for d in res.record.extra["diagnostics"] if "predictions" in d["name"]}
        for k in fails:
            fails[k] += rows[k]["holds"] is False
        print(i, {k: (rows[k]["holds"], round(rows[k].get("max_abs_z", float("nan")), 2)) for k in fails}, flush=True)
    for k, f in fails.items():
        rate = f / a.tables
        print(f"{k}: {f}/{a.tables} false alarms = {rate:.3f} +- {math.sqrt(rate * (1 - rate) / a.tables):.3f}")
    print(f"{time.time() - t0:.0f} s")


def _noise_free(name: str, df):
    import jax
    import jax.numpy as jnp
    law = registry.get(name)
    logs = {"log_n": np.log(df["params"].to_numpy()), "log_d": np.log(df["tokens"].to_numpy()),
            "log_u": np.log(df["unique_tokens"].to_numpy())}
    with jax.enable_x64(True):
        x = {pr.name: jnp.full((1, 1), pr.to_search(TRUTH[name][pr.name])) for pr in law.params}
        consts = {k: jnp.float64(v) for k, v in law.constants(logs).items()}
        return np.exp(np.asarray(law.predict_log(x, {k: jnp.asarray(v) for k, v in logs.items()}, consts))[0])


if __name__ == "__main__":
    main()
