"""Residual checks of a registry law's fit, one verdict line each, from the fit alone (no refits).

- Against each input (log N, log D, log unique tokens, epochs, M = D/N, log S1, S2): Spearman's rank
  correlation of the log-loss residuals, Bonferroni over the inputs checked, so a correct law fails
  any of them with probability at most FALSE_ALARM. A trend left in the residuals says the form
  misses that direction.
- Normality of the residuals (D'Agostino-Pearson, needs >= 20 rows): the parametric resamples
  draw Gaussian noise; heavy tails make their intervals too narrow.
- Leave-one-out and rolling-origin prediction in noise units (analysis.laws.law_validation: refits
  as lanes of one batched L-BFGS), each failing a correct law with probability <= FALSE_ALARM.
"""
from __future__ import annotations

import numpy as np

from analysis.laws import law_fit, law_validation, stat_tests

FALSE_ALARM = 0.05
MIN_NORMAL_ROWS = 20


def axes(logs: dict) -> dict[str, np.ndarray]:
    """The directions residuals are checked along, from whichever inputs the law has."""
    out = {f"log {k[4:].upper()}" if k.startswith("log_") else k.upper(): v for k, v in logs.items()}
    if "log_n" in logs and "log_d" in logs:
        out["log M = D/N"] = logs["log_d"] - logs["log_n"]
    if "log_u" in logs and "log_d" in logs:
        out["epochs D/U"] = np.exp(logs["log_d"] - np.minimum(logs["log_u"], logs["log_d"]))
    return out


def check(fit: law_fit.LawFit, data: law_fit.LawData, samples=None, validation: bool = True) -> list[dict]:
    """The verdict rows; `samples` (law_intervals.LawSamples) give leave-one-out its prediction
    variance; `validation` False skips the refits (leave-one-out, rolling origin)."""
    r = law_fit.residuals(fit, data)
    ax = {k: v for k, v in axes(data.logs).items() if np.ptp(v) > 0}
    rows = []
    for name, v in ax.items():
        rho, p = stat_tests.spearman(v, r)
        ok = bool(p * len(ax) >= FALSE_ALARM) if np.isfinite(p) else None
        rows.append({"name": f"residuals vs {name}: no trend (Spearman, Bonferroni over {len(ax)})",
                     "holds": ok, "rho": float(rho), "p": float(p)})
    if len(r) >= MIN_NORMAL_ROWS:
        p = stat_tests.normal_test(r)
        rows.append({"name": "residuals normal (D'Agostino-Pearson)", "holds": bool(p >= FALSE_ALARM), "p": float(p)})
    if validation:
        rows += law_validation.checks(fit, data, samples)
    return rows


def lines(rows: list[dict]) -> list[str]:
    verdict = {True: "ok  ", False: "FAIL", None: "n/a "}
    return [f"  [{verdict[r['holds']]}] {r['name']}: "
            + (r["summary"] if "summary" in r else ", ".join(f"{k} {r[k]:.3g}" for k in ("rho", "p") if k in r))
            for r in rows]
