"""A registry law fitted, resampled and compared, as the Fit record fits.json holds, and its
predictions with intervals on another table."""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd

from analysis.laws import law_diagnostics, law_fit, law_intervals, registry, stat_tests
from analysis.laws.law_fit import LawData, LawFit
from analysis.records import Fit, InputError


@dataclasses.dataclass(frozen=True)
class LawOptions:
    fix: dict = dataclasses.field(default_factory=dict)  # name -> value, per law (names it does not have: ignored)
    delta: float = 1e-3
    bootstrap: int = 200
    seed: int = 0
    level: float = 0.95
    grid_starts: int = law_intervals.GRID_STARTS
    starts: tuple | None = None  # rows over the free parameters, instead of the law's grid (tests)
    validation: bool = True  # leave-one-out and rolling-origin refits in the diagnostics


@dataclasses.dataclass(frozen=True)
class LawResult:
    fit: LawFit
    samples: law_intervals.LawSamples | None
    record: Fit


def nested_test(fit: LawFit, data: LawData, options: LawOptions) -> dict:
    """Likelihood-ratio test and delta AIC of the law against the law it extends, both fitted here.
    The log-likelihood is Gaussian in the log-loss residuals, profiled over sigma, evaluated at the
    Huber fits (an approximation: the Huber fit is not the least-squares one, which can only favour
    the simpler law less than exactly)."""
    base = registry.get(fit.law.nested_in)
    fixed = {k: v for k, v in fit.search.fixed.items() if k in base.names}
    # Starts: the extension's best end points with its extra parameters dropped (the nested optimum
    # is usually near), and a fixed-seed sample of the simpler law's grid: at most law_fit.POLISH in
    # all, so the nested fit is one float64 phase (one program to compile, not two).
    search = law_fit.Search(base, fixed)
    names = [p.name for p in base.params if p.name not in fixed]
    index = [fit.law.names.index(n) for n in names]
    own = fit.search.full(fit.top_free)[:, index]
    grid = search.grid()
    if options.starts is None:
        pick = np.random.default_rng(options.seed).choice(len(grid), min(len(grid), law_fit.POLISH - len(own)),
                                                          replace=False)
        own = np.concatenate([own, grid[np.sort(pick)]])
    f0 = law_fit.fit_law(base, data, fixed, options.delta, own)
    rss0, rss1 = (float(np.sum(law_fit.residuals(f, data) ** 2)) for f in (f0, fit))
    r, extra = len(data), len(fit.search.free) - len(f0.search.free)
    lr = max(0.0, r * np.log(rss0 / rss1))
    return {"against": base.name, "objective_nested": f0.objective, "objective": fit.objective,
            "lr_statistic": lr, "dof": extra, "p_value": float(stat_tests.chi2_sf(lr, extra)),
            "delta_aic": r * np.log(rss1 / rss0) + 2 * extra,
            "verdict": "the extension is needed (p < 0.05)" if stat_tests.chi2_sf(lr, extra) < 0.05
            else "no evidence against the simpler law (p >= 0.05)"}


def precompile_nested(law: registry.Law, data: LawData, options: LawOptions) -> None:
    """Start compiling nested_test's fit (POLISH starts, one float64 phase) on a worker thread, so a
    first use compiles it while the resamples run rather than after (~2.5 CPU s, 2-core CPU). Not
    before the law's own fit: its two compilations are on the critical path, and a third at once
    slows them (XLA's compilations on one machine partly serialise)."""
    base = registry.get(law.nested_in)
    search = law_fit.Search(base, {k: v for k, v in options.fix.items() if k in law.names and k in base.names})
    if options.starts is not None or len(search.grid()) < law_fit.POLISH:
        return  # nested_test's start count is known only after the fit
    with jax.enable_x64(True):
        law_fit.minimize(search, data, base.constants(data.logs), (law_fit.POLISH, len(search.free)), options.delta,
                         law_fit.POLISH_OPTIONS, compile_only=True)


def fit_for(law: registry.Law, data: LawData, options: LawOptions) -> LawFit:
    """The law fitted as `run` fits it: on the programs its resamples then reuse."""
    fixed = {k: v for k, v in options.fix.items() if k in law.names}
    if len(fixed) == len(law.params):
        raise InputError(f"--fix: every parameter of {law.name} is fixed; leave at least one free")
    lanes = law_intervals.fit_lanes(options.bootstrap, law_fit.TOP + options.grid_starts) if options.bootstrap else 0
    screen_to = options.bootstrap * (law_fit.TOP + options.grid_starts) if lanes else 0
    return law_fit.fit_law(law, data, fixed, options.delta, options.starts, lanes=lanes, screen_to=screen_to)


def run(law: registry.Law, data: LawData, options: LawOptions, fit: LawFit | None = None) -> LawResult:
    """Fit (unless `fit`, from fit_for on the same data, is given), resample, compare, check."""
    fit = fit_for(law, data, options) if fit is None else fit
    if law.nested_in:
        precompile_nested(law, data, options)
    fixed = fit.search.fixed
    values = fit.values()
    values.update(law.derived(values, data.logs, fit.constants))
    samples = law_intervals.resample(fit, data, options.bootstrap, options.seed, options.grid_starts) \
        if options.bootstrap > 0 else None
    extra = {"law": law.name, "form": law.summary, "fixed": sorted(fixed), "constants": fit.constants,
             "starts": fit.n_starts, "converged_starts": fit.n_converged,
             "sigma_log_loss": law_intervals.noise_sigma(fit, data)}
    if samples is not None:
        extra["resampling"] = samples.summary()
    if law.nested_in:
        extra["comparison"] = nested_test(fit, data, options)
    extra["diagnostics"] = law_diagnostics.check(fit, data, samples, options.validation)
    ints = samples.intervals(options.level) if samples is not None else {}
    ints = {k: v for k, v in ints.items() if k not in fixed}
    return LawResult(fit, samples, Fit(law.name, values, fit.objective, ints, len(data), (), extra))


def predictions(result: LawResult, frame: pd.DataFrame, data: LawData, level: float) -> pd.DataFrame:
    """The input's columns plus predicted_loss and the central `level` interval over the resamples'
    parameters (parameter uncertainty only: a new run's own noise comes on top)."""
    out = frame.copy()
    out["predicted_loss"] = np.exp(law_fit.predict_log(result.fit, data)[0])
    if result.samples is not None and len(result.samples.x) >= 2:
        draws = np.exp(law_fit.predict_log(result.fit, data, result.samples.x))
        q = 100 * (1 - level) / 2
        out["predicted_low"] = np.nanpercentile(draws, q, axis=0)
        out["predicted_high"] = np.nanpercentile(draws, 100 - q, axis=0)
    else:
        out["predicted_low"] = out["predicted_high"] = np.nan
    return out


def format_result(result: LawResult) -> str:
    """A few lines: each parameter and derived quantity with its interval, the comparison."""
    r = result.record
    lines = [f"law {r.approach}: {r.extra['form']}  ({r.n_runs} rows, objective {r.objective:.6g}, "
             f"{r.extra['starts']} starts)"]
    for k, v in r.params.items():
        iv = r.intervals.get(k)
        tag = "  (fixed)" if k in r.extra["fixed"] else (f"  [{iv[0]:.5g}, {iv[1]:.5g}]" if iv else "")
        lines.append(f"  {k:<22}{v:>14.6g}{tag}")
    if "resampling" in r.extra:
        s = r.extra["resampling"]
        lines.append(f"  intervals: {s['resamples']} parametric resamples (sigma {s['sigma_log_loss']:.3g} in log loss),"
                     f" {s['starts_per_resample']} starts each, {s['failed']} failed, a grid start won "
                     f"{s['grid_start_won']}")
    if "decay" in r.extra:
        d = r.extra["decay"]
        kept = ", ".join(f"{v:g}" for v in d["kept"])
        lines.append(f"  annealing momentum lambda {d['lambda']:g}: {d['rule']}; kept {kept}")
    if "comparison" in r.extra:
        c = r.extra["comparison"]
        lines.append(f"  against {c['against']}: LR {c['lr_statistic']:.3g} on {c['dof']} dof, p {c['p_value']:.3g}, "
                     f"delta AIC {c['delta_aic']:.3g}: {c['verdict']}")
    lines += law_diagnostics.lines(r.extra.get("diagnostics", []))
    return "\n".join(lines)


def parse_fixes(text: str | None, laws: list[registry.Law]) -> dict:
    """--fix for several laws at once: each name must belong to at least one of them."""
    out: dict = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        owners = [law for law in laws if item.partition("=")[0].strip() in law.names]
        if not owners:
            raise InputError(f"--fix {item.strip()!r}: no parameter of that name in "
                             f"{', '.join(law.name for law in laws)} ({'; '.join(', '.join(law.names) for law in laws)})")
        for law in owners:
            out.update(registry.parse_fix(item, law))
    return out
