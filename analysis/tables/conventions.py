"""One FLOP convention per fit, and an audit of how much the convention moves a.

A table's C (and its budgets) are in the convention the study was planned in (tables.load_runs);
every fit of one fits.json uses it. The allocation implied by a fitted L(N, D) then minimises
L(N, C / f(N)) with f the study's FLOPs per token (interpolated in log N over its runs), which is
eq. 4 of Hoffmann et al. (a = beta/(alpha+beta)) only when f = 6N exactly.

The audit recomputes a and b under each convention the table counts (6N, 6N non-embedding,
Appendix F, Appendix F causal: results.csv's flops_<conv>) with N total or non-embedding. For
Approach 2 the IsoFLOP vertices stay where the profiles put them; what changes is the compute each
optimum is counted at (f_conv(N_opt) D_opt) and which N is regressed. For Approach 3 the fitted law
stays; its allocation is recomputed under f_conv. With small models the conventions differ most:
embeddings and attention's s^2 terms are a large share of the FLOPs, and differently at each N.
"""
from __future__ import annotations

import numpy as np
import scipy.optimize

from analysis.laws import allocation
from analysis.laws.approach2 import Approach2Result, fit_power_law, interp_log
from analysis.tables.tables import Runs

NAMES = {"6nd": "C = 6ND", "6n": "6N (total)", "6n_nonembed": "6N non-embedding", "chinchilla": "Appendix F",
         "chinchilla_causal": "Appendix F causal"}


def conventions_of(runs: Runs) -> list[str]:
    return list(dict.fromkeys([runs.convention, *runs.flops]))


def log_fpt(runs: Runs, convention: str):
    """log10 N -> log10 FLOPs per token under `convention`, interpolated over the table's runs."""
    x, y = np.log10(runs.N), np.log10(runs.flops_per_token(convention))
    return lambda xq: interp_log(xq, x, y)


def is_6n_like(runs: Runs, convention: str | None = None) -> float | None:
    """k when FLOPs per token are k*N for every run (then eq. 4 holds exactly), else None."""
    k = runs.flops_per_token(convention) / runs.N
    return float(np.median(k)) if np.allclose(k, np.median(k), rtol=1e-9) else None


def allocation_exponents(law: allocation.LawParams, runs: Runs, convention: str | None = None,
                         nonembedding: bool = False) -> tuple[float, float]:
    """(a, b): slopes of log N_opt and log D_opt on log C over the table's budgets, where N_opt(C)
    minimises L(N, C / f(N)) under `convention`. NaN when some N_opt(C) lies beyond the searched
    range (100x past the table's sizes): a bounded search would return the bound for every budget,
    hence a = 0, b = 1 for any law whose true a is large (beta >> alpha)."""
    k = is_6n_like(runs, convention)
    if k is not None and not nonembedding:
        a, b, _ = allocation.exponents(law)
        return a, b
    fpt = log_fpt(runs, convention)
    budgets = runs.budgets() if len(runs.budgets()) >= 2 else np.array([runs.C.min(), runs.C.max()])
    lo, hi = np.log10(runs.N.min()) - 2, np.log10(runs.N.max()) + 2
    n_opt, d_opt = [], []
    for c in budgets:
        obj = lambda x: float(law.loss(10**x, c / 10 ** fpt(x)))
        x = scipy.optimize.minimize_scalar(obj, bounds=(lo, hi), method="bounded", options={"xatol": 1e-7}).x
        if min(x - lo, hi - x) < 1e-3:
            return float("nan"), float("nan")
        n_opt.append(10**x)
        d_opt.append(c / 10 ** fpt(x))
    n_opt = np.asarray(n_opt)
    if nonembedding:
        n_opt = 10 ** np.array([interp_log(np.log10(v), np.log10(runs.N), np.log10(runs.N_nonembed)) for v in n_opt])
    ones = np.ones(len(budgets))
    return fit_power_law(budgets, n_opt, ones).exponent, fit_power_law(budgets, d_opt, ones).exponent


def approach2_exponents(r2: Approach2Result, runs: Runs, convention: str, nonembedding: bool) -> tuple[float, float]:
    used = [o for o in r2.optima if o.C in r2.used_budgets]
    fpt = log_fpt(runs, convention)
    c = np.array([10 ** fpt(np.log10(o.N_opt)) * o.D_opt for o in used])
    n = np.array([o.N_opt for o in used])
    if nonembedding:
        n = 10 ** np.array([interp_log(np.log10(v), np.log10(runs.N), np.log10(runs.N_nonembed)) for v in n])
    w = np.asarray(r2.weights) if r2.weights else np.ones(len(used))
    return fit_power_law(c, n, w).exponent, fit_power_law(c, [o.D_opt for o in used], w).exponent


def audit(runs: Runs, r2: Approach2Result | None, law: allocation.LawParams | None) -> list[dict]:
    """One row per (convention, N): a and b of Approaches 2 and 3 side by side."""
    rows = []
    kinds = (False, True) if runs.N_nonembed is not None else (False,)
    for conv in conventions_of(runs):
        for ne in kinds:
            row = {"convention": conv, "name": NAMES.get(conv, conv), "N": "non-embedding" if ne else "total",
                   "fit_convention": conv == runs.convention}
            if r2 is not None:
                row["a_approach2"], row["b_approach2"] = approach2_exponents(r2, runs, conv, ne)
            if law is not None:
                row["a_approach3"], row["b_approach3"] = allocation_exponents(law, runs, conv, ne)
            rows.append(row)
    return rows
