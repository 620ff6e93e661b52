"""A misspecification check: Chinchilla's form with the N exponent drifting linearly in log N,
    L = E + A N^-alpha exp(-gamma l^2 / 2) + B/D^beta,  l = ln(N/N0),
so the local exponent -d ln(A-term)/d ln N is alpha + gamma l: alpha at N0 (the geometric mean N of
the fitted table, stored with the fit), bending by gamma per e-fold of N. gamma = 0 is plain
Chinchilla, against which the fit reports a likelihood-ratio test and delta AIC: is one power law
in N enough over the table's range?
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from analysis.laws.registry import IDENTITY, LOG, Law, Param


def predict_log(x, logs, k):
    ell = logs["log_n"] - k["log_n0"]
    n_term = x["A"] - x["alpha"] * logs["log_n"] - 0.5 * x["gamma"] * ell * ell
    return jnp.logaddexp(jnp.logaddexp(n_term, x["B"] - x["beta"] * logs["log_d"]), x["E"])


def constants(logs) -> dict:
    return {"log_n0": float(np.mean(logs["log_n"]))}


def derived(v, logs, k) -> dict:
    """The local N exponent at the table's smallest, central and largest N."""
    lo, hi = float(np.min(logs["log_n"])) - k["log_n0"], float(np.max(logs["log_n"])) - k["log_n0"]
    return {"N0": float(np.exp(k["log_n0"])), "alpha_at_N_min": v["alpha"] + v["gamma"] * lo,
            "alpha_at_N_max": v["alpha"] + v["gamma"] * hi}


LAW = Law(
    name="broken_power", summary="L = E + A N^-alpha exp(-gamma ln^2(N/N0)/2) + B/D^beta: local N exponent "
                                 "alpha + gamma ln(N/N0) (test of one power law against chinchilla)",
    params=(Param("E", (-1.0, 0.0, 1.0), LOG), Param("A", (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), LOG),
            Param("B", (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), LOG), Param("alpha", (0.0, 0.5, 1.0), IDENTITY),
            Param("beta", (0.0, 0.5, 1.0), IDENTITY), Param("gamma", (-0.05, 0.0, 0.05), IDENTITY)),
    inputs=("n", "d"), predict_log=predict_log, constants=constants, derived=derived, nested_in="chinchilla")
