"""Kaplan et al. 2020 laws: L(N) = (N_c/N)^alpha_N, L(D) = (D_c/D)^alpha_D, L(C) = (C_c/C)^alpha_C
(their eqs. 1.1-1.3) and the joint L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (eq. 1.5).

Kaplan's single-variable laws hold when the other resources are not the bottleneck, so each is
fitted on the lower envelope of the table: the runs whose loss beats every run with no more of
that resource. N is the non-embedding count where the table has it (Kaplan's convention).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import scipy.optimize

from analysis.records import Fit, InputError
from analysis.tables.tables import Runs


@dataclasses.dataclass(frozen=True)
class SingleLaw:
    scale: float  # N_c, D_c or C_c
    exponent: float  # alpha_N, alpha_D or alpha_C

    def __call__(self, x):
        return (self.scale / np.asarray(x, float)) ** self.exponent


@dataclasses.dataclass(frozen=True)
class JointLaw:
    N_c: float
    D_c: float
    alpha_N: float
    alpha_D: float

    def __call__(self, n, d):
        n, d = np.asarray(n, float), np.asarray(d, float)
        return ((self.N_c / n) ** (self.alpha_N / self.alpha_D) + self.D_c / d) ** self.alpha_D


@dataclasses.dataclass(frozen=True)
class KaplanResult:
    L_N: SingleLaw
    L_D: SingleLaw
    L_C: SingleLaw
    joint: JointLaw
    nonembedding: bool


def envelope(x, loss) -> np.ndarray:
    """Indices of runs whose loss is below that of every run with smaller or equal x."""
    order = np.lexsort((loss, x))
    best, keep = np.inf, []
    for i in order:
        if loss[i] < best:
            keep.append(i)
            best = loss[i]
    return np.asarray(keep, int)


def fit_single(x, loss) -> SingleLaw:
    idx = envelope(x, loss)
    if len(np.unique(x[idx])) < 2:
        raise InputError("Kaplan fit: need runs at 2 or more distinct values of N, D and C")
    slope, icpt = np.polyfit(np.log(x[idx]), np.log(loss[idx]), 1)
    alpha = -slope
    return SingleLaw(float(np.exp(icpt / alpha)) if alpha != 0 else float("inf"), float(alpha))


def fit_joint(n, d, loss, start: JointLaw) -> JointLaw:
    def resid(t):
        return np.log(JointLaw(np.exp(t[0]), np.exp(t[1]), t[2], t[3])(n, d)) - np.log(loss)

    t0 = [np.log(start.N_c), np.log(start.D_c), start.alpha_N, start.alpha_D]
    t = scipy.optimize.least_squares(resid, t0, method="lm", max_nfev=20000).x
    return JointLaw(float(np.exp(t[0])), float(np.exp(t[1])), float(t[2]), float(t[3]))


def fit_kaplan(runs: Runs) -> KaplanResult:
    if len(runs) < 5:
        raise InputError(f"Kaplan fit needs at least 5 runs, the table has {len(runs)}")
    ne = runs.N_nonembed is not None
    n = runs.N_nonembed if ne else runs.N
    l_n, l_d, l_c = fit_single(n, runs.loss), fit_single(runs.D, runs.loss), fit_single(runs.C, runs.loss)
    joint = fit_joint(n, runs.D, runs.loss, JointLaw(l_n.scale, l_d.scale, l_n.exponent, l_d.exponent))
    return KaplanResult(l_n, l_d, l_c, joint, ne)


def kaplan_values(k: KaplanResult) -> dict[str, float]:
    return {"N_c": k.L_N.scale, "alpha_N": k.L_N.exponent, "D_c": k.L_D.scale, "alpha_D": k.L_D.exponent,
            "C_c": k.L_C.scale, "alpha_C": k.L_C.exponent, "joint_N_c": k.joint.N_c, "joint_D_c": k.joint.D_c,
            "joint_alpha_N": k.joint.alpha_N, "joint_alpha_D": k.joint.alpha_D}


def to_fit(k: KaplanResult, n_runs: int, intervals=None) -> Fit:
    notes = ("N is non-embedding parameters",) if k.nonembedding else ("N is total parameters",)
    return Fit("kaplan", kaplan_values(k), None, dict(intervals or {}), n_runs, notes)
