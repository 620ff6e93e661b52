"""Tissue et al. 2024 ("Scaling Law with Learning Rate Annealing"), eq. 1, over whole loss curves:
    L(s) = L0 + A S1^-alpha - C S2,
S1 = sum of the lr over steps 1..s (the forward area), S2 = sum over steps of the annealing momentum
m_i = lambda m_(i-1) + (eta_(i-1) - eta_i), lambda = 0.999 by default (the paper's decay factor).
S1, S2 are computed from each curve's lr by analysis.laws.schedule (the table loader); fitted on a
few schedules, the law predicts the curve of any other (`--predict` with step and lr columns).
"""
from __future__ import annotations

import jax.numpy as jnp

from analysis.laws.registry import IDENTITY, LOG, Law, Param


def predict_log(x, logs, k):
    loss = jnp.exp(x["L0"]) + jnp.exp(x["A"] - x["alpha"] * logs["log_s1"]) - jnp.exp(x["C"]) * logs["s2"]
    return jnp.log(loss)  # NaN where the annealing term overshoots: the line search steps back


def derived(v, logs, k) -> dict:
    return {}


LAW = Law(
    name="annealing", summary="L(s) = L0 + A S1^-alpha - C S2: S1 forward lr area, S2 annealing area (Tissue et al. 2024)",
    params=(Param("L0", (0.0, 0.5, 1.0, 1.5), LOG), Param("A", (-1.0, 0.0, 1.0, 2.0), LOG),
            Param("alpha", (0.2, 0.5, 1.0), IDENTITY), Param("C", (-4.0, -2.0, 0.0, 2.0), LOG)),
    inputs=("s1", "s2"), predict_log=predict_log, derived=derived)
