"""Chinchilla's L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, eq. 2): Approach 3's
form, with its start grid (App. D.2: log A, log B in {0,...,25}, log E in {-1,...,1}, alpha, beta
in {0,...,2}), fitted by the registry's machinery."""
from __future__ import annotations

import jax.numpy as jnp

from analysis.laws import allocation
from analysis.laws.approach3 import StartGrid
from analysis.laws.registry import IDENTITY, LOG, Law, Param

_G = StartGrid()


def predict_log(x, logs, k):
    return jnp.logaddexp(jnp.logaddexp(x["A"] - x["alpha"] * logs["log_n"], x["B"] - x["beta"] * logs["log_d"]),
                         x["E"])


def derived(v, logs, k) -> dict:
    """Eq. 4's allocation exponents a, b and coefficient G."""
    a, b, g = allocation.exponents(allocation.LawParams(v["E"], v["A"], v["B"], v["alpha"], v["beta"]))
    return {"a": a, "b": b, "G": g}


LAW = Law(
    name="chinchilla", summary="L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022)",
    params=(Param("E", _G.e, LOG), Param("A", _G.a, LOG), Param("B", _G.b, LOG),
            Param("alpha", _G.alpha, IDENTITY), Param("beta", _G.beta, IDENTITY)),
    inputs=("n", "d"), predict_log=predict_log, derived=derived, min_rows=5)
