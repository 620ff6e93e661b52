"""Leave-one-out and rolling-origin prediction of a registry law, in noise units.

Both refit the law on part of the table and predict the rows left out. Every refit is a lane of one
batched L-BFGS program (law_fit.objective_fn with row weights: 0 on the rows a lane leaves out),
padded to the lanes and stopping rules of the resamples' float64 program when there are resamples
(law_intervals.LawSamples.program), so the refits reuse that compilation instead of their own:
- Leave-one-out: at most MAX_LOO rows spread evenly over the table sorted by its scale (a refit per
  row of a 300-row table is 300 lanes for little more information; the line says how many), each
  refitted from the full fit's optimum without that row.
- Rolling origin: the rows sorted by scale (compute 6ND; for loss curves the lr area S1, i.e.
  training time), cut at ROLL_CUTS of the rows (a cut moves back so rows within 5% of one scale, an
  IsoFLOP budget, stay together: roll_blocks); each cut fits the rows below it and predicts those up to the next
  cut, as a ladder predicts its next size. Refitted from the full fit's best few distinct end points
  (law_fit.TOP: a prefix can sit in another of the basins the full fit found). Grid starts as well
  cost ~10x the iterations (lanes far from any optimum run to max_iter) for basins the full fit's
  own search did not reach.
z = (measured - predicted loss) / sqrt(sigma^2 + v): sigma the run noise (LawData.sigma: pooled seed
repeats or the eval SE column; else the fit's residual RMS, which the line says), v the prediction's
variance: for leave-one-out over the law's resampled fits where there are some; otherwise, and
for every rolling-origin prefix (the full table's resamples understate a prefix's uncertainty), by
the delta method at the refit with the Huber fit's sandwich covariance under Gaussian noise sigma
(delta_var: up to pi/2 least squares' variance when the residuals exceed the Huber delta).
Verdict: the largest |z| over the rows predicted against the two-sided Bonferroni point, which a
correct law with the right sigma exceeds with probability <= FALSE_ALARM whatever the rows' dependence.
"""
from __future__ import annotations

import jax
import numpy as np
import scipy.special

from analysis.laws import law_fit, law_intervals, stat_tests
from analysis.laws.approach3 import POLISH_OPTIONS

FALSE_ALARM = 0.05
MAX_LOO = 40
ROLL_CUTS = (0.5, 0.6, 0.7, 0.8, 0.9)
TIE_LN = 0.05
FD_STEP = 1e-5
MIN_DRAWS = 10


def scale(logs: dict) -> tuple[np.ndarray, str]:
    """The order rows are left out and rolled along, and its name."""
    if "log_n" in logs and "log_d" in logs:
        return logs["log_n"] + logs["log_d"], "compute 6ND"
    if "log_s1" in logs:
        return logs["log_s1"], "lr area S1"
    name = next(iter(logs))
    return logs[name], name


def loo_rows(key: np.ndarray, k: int = MAX_LOO) -> np.ndarray:
    """At most k row indices, evenly spread over the rows sorted by key."""
    order = np.argsort(key, kind="stable")
    return order if len(order) <= k else order[np.unique(np.round(np.linspace(0, len(order) - 1, k)).astype(int))]


def roll_blocks(key: np.ndarray, need: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows fitted, rows predicted) per cut; cuts leaving fewer than `need` rows to fit are skipped.
    Rows whose scale differs by less than TIE_LN from the next form chains (an IsoFLOP budget); a cut
    moves back to its chain's start when that is less than one cut's spacing back, so a budget stays
    whole while a dense scale (points along loss curves: long chains) is cut at the ranks themselves."""
    order = np.argsort(key, kind="stable")
    chain = np.concatenate([[0], np.flatnonzero(np.diff(key[order]) > TIE_LN) + 1])
    spacing = len(order) * min(np.diff(ROLL_CUTS))

    def snap(p: int) -> int:
        start = int(chain[np.searchsorted(chain, p, side="right") - 1])
        return start if p - start < spacing else p

    cuts = sorted({snap(int(round(f * len(order)))) for f in ROLL_CUTS} | {len(order)})
    return [(order[:a], order[a:b]) for a, b in zip(cuts, cuts[1:]) if a >= need and b > a]


def _refit(fit: law_fit.LawFit, data: law_fit.LawData, masks: np.ndarray, starts: list[np.ndarray],
           program: tuple = ()) -> np.ndarray:
    """(G, P) full search vectors: per mask (G, R) the best refit from its starts (NaN: none finite)."""
    lane_of = np.concatenate([np.full(len(s), g) for g, s in enumerate(starts)])
    lanes, opts, width = program or (0, POLISH_OPTIONS, law_fit.WIDTH)
    n = max(len(lane_of), lanes)  # padding lanes: NaN starts, stopped at once; their results are dropped
    x0 = law_fit.pad(np.concatenate(starts), n)
    lane = law_fit.weighted(np.repeat(data.log_loss[None], n, 0), law_fit.cycle(masks[lane_of], n))
    with jax.enable_x64(True):
        res = law_fit.minimize(fit.search, data, fit.constants, x0, fit.delta, opts, lane=lane, width=width)
    f = np.where(np.isfinite(res.f_S) & np.all(np.isfinite(res.x_SxP), 1), res.f_S, np.inf)[:len(lane_of)]
    out = np.full((len(masks), len(fit.law.params)), np.nan)
    for g in range(len(masks)):
        lanes_g = np.flatnonzero(lane_of == g)
        best = lanes_g[np.argmin(f[lanes_g])]
        if np.isfinite(f[best]):
            out[g] = fit.search.full(res.x_SxP[best])
    return out


def _steps(fit: law_fit.LawFit) -> np.ndarray:
    """(1 + 2F, P): no step, then +h and -h along each free parameter (central differences)."""
    steps = np.zeros((1 + 2 * len(fit.search.free), len(fit.law.params)))
    for j, i in enumerate(fit.search.free):
        steps[1 + 2 * j, i], steps[2 + 2 * j, i] = FD_STEP, -FD_STEP
    return steps


def huber_moments(sigma: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """(E psi'(e), E psi(e)^2) of the Huber score psi (clip to +-delta) for e ~ N(0, sigma^2)."""
    a = delta / sigma
    inside = scipy.special.erf(a / np.sqrt(2))
    return inside, sigma**2 * (inside - 2 * a * stat_tests.norm_pdf(a)) + delta**2 * (1 - inside)


def delta_var(p_GxKxR: np.ndarray, masks, sigma_log, delta: float) -> np.ndarray:
    """(G, R) variance of each refit's predicted log loss by the delta method, from its predictions
    at the _steps points (K = 1 + 2F): J C J' with C the Huber fit's sandwich over the rows it fitted,
    A^-1 B A^-1, A = J' diag(E psi') J, B = J' diag(E psi^2) J, under Gaussian noise sigma_log per row
    (least squares' sigma^2 (J'J)^-1 when every residual is inside delta; pi/2 that when none is)."""
    jac = (p_GxKxR[:, 1::2] - p_GxKxR[:, 2::2]) / (2 * FD_STEP)  # (G, F, R)
    d_psi, psi2 = huber_moments(sigma_log, delta)
    out = np.full((len(jac), jac.shape[2]), np.nan)
    for g, (j, m) in enumerate(zip(jac, masks)):
        jt = j[:, m]
        if not np.all(np.isfinite(jt)):
            continue
        a_inv = np.linalg.pinv((jt * d_psi[m]) @ jt.T)
        cov = a_inv @ ((jt * psi2[m]) @ jt.T) @ a_inv
        out[g] = np.einsum("fr,fk,kr->r", j, cov, j)
    return out


def _summary(z: np.ndarray) -> dict:
    failed = int((~np.isfinite(z)).sum())  # a refit that found no finite optimum, or a NaN prediction
    z = z[np.isfinite(z)]
    if not len(z):
        return {"holds": None, "predicted": 0, "not_predicted": failed}
    bound = float(stat_tests.norm_isf(FALSE_ALARM / (2 * len(z))))
    worst = float(np.max(np.abs(z)))
    return {"holds": bool(worst <= bound), "predicted": int(len(z)), "max_abs_z": worst, "bound": bound,
            "rms_z": float(np.sqrt(np.mean(z * z))), "mean_z": float(np.mean(z)), "not_predicted": failed}


def checks(fit: law_fit.LawFit, data: law_fit.LawData, samples=None) -> list[dict]:
    """The leave-one-out and rolling-origin rows of the law's diagnostics (law_diagnostics.check)."""
    loss = np.exp(data.log_loss)
    if data.sigma is not None:
        sigma, source = np.asarray(data.sigma, float), data.sigma_source
    else:
        sigma, source = law_intervals.noise_sigma(fit, data) * loss, "the fit's residual RMS (no seed repeats or eval SE)"
    key, key_name = scale(data.logs)
    need = fit.law.rows_needed(len(fit.search.fixed))
    r = len(loss)
    loo = loo_rows(key) if r - 1 >= need else np.array([], int)
    blocks = roll_blocks(key, need)
    masks = [np.arange(r) != i for i in loo] + [np.isin(np.arange(r), a) for a, _ in blocks]
    if not masks:
        return [_row("leave-one-out", {"holds": None, "predicted": 0}, "too few rows to refit"),
                _row("rolling origin", {"holds": None, "predicted": 0}, "too few rows to refit")]
    starts = [fit.top_free[:1]] * len(loo) + [fit.top_free] * len(blocks)
    masks = np.array(masks)
    x = _refit(fit, data, masks, starts, samples.program if samples is not None else ())
    # One predict_log call (one shape: eager jax compiles each op per shape): the refits with their
    # finite-difference neighbours, then the resampled fits
    steps = _steps(fit)
    pts = (np.nan_to_num(x)[:, None] + steps[None]).reshape(-1, x.shape[1])
    draws = samples.x if samples is not None and len(samples.x) >= MIN_DRAWS and len(loo) else np.zeros((0, x.shape[1]))
    p = np.array(law_fit.predict_log(fit, data, np.concatenate([pts, draws])))
    p_refit = p[:len(pts)].reshape(len(x), len(steps), -1)
    p_refit[~np.all(np.isfinite(x), 1)] = np.nan
    pred = np.exp(p_refit[:, 0])
    var = delta_var(p_refit, masks, sigma / loss, fit.delta) * pred**2
    loo_var = (np.nanvar(np.exp(p[len(pts):]), 0), f"{len(draws)} resampled fits") if len(draws) else None
    return [_loo(loo, pred, var, loss, sigma, loo_var, source, key_name),
            _rolling(blocks, pred[len(loo):], var[len(loo):], loss, sigma, source, key_name)]


def _loo(rows, pred, var, loss, sigma, loo_var, source, key_name) -> dict:
    k = len(rows)
    p = pred[np.arange(k), rows] if k else np.array([])
    v, v_from = var[np.arange(k), rows] if k else np.array([]), "delta method"
    if loo_var is not None:
        v, v_from = loo_var[0][rows], loo_var[1]
    z = (loss[rows] - p) / np.sqrt(sigma[rows] ** 2 + v) if k else np.array([])
    s = _summary(z)
    spread = "every row" if k == len(loss) else f"{k} of {len(loss)} rows spread over {key_name}"
    s["rows"] = [int(i) + 1 for i in rows]
    return _row("leave-one-out", s, f"{spread}; sigma: {source}; prediction variance: {v_from}")


def _rolling(blocks, pred, var, loss, sigma, source, key_name) -> dict:
    zs, cuts = [], []
    for g, (fitted, test) in enumerate(blocks):
        z = (loss[test] - pred[g, test]) / np.sqrt(sigma[test] ** 2 + var[g, test])
        zs.append(z)
        ok = z[np.isfinite(z)]
        cuts.append({"fitted_rows": int(len(fitted)), "predicted_rows": int(len(test)),
                     "mean_z": float(np.mean(ok)) if len(ok) else None,
                     "max_abs_z": float(np.max(np.abs(ok))) if len(ok) else None,
                     "median_abs_rel_error": float(np.nanmedian(np.abs(pred[g, test] / loss[test] - 1)))})
    s = _summary(np.concatenate(zs) if zs else np.array([]))
    s["cuts"] = cuts
    mean = ", ".join("-" if c["mean_z"] is None else f"{c['mean_z']:+.2f}" for c in cuts)
    text = (f"{len(blocks)} cuts along {key_name} (fit the rows below, predict to the next), mean z per cut {mean}; "
            f"sigma: {source}; prediction variance: delta method at each prefix fit") if blocks else "too few rows to refit"
    return _row("rolling origin", s, text)


def _row(kind: str, s: dict, detail: str) -> dict:
    name = f"{kind} predictions within noise (max |z| under the Bonferroni point)"
    if s.get("predicted"):
        head = f"max |z| {s['max_abs_z']:.3g} (bound {s['bound']:.3g}), RMS z {s['rms_z']:.3g} over {s['predicted']} rows"
        head += f" ({s['not_predicted']} not predicted)" if s["not_predicted"] else ""
    else:
        head = "not checked"
    return {"name": name, **s, "summary": f"{head}; {detail}"}
