"""Muennighoff et al. 2023 ("Scaling Data-Constrained Language Models"), eqs. 5-7:
L = E + A/N'^alpha + B/D'^beta with effective counts that decay with repetition,
    D' = U_D + U_D R_D* (1 - exp(-R_D/R_D*)),  R_D = D/U_D - 1 (repeated epochs beyond the first),
    N' = U_N + U_N R_N* (1 - exp(-R_N/R_N*)),  R_N = N/U_N - 1,
U_D = min(unique tokens, D), and U_N = min(N, the compute-optimal N for U_D tokens under the same
law's single-epoch allocation, eq. 4: N_opt = G (G U_D)^(beta/alpha)). alpha = beta is tied by
default, as in the paper; `untie` frees beta. The paper froze E, A, B, alpha, beta from a separate
fit and fitted only R_D*, R_N*: `--fix` does that; R_D*, R_N* are weakly identified, hence their
grid of starts and the resampled intervals.
"""
from __future__ import annotations

import functools

import jax.numpy as jnp
import numpy as np

from analysis.laws.registry import IDENTITY, LOG, Law, Param

LOG6 = float(np.log(6.0))


def _log_loss(xp, log_e, log_a, log_b, alpha, beta, log_rd, log_rn, log_n, log_d, log_u):
    """The law's log-loss in any array module (jax for the fit, numpy for derived quantities)."""
    log_ud = xp.minimum(log_u, log_d)
    r_d = xp.expm1(log_d - log_ud)
    log_dp = log_ud + xp.log1p(-xp.exp(log_rd) * xp.expm1(-r_d * xp.exp(-log_rd)))
    log_g = (xp.log(alpha) + log_a - xp.log(beta) - log_b) / (alpha + beta)
    log_un = xp.minimum(log_n, log_g + beta / alpha * (log_g + log_ud))
    r_n = xp.expm1(log_n - log_un)
    log_np = log_un + xp.log1p(-xp.exp(log_rn) * xp.expm1(-r_n * xp.exp(-log_rn)))
    return xp.logaddexp(xp.logaddexp(log_a - alpha * log_np, log_b - beta * log_dp), log_e)


def _predict(tied: bool):
    def predict_log(x, logs, k):
        beta = x["alpha"] if tied else x["beta"]
        return _log_loss(jnp, x["E"], x["A"], x["B"], x["alpha"], beta, x["R_D_star"], x["R_N_star"],
                         logs["log_n"], logs["log_d"], logs["log_u"])
    return predict_log


def optimum(v, c: float, u: float) -> tuple[float, float, float]:
    """(N, D, loss) minimising the law at compute C = 6ND with u unique tokens: a grid of 4,001
    points over +-10 e-folds of N around sqrt(C/6), refined by a parabola through the best three
    (N to ~0.1%). u = inf gives the single-epoch (unlimited data) optimum."""
    beta = v.get("beta", v["alpha"])
    centre = 0.5 * (np.log(c) - LOG6)
    log_n = centre + np.linspace(-10.0, 10.0, 4001)
    log_d = np.log(c) - LOG6 - log_n
    f = _log_loss(np, np.log(v["E"]), np.log(v["A"]), np.log(v["B"]), v["alpha"], beta, np.log(v["R_D_star"]),
                  np.log(v["R_N_star"]), log_n, log_d, np.full_like(log_n, np.log(u)))
    i = int(np.clip(np.nanargmin(f), 1, len(f) - 2))
    den = f[i - 1] - 2 * f[i] + f[i + 1]
    h = log_n[1] - log_n[0]
    x = log_n[i] + (0.5 * h * (f[i - 1] - f[i + 1]) / den if den > 0 else 0.0)
    return float(np.exp(x)), float(c / (6 * np.exp(x))), float(np.exp(np.interp(x, log_n, f)))


def derived(v, logs, k) -> dict:
    """The optimal allocation at the table's largest compute under its smallest unique-data limit
    (the paper's Fig. 1 question), and what unlimited unique data would give at that compute."""
    c = float(np.exp(np.max(LOG6 + logs["log_n"] + logs["log_d"])))
    u = float(np.exp(np.min(logs["log_u"])))
    n, d, loss = optimum(v, c, u)
    n1, d1, loss1 = optimum(v, c, np.inf)
    tied = {} if "beta" in v else {"beta": v["alpha"]}  # fits.json names both exponents either way
    return {**tied, "C": c, "U_D": u, "N_opt": n, "D_opt": d, "epochs_opt": d / u, "loss_opt": loss,
            "N_opt_unlimited": n1, "D_opt_unlimited": d1, "loss_opt_unlimited": loss1}


@functools.cache  # one Law object per variant: the compiled fit is cached per Law
def law(untie: bool = False) -> Law:
    exps = (Param("alpha", (0.2, 0.4, 0.8), IDENTITY),) + ((Param("beta", (0.2, 0.4, 0.8), IDENTITY),) if untie else ())
    return Law(
        name="data_constrained",
        summary="L = E + A/N'^alpha + B/D'^beta, effective N', D' decaying with repetition (Muennighoff et al. 2023)"
                + ("; alpha, beta free" if untie else "; alpha = beta"),
        params=(Param("E", (-1.0, 0.0, 1.0), LOG), Param("A", (2.0, 6.0, 10.0), LOG), Param("B", (2.0, 6.0, 10.0), LOG),
                *exps, Param("R_D_star", (0.0, 1.5, 3.0, 4.5), LOG, "epochs: repeated data's decay constant"),
                Param("R_N_star", (0.0, 1.5, 3.0, 4.5), LOG, "excess parameters' decay constant")),
        inputs=("n", "d", "u"), predict_log=_predict(not untie), derived=derived)
