"""Synthetic results tables and curves drawn from a known law, for tests and for checking a
pipeline end to end before any real run exists."""
from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.laws import allocation


def isoflop_table(path, law: allocation.LawParams, budgets=(1e18, 3e18, 1e19, 3e19, 1e20),
                  per_budget: int = 9, span_dex: float = 0.8, noise: float = 0.0, seed: int = 0,
                  sigma_nats: float = 0.0, seeds: int = 1, replicated: int = 3, eval_se: float | None = None,
                  extra_rows=()) -> pd.DataFrame:
    """Runs on IsoFLOP profiles (C = 6ND), log-spaced in N within +-span_dex around each budget's
    optimum, loss = law(N, D) * exp(noise * normal) + sigma_nats * normal; written to `path` in our
    results.csv layout. With seeds > 1, the `replicated` sizes nearest each optimum are repeated
    under seeds 0..seeds-1 (as experiments.plan's study.seeds does); `eval_se` fills
    final_eval_loss_se; `extra_rows` (dicts) are appended as they are (e.g. a WSD trunk)."""
    rng = np.random.default_rng(seed)
    rows = []
    factors = np.logspace(-span_dex, span_dex, per_budget)
    central = set(np.argsort(np.abs(np.log(factors)))[:replicated])
    for c in budgets:
        n_star = allocation.optimal_allocation(law, c).N_opt[0]
        for i, f in enumerate(factors):
            n, d = n_star * f, c / (6 * n_star * f)
            for s in range(seeds if i in central else 1):
                loss = float(law.loss(n, d)) * float(np.exp(noise * rng.standard_normal()))
                if sigma_nats:  # drawn only when asked, so tables of older seeds stay the same
                    loss += sigma_nats * float(rng.standard_normal())
                rows.append({"run_id": f"r{len(rows)}", "budget": c, "params": n, "non_embedding_params": 0.9 * n,
                             "tokens": d, "flops_6n": 6 * n * d, "final_eval_loss": loss, "status": "ok",
                             "role": "isoflop", "seed": s,
                             **({"final_eval_loss_se": eval_se} if eval_se is not None else {})})
    df = pd.DataFrame([*rows, *extra_rows])
    df.to_csv(path, index=False)
    return df


def curves_table(path, law: allocation.LawParams, sizes, max_flops: float, points: int = 60) -> pd.DataFrame:
    """Loss curves (long format) where loss after D tokens is law(N, D): each model trained to
    max_flops; a stand-in for curves of runs whose schedules match their length."""
    rows = []
    for i, n in enumerate(sizes):
        d_max = max_flops / (6 * n)
        for step, d in enumerate(np.logspace(np.log10(d_max) - 2.5, np.log10(d_max), points)):
            rows.append({"run_id": f"m{i}", "params": n, "step": step, "tokens": d, "flops": 6 * n * d,
                         "train_loss": float(law.loss(n, d)), "eval_loss": float(law.loss(n, d))})
    df = pd.DataFrame(rows)
    df.to_csv(path, index=False)
    return df
