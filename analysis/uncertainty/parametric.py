"""Intervals that reflect the experiment: a parametric bootstrap from the measured loss noise.

Each resample keeps the design (every budget keeps its runs, sizes and token counts: the bootstrap is
stratified by budget by construction) and redraws every run's final loss as mu + sigma * z:
- mu: the fitted model of the approach being resampled (the textbook parametric bootstrap, so the
  resampled estimates centre on the estimate): Approach 3 and its ML variant draw around their
  fitted L(N, D); the others around each budget's own smooth profile, a parabola in log N through
  its runs (the noise-free curve the IsoFLOP analysis assumes; per-point means where a budget has
  fewer than 3 sizes);
- sigma: the pooled seed noise, or each run's eval standard error where no point has repeats
  (analysis.uncertainty.noise.run_noise), times max(1, sqrt(reduced chi^2)) of the data around mu: where the
  model misses the data by more than the measured noise (a profile that is no parabola, eval SE
  without seed noise), the resamples scatter as much as the data do. With seed noise measured on
  few degrees of freedom, each resample also draws its sigma from sigma | sigma-hat, i.e.
  sigma-hat * sqrt(dof / chi2_dof) (scaled inverse chi^2: z times it is Student's t_dof, 97.5%
  point 2.31 at 8 dof), not sigma-hat's own sampling distribution sqrt(chi2_dof / dof) (2.01 there);
- the eval set's shared offset: every run is scored on the same eval set, so its sampling error
  (the runs' median final_eval_loss_se) moves all losses together. Seed pairs do not see it (it
  cancels in their difference) nor does a vertex or an allocation exponent, but E and every
  predicted loss do: each resample adds one common N(0, offset_sd) shift to all its runs (where
  sigma is seed noise; where sigma is the eval SE itself, that is already the noise drawn).
The checks that set two fits against each other (analysis.diagnostics.misspec) take their null from
separate draws that resample the law's own standardised residuals (residual_pool), so the noise's
real tails reach both fits.
Without any measured noise, the runs are resampled with replacement within each budget instead
(the nonparametric bootstrap of Hoffmann et al.'s Approach 3 intervals), and the output says so.
A resample whose fit fails is counted and reported with its reason, never dropped silently.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Callable

import numpy as np

from analysis.uncertainty import bootstrap, noise
from analysis.records import RESAMPLE_ERRORS
from analysis.tables.tables import Runs

PARAMETRIC, NONPARAMETRIC = "parametric", "nonparametric"


@dataclasses.dataclass(frozen=True)
class Plan:
    """How to resample a table: the mean profile, the per-run sigma, and its degrees of freedom."""

    kind: str  # PARAMETRIC or NONPARAMETRIC
    mu: np.ndarray | None
    sigma: np.ndarray | None
    dof: int  # of the noise estimate (0: taken as exact, e.g. eval SE)
    source: str  # "seed noise", "eval SE" or "none"
    offset_sd: float = 0.0  # the eval set's shared offset (nats): one common shift per resample
    pool: np.ndarray | None = None  # standardised residuals to resample (None: normal draws); see residual_pool


@dataclasses.dataclass(frozen=True)
class Samples:
    values: dict[str, np.ndarray]
    n_boot: int
    failed: int
    reasons: tuple[str, ...]  # the most common failure reasons, with counts
    kind: str
    source: str
    eval_offset_sd: float = 0.0  # the shared eval offset drawn into every resample (0: none)

    def intervals(self, level: float = 0.95) -> dict[str, tuple[float, float]]:
        ok = {k: v for k, v in self.values.items() if np.isfinite(v).any()}
        return bootstrap.percentiles(ok, level) if ok else {}

    def summary(self) -> dict:
        out = {"kind": self.kind, "noise": self.source, "resamples": self.n_boot, "failed": self.failed,
               "failure_reasons": "; ".join(self.reasons)}
        if self.eval_offset_sd > 0:
            out["eval_offset_sd"] = self.eval_offset_sd
            out["eval_offset"] = ("one common shift per resample, N(0, eval_offset_sd): the eval set is shared by "
                                  "every run, so E's and every predicted loss's intervals include its sampling error")
        return out


OFFSET_KEY = "eval_offset"  # Samples.values: each resample's shared eval offset (not a fitted value)


def smooth_profile(runs: Runs) -> np.ndarray:
    """Each run's loss on its budget's least-squares parabola in log10 N (per-point means otherwise)."""
    mu = runs.loss.copy()
    x = np.log10(runs.N)
    for c in runs.budgets():
        m = runs.budget == c
        if len(np.unique(x[m])) >= 3:
            mu[m] = np.polyval(np.polyfit(x[m], runs.loss[m], 2), x[m])
        else:
            for v in np.unique(x[m]):
                k = m & (x == v)
                mu[k] = runs.loss[k].mean()
    return mu


def plan(runs: Runs) -> Plan:
    rn = noise.run_noise(runs)
    if rn.sigma is None:
        return Plan(NONPARAMETRIC, None, None, 0, "none")
    dof = rn.noise.dof if rn.source == "seed noise" else 0
    offset = eval_offset_sd(runs) if rn.source == "seed noise" else 0.0
    n_fitted = sum(3 if len(np.unique(runs.N[runs.budget == c])) >= 3 else len(np.unique(runs.N[runs.budget == c]))
                   for c in runs.budgets())
    p = Plan(PARAMETRIC, None, rn.sigma, dof, rn.source, offset)
    if rn.source == "seed noise":
        return from_residuals(p, runs.loss, smooth_profile(runs), n_fitted)
    return around(p, runs.loss, smooth_profile(runs), n_fitted)


def from_residuals(p: Plan, loss, mu, n_params: int) -> Plan:
    """`p` redrawn around the profiles `mu` at the scale of the data's own residuals about them.

    The budgets' parabolas are least-squares fits, whose spread follows the noise's variance: their
    residuals (seed repeats included) estimate it with n - n_params degrees of freedom, where the seed
    pairs alone give a handful (8 on isoflop_cpu), and a profile that is no parabola widens it. The
    measured seed sigma sets the per-run shape and the test of fit; the residuals set the scale, up or
    down. (`around`'s max(1, .) kept the seed sigma as a floor and drew sigma | sigma-hat on the seed
    pairs' few dof: Approach 2's intervals came out 1.34-1.36x wider than their spread on simulated
    isoflop_cpu studies, covering 96%.) Too few residual dof: `around`."""
    mu = np.asarray(mu, float)
    dof = len(mu) - n_params
    if dof < ROBUST_MIN_DOF:
        return around(p, loss, mu, n_params)
    z = (np.asarray(loss) - mu) / p.sigma
    chi2 = float(np.sum(z**2) / dof)
    return dataclasses.replace(p, mu=mu, sigma=p.sigma * np.sqrt(chi2), dof=kurtosis_dof(z, dof))


def kurtosis_dof(z, dof: int) -> int:
    """The degrees of freedom a variance estimate from residuals z really has: 2 dof / (kurtosis - 1)
    (Var(s^2) / sigma^4 is (kurtosis - 1) / dof, 2 / dof for normal noise), never more than dof. With
    heavy tails (issue 17's mixture, kurtosis ~14) a few runs carry the variance, so sigma | sigma-hat
    must spread as on a handful of dof. Measured on 1,500 mixture studies of isoflop_cpu's design
    (bench/approach2_coverage.py): Approach 2's a covers 95.3 +- 0.5% with the cut, 94.2 +- 0.6%
    at the nominal dof (width 1.26 and 1.14x its spread)."""
    z = np.asarray(z, float)
    kurt = float(np.mean(z**4) / np.mean(z**2) ** 2) if np.any(z != 0) else 3.0
    return int(max(2, min(dof, 2 * dof / max(kurt - 1, 2.0))))


def eval_offset_sd(runs: Runs) -> float:
    """The sd of the eval set's shared offset: the runs' median eval standard error (0 if unknown)."""
    se = np.zeros(0) if runs.loss_se is None else np.asarray(runs.loss_se, float)
    se = se[np.isfinite(se) & (se > 0)]
    return float(np.median(se)) if len(se) else 0.0


def around(p: Plan, loss, mu, n_params: int) -> Plan:
    """`p` redrawn around the model values `mu` (fitted with n_params), its sigma inflated by
    max(1, sqrt(reduced chi^2)) of the data around mu."""
    if p.kind != PARAMETRIC:
        return p
    mu = np.asarray(mu, float)
    dof = len(mu) - n_params
    chi2 = float(np.sum(((np.asarray(loss) - mu) / p.sigma) ** 2) / dof) if dof > 0 else 1.0
    return dataclasses.replace(p, mu=mu, sigma=p.sigma * max(1.0, np.sqrt(chi2)))


# A law's resamples draw their noise at the robust scale of the law's own residuals (see around_law)
# where the table has at least this many runs beyond the law's 5 parameters.
ROBUST_MIN_DOF = 8
MAD_TO_SD = 1.4826  # sd / median |x| of a normal
MAD_EFFICIENCY = 0.37  # of the median absolute deviation against the sd, for normal noise


def around_law(runs: Runs, p: Plan, law) -> Plan:
    """`p` redrawn around a fitted L(N, D) (5 parameters).

    Approach 3 and its ML variant fit a Huber loss with delta = 1e-3 on log residuals of ~1e-2:
    they are least-absolute-deviation fits, whose spread follows the noise's density at 0, not its
    variance. With heavy tails (issue 17: 87.5% N(0, 0.012) + 12.5% N(0, 0.055)) resamples drawn at
    the pooled seed sd made their intervals 1.6-1.7x wider than their spread. So the noise is drawn
    at the robust scale of the law's own residuals, MAD_TO_SD x median |r / sigma_i| (r / sigma_i
    standardised by the measured per-run sigma; the 5 smallest, which the fit interpolates, left out), with
    the MAD's effective degrees of freedom (MAD_EFFICIENCY x (n - 5)) for sigma | sigma-hat: for a
    normal noise it estimates sigma, for the mixture the normal whose density at 0 is the mixture's,
    and a law that misses the data widens it. Fewer than ROBUST_MIN_DOF residual degrees of freedom:
    the measured sigma times max(1, sqrt(reduced chi^2)), as `around`."""
    if p.kind != PARAMETRIC:
        return p
    sigma = noise.run_noise(runs).sigma
    raw = dataclasses.replace(p, sigma=sigma)
    mu = np.asarray(law.loss(runs.N, runs.D), float)
    z = (np.asarray(runs.loss) - mu) / sigma
    n = len(z)
    # a least-absolute-deviation fit passes through ~5 runs (residuals ~0): the median of the others
    scale = MAD_TO_SD * float(np.median(np.sort(np.abs(z))[5:])) if n > 5 else 0.0
    if n - 5 < ROBUST_MIN_DOF or not scale > 0:
        return around(raw, runs.loss, mu, 5)
    return dataclasses.replace(raw, mu=mu, sigma=sigma * scale, dof=int(MAD_EFFICIENCY * (n - 5)))


def residual_pool(runs: Runs, p: Plan, law) -> Plan:
    """`p` (around_law's) with its normal draws replaced by the law's own standardised residuals,
    resampled with replacement: the null of a check that sets a least-squares estimate against a
    least-absolute-deviation one (Approaches 2 and 3 on a) must carry the noise's real tails. Approach
    3's draws are normal at the residuals' robust scale, which is the right spread for its own
    estimates but makes Approach 2's, which follows the variance, too narrow under heavy tails: the
    check false-alarmed in 10.0 +- 2.1% of 200 simulated isoflop_cpu studies with issue 17's mixture,
    2.5 +- 1.1% with this null (1.5% under normal noise; the drift score test 5.0% and 5.5%).
    The 5 residuals nearest 0 (the fit passes through ~5 runs) are left out; each run's draw is its own
    sigma times a resampled residual (no sigma | sigma-hat redraw: the pool carries the scale). Fewer
    than ROBUST_MIN_DOF residuals: `p` unchanged."""
    if p.kind != PARAMETRIC:
        return p
    sigma = noise.run_noise(runs).sigma
    z = (np.asarray(runs.loss) - np.asarray(law.loss(runs.N, runs.D), float)) / sigma
    pool = z[np.argsort(np.abs(z))[5:]]
    if len(pool) < ROBUST_MIN_DOF or not np.any(pool):
        return p
    return dataclasses.replace(p, sigma=sigma, dof=0, pool=pool)


def loss_draws(p: Plan, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, runs) losses drawn around the smooth profile: sigma | sigma-hat per resample, and
    the shared eval offset drawn last (so the run noise is the same draw with or without it)."""
    draws, offsets = offset_draws(p, n_boot, seed)
    return draws + offsets[:, None]


def offset_draws(p: Plan, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """loss_draws without the shared eval offset, and each resample's offset (zeros without one)."""
    rng = np.random.default_rng(seed)
    scale = np.sqrt(p.dof / rng.chisquare(p.dof, n_boot)) if p.dof > 0 else np.ones(n_boot)
    shape = (n_boot, len(p.mu))
    z = rng.standard_normal(shape) if p.pool is None else rng.choice(p.pool, size=shape)
    out = p.mu[None] + scale[:, None] * p.sigma[None] * z
    offsets = p.offset_sd * rng.standard_normal(n_boot) if p.offset_sd > 0 else np.zeros(n_boot)
    return out, offsets


def resampled_tables(runs: Runs, p: Plan, n_boot: int, seed: int):
    """The n_boot resampled tables (a generator: each refit sees one)."""
    if p.kind == PARAMETRIC:
        for row in loss_draws(p, n_boot, seed):
            yield runs.with_loss(row)
        return
    counts = bootstrap.resample_counts(len(runs), n_boot, seed, runs.budget)
    for row in counts:
        yield runs.subset(np.repeat(np.arange(len(runs)), row.astype(int)))


def collect(fits, n_boot: int, kind: str, source: str) -> Samples:
    """Gather an iterable of fit outcomes: dicts of values, or exceptions (failures)."""
    out: dict[str, list] = {}
    reasons: collections.Counter = collections.Counter()
    for r in fits:
        if isinstance(r, Exception):
            reasons[f"{type(r).__name__}: {str(r)[:80]}"] += 1
            continue
        for k, v in r.items():
            out.setdefault(k, []).append(float(v))
    failed = sum(reasons.values())
    return Samples({k: np.asarray(v) for k, v in out.items()}, n_boot, failed,
                   tuple(f"{n}x {why}" for why, n in reasons.most_common(3)), kind, source)


def attempt(fit: Callable[[Runs], dict], r: Runs):
    try:
        vals = fit(r)
    except RESAMPLE_ERRORS as e:
        return e
    return checked(vals)


def checked(vals):
    """A fit's values, or the failure they are: an exception, or a non-finite estimate."""
    if isinstance(vals, Exception) or all(np.isfinite(v) for v in vals.values()):
        return vals
    return FloatingPointError("non-finite estimate")


# rows(runs, losses B x R) -> [dict of values, or the exception its per-table fit raises]: one call
# for every draw of a parametric plan (e.g. analysis.laws.approach2_many), the same values as `fit`.
RowsFit = Callable[[Runs, np.ndarray], list]


def generic(runs: Runs, fit: Callable[[Runs], dict], n_boot: int, seed: int, p: Plan | None = None,
            rows: RowsFit | None = None) -> Samples:
    """Refit `fit` on every resample (for fits that are cheap per call: Approaches 2, ML, Kaplan);
    with `rows`, a parametric plan's draws are fitted by it in one call instead."""
    p = p or plan(runs)
    if rows is not None and p.kind == PARAMETRIC:
        got = (checked(v) for v in rows(runs, loss_draws(p, n_boot, seed)))
    else:
        got = (attempt(fit, r) for r in resampled_tables(runs, p, n_boot, seed))
    s = collect(got, n_boot, p.kind, p.source)
    return dataclasses.replace(s, eval_offset_sd=p.offset_sd if p.kind == PARAMETRIC else 0.0)


def approach3(runs: Runs, best_x, n_boot: int, seed: int, delta: float = 1e-3, p: Plan | None = None,
              eval_offset: bool = True, paired: Callable[[Runs], dict] | None = None,
              at_fit: Callable[[np.ndarray, np.ndarray], dict] | None = None,
              paired_rows: RowsFit | None = None) -> Samples:
    """Approach 3's Huber fit: all resamples as lanes of one batched L-BFGS from the full-data
    optimum (and, with E at its bound, restarts: approach3.restart_starts), drawn around the fitted
    law. eval_offset=False leaves the shared eval offset out (a prediction of runs scored on the
    same eval set, e.g. held-out runs, shares it). `paired` (a table -> {name: value}) is evaluated
    on the checks' null draws (residual_pool's: the law's own residuals resampled, the law refitted
    on each and stored as paired_E ... paired_a; the intervals' draws where the residuals are too
    few), its values stored as "paired_<name>" aligned with them (NaN where it fails): a
    statistic's null under the fitted law (analysis.diagnostics.misspec.agreement); `paired_rows`
    (as generic's `rows`) computes the same for all draws in one call. `at_fit` ((loss draws B x R,
    their refitted x B x 5) -> {name: (B,) array}, vectorised) is a statistic of each null draw at
    its own refitted law, stored the same way (misspec.curvature)."""
    from analysis.laws import allocation
    from analysis.laws import approach3 as a3
    p = around_law(runs, p or plan(runs), allocation.LawParams.from_logs(*best_x))
    if not eval_offset:
        p = dataclasses.replace(p, offset_sd=0.0)
    if p.kind == NONPARAMETRIC:
        s = bootstrap.approach3_samples(runs.N, runs.D, runs.loss, best_x, n_boot, seed, delta, groups=runs.budget)
        bad = int(np.sum(~np.isfinite(s["alpha"])))
        return Samples(s, n_boot, bad, (f"{bad}x non-finite objective",) if bad else (), p.kind, p.source)
    starts = a3.restart_starts(runs.N, runs.D, runs.loss, best_x)
    draws, offsets, x, ok = _refit_draws(runs, p, n_boot, seed, starts, delta)
    vals = bootstrap.law_samples(x[ok])
    if p.offset_sd > 0:
        # A common shift of every loss moves E by exactly that shift (the log residuals are unchanged),
        # so a prediction of a run scored on the same eval set subtracts it (analysis.laws.predict).
        vals[OFFSET_KEY] = offsets[ok]
    if paired is not None or at_fit is not None:
        # the checks' nulls: their own draws, from the residuals themselves (residual_pool), the law
        # refitted on each and stored as paired_E ... paired_a beside the paired statistics
        null = residual_pool(runs, p, allocation.LawParams.from_logs(*best_x))
        if null.pool is not None:
            nd, _, nx, nok = _refit_draws(runs, null, n_boot, seed + 1, starts, delta)
            nd, nx = nd[nok], nx[nok]
            vals.update({f"paired_{k}": v for k, v in bootstrap.law_samples(nx).items()})
        else:
            nd, nx = draws[ok], x[ok]
        vals.update(_paired(runs, nd, nx, paired, paired_rows, at_fit))
    n_bad = int((~ok).sum())
    return Samples(vals, n_boot, n_bad, (f"{n_bad}x not converged or non-positive loss draw",) if n_bad else (),
                   p.kind, p.source, p.offset_sd)


def _refit_draws(runs: Runs, p: Plan, n_boot: int, seed: int, starts, delta: float):
    """(draws B x R with the eval offset, each draw's offset, refitted x B x 5, ok): `p`'s draws, each
    refitted by Approach 3's batched Huber fit from `starts`."""
    from analysis.laws import approach3 as a3
    draws, offsets = offset_draws(p, n_boot, seed)
    draws = draws + offsets[:, None]
    positive = np.all(draws > 0, 1)
    x, ok = a3.refit_draws(runs.N, runs.D, np.where(positive[:, None], draws, 1.0), starts, delta)
    return draws, offsets, x, ok & positive


def _paired(runs: Runs, draws, x, paired, paired_rows, at_fit) -> dict:
    """approach3's paired statistics on `draws` (refitted as `x`), keyed paired_<name>."""
    vals = {}
    if paired is not None:
        got = ([checked(v) for v in paired_rows(runs, draws)] if paired_rows is not None else
               [attempt(paired, runs.with_loss(row)) for row in draws])
        for k in dict.fromkeys(k for g in got if isinstance(g, dict) for k in g):
            vals[f"paired_{k}"] = np.array([g[k] if isinstance(g, dict) else np.nan for g in got], float)
    if at_fit is not None:
        vals.update({f"paired_{k}": np.asarray(v, float) for k, v in at_fit(draws, x).items()})
    return vals


def curves(cv, sigma_per_row, fit: Callable, n_boot: int, seed: int, source: str) -> Samples:
    """Approach 1's resamples: seed noise moves a whole run's curve (init and data order persist
    through training), so each resample shifts every run's (smoothed) curve by sigma_run * z_run."""
    from analysis.tables.tables import Curves
    ids, inv = np.unique(cv.run_id, return_inverse=True)
    rng = np.random.default_rng(seed)

    def draws():
        for _ in range(n_boot):
            z = rng.standard_normal(len(ids))[inv]
            yield attempt(fit, Curves(cv.run_id, cv.N, cv.tokens, cv.flops, cv.loss + sigma_per_row * z))
    return collect(draws(), n_boot, PARAMETRIC, source)
