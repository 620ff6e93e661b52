"""The fits as a library: `fit(runs, FitOptions(...)) -> FitResult`, one function per approach
behind it (fit, resample for intervals, keep what the diagnostics need in a `Context`).
`python -m analysis.fit` is a thin shell over `fit`. Every fit uses the table's one FLOP convention
(runs.convention) and, for intervals, the one resampling plan of the table (analysis.uncertainty.parametric).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping

import numpy as np
import pandas as pd

from analysis.diagnostics import curvature, diagnostics, misspec
from analysis.laws import allocation, approach1, approach2, approach2_many, approach3, kaplan, ml_refit, true_e
from analysis.tables import conventions, tables
from analysis.uncertainty import noise, parametric
from analysis.records import Fit, InputError, fits_json, write_fits


# The ML variant has 6 free parameters (5 + the Huber scale): on a handful of runs its scale
# collapses, so tiny tables get no ML interval. Resamples start from the full-data ML optimum; on
# studies/isoflop_cpu (42 runs) the median one took ~230 BFGS iterations, but those drawn onto the
# E-alpha ridge (E ~ 0.13, alpha ~ 0.14: E is weakly determined there) crawl for thousands: they
# get ml_refit.OPTIONS.max_iter (10,000) L-BFGS iterations, and one that exhausts it counts as failed.
ML_MIN_RUNS_FOR_INTERVAL = 12


APPROACHES = ("1", "2", "3", "kaplan", "all")


@dataclasses.dataclass(frozen=True)
class FitOptions:
    """Everything a fit depends on besides the table (analysis.fit's flags, validated here).
    approach: one of APPROACHES ('all': 2, 3, kaplan, and 1 when there are curves, each skipped
    with its reason when the table cannot support it)."""

    approach: str = "all"
    curves: str | None = None  # loss curves CSV (Approach 1)
    curve_loss_col: str | None = None
    flops_convention: str = "6nd"  # how the curves' FLOPs are counted when they have no flops column
    smooth: int = 1  # Approach 1: moving-average window over logged points
    smooth_dex: float = 0.1  # Approach 1: local linear smoothing over this many decades of tokens
    interp: str = "parabola"  # Approach 2's IsoFLOP profile model
    include_edges: bool = False  # Approaches 1-2: keep optima at the edge of the sampled N range
    delta: float = 1e-3  # Approach 3's Huber delta
    ml: bool = True  # Approach 3: also Epoch's maximum-likelihood variant
    bootstrap: int = 200  # resamples (0: no intervals)
    seed: int = 0
    level: float = 0.95
    validation: bool = True  # the diagnostics' rolling-origin and leave-one-out refits
    true_e: float | None = None  # the source's exact E* (None: the table's true_loss column, if any)
    grid: approach3.StartGrid = approach3.StartGrid()

    def __post_init__(self):
        if self.approach not in APPROACHES:
            raise InputError(f"--approach {self.approach}: choose from {', '.join(APPROACHES)}")
        if self.bootstrap < 0:
            raise InputError("--bootstrap must be >= 0")
        if not 0 < self.level < 1:
            raise InputError("--level must be between 0 and 1, e.g. 0.95")
        if self.delta <= 0:
            raise InputError("--delta must be positive")
        if self.smooth_dex < 0:
            raise InputError("--smooth-dex must be >= 0 (0: no smoothing)")
        if self.approach == "1" and not self.curves:
            raise InputError("--approach 1 needs --curves FILE (loss curves in long format)")


@dataclasses.dataclass(frozen=True)
class FitResult:
    """What a fit produced: fits.json's content as records, plus the Approach 2 fit itself (not in
    fits.json) so figures and the report draw it instead of fitting it again."""

    fits: Mapping[str, Fit]
    convention: str  # the one FLOP convention every fit used
    diagnostics: Mapping[str, object]  # analysis.diagnostics.build's sections
    notes: tuple[str, ...] = ()  # what the fit noted: skipped approaches, partial E*
    approach2: approach2.Approach2Result | None = None  # fitted under `options`
    options: FitOptions | None = None  # what it was fitted with (None: read from a file)
    source: str | None = None  # the fits.json it was read from or written to

    def approach2_under(self, interp: str, include_edges: bool) -> approach2.Approach2Result | None:
        """The Approach 2 fit, if this result fitted it with that profile model and edge rule."""
        o = self.options
        ok = o is not None and (o.interp, o.include_edges) == (interp, include_edges)
        return self.approach2 if ok else None

    def write(self, path) -> "FitResult":
        """fits.json at `path`; returns the record that knows where it lives."""
        write_fits(path, self.fits, self._top())
        return dataclasses.replace(self, source=os.fspath(path))

    def to_json(self) -> dict:
        """fits.json's body, as `read` gives it back."""
        return json.loads(json.dumps(fits_json(self.fits, self._top())))

    def _top(self) -> dict:
        return {"convention": self.convention, "diagnostics": self.diagnostics}

    @classmethod
    def from_json(cls, body: Mapping[str, object]) -> "FitResult":
        fits = {k: Fit.from_json(v) for k, v in body.items() if isinstance(v, dict) and "approach" in v}
        return cls(fits, str(body.get("convention", "?")), dict(body.get("diagnostics") or {}))

    @classmethod
    def read(cls, path) -> "FitResult":
        with open(path) as fh:
            return dataclasses.replace(cls.from_json(json.load(fh)), source=os.fspath(path))


@dataclasses.dataclass
class Context:
    options: FitOptions
    runs: tables.Runs
    plan: parametric.Plan
    r1: approach1.Approach1Result | None = None
    r2: approach2.Approach2Result | None = None
    r3: approach3.Approach3Result | None = None
    ml: approach3.Approach3Result | None = None
    samples: dict = dataclasses.field(default_factory=dict)  # approach key -> parametric.Samples
    vertex_null: dict | None = None  # approach2.vertex_gap_null of the table: {C: (gap, threshold)}

    def vertex_gaps(self) -> dict:
        """{C: (parabola-Akima gap, the gap its resampled null exceeds at the check's level)}."""
        if self.vertex_null is None:
            p = self.plan
            if p.kind == parametric.PARAMETRIC and p.source == "seed noise":
                sigma, dof = p.sigma, p.dof  # the scale of the residuals about the parabolas, as Approach 2 draws
            else:
                rn = noise.run_noise(self.runs)
                sigma, dof = rn.sigma, rn.dof
            self.vertex_null = approach2.vertex_gap_null(self.runs, sigma, dof, 1 - diagnostics.FALSE_ALARM,
                                                         seed=self.options.seed)
        return self.vertex_null


def vertices_differ(gaps: dict, c: float) -> bool | None:
    """The budget's gap beyond its null threshold (None: not judged, e.g. no noise estimate)."""
    gap, threshold = gaps.get(c, (float("nan"), float("nan")))
    return None if not np.isfinite(threshold) else bool(gap > threshold)


def _intervals(ctx: Context, key: str, s: parametric.Samples) -> dict:
    ctx.samples[key] = s
    return s.intervals(ctx.options.level)


def usable_curves(path, loss_col, flops_convention: str, runs: tables.Runs, smooth_dex: float) -> tables.Curves:
    """The curves of the table's usable runs (trunks, sweeps and failed runs are no envelope), their
    FLOPs counted as the table counts each run's, smoothed: what Approach 1 fits and Fig. 2 draws."""
    c = tables.load_curves(path, loss_col, flops_convention)
    keep = np.isin(c.run_id, runs.run_id)
    if keep.any():
        c = tables.Curves(c.run_id[keep], c.N[keep], c.tokens[keep], c.flops[keep], c.loss[keep])
        if "flops" not in pd.read_csv(path, nrows=0).columns:
            # One convention per fits.json: count the curves' FLOPs as the table counts each run's.
            per_token = dict(zip(runs.run_id, runs.flops_per_token()))
            c = tables.Curves(c.run_id, c.N, c.tokens, np.array([per_token[r] for r in c.run_id]) * c.tokens, c.loss)
    return approach1.smooth_curves(c, smooth_dex)


def _curves(ctx: Context) -> tables.Curves:
    a = ctx.options
    return usable_curves(a.curves, a.curve_loss_col, a.flops_convention, ctx.runs, a.smooth_dex)


def approach1_fit(ctx: Context) -> dict[str, Fit]:
    a = ctx.options
    curves = _curves(ctx)
    fit1 = lambda cv, sm: approach1.fit_approach1(cv, smooth=sm, drop_edges=not a.include_edges)
    ctx.r1 = r1 = fit1(curves, a.smooth)
    ints, notes = {}, [f"{approach1.points_per_run(curves)} curve points per run (median), smoothed over "
                       f"{a.smooth_dex:g} decades of tokens (local linear)"]
    sigma = noise.run_noise(ctx.runs).sigma
    if a.bootstrap and sigma is not None:
        by_run = dict(zip(ctx.runs.run_id, sigma))
        s_run = np.array([by_run.get(r, np.median(sigma)) for r in curves.run_id])

        def exponents(cv):
            r = fit1(cv, 1)
            return {"a": r.n_law.exponent, "b": r.d_law.exponent}
        s = parametric.curves(curves, s_run, exponents, a.bootstrap, a.seed + 1, ctx.plan.source)
        ints = _intervals(ctx, "approach1", s)
    elif a.bootstrap:
        notes.append("no interval: the table has no measured noise (seed repeats or eval SE)")
    return {"approach1": Fit("approach1", {"a": r1.n_law.exponent, "b": r1.d_law.exponent}, None, ints,
                             len(np.unique(curves.run_id)), tuple(notes), _boot_extra(ctx, "approach1"))}


def _boot_extra(ctx: Context, key: str) -> dict:
    return {"bootstrap": ctx.samples[key].summary()} if key in ctx.samples else {}


def approach2_fit(ctx: Context) -> dict[str, Fit]:
    a, runs = ctx.options, ctx.runs
    sig = noise.run_noise(runs).sigma  # the measured noise weights the full fit and every resample's
    ctx.r2 = r2 = approach2.fit_approach2(runs, a.interp, a.include_edges, sig)
    ints = {}
    if a.bootstrap:  # resamples scatter as plan.sigma but are weighted as the full-data fit

        def values(r):
            res = approach2.fit_approach2(r, a.interp, a.include_edges, sig)
            return {"a": res.n_law.exponent, "b": res.d_law.exponent, misspec.KEY: misspec.trend(res)}
        rows = approach2_many.rows_of(sig, a.include_edges, lambda f: {  # the same values, all draws at once
            "a": f.n_law.exponent, "b": f.d_law.exponent, misspec.KEY: f.trend})
        s = parametric.generic(runs, values, a.bootstrap, a.seed, ctx.plan, rows if a.interp == "parabola" else None)
        ints = _intervals(ctx, "approach2", s)
        ints.pop(misspec.KEY, None)  # the misspecification check's null, not a reported quantity
    notes = [f"budgets weighted by {r2.weighting}"]
    edges = [f"{o.C:.3g}" for o in r2.optima if o.at_edge]
    if edges:
        notes.append(f"optimum at the grid edge for budgets {', '.join(edges)}")
    concave = [f"{o.C:.3g}" for o in r2.optima if not o.convex]
    if concave:
        notes.append(f"non-convex profile (parabola opens downward) at budgets {', '.join(concave)}")
    gaps = ctx.vertex_gaps()
    budgets = [{"C": o.C, "N_opt": o.N_opt, "D_opt": o.D_opt, "at_edge": o.at_edge, "convex": o.convex,
                "log10_N_se": o.log10_N_se if np.isfinite(o.log10_N_se) else None,
                "N_parabola": o.N_parabola, "N_akima": o.N_akima, "vertices_differ": vertices_differ(gaps, o.C),
                "used": o.C in r2.used_budgets} for o in r2.optima]
    return {"approach2": Fit("approach2", {"a": r2.n_law.exponent, "b": r2.d_law.exponent}, None, ints,
                             int(np.isfinite(runs.budget).sum()), tuple(notes),
                             {"budgets": budgets, **_boot_extra(ctx, "approach2")})}


def _convention_ab(ctx: Context, law: allocation.LawParams) -> tuple[float, float]:
    return conventions.allocation_exponents(law, ctx.runs)


def approach3_fit(ctx: Context) -> dict[str, Fit]:
    a, runs = ctx.options, ctx.runs
    approach3.check_runs(runs.N, runs.D, runs.loss)
    ctx.r3 = r3 = approach3.fit_huber(runs.N, runs.D, runs.loss, delta=a.delta, grid=a.grid)
    eq4 = conventions.is_6n_like(runs) is not None
    ints = {}
    if a.bootstrap:
        sig = noise.run_noise(runs).sigma
        # Approach 2 refitted on Approach 3's own draws: the null of their difference under the law
        paired = None if ctx.r2 is None else (
            lambda r: {"a2": approach2.fit_approach2(r, a.interp, a.include_edges, sig).n_law.exponent})
        rows = None if ctx.r2 is None or a.interp != "parabola" else (
            approach2_many.rows_of(sig, a.include_edges, lambda f: {"a2": f.n_law.exponent}))
        s = parametric.approach3(runs, r3.x, a.bootstrap, a.seed, a.delta, ctx.plan, paired=paired,
                                 at_fit=curvature.at_fit(runs), paired_rows=rows)
        for pre in ("", "paired_"):  # the law's draws, and the checks' null draws (parametric.residual_pool)
            if not eq4 and len(s.values.get(pre + "alpha", ())):
                laws = [allocation.LawParams(*v) for v in zip(*(s.values[pre + k] for k in ("E", "A", "B", "alpha", "beta")))]
                s.values[pre + "a"], s.values[pre + "b"] = (np.asarray(v) for v in zip(*(_convention_ab(ctx, p) for p in laws)))
        ints = {k: v for k, v in _intervals(ctx, "approach3", s).items()
                if not k.startswith("paired_") and k != parametric.OFFSET_KEY}
    fits = {"approach3": _with_draws(ctx, _law_fit(ctx, r3, "approach3", ints, eq4))}
    if a.ml:
        # Hoffmann's start as Epoch, and the Huber fit's: on small models the first can stall on a
        # plateau where B/D^beta has vanished (approach3.fit_ml); the higher likelihood wins.
        ml, sigma_ml = approach3.fit_ml(runs.N, runs.D, runs.loss, delta=a.delta, also_from=(r3.params,))
        ctx.ml = ml
        ints, ml_notes = {}, [_ml_start_note(ml, sigma_ml, a.delta)]
        if a.bootstrap and len(runs) < ML_MIN_RUNS_FOR_INTERVAL:
            ml_notes.append(f"no interval: {len(runs)} runs for 6 free parameters (needs {ML_MIN_RUNS_FOR_INTERVAL}); "
                            f"the likelihood's scale collapses toward 0 on so few runs")
        elif a.bootstrap:
            def values(p):
                ab = allocation.exponents(p)[:2] if eq4 else _convention_ab(ctx, p)
                return {"E": p.E, "alpha": p.alpha, "beta": p.beta, "a": ab[0], "b": ab[1]}
            # All resamples as lanes of one batched L-BFGS from the full-data optimum (ml_refit).
            p_ml = parametric.around_law(runs, ctx.plan, ml.params)
            x6 = np.append(ml.x, np.log(sigma_ml))
            ints = _intervals(ctx, "approach3_ml", ml_refit.samples(runs, p_ml, x6, a.bootstrap, a.seed, a.delta, values))
        fits["approach3_ml"] = _law_fit(ctx, ml, "approach3_ml", ints, eq4, tuple(ml_notes))
    return fits


def _with_draws(ctx: Context, f: Fit) -> Fit:
    """fits.json keeps the resampled laws and C = k N D's k, so analysis.laws.predict can give
    prediction intervals at any (N, D) or budget from fits.json alone."""
    runs, s = ctx.runs, ctx.samples.get("approach3")
    extra = {"flops_per_param_token": allocation.flops_per_param_token(runs.C, runs.N, runs.D)}
    if s is not None and len(s.values.get("alpha", ())):
        keys = ("E", "A", "B", "alpha", "beta") + ((parametric.OFFSET_KEY,) if parametric.OFFSET_KEY in s.values else ())
        extra["draws"] = {k: [float(f"{v:.7g}") for v in s.values[k]] for k in keys}
    return dataclasses.replace(f, extra={**f.extra, **extra})


def _ml_start_note(ml: approach3.Approach3Result, sigma: float, delta: float) -> str:
    hoffmann, huber = ml.start_objectives
    note = (f"sigma={sigma:.4g} (the Huber density's scale; the residual scale is sigma/delta = {sigma / delta:.4g}); "
            f"negative log-likelihood {hoffmann:.6g} from Hoffmann's start, {huber:.6g} from the Huber fit's")
    if abs(hoffmann - huber) > 1e-6 * max(1.0, abs(huber)):
        note += f": the {'Huber fit' if huber < hoffmann else 'Hoffmann'} start wins"
    return note


def _law_fit(ctx, res, key, ints, eq4, notes=()) -> Fit:
    f = approach3.to_fit(res, key, len(ctx.runs), ints, notes)
    if eq4:
        return dataclasses.replace(f, extra={**f.extra, **_boot_extra(ctx, key)})
    a, b = _convention_ab(ctx, res.params)
    params = {**f.params, "a": a, "b": b}
    note = (f"a, b: allocation under C = f(N) D with the table's {ctx.runs.convention} FLOPs per token; "
            f"eq. 4 (C = 6ND) gives a = {f.params['a']:.4g}; G is eq. 4's")
    if not np.isfinite(a):
        note += "; a, b undefined: N_opt(C) lies more than 100x outside the table's sizes"
    return dataclasses.replace(f, params=params, notes=(*f.notes, note),
                               extra={**f.extra, "a_eq4": f.params["a"], "b_eq4": f.params["b"],
                                      **_boot_extra(ctx, key)})


def kaplan_fit(ctx: Context) -> dict[str, Fit]:
    a, runs = ctx.options, ctx.runs
    k = kaplan.fit_kaplan(runs)
    ints = {}
    if a.bootstrap:
        s = parametric.generic(runs, lambda r: kaplan.kaplan_values(kaplan.fit_kaplan(r)), a.bootstrap, a.seed, ctx.plan)
        ints = _intervals(ctx, "kaplan", s)
    f = kaplan.to_fit(k, len(runs), ints)
    return {"kaplan": dataclasses.replace(f, notes=(*f.notes, f"C counted as {runs.convention}"),
                                          extra=_boot_extra(ctx, "kaplan"))}


FITTERS = (("1", approach1_fit), ("2", approach2_fit), ("3", approach3_fit), ("kaplan", kaplan_fit))


def fit_all(ctx: Context) -> tuple[dict[str, Fit], dict[str, str]]:
    """The fits asked for. Under approach 'all', an approach this table cannot support (too few
    budgets, an envelope with no interior optimum, ...) is skipped with its reason instead of
    failing the others; asked for by name, the same problem is an error."""
    o = ctx.options
    fits: dict[str, Fit] = {}
    skipped: dict[str, str] = {}
    for name, fit_one in FITTERS:
        if o.approach not in (name, "all") or (name == "1" and not o.curves):
            continue
        try:
            fits.update(fit_one(ctx))
        except InputError as e:
            if o.approach != "all":
                raise
            skipped[name] = str(e)
    if not fits:
        raise InputError("no approach could be fitted: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return fits, skipped


def flag_outside(f: Fit, level: float) -> Fit:
    """`f` with a note for every estimate outside its own interval. Percentile intervals of the
    resampled estimates need not contain the full fit's value (a skewed or biased resampling, an
    estimate at a bound); that is a finding for the reader, never an error (issue 17)."""
    out = [f"{k} = {f.params[k]:.4g} lies outside its own {level:.0%} interval [{lo:.4g}, {hi:.4g}]: the resampled "
           f"estimates are skewed or biased against the full fit's" for k, (lo, hi) in f.intervals.items()
           if k in f.params and np.all(np.isfinite([f.params[k], lo, hi])) and not lo <= f.params[k] <= hi]
    return dataclasses.replace(f, notes=(*f.notes, *out)) if out else f


def fit(runs: tables.Runs, options: FitOptions) -> FitResult:
    """Every fit `options` asks for, their intervals, E* where the source knows it, and the diagnostics."""
    ctx = Context(options, runs, parametric.plan(runs))
    fits, skipped = fit_all(ctx)
    e_star, e_note = true_e.value(runs, options.true_e)
    fits = true_e.attach(fits, e_star)
    fits = {k: flag_outside(f, options.level) for k, f in fits.items()}
    notes = ([e_note] if e_note else []) + [f"approach {name} skipped: {reason}" for name, reason in skipped.items()]
    diag = diagnostics.build(ctx, fits, validate_runs=options.validation)
    fits = misspec.label(fits, diag)
    return FitResult(fits, runs.convention, diag, tuple(notes), ctx.r2, options)
