"""The named prior a study is designed around: N_opt(C) before anything trains, and the loss law
the planner's forecast simulates.

`study.prior` (documented in experiments/configs/isoflop_cpu.py):
  kind   "law": N_opt(C) = params * (C / budget)^a, e.g. a previous fit's Approach 2 law or a
         calibration's measured optimum with an assumed exponent;
         "tokens_per_param": D/N = tokens_per_param at the optimum under C = 6ND, so
         N_opt(C) = sqrt(C / (6 * tokens_per_param)) and a = 1/2 (Hoffmann et al. 2022: ~20);
         "none": no prior, every ladder size the tokens_per_param band allows (the old design).
  source a line saying where the numbers come from (printed with the plan).
  alpha  the loss law's exponent in N; beta = alpha * a / (1 - a) follows from a = beta/(alpha+beta)
         (Hoffmann et al. 2022 eq. 4), the form L = E + A/N^alpha + B/D^beta (their eq. 2).
  depth  nats the IsoFLOP profile rises 0.4 decades either side of its optimum (mean of both
         sides): it fixes the scale of A and B, i.e. how deep the profiles the forecast simulates are.
  E      irreducible loss (nats; the forecast's a and b do not depend on it).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from experiments.planning.errors import StudyError

KINDS = ("none", "law", "tokens_per_param")
DEPTH_SPAN = 0.4  # decades at which `depth` is measured


@dataclasses.dataclass(frozen=True)
class Law:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022 eq. 2), D in training tokens."""
    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def loss(self, N, D):
        return self.E + self.A * np.asarray(N, float) ** -self.alpha + self.B * np.asarray(D, float) ** -self.beta


@dataclasses.dataclass(frozen=True)
class Prior:
    kind: str = "none"
    source: str = ""
    budget: float = 0.0
    params: float = 0.0
    a: float = 0.5
    tokens_per_param: float = 0.0
    alpha: float = 0.34
    depth: float = 0.02
    E: float = 0.0

    @classmethod
    def from_config(cls, s) -> "Prior":
        if s is None:
            return NO_PRIOR
        p = cls(kind=str(s.get("kind", "none")), source=str(s.get("source", "")),
                budget=float(s.get("budget", 0.0)), params=float(s.get("params", 0.0)),
                a=float(s.get("a", 0.5)), tokens_per_param=float(s.get("tokens_per_param", 0.0)),
                alpha=float(s.get("alpha", 0.34)), depth=float(s.get("depth", 0.02)), E=float(s.get("E", 0.0)))
        p.validate()
        return p

    def validate(self) -> None:
        if self.kind not in KINDS:
            raise StudyError(f"study.prior.kind={self.kind!r} is not one of {KINDS}")
        if self.kind == "law" and not (self.budget > 0 and self.params > 0 and 0 < self.a < 1):
            raise StudyError(f"study.prior: kind 'law' needs budget > 0, params > 0 and 0 < a < 1 "
                             f"(got {self.budget:.3g}, {self.params:.3g}, {self.a})")
        if self.kind == "tokens_per_param" and self.tokens_per_param <= 0:
            raise StudyError(f"study.prior.tokens_per_param={self.tokens_per_param} must be > 0")
        if self.alpha <= 0 or self.depth <= 0:
            raise StudyError(f"study.prior: alpha ({self.alpha}) and depth ({self.depth}) must be > 0")

    @property
    def exponent(self) -> float:
        return 0.5 if self.kind == "tokens_per_param" else self.a

    def n_opt(self, C: float) -> float:
        """The prior's compute-optimal total parameter count at budget C."""
        if self.kind == "tokens_per_param":
            return math.sqrt(C / (6.0 * self.tokens_per_param))
        if self.kind == "law":
            return self.params * (C / self.budget) ** self.a
        raise StudyError("study.prior.kind='none' has no N_opt(C): set study.prior")

    def describe(self) -> str:
        if self.kind == "tokens_per_param":
            rule = f"D/N = {self.tokens_per_param:g} under C = 6ND (a = 0.5)"
        else:
            rule = f"N_opt = {self.params:.3g} * (C / {self.budget:.3g})^{self.a:g}"
        return f"prior: {rule}" + (f" [{self.source}]" if self.source else "")

    def law(self, flops_per_token: Callable[[float], float], C0: float) -> Law:
        """The loss law whose IsoFLOP optimum at budget C0 (the grid's geometric middle) is the
        prior's N_opt there.

        D = C / f(N) with f the grid's own FLOPs per token, so the optimum condition
        dL/dlnN = 0 reads alpha A N^-alpha = beta gamma B D^-beta, gamma = dln f/dln N (6ND: gamma 1).
        """
        N0 = self.n_opt(C0)
        beta = self.alpha * self.exponent / (1 - self.exponent)
        f0 = flops_per_token(N0)
        gamma = math.log(flops_per_token(N0 * 1.01) / f0) / math.log(1.01)
        D0 = C0 / f0
        B1 = self.alpha * N0 ** -self.alpha / (beta * gamma * D0 ** -beta)  # with A = 1
        profile = lambda N: N ** -self.alpha + B1 * (C0 / flops_per_token(N)) ** -beta
        up = [profile(N0 * 10 ** s) - profile(N0) for s in (-DEPTH_SPAN, DEPTH_SPAN)]
        scale = self.depth / (sum(up) / 2)
        return Law(E=self.E, A=scale, alpha=self.alpha, B=scale * B1, beta=beta)


NO_PRIOR = Prior()
