"""How far the headline a moves when the learning-rate law the runs were planned with is off by its
own uncertainty (issue 20): fits.json's `lr_sensitivity` and the report's "Sensitivity to the lr law".

A study planned with `study.hparams = FILE` took each run's lr from a fitted law lr*(N, D) =
P N^x D^y (experiments.planning.hparam_fit); plan.json's study section records it as `hparams_law`
with the exponents' 95% intervals, and the file (its path and sha256 recorded there) holds what the
plan does not: the sweep's measured loss rise of a factor-2 lr error (`lr.penalty_x2.relative_mean`,
p) and the sweep's (N, D) groups. Had an exponent been at one end of its interval (delta = end -
estimate), a run would have trained at an lr off by the factor f = (N / N_pivot)^delta (or
(D / D_pivot)^delta for the D exponent): a law refitted with another exponent rotates about the
point its centred fit pins, the geometric mean of the sweep's lr-swept groups (the study's own runs'
when the file records no groups; `pivot_source` says which). On the sweep's quadratic valley in log
lr its loss rises by p (log10 f / log10 2)^2 L. Approaches 2 and 3 (Huber) are refitted, without
resampling, on each perturbed table.

The law is taken as right: each measured loss is its size's optimum, so a perturbation only ever
raises losses. This measures how far a would move had the law been off by its own uncertainty; it
does not correct a loss a wrong law already raised. Direction: the rise is a bowl in log N centred
on N_pivot, the same for either sign of delta; added to each IsoFLOP profile (curvature k nats per
decade^2) it pulls every budget's optimum toward the pivot, so a falls, to first order to
a k / (k + c) with c = p L delta^2 / log10(2)^2. The D exponent's bowl is centred on D = D_pivot,
i.e. N = C / (6 D_pivot), which moves with C at slope 1: a rises toward 1.

Nothing here imports the planner: plan.json and hparam_fit.json are read as files.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os

import numpy as np

from analysis.laws import allocation, approach2, approach3
from analysis.records import InputError, write_atomic
from analysis.tables import conventions
from analysis.tables.tables import Runs
from analysis.uncertainty import noise

KEY = "lr_sensitivity"  # fits.json's key: no "approach" field inside, so FitResult.from_json skips it
PLAN_LAW_KEY = "hparams_law"  # plan.json's study section (experiments/planning/hparams.py SECTION_KEY)
APPROACHES = ("approach2", "approach3")
NO_LAW = "no lr law with an interval: sensitivity not computed"
LOG2 = math.log10(2.0)


@dataclasses.dataclass(frozen=True)
class LrLaw:
    """What the sensitivity needs of the lr law the runs were planned with."""
    exponents: dict  # "N" | "D" -> the estimate (None: not fitted)
    intervals: dict  # "N" | "D" -> (low, high) or None
    penalty_x2: float  # relative loss rise of a factor-2 lr error, measured by the sweep
    pivot: dict  # "N" | "D" -> where the law pivots
    pivot_source: str
    source: str  # the file the law came from

    def to_json(self) -> dict:
        return {"exponents": self.exponents, "intervals": {k: list(v) if v else None for k, v in self.intervals.items()},
                "penalty_x2": self.penalty_x2, "pivot": self.pivot, "pivot_source": self.pivot_source,
                "source": self.source}


def _read_json(path: str):
    with open(path, "rb") as fh:
        blob = fh.read()
    return json.loads(blob), hashlib.sha256(blob).hexdigest()


def read_law(study_dir: str, runs: Runs) -> LrLaw | str:
    """The law from DIR/plan.json and the hparam_fit.json it names, or why there is none (a line)."""
    try:
        plan, _ = _read_json(os.path.join(study_dir, "plan.json"))
    except (OSError, ValueError):
        return f"{NO_LAW} (no readable plan.json in the study directory)"
    law = (plan.get("study") or {}).get(PLAN_LAW_KEY)
    if not isinstance(law, dict) or not isinstance(law.get("lr"), dict):
        recipe = (plan.get("study") or {}).get("recipe")
        return (f"{NO_LAW} (the runs' lr is {f'recipe {recipe!r}' if recipe else 'the recipe'}'s rule, which "
                f"plan.json records without an interval; study.hparams = FILE plans with a fitted law that has one)")
    lr = law["lr"]
    exps = {k: (None if (lr.get("exponents") or {}).get(k) is None else float(lr["exponents"][k])) for k in ("N", "D")}
    ints = {k: (tuple(float(x) for x in lr["intervals"][k]) if (lr.get("intervals") or {}).get(k) else None)
            for k in ("N", "D")}
    if not any(exps[k] is not None and ints[k] for k in ("N", "D")):
        return f"{NO_LAW} (the law in plan.json has no exponent with an interval: fitted with --resamples 0?)"
    path = str(law.get("path", ""))
    try:
        fit, sha = _read_json(path)
    except (OSError, ValueError) as e:
        return (f"sensitivity not computed: the law's file {path} cannot be read ({type(e).__name__}); plan.json "
                f"does not record the sweep's penalty of a factor-2 lr error")
    if law.get("sha256") and sha != law["sha256"]:
        return (f"sensitivity not computed: {path} changed since the plan (sha256 {sha[:12]}, the plan applied "
                f"{str(law['sha256'])[:12]}); its penalty and sweep need not be the applied law's: replan")
    p = ((fit.get("lr") or {}).get("penalty_x2") or {}).get("relative_mean")
    if p is None or not math.isfinite(p) or p < 0:
        return f"sensitivity not computed: {path} measured no factor-2 lr penalty (no convex valley in lr)"
    groups = [g for g in fit.get("groups") or () if g.get("lr_swept") and g.get("N") and g.get("D")]
    geo = lambda v: float(np.exp(np.mean(np.log(np.asarray(v, float)))))
    if groups:
        pivot = {"N": geo([g["N"] for g in groups]), "D": geo([g["D"] for g in groups])}
        source = f"the geometric mean of the sweep's {len(groups)} lr-swept (N, D) groups, where the law's fit is centred"
    else:
        pivot = {"N": geo(runs.N), "D": geo(runs.D)}
        source = "the geometric mean of this study's runs (the law's file records no sweep groups)"
    return LrLaw(exps, ints, float(p), pivot, source, path)


# ---- the perturbed tables ----------------------------------------------------------------------

def perturbed(runs: Runs, law: LrLaw, exponent: str, delta: float) -> tuple[np.ndarray, float, float]:
    """(losses had the `exponent` been off by `delta`, the largest lr factor, the largest relative rise)."""
    x = runs.N if exponent == "N" else runs.D
    log_f = delta * np.log10(x / law.pivot[exponent])
    rise = law.penalty_x2 * (log_f / LOG2) ** 2
    return runs.loss * (1 + rise), float(10 ** np.max(np.abs(log_f))), float(np.max(rise))


def refit(runs: Runs, losses, fits, approaches=APPROACHES) -> list[dict]:
    """a under each of `approaches` that fits.json has on each loss vector of `losses`, fitted as
    fits.json's fit was (its options where known), without resampling; None where it cannot fit.
    Approach 3 refits every vector at once from fits.json's optimum (its bootstrap's way: the same
    restarts when E sits at its bound), not from the 4,500-start grid: a perturbed table's optimum
    lies next to the unperturbed one's."""
    o = getattr(fits, "options", None)
    out = [{} for _ in losses]
    if "approach2" in approaches and "approach2" in fits.fits:
        interp, edges = (o.interp, o.include_edges) if o is not None else ("parabola", False)
        sigma = noise.run_noise(runs).sigma  # the perturbation moves seed repeats together: same noise
        for row, loss in zip(out, losses):
            try:
                row["approach2"] = float(approach2.fit_approach2(runs.with_loss(loss), interp, edges, sigma).n_law.exponent)
            except InputError:
                row["approach2"] = None
    if "approach3" in approaches and "approach3" in fits.fits:
        p = fits.fits["approach3"].params
        floor = 1e-12 * float(np.min(runs.loss))  # an E fitted at 0 still needs a finite log
        x0 = np.array([math.log(p["A"]), math.log(p["B"]), math.log(max(p["E"], floor)), p["alpha"], p["beta"]])
        x, ok = approach3.refit_draws(runs.N, runs.D, np.asarray(losses), approach3.restart_starts(
            runs.N, runs.D, runs.loss, x0), o.delta if o is not None else 1e-3)
        for row, xi, good in zip(out, x, ok):
            a = conventions.allocation_exponents(allocation.LawParams.from_logs(*xi), runs)[0] if good else math.nan
            row["approach3"] = float(a) if math.isfinite(a) else None
    return out


@dataclasses.dataclass(frozen=True)
class End:
    """One end of one exponent's interval and a under each approach had the law used it."""
    exponent: str  # "N" | "D"
    side: str  # "low" | "high"
    value: float
    delta: float  # value - estimate
    max_factor: float  # the largest lr factor over the runs (either way)
    max_rise: float  # the largest relative loss rise over the runs
    a: dict  # approach -> a (None: not fitted)


@dataclasses.dataclass(frozen=True)
class LrSensitivity:
    reason: str = ""  # "" when computed, else why not
    headline: dict = dataclasses.field(default_factory=dict)  # approach -> fits.json's a
    unperturbed: dict = dataclasses.field(default_factory=dict)  # approach -> a refitted here, unperturbed
    ends: tuple[End, ...] = ()
    law: LrLaw | None = None

    def to_json(self) -> dict:
        return {"reason": self.reason or None, "headline_a": self.headline, "refit_a": self.unperturbed,
                "ends": [dataclasses.asdict(e) for e in self.ends], "law": self.law.to_json() if self.law else None,
                "perturbation": "loss x (1 + penalty_x2 (log10 f / log10 2)^2), f = (N / pivot.N)^delta "
                                "(or D): the measured losses taken as each size's optimum, so they only rise"}

    @classmethod
    def from_json(cls, raw: dict) -> "LrSensitivity":
        law = raw.get("law")
        law = law and LrLaw(law["exponents"], {k: tuple(v) if v else None for k, v in law["intervals"].items()},
                            law["penalty_x2"], law["pivot"], law["pivot_source"], law["source"])
        return cls(raw.get("reason") or "", dict(raw.get("headline_a") or {}), dict(raw.get("refit_a") or {}),
                   tuple(End(**e) for e in raw.get("ends") or ()), law)

    def lines(self) -> list[str]:
        """One line per approach: "a = 0.505; with the lr law's N exponent at its interval's ends: ..."."""
        if self.reason:
            return [self.reason]
        out = []
        for key in self.headline:
            head = self.headline[key]
            parts = []
            for exponent in ("N", "D"):
                lo, hi = (next((e for e in self.ends if e.exponent == exponent and e.side == s), None)
                          for s in ("low", "high"))
                if lo and hi:
                    parts.append(f"{exponent} exponent at {lo.value:+.3f} / {hi.value:+.3f}: {_a(lo.a.get(key))} / "
                                 f"{_a(hi.a.get(key))}")
            base = self.unperturbed.get(key)
            differs = "" if base is None or head is None or abs(base - head) < 5e-4 else \
                f" (refitted here without resampling: {base:.3f}, which the ends compare with)"
            out.append(f"{_label(key)}: a = {_a(head)}{differs}; with the lr law's " + "; ".join(parts))
        return out


def _a(v) -> str:
    return "not fitted" if v is None else f"{v:.3f}"


def _label(key: str) -> str:
    return {"approach2": "Approach 2", "approach3": "Approach 3"}.get(key, key)


def compute(runs: Runs, law: LrLaw, fits) -> LrSensitivity:
    """Refit Approaches 2 and 3 (those fits.json has) with each identified exponent at each end."""
    headline = {k: float(f.params["a"]) for k in APPROACHES if (f := fits.fits.get(k)) is not None
                and f.params.get("a") is not None and math.isfinite(f.params["a"])}
    if not headline:
        return LrSensitivity(f"sensitivity not computed: fits.json has neither {' nor '.join(APPROACHES)}", law=law)
    todo = [(exponent, side, float(value), float(value - est))
            for exponent in ("N", "D") if (est := law.exponents[exponent]) is not None and law.intervals[exponent]
            for side, value in zip(("low", "high"), law.intervals[exponent])]
    tables = [perturbed(runs, law, exponent, delta) for exponent, _, _, delta in todo]
    a = refit(runs, [runs.loss] + [t[0] for t in tables], fits, tuple(headline))
    ends = tuple(End(*spec, factor, rise, got) for spec, (_, factor, rise), got in zip(todo, tables, a[1:]))
    return LrSensitivity("", headline, a[0], ends, law)


def for_study(study_dir: str, runs: Runs, fits, write: bool = True) -> LrSensitivity:
    """The study's sensitivity (or why none), written (`write`) into fits.json beside the fits when
    `fits` was read from or written to a file."""
    law = read_law(study_dir, runs)
    sens = LrSensitivity(law) if isinstance(law, str) else compute(runs, law, fits)
    if write and getattr(fits, "source", None):
        write_into(fits.source, sens)
    return sens


def write_into(fits_path: str, sens: LrSensitivity) -> None:
    with open(fits_path) as fh:
        body = json.load(fh)
    body[KEY] = sens.to_json()
    clean = json.loads(json.dumps(body), parse_constant=lambda _: None)  # NaN as null
    write_atomic(fits_path, json.dumps(clean, indent=2) + "\n")
