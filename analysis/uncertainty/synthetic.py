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


# isoflop_cpu's design (experiments/configs/isoflop_cpu.py): 4 budgets 1.5e11-4.8e12 FLOPs, 9 sizes
# within +-0.4 decades of each budget's optimum, seeds 0 and 1 at the 2 central sizes (44 runs; the
# study has 42), seed noise 0.022 nats per run (pooled over its 8 repeated points).
CPU_BUDGETS = (1.5e11, 4.8e11, 1.5e12, 4.8e12)
CPU_SIGMA = 0.022


def cpu_law(E: float = 0.1, alpha: float = 0.34, n_opt: float = 3.97e4, c0: float = 6e11,
            depth: float = 0.088, span_dex: float = 0.4) -> allocation.LawParams:
    """A law with isoflop_cpu's prior shape under C = 6ND: alpha = beta (a = 0.5), N_opt(c0) =
    n_opt, profiles rising `depth` nats `span_dex` decades either side of the optimum (the study's
    measured 0.088 nats at 0.4 decades)."""
    g = n_opt / (c0 / 6) ** 0.5  # N_opt = G (C/6)^a with G = (A/B)^(1/(2 alpha)) when alpha = beta
    unit = allocation.LawParams(0.0, 1.0, g ** (-2 * alpha), alpha, alpha)
    prof = lambda n: float(unit.loss(n, c0 / (6 * n)))
    rise = (prof(n_opt * 10**span_dex) + prof(n_opt * 10**-span_dex)) / 2 - prof(n_opt)
    k = depth / rise
    return allocation.LawParams(E, k * unit.A, k * unit.B, alpha, alpha)


def cpu_table(path, law: allocation.LawParams | None = None, seed: int = 0, sigma: float = CPU_SIGMA) -> pd.DataFrame:
    """One simulated study of isoflop_cpu's design under `law` (default cpu_law()), Gaussian noise."""
    return isoflop_table(path, law or cpu_law(), budgets=CPU_BUDGETS, per_budget=9, span_dex=0.4, seed=seed,
                         sigma_nats=sigma, seeds=2, replicated=2)
