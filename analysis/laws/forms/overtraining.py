"""Gadre et al. 2024 ("Language models scale reliably with over-training and on downstream tasks",
arXiv 2403.08540, Sec. 2-3): L(C, M) = E + (a M^eta + b M^-eta) C^-eta, C = 6 N D, M = D/N.

It is Chinchilla's form with alpha = beta = 2 eta (N = sqrt(C/6M), D = sqrt(CM/6)), so a = A 6^eta,
b = B 6^eta, and for every M the reducible loss is a power law in C with one exponent eta.

Checked against (search tool; the paper's own text was not in the corpora): the authors' code,
github.com/mlfoundations/scaling scaling/laws.py `powlaw_ours`, which fits
alpha N^b + beta 6^(b/2) (M N)^b + E, i.e. one shared exponent b = -2 eta on N and D = M N (the same
law parameterised in N, M), by scipy curve_fit least squares on the loss from a 4x4x2x4 start grid,
on 5 runs (four sizes at M = 20, the smallest at M = 320; scaling/shared.py `fit_ds`); and two surveys
quoting L(C, M) = E + (a M^eta + b M^-eta) C^-eta with alpha = beta = 2 eta. Here the form is fitted
as every registry law is (Huber on log loss, batched L-BFGS), not by the paper's least squares.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from analysis.laws.registry import IDENTITY, LOG, Law, Param

LOG6 = float(np.log(6.0))


def predict_log(x, logs, k):
    log_m = logs["log_d"] - logs["log_n"]
    log_c = LOG6 + logs["log_n"] + logs["log_d"]
    eta = x["eta"]
    reducible = jnp.logaddexp(x["a"] + eta * log_m, x["b"] - eta * log_m) - eta * log_c
    return jnp.logaddexp(reducible, x["E"])


def derived(v, logs, k) -> dict:
    """The multiplier that minimises the loss at any C, M* = (b/a)^(1/(2 eta)), its loss at the
    table's largest C, and the Chinchilla parameters the fit implies."""
    eta = v["eta"]
    m_opt = (v["b"] / v["a"]) ** (1.0 / (2.0 * eta))
    c_max = float(np.exp(np.max(LOG6 + logs["log_n"] + logs["log_d"])))
    loss = v["E"] + (v["a"] * m_opt**eta + v["b"] * m_opt**-eta) * c_max**-eta
    return {"M_opt": m_opt, "C_max": c_max, "loss_at_C_max_M_opt": loss, "alpha_equiv": 2 * eta,
            "A_equiv": v["a"] * 6.0**-eta, "B_equiv": v["b"] * 6.0**-eta}


LAW = Law(
    name="overtraining", summary="L = E + (a M^eta + b M^-eta) C^-eta, C = 6ND, M = D/N (Gadre et al. 2024)",
    params=(Param("E", (-1.0, 0.0, 1.0), LOG), Param("a", (0.0, 4.0, 8.0, 12.0), LOG),
            Param("b", (0.0, 4.0, 8.0, 12.0), LOG), Param("eta", (0.05, 0.15, 0.3, 0.6), IDENTITY)),
    inputs=("n", "d"), predict_log=predict_log, derived=derived)
