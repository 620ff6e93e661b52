"""What a fitted law predicts, with intervals, from fits.json alone: `Predictor.from_fits(body)`.

- `allocation(C)`: N*, D*, D*/N* and the loss at the optimum of a budget C (eq. 4 of the fitted
  L(N, D)), each with the percentile interval of the fit's own resampled laws (fits.json keeps
  Approach 3's resamples under extra.draws, and C = k N D's k under extra.flops_per_param_token).
- `loss(N, D)`: the loss one run of that size and length will measure, with a PREDICTION interval:
  the resampled laws' spread (parameter uncertainty) combined with one run's noise (the study's
  pooled seed std, else the median eval SE: diagnostics.seed_noise), by Monte Carlo, so a skewed
  parameter spread keeps its skew.

The shared eval-set offset: every run of a study, validation runs included, is evaluated on the same
fixed eval tokens, so the eval set's own sampling error shifts the grid's losses, and so the law's E,
and a validation run's measured loss alike. For a measured loss on that eval set it cancels: where
the fit drew it into its resamples (extra.draws.eval_offset), `loss` subtracts each resample's own
offset. `allocation`'s loss keeps it (the fit's own interval on the loss of a budget's optimum).
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Mapping

import numpy as np

from analysis.laws import allocation
from analysis.records import InputError

LAW_KEYS = ("E", "A", "B", "alpha", "beta")
OFFSET_KEY = "eval_offset"  # fits.json extra.draws: each resample's shared eval offset
NOISE_DRAWS = 20  # run-noise draws per resampled law: 200 laws give 4,000 predictions
APPROACHES = ("approach3",)  # the fits that predict a loss (Approach 2 gives N* and D*, no loss)
DEFAULT_APPROACH = "approach3"
DEFAULT_RULE = ("approach3: the report's allocation table leads with it, and it is the only fit that "
                "predicts a loss (eq. 4 of its L(N, D))")


@dataclasses.dataclass(frozen=True)
class Interval:
    mid: float  # the full fit's value
    lo: float  # NaN: no interval (no resamples, no noise)
    hi: float

    def contains(self, x: float) -> bool:
        return bool(self.lo <= x <= self.hi)

    def units(self, x: float) -> float:
        """(x - mid) over the interval's half-width on x's side: |u| <= 1 inside the interval."""
        half = self.hi - self.mid if x >= self.mid else self.mid - self.lo
        return float((x - self.mid) / half) if half > 0 else math.nan

    def to_json(self) -> list[float]:
        return [self.mid, self.lo, self.hi]


@dataclasses.dataclass(frozen=True)
class AllocationPrediction:
    C: float
    N: Interval
    D: Interval
    ratio: Interval  # D*/N*
    loss: Interval  # the law's loss at (N*, D*): parameter uncertainty only

    def to_json(self) -> dict:
        return {"C": self.C, **{k: getattr(self, k).to_json() for k in ("N", "D", "ratio", "loss")}}


@dataclasses.dataclass(frozen=True)
class LossPrediction:
    N: float
    D: float
    loss: Interval  # the 95% prediction interval of one run's measured loss
    param_sd: float  # the resampled laws' std of L(N, D) (NaN: no resamples)
    noise_sd: float  # one run's noise (0: unknown)

    def to_json(self) -> dict:
        return {"N": self.N, "D": self.D, "loss": self.loss.to_json(), "param_sd": self.param_sd,
                "noise_sd": self.noise_sd}


@dataclasses.dataclass(frozen=True)
class Predictor:
    approach: str
    law: allocation.LawParams
    draws: tuple[allocation.LawParams, ...]  # the fit's resampled laws (empty: fitted with --bootstrap 0)
    k: float  # C = k N D in the fit's FLOP convention
    noise_sd: float  # one run's loss noise (nats; 0: not measured)
    noise_source: str
    level: float = 0.95
    # Each resample's shared eval offset (analysis.uncertainty.parametric): a common shift of every
    # loss moves the refitted E by exactly that shift, and a run scored on the same eval set shares
    # it, so its prediction subtracts it (zeros: fitted without it).
    offsets: tuple[float, ...] = ()

    @classmethod
    def from_fits(cls, body: Mapping[str, object], approach: str = DEFAULT_APPROACH,
                  level: float = 0.95) -> "Predictor":
        f = body.get(approach)
        if approach not in APPROACHES or not isinstance(f, Mapping):
            raise InputError(f"--approach {approach}: fits.json has no such fit that predicts a loss "
                             f"(choose from {', '.join(APPROACHES)}; fit with analysis.fit --approach 3)")
        if any(f.get(k) is None for k in LAW_KEYS):
            raise InputError(f"fits.json: {approach} has no finite {', '.join(LAW_KEYS)}")
        law = allocation.LawParams(*(float(f[k]) for k in LAW_KEYS))
        extra = f.get("extra") or {}
        raw = extra.get("draws") or {}
        n = len(raw.get(LAW_KEYS[0], ()))
        rows = [p for p in zip(*(raw.get(k, ()) for k in LAW_KEYS), raw.get(OFFSET_KEY) or [0.0] * n)
                if all(v is not None and math.isfinite(v) for v in p)]
        draws = tuple(allocation.LawParams(*p[:5]) for p in rows)
        sd, source = run_noise((body.get("diagnostics") or {}).get("seed_noise") or [])
        return cls(approach, law, draws, float(extra.get("flops_per_param_token", 6.0)), sd, source, level,
                   tuple(p[5] for p in rows))

    def _iv(self, mid: float, values) -> Interval:
        v = np.asarray(values, float)
        v = v[np.isfinite(v)]
        if not len(v):
            return Interval(float(mid), math.nan, math.nan)
        lo, hi = np.percentile(v, [50 * (1 - self.level), 50 * (1 + self.level)])
        return Interval(float(mid), float(lo), float(hi))

    def allocation(self, C: float) -> AllocationPrediction:
        mid = allocation.optimal_allocation(self.law, C, self.k)
        alls = [allocation.optimal_allocation(p, C, self.k) for p in self.draws]
        pick = lambda attr: [float(getattr(a, attr)[0]) for a in alls]
        return AllocationPrediction(float(C), self._iv(mid.N_opt[0], pick("N_opt")), self._iv(mid.D_opt[0], pick("D_opt")),
                                    self._iv(mid.tokens_per_param[0], pick("tokens_per_param")),
                                    self._iv(mid.loss[0], pick("loss")))

    def loss(self, N: float, D: float, seed: int = 0) -> LossPrediction:
        """One run's measured loss at (N, D): resampled laws + run noise (the eval offset cancels, see above)."""
        mid = float(self.law.loss(N, D))
        shift = self.offsets or (0.0,) * len(self.draws)
        laws = np.array([float(p.loss(N, D)) - o for p, o in zip(self.draws, shift)])
        param_sd = float(np.std(laws, ddof=1)) if len(self.draws) > 1 else math.nan
        if not self.draws:  # no resamples: the noise alone (the law taken as exact; the report says so)
            half = statistics.NormalDist().inv_cdf(0.5 + self.level / 2) * self.noise_sd if self.noise_sd > 0 else math.nan
            return LossPrediction(float(N), float(D), Interval(mid, mid - half, mid + half), param_sd, self.noise_sd)
        # Percentiles of the resampled laws' predictions plus one run's noise (as the fit's own intervals).
        rng = np.random.default_rng(seed)
        total = laws[:, None] + rng.standard_normal((len(laws), NOISE_DRAWS)) * self.noise_sd
        return LossPrediction(float(N), float(D), self._iv(mid, total.ravel()), param_sd, self.noise_sd)


def run_noise(seed_noise_rows) -> tuple[float, str]:
    """One run's loss std from fits.json's diagnostics.seed_noise: the pooled seed std where measured,
    else the median eval SE, else 0 (unknown)."""
    row = seed_noise_rows[0] if seed_noise_rows else {}
    std, se = row.get("pooled_std"), row.get("median_run_se")
    if row.get("dof") and std is not None and math.isfinite(std) and std > 0:
        return float(std), f"seed noise (pooled std over {row['dof']} degrees of freedom)"
    if se is not None and math.isfinite(se) and se > 0:
        return float(se), "eval SE (no seed repeats: init and data-order noise not measured)"
    return 0.0, "none (no seed repeats, no eval SE)"


def fits_hash(body: Mapping[str, object]) -> str:
    """Identity of a fit: fits.json's content without what is written beside the fits after it (the
    prediction test, the lr-law sensitivity): the validation freezes this hash from the grid's file."""
    import hashlib
    import json
    kept = {k: v for k, v in body.items() if k not in ("prediction_test", "lr_sensitivity")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]
