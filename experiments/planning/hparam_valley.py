"""One loss valley shared by every (N, D) group of a sweep: the `shared_valley` rule of hparam_fit.

Each run's loss is modelled as

    loss = floor_g + beta_g . u + 1/2 u' H u,     u = (log10 lr, log10 B) - their means over the table,

with a floor and a slope vector per group g and ONE Hessian H for the whole sweep: the valley's
shape (how much a factor 2 in lr or batch costs, and how the best lr moves with batch) is shared
while its position moves with (N, D). Linear in every coefficient, so one least-squares solve fits
it. Each group's optimum is the minimum of its quadratic inside the swept box (its vertex when that
lies inside; else the best point on the box's faces, flagged `edge`).

Why share H: a small sweep's runs differ by little more than their noise (on the CPU sweep a
factor 2 in lr costs ~1 sigma of run-to-run noise), so a quadratic with 6 coefficients per group
from 9 runs is rarely convex, and the per-group `valley` rule falls back to the noisy best run.
Pooling the curvature leaves 3 coefficients per group (floor and two slopes), so every run informs
every group's vertex through H. The vertices' scatter about the fitted law, which the law's interval
reads, then carries both the runs' noise and any misfit of the law.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from analysis.records import InputError


@dataclasses.dataclass(frozen=True)
class SharedValley:
    hessian: np.ndarray  # (k, k) in centred log10 units of the swept axes
    axes: tuple[str, ...]  # "lr", "batch": the axes some group sweeps
    optimum: np.ndarray  # (G, k) log10 optimum per group (nan on an axis the group does not sweep)
    edge: np.ndarray  # (G,) bool: the optimum is on the swept box's boundary
    rows_used: np.ndarray  # indices into the sweep's arrays
    sigma: float  # rms residual of the runs about the valley (loss units)

    def rise_x2(self, axis: str) -> float:
        """Loss rise at a factor 2 off the optimum along one axis, the other held at its optimum."""
        j = self.axes.index(axis)
        return float(0.5 * self.hessian[j, j] * np.log10(2.0) ** 2)


def _box_minimum(H, b, lo, hi):
    """argmin of b.u + 1/2 u'Hu over the box lo <= u <= hi (k <= 2 axes): (u, on_boundary)."""
    k = len(b)
    u = np.linalg.solve(H, -b)
    if np.all(u >= lo - 1e-12) and np.all(u <= hi + 1e-12):
        return u, False
    best, best_val = None, np.inf
    for fixed in itertools.chain.from_iterable(itertools.combinations(range(k), r) for r in range(1, k + 1)):
        for bounds in itertools.product(*[(lo[j], hi[j]) for j in fixed]):
            v = np.zeros(k)
            v[list(fixed)] = bounds
            free = [j for j in range(k) if j not in fixed]
            if free:
                rhs = -(b[free] + H[np.ix_(free, fixed)] @ v[list(fixed)])
                v[free] = np.clip(np.linalg.solve(H[np.ix_(free, free)], rhs), lo[free], hi[free])
            val = b @ v + 0.5 * v @ H @ v
            if val < best_val:
                best, best_val = v, val
    return best, True


def fit_shared_valley(log_lr, log_b, loss, group, window: float | None) -> SharedValley:
    """Fit the shared valley to the runs within `window` (a fraction of each group's best loss; None:
    every run) and return each group's optimum inside its swept box."""
    G = int(group.max()) + 1
    best = np.array([loss[group == g].min() for g in range(G)])
    rows = np.flatnonzero(loss <= best[group] + (np.inf if window is None else window * np.abs(best[group])))
    raw = {"lr": log_lr[rows], "batch": log_b[rows]}
    g = group[rows]
    swept = {a: np.array([len(np.unique(raw[a][g == j])) >= 2 for j in range(G)]) for a in raw}
    axes = tuple(a for a in ("lr", "batch") if swept[a].any())
    if not axes:
        raise InputError("shared_valley: no (N, D) group sweeps more than one lr or batch")
    centre = {a: raw[a].mean() for a in axes}
    u = np.stack([raw[a] - centre[a] for a in axes], 1)
    k = len(axes)
    pairs = [(i, j) for i in range(k) for j in range(i, k)]
    onehot = np.eye(G)[g]
    cols = [0.5 * u[:, i] * u[:, j] * (1 if i == j else 2) for i, j in pairs] + [onehot]
    slope_cols = [onehot[:, swept[a]] * u[:, [j]] for j, a in enumerate(axes)]
    A = np.column_stack(cols + slope_cols)
    if len(rows) <= A.shape[1]:
        raise InputError(f"shared_valley: {len(rows)} runs for {A.shape[1]} coefficients; sweep more lrs or batches")
    coef, *_ = np.linalg.lstsq(A, loss[rows], rcond=None)
    H = np.zeros((k, k))
    for c, (i, j) in zip(coef, pairs):
        H[i, j] = H[j, i] = c
    if np.any(np.linalg.eigvalsh(H) <= 0):
        raise InputError(f"shared_valley: the sweep's loss does not open upward in log lr and log batch "
                         f"(Hessian eigenvalues {np.linalg.eigvalsh(H)}); use --rule near_best")
    slopes = np.zeros((G, k))
    at = len(pairs) + G
    for j, a in enumerate(axes):
        n = int(swept[a].sum())
        slopes[swept[a], j] = coef[at:at + n]
        at += n
    resid = loss[rows] - A @ coef
    sigma = float(np.sqrt(resid @ resid / (len(rows) - A.shape[1])))
    return _optima(H, slopes, u, g, G, swept, axes, centre, rows, sigma)


def _optima(H, slopes, u, g, G, swept, axes, centre, rows, sigma) -> SharedValley:
    k = len(axes)
    optimum, edge = np.full((G, k), np.nan), np.zeros(G, bool)
    for j in range(G):
        mine = u[g == j]
        free = [i for i, a in enumerate(axes) if swept[a][j]]
        if not free:
            continue
        fixed = [i for i in range(k) if i not in free]
        # An axis the group does not sweep sits at the group's one value: the slope there is H's coupling.
        b = slopes[j, free] + H[np.ix_(free, fixed)] @ mine[0, fixed]
        v, on_edge = _box_minimum(H[np.ix_(free, free)], b, mine[:, free].min(0), mine[:, free].max(0))
        optimum[j, free] = v + np.array([centre[axes[i]] for i in free])
        edge[j] = on_edge
    return SharedValley(H, axes, optimum, edge, rows, sigma)
