"""Compute-optimal allocation implied by L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. eq. 4).

Minimising L under C = 6 N D gives N* = G (C/6)^a, D* = G^-1 (C/6)^b with
a = beta/(alpha+beta), b = alpha/(alpha+beta), G = (alpha A / (beta B))^(1/(alpha+beta)).
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LawParams:
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    @classmethod
    def from_logs(cls, log_A, log_B, log_E, alpha, beta) -> "LawParams":
        return cls(float(np.exp(log_E)), float(np.exp(log_A)), float(np.exp(log_B)), float(alpha), float(beta))

    def loss(self, n, d):
        n, d = np.asarray(n, float), np.asarray(d, float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta


@dataclasses.dataclass(frozen=True)
class Allocation:
    C: np.ndarray
    N_opt: np.ndarray
    D_opt: np.ndarray
    tokens_per_param: np.ndarray
    loss: np.ndarray


def exponents(p: LawParams) -> tuple[float, float, float]:
    """(a, b, G) of eq. 4."""
    a = p.beta / (p.alpha + p.beta)
    b = p.alpha / (p.alpha + p.beta)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # NaN (not complex) off the domain
        g = float(np.power(np.float64(p.alpha * p.A / (p.beta * p.B)), 1.0 / (p.alpha + p.beta)))
    return a, b, g


def optimal_allocation(p: LawParams, compute, flops_per_param_token: float = 6.0) -> Allocation:
    """N*, D*, D*/N* and the predicted loss at each compute budget C (C = k N D, k = 6 by default)."""
    c = np.atleast_1d(np.asarray(compute, float))
    a, b, g = exponents(p)
    n = g * (c / flops_per_param_token) ** a
    d = (c / flops_per_param_token) ** b / g
    return Allocation(c, n, d, d / n, p.loss(n, d))


def flops_per_param_token(C, N, D) -> float:
    """k of C = k N D in a table's own FLOP convention (6 for 6ND; more under Chinchilla's Appendix F
    count for small models, whose attention and embedding FLOPs are not ~N): the median over runs, so
    eq. 4's N*, D* and any D = C/(kN) are in the same FLOPs as the table's budgets."""
    return float(np.median(np.asarray(C, float) / (np.asarray(N, float) * np.asarray(D, float))))


HOFFMANN_UNROUNDED = LawParams.from_logs(6.0073404, 6.0179186, 0.5267228, 0.33917084, 0.2849083)
HOFFMANN_ROUNDED = LawParams(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# Besiroglu et al. 2024 (Epoch AI), their main estimate and their replication of the Huber-sum fit.
EPOCH_ML = LawParams(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
EPOCH_HUBER_SUM = LawParams(E=1.8172, A=477.84, B=2143.86, alpha=0.34731, beta=0.36718)
GOPHER_FLOPS = 5.76e23
