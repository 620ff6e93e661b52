"""Calibration on a study's own design: do its 95% intervals cover 95%, do its checks fail when
(and only when) they should?

Many studies of known truth are simulated with exactly the table's design (every (N, D, C, seed)
point the fit uses), the study's measured noise and, optionally, its eval set's shared offset; each
is fitted by the pipeline the study itself runs (`fitters.fit` with `FitOptions`), and the report's
intervals are compared with the truth:
- Approach 2's and Approach 3's a, Approach 3's E: fits.json's intervals;
- N_opt at the target (10x the largest budget): Approach 2's projection (figures.projection_intervals,
  as the report and Fig. 3 resample it) and Approach 3's (the report's approach3_predictions:
  parametric.approach3's draws of the law, allocated at the target);
- the predicted loss at the target (Approach 3, the same draws).
Each check's verdict is read from FitResult.diagnostics: where the law is right (`correct`, `heavy`)
a failure is a false alarm, where it is wrong (`curved`, `offcentre`) a failure is power.

Scenarios (the truth and the noise):
- correct: the fitted Approach 3 law (or fits.json's), Gaussian noise of the measured sigma;
- heavy: the same law, noise resampled from the study's own seed residuals (rescaled to sigma), or
  where fewer than MIN_RESIDUALS exist, the mixture 87.5% N(0, 0.012) + 12.5% N(0, 0.055) scaled to
  sigma (issue 17: the isoflop_cpu seed pairs, one of eight carrying 65% of the variance);
- curved: the local N exponent (-d log(L - E - B/D^beta) / d log N) drifts linearly in log N from
  alpha - 0.1 at the design's smallest N to alpha + 0.1 at its largest (and on beyond it), the loss
  at the grid's centre the law's: a law no single power describes, which extrapolation should be
  honest about;
- offcentre: A/B changed so every budget's true optimum lies 0.3 decades above the grid's centre
  (A and B moved by the same factor in opposite directions).
The truth's a is the slope of log N_opt on log C over the design's budgets, N_opt minimising
L(N, C / (k N)) with k the table's FLOPs per parameter-token (6 under C = 6ND): eq. 4 exactly for a
Chinchilla law, the a a noise-free grid would measure for the curved one.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

import numpy as np
import scipy.optimize
import scipy.stats

from analysis.laws import allocation, approach3, fitters
from analysis.records import InputError
from analysis.tables import conventions, tables
from analysis.uncertainty import noise, parametric

SCENARIOS = ("correct", "heavy", "curved", "offcentre")
MIXTURE = ((0.875, 0.012), (0.125, 0.055))  # (weight, sd in nats): issue 17's heavy-tailed seed noise
MIN_RESIDUALS = 8
CURVE_DALPHA = 0.1  # the N exponent runs alpha -+ this across the design
OFFCENTRE_DEX = 0.3  # decades between the grid's centre and the true optimum
HEAVY_MODES = ("auto", "residuals", "mixture")
# (key, what the sentence calls it); N_opt compared in log10, widths in decades.
INTERVALS = (("approach2_a", "Approach 2 a"), ("approach3_a", "Approach 3 a"), ("approach3_E", "E"),
             ("approach2_N_opt", "Approach 2 N_opt at {t}"), ("approach3_N_opt", "Approach 3 N_opt at {t}"),
             ("approach3_loss", "loss at {t}"))
# A failed simulated study (its fit raised) is counted with its reason, never dropped silently.
FIT_ERRORS = (InputError, ValueError, ArithmeticError, np.linalg.LinAlgError, RuntimeError)


@dataclasses.dataclass(frozen=True)
class CalibrationOptions:
    """What a calibration depends on besides the table (analysis.calibrate's flags, validated here)."""

    studies: int = 200
    scenarios: tuple[str, ...] = SCENARIOS
    # Per simulated study, for every interval: the fit's own count (analysis.fit --bootstrap), so the
    # intervals calibrated are the ones it prints. Percentiles of fewer draws are narrower and noisier:
    # at 50, Approach 3's intervals on isoflop_cpu's design covered 92.8-94.2% where at 200 the same
    # studies' covered 95.5-97.2% (400 studies, 2026-12-04).
    resamples: int = 200
    level: float = 0.95
    seed: int = 0
    eval_offset_sd: float | None = None  # None: the table's median final_eval_loss_se, else 0
    sigma: float | None = None  # None: measured from the table (analysis.uncertainty.noise)
    heavy: str = "auto"  # residuals (>= MIN_RESIDUALS of them) else the mixture; or forced
    validation: bool = True  # the diagnostics' rolling-origin and leave-one-out refits
    ml: bool = False  # Approach 3's ML variant too (BFGS per resample: ~10x the cost of a study)
    target: float | None = None  # None: 10x the largest C
    grid: approach3.StartGrid = approach3.StartGrid()

    def __post_init__(self):
        if self.studies < 2:
            raise InputError("--studies must be at least 2 (a coverage needs a spread)")
        if self.resamples < 10:
            raise InputError("--resamples must be at least 10 (percentile intervals)")
        bad = [s for s in self.scenarios if s not in SCENARIOS]
        if bad or not self.scenarios:
            raise InputError(f"--scenarios {','.join(bad) or '(none)'}: choose from {', '.join(SCENARIOS)}")
        if not 0 < self.level < 1:
            raise InputError("--level must be between 0 and 1, e.g. 0.95")
        if self.eval_offset_sd is not None and self.eval_offset_sd < 0:
            raise InputError("--eval-offset-sd must be >= 0 (nats)")
        if self.sigma is not None and self.sigma <= 0:
            raise InputError("--sigma must be positive (nats)")
        if self.heavy not in HEAVY_MODES:
            raise InputError(f"--heavy {self.heavy}: choose from {', '.join(HEAVY_MODES)}")
        if self.target is not None and self.target <= 0:
            raise InputError("--target must be a positive FLOP count")


@dataclasses.dataclass(frozen=True)
class Design:
    """The study's design and noise, read once and shared by every simulated study."""

    runs: tables.Runs
    law: allocation.LawParams  # the truth of `correct`
    law_source: str
    sigma: np.ndarray  # per-run loss std (nats)
    sigma_source: str
    residuals: np.ndarray  # seed residuals, each scaled by sqrt(n/(n-1)) to estimate sigma
    eval_offset_sd: float
    target: float
    k: float  # FLOPs per parameter-token (C = k N D)


def seed_residuals(runs: tables.Runs) -> np.ndarray:
    """Each repeated run's deviation from its point's mean (point: budget and N), times
    sqrt(n/(n-1)) so their mean square estimates the run-to-run variance."""
    if runs.seed is None:
        return np.zeros(0)
    out = []
    for c in runs.budgets():
        for n in np.unique(runs.N[runs.budget == c]):
            y = runs.loss[(runs.budget == c) & (runs.N == n)]
            if len(y) > 1:
                out.extend((y - y.mean()) * np.sqrt(len(y) / (len(y) - 1)))
    return np.asarray(out, float)


def design(runs: tables.Runs, options: CalibrationOptions, law: allocation.LawParams | None = None,
           law_source: str = "") -> Design:
    """The design of `runs`; `law` (e.g. fits.json's Approach 3) or else the table's own Huber fit."""
    if options.sigma is not None:
        sigma, source = np.full(len(runs), options.sigma), "--sigma"
    else:
        rn = noise.run_noise(runs)
        if rn.sigma is None:
            raise InputError("the table has no measured noise (no seed repeats, no final_eval_loss_se): "
                             "give the run-to-run loss std with --sigma")
        sigma, source = np.asarray(rn.sigma, float), rn.source
    if options.eval_offset_sd is not None:
        offset = options.eval_offset_sd
    else:
        se = runs.loss_se[np.isfinite(runs.loss_se)] if runs.loss_se is not None else np.zeros(0)
        offset = float(np.median(se)) if len(se) else 0.0
    if law is None:  # after the noise: a table that cannot be calibrated says so before a fit
        approach3.check_runs(runs.N, runs.D, runs.loss)
        law = approach3.fit_huber(runs.N, runs.D, runs.loss, grid=options.grid).params
        law_source = "the table's Approach 3 fit"
    target = options.target or 10 * float(runs.C.max())
    return Design(runs, law, law_source, sigma, source, seed_residuals(runs), offset, target,
                  allocation.flops_per_param_token(runs.C, runs.N, runs.D))


# --- the truth of each scenario ------------------------------------------------------------------------

LossFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def scenario_law(d: Design, scenario: str) -> tuple[LossFn, float]:
    """(L(N, D), E) of the scenario's truth."""
    p = d.law
    if scenario in ("correct", "heavy"):
        return p.loss, p.E
    if scenario == "curved":
        lo, hi = np.log(d.runs.N.min()), np.log(d.runs.N.max())
        mid = 0.5 * (lo + hi)

        c = CURVE_DALPHA / (0.5 * (hi - lo))  # d alpha / d log N

        def curved(n, dd):
            u = np.log(np.asarray(n, float)) - mid
            # the term whose local exponent -d log T / d log N is alpha + c u, equal to A/N^alpha at the centre
            return p.E + p.A * np.exp(-p.alpha * (mid + u) - 0.5 * c * u * u) + p.B / np.asarray(dd, float) ** p.beta
        return curved, p.E
    if scenario == "offcentre":
        # N_opt = G (C/k)^a, G = (alpha A / (beta B))^(1/(alpha+beta)): A/B x 10^(0.3 (alpha+beta))
        # moves every optimum 0.3 decades
        f = 10 ** (0.5 * OFFCENTRE_DEX * (p.alpha + p.beta))
        return dataclasses.replace(p, A=p.A * f, B=p.B / f).loss, p.E
    raise InputError(f"unknown scenario {scenario!r}")


def optimum(loss_fn: LossFn, c: float, log_fpt: Callable, around: float) -> tuple[float, float]:
    """(N_opt, loss there) of loss_fn along C = FLOPs per token x D, `log_fpt` giving log10 FLOPs per
    token of log10 N, searched within 4 decades of `around`."""
    obj = lambda x: float(loss_fn(10.0**x, c / 10.0 ** log_fpt(x)))
    x0 = np.log10(around)
    x = scipy.optimize.minimize_scalar(obj, bounds=(x0 - 4, x0 + 4), method="bounded", options={"xatol": 1e-9}).x
    return 10.0**x, obj(x)


def true_values(d: Design, scenario: str) -> dict[str, float]:
    """The truth of each interval's quantity (N_opt as log10), each in its estimate's own FLOP count.
    Approach 2 reads optima along the table's budgets, and Approach 3's a is the slope of its law's
    optima along them (conventions.allocation_exponents), so their truths minimise L(N, C / f(N)) with
    f the table's own FLOPs per token (interpolated in N, extrapolated to the target as the fits
    extrapolate it). Approach 3's projection to the target is eq. 4's, C = k N D with the table's
    median k, and so is its truth. Under 6ND the two coincide; where FLOPs per token are not
    proportional to N (isoflop_cpu's Appendix F count, k = 9.5 at its median, more for its smallest
    models) a constant k put Approach 3's a 0.031 and Approach 2's N_opt 0.10 decades off their truths
    and their coverage at 76% and 70% on that study's own calibration."""
    loss_fn, e = scenario_law(d, scenario)
    budgets = d.runs.budgets()
    centre = float(np.exp(np.mean(np.log(d.runs.N))))
    table = conventions.log_fpt(d.runs, None)
    eq4 = lambda x: np.log10(d.k) + x
    n_opt = np.array([optimum(loss_fn, c, table, centre)[0] for c in budgets])
    a = float(np.polyfit(np.log10(budgets), np.log10(n_opt), 1)[0])
    n_2 = optimum(loss_fn, d.target, table, n_opt[-1])[0]
    n_3, l_3 = optimum(loss_fn, d.target, eq4, n_opt[-1])
    return {"approach2_a": a, "approach3_a": a, "approach3_E": e, "approach2_N_opt": float(np.log10(n_2)),
            "approach3_N_opt": float(np.log10(n_3)), "approach3_loss": l_3}


def draw_losses(d: Design, scenario: str, studies: int, rng: np.random.Generator, heavy: str = "auto") -> np.ndarray:
    """(studies, runs) simulated final losses: the scenario's truth at every design point, plus
    noise, plus one eval offset per study (shared by all its runs)."""
    loss_fn, _ = scenario_law(d, scenario)
    mu = loss_fn(d.runs.N, d.runs.D)
    shape = (studies, len(mu))
    if scenario == "heavy":
        use_res = heavy == "residuals" or (heavy == "auto" and len(d.residuals) >= MIN_RESIDUALS)
        if use_res:
            if len(d.residuals) < 2 or not np.any(d.residuals):
                raise InputError("--heavy residuals: the table has no seed residuals to resample")
            unit = d.residuals / np.sqrt(np.mean(d.residuals**2))
            z = rng.choice(unit, size=shape)
        else:
            w, s = np.array(MIXTURE).T
            z = np.where(rng.random(shape) < w[0], s[0], s[1]) * rng.standard_normal(shape) / np.sqrt(np.sum(w * s**2))
    else:
        z = rng.standard_normal(shape)
    offset = d.eval_offset_sd * rng.standard_normal((studies, 1))
    return mu[None] + d.sigma[None] * z + offset


def heavy_kind(d: Design, heavy: str) -> str:
    use_res = heavy == "residuals" or (heavy == "auto" and len(d.residuals) >= MIN_RESIDUALS)
    return (f"the study's {len(d.residuals)} seed residuals, resampled" if use_res else
            "mixture 87.5% N(0, 0.012) + 12.5% N(0, 0.055), scaled to sigma")


# --- one simulated study -------------------------------------------------------------------------------

def fit_study(d: Design, loss: np.ndarray, options: CalibrationOptions, seed: int, cost: dict | None = None,
              kinds: dict | None = None):
    """(estimates, intervals, check verdicts) of one simulated study, fitted as the study fits itself.
    `cost` collects seconds per part: the fit (fitters.fit: Approaches 2, 3, Kaplan, diagnostics) and
    the report's two projections to the target; `kinds` collects each check's kind (test, target, health)."""
    from analysis.output import figures  # the report's Approach 2 projection; matplotlib only here
    cost = {} if cost is None else cost
    clock = time.perf_counter()

    def lap(part):
        nonlocal clock
        now = time.perf_counter()
        cost.setdefault(part, []).append(now - clock)
        clock = now
    runs = d.runs.with_loss(loss)
    opts = fitters.FitOptions(approach="all", ml=options.ml, bootstrap=options.resamples, seed=seed,
                              level=options.level, validation=options.validation, grid=options.grid)
    res = fitters.fit(runs, opts)
    lap("fit")
    f2, f3 = res.fits.get("approach2"), res.fits.get("approach3")
    est, iv = {}, {}
    if f2 is not None:
        est["approach2_a"], iv["approach2_a"] = f2.params["a"], f2.intervals.get("a")
        if res.approach2 is not None:
            est["approach2_N_opt"] = float(np.log10(res.approach2.n_law(d.target)))
            proj = figures.projection_intervals(runs, (d.target,), "parabola", False, options.level,
                                                options.resamples, seed)
            lo_hi = proj.get(("N", d.target))
            iv["approach2_N_opt"] = None if lo_hi is None else tuple(np.log10(lo_hi))
            lap("approach2_projection")
    if f3 is not None:
        est["approach3_a"], iv["approach3_a"] = f3.params["a"], f3.intervals.get("a")
        est["approach3_E"], iv["approach3_E"] = f3.params["E"], f3.intervals.get("E")
        law = allocation.LawParams(*(f3.params[k] for k in ("E", "A", "B", "alpha", "beta")))
        mid = allocation.optimal_allocation(law, d.target, d.k)
        est["approach3_N_opt"], est["approach3_loss"] = float(np.log10(mid.N_opt[0])), float(mid.loss[0])
        iv.update(_approach3_target_intervals(runs, law, d, options, seed))
        lap("approach3_projection")
    checks = {c["name"]: c["holds"] for c in res.diagnostics.get("checks", ())}
    if kinds is not None:
        kinds.update({c["name"]: c.get("kind", "test") for c in res.diagnostics.get("checks", ())})
    return est, iv, checks


def _approach3_target_intervals(runs, law, d: Design, options: CalibrationOptions, seed: int) -> dict:
    """As the report's approach3_predictions: the fit's own resampled laws, allocated at the target."""
    x = [np.log(law.A), np.log(law.B), np.log(law.E), law.alpha, law.beta]
    s = parametric.approach3(runs, x, options.resamples, seed).values
    if not len(s.get("alpha", ())):
        return {}
    p = np.array([s[k] for k in ("E", "A", "B", "alpha", "beta")]).T
    p = p[np.all(np.isfinite(p), 1)]
    draws = [allocation.optimal_allocation(allocation.LawParams(*row), d.target, d.k) for row in p]
    lo, hi = 50 * (1 - options.level), 50 * (1 + options.level)
    n = np.log10([a.N_opt[0] for a in draws])
    loss = np.array([a.loss[0] for a in draws])
    return {"approach3_N_opt": (float(np.nanpercentile(n, lo)), float(np.nanpercentile(n, hi))),
            "approach3_loss": (float(np.nanpercentile(loss, lo)), float(np.nanpercentile(loss, hi)))}


# --- many studies, summarised -------------------------------------------------------------------------

def _rate(k: int, n: int) -> dict:
    p = k / n if n else float("nan")
    return {"rate": p, "error": float(np.sqrt(p * (1 - p) / n)) if n else float("nan"), "k": k, "n": n}


def summarise(truth: dict, rows: list, level: float) -> dict:
    """Coverage (with its binomial error), widths against the estimates' spread, bias; check failure rates."""
    z = scipy.stats.norm.ppf(0.5 + level / 2)
    intervals = {}
    for key, _ in INTERVALS:
        pairs = [(e[key], i[key]) for e, i, _ in rows if key in e and i.get(key) is not None
                 and np.isfinite(e[key]) and all(np.isfinite(i[key]))]
        if not pairs:
            continue
        est = np.array([p[0] for p in pairs])
        lo, hi = np.array([p[1] for p in pairs]).T
        t = truth[key]
        cov = _rate(int(np.sum((lo <= t) & (t <= hi))), len(pairs))
        spread = 2 * z * float(np.std(est, ddof=1)) if len(est) > 1 else float("nan")
        width = float(np.mean(hi - lo))
        intervals[key] = {"truth": t, "coverage": cov["rate"], "coverage_error": cov["error"], "n": cov["n"],
                          "mean_width": width, "spread_width": spread,
                          "width_ratio": width / spread if spread > 0 else float("nan"),
                          "bias": float(np.mean(est - t)), "median_estimate": float(np.median(est)),
                          "estimate_outside_own_interval": float(np.mean((est < lo) | (est > hi)))}
    checks = {}
    for name in dict.fromkeys(n for _, _, c in rows for n in c):
        verdicts = [c.get(name) for _, _, c in rows]
        known = [v for v in verdicts if v is not None]
        r = _rate(sum(1 for v in known if not v), len(known))
        checks[name] = {"failure_rate": r["rate"], "error": r["error"], "n": r["n"],
                        "not_computed": len(verdicts) - len(known)}
    return {"intervals": intervals, "checks": checks}


def scenario_rng(seed: int, scenario: str) -> np.random.Generator:
    """The generator of one scenario's simulated losses."""
    return np.random.default_rng([seed, SCENARIOS.index(scenario)])


def study_seed(seed: int, scenario: str, i: int) -> int:
    """The resampling seed of the scenario's i-th simulated study: each study its own resamples."""
    return seed + 1_000_000 * (1 + SCENARIOS.index(scenario)) + i


def run_scenario(d: Design, scenario: str, options: CalibrationOptions, log=None) -> dict:
    """`options.studies` simulated studies of one scenario, fitted and summarised."""
    losses = draw_losses(d, scenario, options.studies, scenario_rng(options.seed, scenario), options.heavy)
    truth = true_values(d, scenario)
    rows, reasons, times, parts, kinds = [], {}, [], {}, {}
    for i, loss in enumerate(losses):
        t0 = time.perf_counter()
        try:
            rows.append(fit_study(d, loss, options, study_seed(options.seed, scenario, i), parts, kinds))
        except FIT_ERRORS as e:
            why = f"{type(e).__name__}: {str(e)[:80]}"
            reasons[why] = reasons.get(why, 0) + 1
        times.append(time.perf_counter() - t0)
        if log and (i + 1) % max(1, options.studies // 10) == 0:
            log(f"  {scenario}: {i + 1}/{options.studies} studies, {np.median(times):.2f} s each (median)")
    out = {"studies": len(losses), "fitted": len(rows), "failed": sum(reasons.values()),
           # the law is right under `correct` (a check's failure is a false alarm), wrong under the others
           "check_failures_are": "false alarms" if scenario in ("correct", "heavy") else "power",
           "failure_reasons": [f"{n}x {why}" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1])],
           # the first study of a process also compiles the fits' programs: the steady cost is the median
           "seconds_per_study": float(np.median(times)), "seconds_mean": float(np.mean(times)),
           "seconds_first_study": times[0], "seconds_total": float(np.sum(times)),
           "seconds_median_by_part": {k: float(np.median(v)) for k, v in parts.items()},
           **summarise(truth, rows, options.level)}
    for name, c in out["checks"].items():
        c["kind"] = kinds.get(name, "test")
    if scenario == "heavy":
        out["noise"] = heavy_kind(d, options.heavy)
    return out


def calibrate(runs: tables.Runs, options: CalibrationOptions, law: allocation.LawParams | None = None,
              law_source: str = "", log=None) -> dict:
    """calibration.json's body: the design, the settings, and one summary per scenario."""
    d = design(runs, options, law, law_source)
    record = {"design": design_record(d), "settings": settings_record(options), "scenarios": {}}
    for s in options.scenarios:
        record["scenarios"][s] = run_scenario(d, s, options, log)
    return record


def design_record(d: Design) -> dict:
    p = d.law
    return {"runs": len(d.runs), "budgets": [float(c) for c in d.runs.budgets()],
            "sizes": int(len(np.unique(d.runs.N))), "sigma": float(np.median(d.sigma)),
            "sigma_source": d.sigma_source, "seed_residuals": int(len(d.residuals)),
            "eval_offset_sd": d.eval_offset_sd, "target": d.target, "flops_per_param_token": d.k,
            "law": {"E": p.E, "A": p.A, "B": p.B, "alpha": p.alpha, "beta": p.beta}, "law_source": d.law_source}


def settings_record(o: CalibrationOptions) -> dict:
    return {"studies": o.studies, "resamples": o.resamples, "level": o.level, "seed": o.seed,
            "heavy": o.heavy, "validation": o.validation, "ml": o.ml, "start_grid_points": len(o.grid.points()),
            "curve_dalpha": CURVE_DALPHA, "offcentre_dex": OFFCENTRE_DEX}


def json_safe(v):
    """calibration.json's form: NaN as null (JSON has none), numpy scalars as Python numbers."""
    if isinstance(v, dict):
        return {k: json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_safe(x) for x in v]
    if isinstance(v, (np.floating, float)):
        return float(v) if np.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


# --- what the report says -----------------------------------------------------------------------------

def flops_label(t: float) -> str:
    return f"{t:.3g}".replace("e+", "e")


def calibration_sentence(record: dict, scenario: str = "correct") -> str:
    """One sentence for the report, e.g. "95% intervals: Approach 2 a 97%, Approach 3 a 93%, E 74%,
    ..., loss at 4.8e13 89% in 200 simulated studies of this design"."""
    sc = record["scenarios"][scenario]
    level = record["settings"]["level"]
    t = flops_label(record["design"]["target"])
    parts = [f"{label.format(t=t)} {sc['intervals'][key]['coverage']:.0%}" for key, label in INTERVALS
             if key in sc["intervals"]]
    where = "" if scenario == "correct" else f" ({scenario} scenario)"
    return (f"{level:.0%} intervals: {', '.join(parts)} in {sc['fitted']} simulated studies of this design"
            f"{where}")


def format_record(record: dict) -> str:
    """The printed table: per scenario, each interval's coverage and width ratio, each check's failure rate."""
    d, out = record["design"], []
    out.append(f"design: {d['runs']} runs, {len(d['budgets'])} budgets, sigma {d['sigma']:.4g} nats "
               f"({d['sigma_source']}), eval offset sd {d['eval_offset_sd']:.4g}, target {flops_label(d['target'])} FLOPs; "
               f"truth: {d['law_source']}")
    for name, sc in record["scenarios"].items():
        parts = ", ".join(f"{k} {v:.2f}" for k, v in sc.get("seconds_median_by_part", {}).items())
        out.append(f"\n{name}: {sc['fitted']}/{sc['studies']} studies fitted in {sc['seconds_total']:.0f} s: "
                   f"{sc['seconds_per_study']:.2f} s per study (median; mean {sc['seconds_mean']:.2f}, first "
                   f"{sc['seconds_first_study']:.1f} s; {parts})"
                   + (f"; noise: {sc['noise']}" if "noise" in sc else ""))
        for why in sc["failure_reasons"]:
            out.append(f"  failed: {why}")
        out.append(f"  {'interval':<18}{'coverage':>16}{'width ratio':>13}{'bias':>11}{'est. outside':>14}")
        for key, v in sc["intervals"].items():
            out.append(f"  {key:<18}{v['coverage']:>10.3f} ±{v['coverage_error']:.3f}{v['width_ratio']:>13.2f}"
                       f"{v['bias']:>+11.4f}{v['estimate_outside_own_interval']:>14.3f}")
        out.append(f"  {'check (failures are ' + sc['check_failures_are'] + ')':<72}{'fails':>16}")
        for key, v in sc["checks"].items():
            rate = "n/a" if v["n"] == 0 else f"{v['failure_rate']:.3f} ±{v['error']:.3f}"
            out.append(f"  {key[:72]:<72}{rate:>16}")
    return "\n".join(out)
