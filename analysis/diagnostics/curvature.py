"""A score (Lagrange-multiplier) test for a drifting N exponent, at Approach 3's fitted law.

The alternative is analysis/laws/forms/broken_power.py's form,
    L = E + A N^-alpha exp(-gamma l^2 / 2) + B/D^beta,  l = ln(N/N0),
whose local N exponent is alpha + gamma l; gamma = 0 is Chinchilla. Without refitting it: the log
residuals at the fitted Chinchilla law are regressed (least squares) on the Jacobian of log L in its
5 parameters (log A, log B, log E, alpha, beta) plus the extra column d log L / d gamma at gamma = 0,
-(l^2 / 2) A N^-alpha / L, and the statistic is that column's t. N0 does not matter: changing it adds
multiples of the A and alpha columns to the extra one, which the regression already spans. The
regression's other columns absorb the difference between the Huber fit (Approach 3's, nearly least
absolute deviations) and a least-squares one, so the t is that of a one-step estimate of gamma.

E at its bound (approach3.E_AT_BOUND) is held there: its column leaves the regression. This is what
gives the test its power on isoflop_cpu's design. A drifting N exponent bends log L as a negative E
would: with E free to go below 0, Chinchilla fits issue 17's curved law (alpha -+ 0.1 across the
design) to a noncentrality of only 0.97 (0.87 for this t), so no test of gamma with E free can flag
it in more than ~16% of studies. E >= 0 is part of the law (an irreducible loss), the fit of that law
to the curved one sits at E = 0, and with E held there the t's noncentrality is 3.18 (the likelihood
ratio's against the exact curved form: 3.22). A drift the other way (the exponent falling with N)
mimics a larger E and stays as hard to see.

Its null is resampled, never typed in: the same statistic on each of Approach 3's null draws
(tables drawn from the fitted law with its own standardised residuals resampled,
parametric.residual_pool, so the t meets the noise's real tails) at that draw's own refitted law
(parametric.approach3's `at_fit`); `analysis.diagnostics.misspec.curvature` compares the observed
t with the resampled deviations from their median.
"""
from __future__ import annotations

import numpy as np

from analysis.laws.approach3 import E_AT_BOUND
from analysis.uncertainty import noise

KEY = "gamma_t"  # the statistic's name among Approach 3's resampled values
RANK_TOL = 1e-10  # singular values of the (column-scaled) Jacobian below this x the largest: not spanned


def columns(log_n, log_d, x_Bx5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(prediction log L: B x R, Jacobian in (log A, log B, log E, alpha, beta): B x R x 5,
    d log L / d gamma at gamma = 0: B x R) at each row of x_Bx5."""
    x = np.atleast_2d(np.asarray(x_Bx5, float))
    a, b, e, alpha, beta = (x[:, i:i + 1] for i in range(5))
    tn, td = a - alpha * log_n, b - beta * log_d
    pred = np.logaddexp(np.logaddexp(tn, td), e)
    pu, pv, pe = np.exp(tn - pred), np.exp(td - pred), np.exp(e - pred)  # each term's share of L
    jac = np.stack([pu, pv, pe, -log_n * pu, -log_d * pv], -1)
    ell = log_n - np.mean(log_n)
    return pred, jac, -0.5 * ell * ell * pu


def gamma_t(log_n, log_d, log_l_BxR, x_Bx5, sigma=None) -> np.ndarray:
    """The extra column's t in the weighted least-squares regression of each row's log residuals on
    [Jacobian, extra column] (B,), E's column left out where E is at its bound, NaN where the extra
    column lies in the Jacobian's span. `sigma`: each run's loss noise in nats (None: equal); rows
    are weighted by L / sigma, so log residuals of runs with the same noise in nats weigh alike
    (on isoflop_cpu's design, where L runs 1.35-2.46, this raises the curved law's noncentrality
    from 3.18 to 3.40)."""
    log_l = np.atleast_2d(np.asarray(log_l_BxR, float))
    x = np.atleast_2d(np.asarray(x_Bx5, float))
    pred, jac, z = columns(np.asarray(log_n, float), np.asarray(log_d, float), x)
    w = np.exp(pred) / (1.0 if sigma is None else np.asarray(sigma, float))
    r, jac, z = (log_l - pred) * w, jac * w[..., None], z * w
    free_e = np.exp(x[:, 2]) >= E_AT_BOUND * np.exp(log_l.min(1))
    jac = jac * np.where(free_e[:, None], 1.0, np.array([1.0, 1.0, 0.0, 1.0, 1.0]))[:, None, :]
    # the columns differ by decades (alpha's carries log N ~ 10): scale them before the SVD
    scale = np.sqrt(np.sum(jac * jac, 1, keepdims=True))
    u, s, _ = np.linalg.svd(jac / np.where(scale > 0, scale, 1.0), full_matrices=False)
    u = u * (s > RANK_TOL * s[:, :1])[:, None, :]  # the columns spanned (E's zeroed at its bound)
    perp = lambda v: v - np.einsum("brk,bk->br", u, np.einsum("brk,br->bk", u, v))
    z_p, r_p = perp(z), perp(r)
    zz = np.sum(z_p * z_p, 1)
    dof = r.shape[1] - np.sum(s > RANK_TOL * s[:, :1], 1) - 1
    with np.errstate(divide="ignore", invalid="ignore"):  # an unidentified drift: NaN below
        coef = np.sum(z_p * r_p, 1) / zz
        s2 = np.sum((r_p - coef[:, None] * z_p) ** 2, 1) / np.maximum(dof, 1)
        ok = (zz > RANK_TOL * np.sum(z * z, 1)) & (dof > 0) & (s2 > 0)
        return np.where(ok, coef * np.sqrt(zz / s2), np.nan)


def observed(runs, x) -> float:
    """The t of `runs` at their fitted law x = (log A, log B, log E, alpha, beta)."""
    return float(gamma_t(np.log(runs.N), np.log(runs.D), np.log(runs.loss), x, _sigma(runs))[0])


def at_fit(runs):
    """parametric.approach3's `at_fit` for `runs`' design: (loss draws B x R, refitted x B x 5) ->
    {KEY: each draw's t at its own refitted law}."""
    log_n, log_d, sigma = np.log(runs.N), np.log(runs.D), _sigma(runs)
    return lambda loss_BxR, x_Bx5: {KEY: gamma_t(log_n, log_d, np.log(loss_BxR), x_Bx5, sigma)}


def _sigma(runs):
    return noise.run_noise(runs).sigma  # the noise the resamples draw (None: none measured)
