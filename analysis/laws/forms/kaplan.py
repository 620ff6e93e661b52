"""Kaplan et al. 2020 ("Scaling Laws for Neural Language Models"), eq. 1.5 (4.1):
    L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D,
no irreducible term; Kaplan count N without embeddings (name that column with --n-col, e.g.
non_embedding_params). Fitted jointly by the registry's machinery from a start grid wide in
log N_c, log D_c (+-16 e-folds around a GPT-2-scale fit's ~30: a CPU model's N_c sits far lower),
where analysis.laws.kaplan (the Chinchilla report's Kaplan figure) fits L(N), L(D), L(C) on the
table's envelopes and the joint law by least squares from them. The form is the issue's and the
existing analysis.laws.kaplan's; the 2% overfitting criterion below is Sec. 4.2's as remembered
(D >~ 5e3 N^0.74, eq. 4.4): the search tool found neither in the paper's own text.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from analysis.laws.registry import IDENTITY, LOG, Law, Param

OVERFIT = 0.02  # the overfitting penalty Kaplan et al. size data for


def predict_log(x, logs, k):
    ratio = x["alpha_N"] / x["alpha_D"]
    return x["alpha_D"] * jnp.logaddexp(ratio * (x["N_c"] - logs["log_n"]), x["D_c"] - logs["log_d"])


def derived(v, logs, k) -> dict:
    """alpha_N/alpha_D (data must grow as N^ratio to hold overfitting fixed, eq. 4.3), the
    infinite-data loss (N_c/N)^alpha_N at the table's largest N, and the tokens that keep the
    overfitting penalty L(N, D)/L(N, inf) - 1 at 2% there (eq. 4.4's criterion)."""
    ratio = v["alpha_N"] / v["alpha_D"]
    n_max = float(np.exp(np.max(logs["log_n"])))
    d_needed = (n_max / v["N_c"]) ** ratio * v["D_c"] / ((1 + OVERFIT) ** (1 / v["alpha_D"]) - 1)
    return {"alpha_N_over_alpha_D": ratio, "N_max": n_max, "loss_inf_data_at_N_max": (v["N_c"] / n_max) ** v["alpha_N"],
            "D_for_2pct_overfit_at_N_max": d_needed}


LAW = Law(
    name="kaplan", summary="L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Kaplan et al. 2020, eq. 1.5)",
    params=(Param("N_c", (12.0, 20.0, 28.0, 36.0, 44.0), LOG), Param("D_c", (12.0, 20.0, 28.0, 36.0, 44.0), LOG),
            Param("alpha_N", (0.05, 0.1, 0.3), IDENTITY), Param("alpha_D", (0.05, 0.1, 0.3), IDENTITY)),
    inputs=("n", "d"), predict_log=predict_log, derived=derived)
